"""Where things live: the repository's data folder and the user's cache folder.

The cache folder holds regenerable outputs (tokenised corpora, ci-scale artifacts, mean caches). It is
``$SPARSECIRC_CACHE`` when set, else ``~/.cache/sparsecirc``. Nothing here touches the network.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (editable install)
DATA_DIR = REPO_ROOT / "data"
BOOK_DIR = REPO_ROOT / "book"
# Set by `python -m sparsecirc.book execute` for all its chapters' kernels: cache builds stamped with it were
# made in this run (sparsecirc.build.cached_build reuses them under recompute=True).
BUILD_RUN_ENV = "SPARSECIRC_BUILD_RUN"


def cache_dir() -> Path:
    """Return (and create) the cache folder: ``$SPARSECIRC_CACHE`` or ``~/.cache/sparsecirc``."""
    root = os.environ.get("SPARSECIRC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sparsecirc")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
