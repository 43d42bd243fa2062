"""Pruning wall time per task on a book-scale model (issue target: <= 60 s per task on 2 cores).

    .venv/bin/python benchmarks/bench_pruning.py [--model wst-zoo-l2d128-sparse] [--tasks if_equals,var_if]

Uses the committed model and the book-scale pruning settings of wst-fig2-circuits-l2d128; prints seconds per task
(mask training + bisection) and the mean.
"""
from __future__ import annotations

import argparse
import time

import sparsecirc as sc
from sparsecirc import build
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.repro import setup_threads
from sparsecirc.core.train import eval_windows
from sparsecirc.data import tasks
from sparsecirc.data.lm import lm_tokens
from sparsecirc.wst.ablation import compute_means
from sparsecirc.wst.prune import prune_to_circuit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--tasks", default="single_double_quote,if_equals")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    n = setup_threads(a.threads)
    spec = build.read_spec("wst-fig2-circuits-l2d128")
    cfg = PruneConfig.from_dict(spec["scales"]["book"]["prune"])
    run = sc.get_or_compute(a.model, "book")
    rc = run.config
    means = compute_means(run.model, eval_windows(lm_tokens(rc)[1], cfg.n_mean_windows, rc.model.n_ctx))
    print(f"threads={n} model={a.model} steps={cfg.steps} batch_pairs={cfg.batch_pairs}")
    times = []
    for t in a.tasks.split(","):
        t0 = time.perf_counter()
        res = prune_to_circuit(run.model, tasks.load_task(t, "train"), means, cfg, task=t)
        times.append(time.perf_counter() - t0)
        c = res.circuits.get(cfg.target_loss)
        print(f"{t:28s} {times[-1]:6.1f} s   edges at {cfg.target_loss}: {c.n_edges if c else 'not reached'}")
    print(f"{'mean seconds per task':28s} {sum(times) / len(times):6.1f} s   (target <= 60 s)")


if __name__ == "__main__":
    main()
