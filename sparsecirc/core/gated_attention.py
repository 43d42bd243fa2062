"""P2's gated attention computed in blocks of queries, with its own backward: long contexts without T x T tensors.

The explicit form (:meth:`sparsecirc.core.model.Attention._gated` with :func:`sparsecirc.core.gating.gate_mask`)
builds every [batch, head, T, T] tensor of the forward (scores, softmax, noise, gate, their product) and autograd
keeps them for the backward: at T = 1024 a post-training step on this CPU takes seconds and most of it is memory
traffic over the half of each matrix that the causal mask zeroes anyway. Here queries go in blocks of ``block``
rows; a block's keys stop at its last query (the causal half is never formed), nothing of size T x T is stored, and
the backward recomputes each block from q, k, v. The maths is the explicit form's (gating.py):

    y_i = sum_{j <= i} softmax_j(s_ij) * A_ij * v_j,   s = q.k / sqrt(d),   g = s + b,
    A = 1[g + logistic noise > 0] (training; gradient of sigmoid(g + noise), straight-through) or 1[g > 0] (eval),
    density = mean over causal pairs of sigmoid(g), per (batch, head) (differentiable).

The logistic noise of training is drawn per block from a generator seeded from one draw of torch's global RNG per
call, so a run is reproducible from its seed, but the draws differ from the explicit form's (one [B, H, T, T]
draw): ``ModelConfig.attn_gate_block`` chooses this path, and the explicit one stays the default for the committed
models. Without sampling both paths give the same numbers up to float rounding (tests/test_gated_attention.py).
"""
from __future__ import annotations

import math

import torch


def gate_block(q, k, r0: int, r1: int, bias: float, sample: bool, seed: int, scale: float):
    """One block, queries r0:r1 against keys 0:r1: (softmax p, gate logits g = s + b of the scores s, noisy logits
    (g + logistic noise drawn from ``seed``; g itself without ``sample``), 0/1 gate (bool), causal mask [n, r1])."""
    s = (q[:, :, r0:r1] @ k[:, :, :r1].transpose(-1, -2)) * scale  # [B, H, n, r1]
    causal = torch.arange(r1, device=q.device)[None] <= torch.arange(r0, r1, device=q.device)[:, None]  # [n, r1]
    p = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
    g = s + bias
    if sample:
        gen = torch.Generator(device=q.device).manual_seed(seed)
        u = torch.rand(g.shape, generator=gen, dtype=g.dtype, device=g.device)
        noisy = g + torch.logit(u, eps=1e-6)  # logistic noise: log(u / (1 - u)), u clamped to [1e-6, 1 - 1e-6]
    else:
        noisy = g
    gate = (noisy > 0) & causal
    return p, g, noisy, gate, causal


class BlockGatedAttention(torch.autograd.Function):
    """(q, k, v [B, H, T, D], bias, sample, seed, block) -> (y [B, H, T, D], density [B, H])."""

    @staticmethod
    def forward(ctx, q, k, v, bias: float, sample: bool, seed: int, block: int):
        B, H, T, D = q.shape
        scale = 1.0 / math.sqrt(D)
        y = torch.empty_like(q)
        dens = q.new_zeros(B, H)
        for i, r0 in enumerate(range(0, T, block)):
            r1 = min(T, r0 + block)
            p, g, _, gate, causal = gate_block(q, k, r0, r1, bias, sample, seed + i, scale)
            dens += (torch.sigmoid(g) * causal).sum((-1, -2))
            y[:, :, r0:r1] = (p * gate) @ v[:, :, :r1]
        ctx.save_for_backward(q, k, v)
        ctx.args = (bias, sample, seed, block, scale)
        return y, dens / (T * (T + 1) / 2)

    @staticmethod
    def backward(ctx, dy, ddens):
        q, k, v = ctx.saved_tensors
        bias, sample, seed, block, scale = ctx.args
        B, H, T, D = q.shape
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        dy = torch.zeros_like(q) if dy is None else dy
        dd = None if ddens is None else (ddens / (T * (T + 1) / 2))[..., None, None]
        for i, r0 in enumerate(range(0, T, block)):
            r1 = min(T, r0 + block)
            p, g, noisy, gate, causal = gate_block(q, k, r0, r1, bias, sample, seed + i, scale)
            pg = p * gate
            dyb = dy[:, :, r0:r1]
            dv[:, :, :r1] += pg.transpose(-1, -2) @ dyb
            dpg = dyb @ v[:, :, :r1].transpose(-1, -2)  # d loss / d (p * gate)
            dp = dpg * gate
            ds = p * (dp - (dp * p).sum(-1, keepdim=True))  # through the softmax
            if sample:  # straight-through: the gate's gradient is sigmoid'(g + noise), on causal pairs
                soft = torch.sigmoid(noisy)
                ds += dpg * p * soft * (1 - soft)  # p is zero off the causal half
            if dd is not None:
                prob = torch.sigmoid(g)
                ds += (dd * prob * (1 - prob)).masked_fill(~causal, 0.0)
            dq[:, :, r0:r1] = (ds @ k[:, :, :r1]) * scale
            dk[:, :, :r1] += (ds.transpose(-1, -2) @ q[:, :, r0:r1]) * scale
        return dq, dk, dv, None, None, None, None


def block_gated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: float, *, sample: bool,
                          block: int = 128, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P2's gated attention in query blocks: (y [B, H, T, D], density [B, H]); see the module docstring.

    ``seed`` fixes the training noise (default: one draw of torch's global RNG, so the noise follows
    ``torch.manual_seed``); it is ignored without ``sample``."""
    if block < 1:
        raise ValueError(f"block_gated_attention: block must be >= 1, got {block}")
    if q.shape != k.shape or k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"block_gated_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                         "must be [B, H, T, D] with the same B, H, T")
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, (1,)).item()) if sample else 0
    return BlockGatedAttention.apply(q, k, v, float(bias), bool(sample), int(seed), int(block))
