"""Attribution patching (sparsecirc.spa.patching) and P2's explained-effect curves (spa.circuit_curves)."""
import pytest
import torch

from sparsecirc.core.config import ModelConfig
from sparsecirc.spa import circuit_curves as cc
from sparsecirc.spa import patching as P

VARIANTS = [dict(), dict(attn_gate=True, attn_gate_bias=0.5), dict(attn_sink=True, pos_embed=True),
            dict(bigram_table=True, use_bias=False)]


def pair_for(seed=0, n=6, T=10):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 50, (n, T), generator=g)
    corr = tok.clone()
    corr[:, 2] = torch.randint(0, 50, (n,), generator=g)
    last = torch.tensor([T - 1, T - 2, T - 1, 5, T - 1, T - 1])[:n]
    cand = torch.randint(0, 50, (n, 2), generator=g)
    return P.PatchPair(tok, corr, last, cand)


@pytest.mark.parametrize("kw", VARIANTS)
def test_forward_equals_model(kw, patching_model):
    m, pair = patching_model(**kw), pair_for()
    g = P.ComponentGraph(m.cfg)
    ref = m(pair.clean)[torch.arange(len(pair)), pair.last].gather(1, pair.cand)
    assert torch.allclose(P.forward(m, pair.clean, pair.last, pair.cand, g).metric, ref[:, 0] - ref[:, 1], atol=1e-5)


@pytest.mark.parametrize("kw", VARIANTS)
def test_keep_all_is_clean_and_keep_none_is_corrupt(kw, patching_model):
    m, pair = patching_model(**kw), pair_for()
    g = P.ComponentGraph(m.cfg)
    clean, corr = P.run_pair(m, pair, g)
    assert torch.allclose(P.patched_metric(m, pair, g, keep=g.valid.clone()), clean.metric, atol=1e-5)
    assert torch.allclose(P.patched_metric(m, pair, g, keep=torch.zeros_like(g.valid)), corr.metric, atol=1e-5)
    # every attention edge patched: position 2 (the only change) reaches the scored positions through attention only
    none = [torch.zeros(len(pair), 4, 10, 10, dtype=torch.bool)] * 2
    assert torch.allclose(P.patched_metric(m, pair, g, keep_attn=none), corr.metric, atol=1e-5)
    assert not torch.allclose(clean.metric, corr.metric, atol=1e-3)


def test_graph_counts_match_eap_ig_convention():
    cfg = ModelConfig(n_layer=12, d_model=64, n_head=12, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16)
    # GPT-2 small in EAP-IG's convention (q, k, v inputs per head): 32,491 edges (Hanna et al. 2024)
    assert P.ComponentGraph(cfg, qkv=True).n_edges == 32491
    two = P.ComponentGraph(ModelConfig(n_layer=2, n_head=8, d_model=32, d_head=4, d_vocab=50, n_ctx=8), qkv=False)
    # layer 0: 8 heads <- input; MLP0 <- input + 8 heads; layer 1: 8 heads <- 10; MLP1 <- 18; logits <- 19
    assert two.n_edges == 8 + 9 + 80 + 18 + 19


@pytest.mark.parametrize("kw", VARIANTS[:3])
def test_eap_scores_are_the_derivative_of_partial_patching(kw, patching_model):
    """EAP's score of an edge is d m / d(fraction of the edge patched) at 0: check against finite differences."""
    m, pair = patching_model(**kw), pair_for()
    g = P.ComponentGraph(m.cfg)
    scores, attn = P.eap_scores(m, pair, g, method="eap")
    clean, corr = P.run_pair(m, pair, g)
    eps = 1e-3
    edges = torch.nonzero(g.valid)
    for u, v in edges[torch.randperm(len(edges), generator=torch.Generator().manual_seed(1))[:12]].tolist():
        keep = g.valid.double().float()
        keep[u, v] = 1 - eps
        with torch.no_grad():
            mm = P.forward(m, pair.clean, pair.last, pair.cand, g, keep=keep, corrupt=corr).metric
        fd = float((mm - clean.metric).mean()) / eps
        assert fd == pytest.approx(float(scores[u, v]), abs=2e-3 + 2e-2 * abs(fd)), (g.up[u], g.down[v])
    # attention edges: the same on a few (layer, head, query, key) edges of one prompt
    for layer, h, q, k in [(0, 1, 9, 2), (1, 0, 9, 2), (1, 3, 9, 9), (0, 2, 4, 2)]:
        keep_attn = [torch.ones(len(pair), 4, 10, 10) for _ in range(2)]
        keep_attn[layer][0, h, q, k] = 1 - eps
        with torch.no_grad():
            mm = P.forward(m, pair.clean, pair.last, pair.cand, g, keep_attn=keep_attn, corrupt=corr).metric
        fd = float(mm[0] - clean.metric[0]) / eps
        assert fd == pytest.approx(float(attn[layer][0, h, q, k]), abs=2e-3 + 2e-2 * abs(fd))


def test_eap_ig_tracks_exact_patching_better_than_chance(patching_model):
    m, pair = patching_model(seed=3), pair_for(seed=3)
    g = P.ComponentGraph(m.cfg)
    ex = P.exact_scores(m, pair, g)
    ig, _ = P.eap_scores(m, pair, g, method="eap-ig", steps=8)
    assert P.spearman(ig[g.valid], ex[g.valid]) > 0.6
    shuffled = ig[g.valid][torch.randperm(g.n_edges, generator=torch.Generator().manual_seed(0))]
    assert abs(P.spearman(shuffled, ex[g.valid])) < 0.3


def test_frozen_and_recomputed_gates_differ_only_for_gated_models(patching_model):
    for kw, differ in ((dict(attn_gate=True, attn_gate_bias=0.0), True), (dict(), False)):
        m, pair = patching_model(seed=5, **kw), pair_for(seed=5)
        g = P.ComponentGraph(m.cfg)
        keep = g.valid.clone()
        keep[0, g.down_attn[1]] = False  # layer 1's heads read the corrupted input, and run live on it
        a = P.patched_metric(m, pair, g, keep=keep, gate="recompute")
        b = P.patched_metric(m, pair, g, keep=keep, gate="freeze")
        assert (not torch.allclose(a, b, atol=1e-5)) == differ
    with pytest.raises(ValueError, match="gate"):
        P.patched_metric(m, pair, g, keep=keep, gate="open")


def test_abstopk_models_are_refused_and_bad_pairs_raise(patching_model):
    m = patching_model(act_keep_frac=0.25)
    with pytest.raises(ValueError, match="AbsTopK"):
        P.forward(m, torch.zeros(1, 4, dtype=torch.long), torch.tensor([3]), torch.tensor([[1, 2]]),
                  P.ComponentGraph(m.cfg))
    with pytest.raises(ValueError, match="same shape"):
        P.PatchPair(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 6, dtype=torch.long), torch.tensor([4, 4]),
                    torch.zeros(2, 2, dtype=torch.long))


def test_top_edges_and_smallest_k():
    s = torch.tensor([[0.1, -3.0, float("nan")], [2.0, float("nan"), -0.5]])
    keep = P.top_edges(s, 2)
    assert keep.tolist() == [[False, True, False], [True, False, False]]
    curve = {"k": [0, 1, 2, 4, 8], "effect": [0.0, 0.95, 0.85, 0.91, 1.0]}
    assert cc.smallest_k(curve) == 4  # the first crossing falls back below 0.9
    assert cc.smallest_k({"k": [0, 1], "effect": [0.1, 0.5]}) is None
    assert cc.grid(1000)[:3] == [0, 1, 2] and cc.grid(1000)[-1] == 1000


def test_prompt_pair_builders():
    pair, info = cc.addition_pairs(200, seed=1)
    diff = (pair.clean != pair.corrupt)
    assert bool(diff[:, 3:5].any(1).all())  # an operand digit of b changed
    assert not bool(diff[:, [0, 1, 2, 5]].any())  # a, '+', '=' unchanged
    assert bool((pair.cand[:, 0] != pair.cand[:, 1]).all())
    assert info["tens_changed"] + info["units_changed"] == 200
    ind, _ = cc.induction_pairs(10, 12, (200, 300), seed=0)
    d = (ind.clean != ind.corrupt)
    assert d.sum(1).tolist() == [1] * 10 and bool((d.float().argmax(1) == 9).all())
    m = 9
    assert torch.equal(ind.cand[:, 0], ind.clean[:, m]) and torch.equal(ind.cand[:, 1], ind.corrupt[:, m])
    assert torch.equal(ind.clean[:, 12:21], ind.clean[:, :9])  # the second copy repeats the first
    with pytest.raises(ValueError, match="too small"):
        cc.induction_pairs(2, 12, (0, 10))
