"""The converged pruner's pieces: held-out splits, tied q/k masks, the plateau rule, frozen norms, attribution
ranking, greedy clean-up, snapshots, the hyperparameter search and the residual edge count."""
import math

import datasets
import pytest
import torch
import torch.nn.functional as F

from sparsecirc.core.config import ConfigError, PruneConfig
from sparsecirc.wst.ablation import (
    NodeMask,
    NodeOrder,
    PairData,
    ablated_margin,
    ablation_values,
    compute_means,
    frozen_norms,
    gates_from_nodes,
    pair_margin,
    ranked_order,
    record_norm_scales,
)
from sparsecirc.wst.circuits import Circuit, count_edges, node_sites, residual_edges
from sparsecirc.wst.prune import bisect_k, greedy_cleanup, mask_order, plateau_step, prune_to_circuit, train_mask
from sparsecirc.wst.prune_baselines import attribution_order, random_node_inverse, search_hparams


def _pairs(model, n=48, seed=2):
    """Prompts of varied length labelled by the model's own preference between tokens 3 and 5."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 30, (n, 10), generator=g)
    last = torch.randint(3, 10, (n,), generator=g)
    with torch.no_grad():
        lg = model(tokens, positions=last)
    pref3 = lg[:, 3] > lg[:, 5]
    cand = torch.stack([torch.where(pref3, 3, 5), torch.where(pref3, 5, 3)], 1)
    return PairData(tokens, last, cand)


def _dataset(data: PairData):
    prompts = [data.tokens[i, :int(data.last[i]) + 1].tolist() for i in range(len(data))]
    return datasets.Dataset.from_dict({"prompt_ids": prompts, "target_id": data.cand[:, 0].tolist(),
                                       "distractor_id": data.cand[:, 1].tolist()})


def test_split_pairs_is_disjoint_keeps_pairs_and_depends_on_its_seed_only(tiny_model):
    m = tiny_model()
    data = _pairs(m)
    fit, val = data.split_pairs(6, seed=0)
    assert (fit.n_pairs, val.n_pairs) == (18, 6)
    rows = {tuple(r.tolist()) for r in data.tokens}
    fit_rows = {tuple(r.tolist()) for r in F.pad(fit.tokens, (0, 10 - fit.tokens.shape[1]))}
    val_rows = {tuple(r.tolist()) for r in F.pad(val.tokens, (0, 10 - val.tokens.shape[1]))}
    assert not fit_rows & val_rows and fit_rows | val_rows <= rows
    # both prompts of a pair stay together: pair i is rows 2i, 2i+1 of the source
    src = {tuple(r.tolist()): i // 2 for i, r in enumerate(data.tokens)}
    vp = [src[tuple(r.tolist())] for r in F.pad(val.tokens, (0, 10 - val.tokens.shape[1]))]
    assert vp[0::2] == vp[1::2]
    again = data.split_pairs(6, seed=0)[1]
    assert torch.equal(again.tokens, val.tokens)
    assert not torch.equal(data.split_pairs(6, seed=1)[1].last, val.last)
    with pytest.raises(ValueError, match="hold out"):
        data.split_pairs(24)


def test_chunked_margin_equals_one_batch(tiny_model):
    m = tiny_model(act_keep_frac=0.5)
    data = _pairs(m)
    torch.testing.assert_close(pair_margin(m, data, chunks=3), pair_margin(m, data), atol=1e-5, rtol=1e-5)


def test_tied_qk_masks_share_one_parameter_per_channel(tiny_model):
    m = tiny_model()
    sites = node_sites(m)
    free = NodeMask(sites, PruneConfig())
    tied = NodeMask(sites, PruneConfig(tie_qk=True))
    qkv = m.cfg.n_head * m.cfg.d_head
    assert sum(t.numel() for t in free.tau) - sum(t.numel() for t in tied.tau) == 2 * qkv
    with torch.no_grad():
        tied.tau_of("blocks.0.attn.hook_q")[:] = torch.linspace(-1, 1, qkv)
    g = tied.gates()
    assert torch.equal(g["blocks.0.attn.hook_q"], g["blocks.0.attn.hook_k"])
    assert tied.own_count == int((tied.flat() > 0).sum())


def test_plateau_rule_fires_on_a_flat_history_and_not_on_a_falling_one():
    cfg = PruneConfig(plateau_window=10, plateau_patience=3)
    flat_kept = [100.0] * 100
    flat_loss = [0.1] * 100
    assert plateau_step(flat_kept, flat_loss, cfg) == 40  # boundaries 20, 30, 40 pass
    falling = [1000.0 - 5 * i for i in range(100)]  # 5 % per window: never within 2 %
    assert plateau_step(falling, flat_loss, cfg) is None
    noisy_loss = [0.1 + 0.5 * (i // 10 % 2) for i in range(100)]
    assert plateau_step(flat_kept, noisy_loss, cfg) is None


def test_frozen_norms_change_nothing_without_ablation_and_something_with_it(tiny_model, lm_windows):
    m = tiny_model()
    data = _pairs(m)
    means = compute_means(m, lm_windows())
    sites = node_sites(m)
    ones = {n: torch.ones(d) for n, d in sites.items()}
    with torch.no_grad():
        torch.testing.assert_close(ablated_margin(m, data, ones, means, freeze_norms=True), pair_margin(m, data))
        half = {n: (torch.arange(d) % 2).float() for n, d in sites.items()}
        live = ablated_margin(m, data, half, means)
        frozen = ablated_margin(m, data, half, means, freeze_norms=True)
    assert not torch.allclose(live, frozen)
    with record_norm_scales(m) as scales:
        m(data.tokens[:2])
    assert len(scales) == 2 * m.cfg.n_layer + 1  # ln1, ln2 per block and ln_final
    with frozen_norms(m, scales), torch.no_grad():
        torch.testing.assert_close(m(data.tokens[:2]), m(data.tokens[:2]))


def test_zero_ablation_values_are_zero(tiny_model, lm_windows):
    m = tiny_model()
    means = compute_means(m, lm_windows())
    z = ablation_values(means, PruneConfig(ablation="zero"))
    assert all(float(v.abs().sum()) == 0 for v in z.values()) and z.keys() == means.keys()
    assert ablation_values(means, PruneConfig()) is means
    with pytest.raises(ConfigError):
        PruneConfig(ablation="resample")


def test_attribution_scores_are_first_order_loss_changes(tiny_model, lm_windows):
    m = tiny_model()
    data = _pairs(m)
    means = compute_means(m, lm_windows())
    cfg = PruneConfig()
    order = attribution_order(m, data, means, cfg, batch_size=7)  # uneven batches must not change the mean
    sites = node_sites(m)
    names = list(sites)
    hook, i = names[3], 2
    flat_index = sum(list(sites.values())[:3]) + i

    def loss(eps):
        gates = {n: torch.ones(d) for n, d in sites.items()}
        gates[hook][i] = 1 - eps
        with torch.no_grad():
            return float(F.softplus(-ablated_margin(m, data, gates, means)).mean())
    eps = 1e-3
    fd = abs(loss(eps) - loss(0.0)) / eps
    assert math.isclose(float(order.flat()[flat_index]), fd, rel_tol=0.05, abs_tol=1e-4)
    assert order.own_count is None and sum(len(v) for v in order.topk_nodes(7).values()) == 7
    with pytest.raises(ValueError, match="scores"):
        NodeOrder(sites, torch.zeros(3))


def test_greedy_cleanup_keeps_the_target_and_never_grows(tiny_model, lm_windows):
    m = tiny_model()
    data = _pairs(m)
    means = compute_means(m, lm_windows())
    cfg = PruneConfig(calibrate=False)
    sites = node_sites(m)
    with torch.no_grad():
        full = float(F.softplus(-pair_margin(m, data)).mean())
    target = full + 0.05
    order = NodeOrder(sites, torch.rand(sum(sites.values()), generator=torch.Generator().manual_seed(0)))
    k, loss, _ = bisect_k(m, order, data, means, target, cfg)
    nodes = order.topk_nodes(k)
    cleaned, closs, _ = greedy_cleanup(m, nodes, order, data, means, target, cfg)
    n_clean = sum(len(v) for v in cleaned.values())
    assert n_clean <= k and closs <= target
    with torch.no_grad():
        check = ablated_margin(m, data, gates_from_nodes(sites, cleaned), means)
    assert math.isclose(float(F.softplus(-check).mean()), closs, rel_tol=1e-5)


def test_prune_to_circuit_holds_out_validation_pairs_and_bisects_snapshots(tiny_model, lm_windows):
    m = tiny_model()
    ds = _dataset(_pairs(m, n=64))
    means = compute_means(m, lm_windows())
    cfg = PruneConfig(steps=30, batch_pairs=4, val_pairs=8, snapshots=(10, 30), plateau_window=5,
                      target_loss=0.69, calib_steps=4)
    res = prune_to_circuit(m, ds, means, cfg, targets=(0.6,))
    assert (res.n_fit_pairs, res.n_val_pairs) == (24, 8)
    assert set(res.snapshots) == {10, 30} and set(res.snapshots[10]) == {0.69, 0.6}
    assert res.history["steps_run"] == 30 and len(res.history["kept"]) == 30
    last = res.snapshots[30][0.69]
    if res.circuit is not None and last is not None:  # the last snapshot is the trained mask itself
        assert last.nodes == res.circuit.nodes
    stop = prune_to_circuit(m, ds, means, cfg.replace(stop_at_plateau=True, steps=200, snapshots=(),
                                                      plateau_tol=10.0, plateau_loss_tol=10.0))
    assert stop.history["steps_run"] == stop.history["converged_at"] == 20


def test_search_needs_a_validation_split_and_reports_every_grid_point(tiny_model, lm_windows):
    m = tiny_model()
    ds = _dataset(_pairs(m, n=32))
    means = compute_means(m, lm_windows())
    cfg = PruneConfig(steps=10, batch_pairs=4, target_loss=0.69, calib_steps=4)
    with pytest.raises(ValueError, match="val_pairs"):
        search_hparams(m, ds, means, cfg, steps=5)
    best, rows = search_hparams(m, ds, means, cfg.replace(val_pairs=6), lrs=(1e-2, 3e-2), k_coefs=(1e-4,), steps=5)
    assert len(rows) == 2 and {r["lr"] for r in rows} == {1e-2, 3e-2}
    reached = [r for r in rows if r["nodes"] is not None]
    if reached:
        assert best.k_coef == 1e-4 and best.lr == min(reached, key=lambda r: (r["nodes"], r["loss"]))["lr"]


def test_residual_edges_count_identity_paths_forward_only_and_candidate_unembeddings(tiny_model):
    m = tiny_model()
    nodes = {"blocks.0.hook_attn_out": [3], "blocks.1.ln1.hook_normalized": [3, 4], "blocks.0.ln2.hook_normalized": [3],
             "blocks.0.ln1.hook_normalized": [3]}  # layer-0 attn read comes before the write: no path
    assert residual_edges(m, nodes) == 2  # attn_out[3] -> mlp_read L0 [3], -> attn_read L1 [3]
    with torch.no_grad():
        m.unembed.weight[5, 3] = 0.0
    assert residual_edges(m, nodes, candidates=[3, 5]) == 2 + 1


def test_random_node_inverse_draws_sets_of_the_circuits_size_and_kinds(tiny_model, lm_windows):
    m = tiny_model()
    ds = _dataset(_pairs(m, n=16))
    means = compute_means(m, lm_windows())
    nodes = {"blocks.0.mlp.hook_post": [1, 2, 3], "blocks.1.attn.hook_v": [0]}
    c = Circuit(task="t", nodes=nodes, edges=count_edges(m, nodes), target_loss=0.1, loss=0.1)
    out = random_node_inverse(m, c, ds, means, n_draws=3)
    assert out["n_draws"] == 3 and 0 <= out["accuracy"] <= 1 and out["loss"] > 0
    empty = Circuit(task="t", nodes={}, edges=[], target_loss=0.1, loss=0.1)
    with torch.no_grad():
        full = float(F.softplus(-pair_margin(m, PairData.from_dataset(ds, 12))).mean())
    assert math.isclose(random_node_inverse(m, empty, ds, means, n_draws=1)["loss"], full, rel_tol=1e-5)


def test_ranked_order_breaks_only_ties_of_the_primary_key():
    sites = {"a": 3, "b": 2}
    primary = torch.tensor([1.0, 1.0, 0.5, 1.0, -0.2])
    secondary = torch.tensor([0.1, 3.0, 9.0, 2.0, 5.0])
    order = ranked_order(sites, primary, secondary, own_count=4)
    # tied at 1: index 1 (3.0), index 3 (2.0), index 0 (0.1); then 0.5 (index 2) despite its large secondary
    assert order.topk_nodes(2) == {"a": [1], "b": [0]}
    assert order.topk_nodes(3) == {"a": [0, 1], "b": [0]}
    assert order.topk_nodes(4) == {"a": [0, 1, 2], "b": [0]} and order.own_count == 4


def test_overshoot_accumulates_what_the_clamp_removes_and_orders_tied_nodes(tiny_model, lm_windows):
    m = tiny_model()
    data = _pairs(m, n=32)
    means = compute_means(m, lm_windows())
    cfg = PruneConfig(steps=60, batch_pairs=4, lr=0.1, schedule="constant", plateau_window=5)
    mask, hist = train_mask(m, data, means, cfg)
    tau, over = mask.flat(), hist["overshoot"]
    assert over.shape == tau.shape and hist["kept_at_clamp"] == int((tau >= 1).sum())
    assert hist["kept_at_clamp"] > 0, "lr 0.1 for 60 steps should push some nodes onto the +1 clamp"
    assert (over[tau >= 1] > 0).any()
    ranked = mask_order(m, tau, data, means, cfg, over)
    top = ranked.topk_nodes(hist["kept_at_clamp"])
    flat_top = torch.zeros_like(tau, dtype=torch.bool)
    offsets = dict(zip(ranked.names, [sum(ranked.sizes[:i]) for i in range(len(ranked.sizes))]))
    for h, idx in top.items():
        flat_top[torch.tensor(idx) + offsets[h]] = True
    assert torch.equal(flat_top, tau >= 1)  # the clamped nodes come first, whatever their overshoot
    if hist["kept_at_clamp"] > 1:
        k = hist["kept_at_clamp"] // 2  # among them, the largest overshoot first
        first = ranked.topk_nodes(k)
        picked = torch.cat([over[torch.tensor(idx) + offsets[h]] for h, idx in first.items()])
        rest = over[(tau >= 1)].sort(descending=True).values
        assert torch.allclose(picked.sort(descending=True).values, rest[:k])
    with pytest.raises(ValueError, match="overshoot"):
        mask_order(m, tau, data, means, cfg)
    assert torch.equal(mask_order(m, tau, data, means, cfg.replace(tiebreak="none")).flat(), tau)


def test_coordinate_search_runs_k_coefs_then_lrs_at_the_winner_and_reuses_known_points(monkeypatch):
    """Stage 1: every k_coef at lrs[0]; stage 2: the other lrs at stage 1's winning k_coef; known points not rerun."""
    from sparsecirc.wst import prune_baselines as pb

    nodes = {(1e-2, 1e-4): 50, (1e-2, 1e-3): 30, (1e-2, 1e-2): None, (3e-3, 1e-3): 40, (3e-2, 1e-3): 20}
    ran = []

    class _Res:
        def __init__(self, n):
            self.circuits = {} if n is None else {0.15: type("C", (), {"n_nodes": n, "loss": 0.1})()}

    def fake(model, ds, means, cfg, task=""):
        ran.append((cfg.lr, cfg.k_coef))
        return _Res(nodes[(cfg.lr, cfg.k_coef)])

    monkeypatch.setattr(pb, "prune_to_circuit", fake)
    cfg = PruneConfig(val_pairs=4, target_loss=0.15)
    known = [{"lr": 1e-2, "k_coef": 1e-4, "nodes": 50, "loss": 0.1}]
    best, rows = pb.search_hparams(None, None, {}, cfg, lrs=(1e-2, 3e-3, 3e-2), k_coefs=(1e-4, 1e-3, 1e-2),
                                   mode="coordinate", known=known)
    assert ran == [(1e-2, 1e-3), (1e-2, 1e-2), (3e-3, 1e-3), (3e-2, 1e-3)]  # (1e-2, 1e-4) reused
    assert [(r["lr"], r["k_coef"]) for r in rows] == [(1e-2, 1e-4), *ran]
    assert (best.lr, best.k_coef) == (3e-2, 1e-3)
    with pytest.raises(ValueError, match="mode"):
        pb.search_hparams(None, None, {}, cfg, mode="random")


def test_collapse_rule_needs_a_full_model_at_target_and_a_mask_near_chance():
    from sparsecirc.wst.prune_study import COLLAPSE, collapsed

    assert collapsed(0.69, 0.01, 0.15)  # the seed-2 dense while_return_true mask: loss ln 2, full model 0.007
    assert not collapsed(0.69, 0.40, 0.15)  # a model that never met the target (random init, nonsense rule)
    assert not collapsed(0.20, 0.01, 0.15)  # above target but far from chance: bisection handles it
    assert COLLAPSE["task_loss"] < 0.6931
