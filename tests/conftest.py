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


TINY_PRUNE_MODEL = dict(n_layer=2, d_model=16, d_head=4, n_ctx=12, d_vocab=30)


@pytest.fixture
def tiny_model():
    """A 2-layer, 16-wide GPT factory for the pruning tests: ``tiny_model(**config overrides)``, seeded."""
    import torch

    from sparsecirc import GPT, ModelConfig

    def make(**kw):
        torch.manual_seed(0)
        return GPT(ModelConfig(**{**TINY_PRUNE_MODEL, **kw}))
    return make


@pytest.fixture
def lm_windows():
    """Pretraining-like windows for the tiny model's mean-ablation values: ``lm_windows(n)`` -> [n, 13]."""
    import torch
    return lambda n=8: torch.randint(0, 30, (n, 13), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def patching_model():
    """A 2-layer GPT for the attribution-patching tests, weights scaled up so heads matter and gates vary:
    ``patching_model(seed=0, **config overrides)`` (vocabulary 50, context 16, 4 heads of 8), in eval mode."""
    from sparsecirc import GPT, ModelConfig  # after MPLBACKEND is set

    def make(seed: int = 0, **kw):
        torch.manual_seed(seed)
        cfg = ModelConfig(**{**dict(n_layer=2, d_model=32, n_head=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16), **kw})
        m = GPT(cfg).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(4.0)
        return m
    return make
