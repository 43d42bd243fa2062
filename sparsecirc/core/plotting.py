"""Static figures (matplotlib; PNG in the rendered book). Every function returns the Figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from sparsecirc.core.sparsity import l0_fraction, sharkfin_factor
from sparsecirc.core.train import lr_at


def loss_curves(histories: dict, *, smooth: int = 25, ax=None, title: str = "training"):
    """Train loss (smoothed, thin) and validation loss (markers) of one or more ``History`` objects by label."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 3.6))
    for i, (label, h) in enumerate(histories.items()):
        c = f"C{i}"
        tl = np.asarray(h.train_loss, dtype=float)
        if len(tl) >= smooth > 1:
            tl = np.convolve(tl, np.ones(smooth) / smooth, mode="valid")
            xs = np.asarray(h.step[smooth - 1:]) + 1
        else:
            xs = np.asarray(h.step) + 1
        ax.plot(xs, tl, color=c, lw=1, alpha=0.6, label=f"{label} train (mean of {smooth})")
        ax.plot(h.val_step, h.val_loss, "o-", color=c, ms=4, label=f"{label} validation")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def token_heatmap(tokens: Sequence[str], values: np.ndarray, row_labels: Sequence[str], *, title: str = "",
                  cmap: str = "RdBu_r", ax=None, vrange: tuple[float, float] | None = None, colorbar: bool = True,
                  max_label: int | None = None):
    """Heatmap of ``values`` [rows, tokens], one column per token, symmetric colour scale around 0 (or ``vrange``,
    e.g. ``(0, 1)`` with ``cmap="Blues"`` for attention weights).

    With ``ax`` the caller owns the figure's layout (no ``tight_layout`` here); ``colorbar=False`` leaves the
    colour bar to the caller (one bar for several rows: use the returned figure's last image). ``max_label``
    shortens long token labels (indentation runs) to that many characters.
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (len(row_labels), len(tokens)):
        raise ValueError(f"values has shape {values.shape}, expected ({len(row_labels)}, {len(tokens)})")
    own = ax is None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(tokens)), 0.45 * len(row_labels) + 1.4)) if own \
        else (ax.figure, ax)
    vmax = float(np.abs(values).max()) or 1.0
    lo, hi = vrange if vrange is not None else (-vmax, vmax)
    im = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    labels = [repr(t)[1:-1] for t in tokens]
    if max_label is not None:
        labels = [t if len(t) <= max_label else t[:max_label - 1] + "…" for t in labels]
    ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=8, family="monospace")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    if own:
        fig.tight_layout()
    return fig


def rank_frequency(counts: np.ndarray, *, ax=None, label: str = "tokens"):
    """Zipf plot: token frequency vs rank, log-log."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.8, 3.4))
    c = np.sort(np.asarray(counts, dtype=float))[::-1]
    c = c[c > 0]
    ax.loglog(np.arange(1, len(c) + 1), c / c.sum(), label=label)
    ax.set(xlabel="rank", ylabel="frequency", title="token frequency vs rank")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def sparsity_schedule(cfg, history=None, *, ax=None):
    """P1's L0 anneal and "sharkfin" lr for a sparse RunConfig; overlays the lr a run actually used."""
    steps = np.arange(cfg.train.steps)
    target = cfg.sparsity.weight_nonzero_frac
    frac = [l0_fraction(int(s), cfg.train.steps, target, cfg.sparsity) for s in steps]
    lr = [lr_at(int(s), cfg) * sharkfin_factor(int(s), cfg.train.steps, cfg.sparsity) for s in steps]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 3.4))
    ax.plot(steps, frac, color="C0", label="kept fraction of each matrix (L0 / dense)")
    ax.set(xlabel="step", ylabel="kept fraction", yscale="log")
    ax2 = ax.twinx()
    ax2.plot(steps, np.asarray(lr) / cfg.train.lr, color="C1", label="lr / base lr (schedule)")
    if history is not None and history.lr:
        ax2.plot(np.asarray(history.step), np.asarray(history.lr) / cfg.train.lr, color="C1", ls=":", lw=2,
                 label="lr / base lr (recorded)")
    ax2.set_ylabel("relative lr")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [x.get_label() for x in lines], fontsize=8, loc="center right")
    ax.set_title("weight-sparse schedule: L0 anneal and sharkfin lr")
    fig.tight_layout()
    return fig


def loss_scatter(a: np.ndarray, b: np.ndarray, xlabel: str, ylabel: str, *, ax=None, title: str = ""):
    """Hexbin of two models' per-token losses on the same tokens, with the diagonal."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.2, 4.0))
    hi = float(np.percentile(np.concatenate([a, b]), 99.5))
    ax.hexbin(a, b, gridsize=45, extent=(0, hi, 0, hi), bins="log", cmap="viridis", mincnt=1)
    ax.plot([0, hi], [0, hi], color="w", lw=1, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, hi), ylim=(0, hi))
    fig.tight_layout()
    return fig


def task_heatmap(acc: dict[str, dict[str, float]], *, threshold: float = 0.9, ax=None, title: str = ""):
    """Accuracy per task (rows) and model (columns), cells at or above ``threshold`` outlined."""
    models = list(acc)
    tasks = list(next(iter(acc.values())))
    vals = np.array([[acc[m][t] for m in models] for t in tasks])
    size = (0.9 * len(models) + 3.2, 0.27 * len(tasks) + 1.4)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=size)
    im = ax.imshow(vals, cmap="RdYlGn", vmin=0.4, vmax=1.0, aspect="auto")
    for i in range(len(tasks)):
        for j in range(len(models)):
            ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    fontweight="bold" if vals[i, j] >= threshold else "normal")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_title(title or f"task accuracy (bold: >= {threshold:.0%})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.tight_layout()
    return fig


def labelled_scatter(x: Mapping, y: Mapping, *, xlabel: str, ylabel: str, title: str = "", xscale: str = "linear",
                     yscale: str = "linear", ax=None):
    """One labelled point per key of ``x`` (a dict or pandas Series), each in its own colour.

    Args:
        x: ``{label: x value}``.
        y: ``{label: y value}`` with the same labels.
        xlabel, ylabel, title: axis labels and title.
        xscale, yscale: matplotlib axis scales (``"linear"``, ``"log"``).
        ax: draw into this axes instead of a new figure.

    Returns:
        The Figure (one axes, one point collection per label).
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.4))
    for name in x.keys():
        ax.scatter(x[name], y[name], s=40)
        ax.annotate(name, (x[name], y[name]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set(xscale=xscale, yscale=yscale, xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def loss_scatter_panels(panels: Sequence[tuple]):
    """Side-by-side :func:`loss_scatter` panels, e.g. sparse vs dense next to dense vs dense.

    Args:
        panels: one ``(a, b, xlabel, ylabel, title)`` per panel: per-token losses of two models on the same tokens.

    Returns:
        The Figure, one axes per panel.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (a, b, xlabel, ylabel, title) in zip(axes[0], panels):
        loss_scatter(a, b, xlabel, ylabel, ax=ax, title=title)
    return fig


def speed_bars(result: dict, *, ax=None, title: str = ""):
    """Tokens/s of each variant of a training-speed benchmark result (``artifacts.benchmark_result``), one bar per
    variant with its ratio to the first (the reference) and the spread over rounds as an error bar."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.2, 3.6))
    names = list(result["variants"])
    tps = np.array([result["variants"][n]["tokens_per_s"] for n in names])
    lo = [tps[i] - min(result["variants"][n]["rounds"]) for i, n in enumerate(names)]
    hi = [max(result["variants"][n]["rounds"]) - tps[i] for i, n in enumerate(names)]
    colors = ["C7" if "official" in n else "C0" for n in names]
    ax.barh(names, tps, xerr=[lo, hi], color=colors, capsize=3)
    for i, v in enumerate(tps):
        ax.text(v, i, f"  {v / tps[0]:.2f}x", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="training tokens / s (median round)",
           title=title or f"{result['config']}, {result['threads']} thread(s)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
