"""Named hook points, and context managers to record or patch activations at them.

Names follow TransformerLens's legacy style (``blocks.{l}.attn.hook_q``). Where a hook coincides with an AbsTopK
site it sees the post-AbsTopK value, which is P1's node. Hooks added by :func:`record` and :func:`patch` are
removed by handle when the context exits, also on exceptions, so user hooks stay intact (TL#1636).

Example::

    with record(model, ["blocks.0.mlp.hook_post"]) as cache:
        model(tokens)
    cache["blocks.0.mlp.hook_post"].shape        # [batch, pos, d_mlp]
    with patch(model, {"blocks.0.hook_attn_out": lambda x: 0 * x}):
        logits = model(tokens)
"""
from __future__ import annotations

import fnmatch
import re
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity module marking a named activation; forward hooks on it record or replace the value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def hook_count(self) -> int:
        """How many forward hooks are attached (the model takes its SDPA fast path only when nobody watches the
        attention pattern). Reads ``nn.Module``'s own hook dict: the one place the package looks at it."""
        return len(self._forward_hooks)


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """All hook points of ``model`` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def _select(model: nn.Module, names: str | Iterable[str] | Callable[[str], bool] | None) -> dict[str, HookPoint]:
    points = hook_points(model)
    if names is None:
        return points
    if callable(names):
        return {n: p for n, p in points.items() if names(n)}
    if isinstance(names, str):
        names = [names]
    out = {}
    for pat in names:
        hit = {n: p for n, p in points.items() if fnmatch.fnmatchcase(n, pat)}
        if not hit:
            raise KeyError(f"no hook point matches {pat!r}; e.g. {sorted(points)[:6]} (see sparsecirc.core.hooks.HOOK_TABLE)")
        out.update(hit)
    return out


@contextmanager
def record(model: nn.Module, names=None, *, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record activations at the selected hook points (names, glob patterns, a predicate, or None = all).

    Yields a dict that is filled during forward passes inside the block (the last pass wins).
    """
    cache: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, point in _select(model, names).items():
            def fn(_m, _inp, out, _name=name):
                cache[_name] = out.detach() if detach else out
            handles.append(point.register_forward_hook(fn))
        yield cache
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch(model: nn.Module, fns: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace the activation at each named hook point by ``fn(activation)`` inside the block."""
    handles = []
    try:
        for pat, fn in fns.items():
            for point in _select(model, [pat]).values():
                handles.append(point.register_forward_hook(lambda _m, _i, out, _fn=fn: _fn(out)))
        yield
    finally:
        for h in handles:
            h.remove()


# --- the name table (chapter 01 publishes it) ---------------------------------------------------------------
# ours (TransformerLens legacy) | shape | openai/circuit_sparsity | P1 node kind
HOOK_TABLE: list[tuple[str, str, str, str]] = [
    ("hook_embed", "[batch, pos, d_model]", "-", "-"),
    ("hook_pos_embed", "[batch, pos, d_model]", "-", "-"),
    ("blocks.{l}.hook_resid_pre", "[batch, pos, d_model]", "{l}.resid_in", "-"),
    ("blocks.{l}.ln1.hook_normalized", "[batch, pos, d_model]", "{l}.attn.act_in", "residual read"),
    ("blocks.{l}.attn.hook_q", "[batch, pos, n_head, d_head]", "{l}.attn.q", "q channel"),
    ("blocks.{l}.attn.hook_k", "[batch, pos, n_head, d_head]", "{l}.attn.k", "k channel"),
    ("blocks.{l}.attn.hook_v", "[batch, pos, n_head, d_head]", "{l}.attn.v", "v channel"),
    ("blocks.{l}.attn.hook_pattern", "[batch, n_head, q_pos, k_pos]", "-", "-"),
    ("blocks.{l}.attn.hook_sparse_mask", "[batch, n_head, q_pos, k_pos]", "-", "attention edge gate (P2)"),
    ("blocks.{l}.attn.hook_z", "[batch, pos, n_head, d_head]", "{l}.attn.y", "-"),
    ("blocks.{l}.hook_attn_out", "[batch, pos, d_model]", "{l}.attn.resid_delta", "residual write"),
    ("blocks.{l}.hook_resid_mid", "[batch, pos, d_model]", "{l}.resid_mid", "-"),
    ("blocks.{l}.ln2.hook_normalized", "[batch, pos, d_model]", "{l}.mlp.act_in", "residual read"),
    ("blocks.{l}.mlp.hook_pre", "[batch, pos, d_mlp]", "-", "-"),
    ("blocks.{l}.mlp.hook_post", "[batch, pos, d_mlp]", "{l}.mlp.post_act", "neuron"),
    ("blocks.{l}.hook_mlp_out", "[batch, pos, d_model]", "{l}.mlp.resid_delta", "residual write"),
    ("blocks.{l}.hook_resid_post", "[batch, pos, d_model]", "{l+1}.resid_in / final_resid", "-"),
    ("ln_final.hook_normalized", "[batch, pos, d_model]", "-", "-"),
]


def _csp_pairs(n_layer: int) -> list[tuple[str, str]]:
    pairs = []
    for ours, _shape, csp, _node in HOOK_TABLE:
        if csp == "-" or "{l}" not in ours:
            continue
        for l in range(n_layer):
            o = ours.replace("{l}", str(l))
            if "resid_in / final_resid" in csp:
                c = f"{l + 1}.resid_in" if l + 1 < n_layer else "final_resid"
            else:
                c = csp.replace("{l}", str(l))
            pairs.append((o, c))
    return pairs


def to_csp_name(name: str, n_layer: int) -> str:
    """Map one of our hook names to openai/circuit_sparsity's recorder name (e.g. ``0.mlp.post_act``)."""
    for o, c in _csp_pairs(n_layer):
        if o == name:
            return c
    raise KeyError(f"{name!r} has no circuit_sparsity counterpart (see HOOK_TABLE)")


def from_csp_name(name: str, n_layer: int) -> str:
    """Inverse of :func:`to_csp_name`; ``{l}.resid_in`` maps to ``blocks.{l}.hook_resid_pre``."""
    m = re.fullmatch(r"(\d+)\.resid_in", name)
    if m and int(m.group(1)) < n_layer:
        return f"blocks.{m.group(1)}.hook_resid_pre"
    for o, c in _csp_pairs(n_layer):
        if c == name and not o.endswith("hook_resid_post"):
            return o
    if name == "final_resid":
        return f"blocks.{n_layer - 1}.hook_resid_post"
    raise KeyError(f"{name!r} is not a circuit_sparsity recorder name for a {n_layer}-layer model")


def hook_table_markdown() -> str:
    """The name table as Markdown (ours = TransformerLens legacy names; circuit_sparsity's recorder names)."""
    rows = ["| ours (= TransformerLens legacy) | shape | openai/circuit_sparsity | P1 node |", "|---|---|---|---|"]
    rows += [f"| `{o}` | {s} | {'`' + c + '`' if c != '-' else '—'} | {n if n != '-' else '—'} |"
             for o, s, c, n in HOOK_TABLE]
    return "\n".join(rows)
