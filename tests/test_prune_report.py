"""Reading the converged circuit-size study: the empty-circuit rule, ratios per budget and seed, convergence,
the controls' comparison, and the consistent nonsense rule."""
import math

import datasets
import numpy as np
import pandas as pd
import pytest

from sparsecirc.wst import prune_report as pr
from sparsecirc.wst.prune_study import nonsense_rule

S, D = "sparse", "dense"


def _cell(edges, nodes=None):
    return None if edges is None else {"edges": edges, "nodes": nodes if nodes is not None else max(1, edges // 4),
                                       "edges_with_residual": edges + 1, "loss_val": 0.1}


def _row(model, task, by_budget, **kw):
    return {"condition": "main", "model": model, "task": task,
            "budgets": {str(b): {"0.15": _cell(e)} for b, e in by_budget.items()},
            "targets": {"0.15": _cell(by_budget[max(by_budget)])}, "converged_at": kw.get("conv"), "steps_run": 100,
            "trajectory": {"step": [1, 2], "kept": [10, 9], "task_loss": [0.3, 0.2]}, "seconds": 1.0,
            **kw.get("extra", {})}


def _results(dense_edges=(100, 400), sparse_edges=(10, 20)):
    runs = [_row(S, "a", {80: 40, 1000: sparse_edges[0]}), _row(D, "a", {80: 500, 1000: dense_edges[0]}),
            _row(S, "b", {80: 50, 1000: sparse_edges[1]}), _row(D, "b", {80: 900, 1000: dense_edges[1]}),
            _row(S, "empty", {80: 0, 1000: 0}), _row(D, "empty", {80: 30, 1000: 30}),
            _row(S, "missed", {80: None, 1000: None}), _row(D, "missed", {80: 5, 1000: 5})]
    return {"tasks": ["a", "b", "empty", "missed"], "budgets": [80, 1000], "targets": [0.15], "runs": runs}


def test_usable_tasks_leave_out_empty_and_unreached_circuits():
    ok, empty = pr.usable(_results(), 1000, 0.15)
    assert sorted(ok) == ["a", "b"] and empty == ["empty"]


def test_ratio_is_a_ratio_of_geometric_means_over_usable_tasks():
    res = _results()
    want = math.sqrt(100 * 400) / math.sqrt(10 * 20)
    assert math.isclose(pr.ratio(res, S, D, 1000, 0.15), want)
    assert pr.ratio({**res, "runs": [r for r in res["runs"] if r["task"] in ("empty", "missed")]}, S, D, 1000,
                    0.15) is None


def test_headline_takes_the_largest_budget_averages_seeds_and_measures_convergence():
    r0, r1 = _results(), _results(dense_edges=(200, 800))
    h = pr.headline({0: r0, 1: r1}, S, D, 0.15)
    assert h["budget"] == 1000 and h["previous budget"] == 80
    r_a, r_b = pr.ratio(r0, S, D, 1000, 0.15), pr.ratio(r1, S, D, 1000, 0.15)
    assert math.isclose(h["ratio"], (r_a + r_b) / 2)
    prev = (pr.ratio(r0, S, D, 80, 0.15) + pr.ratio(r1, S, D, 80, 0.15)) / 2
    assert math.isclose(h["converged change"], abs(h["ratio"] - prev) / prev)
    per_task = [10.0, 20.0, 20.0, 40.0]  # dense / sparse of tasks a and b in seed 0, then seed 1
    assert h["band"] == pytest.approx((float(np.percentile(per_task, 5)), float(np.percentile(per_task, 95))))
    assert h["empty"] == ["empty"] and h["tasks"] == ["a", "b"]


def test_budget_table_has_a_row_per_budget_and_seed():
    t = pr.budget_table({0: _results(), 3: _results()}, S, D, 0.15)
    assert list(t.index) == [(80, 0), (80, 3), (1000, 0), (1000, 3)]
    assert (t["empty left out"] == 1).all()


def test_control_effect_compares_with_the_reference_of_the_same_seed_and_model():
    ref0, ref1 = _results(), _results(sparse_edges=(20, 20))
    ctrl = {"budgets": [80, 1000], "runs": [
        {**_row(S, "a", {80: 90, 1000: 40}), "condition": "zero_ablation"},
        {**_row(S, "b", {80: 90, 1000: None}), "condition": "zero_ablation"}]}
    e = pr.control_effect({0: ctrl}, {0: ref0}, "zero_ablation", S, 0.15)
    assert (e["reached"], e["runs"]) == (1, 2) and math.isclose(e["vs main"], 40 / 10)
    assert e["summary"] == "1/2 reached, 40 edges"
    two = pr.control_effect({0: ctrl, 1: ctrl}, {0: ref0, 1: ref1}, "zero_ablation", S, 0.15)
    assert (two["reached"], two["runs"]) == (2, 4) and math.isclose(two["vs main"], math.sqrt(4.0 * 2.0))
    assert pr.control_effect({}, {0: ref0}, "zero_ablation", S, 0.15)["summary"] == "not measured"
    assert pr.control_effect({0: ctrl}, {0: ref0}, "random_init", S, 0.15)["summary"] == "0/0 reached"
    frame = pr.controls_frame({0: ctrl, 1: ctrl}, {0: ref0, 1: ref1}, 0.15)
    assert frame.loc[("zero_ablation", "a", 1), "edges"] == 40 and frame.loc[("main", "a", 1), "edges"] == 20


def test_nonsense_rule_is_a_fixed_function_of_the_prompt():
    ds = datasets.Dataset.from_dict({"prompt_ids": [[1, 2], [1, 2, 3], [4, 5, 6], [7]],
                                     "target": ["x"] * 4, "distractor": ["y"] * 4,
                                     "target_id": [10] * 4, "distractor_id": [11] * 4})
    out = nonsense_rule(ds)
    assert out["target_id"] == [10, 11, 11, 11] and out["distractor_id"] == [11, 10, 10, 10]
    assert nonsense_rule(ds)["target"] == out["target"]  # the same prompts, the same labels, every time
    with pytest.raises(ValueError, match="unknown nonsense rule"):
        nonsense_rule(ds, "coin")


def test_inverse_summary_counts_circuits_that_hurt_more_than_random_nodes():
    res = _results()
    for r, (inv, rnd) in zip(res["runs"], [(2.0, 0.5), (0.3, 0.6), (1.0, 0.7), (1.0, 0.2)]):
        r.update(circuit={"nodes": {"h": [1, 2]}}, inverse={"loss": inv, "accuracy": 0.5},
                 random_inverse={"loss": rnd, "accuracy": 0.7})
    s = pr.inverse_summary(res, S)
    assert (s["circuits"], s["beats random"]) == (2, 2) and math.isclose(s["random loss"], 0.6)
    assert pr.inverse_summary(res, D)["beats random"] == 1  # dense a: 0.3 < 0.6; dense b: 1.0 > 0.2
    for r in res["runs"]:
        r.pop("random_inverse", None)
    assert pr.inverse_summary(res, S)["random loss"] == "not measured"


def test_ranking_table_puts_the_headline_tiebreak_beside_the_alternatives():
    res = _results()
    for r in res["runs"]:
        r["tiebreak"] = "overshoot"
        cell = r["targets"]["0.15"]
        r["rankings"] = {"none": None if cell is None else {**cell, "edges": cell["edges"] * (3 if r["model"] == D
                                                                                              else 1)}}
    t = pr.ranking_table({0: res}, S, D, 0.15)
    assert list(t.index) == ["overshoot (headline)", "none"]
    assert math.isclose(t.loc["overshoot (headline)", "ratio (mean)"], pr.ratio(res, S, D, 1000, 0.15))
    assert math.isclose(t.loc["none", "ratio (mean)"], 3 * pr.ratio(res, S, D, 1000, 0.15))


def test_search_frame_marks_the_chosen_grid_point():
    res = _results()
    res["runs"][0]["search"] = {"lr": 0.01, "k_coef": 1e-3, "grid": [
        {"lr": 0.01, "k_coef": 1e-4, "nodes": 30, "loss": 0.1}, {"lr": 0.01, "k_coef": 1e-3, "nodes": 20, "loss": 0.1}]}
    f = pr.search_frame(res)
    assert list(f.columns) == ["0.01 / 0.0001", "0.01 / 0.001", "chosen"]
    assert f.loc[(S, "a"), "chosen"] == "0.01 / 0.001" and f.loc[(S, "a"), "0.01 / 0.001"] == 20
    assert pr.search_frame(_results()).empty


def test_frontier_frame_takes_tasks_every_model_reached():
    import types

    from sparsecirc.core.config import ModelConfig
    from sparsecirc.core.model import GPT
    model = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=8, d_vocab=20))
    runs = {m: types.SimpleNamespace(model=model, metrics={"val_loss": v}) for m, v in ((S, 3.0), (D, 3.5))}
    f = pr.frontier_frame({0: _results(), 1: _results(sparse_edges=(40, 40))}, runs, {S: "s", D: "d"}, 0.15)
    assert f.loc["s", "edges seed 0"] == pytest.approx(math.sqrt(10 * 20))
    assert f.loc["s", "edges"] == pytest.approx((math.sqrt(200) + 40) / 2) and f.loc["d", "tasks"] == 2
    assert f.loc["s", "val loss"] == 3.0 and f.loc["d", "val loss"] == 3.5
    res = _results()
    for r in pr.main_rows(res):  # clean-up halves every reached circuit; the sparse circuit of task b is not cleaned
        edges = (r["targets"]["0.15"] or {}).get("edges")
        if edges is not None and (r["model"], r["task"]) != (S, "b"):
            r["cleaned"] = {**_cell(edges // 2), "test": {"loss": 0.1, "accuracy": 1.0}}
    c = pr.frontier_frame({0: res}, runs, {S: "s", D: "d"}, 0.15, cleaned=True)
    assert c.loc["s", "edges"] == pytest.approx(5) and c.loc["d", "edges"] == pytest.approx(50)
    assert c.loc["d", "tasks"] == 1  # only task a has a non-empty cleaned circuit for every model


def test_collapsed_runs_are_those_whose_mask_ends_near_chance():
    res = _results()
    res["runs"][1]["trajectory"] = {"step": list(range(1, 21)), "kept": [5] * 20, "task_loss": [0.1] * 10 + [0.69] * 10}
    out = pr.collapsed_runs({3: res})
    assert [(c["seed"], c["model"], c["task"]) for c in out] == [(3, D, "a")] and out[0]["edges"] == 100
    assert pr.collapsed_runs({0: _results()}) == []
    res["runs"][1]["collapse"] = {"first_final_task_loss": 0.69, "final_task_loss": 0.05, "rerun": True,
                                  "still_collapsed": False}
    res["runs"][0]["collapse"] = {"final_task_loss": 0.69, "rerun": False}  # not rerun: not listed
    out = pr.collapsed_runs({3: res})
    assert len(out) == 1 and out[0]["rerun"] and not out[0]["still collapsed"] and out[0]["first batch loss"] == 0.69


def test_controls_compare_with_the_reference_after_the_controls_step_cap():
    ref = _results()
    ref["runs"][0]["budgets"]["300"] = {"0.15": _cell(25)}  # sparse task a after 300 steps; 10 edges at 1000
    ctrl = {"budgets": [80, 300], "runs": [{**_row(S, "a", {80: 90, 300: 50}), "condition": "zero_ablation"}]}
    e = pr.control_effect({0: ctrl}, {0: ref}, "zero_ablation", S, 0.15)
    assert math.isclose(e["vs main"], 50 / 25)
    frame = pr.controls_frame({0: ctrl}, {0: ref}, 0.15)
    assert frame.loc[("main", "a", 0), "edges"] == 25 and frame.loc[("zero_ablation", "a", 0), "edges"] == 50


def test_cleanup_table_reports_the_cleaned_circuits_beside_the_bisected_ones():
    res = _results()
    for r in pr.main_rows(res):
        edges = (r["targets"]["0.15"] or {}).get("edges")
        if edges is not None:  # clean-up halves every circuit's edges, except the dense circuit of task a
            keep = edges if (r["model"], r["task"]) == (D, "a") else edges // 2
            r["cleaned"] = {**_cell(keep), "test": {"loss": 0.2 if r["model"] == S else 0.1, "accuracy": 1.0}}
    t = pr.cleanup_table({0: res}, S, D, 0.15)
    row = t.loc[0]
    assert row["tasks"] == 2  # empty / missed tasks are left out both ways
    assert math.isclose(row["ratio (bisected)"], math.sqrt(100 * 400) / math.sqrt(10 * 20))
    assert math.isclose(row["ratio (cleaned)"], math.sqrt(100 * 200) / math.sqrt(5 * 10))
    assert math.isclose(row["sparse edges cleaned"], math.sqrt(5 * 10))
    assert math.isclose(row["sparse cleaned test loss"], 0.2)
    assert not len(pr.cleanup_table({0: _results()}, S, D, 0.15))  # no clean-up: nothing to report


def test_headline_at_the_budget_every_seed_reached_and_convergence_on_the_seeds_built_further():
    long = _results()
    for r in long["runs"]:  # seed 0 also ran to 3000 steps: every circuit as at 1000, dense ones halved
        cell = r["budgets"]["1000"]["0.15"]
        r["budgets"]["3000"] = {"0.15": None if cell is None else _cell(cell["edges"] // (2 if r["model"] == D else 1))}
        r["targets"] = {"0.15": r["budgets"]["3000"]["0.15"]}
    long["budgets"] = [80, 1000, 3000]
    short = _results(dense_edges=(1000, 4000))  # seed 1 stopped at 1000 steps, with a very different ratio
    h = pr.headline({0: long, 1: short}, S, D, 0.15)
    assert h["budget"] == 1000 and h["seeds"] == [0, 1] and list(h["ratio per seed"]) == [0, 1]
    assert math.isclose(h["ratio"], (pr.ratio(long, S, D, 1000, 0.15) + pr.ratio(short, S, D, 1000, 0.15)) / 2)
    assert (h["previous budget"], h["largest budget"], h["convergence seeds"]) == (1000, 3000, [0])
    r1000, r3000 = pr.ratio(long, S, D, 1000, 0.15), pr.ratio(long, S, D, 3000, 0.15)
    assert math.isclose(h["converged change"], abs(r3000 - r1000) / r1000)  # seed 1 does not enter
    assert math.isclose(h["largest circuit move"], 2.5)  # the dense "missed" circuit: 5 -> 2 edges
    both = pr.headline({0: long}, S, D, 0.15)
    assert both["budget"] == 3000 and math.isclose(both["ratio"], r3000)


def test_task_shortcuts_put_the_last_token_baseline_beside_the_circuits():
    res = {"tasks": ["if_equals", "var_if"], "budgets": [1000], "targets": [0.15],
           "runs": [_row(S, "if_equals", {1000: 12}), _row(D, "if_equals", {1000: 300}),
                    _row(S, "var_if", {1000: None}), _row(D, "var_if", {1000: 900})]}
    t = pr.task_shortcuts(res, 0.15)
    assert t.loc["if_equals", "last-token baseline"] > 0.9  # measured leak: ` x` after `if` vs a line-initial `x`
    assert abs(t.loc["var_if", "last-token baseline"] - 0.5) < 0.1
    assert t.loc["if_equals", "sparse edges"] == 12 and pd.isna(t.loc["var_if", "sparse edges"])
