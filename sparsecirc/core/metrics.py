"""Small, reusable measurements: entropy baselines and per-token losses."""
from __future__ import annotations

import torch

from sparsecirc.core.hooks import record
from sparsecirc.core.model import GPT


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


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two equally shaped tensors (flattened)."""
    a, b = a.flatten().double(), b.flatten().double()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"need two tensors of the same size >= 2, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@torch.no_grad()
def neuron_activity(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Fraction of tokens on which each MLP neuron is nonzero (|post-activation| > 1e-6): [n_layer, d_mlp].

    A neuron with activity 0 on a sample is "dead" there (P1 App. B: sparse models have many).
    """
    model.eval()
    active = torch.zeros(model.cfg.n_layer, model.cfg.d_mlp, dtype=torch.float64)
    n = 0
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size, :-1]
        with record(model, "blocks.*.mlp.hook_post") as c:
            model(w)
        for l in range(model.cfg.n_layer):
            active[l] += (c[f"blocks.{l}.mlp.hook_post"].abs() > 1e-6).flatten(0, 1).sum(0).double()
        n += w.numel()
    return (active / n).float()


@torch.no_grad()
def residual_kurtosis(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean kurtosis of the residual stream (P1 Fig. 10): for every token and layer, the kurtosis of the residual
    vector across its d_model channels, E[(x - mu)^4] / sigma^4, averaged over tokens and layers."""
    model.eval()
    vals = []
    for i in range(0, len(windows), batch_size):
        with record(model, "blocks.*.hook_resid_post") as c:
            model(windows[i:i + batch_size, :-1])
        for x in c.values():
            x = x.double()
            d = x - x.mean(-1, keepdim=True)
            vals.append(((d ** 4).mean(-1) / (d ** 2).mean(-1).clamp_min(1e-12) ** 2).flatten())
    return float(torch.cat(vals).mean())


def nonzero_table(model: GPT) -> list[dict]:
    """Nonzero count and fraction of every weight matrix and embedding (what the projection controls)."""
    rows = []
    for name, p in model.named_parameters():
        if p.dim() == 2 and name != "bigram":
            nz = int((p != 0).sum())
            rows.append({"tensor": name, "shape": tuple(p.shape), "nonzero": nz, "fraction": nz / p.numel()})
    return rows
