"""Seeding, thread set-up and the environment report printed by every chapter (provenance itself,
:func:`sparsecirc.artifacts.environment`, is recorded in every manifest).

``SPARSECIRC_NUM_THREADS`` sets torch's thread count (default 2). On a 2-core machine two threads collapse when
another process holds a core (STYLE §10: ~6x slower than one thread), so keep it configurable.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

from sparsecirc.artifacts import environment


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic algorithms."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode also fills every new tensor with NaN (to expose reads of uninitialised memory); nothing here
    # reads such memory, and the fill costs ~10 % of a training step on CPU
    torch.utils.deterministic.fill_uninitialized_memory = False


def setup_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads from ``n`` or ``$SPARSECIRC_NUM_THREADS`` (default 2); returns the count."""
    if n is None:
        raw = os.environ.get("SPARSECIRC_NUM_THREADS", "2")
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"SPARSECIRC_NUM_THREADS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def report() -> None:
    """Print a short environment report (chapters call it in a cell nbval ignores)."""
    env = environment()
    sha = (env["commit"] or "unknown")[:10] + ("+dirty" if env["dirty"] else "")
    print(f"sparsecirc {env['sparsecirc']} @ {sha} | torch {env['torch']} | python {env['python']} | "
          f"threads {env['threads']}")


def seconds_per_call(fn, steps: int, warmup: int = 2) -> float:
    """Mean wall seconds of ``fn()`` over ``steps`` calls after ``warmup`` untimed calls (the benchmarks' timer)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps
