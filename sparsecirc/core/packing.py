"""Right-padded prompts laid end to end: a forward pass without padding rows (the pruner's fast path).

A batch of task prompts of different lengths is padded to its longest prompt; every per-position operation (the
linear maps, norms, AbsTopK selections, node ablations) then also runs on the padding. :class:`Packed` lists the
real tokens of every prompt one after another as a single row ``[1, N, ...]`` (N = the number of real tokens), so
those operations run once, on real tokens only, in one call each instead of one call per chunk of prompts.
Attention is the one operation that needs the prompts apart: :meth:`Packed.attend` pads queries, keys and values
back into groups of prompts of similar length (prompts sorted by length, cut into ``groups`` groups, each padded to
its own longest prompt) and runs the model's usual causal attention per group.

``GPT.forward(tokens, positions, pack=Packed.from_last(positions))`` gives the same logits as the padded forward up
to float rounding; hooks then see activations of shape ``[1, N, ...]`` (``[1, B, ...]`` at the last block's query
positions with ``last_only``), in the packed order (prompts sorted by length): node ablations, which act per
channel, work unchanged; anything that reads positions of a prompt should use the padded forward.

Example::

    pack = Packed.from_last(last, groups=4)
    logits = model(tokens, positions=last, last_only=True, pack=pack)   # [batch, d_vocab], rows as in tokens
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Packed:
    """Where each prompt's real tokens sit once packed (prompts right-padded; prompt b ends at ``last[b]``).

    ``order`` [B]: prompts by increasing length (stable), the packed order; ``inverse`` [B] maps back.
    ``flat`` [N]: index of each packed token into ``tokens[order].flatten()``; ``pos`` [N]: its position in its prompt;
    ``ends`` [B]: the packed index of each prompt's last token (packed order).
    ``groups``: per attention group ``(first prompt, end prompt, first token, end token, longest length)`` in packed
    order, and ``local``: per group, the index of each of its tokens into its ``[prompts * longest]`` padded block.
    """

    order: torch.Tensor
    inverse: torch.Tensor
    flat: torch.Tensor
    pos: torch.Tensor
    ends: torch.Tensor
    lengths: torch.Tensor
    groups: list[tuple[int, int, int, int, int]]
    local: list[torch.Tensor]
    width: int  # the padded batch's width (T)

    @classmethod
    def from_last(cls, last: torch.Tensor, width: int | None = None, groups: int = 4) -> "Packed":
        """The packing of right-padded prompts whose last real token is at ``last`` [B] (``width``: padded T)."""
        if last.dim() != 1 or not len(last):
            raise ValueError(f"Packed.from_last: expected the last positions as a non-empty [batch] tensor, "
                             f"got shape {tuple(last.shape)}")
        if groups < 1:
            raise ValueError(f"Packed.from_last: groups must be >= 1, got {groups}")
        lengths_all = last.long() + 1
        T = int(lengths_all.max()) if width is None else int(width)
        if int(lengths_all.max()) > T or int(lengths_all.min()) < 1:
            raise ValueError(f"Packed.from_last: last positions must lie in [0, {T}), got {last.tolist()}")
        order = torch.argsort(lengths_all, stable=True)
        lengths = lengths_all[order]
        B = len(order)
        starts = torch.arange(B) * T
        flat = torch.cat([s + torch.arange(n) for s, n in zip(starts.tolist(), lengths.tolist())])
        pos = torch.cat([torch.arange(n) for n in lengths.tolist()])
        ends = torch.cumsum(lengths, 0) - 1
        out, local = [], []
        for piece in torch.arange(B).chunk(min(groups, B)):
            r0, r1 = int(piece[0]), int(piece[-1]) + 1
            t0 = int(ends[r0 - 1]) + 1 if r0 else 0
            t1 = int(ends[r1 - 1]) + 1
            longest = int(lengths[r1 - 1])
            out.append((r0, r1, t0, t1, longest))
            local.append(torch.cat([i * longest + torch.arange(n) for i, n in enumerate(lengths[r0:r1].tolist())]))
        return cls(order, torch.argsort(order), flat, pos, ends, lengths, out, local, T)

    @property
    def n_tokens(self) -> int:
        return len(self.flat)

    def tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The real tokens of a right-padded batch [B, T], packed: [N]."""
        if tokens.shape[1] != self.width or tokens.shape[0] != len(self.order):
            raise ValueError(f"Packed: tokens of shape {tuple(tokens.shape)} for a packing of "
                             f"{len(self.order)} prompts of width {self.width}")
        return tokens[self.order].flatten()[self.flat]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mix: Callable, last_only: bool = False
               ) -> torch.Tensor:
        """Attention over packed heads: ``k``, ``v`` [N, H, D]; ``q`` [N, H, D], or [B, H, D] (one query per prompt,
        at its last token) with ``last_only``. ``mix(qh, kh, vh, only)`` is the model's attention on one padded
        group ([b, H, Tq, D] each; ``only`` [b] the query positions or None for every position) returning
        [b, H, Tq, D]. Returns the outputs packed like ``q``."""
        outs = []
        for (r0, r1, t0, t1, longest), idx in zip(self.groups, self.local):
            b = r1 - r0
            kh, vh = (self._pad(t[t0:t1], idx, b, longest) for t in (k, v))
            if last_only:
                z = mix(q[r0:r1, :, None], kh, vh, self.lengths[r0:r1] - 1)  # [b, H, 1, D]
                outs.append(z[:, :, 0])
            else:
                z = mix(self._pad(q[t0:t1], idx, b, longest), kh, vh, None)  # [b, H, longest, D]
                outs.append(z.transpose(1, 2).reshape(b * longest, *z.shape[1:2], z.shape[-1])[idx])
        return torch.cat(outs)

    @staticmethod
    def _pad(t: torch.Tensor, idx: torch.Tensor, b: int, longest: int) -> torch.Tensor:
        """Packed [n, H, D] -> padded [b, H, longest, D] (zeros at padding)."""
        out = t.new_zeros(b * longest, *t.shape[1:]).index_copy(0, idx, t)
        return out.view(b, longest, *t.shape[1:]).transpose(1, 2)
