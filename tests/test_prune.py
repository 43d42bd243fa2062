import math

import pytest
import torch

from sparsecirc.artifacts import ArtifactError
from sparsecirc.core.config import PruneConfig
from sparsecirc.wst.ablation import NodeMask, PairData, ablate, calibrate, compute_means, gates_from_nodes, pair_margin
from sparsecirc.wst.circuits import Circuit, count_edges, draw_circuit, node_sites
from sparsecirc.wst.prune import bisect_k, masked_loss, train_mask


def _pairs(model, n=32):
    """Prompts labelled by the model's own preference between tokens 3 and 5 (so the full model solves them)."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 30, (n, 8), generator=g)
    last = torch.full((n,), 7)
    with torch.no_grad():
        lg = model(tokens)[:, -1]
    pref3 = lg[:, 3] > lg[:, 5]
    cand = torch.stack([torch.where(pref3, 3, 5), torch.where(pref3, 5, 3)], 1)
    return PairData(tokens, last, cand)


def test_all_ones_mask_reproduces_the_model(tiny_model, lm_windows):
    m = tiny_model(act_keep_frac=0.5)
    sites = node_sites(m)
    means = compute_means(m, lm_windows())
    x = lm_windows()[:, :12]
    ones = {n: torch.ones(d) for n, d in sites.items()}
    with ablate(m, ones, means):
        torch.testing.assert_close(m(x), m(x))
        out = m(x)
    torch.testing.assert_close(out, m(x))


def test_ablating_everything_leaves_embedding_plus_mean_writes(tiny_model, lm_windows):
    m = tiny_model()
    means = compute_means(m, lm_windows())
    zeros = {n: torch.zeros(d) for n, d in node_sites(m).items()}
    x = lm_windows()[:, :12]
    with torch.no_grad(), ablate(m, zeros, means):
        got = m(x)
        resid = m.embed(x) + sum(means[f"blocks.{l}.hook_attn_out"] + means[f"blocks.{l}.hook_mlp_out"]
                                 for l in range(2))
        want = m.unembed(m.ln_final(resid))
    torch.testing.assert_close(got, want)


def test_means_are_means_over_all_positions(tiny_model, lm_windows):
    m = tiny_model()
    w = lm_windows()
    from sparsecirc.core.hooks import record
    with record(m, "blocks.1.attn.hook_v") as c:
        m(w[:, :12])
    means = compute_means(m, w)
    torch.testing.assert_close(means["blocks.1.attn.hook_v"], c["blocks.1.attn.hook_v"].flatten(2).mean((0, 1)))


def test_edge_counting_on_a_hand_built_model(tiny_model):
    m = tiny_model()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.zero_()
        m.blocks[0].mlp.W_in.weight[7, 3] = 0.5  # read 3 -> neuron 7
        m.blocks[0].mlp.W_out.weight[2, 7] = -1.5  # neuron 7 -> write 2
        m.blocks[0].mlp.W_out.weight[9, 7] = 1.0  # neuron 7 -> write 9 (not kept)
        m.blocks[1].attn.W_V.weight[4, 2] = 2.0  # read 2 (layer 1) -> v 4
    nodes = {"blocks.0.ln2.hook_normalized": [3], "blocks.0.mlp.hook_post": [7], "blocks.0.hook_mlp_out": [2]}
    edges = count_edges(m, nodes)
    assert len(edges) == 2  # P1: read -> neuron -> write = 3 nodes / 2 edges
    assert ("blocks.0.ln2.hook_normalized", 3, "blocks.0.mlp.hook_post", 7, 0.5) in edges
    nodes.update({"blocks.1.ln1.hook_normalized": [2], "blocks.1.attn.hook_v": [4]})
    assert len(count_edges(m, nodes)) == 3  # the residual path write 2 -> read 2 is not an edge
    c = Circuit(task="t", nodes=nodes, edges=count_edges(m, nodes), target_loss=0.15, loss=0.1)
    assert (c.n_nodes, c.n_edges) == (5, 3)
    again = Circuit.from_json(c.to_json("m"), m)
    assert again == c
    m.blocks[1].attn.W_V.weight.data[4, 2] = 0.0  # another model's weights give other edges
    with pytest.raises(ArtifactError, match="does not belong"):
        Circuit.from_json(c.to_json("m"), m)
    g = c.to_networkx()
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 3
    assert draw_circuit(c).axes


def test_dense_edges_are_all_pairs(tiny_model):
    m = tiny_model()
    nodes = {"blocks.0.ln2.hook_normalized": [0, 1, 2], "blocks.0.mlp.hook_post": [5, 6]}
    assert len(count_edges(m, nodes)) == 6


def test_calibration_cannot_use_the_label():
    cand = torch.tensor([[3, 5], [5, 3]] * 20)
    margin = torch.tensor([0.3, -0.3] * 20)  # the same logits (token 3 ahead by 0.3) whatever the prompt
    _, loss = calibrate(margin, cand)
    assert loss >= math.log(2) - 1e-6
    margin = torch.tensor([2.0, -2.0] * 20)  # informative but mis-scaled and biased
    calib, loss2 = calibrate(margin + 1.0, cand)
    assert loss2 < torch.nn.functional.softplus(-(margin + 1.0)).mean().item()
    assert calib["scale"] > 0


def test_bisection_returns_the_smallest_k_reaching_the_target(tiny_model, lm_windows):
    m = tiny_model()
    data = _pairs(m)
    means = compute_means(m, lm_windows())
    cfg = PruneConfig(steps=30, batch_pairs=8, k_coef=1e-3, eval_pairs=16, calibrate=False)
    mask, hist = train_mask(m, data, means, cfg)
    assert len(hist["kept"]) == 30 and hist["kept"][-1] <= hist["kept"][0]
    full = masked_loss(m, data, means, {n: torch.ones(d) for n, d in node_sites(m).items()})[0]
    target = full + 0.05
    cache = {}
    k, loss, _ = bisect_k(m, mask, data, means, target, cfg, cache)
    assert loss <= target
    if k > 0:
        sites = node_sites(m)
        below = masked_loss(m, data, means, gates_from_nodes(sites, mask.topk_nodes(k - 1)))[0]
        assert below > target
    assert bisect_k(m, mask, data, means, 1e-9, cfg) is None  # unreachable target


def test_inverted_gates_and_margin_shapes(tiny_model):
    m = tiny_model()
    data = _pairs(m, 10)
    assert pair_margin(m, data).shape == (10,)
    sites = node_sites(m)
    nodes = {"blocks.0.mlp.hook_post": [1, 2]}
    g = gates_from_nodes(sites, nodes)
    gi = gates_from_nodes(sites, nodes, invert=True)
    assert g["blocks.0.mlp.hook_post"].sum() == 2 and gi["blocks.0.mlp.hook_post"].sum() == 64 - 2
    mask = NodeMask(sites, PruneConfig())
    assert sum(len(v) for v in mask.topk_nodes(5).values()) == 5
    with pytest.raises(ValueError, match="unknown node kind"):
        node_sites(m, ("neuron", "bogus"))


def test_study_summaries():
    from sparsecirc.wst.circuit_study import edges_table, geomean_edges, geometric_mean, n_reached, size_ratio
    assert geometric_mean([4, 16]) == pytest.approx(8.0)
    assert geometric_mean([0, 4]) == pytest.approx(2.0)  # empty circuits count as one edge
    res = {"tasks": ["a", "b"], "runs": [
        {"task": "a", "model": "d", "targets": {"0.15": {"edges": 400}}},
        {"task": "a", "model": "s", "targets": {"0.15": {"edges": 25}}},
        {"task": "b", "model": "d", "targets": {"0.15": {"edges": 100}}},
        {"task": "b", "model": "s", "targets": {"0.15": None}}]}
    assert edges_table(res, 0.15)["b"] == {"d": 100, "s": None}
    assert n_reached(res, 0.15) == 1
    assert geomean_edges(res, "d", 0.15) == pytest.approx(400)
    assert size_ratio(res, "d", "s", 0.15) == pytest.approx(16)
    assert size_ratio(res, "d", "s", 0.3) is None


def test_nonsense_labels_flip_about_half_and_keep_prompts():
    import datasets

    from sparsecirc.wst.circuit_study import nonsense_labels
    ds = datasets.Dataset.from_dict({"prompt": [f"p{i}" for i in range(200)], "target": ["a"] * 200,
                                     "distractor": ["b"] * 200, "target_id": [1] * 200, "distractor_id": [2] * 200})
    ns = nonsense_labels(ds, seed=0)
    flipped = sum(t == 2 for t in ns["target_id"])
    assert 60 < flipped < 140 and ns["prompt"] == ds["prompt"]
    assert all({a, b} == {1, 2} for a, b in zip(ns["target_id"], ns["distractor_id"]))


def test_empty_circuits_are_reported_and_left_out_of_the_ratio():
    from sparsecirc.wst.circuit_study import empty_circuit_tasks, n_reached, size_ratio, usable_tasks
    res = {"tasks": ["a", "c"], "runs": [
        {"task": "a", "model": "d", "targets": {"0.15": {"edges": 400}}},
        {"task": "a", "model": "s", "targets": {"0.15": {"edges": 25}}},
        {"task": "c", "model": "d", "targets": {"0.15": {"edges": 900}}},
        {"task": "c", "model": "s", "targets": {"0.15": {"edges": 0}}}]}  # the last token decides
    assert empty_circuit_tasks(res, 0.15) == {"c": ["s"]}
    assert list(usable_tasks(res, 0.15)) == ["a"] and n_reached(res, 0.15) == 2
    assert size_ratio(res, "d", "s", 0.15) == pytest.approx(16)  # flooring c at 1 edge would give sqrt(16 * 900) = 120


def test_faithfulness_of_the_whole_model_and_of_an_empty_circuit(tiny_model, lm_windows):
    from sparsecirc.wst.prune import circuit_faithfulness
    m = tiny_model()
    pairs = _pairs(m)
    ds = {"prompt_ids": pairs.tokens.tolist(), "target_id": pairs.cand[:, 0].tolist(),
          "distractor_id": pairs.cand[:, 1].tolist()}
    means = compute_means(m, lm_windows())
    sites = node_sites(m)
    whole = Circuit(task="t", nodes={h: list(range(d)) for h, d in sites.items()}, edges=[], target_loss=0.15,
                    loss=0.0)
    f = circuit_faithfulness(m, whole, ds, means)
    assert f["agreement"] == 1.0 and f["kl"] == pytest.approx(0.0, abs=1e-6) and f["full"]["accuracy"] == 1.0
    assert not f["beats_full"]  # equal, not better
    empty = Circuit(task="t", nodes={}, edges=[], target_loss=0.15, loss=0.0, meta={"calibration": {"scale": 3.0}})
    g = circuit_faithfulness(m, empty, ds, means)
    assert g["scale"] == 3.0 and g["kl"] > 0 and g["uncalibrated"]["loss"] != g["calibrated"]["loss"]


def test_bisection_prefers_the_masks_own_count_over_all_nodes(tiny_model, monkeypatch):
    """A non-monotone loss in k: the mask's own circuit (4 nodes) meets the target, and so does every k >= 40, but
    not 8 ... 39. With all nodes as the upper end the bisection lands at 40; with the mask's count first it finds
    the smallest k within the mask's own circuit."""
    import sparsecirc.wst.prune as prune_mod
    from sparsecirc.wst.ablation import NodeOrder

    m = tiny_model()
    sites = node_sites(m)
    n = sum(sites.values())
    order = NodeOrder(sites, torch.arange(n, 0, -1, dtype=torch.float32), own_count=10)

    def fake_loss(model, data, means, gates, *args, **kwargs):
        k = int(sum(float(g.sum()) for g in gates.values()))
        return (0.1 if 4 <= k <= 10 or k >= 40 else 0.5), 1.0, None

    monkeypatch.setattr(prune_mod, "masked_loss", fake_loss)
    cfg = PruneConfig(calibrate=False)
    k, loss, _ = bisect_k(m, order, None, {}, 0.2, cfg)
    assert (k, loss) == (4, 0.1)
    order.own_count = 20  # the mask's own circuit misses the target: all nodes are the upper end
    assert bisect_k(m, order, None, {}, 0.2, cfg)[0] >= 40
