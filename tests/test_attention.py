"""The CPU attention kernels (``core.attention``) against the explicit softmax they replace."""
import math

import pytest
import torch

from sparsecirc.core import attention
from sparsecirc.core.attention import causal_attention, causal_mask, sink_sdpa
from sparsecirc.core.config import ModelConfig
from sparsecirc.core.model import GPT


def explicit(qh, kh, vh, sink_logit):
    """softmax over [q.k / sqrt(d) on earlier keys, sink_logit] (the sink's value is zero), then @ v."""
    B, H, T, D = qh.shape
    scores = (qh @ kh.transpose(-1, -2) / math.sqrt(D)).masked_fill(~causal_mask(T), float("-inf"))
    if sink_logit is None:
        return torch.softmax(scores, -1) @ vh
    sink = sink_logit.view(1, H, 1, 1).expand(B, H, T, 1)
    return torch.softmax(torch.cat([scores, sink], -1), -1)[..., :T] @ vh


def _inputs(seed, B=3, H=4, T=9, D=8):
    g = torch.Generator().manual_seed(seed)
    # [B, T, H, D] transposed, as the model hands them over (not contiguous)
    q, k, v = (torch.randn(B, T, H, D, generator=g).transpose(1, 2) for _ in range(3))
    return q, k, v, torch.randn(H, generator=g) * 2


@pytest.mark.parametrize("with_sink", [True, False])
def test_causal_attention_matches_the_explicit_softmax_in_value_and_every_gradient(with_sink):
    q, k, v, s = _inputs(0)
    a = [t.clone().requires_grad_() for t in (q, k, v, s)]
    b = [t.clone().requires_grad_() for t in (q, k, v, s)]
    out_a = causal_attention(a[0], a[1], a[2], a[3] if with_sink else None)
    out_b = explicit(b[0], b[1], b[2], b[3] if with_sink else None)
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out_a)
    out_a.backward(g)
    out_b.backward(g)
    for x, y in zip(a[:3], b[:3]):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-5, rtol=1e-5)
    if with_sink:
        assert b[3].grad.abs().max() > 1e-3  # the sink gradient is not trivially zero here
        torch.testing.assert_close(a[3].grad, b[3].grad, atol=1e-5, rtol=1e-5)


def test_the_sink_gradient_matches_finite_differences():
    q, k, v, s = (t.double() for t in _inputs(1, B=2, H=2, T=5, D=4))
    s = s.clone().requires_grad_()
    w = torch.randn(2, 2, 5, 4, dtype=torch.double, generator=torch.Generator().manual_seed(2))
    attention_in_double = lambda s_: (attention.SinkFlash.apply(q, k, v, s_) * w).sum()  # noqa: E731
    assert torch.autograd.gradcheck(attention_in_double, (s,), eps=1e-6, atol=1e-6)


def test_under_bf16_autocast_attention_runs_in_float32_and_returns_the_input_dtype():
    q, k, v, s = _inputs(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), s)
    assert out.dtype == torch.bfloat16
    ref = explicit(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), s)
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)  # only the final bf16 rounding differs


def test_the_switch_off_gives_the_earlier_sdpa_path_with_the_same_numbers(monkeypatch):
    q, k, v, s = _inputs(4)
    fast = causal_attention(q, k, v, s)
    monkeypatch.setattr(attention, "USE_CPU_FLASH", False)
    torch.testing.assert_close(causal_attention(q, k, v, s), fast, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sink_sdpa(q, k, v, s, causal_mask(q.shape[2])), fast, atol=1e-5, rtol=1e-5)


def test_a_sink_model_gives_the_same_loss_and_gradients_with_and_without_the_fused_kernel(monkeypatch):
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, d_model=32, d_head=8, n_ctx=16, d_vocab=64, attn_sink=True,
                            act_keep_frac=0.25))
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.sink_logit.normal_()
    x = torch.randint(0, 64, (4, 17), generator=torch.Generator().manual_seed(0))
    grads = []
    for flash in (True, False):
        monkeypatch.setattr(attention, "USE_CPU_FLASH", flash)
        model.zero_grad()
        loss = model.loss(x)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
