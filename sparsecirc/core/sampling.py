"""Sampling completions from a model (seeded, so chapters print the same text every run)."""
from __future__ import annotations

import torch

from sparsecirc.core.model import GPT


@torch.no_grad()
def generate(model: GPT, prompt_ids: list[int], max_new_tokens: int = 40, *, temperature: float = 0.0,
             seed: int = 0, stop_id: int | None = None) -> list[int]:
    """Continue ``prompt_ids``; greedy when ``temperature == 0``, else seeded sampling. Returns the new ids only.

    Example::

        new = generate(model, tok.encode("def add(a, b):\\n"), 30)
        print(tok.decode(new))
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not prompt_ids:
        raise ValueError("prompt_ids is empty")
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    new: list[int] = []
    model.eval()
    for _ in range(max_new_tokens):
        ctx = torch.tensor([ids[-model.cfg.n_ctx:]])
        logits = model(ctx)[0, -1].float()
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g))
        if stop_id is not None and nxt == stop_id:
            break
        ids.append(nxt)
        new.append(nxt)
    return new
