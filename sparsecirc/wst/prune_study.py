"""The converged circuit-size study behind chapter 03 (P1 §2.2, §3.1, Fig. 2, 31, 32; Drori's controls).

One producer (config ``kind: prune_study``). For every model and every task all models learn (test accuracy >=
``min_accuracy``), one mask run per pruning seed with the held-out validation split (``prune.val_pairs``), run for
the largest mask budget and bisected as it stood after each budget (``budgets``: P1's CARBS-tuned runs are long; we
show the curve). Every number a row reports about a circuit is measured on the task's **test** prompts: loss and
accuracy with the stored calibration, faithfulness to the full model, inverse pruning and the same-size random-node
control. Options: a small lr x k_coef search on the validation split (``search``: one per (model, task), run
with pruning seed 0 and shared by every seed and condition of that model and task), the attribution-pruning baseline
(``attribution``), the greedy clean-up (``prune.cleanup``), and controls (``controls``): a random-init model of the
same sparsity, a nonsense task with a consistent but meaningless rule, zero instead of mean ablation, frozen
RMSNorm scales, and (a variant rather than a control) q and k masks tied per channel pair, P1 fn. 17
(``controls.prune`` overrides mask settings for the controls alone, e.g. ``stop_at_plateau``; a
control's circuit is then the mask as it stood when the plateau rule was met, reported under ``targets``), and
``rankings``: other tie-breaks for the trained mask's tied nodes, bisected as well at the first target (a
sensitivity check of the headline ranking, ``prune.tiebreak``).

Each (condition, model, task) job is cached in the build cache as it finishes, so an interrupted build continues
where it stopped (``reproduce`` again); the cache key holds the job's settings and the model's weights, and the
cache is shared by every study of a scale, so two studies that run the same job (the sparse model's rows of
chapter 03 and chapter 04) compute it once.

Stored: ``results.json`` (one row per job) and ``circuits/<model>__<task>.json`` (the headline circuit of the
``main`` condition at the largest budget).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import ExitStack

from tqdm import tqdm

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import TASKS, evaluate_all, model_task
from sparsecirc.paths import cache_dir
from sparsecirc.wst.circuit_study import random_init_like, swap_candidates
from sparsecirc.wst.circuits import Circuit, residual_edges
from sparsecirc.wst.prune import circuit_faithfulness, circuit_metrics, prune_to_circuit
from sparsecirc.wst.prune_baselines import attribution_circuits, random_node_inverse, search_hparams
from sparsecirc.wst.reading import mean_values, study_model

CONTROL_KINDS = ("random_init", "nonsense_rule", "zero_ablation", "frozen_norms", "tied_qk")
# the bisection's upper-end rule (prune.bisect_k), part of every job and search key so cached jobs bisected under
# an older rule recompute; "own-first": the mask's own kept nodes when they meet the target, else all nodes
BISECT_RULE = "own-first"
JOB_POLL_SECONDS = 30  # how often a build waits for a job another process is running
SEARCH_STEPS = 300  # mask steps of each search run unless the spec's ``search.steps`` says otherwise
# A collapsed mask (declared before any rerun was read): the full model meets the target on the validation pairs,
# but the mask's own task loss, averaged over its last ``plateau_window`` steps, is above half of ln 2 (the sparsity
# penalty won and the mask answers near chance). Its tau order is then no circuit ranking: the job is run once more
# with ``k_coef`` divided by ``COLLAPSE["k_coef_divisor"]``; the row keeps what happened under ``collapse``.
COLLAPSE = {"task_loss": 0.5 * math.log(2), "k_coef_divisor": 10.0}


def collapsed(final_task_loss: float, full_loss: float, target: float) -> bool:
    """True when a mask run collapsed (see ``COLLAPSE``)."""
    return full_loss <= target and final_task_loss > COLLAPSE["task_loss"]


def nonsense_rule(ds, rule: str = "length_parity"):
    """The same prompts under a consistent but meaningless rule (Drori's control, learnable in principle): the
    target and distractor are swapped exactly when the prompt has an odd number of tokens. Unlike random flips,
    the label is a fixed function of the prompt, so a circuit could in principle compute it."""
    if rule != "length_parity":
        raise ValueError(f"unknown nonsense rule {rule!r}; known: 'length_parity'")
    return swap_candidates(ds, [len(p) % 2 == 1 for p in ds.with_format(None)["prompt_ids"]])


def _size(model, c: Circuit | None, candidates) -> dict | None:
    if c is None:
        return None
    return {"nodes": c.n_nodes, "edges": c.n_edges, "edges_with_residual": c.n_edges + residual_edges(
        model, c.nodes, candidates), "loss_val": c.loss}


def _candidates(ds) -> list[int]:
    cols = ds.with_format(None).to_dict()
    return sorted(set(cols["target_id"]) | set(cols["distractor_id"]))


def run_search(model, means, train_ds, pcfg: PruneConfig, search: dict, task: str,
               known: list[dict] | None = None) -> dict:
    """The lr x k_coef search of one (model, task) on its validation pairs (:func:`search_hparams`, with pruning
    seed 0 whatever ``pcfg.seed`` is: one search serves every pruning seed): {"lr", "k_coef", "grid", "seconds"}.
    ``search``: ``lrs``, ``k_coefs``, ``steps`` and ``mode`` ("grid", the default, or "coordinate"); ``known``:
    points already run with the same settings (reused)."""
    t0 = time.time()
    best, grid = search_hparams(model, train_ds, means, pcfg.replace(seed=0), lrs=search.get("lrs", (1e-2,)),
                                k_coefs=search.get("k_coefs", (1e-4, 1e-3)), steps=search.get("steps", SEARCH_STEPS),
                                mode=search.get("mode", "grid"), known=known, task=task)
    return {"lr": best.lr, "k_coef": best.k_coef, "grid": grid, "seconds": round(time.time() - t0, 1)}


def run_job(model, means, train_ds, test_ds, pcfg: PruneConfig, targets: list[float], task: str, *,
            attribution: bool = False, random_draws: int = 0,
            rankings: tuple[str, ...] = ()) -> tuple[dict, Circuit | None]:
    """One (model, task) pruning job: the mask run (run again with a smaller ``k_coef`` if it collapsed, see
    ``COLLAPSE``), bisection at every budget and target, test metrics of the headline circuit; returns (row, headline
    circuit or None)."""
    t0 = time.time()
    row = {"task": task}
    def run(cfg: PruneConfig):
        res = prune_to_circuit(model, train_ds, means, cfg, targets=tuple(targets[1:]), task=task, rankings=rankings)
        tail = res.history["task_loss"][-cfg.plateau_window:]
        return res, sum(tail) / len(tail)

    res, final = run(pcfg)
    row["collapse"] = {"final_task_loss": final, "rerun": False}
    if collapsed(final, res.full_loss, targets[0]):
        pcfg = pcfg.replace(k_coef=pcfg.k_coef / COLLAPSE["k_coef_divisor"])
        res, again = run(pcfg)
        row["collapse"] = {"first_final_task_loss": final, "rerun": True, "final_task_loss": again,
                           "still_collapsed": collapsed(again, res.full_loss, targets[0])}
    row["lr"], row["k_coef"] = pcfg.lr, pcfg.k_coef
    cands = _candidates(train_ds)
    every = max(1, len(res.history["kept"]) // 200)
    row.update(full_loss_val=res.full_loss, n_fit_pairs=res.n_fit_pairs, n_val_pairs=res.n_val_pairs,
               steps_run=res.history["steps_run"], converged_at=res.history["converged_at"],
               kept_at_clamp=res.history["kept_at_clamp"], kept_distinct_tau=res.history["kept_distinct_tau"],
               trajectory={"step": list(range(1, len(res.history["kept"]) + 1))[::every],
                           "kept": res.history["kept"][::every], "task_loss": res.history["task_loss"][::every]})
    row["budgets"] = {str(step): {str(t): _size(model, c, cands) for t, c in snap.items()}
                      for step, snap in res.snapshots.items()}
    row["targets"] = {str(t): _size(model, res.circuits.get(t), cands) for t in targets}
    row["tiebreak"] = pcfg.tiebreak
    row["rankings"] = {tb: _size(model, c, cands) for tb, c in res.rankings.items()}
    head = res.circuits.get(targets[0])
    if head is not None:
        row["faithfulness"] = circuit_faithfulness(model, head, test_ds, means, cfg=pcfg)
        row["test"] = {**row["faithfulness"]["calibrated"], "n": row["faithfulness"]["n"]}  # = circuit_metrics
        row["inverse"] = circuit_metrics(model, head, test_ds, means, invert=True, cfg=pcfg)
        if random_draws:
            row["random_inverse"] = random_node_inverse(model, head, test_ds, means, n_draws=random_draws,
                                                        seed=pcfg.seed, cfg=pcfg)
    if targets[0] in res.cleaned:
        c = res.cleaned[targets[0]]
        row["cleaned"] = {**_size(model, c, cands), "test": circuit_metrics(model, c, test_ds, means, cfg=pcfg)}
    if attribution:
        attr = attribution_circuits(model, train_ds, means, pcfg, targets=tuple(targets[1:]), task=task)
        row["attribution"] = {str(t): _size(model, attr.get(t), cands) for t in targets}
    row["seconds"] = round(time.time() - t0, 1)
    return row, head


def weights_sha256(model) -> str:
    """sha256 over a model's state dict (names and float32 bytes, in name order): a cache key for its weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _job_key(parts: dict) -> str:
    parts = {**parts, "bisect": BISECT_RULE}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_key(cond: str, weights: str, task: str, jcfg: PruneConfig, targets: list[float], *, attribution: bool,
            draws: int, rankings: list[str], init_seed: int | None) -> str:
    """Cache key of one (condition, model, task) job: what its computation depends on. The search that chose
    ``jcfg``'s lr and k_coef does not enter (the chosen values do), so widening a search reuses every job whose
    chosen values did not move."""
    return _job_key({"cond": cond, "model": weights, "task": task, "prune": jcfg.to_dict(), "targets": targets,
                     "attribution": attribution, "draws": draws, "rankings": rankings, "init_seed": init_seed})


def search_key(weights: str, task: str, pcfg: PruneConfig, targets: list[float], search: dict) -> str:
    """Cache key of one (model, task) search: only what the search's runs depend on (pruning seed 0; the study's
    budgets, snapshots and clean-up do not enter, so studies that differ only there share one search)."""
    cfg = pcfg.replace(seed=0, steps=int(search.get("steps", SEARCH_STEPS)), snapshots=(), cleanup=False)
    return _job_key({"cond": "search", "model": weights, "task": task, "prune": cfg.to_dict(), "targets": targets,
                     "search": search})


def produce_prune_study(ctx: BuildContext) -> None:
    """Build a ``kind: prune_study`` artifact (see the module docstring)."""
    spec, over, folder = ctx.spec, ctx.overrides(), ctx.folder
    targets = [float(t) for t in over.get("targets", spec["targets"])]
    budgets = sorted(int(b) for b in over.get("budgets", spec.get("budgets", [])))
    pcfg = PruneConfig.from_dict(over.get("prune", {})).replace(target_loss=targets[0])
    if budgets:
        pcfg = pcfg.replace(steps=budgets[-1], snapshots=tuple(budgets))
    min_acc = over.get("min_accuracy", spec["min_accuracy"])
    search = over.get("search", spec.get("search"))
    attribution = bool(over.get("attribution", spec.get("attribution", False)))
    draws = int(over.get("random_draws", spec.get("random_draws", 0)))
    rankings = tuple(over.get("rankings", spec.get("rankings", ())))  # other tie-breaks, bisected as well
    names = over.get("tasks") or list(TASKS)
    t0 = time.time()
    results = {"targets": targets, "budgets": budgets or [pcfg.steps], "min_accuracy": min_acc, "models": {},
               "prune_config": pcfg.to_dict(), "search": search, "runs": [], "bisect_rule": BISECT_RULE}
    models = {}
    for mid in spec["models"]:
        model, cfg, val = study_model(ctx, mid)
        models[mid] = (model, cfg, mean_values(model, cfg, val, pcfg))
        results["models"][mid] = {"tasks": evaluate_all(model, "test"),
                                  "weights_sha256": weights_sha256(model)}
    learned = [t for t in names if all(results["models"][m]["tasks"][t]["accuracy"] >= min_acc for m in models)]
    results["tasks"] = learned
    jobs = [("main", mid, t) for t in learned for mid in models] if spec.get("main", True) else []  # task-major
    ctrl = over.get("controls", spec.get("controls")) or {}
    for kind in ctrl.get("kinds", []):
        if kind not in CONTROL_KINDS:
            raise artifacts.ArtifactError(f"{ctx.artifact_id}: unknown control {kind!r}; known: {CONTROL_KINDS}")
        jobs += [(kind, m, t) for m in ctrl.get("models", list(models)) for t in (ctrl.get("tasks") or learned)]
    cache = cache_dir() / "prune_jobs" / ctx.scale  # one folder for every study: a job with the same key is shared
    cache.mkdir(parents=True, exist_ok=True)
    (folder / "circuits").mkdir(parents=True, exist_ok=True)
    files, fresh, rows = [], {}, {}

    def do(cond: str, mid: str, task: str) -> dict:  # one job: its search and mask run, or their cached results
        model, cfg, means = models[mid]
        ccfg = pcfg if cond == "main" else pcfg.replace(**ctrl.get("prune", {}))  # e.g. stop_at_plateau
        jcfg = {"zero_ablation": ccfg.replace(ablation="zero"), "frozen_norms": ccfg.replace(freeze_norms=True),
                "tied_qk": ccfg.replace(tie_qk=True)}.get(cond, ccfg)
        found = None
        if search:  # one search per (model, task), shared by every pruning seed and condition (controls too)
            skey = search_key(results["models"][mid]["weights_sha256"], task, pcfg, targets, search)
            spath = cache / f"search__{mid}__{task}__{skey}.json"
            if not spath.exists():
                artifacts.write_json(spath, run_search(model, means, model_task(model, task, "train"), pcfg,
                                                       search, task))
            found = json.loads(spath.read_text())
            jcfg = jcfg.replace(lr=found["lr"], k_coef=found["k_coef"])
        key = job_key(cond, results["models"][mid]["weights_sha256"], task, jcfg, targets,
                      attribution=attribution and cond == "main", draws=draws,
                      rankings=list(rankings) if cond == "main" else [],
                      init_seed=ctrl.get("seed", 0) if cond == "random_init" else None)
        path = cache / f"{cond}__{mid}__{task}__{key}.json"
        row = json.loads(path.read_text()) if path.exists() else None
        if row is not None and "collapse" not in row:  # cached before the collapse rule: rerun if it applies
            tail = row["trajectory"]["task_loss"][-5:]
            if collapsed(sum(tail) / len(tail), row["full_loss_val"], targets[0]):
                row = None
        if row is None:
            train_ds, test_ds = model_task(model, task, "train"), model_task(model, task, "test")
            jm, jmeans = model, means
            if cond == "nonsense_rule":
                train_ds, test_ds = nonsense_rule(train_ds), nonsense_rule(test_ds)
            if cond == "random_init":
                if mid not in fresh:
                    r = random_init_like(model, cfg, seed=ctrl.get("seed", 0))
                    fresh[mid] = (r, mean_values(r, cfg, lm_tokens(cfg, "val"), pcfg))
                jm, jmeans = fresh[mid]
            row, head = run_job(jm, jmeans, train_ds, test_ds, jcfg, targets, task,
                                attribution=attribution and cond == "main", random_draws=draws,
                                rankings=rankings if cond == "main" else ())
            row.update(condition=cond, model=mid, seed=jcfg.seed, search=found)
            if head is not None and cond == "main":
                row["circuit"] = json.loads(head.to_json(mid))
            artifacts.write_json(path, row)
        if found is not None:
            row["search"] = found  # the search that chose the job's lr and k_coef (the key holds the chosen values)
        return row

    # SPARSECIRC_JOB_ORDER=reverse runs the jobs last-first. Each job holds a lock in the job cache while it runs,
    # so a second process building the same study (into another folder) skips the jobs the first is running and
    # comes back to them once they are cached; each process writes the complete artifact once it has every row.
    pending = list(reversed(jobs)) if os.environ.get("SPARSECIRC_JOB_ORDER") == "reverse" else list(jobs)
    bar = tqdm(total=len(jobs), desc="prune jobs", disable=not ctx.progress)
    while pending:
        busy = []
        for job in pending:
            with ExitStack() as held:
                try:
                    held.enter_context(artifacts.folder_lock(cache / "__".join(("job", *job)), what="this prune job"))
                except artifacts.FolderBusyError:
                    busy.append(job)  # another process runs it: come back once it is cached
                    continue
                rows[job] = do(*job)
            bar.update(1)
        if busy:
            time.sleep(JOB_POLL_SECONDS)
        pending = busy
    bar.close()
    for cond, mid, task in jobs:
        if cond == "main" and rows[(cond, mid, task)].get("circuit"):
            name = f"circuits/{mid}__{task}.json"
            artifacts.atomic_write_bytes(folder / name, json.dumps(rows[(cond, mid, task)]["circuit"],
                                                                   sort_keys=True).encode())
            files.append(name)
    results["runs"] = [rows[j] for j in jobs]
    results["wall_time_s"] = round(time.time() - t0, 1)
    results["job_seconds"] = round(sum(r["seconds"] for r in results["runs"]), 1)
    artifacts.write_json(folder / "results.json", results)
    artifacts.write_manifest(folder, ["results.json", *files], **ctx.manifest_info(
        kind="prune_study", seed=pcfg.seed, config={"spec": spec, "prune": pcfg.to_dict()},
        wall_time_s=results["wall_time_s"]))
