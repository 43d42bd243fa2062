import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.config import ConfigError
from sparsecirc.core.hooks import HOOK_TABLE, from_csp_name, hook_points, patch, record, to_csp_name
from sparsecirc.core.model import LayerNorm, RMSNorm, abs_topk

TINY = dict(n_layer=2, d_model=32, d_head=8, n_ctx=16, d_vocab=50)


def test_shapes_and_hook_table_shapes():
    m = GPT(ModelConfig(**TINY, pos_embed=True))
    x = torch.randint(0, 50, (3, 16))
    with record(m) as cache:
        logits = m(x)
    assert logits.shape == (3, 16, 50)
    dims = {"batch": 3, "pos": 16, "q_pos": 16, "k_pos": 16, "d_model": 32, "n_head": 4, "d_head": 8, "d_mlp": 128}
    gated = GPT(ModelConfig(**TINY, pos_embed=True, attn_gate=True))  # the P2 gate's hook fires only with a gate
    with record(gated, "*hook_sparse_mask") as gate_cache:
        gated(x)
    cache.update(gate_cache)
    for name, shape, _csp, _node in HOOK_TABLE:
        for l in range(2):
            key = name.replace("{l}", str(l))
            want = tuple(dims[s.strip()] for s in shape.strip("[]").split(","))
            assert cache[key].shape == want, key


def test_abs_topk_keeps_exactly_k_largest():
    x = torch.tensor([[3.0, -5.0, 1.0, 0.5, -2.0, 4.0, 0.1, -0.2]])
    y = abs_topk(x, 0.25)
    assert torch.equal(y, torch.tensor([[0.0, -5.0, 0, 0, 0, 4.0, 0, 0]]))


def test_abstopk_sites_and_qkv_across_heads():
    m = GPT(ModelConfig(**TINY, act_keep_frac=0.25))
    x = torch.randint(0, 50, (2, 16))
    with record(m) as c:
        m(x)
    for name in ["blocks.0.ln1.hook_normalized", "blocks.1.mlp.hook_post", "blocks.0.hook_attn_out",
                 "blocks.1.hook_mlp_out", "blocks.1.ln2.hook_normalized"]:
        nz = (c[name] != 0).sum(-1)
        assert (nz == c[name].shape[-1] // 4).all(), name
    q = c["blocks.0.attn.hook_q"].flatten(-2)  # [batch, pos, n_head*d_head]: k counted over all heads
    assert ((q != 0).sum(-1) == 32 // 4).all()
    per_head = (c["blocks.0.attn.hook_q"] != 0).sum(-1)
    assert not (per_head == 2).all()  # not a per-head top-k (would be exactly 8/4 per head)


def test_fast_attention_path_equals_pattern_path():
    m = GPT(ModelConfig(**TINY))
    x = torch.randint(0, 50, (2, 16))
    fast = m(x)
    with record(m, "blocks.*.attn.hook_pattern") as c:
        slow = m(x)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert torch.allclose(c["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(2, 4, 16))


def test_sink_absorbs_mass_and_bigram_adds_row():
    m = GPT(ModelConfig(**TINY, attn_sink=True, bigram_table=True))
    with torch.no_grad():
        m.blocks[0].attn.sink_logit.fill_(5.0)
    x = torch.randint(0, 50, (1, 16))
    with record(m, "blocks.0.attn.hook_pattern") as c:
        base = m(x)
    assert (c["blocks.0.attn.hook_pattern"].sum(-1) < 0.9).all()  # the sink takes probability mass
    with torch.no_grad():
        m.bigram[x[0, 3]] += 1.0
    assert torch.allclose(m(x)[0, 3] - base[0, 3], torch.ones(50), atol=1e-5)


def test_causality():
    m = GPT(ModelConfig(**TINY, attn_sink=True))
    x = torch.randint(0, 50, (1, 16))
    y = x.clone()
    y[0, 10] = (y[0, 10] + 1) % 50
    torch.testing.assert_close(m(x)[:, :10], m(y)[:, :10])
    assert not torch.allclose(m(x)[:, 10:], m(y)[:, 10:])


def test_patch_changes_output_and_hooks_are_removed_even_on_error():
    m = GPT(ModelConfig(**TINY))
    x = torch.randint(0, 50, (1, 16))
    clean = m(x)
    user = m.blocks[0].hook_attn_out.register_forward_hook(lambda *_: None)
    with patch(m, {"blocks.0.hook_attn_out": torch.zeros_like}):
        assert not torch.allclose(m(x), clean)
    with pytest.raises(RuntimeError):
        with record(m, "blocks.*.hook_resid_post"):
            raise RuntimeError("boom")
    counts = {n: p.hook_count() for n, p in hook_points(m).items()}
    assert counts["blocks.0.hook_attn_out"] == 1 and sum(counts.values()) == 1  # only the user's hook is left
    user.remove()
    torch.testing.assert_close(m(x), clean)


def test_cache_then_patch_same_value_is_noop():
    m = GPT(ModelConfig(**TINY, act_keep_frac=0.5))
    x = torch.randint(0, 50, (2, 16))
    with record(m, "blocks.1.mlp.hook_post") as c:
        clean = m(x)
    with patch(m, {"blocks.1.mlp.hook_post": lambda _: c["blocks.1.mlp.hook_post"]}):
        torch.testing.assert_close(m(x), clean)


def test_unknown_hook_name_is_a_clear_error():
    m = GPT(ModelConfig(**TINY))
    with pytest.raises(KeyError, match="no hook point matches"):
        with record(m, "blocks.0.mlp.hook_postt"):
            pass


def test_circuit_sparsity_names_both_ways():
    n = 3
    assert to_csp_name("blocks.0.mlp.hook_post", n) == "0.mlp.post_act"
    assert to_csp_name("blocks.2.hook_resid_post", n) == "final_resid"
    assert to_csp_name("blocks.1.ln1.hook_normalized", n) == "1.attn.act_in"
    m = GPT(ModelConfig(**{**TINY, "n_layer": n}))
    for name in hook_points(m):
        try:
            csp = to_csp_name(name, n)
        except KeyError:
            continue
        back = from_csp_name(csp, n)
        assert back == name or (name.endswith("hook_resid_post") and back.endswith("hook_resid_pre")), (name, csp)


def test_wrong_input_shape():
    m = GPT(ModelConfig(**TINY))
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        m(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="n_ctx"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_positions_gives_the_same_logits_as_the_full_forward():
    m = GPT(ModelConfig(**TINY, bigram_table=True, attn_sink=True))
    x = torch.randint(0, 50, (3, 16))
    pos = torch.tensor([15, 3, 9])
    torch.testing.assert_close(m(x, positions=pos), m(x)[torch.arange(3), pos])


@pytest.mark.parametrize("extra", [{}, {"attn_sink": True, "act_keep_frac": 0.25}, {"attn_gate": True},
                                   {"pos_embed": True, "d_pos_emb": 4, "resid_activation": "relu", "act_keep_frac": 0.5,
                                    "act_sparsity_sites": ("attn_in", "mlp_in", "resid_post_attn", "resid_post_mlp")}])
def test_last_only_gives_the_same_logits_and_hooks_see_one_position(extra):
    """``last_only`` cuts the last block to the asked positions: same logits (dense, sparse with a sink, and the
    P2 gated model, where it is ignored); the last block's MLP hook sees one position per row."""
    m = GPT(ModelConfig(**TINY, **extra)).eval()  # eval: the gated model samples its gates in training mode
    x = torch.randint(0, 50, (3, 16))
    pos = torch.tensor([15, 3, 9])
    seen = []
    h = m.blocks[-1].mlp.hook_pre.register_forward_hook(lambda mod, a, out: seen.append(out.shape[1]))
    cut = m(x, positions=pos, last_only=True)
    h.remove()
    torch.testing.assert_close(cut, m(x)[torch.arange(3), pos], rtol=1e-5, atol=1e-5)
    assert seen == [16 if extra.get("attn_gate") else 1]


def test_abs_topk_matches_a_sorting_reference_with_gradient_on_kept_entries_only():
    from sparsecirc.core.model import kth_largest
    g = torch.Generator().manual_seed(0)
    for shape, frac in (((3, 5, 128), 0.25), ((40, 512), 0.125), ((2, 3, 4, 8), 0.5)):
        x = torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)
        k = int(frac * shape[-1])
        idx = x.detach().abs().topk(k, dim=-1).indices
        ref = torch.zeros_like(x).scatter(-1, idx, x.detach().gather(-1, idx))
        y = abs_topk(x, frac)
        assert torch.equal(y.detach(), ref)
        y.sum().backward()
        assert torch.equal(x.grad, (ref != 0).double())
        # the fast CPU selection agrees with torch.topk's k-th value
        assert torch.equal(kth_largest(x.detach().abs().float(), k),
                           x.detach().abs().float().topk(k, -1).values[..., -1:])


def test_abs_topk_rows_with_fewer_nonzeros_than_k_are_unchanged():
    x = torch.tensor([[0.0, 2.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]])
    assert torch.equal(abs_topk(x, 0.5), x)  # k = 4 > 2 nonzeros: nothing to cut


def test_sink_attention_fast_path_matches_the_explicit_pattern():
    """With a sink and no pattern hook, attention runs through SDPA with the sink as an extra key; a hook on the
    pattern forces the explicit softmax. Same logits and gradients (sink logits included), also with last_only."""
    torch.manual_seed(0)
    m = GPT(ModelConfig(**{**TINY, "attn_sink": True, "act_keep_frac": 0.25}))
    with torch.no_grad():
        for b in m.blocks:
            b.attn.sink_logit.normal_()
    x = torch.randint(0, 50, (3, 12))
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(len(m.blocks))]
    fast = m(x)
    fast.square().sum().backward()
    g_fast = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    with record(m, names):
        slow = m(x)
        slow.square().sum().backward()
    assert torch.allclose(fast, slow, atol=1e-5)
    for n, p in m.named_parameters():
        if n in g_fast:
            assert torch.allclose(g_fast[n], p.grad, atol=1e-4), n
    assert all(b.attn.sink_logit.grad.abs().sum() > 0 for b in m.blocks)
    pos = torch.tensor([3, 11, 0])
    assert torch.allclose(m(x, positions=pos, last_only=True), slow[torch.arange(3), pos], atol=1e-5)


def test_kth_largest_of_bf16_rows_is_selected_exactly_and_keeps_the_dtype():
    from sparsecirc.core.model import kth_largest
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.bfloat16, torch.float16):
        a = torch.randn(7, 5, 96, generator=g).to(dtype)
        got = kth_largest(a, 11)
        want = a.float().sort(dim=-1, descending=True).values[..., 10:11].to(dtype)
        assert got.dtype == dtype and torch.equal(got, want)
        assert torch.equal(abs_topk(a, 0.25), a * (a.abs() >= kth_largest(a.abs(), 24)))


def test_abs_topk_of_bf16_selects_on_bit_patterns_exactly_as_a_float32_selection():
    g = torch.Generator().manual_seed(4)
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.randn(6, 10, 64, generator=g).to(dtype)
        x[0, 0, :50] = 0.0  # a row with fewer nonzeros than k: unchanged
        x[0, 1, :40] = -0.0  # negative zeros count as zero
        x[1, 0] = torch.tensor([1.5, -1.5] * 32, dtype=dtype)  # all magnitudes tied: all kept
        x[1, 1, ::3] = torch.finfo(dtype).tiny  # subnormal-adjacent values order correctly
        xf = x.float()
        want = xf * (xf.abs() >= xf.abs().sort(-1, descending=True).values[..., 15:16])
        got = abs_topk(x.clone().requires_grad_(), 0.25)
        assert got.dtype == dtype and torch.equal(got.float(), want)
        assert torch.equal(got[0, 0], x[0, 0]) and torch.equal(got[1, 0], x[1, 0])


# --- options for imported circuit_sparsity checkpoints (each defaults to the P1 block above) ------------------


def test_import_options_default_to_the_p1_block_and_stay_out_of_its_config():
    new = ("norm", "norm_eps", "norm_bias", "mlp_activation", "resid_activation", "d_pos_emb", "unembed_bias")
    assert not set(new) & set(ModelConfig(**TINY).to_dict())  # committed configs serialise as before
    explicit = dict(norm="rms", norm_eps=1e-6, norm_bias=False, mlp_activation="gelu", resid_activation="identity",
                    d_pos_emb=None, unembed_bias=None)
    torch.manual_seed(0)
    a = GPT(ModelConfig(**TINY))
    torch.manual_seed(0)
    b = GPT(ModelConfig(**TINY, **explicit))
    assert a.state_dict().keys() == b.state_dict().keys()
    x = torch.randint(0, 50, (2, 16))
    assert torch.equal(a(x), b(x))
    cfg = ModelConfig(**TINY, norm="layer", norm_eps=None, d_pos_emb=3, pos_embed=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["norm_eps"] is None


@pytest.mark.parametrize("bad, match", [({"norm": "batch"}, "norm must be one of"),
                                        ({"norm_bias": True}, "norm_bias needs norm='layer'"),
                                        ({"d_pos_emb": 4}, "needs pos_embed"),
                                        ({"resid_activation": "tanh"}, "resid_activation"),
                                        ({"act_sparsity_sites": ("resid_post",)}, "unknown site")])
def test_import_options_are_validated(bad, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**TINY, **bad)


def test_rms_norm_eps_none_is_the_dtype_epsilon_of_torch_rms_norm():
    x = torch.randn(4, 7, 16) * 1e-3  # small activations: where the eps matters
    for dtype in (torch.float32, torch.float64):
        n = RMSNorm(16, eps=None).to(dtype)
        with torch.no_grad():
            n.weight.uniform_(0.5, 2.0)
        want = torch.nn.functional.rms_norm(x.to(dtype), (16,), n.weight, eps=None)
        torch.testing.assert_close(n(x.to(dtype)), want)
        assert not torch.allclose(RMSNorm(16, eps=1e-6).to(dtype)(x.to(dtype)) * n.weight, want, rtol=1e-4)
        torch.testing.assert_close(n.normalize(x.to(dtype), n.stats(x.to(dtype))), want)


def test_layer_norm_option_is_torch_layer_norm_and_applies_recorded_stats():
    x = torch.randn(3, 5, 16) + 2.0
    n = LayerNorm(16, eps=1e-5, bias=True)
    with torch.no_grad():
        n.weight.uniform_(0.5, 2.0)
        n.bias.uniform_(-1, 1)
    want = torch.nn.functional.layer_norm(x, (16,), n.weight, n.bias, 1e-5)
    torch.testing.assert_close(n(x), want)
    torch.testing.assert_close(n.normalize(x, n.stats(x)), want)
    m = GPT(ModelConfig(**TINY, norm="layer", norm_bias=True, norm_eps=1e-5))
    assert isinstance(m.blocks[0].ln1.norm, LayerNorm) and "ln_final.norm.bias" in m.state_dict()
    assert "ln_final.norm.bias" not in GPT(ModelConfig(**TINY, norm="layer")).state_dict()


def test_residual_activation_and_residual_abstopk_sites():
    m = GPT(ModelConfig(**TINY, resid_activation="relu"))
    x = torch.randint(0, 50, (2, 16))
    with record(m, ["blocks.*.hook_resid_mid", "blocks.*.hook_resid_post"]) as c:
        m(x)
    assert all((v >= 0).all() for v in c.values()) and any((v == 0).any() for v in c.values())
    m = GPT(ModelConfig(**TINY, act_keep_frac=0.25, act_sparsity_sites=("resid_post_attn", "resid_post_mlp")))
    with record(m, ["blocks.*.hook_resid_mid", "blocks.*.hook_resid_post"]) as c:
        m(x)
    assert all(((v != 0).sum(-1) <= 8).all() for v in c.values())  # int(0.25 * 32) = 8 kept per token


def test_relu_mlp_and_abs_topk_of_zero_width_keeps_nothing():
    m = GPT(ModelConfig(**TINY, mlp_activation="relu"))
    with record(m, ["blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post"]) as c:
        m(torch.randint(0, 50, (2, 16)))
    assert torch.equal(c["blocks.0.mlp.hook_post"], torch.relu(c["blocks.0.mlp.hook_pre"]))
    assert torch.equal(abs_topk(torch.randn(3, 8), 0.1), torch.zeros(3, 8))  # int(0.8) = 0, as circuit_sparsity


def test_concatenated_position_channels_widen_every_read():
    m = GPT(ModelConfig(**TINY, pos_embed=True, d_pos_emb=4)).eval()
    assert m.pos_embed.weight.shape == (16, 4) and m.blocks[0].attn.W_Q.weight.shape == (32, 36)
    assert m.blocks[1].mlp.W_in.weight.shape == (128, 36) and m.unembed.weight.shape == (50, 32)
    x = torch.randint(0, 50, (2, 10))
    with record(m, ["blocks.0.ln2.hook_normalized", "ln_final.hook_normalized", "blocks.0.hook_resid_pre"]) as c:
        before = m(x)
    read = c["blocks.0.ln2.hook_normalized"]
    assert read.shape == (2, 10, 36) and c["ln_final.hook_normalized"].shape == (2, 10, 32)
    pos = m.pos_embed.weight[:10].expand(2, -1, -1)
    torch.testing.assert_close(read[..., 32:], m.blocks[0].ln2.pos_norm(pos))
    torch.testing.assert_close(c["blocks.0.hook_resid_pre"], m.embed(x))  # positions are not added
    with torch.no_grad():
        m.pos_embed.weight.mul_(-2.0).add_(1.0)
    assert not torch.allclose(m(x), before)


def test_unembed_bias_is_independent_of_use_bias():
    m = GPT(ModelConfig(**TINY, use_bias=False, unembed_bias=True))
    assert m.unembed.bias is not None and m.blocks[0].attn.W_Q.bias is None
    m = GPT(ModelConfig(**TINY, unembed_bias=False))
    assert m.unembed.bias is None and m.blocks[0].mlp.W_in.bias is not None
