"""Pruning wall time per task at the converged budget (issue target: <= 60 s per task on 2 cores).

    .venv/bin/python benchmarks/bench_pruning.py [--study wst-fig2-prune-l2d128] [--model wst-zoo-l2d128-sparse]
                                                 [--tasks if_equals,var_if] [--threads 2] [--steps N]

Uses a committed model and the book-scale settings of the converged study (32 pairs a step, held-out validation,
snapshots bisected, the k_coef the study's search chose where it is built). Prints, side by side in one run:

1. the mask step (forward and backward through the ablated model) with the last block run at every position
   against the last block run at the scored position only (``last_only``, what the pruner uses): ms per step and
   the speed-up;
2. per task, one pruning run as a user runs it (mask training, then one bisection with calibration on the
   validation pairs; no budget snapshots, no alternative tie-breaks) at the full budget and with the declared
   plateau rule stopping the run (``stop_at_plateau``), in seconds, and the ratio of each to the 60 s target.

With a built study it also prints the study's own per-job seconds (one thread beside a second process, search,
attribution and controls included).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import sparsecirc as sc
from sparsecirc import artifacts, build
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.repro import setup_threads
from sparsecirc.core.train import eval_windows
from sparsecirc.data import tasks
from sparsecirc.data.lm import lm_tokens
from sparsecirc.wst.ablation import NodeMask, PairData, ablate, compute_means, pair_margin
from sparsecirc.wst.circuits import node_sites
from sparsecirc.wst.prune import prune_to_circuit

TARGET_S = 60.0


def step_ms(model, data: PairData, means, cfg: PruneConfig, last_only: bool, steps: int = 20) -> float:
    """Mean ms of one mask step's forward and backward (``cfg.batch_pairs`` pairs) through the ablated model."""
    mask = NodeMask(node_sites(model, cfg.node_kinds), cfg, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = 0.0
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            t0 = time.perf_counter()
        rows = PairData.pair_rows(torch.randint(0, data.n_pairs, (cfg.batch_pairs,), generator=g))
        with ablate(model, mask.gates(), means):
            margin = pair_margin(model, data.subset(rows), chunks=2, last_only=last_only)
        F.softplus(-margin).mean().backward()
    for p in model.parameters():
        p.requires_grad_(True)
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study", default="wst-fig2-prune-l2d128")
    ap.add_argument("--model", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--tasks", default="if_equals,var_if")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="mask steps (default: the study's largest budget)")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    spec = build.read_spec(a.study)
    book = spec["scales"]["book"]
    budgets = sorted(book.get("budgets", spec.get("budgets", [])))
    steps = a.steps or budgets[-1]
    base = PruneConfig.from_dict(book["prune"]).replace(steps=steps)
    run = sc.get_or_compute(a.model, "book")
    rc = run.config
    means = compute_means(run.model, eval_windows(lm_tokens(rc)[1], base.n_mean_windows, rc.model.n_ctx))
    chosen = {}
    if a.study in artifacts.load_registry():
        res = sc.get_or_compute(a.study, "book").results
        chosen = {r["task"]: r["k_coef"] for r in res["runs"] if r["model"] == a.model}
    print(f"threads={n} model={a.model} budget {steps} steps x {base.batch_pairs} pairs")
    names = a.tasks.split(",")
    data = PairData.from_dataset(tasks.load_task(names[0], "train"), rc.model.n_ctx)
    full, cut = step_ms(run.model, data, means, base, False), step_ms(run.model, data, means, base, True)
    print(f"mask step ({names[0]}): last block at every position {full:.0f} ms, at the scored position only "
          f"{cut:.0f} ms; speed-up {full / cut:.2f}x")
    rows = []
    for t in names:
        cfg = base.replace(k_coef=chosen.get(t, base.k_coef))
        ds = tasks.load_task(t, "train")
        out = {}
        for name, c in (("full budget", cfg), ("plateau stop", cfg.replace(stop_at_plateau=True))):
            t0 = time.perf_counter()
            r = prune_to_circuit(run.model, ds, means, c, task=t)
            out[name] = (time.perf_counter() - t0, r.history["steps_run"], r.circuits.get(c.target_loss))
        (s_full, n_full, c_full), (s_stop, n_stop, c_stop) = out["full budget"], out["plateau stop"]
        print(f"{t:22s} k_coef {cfg.k_coef:g}: full budget {s_full:6.1f} s ({n_full} steps, "
              f"{c_full.n_edges if c_full else 'not reached'} edges, {s_full / TARGET_S:.2f}x target); plateau stop "
              f"{s_stop:6.1f} s ({n_stop} steps, {c_stop.n_edges if c_stop else 'not reached'} edges, "
              f"{s_stop / TARGET_S:.2f}x target)")
        rows.append((s_full, s_stop))
    m_full, m_stop = (sum(r[i] for r in rows) / len(rows) for i in (0, 1))
    print(f"{'mean seconds per task':22s} full budget {m_full:6.1f} s ({m_full / TARGET_S:.2f}x the {TARGET_S:.0f} s "
          f"target); plateau stop {m_stop:6.1f} s ({m_stop / TARGET_S:.2f}x)")
    if a.study in artifacts.load_registry():
        secs = [r["seconds"] for r in res["runs"]]
        print(f"{a.study}: {len(secs)} jobs, {sum(secs) / len(secs):.0f} s per job on average (one thread beside a "
              f"second process; snapshots, tie-break alternatives, attribution and random draws included), {res['job_seconds'] / 60:.0f} min of job time")


if __name__ == "__main__":
    main()
