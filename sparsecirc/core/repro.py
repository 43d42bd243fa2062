"""Seeding, thread set-up and the environment report printed by every chapter (provenance itself,
:func:`sparsecirc.artifacts.environment`, is recorded in every manifest).

``SPARSECIRC_NUM_THREADS`` sets torch's thread count (default 2). On a 2-core machine two threads collapse when
another process holds a core (STYLE §10: ~6x slower than one thread), so keep it configurable.

``SPARSECIRC_BF16`` decides whether a run whose config asks for bf16 autocast (``train.bf16``) uses it
(:func:`bf16_enabled`): ``on`` (the default: as configured), ``off``, or ``auto`` (only on a CPU with native bf16
matmuls, :func:`native_bf16`). Without them torch emulates bf16 and the zoo-v2 training step runs about 6x slower
than in fp32 (``benchmarks/bench_train_speed.py`` on an AMD EPYC with AVX2 only, 1 thread: 760 against 4,700
tokens/s), so ``make test`` runs the ci-scale chapters with ``auto``; book-scale builds keep ``on``.
"""
from __future__ import annotations

import os
import random
import time
from functools import lru_cache

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


BF16_MODES = ("on", "auto", "off")


@lru_cache(maxsize=None)
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def bf16_enabled(requested: bool) -> bool:
    """Whether a run configured with ``train.bf16 = requested`` autocasts to bf16, by ``SPARSECIRC_BF16``
    (module docstring). Raises ValueError for an unknown mode."""
    mode = os.environ.get("SPARSECIRC_BF16", "on")
    if mode not in BF16_MODES:
        raise ValueError(f"SPARSECIRC_BF16 must be one of {BF16_MODES}, got {mode!r}")
    return bool(requested) and (mode == "on" or (mode == "auto" and native_bf16()))
