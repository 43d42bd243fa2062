"""P1's bridges (sparsecirc.wst.bridges): functional passes, exact bridges, the loss's gradients, steering, and
training them through the one training loop (checkpoint and resume included)."""
import copy

import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.config import make_config
from sparsecirc.core.train import load_extra, train
from sparsecirc.wst import bridges as B

SMALL = dict(n_layer=2, d_model=16, d_head=4, n_ctx=12, d_vocab=30)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    m = GPT(ModelConfig(**{**SMALL, **kw})).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m


def tokens(n=3, T=10, seed=1):
    return torch.randint(0, 30, (n, T), generator=torch.Generator().manual_seed(seed))


def identity_bridges(m):
    br = B.Bridges(B.n_sites(m), m.cfg.d_model, m.cfg.d_model, None)
    with torch.no_grad():
        for lin in [*br.enc, *br.dec]:
            lin.weight.copy_(torch.eye(m.cfg.d_model))
            lin.bias.zero_()
    return br


@pytest.mark.parametrize("kw", [{}, {"attn_sink": True, "pos_embed": True}, {"act_keep_frac": 0.25},
                                {"bigram_table": True, "attn_gate": True, "attn_gate_bias": 0.5}])
def test_residuals_and_every_suffix_equal_the_model(kw):
    m, x = model(**kw), tokens()
    hs, logits = B.residuals(m, x)
    full = m(x)
    assert len(hs) == B.n_sites(m) == 5 and torch.allclose(logits, full, atol=1e-5)
    for i, h in enumerate(hs):
        assert torch.allclose(B.run_from(m, i, h, x), full, atol=1e-5)
    pos = torch.tensor([[0, 4], [2, 9], [1, 3]])
    sub = B.run_from(m, 1, hs[1], x, positions=pos)
    assert torch.allclose(sub, full.gather(1, pos[..., None].expand(-1, -1, 30)), atol=1e-5)


def test_identity_bridges_between_identical_models_cost_nothing():
    m, x = model(), tokens(T=11)
    parts = B.bridge_losses(m, copy.deepcopy(m), identity_bridges(m), x, B.BridgeLoss())
    for k in ("nmse_enc", "nmse_dec", "kl_d2s", "kl_s2d"):
        assert float(parts[k].detach()) == pytest.approx(0.0, abs=1e-6), k
    # and a bridge that is not the identity does cost something (the check can fail)
    br = identity_bridges(m)
    with torch.no_grad():
        br.dec[2].weight.mul_(0.5)
    parts = {k: float(v.detach()) for k, v in B.bridge_losses(m, copy.deepcopy(m), br, x, B.BridgeLoss()).items()}
    assert float(parts["nmse_dec"]) > 0.01 and float(parts["kl_s2d"]) > 1e-4 and float(parts["kl_d2s"]) < 1e-6


def test_hybrids_with_exact_bridges_equal_the_pure_models():
    m, x = model(attn_sink=True), tokens()
    twin, br = copy.deepcopy(m), identity_bridges(m)
    last = torch.tensor([9, 5, 7])
    for i in range(B.n_sites(m)):
        for direction in ("d2s", "s2d"):
            h = B.Hybrid(m, twin, br, i, direction)
            assert torch.allclose(h(x), m(x), atol=1e-5)
            assert torch.allclose(h(x, positions=last), m(x, positions=last), atol=1e-5)
    assert torch.allclose(B.Hybrid(m, twin, br, None, "d2s")(x), m(x))
    with pytest.raises(ValueError, match="direction"):
        B.Hybrid(m, twin, br, 0, "sideways")


def test_gradients_reach_the_bridges_and_the_sparse_model_never_the_dense_one():
    dense, sparse = model(0), model(1, act_keep_frac=0.5)
    br = B.Bridges.between(dense, sparse)
    dense.requires_grad_(False)
    parts = B.bridge_losses(dense, sparse, br, tokens(T=11), B.BridgeLoss(kl_positions=4),
                            generator=torch.Generator().manual_seed(0))
    parts["total"].backward()
    assert all(p.grad is None for p in dense.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in br.parameters())
    assert sum(float(p.grad.abs().sum()) for p in sparse.parameters() if p.grad is not None) > 0
    with pytest.raises(ValueError, match="same depth"):
        B.Bridges.between(dense, model(0, n_layer=3))


def test_steering_at_strength_zero_changes_nothing_and_a_delta_comes_from_the_counterfactual():
    dense, sparse = model(0), model(1)
    br = B.Bridges.between(dense, sparse)
    a, c = tokens(seed=1), tokens(seed=2)
    last = torch.tensor([9, 9, 9])
    delta = B.steering_delta(dense, sparse, br, 2, channel=3, actual=a, counterfactual=c)
    assert delta.shape == (3, 10, 16) and delta.abs().sum() > 0
    assert torch.allclose(B.steered_logits(dense, 2, a, delta, 0.0, last), dense(a, positions=last), atol=1e-5)
    assert not torch.allclose(B.steered_logits(dense, 2, a, delta, 1.0, last), dense(a, positions=last), atol=1e-3)
    assert B.steering_delta(dense, sparse, br, 2, 3, a, a).abs().sum() == 0
    d4 = B.steering_delta(dense, sparse, br, 4, 3, a, c)  # the final read works too
    assert not torch.allclose(B.steered_logits(dense, 4, a, d4, 1.0, last), dense(a, positions=last), atol=1e-4)


def test_least_squares_warm_start_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, generator=g)
    hd = [torch.randn(4, 50, 16, generator=g) for _ in range(3)]
    hs = [h @ w + 0.5 for h in hd]
    br = B.Bridges(3, 16, 8, None)
    br.fit_least_squares(hd, hs, ridge=1e-8)
    assert float(B.nmse(br.encode(1, hd[1]), hs[1])) < 1e-6


def lm_stream(n=4000, seed=0):
    return torch.randint(0, 30, (n,), generator=torch.Generator().manual_seed(seed))


def run_config(steps):
    return make_config("ci", model=dict(SMALL, act_keep_frac=0.5), train=dict(
        steps=steps, batch_size=4, eval_every=2, eval_batches=1, checkpoint_every=2, seed=0))


@pytest.mark.parametrize("freeze", [False, True])
def test_training_bridges_through_the_loop_moves_only_what_it_should(tmp_path, freeze):
    dense = model(0)
    frozen = copy.deepcopy(dense.state_dict())
    cfg = run_config(4)
    init = model(1, act_keep_frac=0.5).state_dict()
    br = B.Bridges(B.n_sites(dense), 16, 16, 0.5)
    br0 = copy.deepcopy(br.state_dict())
    hooks = B.bridge_hooks(dense, br, B.BridgeLoss(kl_positions=4), freeze_sparse=freeze)
    sparse, hist = train(cfg, lm_stream(), lm_stream(800, 1), init_state=init, hooks=hooks, progress=False,
                         out=tmp_path / "run")
    assert all(torch.equal(v, dense.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, br.state_dict()[k]) for k, v in br0.items())
    same = all(torch.equal(v, sparse.state_dict()[k]) for k, v in init.items())
    assert same == freeze
    assert {"nmse_enc", "kl_d2s", "kl_s2d", "total"} <= set(hist.extra)
    again = B.Bridges(B.n_sites(dense), 16, 16, 0.5)
    load_extra(tmp_path / "run", {"bridges": again})
    assert all(torch.equal(v, br.state_dict()[k]) for k, v in again.state_dict().items())


def test_a_resumed_bridge_training_equals_an_uninterrupted_one(tmp_path):
    dense, cfg = model(0), run_config(4)
    init = model(1, act_keep_frac=0.5).state_dict()
    outs = []
    for name, stop in (("straight", None), ("resumed", 2)):
        br = B.Bridges(B.n_sites(dense), 16, 16, 0.5)
        torch.manual_seed(5)
        br.load_state_dict(B.Bridges(B.n_sites(dense), 16, 16, 0.5).state_dict())
        kw = dict(init_state=init, progress=False, out=tmp_path / name)
        hooks = B.bridge_hooks(dense, br, B.BridgeLoss(kl_positions=4), freeze_sparse=False)
        m, _ = train(cfg, lm_stream(), lm_stream(800, 1), hooks=hooks, stop_after=stop, **kw)
        if stop:
            br2 = copy.deepcopy(br)
            hooks = B.bridge_hooks(dense, br2, B.BridgeLoss(kl_positions=4), freeze_sparse=False)
            m, _ = train(cfg, lm_stream(), lm_stream(800, 1), hooks=hooks, resume=True, **kw)
            br = br2
        outs.append((m.state_dict(), br.state_dict()))
    (m1, b1), (m2, b2) = outs
    assert all(torch.equal(m1[k], m2[k]) for k in m1) and all(torch.equal(b1[k], b2[k]) for k in b1)


# --- the study's measurements (sparsecirc.wst.bridge_study) ---------------------------------------------------
def test_resolve_site_names_and_refuses_unknown_ones():
    from sparsecirc.wst.bridge_study import resolve_site
    assert resolve_site("last.attn", 4) == 6 and resolve_site("last.mlp", 4) == 7 and resolve_site("final", 4) == 8
    assert resolve_site("L1.mlp", 4) == 3 and resolve_site("2", 4) == 2
    with pytest.raises(ValueError, match="unknown site"):
        resolve_site("L9.attn", 4)


def test_hybrid_table_with_exact_bridges_matches_the_pure_models():
    from sparsecirc.wst import bridge_study as bs
    m = model(attn_sink=True)
    windows = tokens(n=4, T=12, seed=3)
    ce = bs.window_ce(m, windows)
    for i in range(B.n_sites(m)):
        h = B.Hybrid(m, copy.deepcopy(m), identity_bridges(m), i, "s2d")
        assert bs.window_ce(h, windows) == pytest.approx(ce, abs=1e-5)
    nm = bs.site_nmse(m, copy.deepcopy(m), identity_bridges(m), windows)
    assert max(nm["enc"] + nm["dec"]) < 1e-8


def v2_model():
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=2, d_model=16, d_head=4, n_ctx=128, d_vocab=2048, data_version="v2")).eval()


def test_steering_pairs_put_the_counterfactual_answer_on_the_partner():
    from sparsecirc.data.tokenizer import load_tokenizer
    from sparsecirc.wst import bridge_study as bs
    m = v2_model()
    p = bs.steering_pairs(m, "while_return_true", "test", ":")
    tok = load_tokenizer(version="v2")
    assert tok.decode([p["target"]]) == ":" and p["actual"].shape == p["counterfactual"].shape
    a = tok.decode(p["actual"][0, :int(p["last"][0]) + 1].tolist())
    c = tok.decode(p["counterfactual"][0, :int(p["last"][0]) + 1].tolist())
    assert a.endswith("return True") and c.endswith("while True")
    with pytest.raises(ValueError, match="one"):
        bs.steering_pairs(m, "while_return_true", "test", "while True")


def test_steering_curve_controls_have_the_decoder_columns_norm_and_start_together():
    from sparsecirc.wst import bridge_study as bs
    dense, sparse = v2_model(), v2_model()
    br = B.Bridges.between(dense, sparse)
    pairs = bs.steering_pairs(sparse, "while_return_true", "test", ":")
    pairs = {k: (v[:6] if torch.is_tensor(v) else v) for k, v in pairs.items()}
    channel, sep = bs.choose_channel(sparse, 3, pairs)
    assert channel == int(sep.argmax()) and sep.shape == (16,)
    c = bs.steering_curve(dense, sparse, br, 3, channel, pairs, n_random=2, seed=0, strengths=[0.0, 1.0])
    assert len(c["random"]) == 2 and all(r[0] == pytest.approx(c["real"][0]) for r in c["random"])
    assert 0 < c["counterfactual"] < 1
    s = bs.summary({"hybrids": {"sites": ["a", "b"], "pure": {"dense": {"ce": 2.0}, "sparse": {"ce": 2.5}},
                                "d2s": [{"ce": 2.1}, {"ce": 2.9}], "s2d": [{"ce": 2.2}, {"ce": 2.0}]},
                    "steering": {"x": c}})
    assert s["worst_gap"] == pytest.approx(0.9) and s["worst"] == "d2s at b"
    assert s["steering"]["x"]["ratio"] == pytest.approx(c["real"][-1] / (sum(r[-1] for r in c["random"]) / 2))


def test_steering_several_channels_adds_their_single_channel_deltas():
    dense, sparse = model(0), model(1)
    br = B.Bridges.between(dense, sparse)
    a, c = tokens(seed=1), tokens(seed=2)
    one = [B.steering_delta(dense, sparse, br, 3, ch, a, c) for ch in (2, 5, 11)]
    both = B.steering_delta(dense, sparse, br, 3, [2, 5, 11], a, c)
    assert torch.allclose(both, one[0] + one[1] + one[2], atol=1e-5)


def test_the_channel_sweep_with_every_channel_equals_the_all_channel_curve():
    from sparsecirc.wst import bridge_study as bs
    dense, sparse = v2_model(), v2_model()
    with torch.no_grad():
        for p in sparse.parameters():
            p.add_(0.05 * torch.randn_like(p))
    br = B.Bridges.between(dense, sparse)
    pairs = bs.steering_pairs(sparse, "while_return_true", "test", ":")
    pairs = {k: (v[:4] if torch.is_tensor(v) else v) for k, v in pairs.items()}
    order = list(range(16))
    sw = bs.channel_sweep(dense, sparse, br, 3, order, pairs, [1, 16], n_random=1, seed=0, strengths=[0.0, 1.0])
    assert sw["real"][-1] == pytest.approx(sw["all_channels"][-1], rel=1e-5)
    assert sw["all_channels"][0] == pytest.approx(float(torch.softmax(dense(pairs["actual"], positions=pairs["last"]),
                                                                      -1)[:, pairs["target"]].mean()), rel=1e-5)


def test_residual_transfer_through_exact_bridges_reaches_the_ceiling_at_every_site():
    from sparsecirc.wst import bridge_study as bs
    m = v2_model()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    pairs = bs.steering_pairs(m, "while_return_true", "test", ":")
    tr = bs.residual_transfer(m, copy.deepcopy(m), identity_bridges(m), pairs, limit=6)
    assert len(tr["decoded"]) == 5 and tr["decoded"] == pytest.approx(tr["dense_patch"], rel=1e-4)
    # a bridge that decodes nothing transfers nothing: P stays at the no-intervention value
    dead = identity_bridges(m)
    with torch.no_grad():
        for lin in dead.dec:
            lin.weight.zero_()
    tr = bs.residual_transfer(m, copy.deepcopy(m), dead, pairs, limit=6)
    assert tr["decoded"] == pytest.approx([tr["none"]] * 5, rel=1e-4) and tr["dense_patch"][0] != pytest.approx(tr["none"])
