"""Probing the bracket-depth mechanism: list prompts of controlled length, the dilution and distractor attacks.

P1 §3.2.2 (Fig. 5, 8; digest §7): the bracket circuit *averages* an open-bracket signal over the context, so the
depth it reads falls as the context grows (the depth channel goes from about 0.27 to 0.10, "∝ 1/n_ctx"). Two
attacks follow: lengthening a nested list makes even the unpruned model close it with ``]`` (**context
dilution**, Fig. 8), and an unmatched ``[`` in an earlier comment makes it close a flat list with ``]]``
(**distractor**, "# Don't get distracted: [").

Prompts follow the ``bracket_counting`` task of the model's data version (``model.cfg.data_version``, read by
``tasks.model_data_version``; a function without a model takes ``version``, default ``"v1"``):

- v1 (``task_generators.pair_bracket_counting``): a few lines of context, then ``name = [[a, b, c`` (nested;
  correct next token ``]]``) or ``name = [a, b, c`` (flat; ``]``), with the same numbers. The list opens with the
  single token `` [[`` (nested) or `` [`` (flat).
- v2 (``task_generators_v2.pair_bracket_counting``): the task's context (``task_fragments_v2.CodeDraw``), maybe
  a ``def`` around the list, one of the task's openers (``name = ``, ``name =``, ``name=``, ``self.attr = ``,
  ``return ``, ``name: list = ``, ``name = verb_thing or ``, ``name["key"] = ``, ``things += ``) and elements of
  one of its kinds (ints, numbers, names, constants, mixed, strings); a cut never ends on a string (``"]]``
  would be one token; the task's own rule). The nested list opens with two single ``[`` tokens (`` [`` or ``[``,
  then ``[``). Only the task's single-line form is drawn (it holds 85% of the task's prompts): the sweep cuts
  one list to every length, which the elements-on-the-next-lines form does not allow.

Every prompt passes the task's encode check with its version's tokenizer (``tasks.make_example``: both candidates
are single tokens and ``encode(prompt) + [candidate] == encode(prompt + candidate)``); none is left-truncated.

Example::

    sweep = dilution_sweep(model, lengths=[1, 4, 16, 32], n_prompts=32, seed=0)
    sweep["nested"]["p_correct"]                     # mean p(]]) over nested prompts, one per length
    exponent, prefactor = fit_power_law(sweep["n_tokens"], sweep["nested"]["node"])
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from sparsecirc.core.hooks import record
from sparsecirc.data import task_generators as gen
from sparsecirc.data.task_fragments_v2 import CodeDraw
from sparsecirc.data.task_generators_v2 import bracket_list_draws
from sparsecirc.data.tasks import (
    Example,
    make_example,
    model_data_version,
    pad_batch,
    single_token_names,
    task_tokenizer,
)
from sparsecirc.data.versions import DEFAULT_VERSION, get_version

NESTED, FLAT = "]]", "]"
DISTRACTOR_COMMENT = "# Don't get distracted: ["  # P1 §3.2.2, verbatim
CONTROL_COMMENT = "# Don't get distracted:"  # the same line without the unmatched bracket
_NAMES = ["values", "grid", "matrix", "data", "rows", "table", "board", "nested", "pairs"]  # as the task generator
DISTRACTOR_LENGTHS = {"v1": (2, 16), "v2": (2, 14)}  # each version's bracket_counting list lengths (elements)
OPENING_TOKENS = {"v1": (" [[", " ["), "v2": ("[", " [")}  # the tokens a list's last opening bracket can be


@dataclass(frozen=True)
class ListBase:
    """The parts of one list prompt in data version ``version`` (its ``bracket_counting`` form, see the module
    docstring): context lines, the list's name and its elements (as text).

    v2 only: ``head`` is the list line before its brackets (indentation and opener, e.g. ``"    grid = "``), and
    ``ends[i]`` the element a list cut after element i ends on (``elements[i]`` unless that is a string)."""
    context: tuple[str, ...]
    name: str
    elements: tuple[str, ...]
    version: str = DEFAULT_VERSION
    head: str = ""
    ends: tuple[str, ...] = ()

    def text(self, n: int, nested: bool, comment: str | None = None) -> str:
        """``context + [comment] + name = [[e1, ..., en`` (or ``[e1, ...`` when not ``nested``); v2: ``context +
        [comment] + head[[e1, ..., en`` with ``en`` taken from ``ends``, the comment at the list's indentation."""
        opening = "[[" if nested else "["
        if self.version == DEFAULT_VERSION:
            lines = list(self.context) + ([comment] if comment is not None else [])
            return gen.join_lines(lines, f"{self.name} = {opening}{', '.join(self.elements[:n])}")
        indent = self.head[:len(self.head) - len(self.head.lstrip(" "))]
        lines = list(self.context) + ([indent + comment] if comment is not None else [])
        elements = self.elements[:n - 1] + self.ends[n - 1:n]
        return gen.join_lines(lines, f"{self.head}{opening}{', '.join(elements)}")


def draw_base(d: gen.Draw, n_elements: int, version: str = DEFAULT_VERSION) -> ListBase:
    """One base as data version ``version``'s ``pair_bracket_counting`` draws it, with ``n_elements`` elements.

    v1: name, numbers, 2-3 context lines. v2: the task's element kind, name, opener, 1-3 context lines and, for a
    ``return`` or one time in five, a ``def`` around the list (see the module docstring)."""
    if get_version(version).name != DEFAULT_VERSION:
        return _draw_base_v2(CodeDraw(d), n_elements, version)
    name = d.pick(_NAMES + [d.pair()[1]])
    elements = tuple(d.num() for _ in range(n_elements))
    return ListBase(tuple(d.context(2, 3)), name, elements)


def _draw_base_v2(c: CodeDraw, n_elements: int, version: str) -> ListBase:
    """``task_generators_v2.pair_bracket_counting``'s draws in its order (``bracket_list_draws``), with
    ``n_elements`` elements, one replacement per element for a cut that would end on a string, and no multi-line
    form."""
    b = bracket_list_draws(c, n_elements, safe_ends="all")
    return ListBase(tuple(b["ctx"]), b["name"], tuple(b["elements"]), version, b["ind"] + b["opener"],
                    tuple(b["ends"]))


def list_example(base: ListBase, n: int, nested: bool, *, comment: str | None = None,
                 max_tokens: int = 128) -> Example | None:
    """The checked task Example of ``base`` cut to ``n`` elements, tokenised in the base's data version (None if it
    fails the encode check or is longer than ``max_tokens``). Target ``]]`` for nested lists, ``]`` for flat ones;
    the other is the distractor."""
    target, other = (NESTED, FLAT) if nested else (FLAT, NESTED)
    return make_example(task_tokenizer(base.version), base.text(n, nested, comment), target, other, max_tokens)


def _base_stream(seed: int, n_ctx: int, version: str = DEFAULT_VERSION):
    """Endless seeded stream of bases with ``n_ctx // 2`` elements each (more than ever fit), so the stream does
    not depend on the lengths asked for and :func:`max_list_length` sees the same bases as :func:`draw_bases`."""
    d = gen.Draw(random.Random(f"sparsecirc.attacks/{seed}"), single_token_names(task_tokenizer(version)))
    while True:
        yield draw_base(d, n_ctx // 2, version)


def _fits(base: ListBase, n: int, n_ctx: int, comments) -> bool:
    return all(len(task_tokenizer(base.version).encode(base.text(n, True, c))) <= n_ctx for c in comments)


def draw_bases(n_prompts: int, lengths, seed: int, *, n_ctx: int = 128,
               comments: tuple[str | None, ...] = (None,), version: str = DEFAULT_VERSION) -> list[ListBase]:
    """The first ``n_prompts`` bases of the seeded stream of data version ``version`` (default v1; pass the
    model's, ``tasks.model_data_version(model)``) whose nested and flat prompts pass the task's encode check at
    every length in ``lengths`` (and with every comment in ``comments``) within ``n_ctx`` tokens.
    Raises ValueError when too few do (lists too long for the context)."""
    lengths = sorted(set(int(n) for n in lengths))
    out = []
    for i, base in enumerate(_base_stream(seed, n_ctx, version)):
        if len(out) == n_prompts:
            return out
        if i >= _window(n_prompts):
            break
        if not _fits(base, lengths[-1], n_ctx, comments):  # cheap test first: token count grows with n
            continue
        if all(list_example(base, n, nested, comment=c, max_tokens=n_ctx) is not None
               for n in lengths for nested in (True, False) for c in comments):
            out.append(base)
    raise ValueError(f"fewer than {n_prompts} list prompts of {lengths[-1]} elements fit {n_ctx} tokens; "
                     "use shorter lists")


def _fit_length(base: ListBase, n_ctx: int) -> int:
    """Largest n whose nested prompt fits ``n_ctx`` tokens (0 if none); token count grows with n."""
    lo, hi = 0, len(base.elements)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _fits(base, mid, n_ctx, (None,)) else (lo, mid - 1)
    return lo


def max_list_length(n_ctx: int, seed: int = 0, n_prompts: int = 64, version: str = DEFAULT_VERSION) -> int:
    """The longest list (in elements) for which ``n_prompts`` bases of the window :func:`draw_bases` searches
    (in data version ``version``, default v1) fit ``n_ctx`` tokens. Bases with long context lines drop out; the
    same bases then serve every length."""
    window = [b for b, _ in zip(_base_stream(seed, n_ctx, version), range(_window(n_prompts)))]
    fits = sorted((_fit_length(b, n_ctx) for b in window), reverse=True)
    return max(1, fits[n_prompts - 1])


def _window(n_prompts: int) -> int:
    return 4 * n_prompts + 50


def sweep_lengths(n_max: int) -> list[int]:
    """1, 2, 3, 4, then every 2nd length up to 16 and every 4th beyond, ending at ``n_max``."""
    out = [n for n in range(1, n_max + 1) if n <= 4 or (n <= 16 and n % 2 == 0) or n % 4 == 0]
    return out if out[-1] == n_max else out + [n_max]


# --- measuring ---------------------------------------------------------------------------------------------------
def node_value(acts: torch.Tensor, last: torch.Tensor, index: int) -> torch.Tensor:
    """Activation ``index`` at each row's last position: acts [b, pos, d] or [b, pos, n_head, d_head] -> [b]."""
    flat = acts.flatten(2) if acts.dim() == 4 else acts  # [b, pos, n_head*d_head]
    return flat[torch.arange(len(last)), last, index]


def opening_position(prompt_ids, version: str = DEFAULT_VERSION) -> int:
    """Position of the list's opening token in data version ``version`` (default v1): the last opening-bracket
    token in the prompt, since the list is the prompt's last line and its elements hold no brackets.

    v1: the single token `` [[`` (nested) or `` [`` (flat). v2, where every ``[`` is a token of its own: the
    *second* ``[`` of ``[[`` (nested; the one right before the first element), or the list's only ``[`` /
    `` [`` (flat)."""
    tok = task_tokenizer(version)
    ids = {tok.single_token_id(t) for t in OPENING_TOKENS[get_version(version).name]}
    for pos in range(len(prompt_ids) - 1, -1, -1):
        if prompt_ids[pos] in ids:
            return pos
    raise ValueError("no opening bracket token in the prompt")


def _as_nodes(node, nodes) -> list[tuple[str, int]]:
    return ([tuple(node)] if node else []) + [tuple(n) for n in (nodes or [])]


@torch.no_grad()
def measure(model: torch.nn.Module, examples: list[Example], node: tuple[str, int] | None = None, *,
            nodes=None, head: tuple[int, int] | None = None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per prompt: p(target) under the two-candidate softmax (P1's task loss), p(``]]``), and last-position reads.

    ``examples`` must be tokenised in the model's data version (``tasks.model_data_version``; the candidates
    are checked against its ``]]`` and ``]`` ids, ValueError otherwise).

    Args:
        node / nodes: (hook name, flat index) pairs read at the last position (q/k/v/z flattened over heads).
        head: (layer, head) whose attention from the last position to the list's opening token, and to the sink,
            is read too.
    Returns:
        {"p_correct" [n], "p_nested" [n], "nodes" [n, k], "node" [n] (the first node; NaN without one),
        "attn_opening" [n], "attn_sink" [n] (NaN without ``head``), "n_tokens" [n]}.
    """
    version = model_data_version(model)
    tok = task_tokenizer(version)
    nested_id, flat_id = tok.single_token_id(NESTED), tok.single_token_id(FLAT)
    if any({e.target_id, e.distractor_id} != {nested_id, flat_id} for e in examples):
        raise ValueError(f"measure: the examples' candidates are not ]] / ] in the model's data version {version}; "
                         f"draw the prompts with version={version!r}")
    wanted = _as_nodes(node, nodes)
    hooks = sorted({h for h, _ in wanted} | ({f"blocks.{head[0]}.attn.hook_pattern"} if head else set()))
    out = {k: [] for k in ("p_correct", "p_nested", "nodes", "attn_opening", "attn_sink")}
    was = model.training
    model.eval()
    try:
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            tokens, last = pad_batch([e.prompt_ids for e in chunk])
            cand = torch.tensor([[e.target_id, e.distractor_id] for e in chunk])  # [b, 2]
            with record(model, hooks) as cache:
                final = model(tokens, positions=last)  # [b, vocab]
            p = torch.softmax(final.gather(1, cand).float(), -1)[:, 0]  # [b]
            out["p_correct"].append(p)
            out["p_nested"].append(torch.where(cand[:, 0] == nested_id, p, 1 - p))
            out["nodes"].append(torch.stack([node_value(cache[h], last, j) for h, j in wanted], -1) if wanted
                                else torch.zeros(len(chunk), 0))  # [b, k]
            if head:
                rows = cache[f"blocks.{head[0]}.attn.hook_pattern"][torch.arange(len(chunk)), head[1], last]  # [b, T]
                opening = torch.tensor([opening_position(e.prompt_ids, version) for e in chunk])
                out["attn_opening"].append(rows[torch.arange(len(chunk)), opening])
                out["attn_sink"].append(1 - rows.sum(-1))  # the sink slot takes the rest (0 without a sink)
            else:
                out["attn_opening"].append(torch.full_like(p, math.nan))
                out["attn_sink"].append(torch.full_like(p, math.nan))
    finally:
        model.train(was)
    res = {k: torch.cat(v).float().numpy() for k, v in out.items()}
    res["node"] = res["nodes"][:, 0] if wanted else np.full(len(examples), math.nan)
    res["n_tokens"] = np.array([len(e.prompt_ids) for e in examples])
    return res


def _sweep_bases(n_ctx: int, lengths, n_prompts: int, seed: int, version: str):
    if lengths is not None:
        lengths = [int(n) for n in lengths]
        return lengths, draw_bases(n_prompts, lengths, seed, n_ctx=n_ctx, version=version)
    n_max = max_list_length(n_ctx, seed, n_prompts, version)
    while True:  # a base can fail the encode check at some length and be replaced by a longer one
        try:
            return sweep_lengths(n_max), draw_bases(n_prompts, sweep_lengths(n_max), seed, n_ctx=n_ctx,
                                                    version=version)
        except ValueError:
            if n_max == 1:
                raise
            n_max -= 1


def dilution_sweep(model: torch.nn.Module, lengths=None, n_prompts: int = 64, seed: int = 0,
                   node: tuple[str, int] | None = None, *, nodes=None, head: tuple[int, int] | None = None) -> dict:
    """P1 Fig. 8: mean p(correct) and node activation vs list length, for nested and flat lists.

    The same ``n_prompts`` bases are cut to every length, so only the length changes along the sweep. The
    prompts are the ``bracket_counting`` form of the model's data version (``cfg.data_version``).

    Args:
        model: a GPT; its ``cfg.n_ctx`` bounds the prompts (nothing is left-truncated).
        lengths: list lengths in elements (default: :func:`sweep_lengths` from 1 to the longest that fits, see
            :func:`max_list_length`).
        node: optional (hook name, flat index) whose last-position activation is averaged too (``"node"``);
            ``nodes``: more of them (``"nodes"``, one list per length); ``head``: (layer, head) whose attention
            to the opening token and to the sink is averaged (``"attn_opening"``, ``"attn_sink"``).
    Returns:
        {"lengths" [L], "n_tokens" [L] (mean prompt tokens, nested), "nested": {"p_correct", "p_nested", "node",
        "nodes", "attn_opening", "attn_sink"}, "flat": {...}} — lists of floats, one entry per length.
    """
    n_ctx = model.cfg.n_ctx
    lengths, bases = _sweep_bases(n_ctx, lengths, n_prompts, seed, model_data_version(model))
    keys = ("p_correct", "p_nested", "node", "nodes", "attn_opening", "attn_sink")
    out = {"lengths": lengths, "n_tokens": [], "node": list(node) if node else None, "n_prompts": n_prompts,
           "nodes": [list(n) for n in nodes] if nodes else None, "head": list(head) if head else None,
           "nested": {k: [] for k in keys}, "flat": {k: [] for k in keys}}
    for n in lengths:
        for kind, nested in (("nested", True), ("flat", False)):
            m = measure(model, [list_example(b, n, nested, max_tokens=n_ctx) for b in bases], node, nodes=nodes,
                        head=head)
            for k in keys:
                out[kind][k].append(m[k].mean(0).tolist() if k == "nodes" else float(m[k].mean()))
            if nested:
                out["n_tokens"].append(float(m["n_tokens"].mean()))
    return out


def distractor_prompts(n_prompts: int, seed: int, *, n_ctx: int = 128, lengths: tuple[int, int] | None = None,
                       comment: str = DISTRACTOR_COMMENT, control: str = CONTROL_COMMENT,
                       version: str = DEFAULT_VERSION):
    """Flat-list prompts of data version ``version`` (default v1) with the distractor comment (an unmatched ``[``)
    on the line before the list, and the same prompts with the control comment. Lengths drawn in ``lengths``
    (default: the version's task, 2-16 elements in v1, 2-14 in v2; the upper end shrinks where prompts would not
    fit ``n_ctx``).

    Returns (with_distractor, control): two lists of Examples, row i of both from the same base.
    """
    lengths = DISTRACTOR_LENGTHS[get_version(version).name] if lengths is None else lengths
    tok = task_tokenizer(version)
    extra = max(len(tok.encode(c + "\n")) for c in (comment, control))  # the comment line's tokens
    hi = min(lengths[1], max_list_length(n_ctx - extra, seed + 1000, n_prompts, version))  # short contexts cap it
    while True:
        rng = random.Random(f"sparsecirc.attacks.distractor/{seed}")
        ns = [rng.randint(min(lengths[0], hi), hi) for _ in range(n_prompts)]
        try:
            bases = draw_bases(n_prompts, sorted(set(ns)), seed + 1000, n_ctx=n_ctx, comments=(comment, control),
                               version=version)
            break
        except ValueError:
            if hi == 1:
                raise
            hi -= 1
    attack = [list_example(b, n, False, comment=comment, max_tokens=n_ctx) for b, n in zip(bases, ns)]
    ctrl = [list_example(b, n, False, comment=control, max_tokens=n_ctx) for b, n in zip(bases, ns)]
    return attack, ctrl


def distractor_effect(model: torch.nn.Module, n_prompts: int = 64, seed: int = 0, *,
                      comment: str = DISTRACTOR_COMMENT, control: str = CONTROL_COMMENT) -> dict:
    """P1's distractor attack on flat lists: p(``]]``) with the unmatched ``[`` comment vs the control comment
    (``comment`` may be another distractor line, e.g. one ending in ``[[``), on :func:`distractor_prompts` of the
    model's data version (``cfg.data_version``).

    Returns {"p_nested_attack", "p_nested_control" (means), "rise" (their difference), "flip_rate" (fraction of
    prompts predicted ``]`` under the control and ``]]`` under the attack), "predicts_nested_attack",
    "predicts_nested_control" (fractions with p(``]]``) > 1/2), "flips_majority" (more than half predict ``]]``
    under the attack), "examples" (two prompt texts)}.
    """
    attack, ctrl = distractor_prompts(n_prompts, seed, n_ctx=model.cfg.n_ctx, comment=comment, control=control,
                                      version=model_data_version(model))
    a, c = measure(model, attack)["p_nested"], measure(model, ctrl)["p_nested"]
    return {"p_nested_attack": float(a.mean()), "p_nested_control": float(c.mean()), "rise": float(a.mean() - c.mean()),
            "flip_rate": float(((a > 0.5) & (c <= 0.5)).mean()), "predicts_nested_attack": float((a > 0.5).mean()),
            "predicts_nested_control": float((c > 0.5).mean()), "flips_majority": bool((a > 0.5).mean() > 0.5),
            "n_prompts": n_prompts, "comment": comment, "control": control,
            "examples": [attack[0].prompt, ctrl[0].prompt]}


# --- summaries ---------------------------------------------------------------------------------------------------
def fit_power_law(x, y) -> tuple[float, float]:
    """Least-squares fit of ``log|y| = exponent * log x + log prefactor``: returns (exponent, prefactor).

    P1 reads the depth channel as ∝ 1/n (exponent -1). Points with x <= 0 or y == 0 are dropped; the sign of
    the prefactor is the sign of the mean of ``y``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y != 0) & np.isfinite(y)
    if keep.sum() < 2:
        raise ValueError("fit_power_law needs at least two points with x > 0 and y != 0")
    slope, icpt = np.polyfit(np.log(x[keep]), np.log(np.abs(y[keep])), 1)
    return float(slope), float(np.sign(y[keep].mean()) * np.exp(icpt))


def power_law_r2(x, y) -> float:
    """R² of :func:`fit_power_law` in log-log space (1 = a perfect power law)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y != 0) & np.isfinite(y)
    lx, ly = np.log(x[keep]), np.log(np.abs(y[keep]))
    k, a = fit_power_law(x[keep], y[keep])
    resid = ly - (k * lx + np.log(abs(a)))
    tot = ((ly - ly.mean()) ** 2).sum()
    return float(1 - (resid ** 2).sum() / tot) if tot > 0 else 1.0


def failure_length(lengths, p_correct, threshold: float = 0.5) -> float | None:
    """First list length where p(correct) drops below ``threshold``, linearly interpolated from the previous
    length; the first length itself if it starts below; None if it never drops."""
    xs, ps = [float(v) for v in lengths], [float(v) for v in p_correct]
    for i, (x, p) in enumerate(zip(xs, ps)):
        if p < threshold:
            if i == 0:
                return x
            x0, p0 = xs[i - 1], ps[i - 1]
            return x0 + (p0 - threshold) / (p0 - p) * (x - x0)
    return None
