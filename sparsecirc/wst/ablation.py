"""What a pruned model computes: node masks and rankings, ablation (mean or zero, norms live or frozen), the task
pairs and their two-candidate margin, and the label-free logit calibration (P1 §2.2, A.5).

:mod:`sparsecirc.wst.prune` trains masks and bisects circuits with these pieces.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsecirc.core.config import PruneConfig
from sparsecirc.core.hooks import patch, record
from sparsecirc.core.model import GPT, LayerNorm, RMSNorm
from sparsecirc.core.packing import Packed
from sparsecirc.data.tasks import columns, pad_batch
from sparsecirc.wst.circuits import node_sites


# --- mean-ablation values ------------------------------------------------------------------------------------------
@torch.no_grad()
def compute_means(model: GPT, windows: torch.Tensor, kinds=None, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Mean activation of every node over pretraining ``windows`` [n, pos(+1)], all positions: {hook: [dim]}."""
    sites = node_sites(model, kinds or PruneConfig().node_kinds)
    sums = {name: torch.zeros(dim, dtype=torch.float64) for name, dim in sites.items()}
    n = 0
    model.eval()
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size, :model.cfg.n_ctx]  # training windows carry one extra target token
        with record(model, list(sites)) as c:
            model(w)
        for name in sites:
            sums[name] += c[name].flatten(2).flatten(0, 1).sum(0).double() if c[name].dim() == 4 else \
                c[name].flatten(0, 1).sum(0).double()
        n += w.shape[0] * w.shape[1]
    return {name: (s / n).float() for name, s in sums.items()}


# --- masks --------------------------------------------------------------------------------------------------------
def _topk_from_flat(names: list[str], sizes: list[int], flat: torch.Tensor, k: int) -> dict[str, list[int]]:
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    out, start = {}, 0
    for name, size in zip(names, sizes):
        idx = torch.nonzero(keep[start:start + size]).flatten().tolist()
        if idx:
            out[name] = idx
        start += size
    return out


class NodeMask(nn.Module):
    """tau per node; ``gates()`` gives hard 0/1 gates with the sigmoid surrogate gradient.

    With ``cfg.tie_qk`` the k channels of a layer share the tau of the q channels (P1 fn. 17): one parameter decides
    both, and the pair counts as two kept nodes.
    """

    def __init__(self, sites: dict[str, int], cfg: PruneConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.names = list(sites)
        self.sizes = list(sites.values())
        self.temp = cfg.heaviside_temp
        self.shared = {n: n.replace("hook_k", "hook_q") for n in self.names
                       if cfg.tie_qk and n.endswith("attn.hook_k") and n.replace("hook_k", "hook_q") in sites}
        self.owned = [n for n in self.names if n not in self.shared]
        self.tau = nn.ParameterList(
            nn.Parameter((torch.randn(sites[n], generator=generator) * cfg.init_noise_scale + cfg.init_noise_bias)
                         .clamp(-1, 1)) for n in self.owned)
        self._index = {n: i for i, n in enumerate(self.owned)}

    def tau_of(self, name: str) -> torch.Tensor:
        """The tau vector deciding the nodes at hook ``name`` (a q vector for a tied k hook)."""
        return self.tau[self._index[self.shared.get(name, name)]]

    def gates(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.owned:
            t = self.tau_of(name)
            soft = torch.sigmoid(t / self.temp)
            out[name] = (t > 0).float() + soft - soft.detach()  # Heaviside forward, sigmoid backward
        for name, src in self.shared.items():
            out[name] = out[src]
        return {n: out[n] for n in self.names}

    def flat(self) -> torch.Tensor:
        """tau of every node in site order (tied k nodes repeat their q's tau)."""
        return self.spread(list(self.tau))

    def spread(self, owned: list[torch.Tensor]) -> torch.Tensor:
        """Per-owned-parameter tensors (shaped like ``self.tau``) laid out over every node in site order."""
        return torch.cat([owned[self._index[self.shared.get(n, n)]].detach() for n in self.names])

    @property
    def own_count(self) -> int:
        """Nodes the trained mask itself keeps (tau > 0)."""
        return int((self.flat() > 0).sum())

    def topk_nodes(self, k: int) -> dict[str, list[int]]:
        """The ``k`` nodes with the largest tau (ties broken by position), as {hook: sorted indices}."""
        return _topk_from_flat(self.names, self.sizes, self.flat(), k)


class NodeOrder:
    """A fixed ranking of every node (largest score first): a mask snapshot, or attribution scores.

    ``own_count`` is the node count the ranking itself proposes as an upper end for the bisection (a mask's kept
    nodes; None for attribution scores, where only "all nodes" is tried).
    """

    def __init__(self, sites: dict[str, int], scores: torch.Tensor, own_count: int | None = None):
        if scores.numel() != sum(sites.values()):
            raise ValueError(f"NodeOrder: {scores.numel()} scores for {sum(sites.values())} nodes")
        self.names, self.sizes, self.scores, self.own_count = list(sites), list(sites.values()), scores, own_count

    def flat(self) -> torch.Tensor:
        return self.scores

    def topk_nodes(self, k: int) -> dict[str, list[int]]:
        return _topk_from_flat(self.names, self.sizes, self.scores, k)


def ranked_order(sites: dict[str, int], primary: torch.Tensor, secondary: torch.Tensor,
                 own_count: int | None = None) -> NodeOrder:
    """A :class:`NodeOrder` by ``primary`` (largest first) with ties broken by ``secondary`` (largest first), then
    by position. A trained mask's tau saturates at its clamp, so many kept nodes tie at +1; ranking them by
    position would let the bisection keep or drop them in site order."""
    idx = torch.argsort(secondary, descending=True, stable=True)
    idx = idx[torch.argsort(primary[idx], descending=True, stable=True)]
    scores = torch.empty(len(idx))
    scores[idx] = torch.arange(len(idx), 0, -1, dtype=torch.float32)
    return NodeOrder(sites, scores, own_count)


def gates_from_nodes(sites: dict[str, int], nodes: dict[str, list[int]], invert: bool = False) -> dict[str, torch.Tensor]:
    """0/1 gates per hook from a node set (``invert``: ablate exactly those nodes instead)."""
    out = {}
    for name, dim in sites.items():
        g = torch.zeros(dim)
        if nodes.get(name):
            g[torch.tensor(nodes[name])] = 1.0
        out[name] = 1.0 - g if invert else g
    return out


@contextmanager
def ablate(model: GPT, gates: dict[str, torch.Tensor], means: dict[str, torch.Tensor]):
    """Inside the block, node x becomes gate * x + (1 - gate) * mean at every position."""
    def make(g, mu):
        def fn(x):
            shape = x.shape
            flat = x.flatten(2) if x.dim() == 4 else x  # q/k/v: [B, T, H, Dh] -> [B, T, H*Dh]
            return torch.lerp(mu, flat, g).view(shape)  # g * x + (1 - g) * mu in one op (and one backward)
        return fn
    with patch(model, {name: make(g, means[name]) for name, g in gates.items()}):
        yield


def ablation_values(means: dict[str, torch.Tensor], cfg: PruneConfig) -> dict[str, torch.Tensor]:
    """What a pruned node is replaced by: ``means`` (mean ablation) or zeros (``cfg.ablation == "zero"``)."""
    return means if cfg.ablation == "mean" else {k: torch.zeros_like(v) for k, v in means.items()}


def _norms(model: GPT) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))]


@contextmanager
def record_norm_scales(model: GPT):
    """Record each norm's per-token statistics on the next forward: yields {module: stats}; an RMSNorm's are its
    1/rms [batch, pos, 1], a LayerNorm's (mean, 1/std) (an imported circuit_sparsity model's norm)."""
    scales: dict = {}

    def rec(mod, args, out):
        scales[mod] = mod.stats(args[0].detach())
    handles = [m.register_forward_hook(rec) for m in _norms(model)]
    try:
        yield scales
    finally:
        for h in handles:
            h.remove()


@contextmanager
def frozen_norms(model: GPT, scales: dict):
    """Inside the block every norm uses the recorded statistics (:func:`record_norm_scales`) instead of its own:
    ablating nodes can then no longer rescale the rest of the residual stream (Drori's mitigation)."""
    def use(mod, args, out):
        return mod.normalize(args[0], scales[mod])
    handles = [m.register_forward_hook(use) for m in _norms(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# --- task data ----------------------------------------------------------------------------------------------------
@dataclass
class PairData:
    """Padded prompts of a task split: tokens [n, T], last position [n], candidate ids [n, 2] (target first)."""

    tokens: torch.Tensor
    last: torch.Tensor
    cand: torch.Tensor

    @classmethod
    def from_dataset(cls, ds, n_ctx: int, limit: int | None = None) -> "PairData":
        cols = columns(ds if limit is None else ds.select(range(min(limit, ds.num_rows))))
        tokens, last = pad_batch(cols["prompt_ids"], n_ctx)
        cand = torch.tensor([cols["target_id"], cols["distractor_id"]], dtype=torch.long).T
        return cls(tokens, last, cand)

    def __len__(self) -> int:
        return len(self.last)

    def subset(self, idx: torch.Tensor) -> "PairData":
        tokens = self.tokens[idx]
        T = int(self.last[idx].max()) + 1  # trim padding columns nobody needs
        return PairData(tokens[:, :T], self.last[idx], self.cand[idx])

    @property
    def n_pairs(self) -> int:
        """Pairs of prompts (rows 2i and 2i+1 are pair i, as the task files store them)."""
        return len(self) // 2

    @staticmethod
    def pair_rows(pairs: torch.Tensor) -> torch.Tensor:
        """Row indices of the given pair indices (both prompts of each pair, side by side)."""
        return torch.stack([2 * pairs, 2 * pairs + 1], 1).flatten()

    def split_pairs(self, n_val: int, seed: int = 0) -> tuple["PairData", "PairData"]:
        """(fit, val): ``n_val`` pairs drawn at random (``seed``) are held out; the rest are for fitting. Pairs are
        never split across the two parts."""
        if not 0 < n_val < self.n_pairs:
            raise ValueError(f"cannot hold out {n_val} of {self.n_pairs} pairs: keep at least one pair on each side")
        perm = torch.randperm(self.n_pairs, generator=torch.Generator().manual_seed(seed))
        val, fit = perm[:n_val].sort().values, perm[n_val:].sort().values
        return self.subset(self.pair_rows(fit)), self.subset(self.pair_rows(val))


def pair_margin(model: GPT, data: PairData, batch_size: int = 128, chunks: int = 1,
                last_only: bool = True, pack: bool = False) -> torch.Tensor:
    """logit(target) - logit(distractor) at each prompt's last position: [n] (differentiable).

    ``chunks > 1`` sorts a batch by prompt length and runs it in that many pieces, each padded only to its own
    longest prompt (less padding; the same numbers up to float rounding). ``last_only`` runs the model's last
    block at the last position alone (:meth:`GPT.forward`; the same numbers, less work). ``pack`` runs each batch
    as one packed forward (:mod:`sparsecirc.core.packing`: no padding outside attention, whose ``chunks`` groups
    are padded as the chunks would be; the same numbers up to float rounding, far fewer calls)."""
    outs, order = [], []
    for i in range(0, len(data), batch_size):
        rows = torch.arange(i, min(i + batch_size, len(data)))
        pieces = [rows] if chunks <= 1 or pack else \
            [c for c in rows[torch.argsort(data.last[rows], stable=True)].chunk(chunks) if len(c)]
        for piece in pieces:
            d = data.subset(piece)
            packing = Packed.from_last(d.last, d.tokens.shape[1], groups=max(1, chunks)) if pack else None
            final = model(d.tokens, positions=d.last, last_only=last_only, pack=packing)  # [b, vocab]
            two = final.gather(1, d.cand)  # [b, 2]
            outs.append(two[:, 0] - two[:, 1])
            order.append(piece)
    out = torch.cat(outs)
    if chunks <= 1 or pack:  # in row order already
        return out
    return out[torch.argsort(torch.cat(order))]


def ablated_margin(model: GPT, data: PairData, gates: dict[str, torch.Tensor], values: dict[str, torch.Tensor], *,
                   freeze_norms: bool = False, chunks: int = 1, pack: bool = False) -> torch.Tensor:
    """:func:`pair_margin` with ``gates`` applied (pruned nodes take ``values``); with ``freeze_norms`` every RMSNorm
    keeps the full model's scale of the same prompt (one extra clean forward per batch, padded: ``chunks`` and
    ``pack`` then do not apply)."""
    if not freeze_norms:
        with ablate(model, gates, values):
            return pair_margin(model, data, chunks=chunks, pack=pack)
    outs = []
    for i in range(0, len(data), 128):
        d = data.subset(torch.arange(i, min(i + 128, len(data))))
        with torch.no_grad(), record_norm_scales(model) as scales:
            model(d.tokens, positions=d.last, last_only=True)
        with frozen_norms(model, scales), ablate(model, gates, values):
            outs.append(pair_margin(model, d, batch_size=len(d)))
    return torch.cat(outs)


def attribution_scores(model: GPT, data: PairData, sites: dict[str, int], gates: dict[str, torch.Tensor],
                       values: dict[str, torch.Tensor], *, freeze_norms: bool = False,
                       batch_size: int = 64) -> torch.Tensor:
    """|d mean task loss / d gate| of every node (site order) at ``gates``: the first-order change of the loss when
    the node alone is switched (ablated where its gate is 1, restored where it is 0), i.e. |sum over positions of
    (act - value) * grad| averaged over ``data``'s prompts. Model weights are left untouched."""
    g = {n: gates[n].detach().clone().float().requires_grad_(True) for n in sites}
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for i in range(0, len(data), batch_size):
            d = data.subset(torch.arange(i, min(i + batch_size, len(data))))
            margin = ablated_margin(model, d, g, values, freeze_norms=freeze_norms)
            (F.softplus(-margin).sum() / len(data)).backward()
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return torch.cat([g[n].grad.abs() for n in sites])


def calibrate(margin: torch.Tensor, cand: torch.Tensor, steps: int = 16) -> tuple[dict, float]:
    """Fit a logit scale and a per-candidate-token logit bias (LBFGS): margin' = a * margin + b[target] - b[distractor].

    The bias depends on the token, never on which token is correct, so it cannot leak the label; a single shift of
    every logit would cancel in the two-way softmax. Only tokens that are a candidate in at least a quarter of the
    prompts get a bias (a task's fixed candidates such as `")`/`')`; not the many variable names of tasks like
    ``class_init``, which would otherwise give one free parameter per name). ``a = exp(log_a) > 0``.
    Returns ({"scale", "bias": {id: b}}, calibrated loss); no calibration if the fit does not lower the loss.
    """
    margin = margin.detach().double()
    ids, counts = torch.unique(cand, return_counts=True)
    ids = ids[counts * 4 >= len(cand)]
    onehot = (cand[..., None] == ids).double()  # [n, 2, n_ids]
    diff = onehot[:, 0] - onehot[:, 1]  # [n, n_ids]: +1 target, -1 distractor
    params = torch.zeros(1 + len(ids), dtype=torch.float64, requires_grad=True)

    def calibrated(p):
        return p[0].exp() * margin + diff @ p[1:]

    opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.softplus(-calibrated(params)).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        loss = float(F.softplus(-calibrated(params)).mean())
        plain = float(F.softplus(-margin).mean())
    if not math.isfinite(loss) or loss > plain:
        return {"scale": 1.0, "bias": {}}, plain
    p = params.detach()
    return {"scale": float(p[0].exp()), "bias": {int(i): float(b) for i, b in zip(ids, p[1:])}}, loss


def apply_calibration(margin: torch.Tensor, cand: torch.Tensor, calib: dict | None) -> torch.Tensor:
    """margin' = scale * margin + bias[target] - bias[distractor] (``calib`` from :func:`calibrate`)."""
    if not calib:
        return margin
    bias = calib.get("bias", {})
    b = torch.tensor([[bias.get(int(t), bias.get(str(int(t)), 0.0)) for t in row] for row in cand.tolist()],
                     dtype=margin.dtype)
    return calib["scale"] * margin + b[:, 0] - b[:, 1]
