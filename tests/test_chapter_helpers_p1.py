"""Library helpers behind chapters 01-04 (tables, values and figures that used to live in chapter cells)."""
import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core import metrics, plotting
from sparsecirc.wst import circuit_study as cs
from sparsecirc.wst import plots

matplotlib.use("Agg")
TINY = dict(n_layer=1, d_model=32, d_head=8, n_ctx=16, d_vocab=40)


def cell(edges):
    return None if edges is None else {"nodes": edges + 1, "edges": edges, "loss": 0.1}


def fake_results():
    """Two tasks, a sparse model S and a dense model D, targets 0.1 (both reached) and 0.3 (D misses task b)."""
    runs = [
        {"task": "a", "model": "S", "full_loss": 0.05, "seconds": 1.0,
         "targets": {"0.1": cell(4), "0.3": cell(2)}, "test": {"loss": 0.2}, "inverse": {"loss": 1.0}},
        {"task": "a", "model": "D", "full_loss": 0.07, "seconds": 1.0,
         "targets": {"0.1": cell(64), "0.3": cell(32)}, "test": {"loss": 0.4}, "inverse": {"loss": 2.0}},
        {"task": "b", "model": "S", "full_loss": 0.15, "seconds": 1.0, "targets": {"0.1": cell(16), "0.3": cell(0)}},
        {"task": "b", "model": "D", "full_loss": 0.09, "seconds": 1.0, "targets": {"0.1": cell(64), "0.3": None}},
    ]
    controls = {"random_init": [{"task": "a", "full_loss": 3.14159, "targets": {"0.1": None, "0.3": None}}],
                "nonsense": [{"task": "a", "full_loss": 0.7, "targets": {"0.1": cell(8), "0.3": cell(4)}},
                             {"task": "b", "full_loss": 0.7, "targets": {"0.1": cell(2), "0.3": None}}]}
    return {"targets": [0.1, 0.3], "tasks": ["a", "b"], "runs": runs, "controls": controls}


# --- circuit_study tables and values -----------------------------------------------------------------------------
def test_ratio_table_columns_and_values():
    t = cs.ratio_table(fake_results(), 0.1, "S", "D")
    assert list(t.columns) == ["sparse edges", "dense edges", "dense / sparse"]
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "dense / sparse"] == 16.0 and t.loc["b", "dense / sparse"] == 4.0


def test_seed_table_one_row_per_seed():
    res = fake_results()
    t = cs.seed_table({0: res, 1: res}, "S", "D", 0.1)
    assert t.index.name == "pruning seed" and list(t.index) == [0, 1]
    assert t.loc[0, "sparse edges (geo. mean)"] == pytest.approx(8.0)   # sqrt(4 * 16)
    assert t.loc[1, "dense / sparse"] == pytest.approx(8.0)
    assert t.loc[0, "tasks reaching target"] == 2
    assert cs.seed_table({0: res}, "S", "D", 0.3).loc[0, "tasks reaching target"] == 1


def test_smallest_circuit_task_prefers_nonempty():
    res = fake_results()
    assert cs.smallest_circuit_task(res, "S", 0.3) == "a"    # b's circuit is empty (0 edges)
    assert cs.smallest_circuit_task(res, "S", 0.1) == "a"
    assert cs.smallest_circuit_task(res, "nobody", 0.1) is None


def test_faithfulness_and_ablation_losses():
    res = fake_results()
    t = cs.faithfulness_table(res, "S")
    assert list(t.columns) == ["full model", "circuit only", "circuit ablated"]
    assert t.loc["sparse", "full model"] == pytest.approx(0.1)     # mean of 0.05 and 0.15
    assert t.loc["dense", "circuit ablated"] == pytest.approx(2.0)
    assert cs.ablation_losses(res) == pytest.approx((0.3, 1.5))


def test_controls_table_and_summary():
    res = fake_results()
    t = cs.controls_table(res, 0.1)
    assert list(t.columns) == ["control", "task", "full loss", "edges at target"]
    assert len(t) == 3
    assert t.loc[0, "full loss"] == 3.142 and t.loc[0, "edges at target"] == "not reached"
    assert cs.control_summary(res, "random_init", 0.1) == "0/1 reached"
    assert cs.control_summary(res, "nonsense", 0.1) == "2/2 reached, 4 edges"   # sqrt(8 * 2)
    assert cs.control_summary(res, "nonsense", 0.3) == "1/2 reached, 4 edges"


def test_headline_values():
    h = cs.headline(fake_results(), "S", "D", 0.1)
    assert h["ratio"] == pytest.approx(8.0)
    assert h["sparse edges"] == pytest.approx(8.0) and h["dense edges"] == pytest.approx(64.0)
    assert h["kept loss"] == pytest.approx(0.3) and h["ablated loss"] == pytest.approx(1.5)
    assert h["random_init"] == "0/1 reached"


def test_per_task_edges_adds_geometric_mean_row():
    t = cs.per_task_edges(fake_results(), 0.1, {"S": "sparse", "D": "dense"})
    assert list(t.index) == ["a", "b", "geometric mean"]
    assert t.loc["geometric mean", "sparse"] == pytest.approx(8.0)
    assert t.loc["geometric mean", "dense"] == pytest.approx(64.0)


def tiny_run(val_loss=None, steps=3, zero_rows=0):
    model = GPT(ModelConfig(**TINY))
    with torch.no_grad():
        model.blocks[0].attn.W_Q.weight[:zero_rows] = 0
    return SimpleNamespace(model=model, history=SimpleNamespace(step=list(range(steps))),
                           metrics={"val_loss": val_loss},
                           config=SimpleNamespace(train=SimpleNamespace(batch_size=50_000), model=model.cfg))


def test_frontier_table_and_trends():
    runs = {"S": tiny_run(2.0, zero_rows=16), "D": tiny_run(1.5)}
    front = cs.frontier_table(fake_results(), runs, {"S": "sparse", "D": "dense"}, 0.1)
    assert list(front.index) == ["sparse", "dense"]
    assert list(front.columns) == ["d_model", "L0 (nonzero weights)", "val loss", "edges"]
    dense_l0 = 2 * 40 * 32 + 4 * 32 * 32 + 2 * 128 * 32
    assert front.loc["dense", "L0 (nonzero weights)"] == dense_l0
    assert front.loc["sparse", "L0 (nonzero weights)"] == dense_l0 - 16 * 32
    assert front.loc["sparse", "edges"] == pytest.approx(8.0)

    f = pd.DataFrame({"val loss": [3.0, 3.5, 3.2], "edges": [100.0, 50.0, 120.0]},
                     index=["sparse", "sparse-lowl0", "d64-sparse"])
    assert cs.frontier_trends(f) == (True, True)
    f.loc["d64-sparse", "edges"] = 90.0          # the narrow model now has smaller circuits
    assert cs.frontier_trends(f) == (True, False)
    f.loc["sparse", "edges"] = float("nan")      # a model without edges: no trend can be read
    assert cs.frontier_trends(f) == (False, False)

    g = pd.DataFrame({"val loss": [3.0, 3.5, 2.8], "edges": [100.0, 50.0, 80.0]},
                     index=["sparse", "sparse-lowl0", "d256-sparse"])   # the second zoo widens the base model
    kw = {"narrow": "sparse", "wide": "d256-sparse"}
    assert cs.frontier_trends(g, **kw) == (True, True)
    g.loc["d256-sparse", "val loss"] = 3.1       # wider but worse in loss: no push
    assert cs.frontier_trends(g, **kw) == (True, False)
    with pytest.raises(ValueError, match="two models"):
        cs.frontier_trends(g, narrow="sparse")


# --- metrics tables ---------------------------------------------------------------------------------------------
def test_corpus_table_chars_per_token():
    stats = {"train": {"stdlib": {"chars": 100, "tokens": 40}, "simple": {"chars": 30, "tokens": 9}},
             "val": {"stdlib": {"chars": 10, "tokens": 5}}}
    t = metrics.corpus_table(stats)
    assert list(t.columns) == ["split", "part", "chars", "tokens", "chars/token"]
    assert len(t) == 3
    assert list(t["chars/token"]) == [2.5, 3.33, 2.0]


def test_zoo_table_counts_nonzero_weights():
    runs = {"dense": tiny_run(steps=5), "sparse": tiny_run(steps=2, zero_rows=32)}
    t = metrics.zoo_table(runs, {"dense": 1.23456, "sparse": 2.0})
    assert list(t.columns) == ["layers", "d_model", "nonzero weights", "of total", "steps", "tokens (M)", "val loss"]
    assert t.loc["dense", "tokens (M)"] == 4.0 and t.loc["sparse", "tokens (M)"] == 1.6  # steps x 50k x 16
    total = 2 * 40 * 32 + 4 * 32 * 32 + 2 * 128 * 32
    assert t.loc["dense", "nonzero weights"] == total and t.loc["dense", "of total"] == 1.0
    assert t.loc["sparse", "nonzero weights"] == total - 32 * 32
    assert t.loc["dense", "val loss"] == 1.235 and t.loc["sparse", "steps"] == 2


def test_nonzero_by_kind_groups_embeddings():
    t = metrics.nonzero_by_kind(tiny_run(zero_rows=16).model)
    assert list(t.index) == ["block matrix", "embedding"]
    assert t.loc["block matrix", "min"] == 0.5 and t.loc["block matrix", "max"] == 1.0
    assert t.loc["block matrix", "count"] == 6 and t.loc["embedding", "count"] == 2


def test_activity_table_matches_the_single_measurements():
    models = {"a": tiny_run().model, "b": tiny_run().model}
    windows = torch.randint(0, 40, (3, 17))
    t = metrics.activity_table(models, windows)
    assert list(t.index) == ["a", "b"] and list(t.columns) == ["dead neurons", "resid kurtosis"]
    assert t.loc["b", "resid kurtosis"] == pytest.approx(metrics.residual_kurtosis(models["b"], windows))
    assert 0.0 <= t.loc["a", "dead neurons"] <= 1.0


# --- figures ------------------------------------------------------------------------------------------------------
def test_labelled_scatter_one_point_per_label():
    x = pd.Series({"m1": 10, "m2": 1000, "m3": 100})
    fig = plotting.labelled_scatter(x, {"m1": 1.0, "m2": 2.0, "m3": 3.0}, xlabel="L0", ylabel="k", xscale="log")
    ax, = fig.axes
    assert len(ax.collections) == 3 and [t.get_text() for t in ax.texts] == ["m1", "m2", "m3"]
    assert ax.get_xscale() == "log"
    matplotlib.pyplot.close(fig)


def test_loss_scatter_panels_one_axes_per_panel():
    a, b = torch.rand(4, 8), torch.rand(4, 8)
    fig = plotting.loss_scatter_panels([(a, b, "x", "y", "first"), (b, a, "y", "x", "second")])
    assert [ax.get_title() for ax in fig.axes] == ["first", "second"]
    matplotlib.pyplot.close(fig)


def test_size_vs_target_lines():
    fig = plots.size_vs_target(fake_results(), "S", "D")
    ax, = fig.axes
    sparse, dense = ax.get_lines()
    assert list(sparse.get_xdata()) == pytest.approx([8.0, 2.0])    # targets 0.1 and 0.3 (task a only)
    assert list(dense.get_ydata()) == [0.1, 0.3]
    matplotlib.pyplot.close(fig)


def test_ratio_per_task_one_bar_per_task():
    res = fake_results()
    spread = cs.ratio_spread(res, "D", "S", 0.1)
    fig = plots.ratio_per_task(spread, cs.size_ratio(res, "D", "S", 0.1), 0.1)
    ax, = fig.axes
    bars, = ax.containers
    assert [p.get_width() for p in bars] == pytest.approx([4.0, 16.0])    # sorted: task b, then task a
    assert "P1 ≈ 16" in [t.get_text() for t in ax.get_legend().get_texts()]
    matplotlib.pyplot.close(fig)


def test_frontier_skips_models_without_edges():
    front = pd.DataFrame({"d_model": [128, 64], "L0 (nonzero weights)": [1000, 2000], "val loss": [3.0, 3.2],
                          "edges": [100.0, math.nan]}, index=["sparse", "narrow"])
    fig = plots.frontier(front, 0.15)
    ax, = fig.axes
    assert len(ax.collections) == 1
    label = ax.get_legend().get_texts()[0].get_text()
    assert label.startswith("sparse (d128") and label.endswith("L0 1k)")
    matplotlib.pyplot.close(fig)


# --- the circuit study on models of both data versions -------------------------------------------------------------
def test_produce_circuits_prunes_each_model_on_its_own_data_version(tmp_path, monkeypatch):
    from sparsecirc.core.config import make_config
    from sparsecirc.data.tasks import load_task, model_data_version
    tiny = dict(n_layer=1, d_model=16, d_head=8, n_ctx=128)
    cfgs = {"s2": make_config("ci", model={**tiny, "data_version": "v2"}, data={"n_simple_tokens": 60_000}),
            "d1": make_config("ci", model=tiny)}
    models = {mid: GPT(cfg.model).eval() for mid, cfg in cfgs.items()}
    seen = []

    def fake_prune(model, train_ds, means, pcfg, targets, task):
        seen.append((task, model_data_version(model), train_ds["prompt"][0]))
        return SimpleNamespace(seconds=0.0, full_loss=0.0, history={"kept": [0]}, circuits={})
    monkeypatch.setattr(cs, "study_model", lambda ctx, mid: (models[mid], cfgs[mid], None))
    monkeypatch.setattr(cs, "mean_values", lambda *a: {})
    monkeypatch.setattr(cs, "lm_tokens", lambda cfg, split=None: None if split == "val" else (None, None))
    monkeypatch.setattr(cs, "prune_to_circuit", fake_prune)
    spec = {"models": ["s2", "d1"], "targets": [0.15], "min_accuracy": 0.0,
            "controls": {"model": "s2", "tasks": ["var_if"]}}
    ctx = SimpleNamespace(spec=spec, folder=tmp_path, progress=False, overrides=lambda: {"tasks": ["var_if"]},
                          manifest_info=lambda **kw: kw)
    cs.produce_circuits(ctx)
    first = {v: load_task("var_if", "train", version=v)["prompt"][0] for v in ("v1", "v2")}
    # s2 and d1 on their own train splits, then the random-init copy of s2 and the nonsense task on s2: all v2
    assert seen == [("var_if", "v2", first["v2"]), ("var_if", "v1", first["v1"]),
                    ("var_if", "v2", first["v2"]), ("nonsense:var_if", "v2", first["v2"])]
    (tmp_path / "circuits" / "s2__var_if.json").write_text("{}")
    measured = []
    monkeypatch.setattr(cs, "load_circuit", lambda path, model: None)
    monkeypatch.setattr(cs, "circuit_faithfulness", lambda model, c, ds, means: measured.append(ds["prompt"]) or {
        "full": {"loss": 0, "accuracy": 1}, "uncalibrated": {"loss": 0, "accuracy": 1},
        "calibrated": {"loss": 0, "accuracy": 1}, "scale": 1, "bias": 0, "agreement": 1, "kl": 0,
        "beats_full": False})
    runs = {"runs": [{"model": "s2", "task": "var_if", "targets": {"0.15": {"edges": 1}}}]}
    assert len(cs.circuit_faithfulness_table(runs, tmp_path, models, {"s2": {}}, 0.15)) == 1
    assert measured == [load_task("var_if", "test", version="v2")["prompt"]]  # the v2 model's test split


def test_curve_gap_compares_validation_curves_at_common_steps():
    a = SimpleNamespace(val_step=[0, 10, 20], val_loss=[3.0, 2.5, 2.0], train_loss=[2.0, 2.2, 1.8, 2.0])
    b = SimpleNamespace(val_step=[10, 20, 30], val_loss=[2.6, 1.9, 1.5], train_loss=[])
    g = metrics.curve_gap(a, b, tail=4)
    assert g["n"] == 2 and abs(g["final"] + 0.1) < 1e-12 and abs(g["max_abs"] - 0.1) < 1e-12
    assert abs(g["noise"] - np.std([2.0, 2.2, 1.8, 2.0])) < 1e-12
    with pytest.raises(ValueError, match="no validation step"):
        metrics.curve_gap(a, SimpleNamespace(val_step=[5], val_loss=[1.0], train_loss=[]))
