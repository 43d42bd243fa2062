import math

import pytest

from sparsecirc.wst.prune_compare import study_comparison


def _row(model, task, edges, nodes, cleaned=None, budget=100):
    r = {"model": model, "task": task, "condition": "main",
         "budgets": {str(budget): {"0.15": None if edges is None else {"edges": edges, "nodes": nodes}}}}
    if cleaned is not None:
        r["cleaned"] = {"edges": cleaned}
    return r


def _study(rows, rule=None):
    res = {"targets": [0.15], "budgets": [10, 100], "tasks": sorted({r["task"] for r in rows}), "runs": rows}
    if rule:
        res["bisect_rule"] = rule
    return res


def test_study_comparison_rows_ratios_and_rules():
    a = _study([_row("s", "t1", 10, 5, cleaned=8), _row("d", "t1", 100, 20), _row("s", "t2", 4, 2),
                _row("d", "t2", 160, 30), _row("s", "t3", 0, 0), _row("d", "t3", 50, 9), _row("s", "t4", None, None),
                _row("d", "t4", 70, 12)])
    b = _study([_row("S", "t1", 20, 6), _row("D", "t1", 40, 11)], rule="own-first")
    df = study_comparison({"one": (a, "s", "d"), "two": (b, "S", "D")})
    assert df.loc[("one", "t1"), "ratio (edges)"] == pytest.approx(10.0)
    assert df.loc[("one", "t1"), "sparse edges cleaned"] == 8
    assert math.isnan(df.loc[("one", "t3"), "ratio (edges)"])  # an empty circuit is left out
    assert math.isnan(df.loc[("one", "t4"), "ratio (edges)"])  # not reached
    gm = df.loc[("one", "geometric mean")]
    assert gm["ratio (edges)"] == pytest.approx(math.sqrt(10 * 40))  # over t1 and t2 only
    assert gm["sparse edges"] == pytest.approx(math.sqrt(10 * 4))
    assert df.loc[("one", "t1"), "bisect rule"] == "all-first" and df.loc[("two", "t1"), "bisect rule"] == "own-first"
    assert df.loc[("two", "geometric mean"), "ratio (edges)"] == pytest.approx(2.0)
    assert set(df.loc["one", "budget"]) == {100}


def test_study_comparison_needs_a_study():
    with pytest.raises(ValueError, match="no studies"):
        study_comparison({})


def test_bisection_overshoots_reads_the_kept_trajectory():
    from sparsecirc.wst.prune_compare import bisection_overshoots
    run = {"model": "s", "task": "t1", "condition": "main",
           "trajectory": {"step": [1, 51, 101, 151], "kept": [900, 60, 40, 40]},
           "budgets": {"80": {"0.15": {"nodes": 500, "edges": 9}}, "150": {"0.15": {"nodes": 40, "edges": 3}},
                       "100": {"0.15": {"nodes": 70, "edges": 5}}, "60": {"0.15": None}}}
    df = bisection_overshoots({"runs": [run]})
    assert df.attrs["checked"] == 3
    # budget 80: samples 51 and 101 kept 60 and 40 -> 60; 500 > 72 is an overshoot. Budget 100: 60 (samples 51
    # and 101): 70 <= 72 is not. Budget 150: 40 of 40 is not.
    assert df[["budget", "kept by the mask", "bisected nodes"]].values.tolist() == [[80, 60, 500]]
    assert bisection_overshoots({"runs": [run]}, factor=1.1)["budget"].tolist() == [80, 100]
