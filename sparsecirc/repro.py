"""Seeding, thread set-up and the environment report printed by every chapter.

``SPARSECIRC_NUM_THREADS`` sets torch's thread count (default 2). On a 2-core machine two threads collapse when
another process holds a core (STYLE §10: ~6x slower than one thread), so keep it configurable.
"""
from __future__ import annotations

import os
import platform
import random
import subprocess
import sys

import numpy as np
import torch

from .paths import REPO_ROOT


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic algorithms."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


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


def git_info() -> dict[str, object]:
    """The checkout's commit SHA and whether the work tree is dirty (None outside a git checkout)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    try:
        sha = run("rev-parse", "HEAD")
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": sha.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict[str, object]:
    """Versions and settings that affect numbers: recorded in every manifest."""
    from . import __version__
    return {"sparsecirc": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(), "platform": sys.platform,
            **git_info()}


def report() -> None:
    """Print a short environment report (chapters call it in a cell nbval ignores)."""
    env = environment()
    sha = (env["commit"] or "unknown")[:10] + ("+dirty" if env["dirty"] else "")
    print(f"sparsecirc {env['sparsecirc']} @ {sha} | torch {env['torch']} | python {env['python']} | "
          f"threads {env['threads']}")


def setup_notebook(SCALE, RECOMPUTE, SEED) -> None:  # noqa: N803 -- the chapters' parameter names
    """One call at the top of every chapter: validate parameters, set threads, seed, print the report.

    Example::

        sc.setup_notebook(SCALE, RECOMPUTE, SEED)
    """
    from .book import validate_params
    validate_params(SCALE, RECOMPUTE, SEED)
    setup_threads()
    seed_everything(SEED)
    report()


def seconds_per_call(fn, steps: int, warmup: int = 2) -> float:
    """Mean wall seconds of ``fn()`` over ``steps`` calls after ``warmup`` untimed calls (the benchmarks' timer)."""
    import time
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps
