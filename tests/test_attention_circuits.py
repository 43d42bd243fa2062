"""P2's circuit study (spa.attention_circuits) and the fine-tuned top-k baseline (spa.topk_finetune)."""
import copy

import pytest
import torch

from sparsecirc.spa import attention_circuits as ac
from sparsecirc.spa import patching as P
from sparsecirc.spa import topk_finetune

SSPEC = {"ig_steps": 2, "exact_prompts": 3, "attn_exact_prompts": 1, "attn_exact_per_prompt": 3, "points": 6}


def tiny_pair(n=4, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 30, (n, T), generator=g)
    corr = tok.clone()
    corr[:, 1] = (corr[:, 1] + 1) % 30
    return P.PatchPair(tok, corr, torch.full((n,), T - 1), torch.randint(0, 30, (n, 2), generator=g))


@pytest.fixture
def results(patching_model):
    comp = {"dense": "d", "sparse": "s", "sets": {"a": {}, "b": {}}}
    for name in comp["sets"]:
        for role, gate in (("dense", False), ("sparse", True)):
            model = patching_model(attn_gate=gate, attn_gate_bias=0.3 * gate)
            comp["sets"][name][role] = {"info": {}, **ac.analyse(model, tiny_pair(), tiny_pair(seed=1), SSPEC,
                                                                      seed=0)}
    return {"comparisons": {"toy": comp}, "level": 0.9, "settings": SSPEC}


def test_analyse_records_curves_scores_and_consistent_ends(results):
    r = results["comparisons"]["toy"]["sets"]["a"]
    assert set(r["sparse"]["curves"]) == {"recompute", "freeze"} and set(r["dense"]["curves"]) == {"recompute"}
    assert len(r["dense"]["scores"]["exact"]) == r["dense"]["n_edges"]
    assert -1 <= r["dense"]["spearman"]["eap_ig"] <= 1
    assert ac.curve_ends_ok(results)
    broken = copy.deepcopy(results)
    broken["comparisons"]["toy"]["sets"]["a"]["dense"]["curves"]["recompute"]["edges"]["effect"][-1] = 0.7
    assert not ac.curve_ends_ok(broken)


def test_curves_are_measured_on_the_held_out_prompts_with_an_in_sample_control(results):
    r = results["comparisons"]["toy"]["sets"]["a"]["dense"]
    assert set(r["in_sample"]) >= {"edges", "attention_edges"} and "heads" not in r["in_sample"]
    assert set(r["smallest_in_sample"]) == {"edges", "attention_edges"}
    # the held-out curve and the in-sample control rank differently, so they differ somewhere
    assert r["curves"]["recompute"]["edges"]["effect"] != r["in_sample"]["edges"]["effect"]


def test_relative_attention_scores_carry_a_ranking_to_prompts_of_other_lengths():
    from sparsecirc.spa import circuit_curves as cc
    g = torch.Generator().manual_seed(0)
    attn = [torch.randn(3, 2, 6, 6, generator=g).tril() for _ in range(2)]
    last = torch.tensor([5, 3, 4])
    for p in range(3):  # one prompt pooled and read back at its own length gives its own causal scores
        one = cc.relative_attention_scores([a[p:p + 1] for a in attn], last[p:p + 1])
        back = cc.attention_scores_at(one, last[p:p + 1], 6)
        t = int(last[p]) + 1
        assert all(torch.allclose(back[la][0][:, :t, :t], attn[la][p][:, :t, :t]) for la in range(2))
        assert all(back[la][0][:, t:].abs().sum() == 0 for la in range(2))
    # a prompt two tokens shorter reads the pooled scores shifted by two positions
    pooled = cc.relative_attention_scores([a[:1] for a in attn], last[:1])
    short = cc.attention_scores_at(pooled, torch.tensor([3]), 4)[0][0]
    assert torch.allclose(short, pooled[0, :, :4, :4].flip(-1).flip(-2))
    with pytest.raises(ValueError, match="do not fit"):
        cc.curves(None, tiny_pair(n=2), None, None, [torch.zeros(3, 2, 8, 8)], units=("attention_edges",))


def test_fitting_and_evaluation_prompts_are_disjoint():
    from sparsecirc.spa import circuit_curves as cc
    fit, _ = cc.addition_pairs(300, seed=0, part="fit")
    ev, info = cc.addition_pairs(300, seed=0, part="eval")
    assert info["part"] == "eval"
    assert not {tuple(r) for r in fit.clean[:, :5].tolist()} & {tuple(r) for r in ev.clean[:, :5].tolist()}
    with pytest.raises(ValueError, match="part"):
        cc.addition_pairs(3, part="test")
    spec = {"induction": {"length": 12, "vocab": [200, 300]}}
    a, _ = ac.prompt_set(None, "induction", spec, 20, 0, part="fit")
    b, _ = ac.prompt_set(None, "induction", spec, 20, 0, part="eval")
    assert not torch.equal(a.clean, b.clean)


def test_ratio_table_and_summary_leave_out_unsolved_sets(results):
    res = copy.deepcopy(results)
    sets = res["comparisons"]["toy"]["sets"]
    for name, (kd, ks) in {"a": (40, 10), "b": (9, 3)}.items():
        for role, k in (("dense", kd), ("sparse", ks)):
            sets[name][role]["accuracy"] = 1.0
            sets[name][role]["smallest"] = {"edges": k, "heads": 2, "attention_edges": k}
    sets["b"]["dense"]["accuracy"] = 0.5  # not solved by one model: out of the geometric mean
    tab = ac.ratio_table(res)
    assert tab["edges ratio"].tolist() == [4.0, 3.0]
    s = ac.summary(res)
    assert s["ratios"]["toy"]["edges"] == pytest.approx(4.0) and s["left_out"] == ["b"]
    sets["b"]["dense"]["accuracy"] = 1.0
    assert ac.summary(res)["ratios"]["toy"]["edges"] == pytest.approx(12 ** 0.5)


def test_gate_modes_and_correlation_tables(results):
    g = ac.gate_modes_table(results)
    assert {"edges (recompute)", "edges (freeze)"} <= set(g.columns) and len(g) == 2
    c = ac.correlation_table(results)
    assert len(c) == 4 and c["rho EAP-IG"].between(-1, 1).all()


def test_kept_attention_edges_reach_the_level_on_their_prompt(patching_model):
    m = patching_model(seed=2)
    pair = tiny_pair(seed=2)
    c = ac.kept_attention_edges(m, pair, 0, steps=2)
    assert c["k"] is not None and len(c["edges"]) == c["k"] and c["graph"].shape == (2, 8, 8)
    assert all(q >= k for _, _, q, k, _ in c["edges"])  # causal
    i = c["curve"]["k"].index(c["k"])
    assert all(e >= 0.9 for e in c["curve"]["effect"][i:])


def test_topk_variants():
    kw, edges = topk_finetune.variant_kwargs({"budget": "matched"}, [10.4, 3.6, 0.2])
    assert kw["per_layer_budget"] == [10, 4, 1] and edges == 15 and kw["renormalize"] is False
    kw, edges = topk_finetune.variant_kwargs({"k": 2}, [1.0])
    assert kw == {"k": 2, "renormalize": False} and edges is None
    with pytest.raises(ValueError, match="budget"):
        topk_finetune.variant_kwargs({"budget": "half"}, [1.0])


def test_in_sample_table_sets_the_control_beside_the_held_out_sizes(results):
    tab = ac.in_sample_table(results)
    assert len(tab) == 4 and {"edges, held-out", "edges, in-sample", "attention_edges, in-sample"} <= set(tab.columns)
    r = results["comparisons"]["toy"]["sets"]["a"]["dense"]
    assert tab.iloc[0]["edges, in-sample"] == r["smallest_in_sample"]["edges"]
