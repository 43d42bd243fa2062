import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")  # before any test module imports matplotlib


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same seed, on one thread (tiny models run best on one; STYLE §10)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private SPARSECIRC_CACHE for tests that write to the cache."""
    monkeypatch.setenv("SPARSECIRC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
