"""The circuit-size study behind chapters 03-04 (P1 Fig. 2-3) and its faithfulness controls: one producer.

For every model of a ``kind: circuits`` config, compute the mean-ablation values, evaluate the 20 tasks, keep the
tasks every model learns (test accuracy >= ``min_accuracy``), prune each (model, task) and bisect the circuit at
each target loss. Controls (``controls:``): prune a random-init copy of a model (sparsified like the trained one)
and a trained model on a nonsense task (labels flipped at random), as in Drori's critique of P1.

Stored: ``results.json`` (metrics, counts, timings) and ``circuits/<model>__<task>.json`` (kept nodes at the
headline target; edges are recomputed from the model's weights on load, see :func:`load_circuit`).
"""
from __future__ import annotations

import math
import time

import datasets
import numpy as np
import torch
from tqdm import tqdm

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.model import GPT
from sparsecirc.core.sparsity import Projector
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import TASKS, evaluate_all, load_task
from sparsecirc.wst.circuits import Circuit
from sparsecirc.wst.prune import circuit_metrics, prune_to_circuit
from sparsecirc.wst.reading import mean_values, study_model


def geometric_mean(values, floor: float = 1.0) -> float:
    """Geometric mean with values floored at ``floor`` (an empty circuit counts as 1 edge: log 0 is undefined)."""
    vals = [max(float(v), floor) for v in values]
    if not vals:
        raise ValueError("geometric mean of nothing")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def nonsense_labels(ds, seed: int = 0):
    """The same prompts with target and distractor swapped on a random half (P1's critique: a task with no
    signal); returns a new ``datasets.Dataset``."""
    g = torch.Generator().manual_seed(seed)
    flip = (torch.rand(ds.num_rows, generator=g) < 0.5).tolist()
    cols = ds.with_format(None).to_dict()
    for a, b in (("target", "distractor"), ("target_id", "distractor_id")):
        cols[a], cols[b] = ([y if f else x for x, y, f in zip(cols[a], cols[b], flip)],
                            [x if f else y for x, y, f in zip(cols[a], cols[b], flip)])
    return datasets.Dataset.from_dict(cols)


def random_init_like(model: GPT, cfg, seed: int = 0) -> GPT:
    """An untrained model of the same config, sparsified to the trained model's final nonzero fractions."""
    torch.manual_seed(seed)
    fresh = GPT(cfg.model)
    if cfg.is_sparse:
        Projector(fresh, cfg.sparsity, cfg.train.steps).project(cfg.train.steps)
    fresh.eval()
    return fresh


def _prune_one(model, means, train_ds, test_ds, pcfg, targets, task, *, inverse: bool = True) -> tuple[dict, Circuit | None]:
    res = prune_to_circuit(model, train_ds, means, pcfg, targets=tuple(targets[1:]), task=task)
    row = {"task": task, "seconds": round(res.seconds, 1), "full_loss": res.full_loss,
           "final_kept": res.history["kept"][-1], "targets": {}}
    for tgt in targets:
        c = res.circuits.get(tgt)
        row["targets"][str(tgt)] = None if c is None else {"nodes": c.n_nodes, "edges": c.n_edges, "loss": c.loss}
    head = res.circuits.get(targets[0])
    if head is not None:
        row["test"] = circuit_metrics(model, head, test_ds, means, cfg=pcfg)
        if inverse:
            row["inverse"] = circuit_metrics(model, head, test_ds, means, invert=True, cfg=pcfg)
    return row, head


def produce_circuits(ctx: BuildContext) -> None:
    """Prune every (model, task) of a ``kind: circuits`` config at each target, plus the controls."""
    folder, progress = ctx.folder, ctx.progress

    spec = ctx.spec
    sspec = spec["scales"][ctx.scale]
    pcfg = PruneConfig.from_dict(sspec.get("prune", {}))
    targets = [float(t) for t in sspec.get("targets", spec["targets"])]
    min_acc = sspec.get("min_accuracy", spec["min_accuracy"])
    pcfg = pcfg.replace(target_loss=targets[0])
    names = sspec.get("tasks") or list(TASKS)
    t0 = time.time()
    models, results = {}, {"targets": targets, "min_accuracy": min_acc, "models": {}, "runs": [],
                           "prune_config": pcfg.to_dict()}
    for mid in spec["models"]:
        model, cfg, val = study_model(ctx, mid)
        models[mid] = (model, cfg, mean_values(model, cfg, val, pcfg))
        metrics = evaluate_all(model, "test")
        results["models"][mid] = {"tasks": metrics}
    learned = [t for t in names if all(results["models"][m]["tasks"][t]["accuracy"] >= min_acc
                                       for m in models)]
    results["tasks"] = learned
    (folder / "circuits").mkdir(parents=True, exist_ok=True)
    files = []
    jobs = [(mid, t) for mid in models for t in learned]
    for mid, task in tqdm(jobs, desc="prune", disable=not progress):
        model, cfg, means = models[mid]
        row, head = _prune_one(model, means, load_task(task, "train"), load_task(task, "test"), pcfg, targets, task)
        row["model"] = mid
        results["runs"].append(row)
        if head is not None:
            name = f"circuits/{mid}__{task}.json"
            head.save(folder / name, mid)
            files.append(name)
    results["controls"] = _controls(spec.get("controls"), sspec, models, pcfg, targets, progress)
    results["wall_time_s"] = round(time.time() - t0, 1)
    artifacts.write_json(folder / "results.json", results)
    artifacts.write_manifest(folder, ["results.json", *files], **ctx.manifest_info(
        kind="circuits", seed=pcfg.seed, config={"spec": spec, "prune": pcfg.to_dict()},
        wall_time_s=results["wall_time_s"]))


def _controls(ctrl: dict | None, sspec: dict, models: dict, pcfg: PruneConfig, targets, progress: bool) -> dict:
    """Random-init and nonsense-task pruning, side by side with the real thing (same tasks, same settings)."""
    if not ctrl:
        return {}
    out = {"random_init": [], "nonsense": []}
    mid = ctrl["model"]
    model, cfg, means = models[mid]
    tasks = sspec.get("control_tasks") or ctrl["tasks"]
    fresh = random_init_like(model, cfg, seed=ctrl.get("seed", 0))
    fresh_means = mean_values(fresh, cfg, lm_tokens(cfg)[1], pcfg)
    for task in tasks:
        row, _ = _prune_one(fresh, fresh_means, load_task(task, "train"), load_task(task, "test"), pcfg, targets,
                            task, inverse=False)
        out["random_init"].append({**row, "model": f"random-init {mid}"})
        ns_train = nonsense_labels(load_task(task, "train"), seed=1)
        ns_test = nonsense_labels(load_task(task, "test"), seed=2)
        row, _ = _prune_one(model, means, ns_train, ns_test, pcfg, targets, f"nonsense:{task}", inverse=False)
        out["nonsense"].append({**row, "model": mid})
    return out


# --- reading results (chapters 03-04) ------------------------------------------------------------------------
def edges_table(results: dict, target: float) -> dict[str, dict[str, int | None]]:
    """{task: {model: edges at ``target`` or None if the circuit never reached it}} over the studied tasks."""
    out: dict[str, dict[str, int | None]] = {t: {} for t in results["tasks"]}
    for run in results["runs"]:
        cell = run["targets"].get(str(float(target)))
        out[run["task"]][run["model"]] = None if cell is None else cell["edges"]
    return out


def usable_tasks(results: dict, target: float) -> dict[str, dict[str, int]]:
    """The rows of :func:`edges_table` where every studied model reached ``target`` (the tasks models are
    compared on)."""
    return {t: row for t, row in edges_table(results, target).items()
            if row and all(v is not None for v in row.values())}


def geomean_edges(results: dict, model: str, target: float) -> float | None:
    """Geometric mean over tasks of the model's circuit edges at ``target`` (P1's headline metric); only tasks
    where every studied model reached the target count, so models are compared on the same tasks."""
    usable = usable_tasks(results, target)
    if not usable:
        return None
    return geometric_mean([row[model] for row in usable.values()])


def size_ratio(results: dict, dense: str, sparse: str, target: float) -> float | None:
    """Dense / sparse geometric-mean edges at ``target`` (P1: about 16)."""
    d, s = geomean_edges(results, dense, target), geomean_edges(results, sparse, target)
    return None if d is None or s is None else d / s


def n_reached(results: dict, target: float) -> int:
    """How many studied tasks every model reached ``target`` on."""
    return len(usable_tasks(results, target))


def ratio_spread(results: dict, dense: str, sparse: str, target: float, *, n_boot: int = 2000,
                 seed: int = 0) -> dict | None:
    """How much the dense/sparse ratio depends on which tasks enter it (a bootstrap over tasks).

    Resamples the usable tasks (both models reach ``target``) with replacement ``n_boot`` times and recomputes the
    ratio of geometric means. Returns ``per_task`` ({task: dense/sparse edges}), ``lo`` / ``hi`` (5th and 95th
    percentiles of the bootstrap), ``median`` and ``n_tasks``; None if no task is usable. This is task-sampling
    spread for one pruning seed per task, not seed-to-seed spread of the pruning itself.
    """
    usable = usable_tasks(results, target)
    if not usable:
        return None
    names = sorted(usable)
    d = np.log([max(usable[t][dense], 1) for t in names])
    s = np.log([max(usable[t][sparse], 1) for t in names])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(names), size=(n_boot, len(names)))
    boot = np.exp(d[idx].mean(1) - s[idx].mean(1))
    return {"per_task": {t: max(usable[t][dense], 1) / max(usable[t][sparse], 1) for t in names},
            "lo": float(np.percentile(boot, 5)), "hi": float(np.percentile(boot, 95)),
            "median": float(np.median(boot)), "n_tasks": len(names)}
