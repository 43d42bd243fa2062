"""Small, reusable measurements: entropy baselines, per-token losses and the model-zoo tables of chapters 01-02."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sparsecirc.core.hooks import record
from sparsecirc.core.model import GPT


def unigram_entropy(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the unigram distribution of ``tokens``: the loss of the best context-free predictor."""
    counts = torch.bincount(tokens.flatten().long(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def per_token_loss(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Cross-entropy of every predicted token of ``windows`` [n, pos+1] -> [n, pos] (fp32)."""
    model.eval()
    return torch.cat([model.loss(windows[i:i + batch_size], reduction="none")
                      for i in range(0, len(windows), batch_size)])


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two equally shaped tensors (flattened)."""
    a, b = a.flatten().double(), b.flatten().double()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"need two tensors of the same size >= 2, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@torch.no_grad()
def neuron_activity(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Fraction of tokens on which each MLP neuron is nonzero (|post-activation| > 1e-6): [n_layer, d_mlp].

    A neuron with activity 0 on a sample is "dead" there (P1 App. B: sparse models have many).
    """
    model.eval()
    active = torch.zeros(model.cfg.n_layer, model.cfg.d_mlp, dtype=torch.float64)
    n = 0
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size, :-1]
        with record(model, "blocks.*.mlp.hook_post") as c:
            model(w)
        for layer in range(model.cfg.n_layer):
            active[layer] += (c[f"blocks.{layer}.mlp.hook_post"].abs() > 1e-6).flatten(0, 1).sum(0).double()
        n += w.numel()
    return (active / n).float()


@torch.no_grad()
def residual_kurtosis(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean kurtosis of the residual stream (P1 Fig. 10): for every token and layer, the kurtosis of the residual
    vector across its d_model channels, E[(x - mu)^4] / sigma^4, averaged over tokens and layers."""
    model.eval()
    vals = []
    for i in range(0, len(windows), batch_size):
        with record(model, "blocks.*.hook_resid_post") as c:
            model(windows[i:i + batch_size, :-1])
        for x in c.values():
            x = x.double()
            d = x - x.mean(-1, keepdim=True)
            vals.append(((d ** 4).mean(-1) / (d ** 2).mean(-1).clamp_min(1e-12) ** 2).flatten())
    return float(torch.cat(vals).mean())


def nonzero_table(model: GPT) -> list[dict]:
    """Nonzero count and fraction of every weight matrix and embedding (what the projection controls)."""
    rows = []
    for name, p in model.named_parameters():
        if p.dim() == 2 and name != "bigram":
            nz = int((p != 0).sum())
            rows.append({"tensor": name, "shape": tuple(p.shape), "nonzero": nz, "fraction": nz / p.numel()})
    return rows


# --- tables (chapters 01-02) ---------------------------------------------------------------------------------
def corpus_table(stats: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per (split, part) of a nested corpus-statistics dict, plus characters per token.

    Args:
        stats: ``{split: {part: {"chars": ..., "tokens": ..., ...}}}`` as ``corpus.corpus_stats`` returns it.

    Returns:
        A DataFrame with columns ``split``, ``part``, every statistic, and ``chars/token`` (rounded to 2 places).
    """
    table = pd.DataFrame([{"split": s, "part": p, **v} for s, parts in stats.items() for p, v in parts.items()])
    table["chars/token"] = (table["chars"] / table["tokens"]).round(2)
    return table


def zoo_table(runs: dict, val_loss: dict[str, float]) -> pd.DataFrame:
    """Size, sparsity, length of training and validation loss of a zoo of loaded runs.

    Args:
        runs: ``{name: run}``, each run with ``.model`` (a :class:`GPT`), ``.config`` (its ``RunConfig``) and
            ``.history`` (a ``History``).
        val_loss: ``{name: validation loss}`` for the same names.

    Returns:
        A DataFrame indexed by ``model`` with columns ``layers``, ``d_model``, ``nonzero weights``, ``of total``
        (nonzero fraction of the 2-d weights, 3 places), ``steps``, ``tokens (M)`` (steps x batch x context, in
        millions) and ``val loss`` (3 places).
    """
    rows = []
    for name, run in runs.items():
        table = nonzero_table(run.model)
        nz = sum(r["nonzero"] for r in table)
        total = sum(r["shape"][0] * r["shape"][1] for r in table)
        steps = len(run.history.step)
        tokens = steps * run.config.train.batch_size * run.config.model.n_ctx
        rows.append({"model": name, "layers": run.model.cfg.n_layer, "d_model": run.model.cfg.d_model,
                     "nonzero weights": nz, "of total": round(nz / total, 3), "steps": steps,
                     "tokens (M)": round(tokens / 1e6, 1), "val loss": round(val_loss[name], 3)})
    return pd.DataFrame(rows).set_index("model")


def nonzero_by_kind(model: GPT) -> pd.DataFrame:
    """Min, max and count of the nonzero fractions of the embeddings and of the block matrices.

    Args:
        model: a (sparse or dense) model.

    Returns:
        A DataFrame indexed by ``kind`` (``block matrix``, ``embedding``) with columns ``min``, ``max`` and
        ``count``, fractions rounded to 4 places.
    """
    nz = pd.DataFrame(nonzero_table(model))
    nz["kind"] = np.where(nz["tensor"].str.contains("embed"), "embedding", "block matrix")
    return nz.groupby("kind")["fraction"].agg(["min", "max", "count"]).round(4)


def activity_table(models: dict[str, GPT], windows: torch.Tensor) -> pd.DataFrame:
    """Fraction of dead MLP neurons and mean residual kurtosis of each model on the same windows (unrounded).

    Args:
        models: ``{name: model}``.
        windows: token windows [n, pos+1] (a small probe set).

    Returns:
        A DataFrame indexed by name with columns ``dead neurons`` (fraction of (layer, neuron) never active on
        ``windows``, see :func:`neuron_activity`) and ``resid kurtosis`` (:func:`residual_kurtosis`).
    """
    rows = {name: {"dead neurons": float((neuron_activity(m, windows) == 0).float().mean()),
                   "resid kurtosis": residual_kurtosis(m, windows)} for name, m in models.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def curve_gap(a, b, tail: int = 100) -> dict:
    """How far two training runs' validation curves lie apart, beside the noise of training.

    Args:
        a, b: ``History`` objects with ``val_step`` / ``val_loss`` (and ``a.train_loss``); compared at the steps
            both evaluated.
        tail: the noise is the standard deviation of ``a``'s train loss over its last ``tail`` steps.

    Returns:
        ``{"final": b - a at the last common evaluation, "max_abs": the largest |b - a|, "n": common evaluations,
        "noise": the train-loss standard deviation}``.

    Raises:
        ValueError: when the runs share no evaluation step.
    """
    va, vb = dict(zip(a.val_step, a.val_loss)), dict(zip(b.val_step, b.val_loss))
    common = sorted(set(va) & set(vb))
    if not common:
        raise ValueError("curve_gap: the two runs share no validation step")
    d = np.array([vb[s] - va[s] for s in common])
    return {"final": float(d[-1]), "max_abs": float(np.abs(d).max()), "n": len(common),
            "noise": float(np.std(np.asarray(a.train_loss[-tail:], dtype=float)))}
