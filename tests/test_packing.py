"""Packed forward passes (``sparsecirc.core.packing``): the prompts' real tokens end to end give the padded forward's
logits and gradients, for every architecture option the pruner meets; bad input is refused."""
import pytest
import torch
import torch.nn.functional as F

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.hooks import record
from sparsecirc.core.packing import Packed
from sparsecirc.wst.ablation import NodeMask, PairData, ablated_margin, pair_margin
from sparsecirc.wst.circuits import node_sites

BASE = dict(n_layer=2, d_model=32, n_head=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16)
VARIANTS = {
    "plain": {},
    "abstopk+sink": dict(act_keep_frac=0.25, attn_sink=True),
    "positions": dict(pos_embed=True, attn_sink=True),
    "concatenated positions": dict(pos_embed=True, d_pos_emb=8, norm="layer", mlp_activation="relu"),
    "bigram": dict(bigram_table=True, act_keep_frac=0.5),
    "three layers": dict(n_layer=3, act_keep_frac=0.25, attn_sink=True),
}


def model_of(**kw) -> GPT:
    torch.manual_seed(0)
    m = GPT(ModelConfig(**{**BASE, **kw})).eval()
    with torch.no_grad():  # larger weights: heads and AbsTopK selections matter
        for p in m.parameters():
            p.mul_(3.0)
    return m


def prompts(n: int = 11, T: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompts of lengths 1..T (padding id 0): tokens [n, T], last [n]."""
    g = torch.Generator().manual_seed(seed)
    last = torch.randint(0, T, (n,), generator=g)
    last[0], last[1] = 0, T - 1  # a one-token prompt and a full one
    tokens = torch.randint(1, BASE["d_vocab"], (n, T), generator=g)
    tokens[torch.arange(T)[None] > last[:, None]] = 0
    return tokens, last


def test_layout():
    last = torch.tensor([3, 0, 5, 2, 5])
    p = Packed.from_last(last, width=7, groups=2)
    assert p.order.tolist() == [1, 3, 0, 2, 4]  # by length, stable
    assert p.lengths.tolist() == [1, 3, 4, 6, 6]
    assert p.n_tokens == 20 and p.ends.tolist() == [0, 3, 7, 13, 19]
    tokens = torch.arange(35).view(5, 7)
    packed = p.tokens(tokens)
    want = torch.cat([tokens[b, :int(last[b]) + 1] for b in p.order.tolist()])
    assert torch.equal(packed, want)
    assert p.pos.tolist()[:8] == [0, 0, 1, 2, 0, 1, 2, 3]
    assert [g[:4] for g in p.groups] == [(0, 3, 0, 8), (3, 5, 8, 20)]  # prompts and tokens of each group
    assert sum(len(i) for i in p.local) == p.n_tokens
    assert torch.equal(p.order[p.inverse], torch.arange(5))


@pytest.mark.parametrize("bad", [dict(last=torch.tensor([])), dict(last=torch.tensor([[1]])),
                                 dict(last=torch.tensor([3, 9]), width=5), dict(last=torch.tensor([-1, 2])),
                                 dict(last=torch.tensor([1, 2]), groups=0)])
def test_bad_layouts_are_refused(bad):
    with pytest.raises(ValueError, match="Packed"):
        Packed.from_last(**bad)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("last_only", [False, True])
@pytest.mark.parametrize("groups", [1, 3, 20])
def test_packed_logits_equal_padded(name, last_only, groups):
    m = model_of(**VARIANTS[name])
    tokens, last = prompts()
    want = m(tokens, positions=last, last_only=last_only)
    got = m(tokens, positions=last, last_only=last_only, pack=Packed.from_last(last, tokens.shape[1], groups))
    assert got.shape == want.shape == (len(last), BASE["d_vocab"])
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_packing_is_not_a_no_op():
    """The comparison above can fail: a packing that puts one prompt's tokens in another's place changes logits."""
    m = model_of(act_keep_frac=0.25, attn_sink=True)
    tokens, last = prompts()
    pack = Packed.from_last(last, tokens.shape[1], 2)
    want = m(tokens, positions=last, last_only=True)
    swapped = tokens.clone()
    rows = pack.order[-2:]  # the two longest prompts: swap their tokens, keep their lengths
    swapped[rows] = tokens[rows.flip(0)]
    got = m(swapped, positions=last, last_only=True, pack=pack)
    assert not torch.allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("name", ["abstopk+sink", "positions", "three layers"])
def test_packed_gradients_of_node_gates_equal_padded(name):
    m = model_of(**VARIANTS[name])
    for p in m.parameters():
        p.requires_grad_(False)
    tokens, last = prompts(n=12)
    cand = torch.randint(0, BASE["d_vocab"], (12, 2), generator=torch.Generator().manual_seed(3))
    data = PairData(tokens, last, cand)
    sites = node_sites(m, PruneConfig().node_kinds)
    means = {n: torch.randn(d) * 0.1 for n, d in sites.items()}
    grads, margins = [], []
    for pack in (False, True):
        mask = NodeMask(sites, PruneConfig(), torch.Generator().manual_seed(0))
        margin = ablated_margin(m, data, mask.gates(), means, chunks=3, pack=pack)
        F.softplus(-margin).mean().backward()
        margins.append(margin.detach())
        grads.append(torch.cat([t.grad for t in mask.tau]))
    torch.testing.assert_close(margins[1], margins[0], atol=2e-5, rtol=1e-5)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_pair_margin_packed_equals_padded_across_batches():
    m = model_of(act_keep_frac=0.25, attn_sink=True)
    tokens, last = prompts(n=30, seed=5)
    cand = torch.randint(0, BASE["d_vocab"], (30, 2), generator=torch.Generator().manual_seed(1))
    data = PairData(tokens, last, cand)
    want = pair_margin(m, data, batch_size=7, chunks=2)
    got = pair_margin(m, data, batch_size=7, chunks=2, pack=True)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_hooks_see_packed_rows():
    m = model_of(act_keep_frac=0.25)
    tokens, last = prompts()
    pack = Packed.from_last(last, tokens.shape[1])
    with record(m, ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_q"]) as c:
        m(tokens, positions=last, last_only=True, pack=pack)
    assert c["blocks.0.hook_resid_pre"].shape == (1, pack.n_tokens, BASE["d_model"])
    assert c["blocks.1.attn.hook_q"].shape == (1, len(last), BASE["n_head"] or 4, BASE["d_head"])


def test_refusals():
    tokens, last = prompts()
    pack = Packed.from_last(last, tokens.shape[1])
    m = model_of()
    with pytest.raises(ValueError, match="positions"):
        m(tokens, pack=pack)
    with pytest.raises(ValueError, match="positions"):
        m(tokens, positions=last.clamp(max=3), pack=pack)
    with pytest.raises(ValueError, match="Packed"):
        m(tokens[:, :10], positions=last.clamp(max=9), pack=Packed.from_last(last.clamp(max=9), 12))
    with pytest.raises(ValueError, match="attn_gate"):
        model_of(attn_gate=True)(tokens, positions=last, pack=pack)
    with pytest.raises(ValueError, match="hook_pattern"):
        with record(m, ["blocks.0.attn.hook_pattern"]):
            m(tokens, positions=last, pack=pack)


def test_mask_training_packed_and_padded_agree():
    """A short mask run packed and padded: the same kept-node trajectory and tau up to float rounding; the bisection
    on packed prompts finds the same circuit size."""
    from sparsecirc.wst.prune import bisect_k, train_mask

    m = model_of(act_keep_frac=0.25, attn_sink=True)
    tokens, last = prompts(n=40, seed=7)
    cand = torch.randint(0, BASE["d_vocab"], (40, 2), generator=torch.Generator().manual_seed(2))
    data = PairData(tokens, last, cand)
    sites = node_sites(m, PruneConfig().node_kinds)
    means = {n: torch.randn(d) * 0.1 for n, d in sites.items()}
    runs = {}
    for pack in (False, True):
        cfg = PruneConfig(steps=25, batch_pairs=8, k_coef=1e-3, lr=3e-2, calibrate=False, pack=pack)
        mask, hist = train_mask(m, data, means, cfg)
        runs[pack] = (mask, hist, cfg)
    (mp, hp, cp), (mk, hk, ck) = runs[False], runs[True]
    assert hp["kept"] == hk["kept"] and hp["kept"][-1] < hp["kept"][0]
    torch.testing.assert_close(mk.flat(), mp.flat(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        full = float(F.softplus(-pair_margin(m, data)).mean())
    target = full + 0.2
    a, b = bisect_k(m, mp, data, means, target, cp), bisect_k(m, mk, data, means, target, ck)
    assert a is not None and b is not None and a[0] == b[0]
