"""GECO: minimise attention-edge density subject to a cross-entropy constraint (P2 digest §5).

Rezende & Viola (2018, arXiv 1810.00597) as P2 is reported to use it [S]; the update rule is our reconstruction
[R], validated on the addition toy (digest §8)::

    C_t   = CE_t - tau                                   # constraint on this minibatch
    C_ema = alpha * C_ema + (1 - alpha) * C_t            # starts at 0
    lam   = clamp(lam * exp(eta * C_ema), lam_min, lam_max)
    loss  = S_t + lam * C_t                              # S = mean expected open-edge fraction (gating.py)

λ grows while CE > τ (pressure toward the loss) and decays while CE < τ (pressure toward sparsity). The gradient
uses this step's C_t; λ follows the smoothed C_ema and is updated after the optimiser step.

Example::

    geco = GECO(GECOConfig(tau_slack=0.01), reference_ce=dense_ce)     # tau = dense CE + 0.01
    model, hist = train(cfg, tokens, val, init_state=dense.state_dict(), hooks=geco.train_hooks())
    hist.extra["lambda"], hist.extra["density_L0"]
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Callable

import torch

from sparsecirc.core.config import ConfigError, DictConfig
from sparsecirc.core.metrics import per_token_loss
from sparsecirc.core.recipe import TrainHooks


@dataclass(frozen=True)
class GECOConfig(DictConfig):
    """GECO hyperparameters (digest §5 defaults). Give ``tau`` directly, or ``tau_slack`` above a reference CE."""

    tau: float | None = None  # absolute CE bound (nats/token); None: reference CE + tau_slack
    tau_slack: float | None = 0.01  # digest §5: 0.01 nats on the toy, 0.01-0.05 on a small LM
    lambda_init: float = 1.0
    alpha: float = 0.99  # EMA factor of the constraint
    eta: float = 0.05  # multiplicative ascent rate of lambda, per step
    lambda_min: float = 1e-3
    lambda_max: float = 1e4

    def __post_init__(self):
        for f in fields(self):  # YAML reads `1e4` as a string: insist on numbers here, with the field's name
            v = getattr(self, f.name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"GECOConfig.{f.name} must be a number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        if self.tau is None and self.tau_slack is None:
            raise ConfigError("GECOConfig: set tau or tau_slack")
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"GECOConfig.alpha must be in [0, 1), got {self.alpha!r}")
        if not 0.0 < self.lambda_min <= self.lambda_init <= self.lambda_max:
            raise ConfigError("GECOConfig: need 0 < lambda_min <= lambda_init <= lambda_max, got "
                              f"{self.lambda_min!r}, {self.lambda_init!r}, {self.lambda_max!r}")
        if self.eta <= 0:
            raise ConfigError(f"GECOConfig.eta must be > 0, got {self.eta!r}")

    def resolve_tau(self, reference_ce: float | None = None) -> float:
        """The constraint bound: ``tau`` if set, else ``reference_ce + tau_slack``."""
        if self.tau is not None:
            return float(self.tau)
        if reference_ce is None:
            raise ConfigError("GECOConfig: tau is None, so a reference CE (the dense model's eval CE) is needed")
        return float(reference_ce) + float(self.tau_slack)


def gate_densities(model) -> torch.Tensor:
    """Expected open-edge fraction of the last forward, per layer: [n_layer, batch, n_head] (differentiable)."""
    dens = [b.attn.gate_density for b in model.blocks]
    if any(d is None for d in dens):
        raise ValueError("GECO needs a GPT with attn_gate=True that has run a forward pass (no gate_density found)")
    return torch.stack(dens)


class GECO:
    """The multiplier state and the Lagrangian; plugs into :func:`sparsecirc.core.train.train` via :meth:`train_hooks`.

    Works for any GPT with ``attn_gate=True``; the CE it constrains is whatever ``train`` computes (token stream or
    a ``loss_mask``-ed toy task).
    """

    def __init__(self, cfg: GECOConfig, reference_ce: float | None = None):
        self.cfg = cfg
        self.tau = cfg.resolve_tau(reference_ce)
        self.lam = float(cfg.lambda_init)
        self.c_ema = 0.0
        self.c_t = float("nan")
        self.sparsity = float("nan")
        self.layer_density: list[float] = []

    def objective(self, model, batch: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        """S + λ·(CE − τ) for this minibatch; remembers S and C_t for the λ update and the log."""
        dens = gate_densities(model)  # [n_layer, batch, n_head]
        s = dens.mean()
        c = ce - self.tau
        self.c_t, self.sparsity = float(c.detach()), float(s.detach())
        self.layer_density = dens.detach().mean((1, 2)).tolist()
        return s + self.lam * c

    def update(self, c_t: float | None = None) -> float:
        """EMA of the constraint, then the clamped multiplicative λ step; returns the new λ."""
        c = self.c_t if c_t is None else float(c_t)
        a = self.cfg.alpha
        self.c_ema = a * self.c_ema + (1.0 - a) * c
        lam = self.lam * math.exp(self.cfg.eta * self.c_ema)
        self.lam = min(max(lam, self.cfg.lambda_min), self.cfg.lambda_max)
        return self.lam

    def log(self, step: int) -> dict:
        """Values appended to ``History.extra`` every step (after the λ update)."""
        out = {"lambda": self.lam, "constraint_ema": self.c_ema, "constraint": self.c_t, "sparsity": self.sparsity}
        out.update({f"density_L{layer}": d for layer, d in enumerate(self.layer_density)})
        return out

    def state(self) -> dict:
        """Everything needed to report (or resume) the multiplier: config, τ, λ, C_ema."""
        return {"config": self.cfg.to_dict(), "tau": self.tau, "lambda": self.lam, "constraint_ema": self.c_ema}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state` (a resumed post-training run); the τ must be the same."""
        if abs(state["tau"] - self.tau) > 1e-12:
            raise ValueError(f"GECO: checkpoint τ {state['tau']} differs from this run's τ {self.tau}")
        self.lam, self.c_ema = float(state["lambda"]), float(state["constraint_ema"])

    def train_hooks(self) -> TrainHooks:
        return TrainHooks(objective=self.objective, after_step=lambda model, step: self.update(), log=self.log,
                          state=self.state, load_state=self.load_state)


# --- the evaluation trajectory of a post-training run (one logger for the addition toy and the code model) ---------
def log_point(traj: dict, step: int, values: dict, seconds: float | None = None) -> None:
    """Append one point (``step``, optional wall ``seconds`` and ``values``) to a trajectory of lists."""
    traj.setdefault("step", []).append(step)
    if seconds is not None:
        traj.setdefault("seconds", []).append(seconds)
    for key, v in values.items():
        traj.setdefault(key, []).append(v)


def trajectory_hooks(measure: Callable[[torch.nn.Module], dict], every: int, traj: dict,
                     first_step: bool = False) -> TrainHooks:
    """``after_step`` that logs ``measure(model)`` every ``every`` steps (and after the first step when
    ``first_step``) into ``traj``, with the wall seconds since training started (evaluation included). Compose it
    after GECO's hooks, so it sees the multiplier already updated."""
    t0 = time.perf_counter()

    def after_step(model, step):
        if (step + 1) % every == 0 or (first_step and step == 0):
            log_point(traj, step + 1, measure(model), time.perf_counter() - t0)
    return TrainHooks(after_step=after_step)


# --- the multiplier fed from held-out text ---------------------------------------------------------------------
def window_ces(model, windows: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Mean next-token CE of each window [n, T + 1] (:func:`~sparsecirc.core.metrics.per_token_loss`, eval mode:
    deterministic gates), as a float64 [n]; the model's train/eval mode is restored (it is called mid-training)."""
    was = model.training
    ces = per_token_loss(model, windows.long(), batch_size).double().mean(1)
    model.train(was)
    return ces


class HeldoutConstraint:
    """GECO's multiplier driven by the excess over a reference model on held-out windows, not the training batch.

    The gradient still comes from the training batch (``GECO.objective``: λ·CE of the batch; τ does not enter the
    gradient); only λ's update reads text the run never trains on. Every ``every`` steps the model's CE on
    ``batch`` held-out windows (taken in a fixed seeded order, cycling) is compared window by window with the
    reference model's CE on the same windows, so the kinds of code the windows hold cancel:
    ``C = mean(CE_model − CE_reference) − slack``. Between measurements the last ``C`` feeds the EMA.

    Args:
        geco: the GECO state whose λ this updates (its ``tau`` is only reported).
        windows: held-out windows [n, T + 1].
        reference_ces: the reference (dense) model's CE per window [n] (:func:`window_ces`).
        slack: the allowed mean excess (nats/token).
        batch, every: windows per measurement, steps between measurements.
        seed: the order the windows are visited in.
    """

    def __init__(self, geco: GECO, windows: torch.Tensor, reference_ces: torch.Tensor, slack: float,
                 batch: int = 4, every: int = 1, seed: int = 0):
        if len(windows) != len(reference_ces) or len(windows) < batch or batch < 1 or every < 1:
            raise ValueError(f"HeldoutConstraint: {len(windows)} windows, {len(reference_ces)} reference CEs, "
                             f"batch {batch}, every {every}: need as many CEs as windows, 1 <= batch <= windows, "
                             "every >= 1")
        self.geco, self.windows, self.ref = geco, windows, reference_ces.double()
        self.slack, self.batch, self.every = float(slack), int(batch), int(every)
        self.order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
        self.c = float("nan")
        self.measured = 0

    def measure(self, model) -> float:
        """The constraint on the next ``batch`` held-out windows: mean excess over the reference − slack."""
        n = len(self.windows)
        idx = self.order[torch.arange(self.measured * self.batch, (self.measured + 1) * self.batch) % n]
        self.measured += 1
        excess = window_ces(model, self.windows[idx], self.batch) - self.ref[idx]
        return float(excess.mean()) - self.slack

    def after_step(self, model, step: int) -> None:
        if step % self.every == 0 or math.isnan(self.c):
            self.c = self.measure(model)
        self.geco.update(self.c)

    def log(self, step: int) -> dict:
        return {**self.geco.log(step), "heldout_constraint": self.c}

    def train_hooks(self) -> TrainHooks:
        g = self.geco
        return TrainHooks(objective=g.objective, after_step=self.after_step, log=self.log,
                          state=lambda: {**g.state(), "heldout_measured": self.measured, "heldout_c": self.c},
                          load_state=self._load_state)

    def _load_state(self, state: dict) -> None:
        self.geco.load_state(state)
        self.measured, self.c = int(state.get("heldout_measured", 0)), float(state.get("heldout_c", float("nan")))
