"""Small, reusable measurements: entropy baselines and per-token losses."""
from __future__ import annotations

import torch

from .model import GPT


def unigram_entropy(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the unigram distribution of ``tokens``: the loss of the best context-free predictor."""
    counts = torch.bincount(tokens.flatten().long(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def per_token_loss(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Cross-entropy of every predicted token of ``windows`` [n, pos+1] -> [n, pos] (fp32)."""
    model.eval()
    return torch.cat([model.loss(windows[i:i + batch_size], reduction="none")
                      for i in range(0, len(windows), batch_size)])
