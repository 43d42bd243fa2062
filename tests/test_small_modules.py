import math

import matplotlib
import numpy as np
import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.metrics import per_token_loss, unigram_entropy
from sparsecirc.core.plotting import loss_curves, rank_frequency, token_heatmap
from sparsecirc.core.sampling import generate
from sparsecirc.core.train import History

matplotlib.use("Agg")
TINY = dict(n_layer=1, d_model=32, d_head=8, n_ctx=16, d_vocab=40)


def test_unigram_entropy_uniform_and_point_mass():
    assert unigram_entropy(torch.arange(8).repeat(10), 8) == pytest.approx(math.log(8))
    assert unigram_entropy(torch.zeros(20, dtype=torch.long), 8) == pytest.approx(0.0)


def test_per_token_loss_matches_model_loss():
    m = GPT(ModelConfig(**TINY))
    w = torch.randint(0, 40, (5, 17))
    ptl = per_token_loss(m, w, batch_size=2)
    assert ptl.shape == (5, 16)
    assert ptl.mean().item() == pytest.approx(m.loss(w).item(), rel=1e-5)


def test_generate_greedy_is_argmax_and_seeded_sampling_repeats():
    m = GPT(ModelConfig(**TINY))
    out = generate(m, [1, 2, 3], 5)
    assert len(out) == 5
    assert out[0] == int(m(torch.tensor([[1, 2, 3]]))[0, -1].argmax())
    assert generate(m, [1], 8, temperature=1.0, seed=3) == generate(m, [1], 8, temperature=1.0, seed=3)
    long = generate(m, list(range(20)), 3)  # prompt longer than n_ctx is cropped, not an error
    assert len(long) == 3
    with pytest.raises(ValueError):
        generate(m, [], 3)


def test_plots_return_figures_and_check_shapes():
    h = History(step=list(range(30)), train_loss=list(np.linspace(3, 1, 30)), val_step=[10, 30], val_loss=[2.0, 1.2])
    assert loss_curves({"dense": h}, smooth=5).axes
    assert rank_frequency(np.array([5, 3, 0, 1])).axes
    with pytest.raises(ValueError, match="expected"):
        token_heatmap(["a", "b"], np.zeros((2, 3)), ["x", "y"])
    assert token_heatmap(["a", "b"], np.ones((1, 2)), ["x"]).axes
    fig = token_heatmap(["a", "b"], np.array([[0.2, 0.5]]), ["x"], cmap="Blues", vrange=(0.0, 1.0))
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)
    assert token_heatmap(["a", "b"], np.array([[0.2, -0.5]]), ["x"]).axes[0].images[0].get_clim() == (-0.5, 0.5)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    token_heatmap(["a", "      long"], np.ones((1, 2)), ["x"], ax=ax, colorbar=False, max_label=4)
    assert len(fig.axes) == 1  # no colour bar axes added
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "   …"]
    assert len(token_heatmap(["a"], np.ones((1, 1)), ["x"]).axes) == 2  # default: heatmap + colour bar


def test_pearson_neuron_activity_kurtosis_nonzero_table():
    from sparsecirc.core.metrics import neuron_activity, nonzero_table, pearson, residual_kurtosis
    a = torch.randn(100)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        pearson(a, a[:5])
    m = GPT(ModelConfig(**TINY))
    with torch.no_grad():
        m.blocks[0].mlp.W_in.weight[3].zero_()
        m.blocks[0].mlp.W_in.bias[3] = -10.0  # GELU(-10) ~ -8e-22: dead
    w = torch.randint(0, 40, (4, 17))
    act = neuron_activity(m, w)
    assert act.shape == (1, 128) and act[0, 3] == 0 and act[0, 0] > 0
    k = residual_kurtosis(m, w)
    assert 1.0 <= k < 20
    rows = {r["tensor"]: r for r in nonzero_table(m)}
    assert rows["blocks.0.mlp.W_in.weight"]["nonzero"] == 128 * 32 - 32


def test_chapter02_plots():
    from sparsecirc.core.config import make_config
    from sparsecirc.core.plotting import loss_scatter, sparsity_schedule, task_heatmap
    cfg = make_config("ci", train={"steps": 100}, sparsity={"weight_nonzero_frac": 0.1})
    h = History(step=list(range(100)), lr=[0.001] * 100)
    assert sparsity_schedule(cfg, h).axes
    assert loss_scatter(np.random.rand(50), np.random.rand(50), "a", "b").axes
    assert task_heatmap({"m1": {"t1": 0.5, "t2": 1.0}, "m2": {"t1": 0.9, "t2": 0.7}}).axes


def test_ratio_spread_bootstraps_over_tasks():
    from sparsecirc.wst.circuit_study import ratio_spread, size_ratio

    def run(model, task, edges):
        return {"model": model, "task": task, "targets": {"0.15": {"edges": edges} if edges is not None else None}}

    res = {"targets": [0.15], "tasks": ["a", "b", "c"],
           "runs": [run("D", "a", 100), run("S", "a", 10), run("D", "b", 40), run("S", "b", 1),
                    run("D", "c", 5), run("S", "c", None)]}
    sp = ratio_spread(res, "D", "S", 0.15, n_boot=500)
    assert sp["n_tasks"] == 2 and sp["per_task"] == {"a": 10.0, "b": 40.0}  # task c is not reached by S
    assert sp["lo"] >= 10.0 - 1e-9 and sp["hi"] <= 40.0 + 1e-9 and sp["lo"] < sp["hi"]
    assert 10.0 <= sp["median"] <= 40.0
    assert size_ratio(res, "D", "S", 0.15) == pytest.approx(20.0)
    assert ratio_spread(res, "D", "S", 0.5) is None


def test_speed_bars_draws_one_bar_per_variant_with_its_ratio_to_the_reference(tmp_path, monkeypatch):
    from sparsecirc import artifacts
    from sparsecirc.core.plotting import speed_bars
    result = {"config": "c", "threads": 1, "variants": {
        "reference": {"tokens_per_s": 100.0, "rounds": [90.0, 100.0, 110.0]},
        "fast": {"tokens_per_s": 250.0, "rounds": [240.0, 250.0, 260.0]},
        "official train.py": {"tokens_per_s": 120.0, "rounds": [120.0]}}}
    fig = speed_bars(result)
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [100.0, 250.0, 120.0]
    assert [t.get_text().strip() for t in ax.texts] == ["1.00x", "2.50x", "1.20x"]
    monkeypatch.setattr(artifacts, "BENCHMARKS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="--save"):
        artifacts.benchmark_result("nothing")
    artifacts.write_json(tmp_path / "x.json", result)
    assert artifacts.benchmark_result("x")["variants"]["fast"]["tokens_per_s"] == 250.0
