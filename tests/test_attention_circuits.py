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
            comp["sets"][name][role] = {"info": {}, **ac.analyse(model, tiny_pair(), SSPEC, seed=0)}
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
