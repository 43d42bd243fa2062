"""P1's bridges (§2.3, §3.3, A.3-A.4; digest "Bridges"): a weight-sparse model as a handle on a dense one.

A *site* is a sublayer read: site ``2l`` is the residual stream entering layer ``l``'s attention, ``2l + 1`` the one
entering its MLP, ``2L`` the one entering the final read (``site_names``). At every site a bridge has an encoder
``f_i``: dense residual -> sparse residual (linear, then AbsTopK at the sparse model's activation keep fraction)
and a decoder ``g_i``: sparse residual -> dense residual (linear). Trained with P1's loss (A.3)::

    L = CE(sparse) + w_nmse * sum_i [NMSE(f_i(h^d_i), h^s_i) + NMSE(g_i(h^s_i), h^d_i)]
                   + w_kl   * sum_i [KL(y^d || sparse suffix from i on f_i(h^d_i)) + KL(y^d || dense suffix from i
                                     on g_i(h^s_i))]

against a frozen dense model. P1 gives neither the weights nor the NMSE normaliser; ours (kept in the config):
weights 1 (as a public re-implementation uses), NMSE = squared error over the target's variance about its batch
mean (the fraction of variance unexplained, so a residual stream's constant offset is not credited), KL on a random
subset of positions per row (``kl_positions``; the unembedding of 2 x (2L + 1) hybrid passes is most of a step).

The forward passes here are functional, over :class:`sparsecirc.core.model.GPT`'s own modules (its block hook points
are not called): :func:`residuals`, :func:`run_from` (a suffix from a site, optionally with a vector added to that
site's normalised read: P1's steering), :class:`Hybrid` (a prefix of one model, a bridge, a suffix of the other, as
a GPT-like module the task evaluation accepts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsecirc.core.model import GPT, abs_topk, beyond_p1
from sparsecirc.core.recipe import TrainHooks


# --- sites and functional passes ----------------------------------------------------------------------------
def n_sites(model: GPT) -> int:
    """2 x n_layer + 1: every attention read, every MLP read and the final read."""
    return 2 * model.cfg.n_layer + 1


def site_names(n_layer: int) -> list[str]:
    """``["L0.attn", "L0.mlp", ..., "final"]``."""
    return [f"L{i // 2}.{'attn' if i % 2 == 0 else 'mlp'}" for i in range(2 * n_layer)] + ["final"]


def site_read(model: GPT, i: int):
    """The residual read (RMSNorm [+ AbsTopK]) module of site ``i``."""
    L = model.cfg.n_layer
    if not 0 <= i <= 2 * L:
        raise IndexError(f"site {i} is outside 0..{2 * L} for a {L}-layer model")
    if i == 2 * L:
        return model.ln_final
    block = model.blocks[i // 2]
    return block.ln1 if i % 2 == 0 else block.ln2


def check_functional(model: GPT) -> None:
    """Refuse a model whose block these functional passes do not write out (``core.model.beyond_p1``)."""
    extra = beyond_p1(model.cfg)
    if extra:
        raise ValueError(f"bridges: the functional passes follow P1's block; this model also sets {extra}")


def embed(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream at site 0: token (+ position) embeddings."""
    check_functional(model)
    x = model.embed(tokens)
    if model.pos_embed is not None:
        x = x + model.pos_embed(torch.arange(tokens.shape[1], device=tokens.device))[None]
    return x


def sublayer(model: GPT, i: int, x: torch.Tensor, read_delta: torch.Tensor | None = None) -> torch.Tensor:
    """The residual stream after site ``i``'s sublayer (``i < 2L``); ``read_delta`` is added to its read."""
    check_functional(model)
    block = model.blocks[i // 2]
    read = site_read(model, i)(x)
    if read_delta is not None:
        read = read + read_delta
    if i % 2 == 0:
        return x + block.write(block.attn(read), "attn_out")
    return x + block.write(block.mlp(read), "mlp_out")


def unembed(model: GPT, x: torch.Tensor, tokens: torch.Tensor, read_delta: torch.Tensor | None = None,
            positions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits from the residual stream at the final site; with ``positions`` [B, P] only those positions."""
    if positions is not None:
        x = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        tokens = tokens.gather(1, positions)
        read_delta = None if read_delta is None else read_delta.gather(
            1, positions[..., None].expand(-1, -1, read_delta.shape[-1]))
    read = model.ln_final(x)
    if read_delta is not None:
        read = read + read_delta
    logits = model.unembed(read)
    return logits + model.bigram[tokens] if model.bigram is not None else logits


def residuals(model: GPT, tokens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(the residual stream at every site [2L + 1 tensors of B x T x d_model], the logits)."""
    hs = [embed(model, tokens)]
    for i in range(2 * model.cfg.n_layer):
        hs.append(sublayer(model, i, hs[-1]))
    return hs, unembed(model, hs[-1], tokens)


def run_from(model: GPT, i: int, x: torch.Tensor, tokens: torch.Tensor, read_delta: torch.Tensor | None = None,
             positions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of ``model``'s suffix from site ``i`` on the residual stream ``x`` at that site; ``read_delta``
    (B x T x d_model) is added to site ``i``'s read only (P1's steering: the post-norm read node)."""
    L2 = 2 * model.cfg.n_layer
    for j in range(i, L2):
        x = sublayer(model, j, x, read_delta if j == i else None)
    return unembed(model, x, tokens, read_delta if i == L2 else None, positions)


# --- the bridges ------------------------------------------------------------------------------------------------
class Bridges(nn.Module):
    """One encoder (dense -> sparse: linear + AbsTopK) and one decoder (sparse -> dense: linear) per site."""

    def __init__(self, sites: int, d_dense: int, d_sparse: int, keep_frac: float | None):
        super().__init__()
        if keep_frac is not None and not 0 < keep_frac <= 1:
            raise ValueError(f"keep_frac must be in (0, 1] or None, got {keep_frac}")
        self.keep_frac = keep_frac
        self.enc = nn.ModuleList(nn.Linear(d_dense, d_sparse) for _ in range(sites))
        self.dec = nn.ModuleList(nn.Linear(d_sparse, d_dense) for _ in range(sites))

    @classmethod
    def between(cls, dense: GPT, sparse: GPT) -> "Bridges":
        """Bridges for a (dense, sparse) pair of equal depth; AbsTopK at the sparse model's keep fraction."""
        if dense.cfg.n_layer != sparse.cfg.n_layer:
            raise ValueError(f"bridged models need the same depth: dense {dense.cfg.n_layer} layers, sparse "
                             f"{sparse.cfg.n_layer}")
        if dense.cfg.d_vocab != sparse.cfg.d_vocab:
            raise ValueError("bridged models need the same vocabulary")
        return cls(n_sites(dense), dense.cfg.d_model, sparse.cfg.d_model, sparse.cfg.act_keep_frac)

    def encode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        z = self.enc[i](h)
        return abs_topk(z, self.keep_frac) if self.keep_frac is not None else z

    def decode(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.dec[i](h)

    @torch.no_grad()
    def fit_least_squares(self, hd: list[torch.Tensor], hs: list[torch.Tensor], ridge: float = 1e-3) -> None:
        """Initialise every encoder and decoder by ridge regression on one batch of residuals (a warm start; the
        training that follows is what counts)."""
        for i, (d, s) in enumerate(zip(hd, hs)):
            for lin, x, y in ((self.enc[i], d, s), (self.dec[i], s, d)):
                x, y = x.reshape(-1, x.shape[-1]).double(), y.reshape(-1, y.shape[-1]).double()
                mx, my = x.mean(0), y.mean(0)
                xc, yc = x - mx, y - my
                a = xc.T @ xc + ridge * xc.pow(2).sum() / len(xc) * torch.eye(x.shape[1], dtype=x.dtype)
                w = torch.linalg.solve(a, xc.T @ yc)  # [d_in, d_out]
                lin.weight.copy_(w.T.float())
                lin.bias.copy_((my - mx @ w).float())


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error over the target's variance about its mean over the batch's tokens (1 = predicting the mean)."""
    t = target.reshape(-1, target.shape[-1]).float()
    err = (pred.reshape(-1, pred.shape[-1]).float() - t).pow(2).sum(-1).mean()
    return err / (t - t.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)


def kl(logp_ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(ref || model), mean over positions; ``logp_ref`` already log-softmaxed."""
    logq = F.log_softmax(logits.float(), -1)
    return (logp_ref.exp() * (logp_ref - logq)).sum(-1).mean()


@dataclass
class BridgeLoss:
    """Weights of P1's bridge loss terms and the KL position subsample (None: every position)."""

    w_ce: float = 1.0
    w_nmse: float = 1.0
    w_kl: float = 1.0
    kl_positions: int | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> "BridgeLoss":
        unknown = set(d or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown bridge-loss settings {sorted(unknown)}; "
                             f"known: {sorted(cls.__dataclass_fields__)}")
        return cls(**(d or {}))


def bridge_losses(dense: GPT, sparse: GPT, bridges: Bridges, batch: torch.Tensor, lc: BridgeLoss,
                  ce: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Every term of P1's bridge loss on ``batch`` [B, T + 1] (``ce``: the sparse model's CE if already computed).
    Returns ``ce``, ``nmse_enc``, ``nmse_dec``, ``kl_d2s``, ``kl_s2d`` (each summed over sites) and ``total``."""
    x, y = batch[:, :-1], batch[:, 1:]
    with torch.no_grad():
        hd, yd = residuals(dense, x)
    hs, ys = residuals(sparse, x)
    if ce is None:
        ce = F.cross_entropy(ys.float().flatten(0, 1), y.flatten())
    B, T = x.shape
    pos = None
    if lc.kl_positions is not None and lc.kl_positions < T:
        pos = torch.stack([torch.randperm(T, generator=generator)[:lc.kl_positions] for _ in range(B)]).sort(1).values
        yd = yd.gather(1, pos[..., None].expand(-1, -1, yd.shape[-1]))
    logp_d = F.log_softmax(yd.float(), -1)
    zero = ce.new_zeros(())
    out = {"nmse_enc": zero, "nmse_dec": zero, "kl_d2s": zero, "kl_s2d": zero}
    for i in range(n_sites(dense)):
        e, d = bridges.encode(i, hd[i]), bridges.decode(i, hs[i])
        out["nmse_enc"] = out["nmse_enc"] + nmse(e, hs[i])
        out["nmse_dec"] = out["nmse_dec"] + nmse(d, hd[i])
        out["kl_d2s"] = out["kl_d2s"] + kl(logp_d, run_from(sparse, i, e, x, positions=pos))
        out["kl_s2d"] = out["kl_s2d"] + kl(logp_d, run_from(dense, i, d, x, positions=pos))
    out["ce"] = ce
    out["total"] = lc.w_ce * ce + lc.w_nmse * (out["nmse_enc"] + out["nmse_dec"]) + \
        lc.w_kl * (out["kl_d2s"] + out["kl_s2d"])
    return out


def bridge_hooks(dense: GPT, bridges: Bridges, lc: BridgeLoss, *, freeze_sparse: bool):
    """``hooks`` for :func:`sparsecirc.core.train.train`: the objective is P1's bridge loss, the bridges train with
    the sparse model (or alone: ``freeze_sparse``), the dense model never (frozen here), and every term is logged.
    The KL positions are drawn from torch's global generator, whose state the checkpoints carry (resume-exact)."""
    dense.eval().requires_grad_(False)
    last: dict[str, float] = {}

    def make(model: GPT) -> TrainHooks:
        if freeze_sparse:
            model.requires_grad_(False)

        def objective(m, batch, ce):
            parts = bridge_losses(dense, m, bridges, batch, lc, ce=None if freeze_sparse else ce)
            last.update({k: float(v.detach()) for k, v in parts.items() if k != "ce"})
            return parts["total"]

        return TrainHooks(objective=objective, log=lambda _s: dict(last), modules={"bridges": bridges})
    return make


# --- hybrids and steering -----------------------------------------------------------------------------------------
class Hybrid(nn.Module):
    """``prefix`` up to site ``i``, the bridge (encode: dense -> sparse, decode: sparse -> dense), then ``suffix``;
    called like a GPT (``cfg`` is the suffix model's), so the task evaluation accepts it. ``i=None``: the prefix
    model alone."""

    def __init__(self, prefix: GPT, suffix: GPT, bridges: Bridges, i: int | None, direction: str):
        super().__init__()
        if direction not in ("d2s", "s2d"):
            raise ValueError(f"direction must be 'd2s' (dense prefix) or 's2d' (sparse prefix), not {direction!r}")
        self.prefix, self.suffix, self.bridges, self.i, self.direction = prefix, suffix, bridges, i, direction
        self.cfg = suffix.cfg

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if self.i is None:
            return self.prefix(tokens, positions=positions)
        x = embed(self.prefix, tokens)
        for j in range(self.i):
            x = sublayer(self.prefix, j, x)
        x = self.bridges.encode(self.i, x) if self.direction == "d2s" else self.bridges.decode(self.i, x)
        pos = None if positions is None else positions[:, None]
        logits = run_from(self.suffix, self.i, x, tokens, positions=pos)
        return logits if positions is None else logits[:, 0]


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square over the last dimension, kept: [..., 1]."""
    return x.float().pow(2).mean(-1, keepdim=True).sqrt()


def steering_basis(dense: GPT, sparse: GPT, site: int, actual: torch.Tensor,
                   counterfactual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :func:`steering_delta` needs from the two models, for any channels and directions at ``site``:
    the change of every sparse read channel (counterfactual - actual) taken back to the sparse residual stream
    (times rms(h^s) / the sparse norm's gain) [B, T, d_sparse], the dense norm's gain [d_dense] and rms(h^d)
    [B, T, 1]. Three forward passes; compute it once per prompt set and pass it as ``basis``."""
    with torch.no_grad():
        hs_a, _ = residuals(sparse, actual)
        hs_c, _ = residuals(sparse, counterfactual)
        hd_a, _ = residuals(dense, actual)
        read_s = site_read(sparse, site)
        change = (read_s(hs_c[site]) - read_s(hs_a[site])) * rms(hs_a[site]) / read_s.norm.weight
        return change, site_read(dense, site).norm.weight, rms(hd_a[site])


def steering_delta(dense: GPT, sparse: GPT, bridges: Bridges, site: int, channel, actual: torch.Tensor,
                   counterfactual: torch.Tensor, direction: torch.Tensor | None = None,
                   basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """P1's intervention (A.4) as a vector to add to the dense model's read at ``site``, per token [B, T, d_dense].

    Δ = the sparse read's ``channel`` on ``counterfactual`` tokens minus on ``actual`` tokens, at every position;
    it is taken back to the sparse residual stream (times rms(h^s) / the sparse norm's gain of the channel), mapped
    by the decoder's column for the channel (or ``direction``, e.g. a random control of the same norm), and brought
    to the dense read (times the dense norm's gain / rms(h^d)): the ratio of residual RMS norms P1 scales by.
    ``channel`` may be a list of channels: their changes are mapped together (each through its own column;
    ``direction`` is then [d_dense, len(channel)]). ``basis``: :func:`steering_basis` of the same models, site and
    prompts, computed once (the prompts are then not run again)."""
    chans = [channel] if isinstance(channel, int) else list(channel)
    change, gain_d, rms_d = basis if basis is not None else steering_basis(dense, sparse, site, actual, counterfactual)
    with torch.no_grad():
        cols = bridges.dec[site].weight[:, chans] if direction is None else direction.reshape(-1, len(chans))
        return (change[..., chans] @ cols.T) * gain_d / rms_d  # sparse read -> dense residual -> dense read


def steered_logits(dense: GPT, site: int, tokens: torch.Tensor, read_delta: torch.Tensor, strength: float,
                   positions: torch.Tensor) -> torch.Tensor:
    """The dense model's logits at ``positions`` [B] with ``strength * read_delta`` added to site ``site``'s read."""
    with torch.no_grad():
        x = embed(dense, tokens)
        for j in range(site):
            x = sublayer(dense, j, x)
        logits = run_from(dense, site, x, tokens, strength * read_delta, positions=positions[:, None])
    return logits[:, 0]
