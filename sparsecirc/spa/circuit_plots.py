"""Figures of P2's circuit comparison: explained-effect curves (dense vs sparse) and the ratios they give.

Every function returns the matplotlib Figure. Inputs are the ``results`` of a ``kind: attention_circuits`` artifact
(:mod:`sparsecirc.spa.attention_circuits`).

Example::

    effect_curves(results, "code", "edges")      # one panel per prompt set, the 0.9 line, k_dense / k_sparse
    ratio_bars(attention_circuits.ratio_table(results))
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sparsecirc.spa.circuit_curves import LEVEL, smallest_k
from sparsecirc.spa.plots import attention_graph_axes

COLORS = {"dense": "0.35", "sparse": "#1f5fbf"}
XLABEL = {"edges": "component edges kept", "heads": "heads kept", "attention_edges": "attention edges kept per prompt"}


def _panel(ax, sets: dict, unit: str, title: str, gates: str = "recompute") -> None:
    ks = {}
    for role in ("dense", "sparse"):
        c = sets[role]["curves"][gates if gates in sets[role]["curves"] else "recompute"][unit]
        x = np.maximum(np.asarray(c["k"], float), 0.5)  # k = 0 drawn at 0.5 on a log axis
        ax.plot(x, c["effect"], "-o", ms=2.5, color=COLORS[role], label=role)
        k = smallest_k(c, LEVEL)
        ks[role] = k
        if k is not None:
            ax.axvline(max(k, 0.5), color=COLORS[role], lw=0.8, ls=":")
    ax.axhline(LEVEL, color="k", lw=0.8, ls="--")
    if unit != "heads":
        ax.set_xscale("log")
    d, s = ks["dense"], ks["sparse"]
    ratio = f"{d / s:.2g}x" if d is not None and s else "n/a"
    ax.set_title(f"{title}\nk dense {d}, sparse {s}: {ratio}", fontsize=9)
    ax.set_ylim(-0.3, 1.15)
    ax.grid(alpha=0.3)


def effect_curves(results: dict, comparison: str, unit: str = "edges", sets: list[str] | None = None,
                  ncols: int = 4, gates: str = "recompute"):
    """Explained effect against the number of ``unit`` kept (top by EAP-IG, the rest patched), dense and sparse,
    one panel per prompt set; dashed: P2's 0.9 line; dotted: each model's smallest count reaching it."""
    comp = results["comparisons"][comparison]
    names = sets or list(comp["sets"])
    ncols = min(ncols, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.9 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        _panel(ax, comp["sets"][name], unit, name, gates)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(XLABEL[unit])
    for ax in axes[:, 0]:
        ax.set_ylabel("explained effect")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{comparison}: {comp['dense']} vs {comp['sparse']} ({gates} gates)", fontsize=10)
    fig.tight_layout()
    return fig


def ratio_bars(table: pd.DataFrame, units=("edges", "heads", "attention_edges"), paper: dict | None = None):
    """k_dense / k_sparse per prompt set and unit (log y; 1 = no difference); ``paper`` draws P2's ratios
    (``{"label": value}``) as horizontal lines for scale."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    labels = [f"{r.comparison}/{r.prompts}" for r in table.itertuples()]
    x = np.arange(len(labels))
    w = 0.8 / len(units)
    for i, u in enumerate(units):
        vals = table[f"{u} ratio"].astype(float).to_numpy()
        h = np.nan_to_num(vals, nan=1.0) - 1  # bars from 1: below 1 the sparse model needs more
        ax.bar(x + (i - (len(units) - 1) / 2) * w, h, w, bottom=1, label=u.replace("_", " "))
    ax.axhline(1, color="k", lw=0.8)
    for j, (name, v) in enumerate((paper or {}).items()):
        ax.axhline(v, color="C3", lw=0.8, ls="--")
        ax.text(len(labels) - 0.5, v, f" P2 {name}", color="C3", fontsize=7, va="bottom", ha="right")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("k dense / k sparse")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def correlation_scatter(results: dict, comparison: str, prompt_set: str):
    """EAP and EAP-IG scores against exact patching for every component edge (dense and sparse panels), and the
    attention-edge sample; Spearman's rho in each title."""
    r = results["comparisons"][comparison]["sets"][prompt_set]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, role in zip(axes[:2], ("dense", "sparse")):
        s = r[role]["scores"]
        for key, mk in (("eap", "o"), ("eap_ig", "x")):
            ax.scatter(s["exact"], s[key], s=8, marker=mk, alpha=0.6,
                       label=f"{key.replace('_', '-').upper()} (rho {r[role]['spearman'][key]:.2f})")
        ax.set(title=f"{role}: component edges", xlabel="exact patching effect", ylabel="attribution score")
        ax.legend(fontsize=7)
    for role, mk in (("dense", "o"), ("sparse", "x")):
        a = r[role]["attention_exact"]
        axes[2].scatter(a["exact"], a["score"], s=8, marker=mk, alpha=0.6, color=COLORS[role],
                        label=f"{role} (rho {a['spearman']:.2f})")
    axes[2].set(title="attention edges (sample)", xlabel="exact patching effect", ylabel="EAP-IG score")
    axes[2].legend(fontsize=7)
    for ax in axes:
        lim = max(abs(v) for v in ax.get_xlim() + ax.get_ylim())
        ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.6)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{comparison} / {prompt_set}: attribution against exact patching", fontsize=10)
    fig.tight_layout()
    return fig


def circuit_graphs(circuits: dict, tokens: list[str], title: str = ""):
    """Each model's attention-edge circuit on one prompt (``attention_circuits.kept_attention_edges``), drawn as
    chapter 07's graphs: token columns, layers bottom to top, an edge wherever some head keeps it."""
    fig, axes = plt.subplots(len(circuits), 1, figsize=(max(8.0, 0.32 * len(tokens)), 2.3 * len(circuits)))
    for ax, (name, c) in zip(np.atleast_1d(axes), circuits.items()):
        attention_graph_axes(ax, c["graph"], tokens, title=f"{name}: {c['k']} of {c['possible']} attention edges",
                             fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
