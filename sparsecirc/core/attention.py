"""Causal attention kernels for training on CPU: the fused (flash) kernel in float32, with or without P1's sink.

Measured on this project's CPU at the zoo shape ([16, 8, 128, 16], forward + backward, one thread): the fused
kernel takes ~12-16 ms in float32 but ~65 ms in bfloat16 (the CPU has no fast bf16 path for it), and an
attention mask whose gradient is needed (the sink's logit) sends ``scaled_dot_product_attention`` to its
unfused path (~32 ms). So, on CPU, :func:`causal_attention` runs the kernel in float32 whatever the autocast
dtype, and the sink is a float mask column whose gradient is computed here from the kernel's own log-sum-exp:

    o = sum_j p_j v_j with a sink slot of value 0 and score s_h (always visible), so
    d o / d s_h = -p_sink o,   p_sink = exp(s_h - lse),   dL/ds_h = -sum_{b,t} p_sink (dL/do . o).

The numbers are those of the explicit softmax over [scores, sink] to float32 rounding (tests in
``tests/test_attention.py``). ``USE_CPU_FLASH = False`` restores the earlier paths (kept for the training-speed
benchmark): SDPA in the input's dtype, the sink as an extra key coordinate.

Example::

    z = causal_attention(qh, kh, vh, sink_logit)   # [B, H, T, d_head] each; sink_logit [H] or None
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

USE_CPU_FLASH = True  # module switch read at call time (benchmarks/bench_train_speed.py turns it off)
_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def causal_mask(T: int, device=None) -> torch.Tensor:
    """[T, T] boolean, True where a query may attend (itself and earlier keys)."""
    keys = torch.arange(T, device=device)
    return keys <= keys[:, None]


def sink_sdpa(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, sink_logit: torch.Tensor,
              visible: torch.Tensor) -> torch.Tensor:
    """Attention with P1's sink through ``scaled_dot_product_attention`` in the inputs' dtype: the same maths as
    softmax([q.k / sqrt(d), sink_logit]) with a zero-valued sink slot. The sink becomes one extra key whose score is
    exactly ``sink_logit[h]``: q gets one extra coordinate 1, every real key a 0 there and the sink key
    ``sink_logit / scale`` (zeros elsewhere), so q'.k_sink * scale = sink_logit; its value is zero. ``visible`` is
    the causal mask ([Tq, T] or [B, 1, 1, T]). Any device; used where :func:`causal_attention`'s kernel is not."""
    B, H, Tq, D = qh.shape
    T = kh.shape[2]
    scale = 1.0 / math.sqrt(D)
    q = torch.cat([qh, qh.new_ones(B, H, Tq, 1)], -1)
    sink_key = torch.cat([kh.new_zeros(1, H, 1, D), (sink_logit.to(kh.dtype) / scale).view(1, H, 1, 1)], -1)
    k = torch.cat([torch.cat([kh, kh.new_zeros(B, H, T, 1)], -1), sink_key.expand(B, H, 1, D + 1)], 2)
    v = torch.cat([vh, vh.new_zeros(B, H, 1, vh.shape[-1])], 2)
    mask = torch.cat([visible, visible.new_ones(*visible.shape[:-1], 1)], -1)  # the sink is always visible
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class SinkFlash(torch.autograd.Function):
    """Causal attention with a sink through the CPU fused kernel; the sink's gradient from the kernel's lse."""

    @staticmethod
    def forward(ctx, q, k, v, sink_logit):
        B, H, T, D = q.shape
        mask = torch.zeros(1, H, T, T + 1, dtype=q.dtype)
        mask[..., :T].masked_fill_(~causal_mask(T), float("-inf"))
        mask[..., T] = sink_logit.detach().to(q.dtype).view(H, 1)
        k1 = torch.cat([k, k.new_zeros(B, H, 1, D)], 2)  # the sink key (its score comes from the mask)
        v1 = torch.cat([v, v.new_zeros(B, H, 1, v.shape[-1])], 2)  # the sink value: zero
        scale = 1.0 / math.sqrt(D)
        out, lse = _FLASH(q, k1, v1, 0.0, False, attn_mask=mask, scale=scale)
        ctx.save_for_backward(q, k1, v1, out, lse, mask, sink_logit)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k1, v1, out, lse, mask, sink_logit = ctx.saved_tensors
        grad = grad.contiguous()
        dq, dk, dv = _FLASH_BACKWARD(grad, q, k1, v1, out, lse, 0.0, False, attn_mask=mask, scale=ctx.scale)
        p_sink = torch.exp(sink_logit.detach().to(lse.dtype).view(1, -1, 1) - lse)  # [B, H, T]
        d_sink = -(p_sink * (grad * out).sum(-1)).sum((0, 2))
        return dq, dk[:, :, :-1], dv[:, :, :-1], d_sink.to(sink_logit.dtype)


def causal_attention(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor,
                     sink_logit: torch.Tensor | None) -> torch.Tensor:
    """softmax(q.k / sqrt(d) over earlier keys [and the sink]) @ v: [B, H, T, d_head] each -> [B, H, T, d_head].

    On CPU (with :data:`USE_CPU_FLASH`) the fused kernel runs in float32, outside autocast, and the result is
    returned in the inputs' dtype; elsewhere ``scaled_dot_product_attention`` in the inputs' dtype."""
    if not (USE_CPU_FLASH and qh.device.type == "cpu" and _FLASH is not None and _FLASH_BACKWARD is not None):
        if sink_logit is None:
            return F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
        return sink_sdpa(qh, kh, vh, sink_logit, causal_mask(kh.shape[2], qh.device))
    dtype = qh.dtype
    with torch.autocast("cpu", enabled=False):
        q, k, v = (t.float() for t in (qh, kh, vh))
        if sink_logit is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            z = SinkFlash.apply(q, k, v, sink_logit.float())
    return z.to(dtype)
