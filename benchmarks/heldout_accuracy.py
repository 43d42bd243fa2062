"""Committed zoo models on the held-out prompt sets (``sparsecirc.data.heldout``) beside the committed test split.

    SPARSECIRC_NUM_THREADS=1 .venv/bin/python benchmarks/heldout_accuracy.py [model ids ...]

Prints, per model and case-study task, the test and held-out accuracy (P1's two-candidate comparison at the last
position) and the held-out accuracy of every template. Loads the committed artifacts (book scale, sha256-verified);
nothing is trained or written.
"""
from __future__ import annotations

import sys

import sparsecirc as sc
from sparsecirc.data import heldout

MODELS = ["wst-zoo-l2d128-sparse", "wst-zoo-l2d128-sparse-lowl0", "wst-zoo-l2d128-dense-matched",
          "wst-vartype-l2d128-sparse-long"]


def main(models: list[str]) -> None:
    """Print the table for ``models`` (artifact ids)."""
    print(f"{'model':32s} {'task':28s} {'test':>6s} {'heldout':>8s} {'diff':>6s}  per template")
    for mid in models:
        model = sc.get_or_compute(mid, "book", progress=False).model
        for task in heldout.HELDOUT_TASKS:
            r = heldout.evaluate_heldout(model, task)
            t, h = r["test"]["accuracy"], r["heldout"]["accuracy"]
            per = " ".join(f"{k}={v['accuracy']:.2f}" for k, v in r["per_template"].items())
            print(f"{mid:32s} {task:28s} {t:6.3f} {h:8.3f} {h - t:+6.3f}  {per}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
