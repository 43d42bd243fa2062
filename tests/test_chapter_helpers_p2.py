"""Library helpers behind chapters 05-08: claim arguments, tables and one-call figures."""
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.train import History, evaluate
from sparsecirc.spa import addition, attention_edges, code_posttrain, plots
from sparsecirc.wst import bracket, case_plots, circuits, quote, reading

TINY_GATED = dict(n_layer=2, d_model=32, d_head=8, n_ctx=12, d_vocab=20, pos_embed=True, attn_gate=True)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tiny_lm(n_ctx=64, gate=False):
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=n_ctx, attn_sink=not gate, attn_gate=gate)).eval()


def _bracket_results(flat_node=True):
    """A bracket study's results with the fields chapter 06 reads (two models, four lengths)."""
    lengths, n_tokens = [1, 2, 4, 8], [10, 14, 22, 38]

    def sweep(scale):
        return {"lengths": lengths, "n_tokens": n_tokens,
                **{k: {"p_correct": [1.0, 0.9, 0.6 * scale, 0.3 * scale], "node": [2.0, 1.5, 1.0, 0.5],
                       "attn_opening": [0.5, 0.3, 0.2, 0.1]} for k in ("nested", "flat")}}

    def model(fail, scale):
        return {"dilution": sweep(scale), "failure_length": {"nested": fail, "flat": 6.0},
                "distractor": {"p1": {"comment": "# [", "p_nested_control": 0.1, "p_nested_attack": 0.7, "rise": 0.6,
                                      "flip_rate": 0.5, "flips_majority": True},
                               "double": {"comment": "# [[", "p_nested_control": 0.1, "p_nested_attack": 0.2,
                                          "rise": 0.1, "flip_rate": 0.0, "flips_majority": False}}}
    sparse, dense = "wst-zoo-l2d128-sparse", "wst-zoo-l2d128-dense-s0"
    res = {"model": sparse, "compare_models": [dense], "prune": {"target": None, "edges": None, "nodes": None},
           "models": {sparse: model(None, 1.0), dense: model(5.0, 0.5)},
           "depth_fit": {"tokens": {"exponent": -0.8, "prefactor": 10.0, "r2": 0.9},
                         "elements": {"exponent": -0.5, "prefactor": 2.0, "r2": 0.9},
                         "attention_to_opening": {"exponent": -0.6, "prefactor": 1.0}},
           "depth_node": {"head": [1, 3]}, "flat_node": {"head": [0, 2]} if flat_node else None,
           "depth_candidates": [{"site": ["blocks.1.attn.hook_v", 78], "separation": 0.5 - 0.1 * i,
                                 "nested_first": 1.0, "nested_last": 0.2, "flat_first": 0.0, "flat_last": 0.0,
                                 "exponent": -1.0, "r2": 0.9, "score": 1.0 - 0.1 * i, "falls": True}
                                for i in range(8)]}
    if flat_node:
        res["models"][sparse]["dilution_flat_node"] = sweep(1.0)
    res["claims"] = bracket.claim_values(res)
    return res


# --- claim arguments --------------------------------------------------------------------------------------------
def test_reading_claim_arguments_marks_unreached_targets_and_expects_only_at_book_scale():
    vals, stored = {"a": None, "b": 3}, {"a": None, "b": 4}
    assert reading.claim_arguments(vals, stored, "book") == {"a": {"ours": "not reached", "expect": "not reached"},
                                                            "b": {"ours": 3, "expect": 4}}
    assert reading.claim_arguments(vals, stored, "ci") == {"a": {"ours": "not reached", "expect": None},
                                                          "b": {"ours": 3, "expect": None}}


def test_quote_claim_arguments_follow_quote_claim_values():
    res = {"quote": {"prune": {"target": 0.15, "edges": 9, "nodes": 12}},
           "vartype": {"prune": {"target": None}, "heads": {"L0H1": {}, "L1H2": {}}}}
    res["claims"] = quote.quote_claim_values(res)
    a = quote.claim_arguments(res, "book")
    assert a["quote-circuit-edges"] == {"ours": 9, "expect": 9}
    assert a["set-or-string-circuit-heads"] == {"ours": 2, "expect": 2}
    assert a["set-or-string-circuit-target"] == {"ours": "not reached", "expect": "not reached"}
    assert quote.claim_arguments(res, "ci")["quote-circuit-nodes"] == {"ours": 12, "expect": None}


def test_bracket_claim_arguments_and_short_name():
    res = _bracket_results()
    a = bracket.claim_arguments(res, "book")
    assert a["bracket-circuit-edges"] == {"ours": "not reached", "expect": "not reached"}
    assert a["dilution-breaks-nested-lists"]["ours"] is False
    assert a["dilution-transfers-to-dense"]["ours"] == "dense-s0: yes at 5 elements"
    assert a["distractor-attack"] == {"ours": True, "expect": True}
    assert bracket.short_name("wst-zoo-l2d128-dense-matched") == "dense-matched"


# --- chapter 06 tables and figures ------------------------------------------------------------------------------
def test_candidate_and_distractor_tables():
    res = _bracket_results()
    cands = bracket.candidate_table(res, 6)
    assert list(cands.columns) == ["node", "separation", "nested_first", "nested_last", "flat_first", "flat_last",
                                   "exponent", "r2", "score"]
    assert len(cands) == 6 and cands["node"].iloc[0] == "L1 v[78]"
    dis = bracket.distractor_table(res)
    assert list(dis["model"]) == ["sparse", "sparse", "dense-s0", "dense-s0"]
    assert list(dis.columns)[-1] == "majority predicts ]]" and dis["p(]]) attack"].iloc[0] == 0.7


@pytest.mark.parametrize("flat_node, n_lines", [(True, 5), (False, 3)])
def test_dilution_figure_has_three_panels(flat_node, n_lines):
    fig = case_plots.dilution(_bracket_results(flat_node))
    assert len(fig.axes) == 3
    assert fig.axes[1].get_xscale() == "log" and fig.axes[2].get_yscale() == "log"
    # two models x two kinds, three failure markers (dense nested, both flat), the 1/2 line, two legend entries
    assert len(fig.axes[0].lines) == 4 + 3 + 1 + 2
    assert len(fig.axes[2].lines) == n_lines  # nested/flat of the depth head (and the flat head), and 1/n


def test_list_pair_and_list_heatmap():
    model = _tiny_lm()
    exs = bracket.list_pair(64, 5, seed=3)
    assert [e.target for e in exs] == ["]]", "]"] and len(exs[0].prompt_ids) == len(exs[1].prompt_ids)
    fig = case_plots.list_heatmap(model, exs, head=(0, 1), title="attention")
    assert len(fig.axes) == 2  # heatmap and colour bar
    assert fig.axes[0].images[0].get_array().shape == (2, len(exs[0].prompt_ids))
    assert sum("[[|[" in t.get_text() for t in fig.axes[0].get_xticklabels()) == 1  # the opener column
    fig = case_plots.list_heatmap(model, exs, read=("blocks.0.attn.hook_z", 3))
    assert fig.axes[0].images[0].get_array().shape == (2, len(exs[0].prompt_ids))
    with pytest.raises(ValueError):
        case_plots.list_heatmap(model, exs, head=(0, 1), read=("blocks.0.attn.hook_z", 3))


def test_draw_circuit_figsize():
    c = circuits.Circuit(task="t", nodes={"blocks.0.mlp.hook_post": [1, 2]}, edges=[], target_loss=0.15, loss=0.1)
    fig = circuits.draw_circuit(c, figsize=(12, 5), title="x")
    assert tuple(fig.get_size_inches()) == (12, 5) and fig.axes[0].get_title() == "x"


# --- chapter 07 -------------------------------------------------------------------------------------------------
def _stats():
    return {"density": 0.02, "density_per_layer": [0.03, 0.01], "edges_per_query_per_head": [0.5, 0.3],
            "edges_per_example": 30.0, "edges_per_example_per_layer": [20.0, 10.0], "possible_edges_per_example": 880}


def test_edge_stats_table_rows_and_all_row():
    t = attention_edges.edge_stats_table(_stats(), unit="window")
    assert list(t.index) == ["L0", "L1", "all"]
    assert list(t.columns) == ["open fraction (%)", "keys per query per head", "edges per window"]
    assert t.loc["all"].tolist() == pytest.approx([2.0, 0.4, 30.0])
    assert t.loc["L0", "open fraction (%)"] == pytest.approx(3.0)


def test_saturation_and_carry_tables_on_a_tiny_gated_model():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY_GATED)).eval()
    test = addition.test_set()[:64]
    sat = attention_edges.saturation_table({"a": model, "b": model}, test[:, :-1])
    assert sat.index.names == ["run", "layer"] and len(sat) == 4
    assert list(sat.columns) == ["open (%)", "open with g > 8 (%)", "open, weight < 5 % (%)"]
    assert ((sat.values >= 0) & (sat.values <= 100)).all()
    carry = addition.carry_table(model, test)
    assert list(carry.index) == list(addition.CARRY_GROUPS)
    assert list(carry.columns) == ["L0 edges", "L1 edges", "examples"] and carry["examples"].sum() == 64


def test_topk_table_and_points():
    rows = [{"method": "top-1 per query", "k": 1, "renormalize": False, "accuracy": 0.1, "ce": 2.0,
             "edges_per_example": 80, "density": 0.09},
            {"method": "matched budget per layer", "budget": [3, 2], "renormalize": True, "accuracy": 0.0, "ce": 3.0,
             "edges_per_example": 5, "density": 0.006}]
    t = addition.topk_table(rows, _stats(), {"accuracy": 1.0, "ce": 1e-4})
    assert list(t["method"]) == ["top-1 per query", "matched budget per layer", "post-trained gates"]
    assert t["exact match (%)"].tolist() == pytest.approx([10.0, 0.0, 100.0])
    pts = addition.topk_points(rows, _stats(), {"accuracy": 1.0}, {"accuracy": 1.0})
    assert [p["label"] for p in pts] == ["dense (all edges)", "top-k per query",
                                         "matched budget per layer, renormalised", "post-trained gates"]
    assert pts[0]["edges_per_example"] == 880 and pts[1]["note"] == "k=1" and pts[2]["marker"] == "^"


def test_geco_runs_table_one_column_per_run():
    h = History(extra={"lambda": [1.0, 2.0, 1.5]})
    m = {"trajectory": {"step": [0, 10], "accuracy": [0.5, 1.0], "density": [0.5, 0.01]},
         "geco": {"config": {"lambda_init": 1.0, "lambda_max": 10.0}}, "test": {"accuracy": 1.0, "density": 0.0123}}
    miss = {**m, "trajectory": {"step": [0, 10], "accuracy": [0.5, 0.9], "density": [0.5, 0.01]}}
    t = addition.geco_runs_table({"a": (m, h), "b": (miss, h)})
    assert list(t.columns) == ["a", "b"]
    assert t.loc["first step at target", "a"] == 10 and t.loc["first step at target", "b"] == "not reached"
    assert t.loc["largest lambda", "a"] == 2.0


def test_log_loss_curves_has_a_log_axis():
    h = History(step=list(range(40)), train_loss=list(np.linspace(2, 0.01, 40)), val_step=[10, 39],
                val_loss=[1.0, 0.02])
    fig = plots.log_loss_curves({"dense": h}, smooth=5)
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"


# --- chapter 08 -------------------------------------------------------------------------------------------------
def test_geco_curves_reference_line():
    n = 30
    h = History(step=list(range(n)), train_loss=[1.0] * n, val_step=[0, n - 1], val_loss=[1.0, 0.9],
                extra={"lambda": [1.0] * n, "density_L0": [0.5] * n})
    fig = plots.geco_curves(h, tau=1.0, smooth=5, log_ce=False, reference=(0.95, "dense validation CE"))
    assert len(fig.axes) == 3
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[-1] == "dense validation CE" and len(fig.axes[0].lines) == 4
    fig = plots.geco_curves(h, tau=1.0, smooth=5)
    assert len(fig.axes[0].lines) == 3
    # a held-out-constraint run: a fourth panel with its excess (measurement + slack) and the slack line
    h.extra.update(heldout_constraint=[0.01] * n, constraint_ema=[0.005] * n)
    with pytest.raises(ValueError, match="heldout_slack"):
        plots.geco_curves(h, tau=1.0, smooth=5)
    fig = plots.geco_curves(h, tau=1.0, smooth=5, heldout_slack=0.02)
    assert len(fig.axes) == 4
    ydata = [line.get_ydata() for line in fig.axes[3].lines]
    assert ydata[0][0] == pytest.approx(0.03) and ydata[1][0] == pytest.approx(0.025) and ydata[2][0] == 0.02


def test_sweep_table_columns():
    rows = [{"T": T, "ce": 1.0, "density": 2 / (T + 1), "density_per_layer": [0.1, 0.2], "edges_per_query": 1.0}
            for T in (16, 32)]
    t = code_posttrain.sweep_table(rows)
    assert list(t.index) == [16, 32] and t.index.name == "T"
    assert list(t.columns) == ["CE (nats)", "open fraction (%)", "L0 (%)", "L1 (%)", "keys per query per head"]
    assert t.loc[32, "L1 (%)"] == pytest.approx(20.0)


def test_runs_table_reads_each_run():
    def run(cap, lam, val, dens):
        m = {"train_context": 64, "geco": {"config": {"lambda_max": cap, "tau_slack": -cap / 100}}, "val_loss": val,
             "tau_val": 2.0, "val_windows": 4,
             "within_tau": val <= 2.0, "edges": {"density": dens, "density_per_layer": [dens * 1.5, dens * 0.5],
                                                  "edges_per_query_per_head": [3.0, 1.0]}}
        return SimpleNamespace(metrics=m, history=SimpleNamespace(step=list(range(len(lam))), extra={"lambda": lam}),
                               config=SimpleNamespace(model=SimpleNamespace(n_ctx=64)))
    t = code_posttrain.runs_table({"a": run(0.5, [0.5, 0.5], 2.1, 0.02), "b": run(5.0, [0.5, 4.0, 3.0], 1.9, 0.04)})
    assert list(t.index) == ["a", "b"]
    assert t.loc["b", "lambda max"] == 4.0 and t.loc["b", "lambda final"] == 3.0 and t.loc["b", "steps"] == 3
    assert not t.loc["a", "within"] and t.loc["b", "within"]
    assert t.loc["b", "open % at T=64"] == pytest.approx(4.0) and t.loc["a", "L0 %"] == pytest.approx(3.0)
    assert t.loc["a", "L1 keys/query/head"] == 1.0
    assert t.loc["b", "train slack"] == pytest.approx(-0.05) and t.loc["a", "val windows"] == 4
    assert t.loc["a", "constraint on"] == "training batches"
    # a held-out-constraint run is read on its judged half, not on the random windows its λ partly saw
    held = run(5.0, [1.0], 2.5, 0.01)
    held.metrics.update(constraint_source="even validation windows", within_tau=True,
                        judged={"windows": 7, "val_loss": 2.01, "bound": 2.02, "within": True})
    h = code_posttrain.runs_table({"held": held}).loc["held"]
    assert h["val CE"] == 2.01 and h["bound"] == 2.02 and h["val windows"] == 7 and h["within"]
    assert h["constraint on"] == "even validation windows"


def test_stream_ce_table_pairs_models_on_every_window():
    a, b = _tiny_lm(n_ctx=16), _tiny_lm(n_ctx=16, gate=True)
    cfg = SimpleNamespace(model=SimpleNamespace(n_ctx=16))
    stream = torch.randint(0, a.cfg.d_vocab, (17 * 5 + 3,))  # windows of n_ctx + 1 tokens
    t = code_posttrain.stream_ce_table({"a": a, "b": b, "a again": a}, cfg, stream, bound=0.0)
    assert list(t.index) == ["a", "b", "a again"] and set(t["windows"]) == {5}
    assert t.loc["a", "above the first"] == 0.0 and t.loc["a again", "within bound"]
    assert t.loc["b", "CE (nats)"] != t.loc["a", "CE (nats)"]  # another model, another CE: the pairing can fail
    # a seeded sample of the windows: the same windows for every model and every call with that seed
    s1 = code_posttrain.stream_ce_table({"a": a, "b": b}, cfg, stream, sample=2, seed=3)
    s2 = code_posttrain.stream_ce_table({"a": a, "b": b}, cfg, stream, sample=2, seed=3)
    assert set(s1["windows"]) == {2} and s1.equals(s2)
    assert code_posttrain.stream_ce_table({"a": a}, cfg, stream, sample=99)["windows"].iloc[0] == 5  # at most all
    with pytest.raises(ValueError, match="positive"):
        code_posttrain.stream_ce_table({"a": a}, cfg, stream, sample=0)
    # the interleaved halves: windows 0, 2, 4 and 1, 3
    even = code_posttrain.stream_ce_table({"a": a, "b": b}, cfg, stream, part="even")
    odd = code_posttrain.stream_ce_table({"a": a, "b": b}, cfg, stream, part="odd")
    assert set(even["windows"]) == {3} and set(odd["windows"]) == {2}
    whole = (3 * even.loc["b", "CE (nats)"] + 2 * odd.loc["b", "CE (nats)"]) / 5
    assert whole == pytest.approx(t.loc["b", "CE (nats)"], rel=1e-5)
    with pytest.raises(ValueError, match="part"):
        code_posttrain.stream_ce_table({"a": a}, cfg, stream, part="first")


def test_validation_windows_shape():
    cfg = SimpleNamespace(train=SimpleNamespace(eval_batches=2, batch_size=3), model=SimpleNamespace(n_ctx=8))
    w = code_posttrain.validation_windows(cfg, torch.arange(200))
    assert tuple(w.shape) == (6, 8)


def test_reads_table_and_last_query_heatmaps():
    dense, gated = _tiny_lm(n_ctx=16), _tiny_lm(n_ctx=16, gate=True)
    prompts = {"quote": [[5, 40, 7, 9], [3, 40, 8]], "bracket": [[11, 12, 13]]}
    t = code_posttrain.reads_table(prompts, {"quote": "\"'", "bracket": "["}, {"dense": dense, "gated": gated})
    assert t.index.names == ["task", "model", "layer"] and len(t) == 2 * 2 * 1
    assert t.loc[("quote", "dense", 0), "keys read by last position"] == pytest.approx(3.5)  # dense: every key
    fig = plots.last_query_heatmaps(list(range(30, 50)), {"dense": dense, "gated": gated}, title="p")
    assert len(fig.axes) == 4  # two heatmaps, two colour bars
    assert fig.axes[0].images[0].get_array().shape == (dense.cfg.n_head, 16)  # the last n_ctx tokens
    assert fig.axes[0].get_title() == "p - dense"


def test_judged_loss_reads_the_odd_half_against_the_dense_parent():
    a, b = _tiny_lm(n_ctx=16), _tiny_lm(n_ctx=16, gate=True)
    cfg = SimpleNamespace(model=SimpleNamespace(n_ctx=16))
    stream = torch.randint(0, a.cfg.d_vocab, (17 * 5 + 3,))
    odd = code_posttrain.split_validation(stream, 16)[1]
    j = code_posttrain.judged_loss(b, a, cfg, 0.02, stream)
    assert j["windows"] == 2 and j["slack"] == 0.02
    assert j["val_loss"] == pytest.approx(evaluate(b, odd), rel=1e-6)
    assert j["dense_val_loss"] == pytest.approx(evaluate(a, odd), rel=1e-6)
    assert j["bound"] == pytest.approx(j["dense_val_loss"] + 0.02)
    assert j["within"] == (j["val_loss"] - j["dense_val_loss"] <= 0.02)
    assert code_posttrain.judged_loss(a, a, cfg, 0.0, stream)["within"]  # the parent is within any slack of itself
