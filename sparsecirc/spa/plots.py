"""Figures of P2's sparse attention: Fig. 1-style edge graphs, GECO training curves, and the top-k baseline.

Every function returns the matplotlib Figure (static, PNG in the book).

Example::

    graphs = {"dense": [attention_graph(dense, x) for x in prompts], "sparse": [...]}
    attention_graphs_figure(labels, graphs)
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.ticker import NullFormatter, ScalarFormatter

from sparsecirc.core.plotting import loss_curves, token_heatmap
from sparsecirc.spa.code_posttrain import density_at_context, display_tokens, last_query_weights

EDGE_COLOR = "#1f5fbf"


def attention_graph_axes(ax, graph: np.ndarray, tokens: Sequence[str], *, targets: Sequence[str] | None = None,
                         answer_from: int | None = None, title: str = "", color: str = EDGE_COLOR,
                         layer_labels: bool = True, min_weight: float = 0.02, fontsize: float = 10) -> None:
    """Draw one prompt's edge graph (P2 Fig. 1): token columns, residual levels bottom (embeddings) to top.

    Args:
        graph: [n_layer, q_pos, k_pos] weights in [0, 1] (union over heads); layer l's edge (q, k) is drawn from
            key k at level l to query q at level l + 1, shaded by weight (white = 0, full colour = 1).
        tokens: the input tokens, one per column (bottom labels).
        targets: the token each position predicts (top labels); positions before ``answer_from`` are grey.
        min_weight: edges below this weight are not drawn (invisible anyway; keeps the PNG small).
    """
    L, T, _ = graph.shape
    for x in range(T):  # residual streams
        ax.plot([x, x], [0, L], color="0.85", lw=1.2, zorder=0)
    xs, ys = np.meshgrid(np.arange(T), np.arange(L + 1))
    ax.scatter(xs.ravel(), ys.ravel(), s=6, color="0.6", zorder=1)
    segs, cols = [], []
    for layer in range(L):
        for q, k in zip(*np.nonzero(graph[layer] >= min_weight)):
            if q == k:  # self-edge: a short arc, so it does not hide under the residual stream
                t = np.linspace(0, 1, 12)
                segs.append(np.stack([k + 0.12 * np.sin(np.pi * t), layer + t], -1))
            else:
                segs.append(np.array([[k, layer], [q, layer + 1]]))
            # opaque colour from white to `color` (reads like opacity on white, but overlapping faint lines do
            # not add up to a dark smear); the heaviest edges are drawn last, on top
            w = float(min(1.0, graph[layer, q, k]))
            cols.append(tuple(1.0 - w * (1.0 - c) for c in to_rgba(color)[:3]) + (1.0,))
    order = np.argsort([-sum(c[:3]) for c in cols])  # light (low weight) first
    ax.add_collection(LineCollection([segs[i] for i in order], colors=[cols[i] for i in order], linewidths=1.4,
                                     zorder=2))
    ax.set_xlim(-0.6, T - 0.4)
    ax.set_ylim(-0.15, L + 0.15)
    ax.set_xticks(range(T), list(tokens), family="monospace", fontsize=fontsize)
    ax.tick_params(axis="x", length=0)
    if targets is not None:
        top = ax.secondary_xaxis("top")
        top.set_xticks(range(T), list(targets), family="monospace", fontsize=fontsize)
        top.tick_params(length=0)
        start = answer_from if answer_from is not None else 0
        for i, lab in enumerate(top.get_xticklabels()):
            lab.set_color("black" if i >= start else "0.75")
            lab.set_fontweight("bold" if i >= start else "normal")
    ax.set_yticks([layer + 0.5 for layer in range(L)], [f"L{layer}" for layer in range(L)] if layer_labels else [])
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10, pad=18 if targets is not None else 6)


def attention_graphs_figure(prompts: Sequence[str], graphs: dict[str, Sequence[np.ndarray]],
                            tokens: Sequence[Sequence[str]], targets: Sequence[Sequence[str]] | None = None, *,
                            answer_from: int | None = None, suptitle: str = "", panel_width: float = 4.3,
                            fontsize: float = 10):
    """Rows = models (e.g. dense, sparse), columns = prompts; each panel as :func:`attention_graph_axes`.

    ``panel_width`` (inches) and ``fontsize`` of the token labels: widen and shrink for long prompts (~0.3 in/token).
    """
    rows = list(graphs)
    fig, axes = plt.subplots(len(rows), len(prompts), figsize=(panel_width * len(prompts), 3.1 * len(rows)),
                             squeeze=False)
    for r, name in enumerate(rows):
        for c, prompt in enumerate(prompts):
            g = graphs[name][c]
            binary = bool(np.isin(g, (0.0, 1.0)).all())
            what = f"{int(g.sum())} edges (union over heads)" if binary else "shade = max weight over heads (≥ 0.02)"
            attention_graph_axes(axes[r, c], g, tokens[c], targets=None if targets is None else targets[c],
                                 answer_from=answer_from, layer_labels=c == 0, title=f"{name}: {prompt}\n{what}",
                                 fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def _smooth(y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    if len(y) < n or n <= 1:
        return np.arange(1, len(y) + 1), y
    return np.arange(n, len(y) + 1), np.convolve(y, np.ones(n) / n, mode="valid")


def geco_curves(history, *, tau: float, trajectory: dict | None = None, smooth: int = 50,
                ce_label: str = "answer-digit CE (nats)", log_ce: bool = True,
                reference: tuple[float, str] | None = None, heldout_slack: float | None = None):
    """Three panels of a GECO post-training run: CE vs τ, the multiplier λ, and edge density per layer.

    ``history`` is a :class:`~sparsecirc.core.train.History` with GECO's ``extra`` series; ``trajectory`` (optional) holds
    the deterministic (eval-gate) density measured every few steps. ``ce_label`` names the constrained loss;
    ``log_ce=False`` draws it on a linear axis (a language model's CE moves by hundredths of a nat).
    ``reference`` = (CE, label) adds a dotted line to the CE panel (e.g. the dense model's validation CE).
    A run whose multiplier read held-out windows (``extra["heldout_constraint"]``, :class:`~sparsecirc.spa.geco.
    HeldoutConstraint`) gets a fourth panel: its held-out excess over the dense parent (each measurement, and the
    EMA λ follows) against the slack ``heldout_slack`` (the run's ``train_slack``), which it then needs.
    """
    ex = history.extra
    held = "heldout_constraint" in ex
    if held and heldout_slack is None:
        raise ValueError("this run's multiplier read held-out windows: pass heldout_slack (its metrics' train_slack)")
    fig, axes = plt.subplots(1, 4 if held else 3, figsize=(18 if held else 13.5, 3.6))
    if held:
        ax, steps = axes[3], np.arange(1, len(ex["heldout_constraint"]) + 1)
        ax.plot(steps, np.asarray(ex["heldout_constraint"]) + heldout_slack, lw=0.6, alpha=0.5, color="C4",
                label="each measurement (held on until the next)")
        ax.plot(steps, np.asarray(ex["constraint_ema"]) + heldout_slack, lw=1.5, color="C3", label="EMA (λ's input)")
        ax.axhline(heldout_slack, color="k", ls="--", lw=1, label=f"slack {heldout_slack:.3g}")
        ax.axhline(0.0, color="C1", ls=":", lw=1, label="dense parent")
        ax.set(xlabel="step", ylabel="CE − dense CE (nats), held-out windows", title="the constraint λ reads")
        ax.legend(fontsize=7)
    ax = axes[0]
    ax.plot(*_smooth(history.train_loss, smooth), lw=1, alpha=0.7, label=f"train CE (sampled gates, mean of {smooth})")
    ax.plot(history.val_step, history.val_loss, "o-", ms=3, label="validation CE (eval gates)")
    ax.axhline(tau, color="k", ls="--", lw=1, label=f"τ = {tau:.4g}")
    ax.set(xlabel="step", ylabel=ce_label, title="constraint: CE ≤ τ", yscale="log" if log_ce else "linear")
    if reference is not None:
        ax.axhline(reference[0], color="C1", ls=":", lw=1, label=reference[1])
    ax.legend(fontsize=8 if reference is None else 7)
    ax = axes[1]
    ax.semilogy(np.arange(1, len(ex["lambda"]) + 1), ex["lambda"], color="C3")
    ax.set(xlabel="step", ylabel="λ", title="GECO multiplier")
    ax = axes[2]
    layers = sorted(k for k in ex if k.startswith("density_L"))
    for i, key in enumerate(layers):
        ax.semilogy(*_smooth(ex[key], smooth), color=f"C{i}", lw=1, label=f"L{key[9:]} expected")
    if trajectory:
        per_layer = np.asarray(trajectory["density_per_layer"])  # [points, n_layer]
        for i in range(per_layer.shape[1]):
            ax.semilogy(trajectory["step"], np.maximum(per_layer[:, i], 1e-4), "o", ms=3, color=f"C{i}")
        ax.semilogy(trajectory["step"], trajectory["density"], "k.-", lw=1.5, ms=4, label="all layers, eval gate")
    ax.set(xlabel="step", ylabel="fraction of causal edges open",
           title="edge density (lines: mean σ(g); dots: eval gate,\nan exact 0 drawn at 1e-4)")
    ax.legend(fontsize=7, ncol=2)
    for a in axes:
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def geco_compare(runs: dict, *, max_density: float | None = None):
    """GECO runs side by side: the multiplier λ per step, the eval-gate edge density and the exact match along
    each run's trajectory.

    ``runs`` maps a label to ``(history, trajectory)`` (a :class:`~sparsecirc.core.train.History` with GECO's ``extra``
    series and a trajectory dict with "step", "density", "accuracy"); ``max_density`` draws a target line on the
    density panel.
    """
    if not runs:
        raise ValueError("geco_compare needs at least one run")
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    for i, (label, (history, traj)) in enumerate(runs.items()):
        lam = np.asarray(history.extra["lambda"])
        axes[0].semilogy(np.arange(1, len(lam) + 1), lam, color=f"C{i}", lw=1.2, label=label)
        axes[1].semilogy(traj["step"], traj["density"], "o-", ms=3, lw=1.2, color=f"C{i}", label=label)
        axes[2].plot(traj["step"], 100 * np.asarray(traj["accuracy"]), "o-", ms=3, lw=1.2, color=f"C{i}", label=label)
    axes[0].set(xlabel="step", ylabel="λ", title="GECO multiplier")
    if max_density is not None:
        axes[1].axhline(max_density, color="k", ls="--", lw=1, label=f"target {100 * max_density:g} %")
    axes[1].set(xlabel="step", ylabel="fraction of causal edges open", title="edge density (eval gate)")
    axes[2].set(xlabel="step", ylabel="exact match (%)", title="exact match (eval gate)")
    axes[2].set_ylim(max(0.0, axes[2].get_ylim()[0]), 100.5)
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_vs_edges(rows: Sequence[dict], *, possible: int, ax=None, title: str = ""):
    """Exact match against edges kept per example (log x).

    ``rows``: dicts with "label" (legend; repeated labels share one entry), "edges_per_example", "accuracy", and
    optional "marker", "color", "note" (a short text written next to the point, e.g. "k=2"). A dotted line marks
    all possible edges.
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.6, 3.8))
    seen = set()
    for r in rows:
        x, y = r["edges_per_example"], 100 * r["accuracy"]
        ax.scatter(x, y, s=60, marker=r.get("marker", "o"), color=r.get("color", "C0"), zorder=3, edgecolor="k",
                   linewidth=0.5, label=None if r["label"] in seen else r["label"])
        seen.add(r["label"])
        if r.get("note"):
            ax.annotate(r["note"], (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7)
    ax.axvline(possible, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    lo = min(r["edges_per_example"] for r in rows) / 1.6
    ax.set_xlim(lo, 1.3 * possible)
    ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if lo <= t <= 1.3 * possible])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="attention edges kept per example (log scale; dotted: all edges)", ylabel="exact match (%)",
           ylim=(-5, 105), title=title or "training-free top-k vs post-trained gates")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def density_vs_context(rows: Sequence[dict], *, train_T: int, paper: tuple[int, float] | None = (1024, 0.003),
                       dense_rows: Sequence[dict] = ()):
    """Two panels over the context length T (log x): open fraction of causal edges, and keys kept per query per head.

    ``rows`` come from :func:`sparsecirc.spa.code_posttrain.density_vs_context` (one model evaluated at several T). The
    grey curve is a model that keeps a constant number of keys per query (its value at ``train_T``): its density
    falls as 2e/(T+1). ``paper`` = (T, density) marks P2's headline (≈0.3 % at T = 1024); ``dense_rows`` adds the
    dense model (every edge open). Lengths above ``train_T`` are shaded: the model never saw them in training.
    An exact zero is drawn at the bottom of the log axis (1e-5 % and 1e-3 keys).
    """
    Ts = np.array([r["T"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.8))
    ax = axes[0]
    n_layer = len(rows[0]["density_per_layer"])
    for layer in range(n_layer):
        ax.plot(Ts, [100 * max(r["density_per_layer"][layer], 1e-5) for r in rows], "o-", ms=4, lw=1,
                color=f"C{layer}", label=f"layer {layer}")
    ax.plot(Ts, [100 * r["density"] for r in rows], "ks-", ms=5, lw=1.8, label="all layers")
    ref = next(r for r in rows if r["T"] == train_T)
    grid = np.geomspace(Ts.min(), max(Ts.max(), paper[0] if paper else 0), 60)
    ax.plot(grid, [100 * density_at_context(ref["edges_per_query"], int(round(t))) for t in grid], color="0.55",
            ls="--", lw=1, label=f"constant {ref['edges_per_query']:.2g} keys/query (our T={train_T} value)")
    for r in dense_rows:
        ax.plot(r["T"], 100 * r["density"], "D", color="0.3", ms=6, label="dense model")
    if paper:
        ax.plot(paper[0], 100 * paper[1], "*", color="C3", ms=14,
                label=f"P2 headline ({100 * paper[1]:.1f} % at T={paper[0]})")
    ax.set(xscale="log", yscale="log", xlabel="context length T (tokens)", ylabel="open edges (% of causal pairs)",
           title="edge density depends on context length")
    ax = axes[1]
    for layer in range(n_layer):
        ax.plot(Ts, [max(r["edges_per_query_per_head"][layer], 1e-3) for r in rows], "o-", ms=4, lw=1,
                color=f"C{layer}", label=f"layer {layer}")
    ax.plot(Ts, [r["edges_per_query"] for r in rows], "ks-", ms=5, lw=1.8, label="mean over layers")
    if paper:
        e = paper[1] * (paper[0] + 1) / 2
        ax.plot(paper[0], e, "*", color="C3", ms=14, label=f"P2 headline ≈ {e:.1f} keys/query")
    ax.set(xscale="log", yscale="log", xlabel="context length T (tokens)", ylabel="open keys per query per head",
           title="keys kept per query")
    for a in axes:
        a.axvspan(train_T, a.get_xlim()[1], color="0.92", zorder=0)
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def log_loss_curves(histories: dict, *, smooth: int = 25, title: str = "training"):
    """:func:`sparsecirc.core.plotting.loss_curves` on a log loss axis (an answer CE that falls by decades).

    Args:
        histories: ``{label: History}``.
        smooth: running-mean window of the train loss.
        title: the axes title.

    Returns:
        The Figure (one axes, log y).
    """
    fig = loss_curves(histories, smooth=smooth, title=title)
    fig.axes[0].set_yscale("log")
    return fig


def last_query_heatmaps(ids, models: dict, *, title: str = ""):
    """The final position's effective attention weights of every head, one heatmap per model, stacked.

    Args:
        ids: the prompt's token ids (longer than the models' context: the last ``n_ctx`` are kept).
        models: ``{label: model}`` of equal shape, e.g. the dense model and its post-trained gated copy
            (:func:`sparsecirc.spa.code_posttrain.last_query_weights`: softmax weight, times the open gate).
        title: prefix of each panel's title (``"<title> - <label>"``).

    Returns:
        The Figure (one heatmap axes per model, each with its colour bar).
    """
    first = next(iter(models.values())).cfg
    ids = list(ids)[-first.n_ctx:]
    labels = display_tokens(ids)
    height = 0.32 * first.n_layer * first.n_head + 1.2  # inches per model
    fig, axes = plt.subplots(len(models), 1, squeeze=False, figsize=(max(7.0, 0.3 * len(ids)), len(models) * height))
    for ax, (label, model) in zip(axes[:, 0], models.items()):
        w, rows = last_query_weights(model, ids)
        token_heatmap(labels, w.numpy(), rows, ax=ax, cmap="Blues", vrange=(0.0, 1.0),
                      title=f"{title} - {label}" if title else label)
    fig.tight_layout()
    return fig
