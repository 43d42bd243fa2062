"""The variable-type task's two hops and the distractor it predicts (P1 §3.2.3; chapter 05).

:func:`hop_attention` measures attention between named positions of the prompts (the initialisation, the name's
later uses, the last token); :func:`prefixed_accuracy` / :func:`distractor_rows` put a line of code before every
prompt, the attack the circuit predicts.

Data versions: every function reads token ids in the data version of the model it is given
(``tasks.model_data_version``); the task data passed in must be in that version (``tasks.model_task``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from sparsecirc.core.hooks import record
from sparsecirc.core.model import GPT
from sparsecirc.data.tasks import (
    columns,
    get_task,
    model_data_version,
    model_task,
    pad_batch,
    pair_logits,
    task_accuracy,
    task_tokenizer,
)
from sparsecirc.wst.contrast import key_position, token_id
from sparsecirc.wst.reading import short_name


def distractor_rows(models: dict[str, GPT], ds, task: str, prefixes: list[str]) -> list[dict]:
    """:func:`prefixed_accuracy` of every model with no prefix and with each of ``prefixes``: rows
    ``{"model", "prefix", "accuracy", "accuracy_a", "accuracy_b", "n"}``, the unprefixed row first per model.

    ``ds``: the task data all models are scored on, or None for each model's own test split in its data version
    (``tasks.model_task``; models of different versions need that)."""
    rows = []
    for mid, m in models.items():
        data = model_task(m, task, "test") if ds is None else ds
        rows += [{"model": mid, "prefix": pre, **prefixed_accuracy(m, data, task, pre)} for pre in ["", *prefixes]]
    return rows


def distractor_claims(rows: list[dict], attack: str, attacked: str = "a") -> dict:
    """Claim values of a distractor prefix aimed at one kind of prompt (``attacked``: ``"a"``, the ``set()`` /
    ``.add`` prompts, or ``"b"``, the empty-string / `` +=`` prompts): for the first model (the one whose circuit
    predicts the attack) that kind's accuracy without and with it, and for the others whether the attack also
    halves it."""
    if attacked not in ("a", "b"):
        raise ValueError(f"attacked must be 'a' or 'b', got {attacked!r}")
    key, label = ("accuracy_a", ".add") if attacked == "a" else ("accuracy_b", "+=")

    def acc(mid, pre):
        return next(r[key] for r in rows if r["model"] == mid and r["prefix"] == pre)
    ids = list(dict.fromkeys(r["model"] for r in rows))
    first = ids[0]
    out = {"vartype-distractor-attack": f"{acc(first, ''):.2f} -> {acc(first, attack):.2f} of {label} prompts right",
           "vartype-distractor-flips": acc(first, attack) < 0.5}
    out["vartype-distractor-transfers-to-dense"] = "; ".join(
        f"{short_name(m)}: {'yes' if acc(m, attack) < 0.5 * acc(m, '') else 'no'} "
        f"({acc(m, ''):.2f} -> {acc(m, attack):.2f})" for m in ids[1:]) or "no dense model"
    return out


def _named_position(name: str, key: int, last: int) -> int:
    """``"last"``, ``"key"`` or ``"key-2"`` / ``"key+1"`` (offsets from :func:`key_position`) as an index."""
    if name == "last":
        return last
    if not name.startswith("key"):
        raise ValueError(f"position name must be 'last', 'key' or 'key±n', got {name!r}")
    try:
        return key + (int(name[3:]) if name[3:] else 0)
    except ValueError:
        raise ValueError(f"position name must be 'last', 'key' or 'key±n', got {name!r}") from None


@torch.no_grad()
def hop_attention(model: GPT, ds, task: str, heads: list[str],
                  hops: tuple[tuple[str, str], ...] = (("key", "key-2"), ("last", "key"), ("last", "key+1"),
                                                       ("last", "key-2")), batch_size: int = 64):
    """Mean attention of each head from one named position of a task's prompts to another, as a DataFrame.

    Positions are ``"last"``, ``"key"`` (:func:`key_position`) or an offset from it (``"key-2"``). The defaults
    test P1's two-hop variable-type circuit: the initialisation token looking back at the ``current`` it is
    assigned to (``key -> key-2``), and the final ``current`` looking at the initialisation (``last -> key``,
    ``key+1`` for the ``()`` of ``set()``) or straight at the earlier ``current``. ``heads``: names ``"L{l}H{h}"``
    (the keys of :func:`circuit_heads`). Columns ``"q -> k"`` plus ``"last -> sink"``; rows the heads. ``ds``:
    task data in the model's data version, whose tokenizer finds the key token.
    """
    parsed = [(int(n[1:].split("H")[0]), int(n.split("H")[1])) for n in heads]
    for l, h in parsed:
        if not (0 <= l < model.cfg.n_layer and 0 <= h < model.cfg.n_head):
            raise ValueError(f"head L{l}H{h} is not in a model with {model.cfg.n_layer} layers x {model.cfg.n_head} heads")
    version = model_data_version(model)
    ids_all = columns(ds)["prompt_ids"]
    n_ctx = model.cfg.n_ctx
    sums = np.zeros((len(parsed), len(hops) + 1))
    model.eval()
    for i in range(0, len(ids_all), batch_size):
        ids = ids_all[i:i + batch_size]
        tokens, last = pad_batch(ids, n_ctx)
        with record(model, sorted({f"blocks.{l}.attn.hook_pattern" for l, _ in parsed})) as c:
            model(tokens)
        for b, p in enumerate(ids):
            key = key_position(task, p, version) - max(0, len(p) - n_ctx)
            pos = [(_named_position(q, key, int(last[b])), _named_position(k, key, int(last[b]))) for q, k in hops]
            for j, (l, h) in enumerate(parsed):
                pat = c[f"blocks.{l}.attn.hook_pattern"][b, h]  # [T, T]
                for m, (q, k) in enumerate(pos):
                    sums[j, m] += float(pat[q, k]) if 0 <= k <= q else 0.0
                sums[j, -1] += 1.0 - float(pat[int(last[b])].sum())
    cols = [f"{q} -> {k}" for q, k in hops] + ["last -> sink"]
    return pd.DataFrame(sums / len(ids_all), index=list(heads), columns=cols).round(3)


@torch.no_grad()
def prefixed_accuracy(model: GPT, ds, task: str, prefix: str) -> dict:
    """Task accuracy with ``prefix`` (source text, e.g. an unrelated line of code) put before every prompt.

    Each prompt is re-tokenized as ``prefix + prompt``; A prompts (first candidate correct) and B prompts are
    scored apart, since a distractor aimed at one kind should only move that kind. Returns ``{"accuracy",
    "accuracy_a", "accuracy_b", "n"}``; with ``prefix=""`` this is the plain task accuracy.

    ``ds`` must be task data in the model's data version (``tasks.model_task``), whose tokenizer re-tokenizes the
    prompts; ValueError if its candidate ids are not that tokenizer's.
    """
    version = model_data_version(model)
    tok = task_tokenizer(version)
    rows = ds.with_format(None)[:] if hasattr(ds, "with_format") else ds
    if any(tok.single_token_id(t) != i for t, i in zip(rows["target"], rows["target_id"])):
        raise ValueError(f"prefixed_accuracy: the task data's token ids are not those of the model's data version "
                         f"{version}; load it with tasks.model_task(model, ...)")
    ids = [tok.encode(prefix + p) for p in rows["prompt"]]
    data = {"prompt_ids": ids, "target_id": list(rows["target_id"]), "distractor_id": list(rows["distractor_id"])}
    ok = task_accuracy(pair_logits(model.eval(), data)).float().numpy()
    is_a = np.array([t == token_id(get_task(task).candidates[0], version) for t in rows["target_id"]])
    return {"accuracy": float(ok.mean()), "accuracy_a": float(ok[is_a].mean()), "accuracy_b": float(ok[~is_a].mean()),
            "n": int(len(ok))}


def distractor_plot(rows: list[dict], labels: tuple[str, str] = ("A prompts", "B prompts"), title: str = ""):
    """Grouped bars of :func:`distractor_rows`: one panel per model, one group per prefix, A and B accuracy."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    prefixes = list(dict.fromkeys(r["prefix"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False, sharey=True)
    x = np.arange(len(prefixes))
    for ax, mid in zip(axes[0], models):
        by = {r["prefix"]: r for r in rows if r["model"] == mid}
        for k, (key, lab) in enumerate(zip(("accuracy_a", "accuracy_b"), labels)):
            ax.bar(x + (k - 0.5) * 0.38, [by[p][key] if p in by else np.nan for p in prefixes], 0.38, label=lab)
        ax.set_xticks(x, ["(none)" if not p else repr(p)[1:-1] for p in prefixes], rotation=20, fontsize=8,
                      family="monospace", ha="right")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=mid, ylim=(0, 1.05))
    axes[0, 0].set_ylabel("accuracy")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
