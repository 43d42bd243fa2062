"""The blockwise gated attention (``sparsecirc.core.gated_attention``) against the explicit form (gating.py): the
same outputs, density and gradients, with and without training noise; wired into the model by
``ModelConfig.attn_gate_block``."""
import math

import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.gated_attention import block_gated_attention, gate_block
from sparsecirc.core.hooks import record


def explicit(q, k, v, bias, noise=None):
    """The explicit form, written out: noise [B, H, T, T] (logistic) or None for the eval gate."""
    T = q.shape[2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
    g = s + bias
    if noise is None:
        mask = (g > 0).float()
    else:
        soft = torch.sigmoid(g + noise)
        mask = ((g + noise) > 0).float() + soft - soft.detach()
    mask = mask * causal
    dens = (torch.sigmoid(g) * causal).sum((-1, -2)) / causal.sum()
    return (p * mask) @ v, dens


def inputs(B=2, H=3, T=13, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, H, T, D, generator=g) * 1.5).double().requires_grad_(True) for _ in range(3)]


def block_noise(q, seed, block, bias):
    """The noise the blockwise form draws, laid out as one [B, H, T, T] matrix (zeros beyond each block's keys)."""
    B, H, T, D = q.shape
    out = torch.zeros(B, H, T, T, dtype=q.dtype)
    for i, r0 in enumerate(range(0, T, block)):
        r1 = min(T, r0 + block)
        _, g, noisy, _, _ = gate_block(q.detach(), q.detach(), r0, r1, bias, True, seed + i, 1.0)
        out[:, :, r0:r1, :r1] = noisy - g
    return out


@pytest.mark.parametrize("block", [1, 4, 5, 13, 64])
@pytest.mark.parametrize("sample", [False, True])
def test_matches_explicit_form(block, sample):
    q, k, v = inputs()
    bias = 0.3
    y, dens = block_gated_attention(q, k, v, bias, sample=sample, block=block, seed=11)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    y2, dens2 = explicit(q2, k2, v2, bias, block_noise(q, 11, block, bias) if sample else None)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(dens, dens2)
    w, wd = torch.randn_like(y), torch.randn_like(dens)
    ((y * w).sum() + (dens * wd).sum()).backward()
    ((y2 * w).sum() + (dens2 * wd).sum()).backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        assert b.grad.abs().sum() > 0
        torch.testing.assert_close(a.grad, b.grad)


def test_gradcheck_without_noise():
    q, k, v = inputs(B=1, H=2, T=6, D=3)
    assert torch.autograd.gradcheck(lambda a, b, c: block_gated_attention(a, b, c, 0.5, sample=False, block=4),
                                    (q, k, v))


def test_noise_is_drawn_and_seeded():
    q, k, v = inputs()
    a = block_gated_attention(q, k, v, 0.0, sample=True, block=4, seed=1)[0]
    b = block_gated_attention(q, k, v, 0.0, sample=True, block=4, seed=1)[0]
    c = block_gated_attention(q, k, v, 0.0, sample=True, block=4, seed=2)[0]
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.manual_seed(5)
    d = block_gated_attention(q, k, v, 0.0, sample=True, block=4)[0]
    torch.manual_seed(5)
    assert torch.equal(d, block_gated_attention(q, k, v, 0.0, sample=True, block=4)[0])


def test_bad_input():
    q, k, v = inputs()
    with pytest.raises(ValueError, match="block"):
        block_gated_attention(q, k, v, 0.0, sample=False, block=0)
    with pytest.raises(ValueError, match="must be"):
        block_gated_attention(q, k[:, :, :5], v, 0.0, sample=False)
    with pytest.raises(ValueError, match="attn_gate_block"):
        ModelConfig(attn_gate_block=8)  # without attn_gate


def test_model_eval_equals_explicit_and_hooks_fall_back():
    cfg = dict(n_layer=2, d_model=32, n_head=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=32, attn_gate=True,
               attn_gate_bias=0.0, pos_embed=True)
    torch.manual_seed(0)
    a = GPT(ModelConfig(**cfg)).eval()
    b = GPT(ModelConfig(**cfg, attn_gate_block=8)).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(3.0)
        b.load_state_dict(a.state_dict())
    tokens = torch.randint(0, 50, (3, 32), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(b(tokens), a(tokens), atol=1e-5, rtol=1e-5)
    for l_a, l_b in zip(a.blocks, b.blocks):
        torch.testing.assert_close(l_b.attn.gate_density, l_a.attn.gate_density)
    with record(b, ["blocks.0.attn.hook_sparse_mask"]) as c:  # a hook on the gate: the explicit form runs
        b(tokens)
    assert c["blocks.0.attn.hook_sparse_mask"].shape == (3, 4, 32, 32)
    assert "attn_gate_block" not in ModelConfig(**cfg).to_dict()  # committed configs serialise as before


def test_model_training_step_runs_and_is_seeded():
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, d_head=8, d_mlp=32, d_vocab=20, n_ctx=16, attn_gate=True,
                      attn_gate_bias=0.0, attn_gate_block=4)
    tokens = torch.randint(0, 20, (2, 17))
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        m = GPT(cfg).train()
        loss = m.loss(tokens) + m.blocks[0].attn.gate_density.mean()
        loss.backward()
        losses.append((float(loss.detach()), m.blocks[0].attn.W_Q.weight.grad.clone()))
    assert losses[0][0] == losses[1][0] and torch.equal(losses[0][1], losses[1][1])
    assert losses[0][1].abs().sum() > 0
