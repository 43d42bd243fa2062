"""Static figures (matplotlib; PNG in the rendered book). Every function returns the Figure."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


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
                  cmap: str = "RdBu_r", ax=None):
    """Heatmap of ``values`` [rows, tokens], one column per token, symmetric colour scale around 0."""
    values = np.asarray(values, dtype=float)
    if values.shape != (len(row_labels), len(tokens)):
        raise ValueError(f"values has shape {values.shape}, expected ({len(row_labels)}, {len(tokens)})")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(
        figsize=(max(6.0, 0.42 * len(tokens)), 0.45 * len(row_labels) + 1.4))
    vmax = float(np.abs(values).max()) or 1.0
    im = ax.imshow(values, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=90, fontsize=8, family="monospace")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
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
