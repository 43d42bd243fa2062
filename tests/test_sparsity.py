import math

import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.config import ConfigError, make_config
from sparsecirc.core.sparsity import (
    Projector,
    SparsityConfig,
    l0_fraction,
    sharkfin_factor,
    sparse_tensors,
    topk_mask,
    unit_protect_mask,
)
from sparsecirc.core.train import train

TINY = dict(n_layer=2, d_model=32, d_head=8, n_ctx=16, d_vocab=40)


def test_topk_mask_exact_count_and_largest():
    w = torch.randn(50, 30)
    m = topk_mask(w, 100)
    assert int(m.sum()) == 100
    assert w.abs()[m].min() >= w.abs()[~m].max()
    ties = torch.ones(4, 4)
    assert int(topk_mask(ties, 5).sum()) == 5  # ties broken to exactly k


def test_unit_protection_keeps_top_j_per_row_and_column():
    w = torch.randn(8, 6)
    rows = unit_protect_mask(w, 4, (1,))
    assert (rows.sum(1) == 4).all()
    cols = unit_protect_mask(w, 4, (0,))
    assert (cols.sum(0) == 4).all()


def test_schedule_values():
    cfg = SparsityConfig(weight_nonzero_frac=0.1, anneal_start_frac=0.01, anneal_end_frac=0.5)
    assert l0_fraction(0, 1000, 0.1, cfg) == 1.0
    assert l0_fraction(10, 1000, 0.1, cfg) == 1.0
    assert l0_fraction(255, 1000, 0.1, cfg) == pytest.approx(1 - 0.9 * (0.245 / 0.49))
    assert l0_fraction(500, 1000, 0.1, cfg) == pytest.approx(0.1)
    assert l0_fraction(900, 1000, 0.1, cfg) == pytest.approx(0.1)
    assert sharkfin_factor(0, 1000, cfg) == pytest.approx(math.sqrt(0.1))
    assert sharkfin_factor(700, 1000, cfg) == pytest.approx(1.0)
    assert sharkfin_factor(0, 1000, SparsityConfig(weight_nonzero_frac=0.1, lr_scale_with_l0=False)) == 1.0


def test_budget_bookkeeping_matches_p1_example():
    sp = SparsityConfig.from_budget(4, 0.25)  # P1: ef 4, pfrac 1/4 -> matrices 1/64, embeddings 1/16
    assert sp.weight_nonzero_frac == pytest.approx(1 / 64)
    assert sp.embed_nonzero_frac == pytest.approx(1 / 16)
    with pytest.raises(ConfigError):
        SparsityConfig(weight_nonzero_frac=0.0)


def test_projection_exact_counts_with_protection():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    sp = SparsityConfig(weight_nonzero_frac=1 / 16, embed_nonzero_frac=1 / 4)
    proj = Projector(model, sp, total_steps=100)
    proj.project(100)
    for t in proj.tensors:
        w = t.param
        nz = int((w != 0).sum())
        f = 1 / 16 if t.kind == "matrix" else 1 / 4
        k = math.ceil(f * w.numel())
        expect = topk_mask(w, k)  # the kept entries are a fixed point of the projection
        if t.protect_dims:
            assert ((w != 0).sum(dim=t.protect_dims[0]) >= 4).all(), t.name
            assert nz >= k
        else:
            assert nz == k, t.name
        assert int(expect.sum()) == k
    names = {t.name for t in proj.tensors}
    assert "blocks.0.attn.W_Q.weight" in names and "bigram" not in names
    assert not any(n.endswith(("norm.weight", "bias", "sink_logit")) for n in names)


def test_projection_count_equals_union_of_topk_and_protection():
    torch.manual_seed(1)
    model = GPT(ModelConfig(**TINY))
    w0 = model.blocks[0].mlp.W_in.weight.detach().clone()
    Projector(model, SparsityConfig(weight_nonzero_frac=0.02), 10).project(10)
    k = math.ceil(0.02 * w0.numel())
    union = topk_mask(w0, k) | unit_protect_mask(w0, 4, (1,))
    assert torch.equal(model.blocks[0].mlp.W_in.weight != 0, union)


def test_dense_target_leaves_model_unchanged():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Projector(model, SparsityConfig(weight_nonzero_frac=1.0), 10).project(5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_biases_follow_the_switch():
    model = GPT(ModelConfig(**TINY))
    assert not any(t.kind == "bias" for t in sparse_tensors(model, SparsityConfig()))
    assert any(t.kind == "bias" for t in sparse_tensors(model, SparsityConfig(sparsify_biases=True)))


def test_sparse_training_ends_at_target_density():
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 40, (3000,), generator=g)
    cfg = make_config("ci", model=TINY, train={"steps": 20, "batch_size": 4, "eval_every": 10, "eval_batches": 1,
                                                "grad_rms": "normalize", "eps": 0.1})
    sp = SparsityConfig(weight_nonzero_frac=0.125, min_nonzero_per_unit=0)
    holder = {}

    def make_hooks(model):
        holder["p"] = Projector(model, sp, cfg.train.steps)
        return holder["p"].train_hooks()

    train(cfg, toks, toks, progress=False, hooks=make_hooks)
    for t in holder["p"].tensors:
        if t.kind == "matrix":
            assert (t.param != 0).float().mean().item() == pytest.approx(0.125, abs=1 / t.param.numel() + 1e-6)


def test_sparsity_section_of_the_config_drives_training_and_round_trips():
    from sparsecirc.core.config import RunConfig
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 40, (3000,), generator=g)
    cfg = make_config("ci", model=TINY, train={"steps": 10, "batch_size": 4, "eval_every": 10, "eval_batches": 1},
                      sparsity={"weight_nonzero_frac": 0.25, "embed_nonzero_frac": 0.5, "min_nonzero_per_unit": 0})
    assert cfg.is_sparse and not make_config("ci").is_sparse
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    model, _ = train(cfg, toks, toks, progress=False)
    w = model.blocks[0].attn.W_K.weight
    assert (w != 0).sum().item() == math.ceil(0.25 * w.numel())
    e = model.embed.weight
    assert (e != 0).sum().item() == math.ceil(0.5 * e.numel())
