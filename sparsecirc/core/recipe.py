"""Recipes plug into the one training loop through :class:`TrainHooks` (P1's weight sparsity, P2's GECO).

Example::

    hooks = compose_hooks(Projector(model, cfg.sparsity, steps).train_hooks(), geco.train_hooks())
    train(cfg, tokens, val_tokens, hooks=hooks)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class TrainHooks:
    """Extension points for recipes (weight sparsity, gating): all optional.

    ``lr_factor(step) -> float`` multiplies the scheduled lr; ``after_step(model, step)`` runs after each
    optimizer step (e.g. a top-k projection); ``objective(model, batch, ce) -> Tensor`` turns the batch's
    cross-entropy into the loss that is backpropagated (default: ce itself), e.g. P2's GECO Lagrangian.
    ``log(step) -> dict`` adds recipe values (lambda, density, ...) to the history's ``extra`` series.
    ``state() -> dict`` / ``load_state(dict)`` carry a recipe's own state (GECO's multiplier) through a
    checkpoint, so a resumed run continues exactly where it stopped. ``modules`` are extra trainable modules
    (P1's bridges): their parameters join the optimizer (same schedule; weight decay on matrices) and the gradient
    RMS handling, and their tensors are checkpointed beside the model (``extra.safetensors``) and restored on resume.
    """

    lr_factor: Callable[[int], float] | None = None
    after_step: Callable[[torch.nn.Module, int], None] | None = None
    objective: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    log: Callable[[int], dict] | None = None
    state: Callable[[], dict] | None = None
    load_state: Callable[[dict], None] | None = None
    modules: dict[str, torch.nn.Module] | None = None


def compose_hooks(first: TrainHooks, second: TrainHooks) -> TrainHooks:
    """Both recipes at once: lr factors multiply, after_step runs first then second, logs merge.

    At most one of them may define ``objective``.
    """
    if first.objective and second.objective:
        raise ValueError("two recipes both define an objective; combine them into one")

    def lr_factor(s):
        return (first.lr_factor(s) if first.lr_factor else 1.0) * (second.lr_factor(s) if second.lr_factor else 1.0)

    def after_step(m, s):
        for h in (first, second):
            if h.after_step:
                h.after_step(m, s)

    def log(s):
        return {**(first.log(s) if first.log else {}), **(second.log(s) if second.log else {})}

    def state():
        return {"first": first.state() if first.state else {}, "second": second.state() if second.state else {}}

    def load_state(d):
        for h, key in ((first, "first"), (second, "second")):
            if h.load_state and d.get(key):
                h.load_state(d[key])

    shared = set(first.modules or {}) & set(second.modules or {})
    if shared:
        raise ValueError(f"two recipes both bring modules named {sorted(shared)}")
    modules = {**(first.modules or {}), **(second.modules or {})} or None
    return TrainHooks(lr_factor=lr_factor, after_step=after_step, objective=first.objective or second.objective,
                      log=log, state=state, load_state=load_state, modules=modules)
