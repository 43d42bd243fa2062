"""Circuit extraction by node-mask pruning (P1 §2.2, A.5).

One mask parameter tau per node (hook, index), shared over prompts and positions. Forward uses the hard gate
m = 1[tau > 0]; backward uses the sigmoid surrogate d sigma(tau / T) / d tau (T = ``heaviside_temp``); tau is
clamped to [-1, 1]. A pruned node is **mean-ablated**: replaced by its mean over pretraining text (all positions),
after AbsTopK where the node is an AbsTopK site. Loss = task loss + ``k_coef`` * (number of kept nodes).
After training, the number of kept nodes k (top-k by tau) is **bisected** to the smallest circuit whose task loss
reaches the target (P1: 0.15), with a per-k logit calibration (a positive scale and a per-candidate-token bias: a shift of every logit
by one constant would be a no-op under softmax).

With ``PruneConfig.val_pairs > 0`` the task's training split is cut, by pair, into mask-training pairs and held-out
validation pairs; bisection, calibration, the optional greedy clean-up and the hyperparameter search
(:func:`search_hparams`, our CPU stand-in for P1's CARBS) see only the validation pairs, and a study reports every
number on the task's test split. Each run logs kept nodes and task loss per step and the step at which a declared
plateau rule is met (``converged_at``); ``snapshots`` bisect the mask as it stood at earlier steps (a budget curve).
The baselines and controls (attribution pruning, the search, random-node inverse pruning) are in
:mod:`sparsecirc.wst.prune_baselines`.

Example::

    means = compute_means(model, windows)
    res = prune_to_circuit(model, tasks.load_task("single_double_quote", "train"), means, PruneConfig())
    res.circuit.n_edges
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from sparsecirc.core.config import PruneConfig
from sparsecirc.core.model import GPT
from sparsecirc.wst.ablation import (
    NodeMask,
    NodeOrder,
    PairData,
    ablated_margin,
    ablation_values,
    apply_calibration,
    attribution_scores,
    calibrate,
    gates_from_nodes,
    pair_margin,
    ranked_order,
)
from sparsecirc.wst.circuits import Circuit, count_edges, node_sites


# --- the pruning run ----------------------------------------------------------------------------------------------
@dataclass
class PruneResult:
    """Trained mask, the bisected circuit at each target loss, and the run's history."""

    circuits: dict[float, Circuit]
    full_loss: float  # task loss of the unpruned model on the bisection set
    history: dict = field(default_factory=dict)  # per step: task loss, kept nodes
    seconds: float = 0.0
    order: list[tuple[str, int]] = field(default_factory=list)  # nodes by decreasing tau
    snapshots: dict[int, dict[float, Circuit | None]] = field(default_factory=dict)  # mask after N steps, bisected
    cleaned: dict[float, Circuit] = field(default_factory=dict)  # greedy clean-up of each circuit (cfg.cleanup)
    rankings: dict[str, Circuit | None] = field(default_factory=dict)  # first target, other tie-breaks (sensitivity)
    n_fit_pairs: int = 0  # pairs the mask was trained on
    n_val_pairs: int = 0  # pairs bisection and calibration measured

    @property
    def circuit(self) -> Circuit:
        """The circuit at the first (default) target."""
        return next(iter(self.circuits.values()))


def plateau_step(kept: list[float], loss: list[float], cfg: PruneConfig) -> int | None:
    """The step at which the declared plateau rule is first met (see :class:`PruneConfig`), or None.

    Window means of kept nodes and task loss over consecutive ``plateau_window``-step windows; a boundary passes
    when both moved less than the tolerances since the previous window; the rule is met at the last of
    ``plateau_patience`` consecutive passing boundaries.
    """
    w = cfg.plateau_window
    n = min(len(kept), len(loss)) // w
    km = [sum(kept[i * w:(i + 1) * w]) / w for i in range(n)]
    lm = [sum(loss[i * w:(i + 1) * w]) / w for i in range(n)]
    run = 0
    for i in range(1, n):
        ok = (abs(km[i] - km[i - 1]) <= cfg.plateau_tol * km[i - 1] + 1
              and abs(lm[i] - lm[i - 1]) <= cfg.plateau_loss_tol)
        run = run + 1 if ok else 0
        if run >= cfg.plateau_patience:
            return (i + 1) * w
    return None


def train_mask(model: GPT, data: PairData, means: dict[str, torch.Tensor], cfg: PruneConfig,
               progress: bool = False, chunks: int | None = None) -> tuple[NodeMask, dict]:
    """Optimise the node mask on ``data`` (model weights frozen).

    Each step draws ``cfg.batch_pairs`` pairs (both prompts of each), run in ``chunks`` pieces by length (padded),
    or packed with ``chunks`` attention groups (``cfg.pack``); default 2 packed, 4 padded (the fastest of each
    on this CPU, ``benchmarks/bench_pruning.py``). ``means`` are the values pruned nodes take
    (pass :func:`ablation_values` for zero ablation). Returns the mask and its history: per step ``task_loss``,
    ``kept`` and ``lr``; ``converged_at`` (:func:`plateau_step`, None if never met), ``steps_run`` and
    ``snapshots`` ({step: tau of every node after that step}).
    """
    g = torch.Generator().manual_seed(cfg.seed)
    chunks = chunks or (2 if cfg.pack else 4)
    sites = node_sites(model, cfg.node_kinds)
    mask = NodeMask(sites, cfg, g)
    if data.n_pairs < 1:
        raise ValueError("train_mask: no pair of prompts to train on")
    for p in model.parameters():
        p.requires_grad_(False)
    # foreach: one kernel per op over all of the mask's tensors (the same numbers as the per-tensor loop)
    opt = torch.optim.AdamW(mask.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay,
                            foreach=True)
    warm = max(1, round(cfg.warmup_frac * cfg.steps))
    hist = {"task_loss": [], "kept": [], "lr": [], "converged_at": None, "snapshots": {}, "overshoot_snapshots": {}}
    overshoot = [torch.zeros_like(t) for t in mask.tau]
    model.eval()
    try:
        bar = tqdm(range(cfg.steps), desc="prune", disable=not progress, leave=False)
        for step in bar:
            if step < warm:
                lr = cfg.lr * (step + 1) / warm
            else:
                lr = cfg.lr * (1 - (step - warm) / max(1, cfg.steps - warm) if cfg.schedule == "linear" else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            pairs = torch.randint(0, data.n_pairs, (cfg.batch_pairs,), generator=g)
            gates = mask.gates()
            margin = ablated_margin(model, data.subset(PairData.pair_rows(pairs)), gates, means,
                                    freeze_norms=cfg.freeze_norms, chunks=chunks, pack=cfg.pack)
            task = F.softplus(-margin).mean()  # = -log softmax over the two candidates
            kept = sum(gt.sum() for gt in gates.values())
            loss = task + cfg.k_coef * kept
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mask.parameters(), 1.0, foreach=True)
            opt.step()
            with torch.no_grad():
                for t, over in zip(mask.tau, overshoot):
                    over += t - t.clamp(-1, 1)  # what the clamp takes away: the optimiser's push past +-1
                    t.clamp_(-1, 1)
            hist["task_loss"].append(float(task.detach()))
            hist["kept"].append(int(kept.detach()))
            hist["lr"].append(lr)
            if step + 1 in cfg.snapshots:
                hist["snapshots"][step + 1] = mask.flat()  # a new tensor: later steps do not change it
                hist["overshoot_snapshots"][step + 1] = mask.spread(overshoot)
            if (step + 1) % cfg.plateau_window == 0 and hist["converged_at"] is None:
                hist["converged_at"] = plateau_step(hist["kept"], hist["task_loss"], cfg)
                bar.set_postfix(kept=hist["kept"][-1], loss=f"{hist['task_loss'][-1]:.3f}")
                if hist["converged_at"] is not None and cfg.stop_at_plateau:
                    break
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    hist["steps_run"] = len(hist["kept"])
    hist["overshoot"] = mask.spread(overshoot)
    tau = mask.flat()
    hist["kept_at_clamp"] = int((tau >= 1).sum())  # kept nodes whose tau sits at the +1 clamp (all tied)
    hist["kept_distinct_tau"] = int(torch.unique(tau[tau > 0]).numel())
    return mask, hist


def mask_order(model: GPT, tau: torch.Tensor, data: PairData, values: dict[str, torch.Tensor],
               cfg: PruneConfig, overshoot: torch.Tensor | None = None, max_pairs: int = 128) -> NodeOrder:
    """The ranking a bisection walks for a trained mask ``tau`` (site order): by tau, ties broken as
    ``cfg.tiebreak`` says. tau saturates at its +1 clamp, so late in a run most kept nodes tie there.

    - ``"overshoot"``: by how far the optimiser pushed the node past the clamp, summed over the run (``overshoot``
      from :func:`train_mask`; the unclamped logit's excess);
    - ``"attribution"``: by each node's attribution score at the mask's own hard gates, measured on the first
      ``max_pairs`` pairs of ``data`` (mask-training pairs, never the validation pairs the bisection measures);
    - ``"none"``: by position (the ranking before tie-breaks existed).
    """
    sites = node_sites(model, cfg.node_kinds)
    own = int((tau > 0).sum())
    if cfg.tiebreak == "none":
        return NodeOrder(sites, tau, own)
    if cfg.tiebreak == "overshoot":
        if overshoot is None:
            raise ValueError("mask_order: tiebreak 'overshoot' needs the run's overshoot")
        return ranked_order(sites, tau, overshoot, own)
    gates = {name: (t > 0).float() for name, t in zip(sites, tau.split(list(sites.values())))}
    sub = data.subset(PairData.pair_rows(torch.arange(min(max_pairs, data.n_pairs))))
    attr = attribution_scores(model, sub, sites, gates, values, freeze_norms=cfg.freeze_norms)
    return ranked_order(sites, tau, attr, own)


@torch.no_grad()
def masked_loss(model: GPT, data: PairData, means: dict[str, torch.Tensor], gates: dict[str, torch.Tensor],
                calibrate_steps: int = 0, freeze_norms: bool = False,
                pack: bool = False) -> tuple[float, float, dict | None]:
    """Task loss and accuracy with ``gates`` applied: (loss, accuracy, calibration or None); ``pack``: see
    :func:`~sparsecirc.wst.ablation.pair_margin`."""
    margin = ablated_margin(model, data, gates, means, freeze_norms=freeze_norms, chunks=4 if pack else 1, pack=pack)
    calib = None
    if calibrate_steps:
        with torch.enable_grad():
            calib, loss = calibrate(margin, data.cand, calibrate_steps)
    else:
        loss = float(F.softplus(-margin).mean())
    acc = float((apply_calibration(margin, data.cand, calib) > 0).float().mean())
    return loss, acc, calib


def bisect_k(model: GPT, mask: NodeMask | NodeOrder, data: PairData, means: dict[str, torch.Tensor], target: float,
             cfg: PruneConfig, cache: dict | None = None) -> tuple[int, float, dict | None] | None:
    """Smallest k whose top-k circuit (by ``mask``'s ranking) reaches ``target`` task loss (calibrated) on ``data``.

    The upper end is the ranking's own node count (a trained mask's kept nodes) when that circuit reaches the
    target, else all nodes; None if neither does. The mask's own circuit comes first: loss is only roughly
    decreasing in k, and a bisection over all nodes can land in a non-monotone stretch far above the mask's own
    count (measured on zoo v2: a mask keeping 40 nodes bisected to 329 with all nodes as the upper end).
    """
    sites = node_sites(model, cfg.node_kinds)
    cache = {} if cache is None else cache
    steps = cfg.calib_steps if cfg.calibrate else 0

    def loss_at(k):
        if k not in cache:
            l, _, calib = masked_loss(model, data, means, gates_from_nodes(sites, mask.topk_nodes(k)), steps,
                                      cfg.freeze_norms, pack=cfg.pack)
            cache[k] = (l, calib)
        return cache[k]

    n = sum(sites.values())
    own = mask.own_count
    hi = next((k for k in (own, n) if k is not None and loss_at(k)[0] <= target), None)
    if hi is None:
        return None
    lo = 0
    while lo < hi:  # loss is (close to) decreasing in k: the classic lower-bound bisection
        mid = (lo + hi) // 2
        if loss_at(mid)[0] <= target:
            hi = mid
        else:
            lo = mid + 1
    return (hi, *loss_at(hi))


def greedy_cleanup(model: GPT, nodes: dict[str, list[int]], order: NodeMask | NodeOrder, data: PairData,
                   means: dict[str, torch.Tensor], target: float, cfg: PruneConfig,
                   progress: bool = False) -> tuple[dict[str, list[int]], float, dict | None]:
    """Try to drop each node of a bisected circuit, weakest (lowest score) first; a drop stands when the circuit
    still meets ``target`` on ``data`` (calibrated). Returns (nodes, loss, calibration) of the cleaned circuit."""
    sites = node_sites(model, cfg.node_kinds)
    steps = cfg.calib_steps if cfg.calibrate else 0
    flat = order.flat()
    offset = dict(zip(order.names, [sum(order.sizes[:i]) for i in range(len(order.sizes))]))
    kept = sorted(((h, i) for h, idx in nodes.items() for i in idx), key=lambda hi: float(flat[offset[hi[0]] + hi[1]]))
    cur = {h: list(v) for h, v in nodes.items()}
    loss, _, calib = masked_loss(model, data, means, gates_from_nodes(sites, cur), steps, cfg.freeze_norms, cfg.pack)
    for h, i in tqdm(kept, desc="clean-up", disable=not progress, leave=False):
        trial = {k: [j for j in v if (k, j) != (h, i)] for k, v in cur.items()}
        l, _, c = masked_loss(model, data, means, gates_from_nodes(sites, trial), steps, cfg.freeze_norms, cfg.pack)
        if l <= target:
            cur, loss, calib = {k: v for k, v in trial.items() if v}, l, c
    return cur, loss, calib


def circuits_at(model: GPT, order: NodeMask | NodeOrder, data: PairData, means: dict[str, torch.Tensor],
                targets: tuple[float, ...], cfg: PruneConfig, task: str) -> dict[float, Circuit]:
    """The bisected circuit of ``order`` at each target on ``data``: {target: circuit} for the targets reached (the
    bisections share one cache of losses per k)."""
    out, cache = {}, {}
    for target in targets:
        found = bisect_k(model, order, data, means, target, cfg, cache)
        if found is not None:
            k, loss, calib = found
            nodes = order.topk_nodes(k)
            out[target] = Circuit(task=task, nodes=nodes, edges=count_edges(model, nodes), target_loss=target,
                                  loss=loss, meta={"k": k, "calibration": calib})
    return out


def fit_and_eval(train_ds, n_ctx: int, cfg: PruneConfig) -> tuple[PairData, PairData]:
    """(pairs the mask is trained on, pairs bisection and calibration measure) of a task's training split: the
    ``cfg.val_pairs`` held-out split, or (legacy, ``val_pairs = 0``) all pairs and ``2 * eval_pairs`` of their
    prompts drawn with ``cfg.seed + 1``."""
    data = PairData.from_dataset(train_ds, n_ctx)
    if cfg.val_pairs:
        return data.split_pairs(cfg.val_pairs, cfg.split_seed)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return data, data.subset(torch.randperm(len(data), generator=g)[:2 * cfg.eval_pairs])


def prune_to_circuit(model: GPT, train_ds, means: dict[str, torch.Tensor], cfg: PruneConfig = PruneConfig(), *,
                     targets: tuple[float, ...] | None = None, task: str = "", progress: bool = False,
                     rankings: tuple[str, ...] = ()) -> PruneResult:
    """Train a node mask on a task's training pairs and bisect the circuit at each target loss.

    Args:
        model: the model to prune (weights are not changed).
        train_ds: the task's training split (``tasks.load_task(name, "train")``).
        means: ``compute_means(model, pretraining windows)`` (zeros are used instead with ``cfg.ablation="zero"``).
        cfg: pruning hyperparameters; ``cfg.target_loss`` is the first (default) target. With ``cfg.val_pairs``
            the bisection, calibration and clean-up use held-out validation pairs (see the module docstring).
        targets: more target losses to bisect with the same trained mask (P1 Fig. 2 sweeps the target).
        rankings: other ``tiebreak`` values to bisect the final mask with as well, at the first target (how much
            the circuit depends on the ranking of tied nodes; stored in ``rankings``).
    Returns:
        PruneResult with ``circuits[target]`` (missing where even the full model misses the target),
        ``snapshots[step][target]`` for each ``cfg.snapshots`` step, ``cleaned[target]`` with ``cfg.cleanup``
        (at the lowest target reached only).
    """
    t0 = time.time()
    values = ablation_values(means, cfg)
    fit, eval_data = fit_and_eval(train_ds, model.cfg.n_ctx, cfg)
    mask, hist = train_mask(model, fit, values, cfg, progress)
    sites = node_sites(model, cfg.node_kinds)
    full_loss = masked_loss(model, eval_data, values, {n: torch.ones(d) for n, d in sites.items()}, 0,
                            cfg.freeze_norms, cfg.pack)[0]
    all_targets = (cfg.target_loss, *(targets or ()))
    tau, overshoot = mask.flat(), hist.pop("overshoot")
    ranking = mask_order(model, tau, fit, values, cfg, overshoot)
    alt = {tb: circuits_at(model, mask_order(model, tau, fit, values, cfg.replace(tiebreak=tb), overshoot),
                           eval_data, values, (cfg.target_loss,), cfg, task).get(cfg.target_loss) for tb in rankings}
    circuits = circuits_at(model, ranking, eval_data, values, all_targets, cfg, task)
    snaps, over = {}, hist.pop("overshoot_snapshots")
    for step, tau in hist.pop("snapshots").items():
        reached = circuits_at(model, mask_order(model, tau, fit, values, cfg, over[step]), eval_data, values,
                              all_targets, cfg, task)
        snaps[step] = {t: reached.get(t) for t in all_targets}
    cleaned = {}
    if cfg.cleanup and circuits:  # the circuit at the lowest target reached (the one a study reads) only
        target = min(circuits)
        c = circuits[target]
        nodes, loss, calib = greedy_cleanup(model, c.nodes, ranking, eval_data, values, target, cfg, progress)
        cleaned[target] = Circuit(task=task, nodes=nodes, edges=count_edges(model, nodes), target_loss=target,
                                  loss=loss, meta={"k": sum(len(v) for v in nodes.values()), "calibration": calib,
                                                   "cleanup_of": c.n_nodes})
    flat = ranking.flat()
    names = [(n, i) for n, size in zip(mask.names, mask.sizes) for i in range(size)]
    order = [names[i] for i in torch.argsort(flat, descending=True, stable=True).tolist()]
    return PruneResult(circuits=circuits, full_loss=full_loss, history=hist, seconds=time.time() - t0, order=order,
                       snapshots=snaps, cleaned=cleaned, n_fit_pairs=fit.n_pairs, n_val_pairs=eval_data.n_pairs,
                       rankings=alt)


def circuit_metrics(model: GPT, circuit: Circuit, ds, means: dict[str, torch.Tensor], *, invert: bool = False,
                    cfg: PruneConfig = PruneConfig()) -> dict[str, float]:
    """Task loss / accuracy of a circuit on a dataset with its stored calibration (``invert``: ablate the circuit
    and keep everything else, P1's inverse check)."""
    data = PairData.from_dataset(ds, model.cfg.n_ctx)
    gates = gates_from_nodes(node_sites(model, cfg.node_kinds), circuit.nodes, invert=invert)
    with torch.no_grad():
        margin = ablated_margin(model, data, gates, ablation_values(means, cfg), freeze_norms=cfg.freeze_norms)
    m = margin if invert else apply_calibration(margin, data.cand, circuit.meta.get("calibration"))
    return {"loss": float(F.softplus(-m).mean()), "accuracy": float((m > 0).float().mean()), "n": len(data)}


def circuit_faithfulness(model: GPT, circuit: Circuit, ds, means: dict[str, torch.Tensor], *,
                         cfg: PruneConfig = PruneConfig()) -> dict:
    """How far a circuit stands in for its full model on ``ds`` (held-out prompts), beside its loss.

    Returns:
        ``full`` / ``uncalibrated`` / ``calibrated``: task loss and accuracy of the full model and of the circuit
        (rest mean-ablated) before and after its stored calibration, whose ``scale`` and ``bias`` (largest |b|)
        are returned too; ``agreement``: fraction of prompts where the calibrated circuit picks the same
        candidate as the full model; ``kl``: mean KL(full || circuit) over the two candidates (nats);
        ``beats_full``: the calibrated circuit's loss is below the full model's (a sign that calibration, not
        the circuit, does the work).
    """
    data = PairData.from_dataset(ds, model.cfg.n_ctx)
    gates = gates_from_nodes(node_sites(model, cfg.node_kinds), circuit.nodes)
    with torch.no_grad():
        full = pair_margin(model, data)
        raw = ablated_margin(model, data, gates, ablation_values(means, cfg), freeze_norms=cfg.freeze_norms)
    calib = circuit.meta.get("calibration") or {}
    cal = apply_calibration(raw, data.cand, calib)

    def stats(m):
        return {"loss": float(F.softplus(-m).mean()), "accuracy": float((m > 0).float().mean())}

    p = torch.sigmoid(full)  # the full model's probability of the target, of the two candidates
    kl = p * (F.logsigmoid(full) - F.logsigmoid(cal)) + (1 - p) * (F.logsigmoid(-full) - F.logsigmoid(-cal))
    out = {"full": stats(full), "uncalibrated": stats(raw), "calibrated": stats(cal),
           "scale": float(calib.get("scale", 1.0)),
           "bias": max((abs(b) for b in calib.get("bias", {}).values()), default=0.0),
           "agreement": float(((full > 0) == (cal > 0)).float().mean()), "kl": float(kl.mean()), "n": len(data)}
    out["beats_full"] = out["calibrated"]["loss"] < out["full"]["loss"]
    return out
