"""Counting attention edges, a training-free top-k baseline, and the per-prompt edge graph (P2 digest §4, §8).

An edge is a (query i, key j <= i) pair of one head in one layer, self-edges included (digest §4). A gated model
(``attn_gate=True``) opens an edge when its deterministic eval gate is 1, 1[s_ij + b > 0]; a dense model's softmax
weights are never exactly zero, so every causal pair counts as open. Density depends on the context length T
(digest §4), so edges per query per head and absolute edges per example are reported next to the fraction.

Example::

    stats = edge_stats(model, tokens)           # tokens [batch, pos]
    stats["density"], stats["edges_per_example"]
    with topk_attention(dense_model, k=2):      # keep the 2 largest softmax weights per query and head
        logits = dense_model(tokens)
    graph = attention_graph(model, tokens[0])   # [n_layer, q_pos, k_pos], union over heads
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from sparsecirc.core.hooks import patch, record


@torch.no_grad()
def eval_record(model, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """One forward of ``tokens`` in eval mode (deterministic gates) recording the hook points ``names``; the
    model's train/eval mode is restored afterwards."""
    was = model.training
    model.eval()
    try:
        with record(model, names) as cache:
            model(tokens)
    finally:
        model.train(was)
    return cache


def causal_pairs(T: int) -> int:
    """Number of causal (query, key) pairs with the diagonal: T(T+1)/2."""
    return T * (T + 1) // 2


@torch.no_grad()
def edge_masks(model, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Open edges of every layer, eval mode: [n_layer, batch, n_head, q_pos, k_pos] bool.

    Gated model: the deterministic gate 1[s + b > 0] (``hook_sparse_mask``). Dense model: every causal pair.
    """
    c = model.cfg
    B, T = tokens.shape
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    if not c.attn_gate:
        return causal.expand(c.n_layer, B, c.n_head, T, T)
    names = [f"blocks.{layer}.attn.hook_sparse_mask" for layer in range(c.n_layer)]
    out = []
    for i in range(0, B, batch_size):
        cache = eval_record(model, tokens[i:i + batch_size], names)
        out.append(torch.stack([cache[n] > 0 for n in names]))  # [n_layer, b, n_head, T, T]
    return torch.cat(out, dim=1)


def edge_stats(model, tokens: torch.Tensor, chunk_elements: int = 2 ** 28) -> dict:
    """Deterministic edge counts of ``model`` on ``tokens`` [batch, pos].

    The edges are counted a few windows at a time by :func:`open_edge_counts` (at most ``chunk_elements`` scores
    held at once: the full [n_layer, batch, n_head, T, T] tensor of 280 windows at T = 1024 would take tens of GB).

    Returns a dict of plain floats: ``density`` (open fraction of all causal pairs, all layers and heads),
    ``density_per_layer`` [n_layer], ``edges_per_query_per_head`` [n_layer], ``edges_per_example`` (open edges
    summed over layers, heads and pairs, mean over examples), ``edges_per_example_per_layer`` [n_layer] and
    ``possible_edges_per_example`` (n_layer * n_head * T(T+1)/2).
    """
    c = model.cfg
    B, T = tokens.shape
    if B == 0:
        raise ValueError("edge_stats: no windows")
    L, H = c.n_layer, c.n_head
    step = max(1, chunk_elements // (L * H * T * T))
    open_edges = torch.zeros(L, dtype=torch.float64)  # summed over windows, heads, queries and keys
    for i in range(0, B, step):
        open_edges += open_edge_counts(model, tokens[i:i + step])
    edges_layer = open_edges / B  # [n_layer] mean over examples
    per_layer = edges_layer / (H * causal_pairs(T))
    return {"density": float(per_layer.mean()), "density_per_layer": per_layer.tolist(),
            "edges_per_query_per_head": (edges_layer / (H * T)).tolist(),
            "edges_per_example": float(edges_layer.sum()), "edges_per_example_per_layer": edges_layer.tolist(),
            "possible_edges_per_example": L * H * causal_pairs(T)}


@torch.no_grad()
def open_edge_counts(model, tokens: torch.Tensor) -> torch.Tensor:
    """Open edges of each layer summed over windows, heads and causal pairs: [n_layer] float64, eval mode.

    The same count as ``edge_masks(model, tokens).sum((1, 2, 3, 4))`` without the forward that builds every mask:
    the gate 1[g > 0] comes from :func:`gate_logit_layers` (one forward recording queries and keys, so a model with
    ``attn_gate_block`` keeps its block path; the explicit form's arithmetic, s = q.k / sqrt(d_head), where the block
    path multiplies by 1/sqrt(d_head): the same number when d_head is a power of 4, else at most one rounding apart).
    At T = 1024 this is ~4x faster than counting recorded masks (chapter 08's 280 validation windows).
    """
    c = model.cfg
    B, T = tokens.shape
    if not c.attn_gate:
        return torch.full((c.n_layer,), float(B * c.n_head * causal_pairs(T)), dtype=torch.float64)
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    return torch.tensor([torch.count_nonzero((g > 0) & causal).item() for g in gate_logit_layers(model, tokens)],
                        dtype=torch.float64)


def gate_logit_layers(model, tokens: torch.Tensor) -> Iterator[torch.Tensor]:
    """Gate logits g = q.k / sqrt(d_head) + b one layer at a time, [batch, n_head, q_pos, k_pos] each, from one
    eval-mode forward recording every layer's queries and keys (only one layer's T x T logits are held at a time)."""
    c = model.cfg
    cache = eval_record(model, tokens, [f"blocks.{layer}.attn.hook_{x}" for layer in range(c.n_layer) for x in "qk"])
    for layer in range(c.n_layer):  # recorded without grad, so the logits carry none either
        q, k = (cache.pop(f"blocks.{layer}.attn.hook_{x}").transpose(1, 2) for x in "qk")  # [B, H, T, d_head]
        yield (q @ k.transpose(-1, -2)).div_(math.sqrt(c.d_head)).add_(c.attn_gate_bias)


@torch.no_grad()
def gate_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Gate logits g = q.k / sqrt(d_head) + b of every layer, eval mode: [n_layer, batch, n_head, q_pos, k_pos].

    Entries above the diagonal are not edges (mask them with ``causal``). Useful to see how far from the threshold
    g = 0 an edge is: the straight-through and sparsity gradients scale with sigmoid'(g), tiny once |g| > ~8.
    """
    return torch.stack(list(gate_logit_layers(model, tokens)))


def saturation(model, tokens: torch.Tensor, threshold: float = 8.0, weak: float = 0.05) -> list[dict]:
    """Per layer, how locked-in the open edges are: the open fraction of causal pairs (eval gate), the share of open
    edges whose gate logit exceeds ``threshold`` (sigmoid'(8) = 3.4e-4: the gradients that would close them are
    then tiny), and the share of open edges that carry less than ``weak`` of their query's softmax weight."""
    g = gate_logits(model, tokens)  # [layer, batch, head, q, k]
    T = tokens.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    cache = eval_record(model, tokens, [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layer)])
    out = []
    for layer in range(model.cfg.n_layer):
        is_open = (g[layer] > 0) & causal
        n = int(is_open.sum())
        w = cache[f"blocks.{layer}.attn.hook_pattern"][is_open]
        out.append({"layer": layer, "open_fraction": n / float(causal.sum() * g.shape[1] * g.shape[2]),
                    "open_saturated": float((g[layer][is_open] > threshold).float().mean()) if n else 0.0,
                    "open_weak": float((w < weak).float().mean()) if n else 0.0})
    return out


def edge_stats_table(stats: dict, unit: str = "example") -> pd.DataFrame:
    """:func:`edge_stats` per layer, plus an "all" row: open fraction (%), keys per query per head, edges per unit.

    Args:
        stats: the dict of :func:`edge_stats`.
        unit: what one row of the tokens is ("example", "window"): names the last column.

    Returns:
        DataFrame indexed L0 .. L{n-1}, all; the "all" row has the overall density, the mean keys per query over
        layers and the total edges.
    """
    n_layer = len(stats["density_per_layer"])
    table = pd.DataFrame({"open fraction (%)": [100 * d for d in stats["density_per_layer"]],
                          "keys per query per head": stats["edges_per_query_per_head"],
                          f"edges per {unit}": stats["edges_per_example_per_layer"]},
                         index=[f"L{layer}" for layer in range(n_layer)])
    table.loc["all"] = [100 * stats["density"], sum(stats["edges_per_query_per_head"]) / n_layer,
                        stats["edges_per_example"]]
    return table


def saturation_table(models: dict, tokens: torch.Tensor) -> pd.DataFrame:
    """:func:`saturation` of several gated models on the same tokens, in percent.

    Args:
        models: ``{run label: gated model}`` (rows in this order).
        tokens: [batch, pos].

    Returns:
        DataFrame indexed by (run, layer) with columns "open (%)", "open with g > 8 (%)", "open, weight < 5 % (%)".
    """
    rows = []
    for name, model in models.items():
        for r in saturation(model, tokens):
            rows.append({"run": name, "layer": f"L{r['layer']}", "open (%)": 100 * r["open_fraction"],
                         "open with g > 8 (%)": 100 * r["open_saturated"],
                         "open, weight < 5 % (%)": 100 * r["open_weak"]})
    return pd.DataFrame(rows).set_index(["run", "layer"])


# --- a training-free baseline: keep only the largest softmax weights ------------------------------------------
def _keep_topk_per_query(pattern: torch.Tensor, k: int, renormalize: bool) -> torch.Tensor:
    """Zero all but the ``k`` largest weights of each row of ``pattern`` [batch, n_head, q_pos, k_pos]."""
    k = min(k, pattern.shape[-1])
    keep = torch.zeros_like(pattern).scatter_(-1, pattern.topk(k, dim=-1).indices, 1.0)
    return _finish(pattern * keep, renormalize)


def _keep_topn_per_layer(pattern: torch.Tensor, n: int, renormalize: bool) -> torch.Tensor:
    """Keep the ``n`` largest weights over all heads and query/key pairs of each example (a per-layer budget)."""
    flat = pattern.flatten(1)  # [batch, n_head*q_pos*k_pos]
    n = min(n, flat.shape[1])
    keep = torch.zeros_like(flat).scatter_(-1, flat.topk(n, dim=-1).indices, 1.0)
    return _finish(pattern * keep.view_as(pattern), renormalize)


def _finish(kept: torch.Tensor, renormalize: bool) -> torch.Tensor:
    # default: no renormalisation, like P2's gate (dense denominator); optional: kept weights sum to 1
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-30) if renormalize else kept


@contextmanager
def topk_attention(model, k: int | None = None, *, per_layer_budget: list[int] | None = None,
                   renormalize: bool = False) -> Iterator[None]:
    """Inside the block, every attention pattern keeps only its largest weights (no post-training).

    Args:
        k: keep the top-``k`` keys per query and head (``k >= T`` leaves the model unchanged).
        per_layer_budget: instead of ``k``, keep the ``n_l`` largest weights of layer ``l`` over all heads and
            query/key pairs of each example (a budget matched to a sparse model's edges per layer).
        renormalize: rescale kept weights of each row to sum to 1 (default: no, as in P2's gate).
    Patches ``blocks.{l}.attn.hook_pattern``; hooking that point turns off the fused SDPA path automatically.

    Example::

        with topk_attention(model, k=1):
            acc = addition.evaluate_addition(model, test)["accuracy"]
    """
    if (k is None) == (per_layer_budget is None):
        raise ValueError("topk_attention: give exactly one of k or per_layer_budget")
    L = model.cfg.n_layer
    if k is not None:
        if k < 1:
            raise ValueError(f"topk_attention: k must be >= 1, got {k}")
        fns = {f"blocks.{layer}.attn.hook_pattern": lambda p: _keep_topk_per_query(p, k, renormalize)
               for layer in range(L)}
    else:
        if len(per_layer_budget) != L:
            raise ValueError(f"per_layer_budget needs {L} entries, got {len(per_layer_budget)}")
        fns = {f"blocks.{layer}.attn.hook_pattern": (lambda p, n=int(n): _keep_topn_per_layer(p, n, renormalize))
               for layer, n in enumerate(per_layer_budget)}
    with patch(model, fns):
        yield


def topk_edges_per_example(n_layer: int, n_head: int, T: int, k: int) -> int:
    """Edges kept by per-query top-k: each query i keeps min(k, i+1) keys, in every head and layer."""
    return n_layer * n_head * sum(min(k, i + 1) for i in range(T))


# --- the per-prompt graph (P2 Fig. 1) -------------------------------------------------------------------------
@torch.no_grad()
def attention_graph(model, tokens: torch.Tensor) -> np.ndarray:
    """Union over heads of the attention edges for one prompt, eval mode: [n_layer, q_pos, k_pos] in [0, 1].

    Gated model: 1 where any head's deterministic gate is open. Dense model: the largest softmax weight over
    heads (the shade of P2 Fig. 1's dense panel). ``tokens`` is [pos] or [1, pos].
    """
    L = model.cfg.n_layer
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(L)]
    if model.cfg.attn_gate:
        names = [f"blocks.{layer}.attn.hook_sparse_mask" for layer in range(L)]
    cache = eval_record(model, tokens.view(1, -1), names)
    return torch.stack([cache[n][0].amax(0) for n in names]).float().numpy()  # [n_layer, T, T]


def graph_edges(graph: np.ndarray, threshold: float = 0.5) -> list[list[tuple[int, int]]]:
    """Edges (query, key) with weight > ``threshold`` per layer, sorted by query then key."""
    return [[(int(q), int(k)) for q, k in zip(*np.nonzero(g > threshold))] for g in graph]
