"""Figures of the circuit-size study (chapters 03-04, P1 Fig. 2-3). Every function returns the Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from sparsecirc.wst.circuit_study import geomean_edges


def size_vs_target(results: dict, sparse: str, dense: str, *,
                   labels: tuple[str, str] = ("sparse", "dense (matched loss)")):
    """Geometric-mean circuit edges against target task loss, one line per model (P1 Fig. 2), log-log.

    Args:
        results: a circuits study's ``results.json``.
        sparse, dense: the two model ids.
        labels: legend labels of the sparse and the dense line.

    Returns:
        The Figure (one axes, one line per model; targets no task reached are left out).
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    drawn = 0
    for model, label in zip((sparse, dense), labels):
        pts = [(geomean_edges(results, model, t), t) for t in sorted(results["targets"])
               if geomean_edges(results, model, t)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
        drawn += len(pts)
    ax.set(xlabel="circuit edges (geometric mean over tasks)", ylabel="target task loss",
           title="circuit size vs target loss")
    if drawn:
        ax.set(xscale="log", yscale="log")
        ax.legend()
    else:  # e.g. barely trained ci models: every reached circuit is empty
        ax.text(0.5, 0.5, "no target reached with non-empty circuits by both models", ha="center", va="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def ratio_per_task(spread: dict, ratio: float, target: float, *, paper: float = 16):
    """Dense / sparse circuit edges per task as bars, with the geometric mean, its bootstrap band and P1's value.

    Args:
        spread: :func:`sparsecirc.wst.circuit_study.ratio_spread`'s result (``per_task``, ``lo``, ``hi``).
        ratio: the geometric-mean ratio (:func:`sparsecirc.wst.circuit_study.size_ratio`).
        target: the task loss (for the axis label).
        paper: the paper's ratio, drawn as a dashed line.

    Returns:
        The Figure (one axes, one bar per task, sorted by ratio).
    """
    per_task = pd.Series(spread["per_task"]).sort_values()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.barh(per_task.index, per_task.values, color="C0")
    ax.axvline(ratio, color="k", lw=1.5, label="geometric mean (ours)")
    ax.axvspan(spread["lo"], spread["hi"], color="0.85", zorder=0, label="5–95 % bootstrap over tasks")
    ax.axvline(paper, color="C3", ls="--", lw=1, label=f"P1 ≈ {paper:g}")
    ax.set(xscale="log", xlabel=f"dense / sparse circuit edges at target {target}", title="ratio per task")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def frontier(front: pd.DataFrame, target: float):
    """Capability vs interpretability (P1 Fig. 3): validation loss against geometric-mean circuit edges.

    One point per model, its size growing with ``d_model``.

    Args:
        front: :func:`sparsecirc.wst.circuit_study.frontier_table`'s DataFrame.
        target: the task loss the edges were measured at (for the axis label).

    Returns:
        The Figure (one axes; models without edges are left out).
    """
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for name, r in front.iterrows():
        if r["edges"] is None or pd.isna(r["edges"]):
            continue
        ax.scatter(r["val loss"], r["edges"], s=20 + r["d_model"] / 2, label=f"{name} (d{r['d_model']}, "
                   f"L0 {r['L0 (nonzero weights)'] / 1e3:.0f}k)")
    ax.set(yscale="log", xlabel="pretraining validation loss (nats/token)",
           ylabel=f"circuit edges at task loss {target} (geo. mean)", title="capability vs interpretability")
    if ax.collections:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
