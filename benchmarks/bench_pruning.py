"""Pruning wall time per task at the converged budget (issue target: <= 60 s per task on 2 cores).

    .venv/bin/python benchmarks/bench_pruning.py [--study wst-fig2-prune-l2d128] [--model wst-zoo-l2d128-sparse]
                                                 [--tasks if_equals,var_if] [--threads 2] [--budgets 1000,3000]

Uses a committed model and the book-scale settings of the converged study (32 pairs a step, held-out validation,
the lr and k_coef the study's search chose where it is built). Prints, side by side in one run:

1. the mask step (forward and backward through the ablated model), in ms: the pruner's step (prompts packed end
   to end, ``PruneConfig.pack``, two attention groups; last block at the scored position only, ``last_only``;
   AbsTopK by a selection threshold) against the step before packing (prompts padded in four chunks by length),
   against that padded step with the last block at every position, and with AbsTopK by ``torch.topk`` + scatter
   (the earlier implementation, kept here as the reference); the ratios;
2. per task, one pruning run as a user runs it (mask training, then one bisection with calibration on the
   validation pairs; no budget snapshots, no alternative tie-breaks, no clean-up) at each budget (``--budgets``;
   the book-scale default of 1000 steps and the study's largest, 3000) and with the declared plateau rule stopping
   the run (``stop_at_plateau``, capped at the first budget), in seconds, and the ratio of each to the 60 s target.

With a built study it also prints the study's own per-job seconds (one thread beside a second process, search,
attribution and controls included).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from bench_train_speed import topk_scatter  # the earlier AbsTopK (this folder is on sys.path)

import sparsecirc as sc
from sparsecirc import artifacts, build
from sparsecirc.core import model as model_module
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.repro import setup_threads
from sparsecirc.core.train import eval_windows
from sparsecirc.data import tasks
from sparsecirc.data.lm import lm_tokens
from sparsecirc.wst.ablation import NodeMask, PairData, ablate, compute_means, pair_margin
from sparsecirc.wst.circuits import node_sites
from sparsecirc.wst.prune import prune_to_circuit

TARGET_S = 60.0


def step_ms(model, data: PairData, means, cfg: PruneConfig, last_only: bool, steps: int = 20,
            reference_topk: bool = False, pack: bool = False) -> float:
    """Mean ms of one mask step's forward and backward (``cfg.batch_pairs`` pairs) through the ablated model:
    packed with two attention groups (``pack``), or padded in four chunks."""
    mask = NodeMask(node_sites(model, cfg.node_kinds), cfg, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.requires_grad_(False)
    fast = model_module.abs_topk
    model_module.abs_topk = topk_scatter if reference_topk else fast
    t0 = 0.0
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            t0 = time.perf_counter()
        rows = PairData.pair_rows(torch.randint(0, data.n_pairs, (cfg.batch_pairs,), generator=g))
        with ablate(model, mask.gates(), means):
            margin = pair_margin(model, data.subset(rows), chunks=2 if pack else 4, last_only=last_only, pack=pack)
        F.softplus(-margin).mean().backward()
    model_module.abs_topk = fast
    for p in model.parameters():
        p.requires_grad_(True)
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study", default="wst-fig2-prune-l2d128")
    ap.add_argument("--model", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--tasks", default="if_equals,var_if")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budgets", default="1000,3000",
                    help="mask budgets (steps) to time, comma-separated; the plateau-stopped run stops at the first")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    spec = build.read_spec(a.study)
    book = spec["scales"]["book"]
    budgets = [int(b) for b in a.budgets.split(",")]
    base = PruneConfig.from_dict(book["prune"]).replace(steps=budgets[0], cleanup=False)
    run = sc.get_or_compute(a.model, "book")
    rc = run.config
    means = compute_means(run.model, eval_windows(lm_tokens(rc)[1], base.n_mean_windows, rc.model.n_ctx))
    chosen = {}
    if a.study in artifacts.load_registry():
        res = sc.get_or_compute(a.study, "book").results
        chosen = {r["task"]: (r["lr"], r["k_coef"]) for r in res["runs"] if r["model"] == a.model}
    print(f"threads={n} model={a.model}, {base.batch_pairs} pairs a step, budgets {budgets}")
    names = a.tasks.split(",")
    data = PairData.from_dataset(tasks.load_task(names[0], "train"), rc.model.n_ctx)
    packed = step_ms(run.model, data, means, base, True, pack=True)
    cut = step_ms(run.model, data, means, base, True)
    full = step_ms(run.model, data, means, base, False)
    ref = step_ms(run.model, data, means, base, True, reference_topk=True)
    print(f"mask step ({names[0]}): the pruner's (packed) {packed:.0f} ms; padded in four chunks {cut:.0f} ms "
          f"({cut / packed:.2f}x slower); padded, with the last block at every position {full:.0f} ms "
          f"({full / cut:.2f}x "
          f"the padded step); padded, AbsTopK by torch.topk + scatter {ref:.0f} ms ({ref / cut:.2f}x the padded step)")
    runs = [(f"{b} steps", base.replace(steps=b)) for b in budgets]
    runs.append((f"plateau stop (<= {budgets[0]})", base.replace(steps=budgets[0], stop_at_plateau=True)))
    secs: dict[str, list[float]] = {name: [] for name, _ in runs}
    for t in names:
        ds = tasks.load_task(t, "train")
        for name, c in runs:
            lr, k_coef = chosen.get(t, (c.lr, c.k_coef))
            c = c.replace(lr=lr, k_coef=k_coef)
            t0 = time.perf_counter()
            r = prune_to_circuit(run.model, ds, means, c, task=t)
            s = time.perf_counter() - t0
            secs[name].append(s)
            circ = r.circuits.get(c.target_loss)
            print(f"{t:18s} lr {c.lr:g} k_coef {c.k_coef:g} {name:22s} {s:6.1f} s ({r.history['steps_run']} steps, "
                  f"{circ.n_edges if circ else 'not reached'} edges): {s / TARGET_S:.2f}x the {TARGET_S:.0f} s target")
    for name, v in secs.items():
        m = sum(v) / len(v)
        print(f"mean seconds per task, {name:22s} {m:6.1f} s ({m / TARGET_S:.2f}x the {TARGET_S:.0f} s target)")
    if a.study in artifacts.load_registry():
        job_secs = [r["seconds"] for r in res["runs"]]
        print(f"{a.study}: {len(job_secs)} jobs, {sum(job_secs) / len(job_secs):.0f} s per job on average (one "
              "thread beside a second process; snapshots, tie-break alternatives, clean-up, attribution and random "
              f"draws included), {res['job_seconds'] / 60:.0f} min of job time")


if __name__ == "__main__":
    main()
