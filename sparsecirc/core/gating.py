"""P2's attention-edge gate (Draye, Lei et al. 2025, §3 of our digest): the maths in one place.

For query i and key j <= i, gate logit g_ij = s_ij + b, with s the ordinary scaled score and b a constant.
Training draws A_ij = 1[g_ij + l > 0] with logistic noise l (exactly Bernoulli(sigmoid(g_ij))) and passes the
gradient of sigmoid(g_ij + l) (straight-through, temperature 1). Evaluation uses A_ij = 1[g_ij > 0].
The sparsity statistic is the expected open fraction, sum of sigmoid(g) over causal pairs (diagonal included)
divided by their count T(T+1)/2, per (batch, head).
"""
from __future__ import annotations

import torch


def gate_mask(scores: torch.Tensor, causal: torch.Tensor, bias: float, *, sample: bool,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate mask and expected density.

    Args:
        scores: scaled attention scores [batch, n_head, q_pos, k_pos] (unmasked).
        causal: bool [q_pos, k_pos], True where key <= query.
        bias: P2's constant b.
        sample: True in training (stochastic, straight-through), False for the deterministic eval gate.
    Returns:
        mask [batch, n_head, q_pos, k_pos] (0/1 forward values, zero above the diagonal);
        density [batch, n_head], mean of sigmoid(g) over causal pairs (differentiable).
    """
    g = scores + bias
    prob = torch.sigmoid(g)
    if sample:
        u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device).clamp_(1e-6, 1 - 1e-6)
        noisy = g + (u.log() - (-u).log1p())  # logistic noise
        soft = torch.sigmoid(noisy)
        mask = (noisy > 0).to(g.dtype) + soft - soft.detach()  # hard forward, sigmoid gradient
    else:
        mask = (g > 0).to(g.dtype)
    mask = mask * causal
    density = (prob * causal).sum((-1, -2)) / causal.sum()
    return mask, density
