"""P1's weight-sparse training recipe (§2.1, A.2): per-matrix top-k projection, L0 anneal, sharkfin lr.

After every optimizer step each sparse tensor keeps its ``ceil(frac * numel)`` largest-magnitude entries, the same
fraction for every weight matrix (embeddings follow their own fraction, P1's ``pfrac / ef`` bookkeeping), plus the
top ``min_nonzero_per_unit`` inputs of every neuron / q, k, v channel and outputs of every neuron / v channel
(P1 A.2: "never leave a neuron with < 4 nonzeros"). Gradients and Adam moments stay dense (P1 fn. 5).

The selection uses a threshold (the k-th largest |W| by a selection, ``model.kth_largest``), not a sort (P1 App. B:
top-k by radix sort is slow).

Example::

    sp = SparsityConfig(weight_nonzero_frac=1/16)
    proj = Projector(model, sp, total_steps=3000)
    hooks = proj.train_hooks()         # pass to sparsecirc.core.train.train(..., hooks=hooks)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sparsecirc.core.config import SparsityConfig
from sparsecirc.core.model import kth_largest
from sparsecirc.core.recipe import TrainHooks


def l0_fraction(step: int, total_steps: int, target: float, cfg: SparsityConfig) -> float:
    """Kept fraction at ``step``: 1 before the anneal, linear to ``target`` over the window, then ``target``."""
    p = step / max(1, total_steps)
    if p <= cfg.anneal_start_frac or target >= 1.0:
        return 1.0
    if p >= cfg.anneal_end_frac:
        return target
    t = (p - cfg.anneal_start_frac) / (cfg.anneal_end_frac - cfg.anneal_start_frac)
    return 1.0 + (target - 1.0) * t


def sharkfin_factor(step: int, total_steps: int, cfg: SparsityConfig) -> float:
    """P1 Fig. 11 / [C-train]: lr multiplier sqrt(L0_target / L0_now); reaches 1 when the anneal ends."""
    if not cfg.lr_scale_with_l0:
        return 1.0
    target = cfg.weight_nonzero_frac
    return math.sqrt(target / l0_fraction(step, total_steps, target, cfg))


def topk_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest-|w| entries, by threshold (a selection, not a full sort)."""
    n = w.numel()
    if k >= n:
        return torch.ones_like(w, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(w, dtype=torch.bool)
    a = w.detach().abs().flatten()
    thr = kth_largest(a, k)[0]  # the k-th largest magnitude
    mask = a >= thr
    extra = int(mask.sum()) - k
    if extra > 0:  # ties at the threshold: drop the surplus tied entries deterministically (lowest index first)
        tied = torch.nonzero(a == thr).flatten()
        mask[tied[:extra]] = False
    return mask.view_as(w)


def unit_protect_mask(w: torch.Tensor, j: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Mask keeping the top-``j`` |w| entries along each ``dim`` in ``dims`` (per-unit protection)."""
    keep = torch.zeros_like(w, dtype=torch.bool)
    for d in dims:
        jj = min(j, w.shape[d])
        if jj > 0:
            idx = w.detach().abs().topk(jj, dim=d).indices
            keep.scatter_(d, idx, True)
    return keep


@dataclass
class SparseTensor:
    name: str
    param: nn.Parameter
    kind: str  # "matrix" | "embed" | "bias"
    protect_dims: tuple[int, ...]  # dims along which top-j entries are always kept (1 = inputs of a row unit)


def sparse_tensors(model: nn.Module, cfg: SparsityConfig) -> list[SparseTensor]:
    """The tensors the projection touches and how each is protected.

    Linear weights are [out, in]: a row is a unit's inputs, a column a unit's outputs. P1 A.2 / [C-train] protect
    the inputs of every neuron and q/k/v channel (rows of W_in, W_Q, W_K, W_V) and the outputs of every neuron and
    v channel (columns of W_out, W_O). Norm gains, sink logits and the bigram table are never sparse (P1 A.1).
    """
    out = []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 2)
        if name in ("embed.weight", "pos_embed.weight", "unembed.weight"):
            out.append(SparseTensor(name, p, "embed", ()))
        elif p.dim() == 2 and len(leaf) >= 2 and leaf[-2] in ("W_Q", "W_K", "W_V", "W_in"):
            out.append(SparseTensor(name, p, "matrix", (1,)))
        elif p.dim() == 2 and len(leaf) >= 2 and leaf[-2] in ("W_O", "W_out"):
            out.append(SparseTensor(name, p, "matrix", (0,)))
        elif cfg.sparsify_biases and name.endswith(".bias") and p.dim() == 1:
            out.append(SparseTensor(name, p, "bias", ()))
    return out


class Projector:
    """Applies the anneal and the projection; hands ``TrainHooks`` to the training loop."""

    def __init__(self, model: nn.Module, cfg: SparsityConfig, total_steps: int):
        self.model, self.cfg, self.total_steps = model, cfg, total_steps
        self.tensors = sparse_tensors(model, cfg)

    def fractions(self, step: int) -> dict[str, float]:
        c = self.cfg
        emb = c.embed_nonzero_frac if c.embed_nonzero_frac is not None else c.weight_nonzero_frac
        return {"matrix": l0_fraction(step, self.total_steps, c.weight_nonzero_frac, c),
                "embed": l0_fraction(step, self.total_steps, emb, c),
                "bias": l0_fraction(step, self.total_steps, c.weight_nonzero_frac, c)}

    @torch.no_grad()
    def project(self, step: int) -> dict[str, int]:
        """Zero all but the top entries of each sparse tensor at ``step``'s fraction; returns nonzeros by name."""
        fr = self.fractions(step)
        counts = {}
        for t in self.tensors:
            f = fr[t.kind]
            w = t.param
            if f >= 1.0:
                counts[t.name] = int((w != 0).sum())
                continue
            keep = topk_mask(w, math.ceil(f * w.numel()))
            if t.protect_dims and self.cfg.min_nonzero_per_unit:
                keep |= unit_protect_mask(w, self.cfg.min_nonzero_per_unit, t.protect_dims)
            w.mul_(keep)
            counts[t.name] = int(keep.sum())
        return counts

    def train_hooks(self):
        return TrainHooks(lr_factor=lambda s: sharkfin_factor(s, self.total_steps, self.cfg),
                          after_step=lambda _m, s: self.project(s + 1))

    def nonzero_fraction(self) -> dict[str, float]:
        return {t.name: float((t.param != 0).float().mean()) for t in self.tensors}
