"""The P1-style GPT: pre-norm RMSNorm blocks, untied embeddings, GELU MLP, optional AbsTopK / sink / bigram table.

Block (P1 A.1): ``x += attn(norm(x)); x += mlp(norm(x))``. With ``act_keep_frac`` set, AbsTopK keeps the largest-|x|
entries at P1's 8 sites; q, k and v are top-k'd across all heads concatenated (P1 A.1, [C]), not per head.
Every named activation passes a :class:`~sparsecirc.core.hooks.HookPoint` (names in ``hooks.HOOK_TABLE``).
Options for imported openai/circuit_sparsity checkpoints (``ModelConfig.norm`` ... ``unembed_bias``; see
``sparsecirc.official``) default to the block above: LayerNorm, a dtype-dependent RMSNorm eps, a ReLU MLP, a
residual activation and AbsTopK on the residual stream, concatenated position channels, an unembedding bias.

Example::

    model = GPT(ModelConfig(n_layer=2, d_model=128))
    logits = model(tokens)                 # tokens [batch, pos] -> logits [batch, pos, d_vocab]
    loss = model.loss(tokens)              # mean next-token cross-entropy
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsecirc.core.attention import causal_attention, causal_mask, sink_sdpa
from sparsecirc.core.config import ModelConfig
from sparsecirc.core.gated_attention import block_gated_attention
from sparsecirc.core.gating import gate_mask
from sparsecirc.core.hooks import HookPoint
from sparsecirc.core.packing import Packed


def kth_largest(a: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest entry of ``a`` along the last dim: [..., 1] (no gradient).

    On CPU a row-wise selection (``numpy.partition``, introselect) is several times faster than ``torch.topk`` at
    our widths (128-512), which dominated the pruner's mask steps; elsewhere ``torch.topk``. bf16 / fp16 rows (under
    autocast) are selected in float32, which holds them exactly, and the value is returned in their dtype; integer
    rows (int16 / int32) by the same selection."""
    a = a.detach()
    n = a.shape[-1]
    if a.device.type == "cpu" and a.dtype in (torch.bfloat16, torch.float16) and a.numel():
        return kth_largest(a.float(), k).to(a.dtype)
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64, torch.int16, torch.int32) and a.numel():
        rows = a.reshape(-1, n).numpy()
        thr = torch.from_numpy(np.partition(rows, n - k, axis=-1)[:, n - k:n - k + 1])  # a view: no column copy
        return thr.view(*a.shape[:-1], 1)
    return a.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)


def abs_topk(x: torch.Tensor, frac: float) -> torch.Tensor:
    """Keep the ``int(frac * dim)`` largest-magnitude entries of the last dim, zero the rest (P1's AbsTopK; as in
    circuit_sparsity, ``int(frac * dim) = 0`` keeps nothing).

    Implemented as ``x * (|x| >= k-th largest |x|)``, the 0/1 factor made in x's dtype: the gradient passes to kept
    entries only. Entries tied with the k-th largest magnitude are all kept: at zero (a row with fewer than k nonzero
    entries) that changes no value; at a nonzero magnitude (improbable with float activations) the row keeps more
    than k entries. bf16 / fp16 input (under autocast) is selected on the int16 bit patterns of |x|, which order like
    the values (|x| has no sign bit), so the kept set is that of a float32 selection without converting the
    activations."""
    k = int(frac * x.shape[-1])
    if k == 0:
        return torch.zeros_like(x)
    if k >= x.shape[-1]:
        return x
    a = x.detach().abs()
    if a.device.type == "cpu" and a.dtype in (torch.bfloat16, torch.float16) and a.numel():
        a = a.view(torch.int16)  # |x| >= 0: its bit pattern orders like its value, and selects without a cast
    keep = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    torch.ge(a, kth_largest(a, k), out=keep)  # 0/1 in x's dtype: one kernel, no bool mask cast at every multiply
    return x * keep


def _visible(T: int, only: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """Causal mask, True where a query may attend: [T, T] for every query position, or [B, 1, 1, T] for one query
    per row at positions ``only`` [B]."""
    if only is None:
        return causal_mask(T, device)
    return (torch.arange(T, device=only.device) <= only[:, None])[:, None, None]


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain (P1: zero keeps its meaning; the gain can fold into the next matrix).

    ``eps`` None takes the input dtype's machine epsilon (``torch.nn.RMSNorm``'s default, circuit_sparsity's).
    ``stats(x)`` is the per-token 1/rms and ``normalize(x, stats)`` applies it (pruning freezes it this way)."""

    def __init__(self, d: int, eps: float | None = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def stats(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]

    def normalize(self, x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return x * stats * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x, self.stats(x))


class LayerNorm(nn.Module):
    """LayerNorm (circuit_sparsity's default norm: eps 1e-5, optional bias); ``stats`` = (mean, 1/std) per token."""

    def __init__(self, d: int, eps: float | None = 1e-5, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.eps = eps

    def _eps(self, x: torch.Tensor) -> float:
        return torch.finfo(x.dtype).eps if self.eps is None else self.eps

    def stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var, mean = torch.var_mean(x, -1, correction=0, keepdim=True)
        return mean, torch.rsqrt(var + self._eps(x))

    def normalize(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        y = (x - stats[0]) * stats[1] * self.weight
        return y + self.bias if self.bias is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self._eps(x))


def make_norm(cfg: ModelConfig, d: int) -> RMSNorm | LayerNorm:
    """The norm ``cfg`` asks for, ``d`` wide."""
    return LayerNorm(d, cfg.norm_eps, cfg.norm_bias) if cfg.norm == "layer" else RMSNorm(d, cfg.norm_eps)


def beyond_p1(cfg: ModelConfig) -> list[str]:
    """The options ``cfg`` sets that change the block beyond P1's (a residual activation, AbsTopK on the residual
    stream, concatenated positions, a ReLU MLP): functional re-implementations of the forward pass
    (``wst.bridges``, ``spa.patching``) refuse a model that uses any of them."""
    resid = cfg.act_keep_frac is not None and any(s.startswith("resid_") for s in cfg.act_sparsity_sites)
    return [name for name, on in (("resid_activation", cfg.resid_activation != "identity"),
                                  ("act_sparsity_sites", resid), ("d_pos_emb", cfg.d_pos_emb is not None),
                                  ("mlp_activation", cfg.mlp_activation != "gelu")) if on]


class ResidRead(nn.Module):
    """A residual read: the norm, then AbsTopK if enabled; ``hook_normalized`` sees the final value (P1 node).

    With ``cfg.d_pos_emb`` (and ``positional``) the read is ``[norm(x), pos_norm(pos)]``: position channels are
    concatenated before AbsTopK, so the read is ``d_model + d_pos_emb`` wide (circuit_sparsity's layout)."""

    def __init__(self, cfg: ModelConfig, keep_frac: float | None, positional: bool = True):
        super().__init__()
        self.norm = make_norm(cfg, cfg.d_model)
        self.pos_norm = make_norm(cfg, cfg.d_pos_emb) if cfg.d_pos_emb and positional else None
        self.keep_frac = keep_frac
        self.hook_normalized = HookPoint()  # [batch, pos, d_model] (d_model + d_pos_emb with position channels)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if self.pos_norm is not None:
            x = torch.cat([x, self.pos_norm(pos)], -1)
        if self.keep_frac is not None:
            x = abs_topk(x, self.keep_frac)
        return self.hook_normalized(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.n_head * cfg.d_head
        self.W_Q = nn.Linear(cfg.d_read, hd, bias=cfg.use_bias)
        self.W_K = nn.Linear(cfg.d_read, hd, bias=cfg.use_bias)
        self.W_V = nn.Linear(cfg.d_read, hd, bias=cfg.use_bias)
        self.W_O = nn.Linear(hd, cfg.d_model, bias=cfg.use_bias)
        # P1 A.1: per-head learnable logit of an always-visible slot with zero value
        self.sink_logit = nn.Parameter(torch.zeros(cfg.n_head)) if cfg.attn_sink else None
        self.hook_q = HookPoint()  # [batch, pos, n_head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, n_head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, n_head, d_head]
        self.hook_pattern = HookPoint()  # [batch, n_head, q_pos, k_pos]
        self.hook_sparse_mask = HookPoint()  # [batch, n_head, q_pos, k_pos] P2 gate (only with attn_gate)
        self.hook_z = HookPoint()  # [batch, pos, n_head, d_head]
        self.gate_density: torch.Tensor | None = None  # [batch, n_head] expected open fraction (with grad)

    def _site(self, x: torch.Tensor, site: str) -> torch.Tensor:
        c = self.cfg
        return abs_topk(x, c.act_keep_frac) if c.act_keep_frac is not None and site in c.act_sparsity_sites else x

    def forward(self, x: torch.Tensor, only: torch.Tensor | None = None, pack: Packed | None = None) -> torch.Tensor:
        """x [B, T, d_model] -> [B, T, d_model]; with ``only`` [B] (one position per row, not with ``attn_gate``)
        queries are formed at those positions alone (keys and values everywhere) and the result is [B, 1, d_model].
        With ``pack`` (:mod:`sparsecirc.core.packing`) x is [1, N, d_model], the prompts' real tokens end to end,
        and ``only`` [B] the packed index of each prompt's last token (result [1, B, d_model])."""
        c = self.cfg
        B, T, _ = x.shape
        if pack is not None:
            xq = x if only is None else x[:, only]
        else:
            xq = x if only is None else x[torch.arange(B, device=x.device), only][:, None]
        Tq = xq.shape[1]
        # top-k over all heads concatenated, then split: [B, T, n_head*d_head] -> [B, T, n_head, d_head]
        q = self.hook_q(self._site(self.W_Q(xq), "attn_q").view(B, Tq, c.n_head, c.d_head))
        k = self.hook_k(self._site(self.W_K(x), "attn_k").view(B, T, c.n_head, c.d_head))
        v = self.hook_v(self._site(self.W_V(x), "attn_v").view(B, T, c.n_head, c.d_head))
        if pack is not None:
            if c.attn_gate or self.hook_pattern.hook_count():
                raise ValueError("Attention: a packed forward has no attention pattern per prompt (attn_gate or a "
                                 "hook on hook_pattern): use the padded forward")
            z = pack.attend(q[0], k[0], v[0], self._mix, last_only=only is not None)[None]  # [1, Tq, H, D]
        else:
            qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [B, n_head, T, d_head]
            if c.attn_gate:
                if only is not None:
                    raise ValueError("Attention: `only` is not supported with attn_gate")
                zh = self._gated(qh, kh, vh)
            else:
                zh = self._mix(qh, kh, vh, only)
            z = zh.transpose(1, 2)
        z = self.hook_z(z)  # [B, Tq, n_head, d_head]
        return self.W_O(z.reshape(B, Tq, c.n_head * c.d_head))

    def _mix(self, qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, only: torch.Tensor | None) -> torch.Tensor:
        """Causal attention (with P1's sink where the model has one): [B, H, Tq, D] queries (Tq = 1 with ``only``
        [B], the query positions), [B, H, T, D] keys and values -> [B, H, Tq, D]. Fused kernels unless a hook
        watches the pattern."""
        c = self.cfg
        B, _, Tq, _ = qh.shape
        T = kh.shape[2]
        if self.sink_logit is None and not self.hook_pattern.hook_count():
            return causal_attention(qh, kh, vh, None) if only is None else \
                F.scaled_dot_product_attention(qh, kh, vh, attn_mask=_visible(T, only))  # fast path, same maths
        if not self.hook_pattern.hook_count():  # fast paths, same maths
            return causal_attention(qh, kh, vh, self.sink_logit) if only is None else \
                sink_sdpa(qh, kh, vh, self.sink_logit, _visible(T, only, qh.device))
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(c.d_head)  # [B, n_head, Tq, T]
        scores = scores.masked_fill(~_visible(T, only, qh.device), float("-inf"))
        if self.sink_logit is not None:
            sink = self.sink_logit.view(1, -1, 1, 1).expand(B, -1, Tq, 1).to(scores.dtype)
            pattern = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :T]  # sink value is 0
        else:
            pattern = torch.softmax(scores, dim=-1)
        return self.hook_pattern(pattern) @ vh

    def _gated(self, qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        """P2's gated attention: y_i = sum_j softmax_j(s_ij) * A_ij * v_j, no renormalisation.

        Gate logit g = s + b from the same scaled score. Training: A = 1[g + logistic noise > 0] forward,
        gradient of sigmoid(g + noise) backward (straight-through, temperature 1). Eval: A = 1[g > 0].
        With ``cfg.attn_gate_block`` (and no hook on the pattern or the gate) the same maths runs in query blocks
        (:mod:`sparsecirc.core.gated_attention`).
        """
        c = self.cfg
        T = qh.shape[2]
        if c.attn_gate_block and not (self.hook_pattern.hook_count() or self.hook_sparse_mask.hook_count()):
            zh, self.gate_density = block_gated_attention(qh, kh, vh, c.attn_gate_bias, sample=self.training,
                                                          block=c.attn_gate_block)
            return zh
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(c.d_head)  # [B, n_head, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=qh.device).tril()
        pattern = self.hook_pattern(torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1))
        mask, self.gate_density = gate_mask(scores, causal, c.attn_gate_bias, sample=self.training)
        return (pattern * self.hook_sparse_mask(mask)) @ vh


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Linear(cfg.d_read, cfg.d_mlp, bias=cfg.use_bias)
        self.W_out = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.use_bias)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        h = self.hook_pre(self.W_in(x))
        h = F.relu(h) if c.mlp_activation == "relu" else F.gelu(h)
        if c.act_keep_frac is not None and "mlp_neuron" in c.act_sparsity_sites:
            h = abs_topk(h, c.act_keep_frac)
        return self.W_out(self.hook_post(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        sites = cfg.act_sparsity_sites if cfg.act_keep_frac is not None else ()
        self.ln1 = ResidRead(cfg, cfg.act_keep_frac if "attn_in" in sites else None)
        self.attn = Attention(cfg)
        self.ln2 = ResidRead(cfg, cfg.act_keep_frac if "mlp_in" in sites else None)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model] (post-AbsTopK: P1's residual write)
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self._out_sites = {s: cfg.act_keep_frac for s in ("attn_out", "mlp_out") if s in sites}
        self._resid_sites = {s: cfg.act_keep_frac for s in ("resid_post_attn", "resid_post_mlp") if s in sites}

    def write(self, x: torch.Tensor, site: str) -> torch.Tensor:
        """A sublayer output as it enters the residual stream (AbsTopK where the config sparsifies that site)."""
        return abs_topk(x, self._out_sites[site]) if site in self._out_sites else x

    def resid(self, x: torch.Tensor, site: str) -> torch.Tensor:
        """The residual stream after an add: ``resid_activation``, then AbsTopK at ``resid_post_*`` if enabled."""
        if self.cfg.resid_activation == "relu":
            x = F.relu(x)
        return abs_topk(x, self._resid_sites[site]) if site in self._resid_sites else x

    def forward(self, x: torch.Tensor, only: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, pack: Packed | None = None) -> torch.Tensor:
        """x [B, T, d_model] -> the same; with ``only`` [B], only those positions go on: [B, 1, d_model].
        ``pos`` [B, T, d_pos_emb]: the position channels concatenated to each read (with ``cfg.d_pos_emb``).
        With ``pack``, x is [1, N, d_model] (packed prompts) and ``only`` packed indices (see :class:`Attention`)."""
        x = self.hook_resid_pre(x)
        a = self.attn(self.ln1(x, pos), only, pack)
        if only is not None and pack is not None:
            x = x[:, only]
            pos = pos[:, only] if pos is not None else None
        elif only is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            x = x[rows, only][:, None]
            pos = pos[rows, only][:, None] if pos is not None else None
        x = self.hook_resid_mid(self.resid(x + self.hook_attn_out(self.write(a, "attn_out")), "resid_post_attn"))
        x = x + self.hook_mlp_out(self.write(self.mlp(self.ln2(x, pos)), "mlp_out"))
        return self.hook_resid_post(self.resid(x, "resid_post_mlp"))


class GPT(nn.Module):
    """Decoder-only transformer of P1 A.1 with TransformerLens-style hook points."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_pos_emb or cfg.d_model) if cfg.pos_embed else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_final = ResidRead(cfg, None, positional=False)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=cfg.use_bias if cfg.unembed_bias is None
                                 else cfg.unembed_bias)
        # P1 A.1: dense bigram table, the current token's row added to the logits; never sparsified
        self.bigram = nn.Parameter(torch.rand(cfg.d_vocab, cfg.d_vocab) * 0.02) if cfg.bigram_table else None
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model] (d_pos_emb when concatenated)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """normal(0, init_std); output projections init_std / sqrt(2 n_layer) (GPT-2, [C]); biases zero."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif name.endswith(("W_O.weight", "W_out.weight")):
                p.normal_(0.0, std / math.sqrt(2 * self.cfg.n_layer))
            elif p.dim() == 2 and name != "bigram":
                p.normal_(0.0, std)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                last_only: bool = False, pack: Packed | None = None) -> torch.Tensor:
        """tokens [batch, pos] (int) -> logits [batch, pos, d_vocab].

        With ``positions`` [batch] (one position per row), only those positions are unembedded and the result is
        [batch, d_vocab]: task losses need the last prompt position only, and the unembedding is a large part of
        a small model's cost. ``last_only`` (with ``positions``; ignored with ``attn_gate``) goes further: the last
        block forms queries, MLP and residual writes at those positions alone (keys and values everywhere), so
        the logits are the same and the last block costs a fraction; its hooks then see one position per row.
        ``pack`` (with ``positions``, the prompts' last tokens; see :mod:`sparsecirc.core.packing`) runs the
        prompts' real tokens end to end, without padding: the same [batch, d_vocab] logits up to float rounding,
        while hooks see [1, N, ...] activations in the packed order.
        """
        if tokens.dim() != 2:
            raise ValueError(f"GPT expects tokens of shape [batch, pos], got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds n_ctx={self.cfg.n_ctx}")
        if tokens.is_floating_point() or tokens.is_complex():
            raise ValueError(f"GPT expects integer token ids, got dtype {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab):
            bad = int(tokens.min()) if int(tokens.min()) < 0 else int(tokens.max())
            raise ValueError(f"token id {bad} is outside the model's vocabulary [0, {self.cfg.d_vocab})")
        if pack is not None:
            return self._forward_packed(tokens, positions, last_only, pack)
        x, cat = self._embed(tokens, torch.arange(T, device=tokens.device)[None])
        cut = positions if last_only and positions is not None and not self.cfg.attn_gate else None
        for i, block in enumerate(self.blocks):
            x = block(x, cut if i == len(self.blocks) - 1 else None, cat)
        if positions is not None:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            tokens = tokens[rows, positions][:, None]
            x = x if cut is not None else x[rows, positions][:, None]  # [batch, 1, d_model]
        logits = self._logits(x, tokens)
        return logits[:, 0] if positions is not None else logits

    def _embed(self, ids: torch.Tensor, pos_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token embeddings of ``ids`` [b, t] with positions ``pos_ids`` ([1 or b, t]) added, or kept apart as the
        concatenated position channels (``cfg.d_pos_emb``): (x [b, t, d_model], channels [b, t, d_pos_emb] or None)."""
        x = self.hook_embed(self.embed(ids))
        if self.pos_embed is None:
            return x, None
        pos = self.pos_embed(pos_ids).expand(*ids.shape, -1)
        if self.cfg.d_pos_emb:
            return x, self.hook_pos_embed(pos)
        return x + self.hook_pos_embed(pos), None

    def _logits(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Final read and unembedding of x [b, t, d_model], plus the bigram rows of the tokens ``ids`` [b, t] there."""
        logits = self.unembed(self.ln_final(x))
        return logits + self.bigram[ids] if self.bigram is not None else logits

    def _forward_packed(self, tokens: torch.Tensor, positions: torch.Tensor | None, last_only: bool,
                        pack: Packed) -> torch.Tensor:
        """:meth:`forward` on packed prompts: logits at ``positions`` [batch, d_vocab], rows as in ``tokens``."""
        if positions is None or not torch.equal(positions.long(), pack.lengths[pack.inverse] - 1):
            raise ValueError("GPT: a packed forward needs positions = each prompt's last token, as packed")
        if self.cfg.attn_gate:
            raise ValueError("GPT: a packed forward does not support attn_gate")
        ids = pack.tokens(tokens)[None]  # [1, N]
        x, cat = self._embed(ids, pack.pos.to(tokens.device)[None])  # [1, N, d_model]
        cut = pack.ends if last_only else None
        for i, block in enumerate(self.blocks):
            x = block(x, cut if i == len(self.blocks) - 1 else None, cat, pack)
        x = x if cut is not None else x[:, pack.ends]  # [1, batch, d_model], packed order
        return self._logits(x, ids[:, pack.ends])[0][pack.inverse]

    def loss(self, tokens: torch.Tensor, reduction: str = "mean",
             loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token cross-entropy of ``tokens`` [batch, pos+1].

        ``reduction='none'`` gives [batch, pos]; ``'sum'`` the sum. ``loss_mask`` (bool, [pos] or [batch, pos])
        keeps only some predicted positions (e.g. the answer digits of a toy task) in the mean / sum.
        """
        logits = self(tokens[:, :-1])
        ce = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
        ce = ce.view(tokens.shape[0], -1)  # [batch, pos]
        if reduction == "none":
            return ce
        if loss_mask is not None:
            m = loss_mask.to(ce.dtype).expand_as(ce)
            return (ce * m).sum() if reduction == "sum" else (ce * m).sum() / m.sum()
        return ce.sum() if reduction == "sum" else ce.mean()

    def n_params(self, include_embeddings: bool = True) -> int:
        return sum(p.numel() for n, p in self.named_parameters()
                   if include_embeddings or not n.startswith(("embed", "pos_embed", "unembed", "bigram")))
