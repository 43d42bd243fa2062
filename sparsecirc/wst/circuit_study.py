"""The circuit-size study behind chapters 03-04 (P1 Fig. 2-3) and its faithfulness controls: one producer.

For every model of a ``kind: circuits`` config, compute the mean-ablation values, evaluate the 20 tasks, keep the
tasks every model learns (test accuracy >= ``min_accuracy``), prune each (model, task) and bisect the circuit at
each target loss. Controls (``controls:``): prune a random-init copy of a model (sparsified like the trained one)
and a trained model on a nonsense task (labels flipped at random), as in Drori's critique of P1.

Stored: ``results.json`` (metrics, counts, timings) and ``circuits/<model>__<task>.json`` (kept nodes at the
headline target; edges are recomputed from the model's weights on load, see :func:`load_circuit`).

Data versions: every model is evaluated and pruned on the task data of its own data version
(``tasks.model_task``), controls included.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.metrics import nonzero_table
from sparsecirc.core.model import GPT
from sparsecirc.core.sparsity import Projector
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import TASKS, evaluate_all, model_task
from sparsecirc.wst.circuits import Circuit, load_circuit
from sparsecirc.wst.prune import circuit_faithfulness, circuit_metrics, prune_to_circuit
from sparsecirc.wst.reading import mean_values, study_model


def geometric_mean(values, floor: float = 1.0) -> float:
    """Geometric mean with values floored at ``floor`` (an empty circuit counts as 1 edge: log 0 is undefined)."""
    vals = [max(float(v), floor) for v in values]
    if not vals:
        raise ValueError("geometric mean of nothing")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def swap_candidates(ds, flip) -> datasets.Dataset:
    """The same prompts with target and distractor (tokens and ids) swapped where ``flip[i]`` is true."""
    cols = ds.with_format(None).to_dict()
    for a, b in (("target", "distractor"), ("target_id", "distractor_id")):
        cols[a], cols[b] = ([y if f else x for x, y, f in zip(cols[a], cols[b], flip)],
                            [x if f else y for x, y, f in zip(cols[a], cols[b], flip)])
    return datasets.Dataset.from_dict(cols)


def nonsense_labels(ds, seed: int = 0):
    """The same prompts with target and distractor swapped on a random half (P1's critique: a task with no
    signal); returns a new ``datasets.Dataset``."""
    g = torch.Generator().manual_seed(seed)
    return swap_candidates(ds, (torch.rand(ds.num_rows, generator=g) < 0.5).tolist())


def random_init_like(model: GPT, cfg, seed: int = 0) -> GPT:
    """An untrained model of the same config, sparsified to the trained model's final nonzero fractions."""
    torch.manual_seed(seed)
    fresh = GPT(cfg.model)
    if cfg.is_sparse:
        Projector(fresh, cfg.sparsity, cfg.train.steps).project(cfg.train.steps)
    fresh.eval()
    return fresh


def _prune_one(model, means, train_ds, test_ds, pcfg, targets, task, *,
               inverse: bool = True) -> tuple[dict, Circuit | None]:
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
    """Prune every (model, task) of a ``kind: circuits`` config at each target, plus the controls, each model on
    the task data of its own data version."""
    folder, progress = ctx.folder, ctx.progress

    spec = ctx.spec
    sspec = ctx.overrides()
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
        row, head = _prune_one(model, means, model_task(model, task, "train"), model_task(model, task, "test"), pcfg,
                               targets, task)
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
    fresh_means = mean_values(fresh, cfg, lm_tokens(cfg, "val"), pcfg)
    for task in tasks:
        row, _ = _prune_one(fresh, fresh_means, model_task(fresh, task, "train"), model_task(fresh, task, "test"),
                            pcfg, targets, task, inverse=False)
        out["random_init"].append({**row, "model": f"random-init {mid}"})
        ns_train = nonsense_labels(model_task(model, task, "train"), seed=1)
        ns_test = nonsense_labels(model_task(model, task, "test"), seed=2)
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


def reached_tasks(results: dict, target: float) -> dict[str, dict[str, int]]:
    """The rows of :func:`edges_table` where every studied model reached ``target``."""
    return {t: row for t, row in edges_table(results, target).items()
            if row and all(v is not None for v in row.values())}


def empty_circuit_tasks(results: dict, target: float) -> dict[str, list[str]]:
    """Reached tasks where some model's circuit has no edge at all ({task: [those models]}): the answer then comes
    from the last token's embedding -> unembedding path (and the residual stream), not from a circuit of weights.
    They are reported, and left out of the geometric mean (a log of 0 is undefined, and flooring it at one edge
    would let one such task dominate the ratio)."""
    return {t: sorted(m for m, v in row.items() if v == 0) for t, row in reached_tasks(results, target).items()
            if any(v == 0 for v in row.values())}


def usable_tasks(results: dict, target: float) -> dict[str, dict[str, int]]:
    """The tasks models are compared on: every studied model reached ``target`` with a non-empty circuit (see
    :func:`empty_circuit_tasks` for those left out)."""
    empty = empty_circuit_tasks(results, target)
    return {t: row for t, row in reached_tasks(results, target).items() if t not in empty}


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
    """How many studied tasks every model reached ``target`` on (empty circuits included)."""
    return len(reached_tasks(results, target))


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


# --- chapter tables and values (chapters 03-04) --------------------------------------------------------------
def edges_frame(results: dict, target: float, names: dict[str, str] | None = None) -> pd.DataFrame:
    """:func:`edges_table` as a DataFrame: one row per studied task, one column per model.

    Args:
        results: a circuits study's ``results.json``.
        target: the task loss the circuits were bisected to.
        names: optional ``{model id: column name}``.

    Returns:
        Edges at ``target`` (None / NaN where the circuit never reached it).
    """
    return pd.DataFrame(edges_table(results, target)).T.rename(columns=names or {})


def ratio_table(results: dict, target: float, sparse: str, dense: str) -> pd.DataFrame:
    """Per task: sparse and dense circuit edges at ``target`` and their ratio.

    Args:
        results: a circuits study's ``results.json``.
        target: the task loss.
        sparse, dense: the two model ids.

    Returns:
        A DataFrame indexed by task with ``sparse edges``, ``dense edges`` and ``dense / sparse`` (1 place; an
        empty sparse circuit counts as 1 edge).
    """
    table = edges_frame(results, target, {sparse: "sparse edges", dense: "dense edges"})
    table["dense / sparse"] = (table["dense edges"] / table["sparse edges"].clip(lower=1)).round(1)
    return table


def seed_table(results_by_seed: dict[int, dict], sparse: str, dense: str, target: float) -> pd.DataFrame:
    """The headline numbers of the same study pruned with different seeds, one row per seed.

    Args:
        results_by_seed: ``{pruning seed: results}``.
        sparse, dense: the two model ids.
        target: the task loss.

    Returns:
        A DataFrame indexed by ``pruning seed`` with ``tasks reaching target``, the geometric-mean edges of each
        model and ``dense / sparse`` (unrounded; None where not reached).
    """
    rows = [{"pruning seed": s, "tasks reaching target": n_reached(rr, target),
             "sparse edges (geo. mean)": geomean_edges(rr, sparse, target),
             "dense edges (geo. mean)": geomean_edges(rr, dense, target),
             "dense / sparse": size_ratio(rr, dense, sparse, target)} for s, rr in results_by_seed.items()]
    return pd.DataFrame(rows).set_index("pruning seed")


def smallest_circuit_task(results: dict, model: str, target: float) -> str | None:
    """The task whose circuit for ``model`` at ``target`` has the fewest edges, preferring non-empty circuits.

    Args:
        results: a circuits study's ``results.json``.
        model: the model id.
        target: the task loss.

    Returns:
        The task name (ties broken by name), or None if no circuit of ``model`` reached ``target``.
    """
    edges = {r["task"]: r["targets"][str(target)]["edges"] for r in results["runs"]
             if r["model"] == model and r["targets"][str(target)]}
    if not edges:
        return None
    return min(edges, key=lambda t: (edges[t] == 0, edges[t], t))


def faithfulness_table(results: dict, sparse: str) -> pd.DataFrame:
    """Mean test task loss of the full model, the circuit alone and the model with the circuit ablated.

    Args:
        results: a circuits study's ``results.json``.
        sparse: the sparse model's id (every other model counts as ``dense``).

    Returns:
        A DataFrame indexed by ``model`` (``dense``, ``sparse``) with columns ``full model``, ``circuit only`` and
        ``circuit ablated`` (unrounded means over tasks).
    """
    inv = pd.DataFrame([{"model": "sparse" if r["model"] == sparse else "dense", "task": r["task"],
                         "full model": r["full_loss"], "circuit only": r.get("test", {}).get("loss"),
                         "circuit ablated": r.get("inverse", {}).get("loss")} for r in results["runs"]])
    return inv.groupby("model")[["full model", "circuit only", "circuit ablated"]].mean()


def circuit_faithfulness_table(results: dict, folder: Path, models: dict[str, GPT], means: dict[str, dict],
                               target: float) -> pd.DataFrame:
    """Every stored circuit of a study measured against its own full model on the task's test prompts in the
    model's data version (:func:`sparsecirc.wst.prune.circuit_faithfulness`).

    Args:
        results: the study's ``results.json``; ``folder``: its artifact folder (``circuits/`` inside).
        models: ``{model id: GPT}``; ``means``: ``{model id: mean-ablation values}``.
        target: the task loss the stored circuits were bisected to (rows are only the tasks in ``results``).

    Returns:
        One row per (model, task) with a stored circuit: full loss and accuracy, the circuit's loss and accuracy
        uncalibrated and calibrated, calibration scale and largest |bias|, agreement with the full model, KL(full
        || circuit), and ``beats full`` (flagged: a circuit better than its own model).
    """
    rows = []
    for r in results["runs"]:
        path = folder / "circuits" / f"{r['model']}__{r['task']}.json"
        if r["model"] not in models or not path.exists() or r["targets"].get(str(float(target))) is None:
            continue
        f = circuit_faithfulness(models[r["model"]], load_circuit(path, models[r["model"]]),
                                 model_task(models[r["model"]], r["task"], "test"), means[r["model"]])
        rows.append({"model": r["model"], "task": r["task"], "full loss": f["full"]["loss"],
                     "full acc": f["full"]["accuracy"], "circuit loss (raw)": f["uncalibrated"]["loss"],
                     "circuit acc (raw)": f["uncalibrated"]["accuracy"], "circuit loss": f["calibrated"]["loss"],
                     "circuit acc": f["calibrated"]["accuracy"], "scale": f["scale"], "|bias| max": f["bias"],
                     "agreement": f["agreement"], "KL(full||circuit)": f["kl"], "beats full": f["beats_full"]})
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def faithfulness_summary(table: pd.DataFrame, model: str) -> dict:
    """``agreement`` (mean over ``model``'s circuits, or "no circuit"), ``beats full`` (how many circuits of the table
    beat their own model) and ``circuits`` (rows of the table), from :func:`circuit_faithfulness_table`."""
    mine = table.xs(model, level="model") if len(table) and model in table.index.get_level_values("model") else None
    return {"agreement": float(mine["agreement"].mean()) if mine is not None else "no circuit",
            "beats full": int(table["beats full"].sum()) if len(table) else 0, "circuits": len(table)}


def controls_table(results: dict, target: float) -> pd.DataFrame:
    """One row per control run (random init, nonsense task): its full-model loss and circuit edges at ``target``.

    Args:
        results: a circuits study's ``results.json`` (with ``controls``).
        target: the task loss.

    Returns:
        A DataFrame with ``control``, ``task``, ``full loss`` (3 places) and ``edges at target`` (an int, or
        ``"not reached"``).
    """
    rows = []
    for kind, runs in results["controls"].items():
        for r in runs:
            cell = r["targets"][str(target)]
            rows.append({"control": kind, "task": r["task"], "full loss": round(r["full_loss"], 3),
                         "edges at target": cell["edges"] if cell else "not reached"})
    return pd.DataFrame(rows)


def ablation_losses(results: dict) -> tuple[float, float]:
    """Mean test task loss with only the circuit kept, and with the circuit ablated (inverse pruning).

    Args:
        results: a circuits study's ``results.json``.

    Returns:
        ``(kept, ablated)``: means over every run that has the ``test`` / ``inverse`` measurement.
    """
    kept = float(np.mean([r["test"]["loss"] for r in results["runs"] if "test" in r]))
    ablated = float(np.mean([r["inverse"]["loss"] for r in results["runs"] if "inverse" in r]))
    return kept, ablated


def control_summary(results: dict, kind: str, target: float) -> str:
    """How many control runs of ``kind`` reached ``target``, and their geometric-mean edges.

    Args:
        results: a circuits study's ``results.json``.
        kind: ``"random_init"`` or ``"nonsense"``.
        target: the task loss.

    Returns:
        E.g. ``"0/1 reached"`` or ``"2/3 reached, 41 edges"``.
    """
    cells = [r["targets"][str(target)] for r in results["controls"].get(kind, [])]
    reached = [c["edges"] for c in cells if c]
    return f"{len(reached)}/{len(cells)} reached" + (f", {geometric_mean(reached):.0f} edges" if reached else "")


def headline(results: dict, sparse: str, dense: str, target: float) -> dict:
    """The numbers chapter 03 claims, in one dict.

    Args:
        results: a circuits study's ``results.json`` (with ``controls``).
        sparse, dense: the two model ids.
        target: the headline task loss.

    Returns:
        ``ratio`` (:func:`size_ratio`), ``tasks in the ratio``, ``empty circuits left out`` ({task: models},
        :func:`empty_circuit_tasks`), ``sparse edges`` / ``dense edges`` (:func:`geomean_edges`; None where not
        reached), ``kept loss`` / ``ablated loss`` (:func:`ablation_losses`) and, per control kind
        (``random_init``, ``nonsense``), its :func:`control_summary`.
    """
    kept, ablated = ablation_losses(results)
    return {"ratio": size_ratio(results, dense, sparse, target),
            "tasks in the ratio": len(usable_tasks(results, target)),
            "empty circuits left out": empty_circuit_tasks(results, target),
            "sparse edges": geomean_edges(results, sparse, target),
            "dense edges": geomean_edges(results, dense, target),
            "kept loss": kept, "ablated loss": ablated,
            **{kind: control_summary(results, kind, target) for kind in ("random_init", "nonsense")}}


def frontier_table(results: dict, runs: dict, names: dict[str, str], target: float) -> pd.DataFrame:
    """Capability (validation loss) and interpretability (circuit edges) of each model of a frontier study.

    Args:
        results: the frontier study's ``results.json``.
        runs: ``{model id: loaded run}``, each with ``.model`` and ``.metrics["val_loss"]``.
        names: ``{model id: row name}``, in row order.
        target: the task loss.

    Returns:
        A DataFrame indexed by ``model`` with ``d_model``, ``L0 (nonzero weights)``, ``val loss`` and ``edges``
        (geometric mean at ``target``, None if not reached).
    """
    rows = [{"model": name, "d_model": runs[mid].model.cfg.d_model,
             "L0 (nonzero weights)": sum(r["nonzero"] for r in nonzero_table(runs[mid].model)),
             "val loss": runs[mid].metrics["val_loss"], "edges": geomean_edges(results, mid, target)}
            for mid, name in names.items()]
    return pd.DataFrame(rows).set_index("model")


def frontier_trends(front: pd.DataFrame, base: str = "sparse", low_l0: str = "sparse-lowl0",
                    narrow: str = "d64-sparse", wide: str | None = None) -> tuple[bool, bool]:
    """P1's two frontier trends, read off a :func:`frontier_table`.

    Args:
        front: the frontier table (``val loss`` and ``edges`` per model).
        base: the reference sparse model (the L0 comparison's higher budget).
        low_l0: the same width with fewer nonzero weights.
        narrow: the narrower model of the width comparison.
        wide: the wider model with the same number of nonzero weights as ``narrow``; ``base`` if None (the first
            zoo widens to ``base``, the second widens ``base`` itself, so ``narrow=base, wide=<the wider one>``).

    Returns:
        ``(l0_trade, width_push)``: lowering L0 gives a worse loss but circuits no larger; the wider model is
        strictly better in loss with circuits no larger. Both False if any model lacks edges.
    """
    wide = base if wide is None else wide
    if len({narrow, wide}) < 2:
        raise ValueError(f"the width comparison needs two models, got narrow={narrow!r}, wide={wide!r}")
    have = front["edges"].notna().all()
    l0_trade = bool(have and front.loc[low_l0, "val loss"] > front.loc[base, "val loss"]
                    and front.loc[low_l0, "edges"] <= front.loc[base, "edges"])
    width_push = bool(have and front.loc[wide, "val loss"] < front.loc[narrow, "val loss"]
                      and front.loc[wide, "edges"] <= front.loc[narrow, "edges"])
    return l0_trade, width_push


def per_task_edges(results: dict, target: float, names: dict[str, str]) -> pd.DataFrame:
    """Circuit edges per task and model at ``target``, with a last row of geometric means.

    Args:
        results: a circuits study's ``results.json``.
        target: the task loss.
        names: ``{model id: column name}`` for every studied model.

    Returns:
        :func:`edges_frame` (as floats, NaN where not reached) plus the row ``geometric mean``
        (:func:`geomean_edges`, over the tasks every model reached with a non-empty circuit).
    """
    table = edges_frame(results, target, names).astype(float)
    ids = {v: k for k, v in names.items()}
    table.loc["geometric mean"] = [geomean_edges(results, ids[n], target) for n in table.columns]
    return table
