"""Pruning wall time per task at the converged budget (issue target: <= 60 s per task on 2 cores).

    .venv/bin/python benchmarks/bench_pruning.py [--study wst-fig2-prune-l2d128] [--model wst-zoo-l2d128-sparse]
                                                 [--tasks if_equals,var_if] [--threads 2] [--steps N]

Uses a committed model and the book-scale settings of the converged study (32 pairs a step, held-out validation,
snapshots bisected): prints seconds per task for mask training and for the bisections, and the ratio of the mean to
the 60 s target, side by side with the same run at the earlier 80-step / 8-pair budget. With a built study it also
prints the study's own per-job seconds (one thread, recorded while it was built).
"""
from __future__ import annotations

import argparse
import time

import sparsecirc as sc
from sparsecirc import artifacts, build
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.repro import setup_threads
from sparsecirc.core.train import eval_windows
from sparsecirc.data import tasks
from sparsecirc.data.lm import lm_tokens
from sparsecirc.wst.ablation import compute_means
from sparsecirc.wst.prune import prune_to_circuit

TARGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study", default="wst-fig2-prune-l2d128")
    ap.add_argument("--model", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--tasks", default="if_equals,var_if")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="mask steps (default: the study's largest budget)")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    spec = build.read_spec(a.study)
    book = spec["scales"]["book"]
    budgets = sorted(book.get("budgets", spec.get("budgets", [])))
    steps = a.steps or budgets[-1]
    converged = PruneConfig.from_dict(book["prune"]).replace(steps=steps, snapshots=tuple(b for b in budgets
                                                                                          if b <= steps))
    earlier = PruneConfig(steps=80, lr=1e-2, batch_pairs=8, eval_pairs=32)
    run = sc.get_or_compute(a.model, "book")
    rc = run.config
    means = compute_means(run.model, eval_windows(lm_tokens(rc)[1], converged.n_mean_windows, rc.model.n_ctx))
    print(f"threads={n} model={a.model} converged: {steps} steps x {converged.batch_pairs} pairs; "
          f"earlier: {earlier.steps} steps x {earlier.batch_pairs} pairs")
    rows = []
    for t in a.tasks.split(","):
        ds = tasks.load_task(t, "train")
        out = {}
        for name, cfg in (("converged", converged), ("earlier", earlier)):
            t0 = time.perf_counter()
            res = prune_to_circuit(run.model, ds, means, cfg, task=t)
            out[name] = (time.perf_counter() - t0, res)
        sec, res = out["converged"]
        c = res.circuits.get(converged.target_loss)
        print(f"{t:22s} converged {sec:6.1f} s ({sec / steps * 1000:.0f} ms/step incl. bisection), "
              f"edges {c.n_edges if c else 'not reached'}; earlier {out['earlier'][0]:5.1f} s; "
              f"ratio converged/earlier {sec / out['earlier'][0]:.1f}x")
        rows.append(sec)
    mean = sum(rows) / len(rows)
    print(f"{'mean seconds per task':22s} {mean:6.1f} s; ratio to the {TARGET_S:.0f} s target: {mean / TARGET_S:.2f}x")
    if a.study in artifacts.load_registry():
        res = sc.get_or_compute(a.study, "book").results
        secs = [r["seconds"] for r in res["runs"]]
        print(f"{a.study}: {len(secs)} jobs, {sum(secs) / len(secs):.0f} s per job on average (one thread, "
              f"attribution and controls included), study {res['job_seconds'] / 60:.0f} min of job time")


if __name__ == "__main__":
    main()
