"""Baselines and controls for the node-mask pruner (:mod:`sparsecirc.wst.prune`).

- :func:`attribution_order` / :func:`attribution_circuits`: the attribution-pruning baseline of P1 Fig. 31 (rank
  nodes by |delta act * grad|, then the same bisection as the learned masks).
- :func:`search_hparams`: a small lr x k_coef search (a grid, or one axis after the other) on the validation split,
  our CPU stand-in for P1's CARBS.
- :func:`random_node_inverse`: the control for inverse pruning, random node sets of the circuit's size and kinds.
"""
from __future__ import annotations

import torch

from sparsecirc.core.config import PruneConfig
from sparsecirc.core.model import GPT
from sparsecirc.wst.ablation import NodeOrder, PairData, ablation_values, attribution_scores
from sparsecirc.wst.circuits import Circuit, node_sites
from sparsecirc.wst.prune import circuit_metrics, circuits_at, fit_and_eval, prune_to_circuit


def attribution_order(model: GPT, data: PairData, means: dict[str, torch.Tensor], cfg: PruneConfig,
                      batch_size: int = 64) -> NodeOrder:
    """Attribution-pruning baseline (P1 Fig. 31): score each node by |d task loss / d gate| at gate = 1, i.e. the
    first-order change of the mean task loss when the node alone is ablated, |sum over positions of (act - value) *
    grad| averaged over ``data``'s prompts."""
    sites = node_sites(model, cfg.node_kinds)
    ones = {n: torch.ones(d) for n, d in sites.items()}
    return NodeOrder(sites, attribution_scores(model, data, sites, ones, means, freeze_norms=cfg.freeze_norms,
                                               batch_size=batch_size))


def attribution_circuits(model: GPT, train_ds, means: dict[str, torch.Tensor], cfg: PruneConfig = PruneConfig(), *,
                         targets: tuple[float, ...] | None = None, task: str = "") -> dict[float, Circuit]:
    """The attribution-pruning baseline: rank nodes by :func:`attribution_order` on the mask-training pairs, then
    bisect on the same validation pairs as :func:`prune_to_circuit`. {target: circuit} for targets reached."""
    values = ablation_values(means, cfg)
    fit, eval_data = fit_and_eval(train_ds, model.cfg.n_ctx, cfg)
    return circuits_at(model, attribution_order(model, fit, values, cfg), eval_data, values,
                       (cfg.target_loss, *(targets or ())), cfg, task)


def search_hparams(model: GPT, train_ds, means: dict[str, torch.Tensor], cfg: PruneConfig, *,
                   lrs=(3e-3, 1e-2, 3e-2), k_coefs=(1e-4, 1e-3), steps: int = 200, mode: str = "grid",
                   known: list[dict] | None = None, task: str = "") -> tuple[PruneConfig, list[dict]]:
    """Our CPU stand-in for P1's CARBS search over ``lr`` x ``k_coef``, each point run for ``steps`` mask steps and
    bisected on the validation pairs (``cfg.val_pairs`` must be > 0: the test split is never seen).

    ``mode="grid"`` runs every pair of ``lrs`` x ``k_coefs``. ``mode="coordinate"`` runs every ``k_coefs`` value at
    ``lrs[0]``, then the other ``lrs`` at the winning k_coef (len(k_coefs) + len(lrs) - 1 runs instead of their
    product). The winner keeps the fewest nodes at ``cfg.target_loss`` (ties: lower validation loss, then the
    earlier point). ``known``: rows of points already run with the same settings (a search's earlier grid), reused
    instead of rerun. Returns (``cfg`` with the winning lr and k_coef, one row per point: lr, k_coef, nodes or
    None, loss or None).
    """
    if not cfg.val_pairs:
        raise ValueError("search_hparams needs a validation split: set PruneConfig.val_pairs > 0")
    if mode not in ("grid", "coordinate"):
        raise ValueError(f"search_hparams: mode must be 'grid' or 'coordinate', not {mode!r}")
    done = {(float(r["lr"]), float(r["k_coef"])): r for r in known or []}
    rows: list[dict] = []

    def point(lr: float, kc: float) -> None:
        key = (float(lr), float(kc))
        if key not in done:
            trial = cfg.replace(lr=key[0], k_coef=key[1], steps=steps, snapshots=(), cleanup=False)
            c = prune_to_circuit(model, train_ds, means, trial, task=task).circuits.get(cfg.target_loss)
            done[key] = {"lr": key[0], "k_coef": key[1], "nodes": None if c is None else c.n_nodes,
                         "loss": None if c is None else c.loss}
        if done[key] not in rows:
            rows.append(done[key])

    def best() -> dict | None:
        reached = [r for r in rows if r["nodes"] is not None]
        return min(reached, key=lambda r: (r["nodes"], r["loss"])) if reached else None

    first = lrs if mode == "grid" else lrs[:1]
    for lr in first:
        for kc in k_coefs:
            point(lr, kc)
    stage1 = best()
    if mode == "coordinate" and stage1 is not None:
        for lr in lrs[1:]:
            point(lr, stage1["k_coef"])
    win = best()
    if win is None:
        return cfg, rows
    return cfg.replace(lr=win["lr"], k_coef=win["k_coef"]), rows


def random_node_inverse(model: GPT, circuit: Circuit, ds, means: dict[str, torch.Tensor], *, n_draws: int = 5,
                        seed: int = 0, cfg: PruneConfig = PruneConfig()) -> dict[str, float]:
    """The control for inverse pruning: ablate random node sets of the circuit's size **and kinds** (the same count
    at every hook) instead of the circuit, keep everything else. Mean task loss and accuracy over ``n_draws``
    draws on ``ds`` (uncalibrated, like the inverse check itself)."""
    sites = node_sites(model, cfg.node_kinds)
    g = torch.Generator().manual_seed(seed)
    losses, accs = [], []
    for _ in range(n_draws):
        nodes = {h: sorted(torch.randperm(sites[h], generator=g)[:len(idx)].tolist())
                 for h, idx in circuit.nodes.items() if idx}
        fake = Circuit(task=circuit.task, nodes=nodes, edges=[], target_loss=circuit.target_loss, loss=float("nan"))
        m = circuit_metrics(model, fake, ds, means, invert=True, cfg=cfg)
        losses.append(m["loss"])
        accs.append(m["accuracy"])
    return {"loss": sum(losses) / n_draws, "accuracy": sum(accs) / n_draws, "n_draws": n_draws}
