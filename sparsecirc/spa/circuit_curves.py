"""Explained-effect curves of P2 (digest §7): how many edges or heads a circuit needs, dense against sparse.

For a ranking of edges (EAP, EAP-IG or exact patching scores, :mod:`sparsecirc.spa.patching`), keep the top k,
patch every other edge with the corrupted prompt's activation, and measure

    explained effect(k) = (mean m_k - mean m_corrupt) / (mean m_clean - mean m_corrupt)

with m a logit difference and the means over prompts (a ratio of means: a per-prompt ratio is unstable where a
prompt's clean and corrupted metrics nearly coincide). The circuit size is the smallest k with explained effect
>= 0.9; P2 reports k_dense / k_sparse. Units: component-graph edges, heads (all edges leaving a dropped head
patched), and attention edges (layer, head, query, key; kept per prompt).

Prompt pairs (``PatchPair``):

* :func:`task_pairs`: a P1 task's contrastive pairs, each prompt once clean (its partner corrupt), pairs of unequal
  token length left out (patching aligns positions); the metric is logit(target) - logit(partner's target).
* :func:`addition_pairs`: ``ab+cd=`` with one operand digit changed (a units digit, scored at the units answer
  position, or a tens digit, scored at the tens position); the metric is the correct answer digit against the
  corrupted problem's digit at that position.
* :func:`induction_pairs`: a random token sequence repeated; the corrupt copy changes the token that the second copy
  should predict; the metric is that token against its replacement.
"""
from __future__ import annotations

import numpy as np
import torch

from sparsecirc.data.tasks import columns, model_task, pad_batch
from sparsecirc.spa import addition
from sparsecirc.spa.attention_edges import causal_pairs
from sparsecirc.spa.patching import ComponentGraph, PatchPair, patched_metric, run_pair, top_attention_edges, top_edges

LEVEL = 0.9  # P2's dashed line


def task_pairs(model, task: str, split: str = "test", limit: int | None = None) -> tuple[PatchPair, dict]:
    """(pairs, info) from a P1 task's split in the model's data version; info counts the pairs left out."""
    cols = columns(model_task(model, task, split))
    ids, tgt, dis = cols["prompt_ids"], cols["target_id"], cols["distractor_id"]
    clean, corrupt, cand, dropped = [], [], [], 0
    for i in range(0, len(ids) - 1, 2):
        a, b = list(ids[i]), list(ids[i + 1])
        if len(a) != len(b) or len(a) > model.cfg.n_ctx:
            dropped += 1
            continue
        clean += [a, b]
        corrupt += [b, a]
        cand += [(tgt[i], dis[i]), (tgt[i + 1], dis[i + 1])]
        if limit is not None and len(clean) >= limit:
            break
    if not clean:
        raise ValueError(f"{task}: no pair of equal-length prompts to patch")
    tc, last = pad_batch(clean)
    tk, _ = pad_batch(corrupt)
    pair = PatchPair(tc, tk, last, torch.tensor(cand, dtype=torch.long))
    return pair, {"task": task, "split": split, "prompts": len(clean), "pairs_unequal_length": dropped}


ADDITION_PARTS = ("fit", "eval")


def addition_pairs(n: int, seed: int = 0, part: str = "eval") -> tuple[PatchPair, dict]:
    """``n`` addition problems from the test split, each with one operand digit changed (see module docstring).

    ``part`` draws from one of two fixed, disjoint halves of the test split: ``"fit"`` for ranking edges,
    ``"eval"`` for measuring the curves of that ranking."""
    if part not in ADDITION_PARTS:
        raise ValueError(f"part must be one of {ADDITION_PARTS}, not {part!r}")
    g = torch.Generator().manual_seed(seed)
    test = addition.split()[1]
    test = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(12345))]
    test = test[: len(test) // 2] if part == "fit" else test[len(test) // 2:]
    pick = test[torch.randint(len(test), (n,), generator=g)]
    a, b = pick // 100, pick % 100
    tens = torch.rand(n, generator=g) < 0.5  # change b's tens digit (scored at the tens) or its units digit
    step = torch.randint(1, 10, (n,), generator=g)
    b2 = torch.where(tens, (b // 10 + step) % 10 * 10 + b % 10, b // 10 * 10 + (b % 10 + step) % 10)
    full_c, full_k = addition.pairs_to_tokens(a * 100 + b), addition.pairs_to_tokens(a * 100 + b2)
    ans = torch.where(tens, 9, 10)  # token index of the scored answer digit (tens: 9, units: 10)
    last = ans - 1
    rows = torch.arange(n)
    cand = torch.stack([full_c[rows, ans], full_k[rows, ans]], 1)
    same = cand[:, 0] == cand[:, 1]  # a tens change can leave the tens digit equal only through a carry: never
    if bool(same.any()):
        raise AssertionError("addition_pairs: a changed operand digit left the scored answer digit unchanged")
    return PatchPair(full_c[:, :10], full_k[:, :10], last, cand), {
        "prompts": n, "part": part, "tens_changed": int(tens.sum()), "units_changed": int((~tens).sum())}


def induction_pairs(n: int, length: int, vocab: tuple[int, int], seed: int = 0) -> tuple[PatchPair, dict]:
    """``n`` sequences r_0..r_{L-1} r_0..r_{m-1} (m drawn in [L/2, L)), scored at the last position on r_m against
    x; the corrupt sequence has x in place of r_m in the first copy. Tokens are drawn without repetition within
    a sequence from ids ``vocab[0] <= id < vocab[1]``."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = vocab
    if hi - lo < length + 1:
        raise ValueError(f"vocabulary range {vocab} is too small for sequences of {length} distinct tokens")
    m = int(length * 0.75)
    seqs = torch.stack([torch.randperm(hi - lo, generator=g)[:length + 1] + lo for _ in range(n)])
    r, x = seqs[:, :length], seqs[:, length]
    clean = torch.cat([r, r[:, :m]], 1)
    corrupt = clean.clone()
    corrupt[:, m] = x
    last = torch.full((n,), length + m - 1)
    cand = torch.stack([r[:, m], x], 1)
    return PatchPair(clean, corrupt, last, cand), {"prompts": n, "length": length, "copied": m}


def relative_attention_scores(attn: list[torch.Tensor], last: torch.Tensor) -> torch.Tensor:
    """Attention-edge scores of fitting prompts pooled by position relative to each prompt's scored position:
    ``[n_layer, n_head, R, R]``, entry (l, h, a, b) = the mean over prompts of the score of the edge from key
    ``last - b`` to query ``last - a`` (R = the longest prompt). An attention edge is a pair of positions in one
    prompt; this is how a ranking fitted on some prompts carries over to prompts of other lengths."""
    L, (n, H, T, _) = len(attn), attn[0].shape
    total = torch.zeros(L, H, T, T)
    count = torch.zeros(T, T)
    for p in range(n):
        t = int(last[p]) + 1
        rev = torch.arange(t - 1, -1, -1)  # position last - a for a = 0 .. t-1
        total[:, :, :t, :t] += torch.stack([a[p][:, rev][:, :, rev] for a in attn])
        count[:t, :t] += 1
    return total / count.clamp(min=1)


def attention_scores_at(rel: torch.Tensor, last: torch.Tensor, T: int) -> list[torch.Tensor]:
    """Per-layer ``[n, n_head, T, T]`` scores for prompts with scored positions ``last``, read from pooled
    relative scores (:func:`relative_attention_scores`); an offset the fitting prompts never had scores 0."""
    L, H, R, _ = rel.shape
    out = torch.zeros(L, len(last), H, T, T)
    for p, lp in enumerate(last.tolist()):
        t = min(lp + 1, R)
        pos = torch.arange(lp, lp - t, -1)  # positions last - a for a = 0 .. t-1
        out[:, p][:, :, pos[:, None], pos[None, :]] = rel[:, :, :t, :t]
    return list(out.unbind(0))


def grid(n_max: int, points: int = 28) -> list[int]:
    """Keep counts 0, 1, 2, ... up to ``n_max``, log-spaced (the x-axis of P2's curves)."""
    ks = np.unique(np.round(np.logspace(0, np.log10(max(n_max, 1)), points)).astype(int))
    return [0] + [int(k) for k in ks if k <= n_max]


def explained_effect(m: torch.Tensor, clean: float, corrupt: float) -> float:
    """(mean m - corrupt) / (clean - corrupt): the share of the clean-vs-corrupted metric gap that ``m`` keeps."""
    return float((m.mean() - corrupt) / (clean - corrupt))


UNITS = ("edges", "heads", "attention_edges")


@torch.no_grad()
def curves(model, pair: PatchPair, graph: ComponentGraph, scores: torch.Tensor, attn_scores: list[torch.Tensor],
           gate: str = "recompute", points: int = 28, units: tuple[str, ...] = UNITS) -> dict:
    """Explained effect against edges, heads and attention edges kept (those of ``units``), for one ranking.

    Heads are ranked by the sum of their outgoing edge scores (the head's own EAP score). Attention edges count
    per prompt (the mean number of causal (query, key) pairs a prompt has is returned as ``attn_possible``); their
    scores must have the shape of ``pair``'s prompts (rank on other prompts with :func:`attention_scores_at`)."""
    unknown = set(units) - set(UNITS)
    if unknown:
        raise ValueError(f"unknown units {sorted(unknown)}; choose from {UNITS}")
    if "attention_edges" in units and (attn_scores[0].shape[0] != len(pair)
                                       or attn_scores[0].shape[-1] != pair.clean.shape[1]):
        raise ValueError(f"attention scores of shape {tuple(attn_scores[0].shape)} do not fit {len(pair)} "
                         f"prompts of length {pair.clean.shape[1]}")
    runs = run_pair(model, pair, graph)
    clean, corrupt = float(runs[0].metric.mean()), float(runs[1].metric.mean())
    out = {"m_clean": clean, "m_corrupt": corrupt, "T": pair.clean.shape[1]}
    if "edges" in units:
        ks = grid(graph.n_edges, points)
        out["edges"] = {"k": ks, "effect": [explained_effect(patched_metric(
            model, pair, graph, keep=top_edges(scores, k), gate=gate, runs=runs), clean, corrupt) for k in ks]}
    if "heads" in units:
        head_score = torch.zeros(graph.n_layer, graph.n_head)
        for u, lh in enumerate(graph.head_of_up):
            if lh is not None:
                head_score[lh] = scores[u].nan_to_num(0.0).sum()
        order = [divmod(int(i), graph.n_head) for i in head_score.abs().flatten().argsort(descending=True)]
        hk = list(range(graph.n_layer * graph.n_head + 1))
        out["heads"] = {"k": hk, "effect": [explained_effect(patched_metric(
            model, pair, graph, keep=graph.head_edges(set(order[:k])), gate=gate, runs=runs), clean, corrupt)
            for k in hk], "order": [f"L{a}H{b}" for a, b in order]}
    if "attention_edges" in units:
        possible = sum(causal_pairs(int(t) + 1) for t in pair.last) / len(pair) * graph.n_layer * graph.n_head
        ak = grid(int(round(possible)), points)
        out["attention_edges"] = {"k": ak, "effect": [explained_effect(patched_metric(
            model, pair, graph, keep_attn=top_attention_edges(attn_scores, k), gate=gate, runs=runs), clean, corrupt)
            for k in ak]}
        out["attn_possible"] = possible
    return out


def smallest_k(curve: dict, level: float = LEVEL) -> int | None:
    """The smallest kept count whose explained effect reaches ``level`` and stays at or above it for every larger
    count on the grid (a curve that crosses and falls back counts from its last crossing); None if never."""
    k, e = curve["k"], curve["effect"]
    for i in range(len(k)):
        if all(x >= level for x in e[i:]):
            return int(k[i])
    return None
