"""Figures of the bridges chapter (P1 §3.3, Fig. 7 and 9). Every function returns the matplotlib Figure.

Inputs are bridge runs (``kind: bridges`` artifacts, :mod:`sparsecirc.wst.bridge_study`): their ``history`` and
``metrics``; and the steering study's results (``kind: bridge_steering``: per run, demo name -> steering result).

Example::

    architecture(4)                                    # the two residual streams and the 9 bridges
    training_curves({"joint": run.history, "frozen": other.history})
    hybrid_losses({"joint": run.metrics, "frozen": other.metrics})
    steering_curves(study.results["runs"]["wst-bridges-zoo2-joint"])
    channel_sweep({"joint": study.results["runs"]["wst-bridges-zoo2-joint"], "frozen": ...})
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch

from sparsecirc.wst.bridges import site_names

TERMS = {"ce": "sparse CE", "nmse_enc": "sum NMSE, encoders", "nmse_dec": "sum NMSE, decoders",
         "kl_d2s": "sum KL, dense->sparse hybrids", "kl_s2d": "sum KL, sparse->dense hybrids"}
RUN_STYLES = ["-", "--", ":", "-."]


def architecture(n_layer: int = 4):
    """The dense model (top) and the sparse model (bottom) as residual streams with their sublayers; at every read
    an encoder f_i (dense -> sparse, linear + AbsTopK) and a decoder g_i (sparse -> dense, linear)."""
    names = site_names(n_layer)
    fig, ax = plt.subplots(figsize=(1.25 * len(names) + 1.5, 3.2))
    ys = {"dense": 2.0, "sparse": 0.0}
    for model, y in ys.items():
        ax.annotate("", xy=(len(names) + 0.3, y), xytext=(-0.6, y),
                    arrowprops=dict(arrowstyle="->", color="0.4", lw=1.5))
        ax.text(-0.7, y, f"{model}\nresidual", ha="right", va="center", fontsize=9)
        for i, n in enumerate(names[:-1]):
            color = "#e8d9b5" if "attn" in n else "#c9dbe8"
            ax.add_patch(plt.Rectangle((i + 0.25, y + 0.18), 0.5, 0.35, color=color, ec="0.3", lw=0.6))
            ax.text(i + 0.5, y + 0.35, n.split(".")[1], ha="center", va="center", fontsize=7)
        ax.text(len(names) - 0.5, y + 0.35, "logits", ha="center", va="center", fontsize=7)
    for i, n in enumerate(names):
        x = i + 0.1
        ax.add_patch(FancyArrowPatch((x - 0.08, 1.85), (x - 0.08, 0.15), arrowstyle="->", color="#1f5fbf",
                                     mutation_scale=8, lw=0.9))
        ax.add_patch(FancyArrowPatch((x + 0.08, 0.15), (x + 0.08, 1.85), arrowstyle="->", color="#bf5f1f",
                                     mutation_scale=8, lw=0.9))
        ax.text(x, -0.35, n, ha="center", va="top", fontsize=7, rotation=30)
    ax.text(len(names) + 0.4, 1.35, "f_i: dense -> sparse\n(linear + AbsTopK)", color="#1f5fbf", fontsize=8)
    ax.text(len(names) + 0.4, 0.65, "g_i: sparse -> dense\n(linear)", color="#bf5f1f", fontsize=8)
    ax.set_xlim(-2.2, len(names) + 2.6)
    ax.set_ylim(-1.1, 2.8)
    ax.axis("off")
    ax.set_title(f"bridges at the {len(names)} sublayer reads of two {n_layer}-layer models", fontsize=10)
    fig.tight_layout()
    return fig


def _smooth(y, k: int):
    y = np.asarray(y, float)
    if k <= 1 or len(y) < k:
        return y
    return np.convolve(y, np.ones(k) / k, mode="valid")


def training_curves(histories: dict, smooth: int = 25):
    """Every term of the bridge loss against step (one line style per run), and the sparse model's validation CE."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for (label, h), ls in zip(histories.items(), RUN_STYLES):
        series = {"ce": h.train_loss, **{k: h.extra.get(k, []) for k in TERMS if k != "ce"}}
        for k, v in series.items():
            if not len(v):
                continue
            ax = axes[0] if k in ("ce", "nmse_enc", "nmse_dec") else axes[1]
            y = _smooth(v, smooth)
            ax.plot(np.arange(len(y)) + smooth // 2, y, ls, lw=1.2, label=f"{TERMS[k]} ({label})")
        axes[2].plot(h.val_step, h.val_loss, ls + "o", ms=3, label=label)
    titles = ("CE and reconstruction", "hybrid KL to the dense model", "sparse model, validation CE")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[:2]:  # a run from scratch starts orders of magnitude above where it ends
        ax.set_yscale("log")
    fig.tight_layout()
    return fig


def hybrid_losses(runs: dict):
    """Validation CE and mean task loss of every one-switch hybrid against the site where it switches, both
    directions, per run; the pure dense and sparse models as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for (label, m), ls in zip(runs.items(), RUN_STYLES):
        h = m["hybrids"]
        x = np.arange(len(h["sites"]))
        for ax, key in zip(axes, ("ce", "task_loss")):
            ax.plot(x, [r[key] for r in h["d2s"]], ls + "o", ms=3, color="#1f5fbf",
                    label=f"dense prefix -> sparse suffix ({label})")
            ax.plot(x, [r[key] for r in h["s2d"]], ls + "s", ms=3, color="#bf5f1f",
                    label=f"sparse prefix -> dense suffix ({label})")
            ax.axhline(h["pure"]["dense"][key], color="0.2", lw=0.9, ls=ls, label=f"dense ({label})")
            ax.axhline(h["pure"]["sparse"][key], color="0.6", lw=0.9, ls=ls, label=f"sparse ({label})")
            ax.set_xticks(x, h["sites"], rotation=30, fontsize=8)
    axes[0].set_ylabel("validation CE (nats / token)")
    axes[1].set_ylabel("mean task loss (nats)")
    axes[0].set_title("crossing at each site: language modelling", fontsize=10)
    axes[1].set_title("crossing at each site: P1 task prompts", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def steering_curves(demos: dict, title: str = ""):
    """Per steering demo (``demos``: name -> a steering result of :mod:`sparsecirc.wst.bridge_study`): the dense
    model's P(answer) against strength through the sparse channel's decoder column, through random directions of the
    same norm (thin lines), with every sparse channel moved at once (when measured), and on the counterfactual
    prompts themselves (dashed)."""
    fig, axes = plt.subplots(1, len(demos), figsize=(5.2 * len(demos), 3.6), squeeze=False)
    for ax, (name, s) in zip(axes[0], demos.items()):
        x = s["strengths"]
        for i, r in enumerate(s["random"]):
            ax.plot(x, r, color="0.6", lw=0.8, label="random direction, same norm" if i == 0 else None)
        ax.plot(x, s["real"], "-o", ms=3, color="#1f5fbf", label=f"channel {s['channel']} at {s['site_name']}")
        if "sweep" in s:
            ax.plot(s["sweep"]["strengths"], s["sweep"]["all_channels"], "-s", ms=3, color="#bf5f1f",
                    label="every channel of the read")
        ax.axhline(s["counterfactual"], color="k", ls="--", lw=0.8, label="dense model on the counterfactual")
        ax.set_yscale("log")
        ax.set_xlabel("steering strength")
        ax.set_ylabel(f"P({s['steer_to']!r}) at the last token")
        ax.set_title(f"{title}{name}: {s['task']} ({s['prompts']} test prompts)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def channel_sweep(runs: dict):
    """P(answer) at strength 1 against the number of sparse channels moved together (best separating first), per
    demo, each run a line style; thin grey: random directions of the same norms; dashed: the counterfactual."""
    demos = list(next(iter(runs.values())))
    fig, axes = plt.subplots(1, len(demos), figsize=(5.2 * len(demos), 3.6), squeeze=False)
    for ax, name in zip(axes[0], demos):
        for (label, run), ls in zip(runs.items(), RUN_STYLES):
            sw = run[name]["sweep"]
            ax.plot(sw["k"], sw["real"], ls + "o", ms=3, color="#1f5fbf", label=f"top-k channels ({label})")
            ax.plot(sw["k"], sw["random"], ls, color="0.6", lw=0.9, label=f"random, same norms ({label})")
        ax.axhline(next(iter(runs.values()))[name]["counterfactual"], color="k", ls="--", lw=0.8,
                   label="dense model on the counterfactual")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sparse channels moved (strength 1)")
        ax.set_ylabel(f"P({next(iter(runs.values()))[name]['steer_to']!r})")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def residual_transfer(runs: dict):
    """Per demo (``runs``: run label -> demo name -> :func:`bridge_study.residual_transfer` result): P(answer) on the
    actual prompts when the decoded sparse difference is written into the dense residual stream at each site, per
    run; the dense model's own counterfactual residual patched there (the ceiling); no intervention (dotted)."""
    demos = list(next(iter(runs.values())))
    fig, axes = plt.subplots(1, len(demos), figsize=(5.6 * len(demos), 3.6), squeeze=False)
    for ax, name in zip(axes[0], demos):
        first = next(iter(runs.values()))[name]
        x = np.arange(len(first["sites"]))
        ax.plot(x, first["dense_patch"], "k--", lw=1, label="dense counterfactual residual patched in")
        for (label, run), ls in zip(runs.items(), RUN_STYLES):
            ax.plot(x, run[name]["decoded"], ls + "o", ms=3, color="#bf5f1f",
                    label=f"decoded sparse difference ({label})")
        ax.axhline(first["none"], color="0.5", ls=":", lw=1, label="no intervention")
        ax.set_xticks(x, first["sites"], rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("P(answer) at the last token")
        ax.set_title(f"{name}: written into the residual stream at each site", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
