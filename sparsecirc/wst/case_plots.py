"""Figures of the bracket-depth case study (P1 §3.2.2, Fig. 5 and 8; chapter 06). Every function returns the Figure.

Example::

    fig = dilution(run.results)                                   # three panels of the dilution attack
    fig = list_heatmap(model, bracket.list_pair(128, 8, 7), head=(1, 3))

Token labels and the list's opening follow the model's data version (``tasks.model_data_version``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sparsecirc.core.model import GPT
from sparsecirc.core.plotting import token_heatmap
from sparsecirc.data.tasks import model_data_version, task_tokenizer
from sparsecirc.wst.attacks import opening_position
from sparsecirc.wst.bracket import short_name
from sparsecirc.wst.reading import position_profile

KINDS = (("nested", "o-"), ("flat", "s--"))


def _accuracy_panel(ax, results: dict) -> None:
    """p(correct bracket) against list length for every model, crosses where each first drops below 1/2."""
    for i, m in enumerate([results["model"]] + list(results["compare_models"])):
        sw = results["models"][m]["dilution"]
        for kind, ls in (("nested", "-"), ("flat", "--")):
            ax.plot(sw["lengths"], sw[kind]["p_correct"], ls, color=f"C{i}", marker="o", ms=3,
                    label=f"{short_name(m)}, {kind}")
            fl = results["models"][m]["failure_length"][kind]
            if fl is not None:  # where p(correct) first drops below 1/2
                ax.plot([fl], [0.5], "X" if kind == "nested" else "P", color=f"C{i}", ms=11, mec="k", zorder=5)
    ax.axhline(0.5, color="0.5", lw=0.8)
    ax.plot([], [], "X", color="0.5", mec="k", ms=9, label="nested fails here")
    ax.plot([], [], "P", color="0.5", mec="k", ms=9, label="flat fails here")
    ax.set(xlabel="list length (elements)", ylabel="p(correct bracket)", ylim=(0, 1),
           title="dilution: accuracy vs length")
    ax.legend(fontsize=7, loc="lower left")


def _depth_panel(ax, results: dict) -> None:
    """|depth read| at the last token against context length (log-log), with the power-law fit and 1/n."""
    sw = results["models"][results["model"]]["dilution"]
    x = np.asarray(sw["n_tokens"])
    for kind, ls in KINDS:
        ax.plot(x, np.abs(sw[kind]["node"]), ls, ms=3, color="C0", alpha=1 if kind == "nested" else 0.5,
                label=f"|depth read|, {kind}")
    fit = results["depth_fit"]["tokens"]
    ax.plot(x, abs(fit["prefactor"]) * x ** fit["exponent"], "k-", lw=1, label=f"fit: exponent {fit['exponent']:.2f}")
    ax.plot(x, abs(sw["nested"]["node"][0]) * x[0] / x, "k:", lw=1, label="1/n (P1)")
    ax.set(xscale="log", yscale="log", xlabel="context length (tokens)", ylabel="depth read at the last token",
           title="depth node vs context length")
    ax.legend(fontsize=7)


def _attention_panel(ax, results: dict) -> None:
    """Attention from the last token to the list opener against context length, depth head and flat head."""
    sparse = results["models"][results["model"]]
    x = np.asarray(sparse["dilution"]["n_tokens"])
    layer, head = results["depth_node"]["head"]
    for kind, ls in KINDS:
        ax.plot(x, sparse["dilution"][kind]["attn_opening"], ls, ms=3, color="C2",
                label=f"L{layer}H{head} (depth) to the opener, {kind}")
    fsw = sparse.get("dilution_flat_node")
    if fsw is not None:
        fl, fh = results["flat_node"]["head"]
        for kind, ls in KINDS:
            ax.plot(x, fsw[kind]["attn_opening"], ls, ms=3, color="C4",
                    label=f"L{fl}H{fh} (flat) to the opener, {kind}")
    ax.plot(x, 1 / x, "k:", lw=1, label="uniform average (1/n)")
    ax.set(xscale="log", yscale="log", xlabel="context length (tokens)", ylabel="attention weight",
           title="attention from the last token to the list opener")
    ax.legend(fontsize=7)


def dilution(results: dict):
    """The dilution attack in three panels: accuracy vs list length (every model), the depth read vs context
    length (sparse model, with its power-law fit), and the attention from the last token to the list opener.

    Args:
        results: the bracket study's results (``run.results`` of ``wst-bracket-circuit-*``).

    Returns:
        The Figure (three axes).
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    _accuracy_panel(axes[0], results)
    _depth_panel(axes[1], results)
    _attention_panel(axes[2], results)
    fig.tight_layout()
    return fig


def dilution_accuracy(results: dict, title: str = ""):
    """One panel of :func:`dilution`: p(correct bracket) against list length, nested and flat, for every model of a
    ``bracket`` or ``bracket_attacks`` study, with where each first drops below 1/2."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _accuracy_panel(ax, results)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def list_heatmap(model: GPT, examples: list, *, head: tuple[int, int] | None = None,
                 read: tuple[str, int] | None = None, title: str = ""):
    """A nested and a flat list prompt of the same length, position by position: the attention of ``head`` from
    the last token (without ``read``) or the node ``read`` at every token, in the model's data version.

    v1: the opener column reads `` [[|[``. v2, where the nested list opens with two ``[`` tokens and the flat one
    with one: the flat ``[`` shares the column of the nested list's second ``[`` (``[| [``), and the flat row
    reads 0 under the nested list's first ``[`` (`` [|``).

    Args:
        model: the model to run.
        examples: ``[nested, flat]`` prompts of the same base in the model's data version
            (:func:`sparsecirc.wst.bracket.list_pair`): equal token length in v1, the flat one a token shorter in v2.
        head: (layer, head) whose attention is shown (when ``read`` is None).
        read: (hook, flat index) shown instead of the attention.
        title: the figure's title.

    Returns:
        The Figure (a 2-row heatmap and its colour bar).
    """
    if (head is None) == (read is None):
        raise ValueError("list_heatmap needs exactly one of head= or read=")
    version = model_data_version(model)
    tok = task_tokenizer(version)
    nested, flat = (list(e.prompt_ids) for e in examples)
    toks = [tok.decode([i]) for i in nested]
    pos = opening_position(nested, version)
    key = "read" if read is not None else "attention"
    rows = [position_profile(model, ids, None if read is None else tuple(read), head)[key] for ids in (nested, flat)]
    if len(flat) == len(nested):  # v1: ` [[` and ` [` are one token each
        toks[pos] = " [[|["
    elif nested[:pos] + nested[pos + 1:] == flat:  # v2: `[[` is two tokens, the flat list has the first
        toks[pos - 1], toks[pos] = toks[pos - 1] + "|", "[|" + toks[pos - 1]
        rows[1] = np.insert(rows[1], pos - 1, 0.0)
    else:
        raise ValueError("list_heatmap needs a nested and a flat prompt of the same base (bracket.list_pair)")
    return token_heatmap(toks, np.stack(rows), ["nested", "flat"], title=title)
