"""Attribution patching over two graphs: exact activation patching, EAP and EAP-IG (P2 digest §7).

**The component graph** (EAP-IG's convention): upstream nodes are the input (token + position embeddings), every
attention head and every MLP; downstream inputs are each head's query, key and value inputs (``qkv=True``, three per
head, as EAP-IG counts them; ``qkv=False``: one input per head), each MLP's input and the logits. An edge u -> v is
an upstream output entering a later downstream input through the residual stream: heads of layer l feed MLP l and
everything after; MLP l feeds layer l + 1 on. Output-projection biases belong to no node and are never patched.

**The attention-edge graph** (the unit P2's gate removes): (layer, head, query i, key j <= i). Edge (i, j) carries
the term ``w_ij v_j`` into head h's mix at query i, with ``w = softmax weight x gate`` (the gate is 1 for a dense
model). Patching an edge replaces that term by the corrupted run's ``w'_ij v'_j``.

Patching a set of edges runs the clean prompt with the chosen edges carrying corrupted activations and every other
edge carrying the activations computed live in that run (Hanna et al. 2024's circuit evaluation). Scores:

* **EAP** (Syed et al. 2023): ``(z_u^corrupt - z_u^clean) . dm/d(input of v)`` on the clean run, summed over
  positions and averaged over prompts; for attention edges ``(w'_ij v'_j - w_ij v_j) . dm/dz_i``.
* **EAP-IG** (Hanna et al. 2024, "inputs" variant): the same difference times the gradient averaged over ``steps``
  runs whose input embeddings are interpolated from the corrupted to the clean prompt (``k / steps``, k = 1..steps).
* **exact**: the metric's change when that edge alone is patched.

The P2 gate is read through ``hook_sparse_mask``'s rule ``1[s + b > 0]`` (deterministic, eval). ``gate="recompute"``
(default) forms the gate from the patched run's own scores; ``gate="freeze"`` keeps the clean run's gates.

Models with AbsTopK activations (P1's weight-sparse models) are refused: patching one input of a head would change
the top-k selection of every head (q, k and v are cut over all heads together).

Example::

    g = ComponentGraph(model.cfg)
    pair = PatchPair(clean_tokens, corrupt_tokens, last, cand)          # cand [n, 2]: (correct, wrong)
    scores = eap_scores(model, pair, g, method="eap-ig", steps=5)       # [n_up, n_down] (nan where no edge)
    m = patched_metric(model, pair, g, keep=top_edges(scores, 20))      # [n] with all other edges patched
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sparsecirc.core.model import beyond_p1


@dataclass
class PatchPair:
    """Clean and corrupted prompts of equal length: tokens [n, T] each, ``last`` [n] the scored position and
    ``cand`` [n, 2] the (correct, wrong) token ids of the clean prompt; the metric is their logit difference."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    last: torch.Tensor
    cand: torch.Tensor

    def __post_init__(self):
        if self.clean.shape != self.corrupt.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupt {tuple(self.corrupt.shape)} prompts must "
                             "have the same shape (patching aligns positions)")
        if len(self.last) != len(self.clean) or self.cand.shape != (len(self.clean), 2):
            raise ValueError("PatchPair: last must be [n] and cand [n, 2] for n prompts")

    def __len__(self) -> int:
        return len(self.last)

    def prompt(self, i: int) -> "PatchPair":
        """Prompt ``i`` alone, at the full width ``T`` (per-prompt scores of the whole pair index into it)."""
        return PatchPair(self.clean[i:i + 1], self.corrupt[i:i + 1], self.last[i:i + 1], self.cand[i:i + 1])

    def subset(self, idx) -> "PatchPair":
        idx = torch.as_tensor(idx)
        T = int(self.last[idx].max()) + 1
        return PatchPair(self.clean[idx, :T], self.corrupt[idx, :T], self.last[idx], self.cand[idx])


class ComponentGraph:
    """Names and edges of the component graph of a model config (see the module docstring).

    ``up`` lists upstream nodes (``input``, ``a{l}.h{h}``, ``m{l}``); ``down`` lists downstream inputs
    (``a{l}.h{h}.q/k/v`` or ``a{l}.h{h}``, ``m{l}``, ``logits``); ``valid`` [n_up, n_down] is True where an edge
    exists. ``head_of_up`` maps an upstream index to its (layer, head) or None."""

    def __init__(self, cfg, qkv: bool = True):
        self.n_layer, self.n_head, self.qkv = cfg.n_layer, cfg.n_head, qkv
        H = cfg.n_head
        self.up = ["input"]
        self.down: list[str] = []
        self.up_start, self.down_attn, self.down_mlp = [], [], []  # per layer: first index / slices
        avail = []  # per downstream input: how many upstream nodes precede it (they come first in ``up``)
        for layer in range(cfg.n_layer):
            n_before = len(self.up)
            parts = (".q", ".k", ".v") if qkv else ("",)
            names = [f"a{layer}.h{h}{s}" for h in range(H) for s in parts]
            self.down_attn.append(slice(len(self.down), len(self.down) + len(names)))
            self.down += names
            avail += [n_before] * len(names)
            self.up_start.append(len(self.up))
            self.up += [f"a{layer}.h{h}" for h in range(H)]
            self.down_mlp.append(len(self.down))
            self.down.append(f"m{layer}")
            avail.append(len(self.up))
            self.up.append(f"m{layer}")
        self.down.append("logits")
        avail.append(len(self.up))
        self.avail = avail
        self.valid = torch.zeros(len(self.up), len(self.down), dtype=torch.bool)
        for v, n in enumerate(avail):
            self.valid[:n, v] = True
        self.head_of_up = [None] * len(self.up)
        for layer in range(cfg.n_layer):
            for h in range(H):
                self.head_of_up[self.up_start[layer] + h] = (layer, h)

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum())

    def edge_names(self) -> list[str]:
        u, v = torch.nonzero(self.valid, as_tuple=True)
        return [f"{self.up[a]}->{self.down[b]}" for a, b in zip(u.tolist(), v.tolist())]

    def head_edges(self, heads: set[tuple[int, int]]) -> torch.Tensor:
        """Keep-mask [n_up, n_down] of every edge except those leaving a head not in ``heads`` (heads as units)."""
        keep = self.valid.clone()
        for u, lh in enumerate(self.head_of_up):
            if lh is not None and lh not in heads:
                keep[u] = False
        return keep


def check_model(model) -> None:
    c = model.cfg
    if beyond_p1(c):
        raise ValueError(f"patching: the functional forward follows P1's block; this model also sets {beyond_p1(c)}")
    if c.act_keep_frac is not None:
        raise ValueError("attribution patching here needs a model without AbsTopK activations (act_keep_frac is "
                         f"{c.act_keep_frac}): patching one head's input would change every head's top-k selection")


@dataclass
class Run:
    """One functional forward: ``metric`` [n]; ``outs`` [n, T, n_up, d] upstream outputs; ``ins`` the downstream
    inputs per layer (attention [n, T, n_in, d], MLP [n, T, d]) and the logits' input; attention terms per layer
    (``w`` [n, H, T, T] weights x gates, ``v`` [n, H, T, dh] values, ``z`` [n, T, H, dh]); ``gates`` per layer."""

    metric: torch.Tensor
    outs: torch.Tensor
    ins: list
    w: list
    v: list
    z: list
    gates: list


def forward(model, tokens: torch.Tensor, last: torch.Tensor, cand: torch.Tensor, graph: ComponentGraph, *,
            keep: torch.Tensor | None = None, corrupt: Run | None = None, keep_attn: list | None = None,
            embed: torch.Tensor | None = None, gates: list | None = None) -> Run:
    """The model's forward written over the component graph, with edges patched.

    ``keep`` [n_up, n_down] bool/float: 1 = the edge carries the live activation, 0 = the corrupted one (from
    ``corrupt``); ``keep_attn`` per layer [n, H, T, T]: the same for attention edges. ``embed`` replaces the input
    node's output [n, T, d] (EAP-IG's interpolation); ``gates`` per layer [n, H, T, T] replaces a gated model's
    own gates (frozen gates). With none of these, this equals ``model(tokens)`` at ``last``.
    """
    check_model(model)
    if (keep is not None or keep_attn is not None) and corrupt is None:
        raise ValueError("patching edges needs the corrupted run (corrupt=...)")
    c = model.cfg
    n, T = tokens.shape
    H, dh = c.n_head, c.d_head
    x0 = model.embed(tokens)
    if model.pos_embed is not None:
        x0 = x0 + model.pos_embed(torch.arange(T))[None]
    if embed is not None:
        x0 = embed
    outs = [x0]
    resid = x0.clone()
    ins, ws, vs, zs, used = [], [], [], [], []
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def mix(vslice) -> torch.Tensor:  # downstream inputs [n, T, n_v, d] from the live outputs and the patched edges
        nv = vslice.stop - vslice.start if isinstance(vslice, slice) else 1
        x = resid[:, :, None, :].expand(n, T, nv, resid.shape[-1])
        if keep is None:
            return x  # a view: gradients w.r.t. it are still per downstream input
        U = len(outs)
        drop = (1 - keep[:U, vslice].to(x.dtype)).reshape(U, nv)
        delta = torch.stack(outs, 2) - corrupt.outs[:, :, :U]
        return x - torch.einsum("btud,uv->btvd", delta, drop)

    for layer, block in enumerate(model.blocks):
        att = block.attn
        xin = mix(graph.down_attn[layer])  # [n, T, n_in, d]
        ins.append(xin)
        xn = block.ln1.norm(xin)  # the block's own RMSNorm (no AbsTopK here: refused above)
        if graph.qkv:
            xq, xk, xv = xn.view(n, T, H, 3, -1).unbind(3)
        else:
            xq = xk = xv = xn
        proj = lambda lin, xx: torch.einsum("bthd,hed->bhte", xx, lin.weight.view(H, dh, -1)) + \
            (lin.bias.view(1, H, 1, dh) if lin.bias is not None else 0)  # noqa: E731
        q, k, v = proj(att.W_Q, xq), proj(att.W_K, xk), proj(att.W_V, xv)  # [n, H, T, dh]
        s = q @ k.transpose(-1, -2) / math.sqrt(dh)
        s = s.masked_fill(~causal, float("-inf"))
        if att.sink_logit is not None:
            sink = att.sink_logit.view(1, H, 1, 1).expand(n, H, T, 1)
            w = torch.softmax(torch.cat([s, sink], -1), -1)[..., :T]
        else:
            w = torch.softmax(s, -1)
        if c.attn_gate:
            g = gates[layer] if gates is not None else ((s + c.attn_gate_bias) > 0).to(w.dtype) * causal
            w = w * g
            used.append(g.detach())
        ws.append(w)
        vs.append(v)
        zmix = w @ v
        if keep_attn is not None:
            ka = keep_attn[layer].to(w.dtype)
            zmix = (w * ka) @ v + ((1 - ka) * corrupt.w[layer]) @ corrupt.v[layer]
        z = zmix.transpose(1, 2)  # [n, T, H, dh]
        zs.append(z)
        head_out = torch.einsum("bthe,dhe->bthd", z, att.W_O.weight.view(-1, H, dh))  # [n, T, H, d]
        for h in range(H):
            outs.append(head_out[:, :, h])
        resid = resid + head_out.sum(2) + (att.W_O.bias if att.W_O.bias is not None else 0)
        xm = mix(slice(graph.down_mlp[layer], graph.down_mlp[layer] + 1))[:, :, 0]
        ins.append(xm)
        mo = block.mlp.W_out(F.gelu(block.mlp.W_in(block.ln2.norm(xm))))
        bias = block.mlp.W_out.bias
        outs.append(mo - bias if bias is not None else mo)
        resid = resid + mo
    xf = mix(slice(len(graph.down) - 1, len(graph.down)))[:, :, 0]
    ins.append(xf)
    rows = torch.arange(n)
    xl = xf[rows, last]
    logits = model.unembed(model.ln_final.norm(xl))
    if model.bigram is not None:
        logits = logits + model.bigram[tokens[rows, last]]
    two = logits.gather(1, cand)
    return Run(two[:, 0] - two[:, 1], torch.stack(outs, 2), ins, ws, vs, zs, used)


def _check_gate(gate: str) -> None:
    if gate not in ("recompute", "freeze"):
        raise ValueError(f"gate must be 'recompute' or 'freeze', got {gate!r}")


def run_pair(model, pair: PatchPair, graph: ComponentGraph) -> tuple[Run, Run]:
    with torch.no_grad():
        return (forward(model, pair.clean, pair.last, pair.cand, graph),
                forward(model, pair.corrupt, pair.last, pair.cand, graph))


def _grads(model, tokens, pair: PatchPair, graph: ComponentGraph, embed: torch.Tensor):
    """Gradients of the summed metric w.r.t. every downstream input and every z, on one run whose input node
    outputs ``embed`` (a leaf here, so frozen weights need no gradient)."""
    run = forward(model, tokens, pair.last, pair.cand, graph, embed=embed.detach().requires_grad_(True))
    gi = torch.autograd.grad(run.metric.sum(), run.ins + run.z)
    return run, gi[:len(run.ins)], gi[len(run.ins):]


def eap_scores(model, pair: PatchPair, graph: ComponentGraph, method: str = "eap",
               steps: int = 5) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """EAP or EAP-IG scores of every edge of both graphs, averaged over prompts.

    Returns (component scores [n_up, n_down], nan where no edge; attention-edge scores per layer [n, H, T, T],
    per prompt, zero above the diagonal). A score estimates m(edge patched) - m(clean). The hard gate has no
    gradient, so frozen and recomputed gates give the same scores (the choice matters for patching only)."""
    if method not in ("eap", "eap-ig"):
        raise ValueError(f"method must be 'eap' or 'eap-ig', got {method!r}")
    model.eval()
    clean, corr = run_pair(model, pair, graph)
    if method == "eap":
        _, g_in, g_z = _grads(model, pair.clean, pair, graph, clean.outs[:, :, 0])
    else:
        e_clean, e_corr = clean.outs[:, :, 0], corr.outs[:, :, 0]
        g_in = g_z = None
        for k in range(1, steps + 1):
            emb = e_corr + (k / steps) * (e_clean - e_corr)
            _, gi, gz = _grads(model, pair.clean, pair, graph, embed=emb)
            g_in = gi if g_in is None else [a + b for a, b in zip(g_in, gi)]
            g_z = gz if g_z is None else [a + b for a, b in zip(g_z, gz)]
        g_in = [g / steps for g in g_in]
        g_z = [g / steps for g in g_z]
    delta = corr.outs - clean.outs  # [n, T, U, d]
    n = len(pair)
    scores = torch.full((len(graph.up), len(graph.down)), float("nan"))
    for layer in range(graph.n_layer):
        ga = g_in[2 * layer]  # [n, T, n_in, d]
        sl = graph.down_attn[layer]
        U = graph.avail[sl.start]
        scores[:U, sl] = torch.einsum("btud,btvd->uv", delta[:, :, :U], ga) / n
        U = graph.avail[graph.down_mlp[layer]]
        scores[:U, graph.down_mlp[layer]] = torch.einsum("btud,btd->u", delta[:, :, :U], g_in[2 * layer + 1]) / n
    scores[:, -1] = torch.einsum("btud,btd->u", delta, g_in[-1]) / n
    attn = []
    for layer in range(graph.n_layer):
        g = g_z[layer].transpose(1, 2)  # [n, H, T, dh]
        s = (corr.w[layer] * (g @ corr.v[layer].transpose(-1, -2))
             - clean.w[layer] * (g @ clean.v[layer].transpose(-1, -2)))
        attn.append(s.detach())
    return scores, attn


@torch.no_grad()
def patched_metric(model, pair: PatchPair, graph: ComponentGraph, *, keep: torch.Tensor | None = None,
                   keep_attn: list | None = None, gate: str = "recompute", runs=None) -> torch.Tensor:
    """The metric [n] of the clean prompts with every edge outside ``keep`` (component graph) or ``keep_attn``
    (attention edges, per layer [n, H, T, T]) carrying the corrupted activation. ``runs`` = (clean, corrupt) from
    an earlier call saves two forwards."""
    _check_gate(gate)
    model.eval()
    clean, corr = runs or run_pair(model, pair, graph)
    if keep is not None:
        keep = keep | ~graph.valid
    return forward(model, pair.clean, pair.last, pair.cand, graph, keep=keep, corrupt=corr, keep_attn=keep_attn,
                   gates=clean.gates if gate == "freeze" and model.cfg.attn_gate else None).metric


@torch.no_grad()
def exact_scores(model, pair: PatchPair, graph: ComponentGraph, edges: list[tuple[int, int]] | None = None,
                 gate: str = "recompute") -> torch.Tensor:
    """Exact activation patching: mean over prompts of m(only that edge patched) - m(clean), for ``edges``
    (pairs (u, v) of indices; default every edge) -> [n_up, n_down], nan elsewhere."""
    runs = run_pair(model, pair, graph)
    base = runs[0].metric
    out = torch.full((len(graph.up), len(graph.down)), float("nan"))
    if edges is None:
        edges = [tuple(e) for e in torch.nonzero(graph.valid).tolist()]
    for u, v in edges:
        keep = graph.valid.clone()
        keep[u, v] = False
        out[u, v] = float((patched_metric(model, pair, graph, keep=keep, gate=gate, runs=runs) - base).mean())
    return out


def top_edges(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of the ``k`` edges with the largest |score| (nan = no edge)."""
    flat = scores.abs().nan_to_num(-1.0).flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(min(k, int((flat >= 0).sum()))).indices] = True
    return keep.view_as(scores)


def top_attention_edges(attn: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Per prompt, keep the ``k`` attention edges (over all layers and heads) with the largest |score|."""
    n = attn[0].shape[0]
    flat = torch.cat([a.abs().reshape(n, -1) for a in attn], 1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(1, flat.topk(min(k, flat.shape[1]), dim=1).indices, True)
    out, i = [], 0
    for a in attn:
        m = a[0].numel()
        out.append(keep[:, i:i + m].view_as(a))
        i += m
    return out


def spearman(a, b) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    ra, rb = pd.Series(a[ok]).rank(), pd.Series(b[ok]).rank()
    return float(np.corrcoef(ra, rb)[0, 1])
