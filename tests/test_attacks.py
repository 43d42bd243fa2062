import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.data.tasks import task_tokenizer
from sparsecirc.wst import attacks


def _tiny(n_ctx=64):
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=n_ctx, attn_sink=True)).eval()


def test_prompts_follow_the_bracket_counting_format():
    base = attacks.draw_bases(1, [1, 5], seed=0)[0]
    nested, flat = attacks.list_example(base, 5, True), attacks.list_example(base, 5, False)
    assert nested.prompt.replace(" = [[", " = [") == flat.prompt  # only the opening differs
    assert nested.prompt.count("\n") in (2, 3)  # 2-3 context lines, as the task
    last = nested.prompt.splitlines()[-1]
    assert last.startswith(f"{base.name} = [[") and last.count(",") == 4
    assert (nested.target, nested.distractor, flat.target, flat.distractor) == ("]]", "]", "]", "]]")
    tok = task_tokenizer()
    for e in (nested, flat):  # the task's encode-consistency rule
        assert tok.encode(e.prompt + e.target) == list(e.prompt_ids) + [e.target_id]
        assert tok.encode(e.prompt + e.distractor) == list(e.prompt_ids) + [e.distractor_id]


def test_bases_are_seeded_and_fit_the_context():
    a = attacks.draw_bases(4, [1, 10], seed=3, n_ctx=64)
    assert a == attacks.draw_bases(4, [1, 10], seed=3, n_ctx=64)
    assert a != attacks.draw_bases(4, [1, 10], seed=4, n_ctx=64)
    n_max = attacks.max_list_length(64, seed=0, n_prompts=8)
    bases = attacks.draw_bases(8, [n_max], seed=0, n_ctx=64)
    assert all(len(attacks.list_example(b, n_max, True, max_tokens=64).prompt_ids) <= 64 for b in bases)
    with pytest.raises(ValueError):
        attacks.draw_bases(8, [60], seed=0, n_ctx=64)  # 60 elements need > 120 tokens


def test_sweep_lengths_start_at_one_and_end_at_the_maximum():
    assert attacks.sweep_lengths(4) == [1, 2, 3, 4]
    ls = attacks.sweep_lengths(23)
    assert ls[0] == 1 and ls[-1] == 23 and ls == sorted(set(ls))


def test_dilution_sweep_shapes_and_probabilities():
    m = _tiny()
    sw = attacks.dilution_sweep(m, lengths=[1, 3, 6], n_prompts=4, seed=0, node=("blocks.0.hook_attn_out", 2))
    assert sw["lengths"] == [1, 3, 6] and len(sw["n_tokens"]) == 3 and sw["n_tokens"] == sorted(sw["n_tokens"])
    for kind in ("nested", "flat"):
        assert all(0 < p < 1 for p in sw[kind]["p_correct"])
        assert all(math.isfinite(v) for v in sw[kind]["node"])
    # nested: correct is ]] ; flat: correct is ] -> p_nested = p_correct (nested) and 1 - p_correct (flat)
    np.testing.assert_allclose(sw["nested"]["p_nested"], sw["nested"]["p_correct"], rtol=1e-6)
    np.testing.assert_allclose(sw["flat"]["p_nested"], 1 - np.array(sw["flat"]["p_correct"]), rtol=1e-5)
    full = attacks.dilution_sweep(m, n_prompts=4, seed=0)  # default: 1 .. longest that fits
    assert full["lengths"][0] == 1 and full["n_tokens"][-1] <= 64


def test_measure_reads_the_node_at_the_last_position():
    m = _tiny()
    base = attacks.draw_bases(2, [4], seed=0, n_ctx=64)
    ex = [attacks.list_example(b, 4, True, max_tokens=64) for b in base]
    got = attacks.measure(m, ex, ("blocks.0.attn.hook_v", 5))["node"]
    from sparsecirc.core.hooks import record
    for e, g in zip(ex, got):
        with record(m, ["blocks.0.attn.hook_v"]) as c:
            m(torch.tensor([e.prompt_ids]))
        assert g == pytest.approx(float(c["blocks.0.attn.hook_v"][0, -1].flatten()[5]), rel=1e-5)


def test_distractor_prompts_differ_only_in_the_bracket():
    attack, ctrl = attacks.distractor_prompts(3, seed=0, n_ctx=128)
    for a, c in zip(attack, ctrl):
        assert a.prompt.replace(attacks.DISTRACTOR_COMMENT, attacks.CONTROL_COMMENT) == c.prompt
        assert a.target == "]" and " = [[" not in a.prompt
    eff = attacks.distractor_effect(_tiny(128), n_prompts=4, seed=0)
    assert 0 <= eff["p_nested_control"] <= 1 and isinstance(eff["flips_majority"], bool)
    assert eff["rise"] == pytest.approx(eff["p_nested_attack"] - eff["p_nested_control"])


def test_fit_power_law_recovers_exponent_and_prefactor():
    x = np.array([10, 20, 40, 80.0])
    k, a = attacks.fit_power_law(x, 3.0 / x)
    assert k == pytest.approx(-1) and a == pytest.approx(3)
    k, a = attacks.fit_power_law(x, -0.5 * x ** -0.5)
    assert k == pytest.approx(-0.5) and a == pytest.approx(-0.5)
    assert attacks.power_law_r2(x, 3.0 / x) == pytest.approx(1)
    with pytest.raises(ValueError):
        attacks.fit_power_law([1], [1])


def test_failure_length_interpolates():
    assert attacks.failure_length([1, 2, 4], [0.9, 0.7, 0.3]) == pytest.approx(3.0)
    assert attacks.failure_length([1, 2], [0.4, 0.3]) == 1
    assert attacks.failure_length([1, 2], [0.9, 0.6]) is None


def test_measure_reads_attention_to_the_opener_and_sink():
    m = _tiny()
    base = attacks.draw_bases(3, [6], seed=0, n_ctx=64)
    ex = [attacks.list_example(b, 6, False, max_tokens=64) for b in base]
    r = attacks.measure(m, ex, head=(0, 1))
    assert np.all((r["attn_opening"] > 0) & (r["attn_opening"] < 1))
    assert np.all((r["attn_sink"] > 0) & (r["attn_opening"] + r["attn_sink"] <= 1 + 1e-6))
    tok = task_tokenizer()
    assert all(e.prompt_ids[attacks.opening_position(e.prompt_ids)] == tok.single_token_id(" [") for e in ex)


# --- the case study's pieces ------------------------------------------------------------------------------------
def test_depth_candidates_and_scoring_pick_the_falling_separating_node():
    from sparsecirc.wst import bracket
    cands = bracket.depth_candidates({"blocks.0.attn.hook_v": [3], "blocks.1.hook_attn_out": [5, 7],
                                         "blocks.0.mlp.hook_post": [1]})
    assert [c["read"] for c in cands] == [["blocks.0.attn.hook_z", 3], ["blocks.1.hook_attn_out", 5],
                                          ["blocks.1.hook_attn_out", 7]]
    x = np.array([20.0, 40, 80, 160])
    nested = np.stack([2 / x * 10, np.full(4, 0.5), 0.1 + 0 * x], 1)  # falls as 1/n | flat | constant
    flat = np.stack([0 * x, np.full(4, -0.5), 0.1 + 0 * x], 1)
    sweep = {"n_tokens": x.tolist(), "nested": {"nodes": nested.tolist()}, "flat": {"nodes": flat.tolist()}}
    ranked = bracket.score_depth_candidates(sweep, cands)
    assert ranked[0]["read"] == ["blocks.0.attn.hook_z", 3] and ranked[0]["exponent"] == pytest.approx(-1)
    assert ranked[-1]["score"] == 0


def test_writing_head_and_failure_text():
    from sparsecirc.wst import bracket, reading
    m = _tiny()
    assert reading.writing_head(m, "blocks.0.attn.hook_z", 11) == (0, 1)
    with torch.no_grad():
        m.blocks[0].attn.W_O.weight[4].zero_()
        m.blocks[0].attn.W_O.weight[4, 8:] = 1.0  # only head 1 writes channel 4
    assert reading.writing_head(m, "blocks.0.hook_attn_out", 4) == (0, 1)
    assert bracket.failure_text(None, 46) == "none up to 46 elements"
    assert bracket.failure_text(1.2, 46) == "1 element"


def test_patched_read_moves_the_prediction_only_through_the_patch():
    from sparsecirc.wst import bracket
    m = _tiny()
    base = attacks.draw_bases(2, [4], seed=0, n_ctx=64)
    ex = [attacks.list_example(b, 4, False, max_tokens=64) for b in base]
    plain = float(attacks.measure(m, ex)["p_nested"].mean())
    read = ("blocks.0.attn.hook_z", 3)
    same = float(attacks.measure(m, ex, read)["node"].mean())
    assert bracket.patched_p_nested(m, ex[:1], read, float(attacks.measure(m, ex[:1], read)["node"][0])) == \
        pytest.approx(float(attacks.measure(m, ex[:1])["p_nested"][0]), rel=1e-5)  # patching the same value: no-op
    assert bracket.patched_p_nested(m, ex, read, same + 50.0) != pytest.approx(plain)


def test_key_positions_find_the_deciding_token():
    from sparsecirc.data.tasks import load_task
    from sparsecirc.wst import contrast
    tok = task_tokenizer()
    q = load_task("single_double_quote", "test")[0]
    assert tok.decode([q["prompt_ids"][contrast.key_position("single_double_quote", q["prompt_ids"])]]) in ('("', "('")
    for row in load_task("set_or_string_fixedvarname", "test").select(range(2)):
        k = contrast.key_position("set_or_string_fixedvarname", row["prompt_ids"])
        assert tok.decode([row["prompt_ids"][k]]) in (" set", ' ""', " ''")
        assert tok.decode(row["prompt_ids"][k - 2:k]) == "current ="


def test_circuit_heads_reads_and_contrast_tables():
    from sparsecirc.data.tasks import load_task
    from sparsecirc.wst import contrast
    m = _tiny(128)
    nodes = {"blocks.0.attn.hook_q": [9], "blocks.0.attn.hook_v": [1, 12], "blocks.0.hook_attn_out": [3]}
    assert contrast.circuit_heads(m, nodes) == {"L0H0": {"q": [], "k": [], "v": [1]},
                                                 "L0H1": {"q": [9], "k": [], "v": [12]}}
    reads = contrast.circuit_reads(nodes)
    assert ["blocks.0.attn.hook_z", 12] in [r["read"] for r in reads]
    ds = load_task("single_double_quote", "test").select(range(8))
    out = contrast.contrast(m, ds, "single_double_quote", reads, [(0, 1)])
    assert out["n_a"] == out["n_b"] == 4 and len(out["nodes"]) == 4
    assert 0 < out["heads"][0]["attn_key_a"] < 1
    part = {"contrast": out, "heads": contrast.circuit_heads(m, nodes)}
    assert len(contrast.contrast_table(part, "sep_key", n=3)) == 3
    assert len(contrast.contrast_table(part, "sep_key", kinds=("attn_write",))) == 1
    assert list(contrast.head_table(part)["head"]) == ["L0H0", "L0H1"]
    pa = contrast.patched_accuracy(m, ds, "single_double_quote", ("blocks.0.hook_attn_out", 3), 0.0, 0.0)
    assert 0 <= pa["patched_accuracy"] <= 1


def test_pair_heatmap_aligns_prompts_of_different_lengths():
    from sparsecirc.data.tasks import load_task
    from sparsecirc.wst import contrast
    ds = load_task("set_or_string_fixedvarname", "test")
    pair = [ds[0], ds[1]]
    assert len(pair[0]["prompt_ids"]) != len(pair[1]["prompt_ids"])  # ` set`, `()` vs ` ""`
    fig = contrast.pair_heatmap(_tiny(128), "set_or_string_fixedvarname", pair, ("blocks.0.hook_attn_out", 0))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == max(len(p["prompt_ids"]) for p in pair) and any("|" in t for t in labels)


def test_node_role_follows_the_reading_rules():
    from sparsecirc.wst import contrast
    row = dict(a_key=0.0, b_key=0.0, sep_key=0.0, a_last=0.0, b_last=0.0, sep_last=0.0)
    assert contrast.node_role({**row, "sep_last": -1.4}) == "type -> last"
    assert contrast.node_role({**row, "sep_key": 1.9, "sep_last": 0.3}) == "type at key"
    det = {**row, "a_key": 0.8, "b_key": 0.6, "a_last": 0.1, "b_last": -0.1}
    assert contrast.node_role(det) == "detector"
    assert contrast.node_role({**det, "b_key": -0.6}) == "other"  # opposite signs: not a detector
    assert contrast.node_role({**det, "a_last": 0.5}) == "other"  # as strong at the end: not a detector
    part = {"contrast": {"nodes": [{**row, "sep_last": 2.0}, det, row]}}
    assert contrast.role_counts(part) == {"type -> last": 1, "type at key": 0, "detector": 1, "other": 1}


def test_snippets_around_windows_each_occurrence_in_order():
    from sparsecirc.wst import reading
    stream = torch.arange(100) % 10  # token 7 at positions 7, 17, ..., 97
    snips = reading.snippets_around(stream, [7], n=3, before=2, after=3, seed=1)
    assert len(snips) == 3 and all(s == [5, 6, 7, 8, 9, 0] for s in snips)
    assert reading.snippets_around(stream, [7], n=3, before=2, after=3, seed=1) == snips  # seeded
    assert len(reading.snippets_around(stream, [7], n=50, before=2, after=3)) == 9  # 97 + 3 runs off the end
    with pytest.raises(ValueError, match="none of the token ids"):
        reading.snippets_around(stream, [11], n=2)


def test_snippet_heatmap_draws_one_row_per_snippet():
    from sparsecirc.wst import reading
    snips = [[5, 6, 7, 8], [9, 10, 11]]
    fig = reading.snippet_heatmap(_tiny(16), snips, ("blocks.0.hook_attn_out", 0))
    heat = [a for a in fig.axes if a.get_xticklabels()]
    assert [len(a.get_xticklabels()) for a in heat] == [4, 3]
    assert len(fig.axes) == 3  # two rows and one shared colour bar
    assert {a.images[0].get_clim() for a in heat} == {heat[0].images[0].get_clim()}  # one colour scale


def test_patching_several_reads_equals_patching_them_one_hook_at_a_time():
    from sparsecirc.data.tasks import load_task
    from sparsecirc.wst import contrast
    m = _tiny(128)
    ds = load_task("single_double_quote", "test").select(range(16))
    one = contrast.patched_accuracy(m, ds, "single_double_quote", ("blocks.0.attn.hook_z", 9), 40.0, -40.0)
    many = contrast.patched_accuracy(m, ds, "single_double_quote", [("blocks.0.attn.hook_z", 9)], [40.0], [-40.0])
    assert one == many
    with pytest.raises(ValueError, match="values"):
        contrast.patched_accuracy(m, ds, "single_double_quote", [("blocks.0.attn.hook_z", 9)], [1.0, 2.0], [0.0])
    rows = [{"read": ["blocks.0.attn.hook_z", j], "a_last": 40.0, "b_last": -40.0} for j in (8, 9, 15, 3)]
    hp = contrast.head_value_patch(m, ds, "single_double_quote", rows, ("blocks.0.attn.hook_z", 9))
    assert hp["head"] == "L0H1" and hp["channels"] == [8, 9, 15]  # d_head 8: channels 8..15 are head 1
    # an attention-write read (or none): the head of the first value row, here head 0 (channel 3, listed first)
    first = [rows[3]] + rows[:3]
    for read in (("blocks.0.hook_attn_out", 3), None):
        hp = contrast.head_value_patch(m, ds, "single_double_quote", first, read)
        assert hp["head"] == "L0H0" and hp["channels"] == [3]
    writes = [{"read": ["blocks.0.hook_attn_out", 3], "a_last": 1.0, "b_last": -1.0}]
    assert contrast.head_value_patch(m, ds, "single_double_quote", writes, ("blocks.0.hook_attn_out", 3)) is None


def test_hop_attention_reads_the_pattern_between_named_positions():
    from sparsecirc.core.hooks import record
    from sparsecirc.data.tasks import load_task, pad_batch
    from sparsecirc.wst import contrast, vartype
    m = _tiny(128)
    ds = load_task("set_or_string_fixedvarname", "test").select(range(6))
    df = vartype.hop_attention(m, ds, "set_or_string_fixedvarname", ["L0H1"], hops=(("last", "key"), ("key", "key-2")))
    assert list(df.columns) == ["last -> key", "key -> key-2", "last -> sink"] and list(df.index) == ["L0H1"]
    expect = []  # the same numbers read directly off the pattern
    for row in ds:
        ids = row["prompt_ids"]
        k = contrast.key_position("set_or_string_fixedvarname", ids)
        tokens, last = pad_batch([ids], 128)
        with record(m, ["blocks.0.attn.hook_pattern"]) as c:
            m(tokens)
        pat = c["blocks.0.attn.hook_pattern"][0, 1]
        expect.append([float(pat[int(last[0]), k]), float(pat[k, k - 2]), 1 - float(pat[int(last[0])].sum())])
    assert np.allclose(df.values[0], np.mean(expect, 0), atol=1e-3)
    with pytest.raises(ValueError, match="position name"):
        vartype.hop_attention(m, ds, "set_or_string_fixedvarname", ["L0H1"], hops=(("first", "key"),))
    with pytest.raises(ValueError, match="not in a model"):
        vartype.hop_attention(m, ds, "set_or_string_fixedvarname", ["L3H0"])


def test_prefixed_accuracy_and_distractor_claims():
    from sparsecirc.data.tasks import load_task, task_metrics
    from sparsecirc.wst import vartype
    m = _tiny(128)
    ds = load_task("set_or_string_fixedvarname", "test").select(range(16))
    plain = vartype.prefixed_accuracy(m, ds, "set_or_string_fixedvarname", "")
    # no prefix re-tokenizes to the committed ids, so it is the ordinary task accuracy
    assert plain["accuracy"] == task_metrics(m, "set_or_string_fixedvarname", max_examples=16)["accuracy"]
    assert plain["accuracy"] == (plain["accuracy_a"] + plain["accuracy_b"]) / 2 and plain["n"] == 16
    rows = vartype.distractor_rows({"a": m}, ds, "set_or_string_fixedvarname", ['x = ""\n'])
    assert [r["prefix"] for r in rows] == ["", 'x = ""\n']
    fig = vartype.distractor_plot(rows + [{**r, "model": "b"} for r in rows])
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 4  # two prefixes x (A, B) per model
    fake = [{"model": "s", "prefix": "", "accuracy_a": 0.8}, {"model": "s", "prefix": "p", "accuracy_a": 0.1},
            {"model": "wst-zoo-l2d128-dense-s0", "prefix": "", "accuracy_a": 0.9},
            {"model": "wst-zoo-l2d128-dense-s0", "prefix": "p", "accuracy_a": 0.6}]
    c = vartype.distractor_claims(fake, "p")
    assert c["vartype-distractor-flips"] is True
    assert c["vartype-distractor-attack"] == "0.80 -> 0.10 of .add prompts right"
    assert c["vartype-distractor-transfers-to-dense"] == "dense-s0: no (0.90 -> 0.60)"


# --- data version 2: the model's own bracket_counting form -----------------------------------------------------
def _tiny_v2(n_ctx=128):
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=n_ctx, attn_sink=True, data_version="v2")).eval()


def _strings_out(text: str) -> str:
    return re.sub(r"\"[^\"]*\"|'[^']*'", "S", text)


def _head_form(line: str) -> str:
    """The list line before its ``[[`` with strings -> S and names -> w (``    grid["a"] = `` -> ``    w[S] = ``)."""
    return re.sub(r"[A-Za-z_]\w*", "w", _strings_out(line[:line.index("[[")]))


def test_v2_prompts_have_the_form_of_the_v2_task():
    from sparsecirc.data.tasks import load_task
    tok2 = task_tokenizer("v2")
    bases = attacks.draw_bases(24, [1, 3, 6], seed=0, n_ctx=128, version="v2")
    assert all(b.version == "v2" for b in bases) and bases == attacks.draw_bases(24, [1, 3, 6], 0, version="v2")
    rows = [load_task("bracket_counting", split, version="v2")[:] for split in ("train", "test")]
    task = [p for r in rows for p, t in zip(r["prompt"], r["target"]) if t == "]]"]
    single_line = [p.splitlines()[-1] for p in task if "[[" in p.splitlines()[-1]]
    task_forms = {_head_form(line) for line in single_line}
    for b in bases:
        for n in (1, 3, 6):
            nested, flat = attacks.list_example(b, n, True), attacks.list_example(b, n, False)
            last = nested.prompt.splitlines()[-1]
            assert _head_form(last) in task_forms  # one of the task's openers, at its indentation
            assert flat.prompt == nested.prompt[:-len(last)] + last.replace("[[", "[", 1)  # only the opening differs
            assert _strings_out(last).count(",") == n - 1
            assert nested.prompt[-1] not in "\"')"  # never ends on a string (the task's rule)
            for e in (nested, flat):  # v2 ids: decode with the v2 tokenizer, pass the v2 task's encode check
                assert tok2.decode(list(e.prompt_ids)) == e.prompt
                assert tok2.encode(e.prompt + e.target) == list(e.prompt_ids) + [e.target_id]
                assert tok2.encode(e.prompt + e.distractor) == list(e.prompt_ids) + [e.distractor_id]
    # the task's own single-line nested prompts have the same shape (a check on this test's form function)
    assert len(single_line) > 300 and len(task_forms) >= 15


def test_v2_candidates_are_single_tokens_and_the_opening_is_the_second_bracket():
    tok1, tok2 = task_tokenizer(), task_tokenizer("v2")
    assert tok2.single_token_id("]]") != tok2.single_token_id("]")  # both single tokens in v2
    br = {tok2.single_token_id("["), tok2.single_token_id(" [")}
    for b in attacks.draw_bases(12, [5], seed=1, version="v2"):
        nested, flat = attacks.list_example(b, 5, True), attacks.list_example(b, 5, False)
        assert (nested.target_id, flat.target_id) == (tok2.single_token_id("]]"), tok2.single_token_id("]"))
        pos = attacks.opening_position(nested.prompt_ids, "v2")
        # two consecutive single `[` tokens, the opening is the second; everything after it is the elements
        assert nested.prompt_ids[pos] == tok2.single_token_id("[") and nested.prompt_ids[pos - 1] in br
        assert "[" not in tok2.decode(list(nested.prompt_ids[pos + 1:]))
        fpos = attacks.opening_position(flat.prompt_ids, "v2")
        assert flat.prompt_ids[fpos] in br and flat.prompt_ids[fpos - 1] not in br
        assert tok2.decode(list(flat.prompt_ids[fpos + 1:])) == tok2.decode(list(nested.prompt_ids[pos + 1:]))
    v1 = attacks.list_example(attacks.draw_bases(1, [5], seed=1)[0], 5, True)  # v1 stays on the ` [[` token
    assert v1.prompt_ids[attacks.opening_position(v1.prompt_ids)] == tok1.single_token_id(" [[")


def test_sweep_and_distractor_read_the_models_data_version():
    m1, m2 = _tiny(128), _tiny_v2(128)
    sw2 = attacks.dilution_sweep(m2, lengths=[1, 4], n_prompts=4, seed=0, head=(0, 1))
    bases2 = attacks.draw_bases(4, [1, 4], seed=0, n_ctx=128, version="v2")
    assert sw2["n_tokens"] == [np.mean([len(attacks.list_example(b, n, True).prompt_ids) for b in bases2])
                               for n in (1, 4)]
    assert all(0 < p < 1 for k in ("nested", "flat") for p in sw2[k]["p_correct"])
    assert all(0 < a < 1 for a in sw2["nested"]["attn_opening"])
    sw1 = attacks.dilution_sweep(m1, lengths=[1, 4], n_prompts=4, seed=0)  # a v1 model still reads v1 prompts
    bases1 = attacks.draw_bases(4, [1, 4], seed=0, n_ctx=128)
    assert sw1["n_tokens"] == [np.mean([len(attacks.list_example(b, n, True).prompt_ids) for b in bases1])
                               for n in (1, 4)]
    with pytest.raises(ValueError, match="data version v2"):  # v1 prompts are refused by a v2 model
        attacks.measure(m2, [attacks.list_example(b, 4, True) for b in bases1])
    eff = attacks.distractor_effect(m2, n_prompts=4, seed=0)
    assert 0 <= eff["p_nested_attack"] <= 1 and isinstance(eff["flips_majority"], bool)
    tok2 = task_tokenizer("v2")
    assert tok2.decode(tok2.encode(eff["examples"][0])) == eff["examples"][0]


def test_v2_distractor_prompts_keep_the_comment_verbatim_and_are_seeded():
    attack, ctrl = attacks.distractor_prompts(6, seed=0, n_ctx=128, version="v2")
    assert [a.prompt for a in attack] == [a.prompt for a in attacks.distractor_prompts(6, 0, version="v2")[0]]
    tok2 = task_tokenizer("v2")
    for a, c in zip(attack, ctrl):
        lines = a.prompt.splitlines()
        assert lines[-2].strip() == attacks.DISTRACTOR_COMMENT and "[[" not in lines[-1]
        assert a.prompt.replace(attacks.DISTRACTOR_COMMENT, attacks.CONTROL_COMMENT) == c.prompt
        assert a.target == "]" and a.target_id == tok2.single_token_id("]")
        assert 2 <= _strings_out(lines[-1]).count(",") + 1 <= 14  # the v2 task's 2-14 elements


# --- the case studies on a v2 model: each reads its model's own data version -------------------------------------
def test_key_positions_find_the_deciding_token_in_v2():
    from sparsecirc.data.tasks import load_task
    from sparsecirc.wst import contrast
    tok2 = task_tokenizer("v2")
    for row in load_task("single_double_quote", "test", version="v2"):  # every v2 opening form, the last quote
        ids = row["prompt_ids"]
        k = contrast.key_position("single_double_quote", ids, "v2")
        assert set(tok2.decode([ids[k]])) & set("\"'") and not set(tok2.decode(ids[k + 1:])) & set("\"'")
    for row in load_task("set_or_string_fixedvarname", "test", version="v2").select(range(8)):
        ids = row["prompt_ids"]
        k = contrast.key_position("set_or_string_fixedvarname", ids, "v2")
        assert tok2.decode([ids[k]]) in (" set", ' ""', " ''") and tok2.decode(ids[k - 2:k]) == "current ="


def test_contrast_reads_the_v2_models_task_data_and_token_ids():
    from sparsecirc.data.tasks import load_task, model_task
    from sparsecirc.wst import contrast
    m2 = _tiny_v2(128)
    ds = model_task(m2, "single_double_quote").select(range(8))
    assert ds["prompt"] == load_task("single_double_quote", "test", version="v2")["prompt"][:8]
    nodes = {"blocks.0.attn.hook_v": [1, 12], "blocks.0.hook_attn_out": [3]}
    out = contrast.contrast(m2, ds, "single_double_quote", contrast.circuit_reads(nodes), [(0, 1)])
    assert out["n_a"] == out["n_b"] == 4  # A prompts found through the v2 id of `")`
    pa = contrast.patched_accuracy(m2, ds, "single_double_quote", ("blocks.0.hook_attn_out", 3), 0.0, 0.0)
    assert 0 <= pa["patched_accuracy"] <= 1
    pair = [ds[0], ds[1]]
    fig = contrast.pair_heatmap(m2, "single_double_quote", pair, ("blocks.0.hook_attn_out", 0))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    tok2 = task_tokenizer("v2")
    assert labels[:3] == [repr(tok2.decode([i]))[1:-1] for i in pair[0]["prompt_ids"][:3]]  # v2 token labels
    v1 = contrast.contrast(_tiny(128), load_task("single_double_quote").select(range(8)), "single_double_quote",
                           contrast.circuit_reads(nodes), [(0, 1)])
    assert v1["n_a"] == 4  # a v1 model keeps v1 ids


def test_vartype_reads_the_v2_models_data_and_refuses_another_versions():
    from sparsecirc.data.tasks import load_task, model_task, task_metrics
    from sparsecirc.wst import vartype
    m1, m2 = _tiny(128), _tiny_v2(128)
    task = "set_or_string_fixedvarname"
    ds2 = model_task(m2, task).select(range(16))
    plain = vartype.prefixed_accuracy(m2, ds2, task, "")
    assert plain["accuracy"] == task_metrics(m2, task, max_examples=16)["accuracy"]  # v2 ids re-tokenize to v2 ids
    assert plain["n"] == 16 and plain["accuracy"] == (plain["accuracy_a"] + plain["accuracy_b"]) / 2
    with pytest.raises(ValueError, match="data version v2"):
        vartype.prefixed_accuracy(m2, load_task(task).select(range(16)), task, "")
    df = vartype.hop_attention(m2, ds2, task, ["L0H1"])
    assert df.shape == (1, 5) and ((df.values >= 0) & (df.values <= 1)).all()
    rows = vartype.distractor_rows({"v1": m1, "v2": m2}, None, task, ['x = ""\n'])  # None: each its own split
    assert [r["n"] for r in rows] == [256] * 4
    assert rows[0]["accuracy"] == task_metrics(m1, task)["accuracy"]
    assert rows[2]["accuracy"] == task_metrics(m2, task)["accuracy"]


def _study_ctx(spec, sspec, models):
    return SimpleNamespace(spec=spec, folder=Path("unused"), dep=lambda mid: SimpleNamespace(model=models[mid]),
                           overrides=lambda: sspec)


def test_quote_study_scores_each_model_on_its_own_data_version(monkeypatch):
    from sparsecirc.core.config import PruneConfig
    from sparsecirc.data.tasks import model_data_version, task_metrics
    from sparsecirc.wst import contrast, quote
    models = {"s2": _tiny_v2(128), "d1": _tiny(128)}
    seen = []
    monkeypatch.setattr(quote, "study_model", lambda ctx, mid: (models[mid], None, None))
    monkeypatch.setattr(quote, "mean_values", lambda *a: {})
    monkeypatch.setattr(contrast, "prune_at_targets",  # no pruning: the contrast reads the whole model
                        lambda model, means, task, pcfg, targets: (seen.append(model_data_version(model))
                                                                   or {"target": None}, None))
    spec = {"tasks": {"quote": "single_double_quote", "vartype": "set_or_string_fixedvarname"}, "model": "s2",
            "targets": [0.15], "distractors": {"prefixes": ['x = ""\n'], "compare_models": ["d1"]}}
    res, files = quote.quote_study(_study_ctx(spec, {}, models), {}, PruneConfig(), 0)
    assert seen == ["v2", "v2"] and files == []
    assert res["quote"]["task_metrics"] == task_metrics(models["s2"], "single_double_quote")
    assert res["quote"]["contrast"]["n_a"] == res["quote"]["contrast"]["n_b"] == 128
    d = res["vartype"]["distractor"]
    assert [r["model"] for r in d] == ["s2", "s2", "d1", "d1"]
    assert d[2]["accuracy"] == task_metrics(models["d1"], "set_or_string_fixedvarname")["accuracy"]


def test_bracket_study_runs_each_model_on_its_own_data_version(monkeypatch):
    from sparsecirc.core.config import PruneConfig
    from sparsecirc.data.tasks import task_metrics
    from sparsecirc.wst import bracket
    from sparsecirc.wst.ablation import compute_means
    models = {"s2": _tiny_v2(128), "d1": _tiny(128)}
    windows = torch.randint(0, 2048, (4, 32), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(bracket, "study_model", lambda ctx, mid: (models[mid], None, None))
    monkeypatch.setattr(bracket, "mean_values", lambda model, *a: compute_means(model, windows))
    monkeypatch.setattr(bracket, "prune_at_targets", lambda *a: ({"target": None}, None))
    spec = {"task": "bracket_counting", "model": "s2", "compare_models": ["d1"], "targets": [0.15],
            "distractor_comments": {"p1": attacks.DISTRACTOR_COMMENT, "double": "# Don't get distracted: [["}}
    sspec = {"n_prompts": 4, "distractor_prompts": 4, "lengths": [1, 4, 8]}
    res, _ = bracket.bracket_study(_study_ctx(spec, sspec, models), sspec, PruneConfig(), 0)
    assert res["models"]["s2"]["task_metrics"] == task_metrics(models["s2"], "bracket_counting")
    for mid, version in (("s2", "v2"), ("d1", "v1")):  # each model's distractor prompts in its own version
        assert res["models"][mid]["distractor"]["p1"]["examples"][0] == \
            attacks.distractor_prompts(4, 0, version=version)[0][0].prompt
    ablate = res["interventions"]["ablate"]  # on the v2 test split (and v2 list prompts, or measure would refuse)
    assert ablate["full_accuracy"] == task_metrics(models["s2"], "bracket_counting")["accuracy"]
    assert res["models"]["d1"]["dilution"]["n_tokens"] == attacks.dilution_sweep(
        models["d1"], [1, 4, 8], 4, 0)["n_tokens"]  # the v1 model on v1 prompts


def test_list_pair_and_heatmap_follow_the_data_version():
    from sparsecirc.wst import bracket, case_plots
    tok1, tok2 = task_tokenizer(), task_tokenizer("v2")
    n1, f1 = bracket.list_pair(128, 5, 7)
    assert len(n1.prompt_ids) == len(f1.prompt_ids) and tok1.single_token_id(" [[") in n1.prompt_ids
    n2, f2 = bracket.list_pair(128, 5, 7, version="v2")
    assert len(n2.prompt_ids) == len(f2.prompt_ids) + 1  # `[[` is two tokens in v2
    pos = attacks.opening_position(n2.prompt_ids, "v2")
    assert [tok2.decode([i]).strip() for i in n2.prompt_ids[pos - 1:pos + 1]] == ["[", "["]
    fig = case_plots.list_heatmap(_tiny_v2(128), [n2, f2], head=(0, 1))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == len(n2.prompt_ids) and labels[pos].startswith("[|") and labels[pos - 1].endswith("|")
    assert fig.axes[0].images[0].get_array().shape == (2, len(n2.prompt_ids))
    fig1 = case_plots.list_heatmap(_tiny(128), [n1, f1], head=(0, 1))
    assert " [[|[" in [t.get_text() for t in fig1.axes[0].get_xticklabels()]
    with pytest.raises(ValueError, match="same base"):
        case_plots.list_heatmap(_tiny_v2(128), [n2, bracket.list_pair(128, 6, 7, version="v2")[1]], head=(0, 1))


def test_reading_labels_tokens_in_the_models_data_version(monkeypatch):
    from sparsecirc.core.config import make_config
    from sparsecirc.wst import reading
    tok1, tok2 = task_tokenizer(), task_tokenizer("v2")
    snips = [[tok2.single_token_id(t) for t in (" [", "[", "1", "]]")]]
    fig = reading.snippet_heatmap(_tiny_v2(128), snips, ("blocks.0.hook_attn_out", 0))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [" [", "[", "1", "]]"]
    fig = reading.snippet_heatmap(_tiny(128), snips, ("blocks.0.hook_attn_out", 0))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [repr(tok1.decode([i]))[1:-1] for i in snips[0]]
    stream = torch.tensor([5] * 10 + [tok2.single_token_id("]]")] + [5] * 20 + [tok1.single_token_id("]]")] + [5] * 20)
    monkeypatch.setattr(reading, "lm_tokens", lambda cfg, split=None: stream if split == "val" else (None, stream))
    v2 = make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 60_000})
    assert reading.corpus_snippets(v2, ("]]",), n=4, before=2, after=2) == [stream[8:13].tolist()]
    assert reading.corpus_snippets(make_config("ci"), ("]]",), n=4, before=2, after=2) == [stream[29:34].tolist()]


def test_attacks_study_runs_whole_models_and_feeds_the_tables_and_figure():
    from sparsecirc.core.config import PruneConfig
    from sparsecirc.data import heldout
    from sparsecirc.data.tasks import task_metrics
    from sparsecirc.wst import bracket, case_plots
    models = {"s2": _tiny_v2(128), "d2": _tiny_v2(128)}
    spec = {"task": "bracket_counting", "model": "s2", "compare_models": ["d2"],
            "distractor_comments": {"p1": attacks.DISTRACTOR_COMMENT}}
    sspec = {"n_prompts": 4, "distractor_prompts": 4, "lengths": [1, 4, 8]}
    res, files = bracket.attacks_study(_study_ctx(spec, sspec, models), sspec, PruneConfig(), 0)
    assert files == [] and list(res["models"]) == ["s2", "d2"]
    r = res["models"]["s2"]
    assert r["task_metrics"] == task_metrics(models["s2"], "bracket_counting")
    assert r["heldout"] == heldout.evaluate_heldout(models["s2"], "bracket_counting")["heldout"]
    assert r["dilution"]["lengths"] == [1, 4, 8] and set(r["failure_length"]) == {"nested", "flat"}
    table = bracket.distractor_table(res)
    assert list(table["model"]) == ["s2", "d2"] and list(table["comment"]) == [attacks.DISTRACTOR_COMMENT] * 2
    fig = case_plots.dilution_accuracy(res, title="t")
    assert len(fig.axes[0].lines) >= 4 and fig.axes[0].get_title() == "t"  # nested + flat for each model


def test_short_name_strips_both_zoo_prefixes():
    from sparsecirc.wst.bracket import short_name
    assert short_name("wst-zoo-l2d128-dense-s0") == "dense-s0"
    assert short_name("wst-zoo2-l4d128-sparse") == "v2 sparse"


def test_distractor_claims_grade_the_attacked_kind_of_prompt():
    from sparsecirc.wst import vartype
    rows = [{"model": "s", "prefix": "", "accuracy_a": 0.9, "accuracy_b": 0.9},
            {"model": "s", "prefix": "p", "accuracy_a": 0.95, "accuracy_b": 0.1},
            {"model": "wst-zoo2-l4d128-dense", "prefix": "", "accuracy_a": 0.5, "accuracy_b": 0.8},
            {"model": "wst-zoo2-l4d128-dense", "prefix": "p", "accuracy_a": 0.5, "accuracy_b": 0.7}]
    b = vartype.distractor_claims(rows, "p", "b")
    assert b["vartype-distractor-attack"] == "0.90 -> 0.10 of += prompts right" and b["vartype-distractor-flips"]
    assert b["vartype-distractor-transfers-to-dense"] == "v2 dense: no (0.80 -> 0.70)"
    a = vartype.distractor_claims(rows, "p")
    assert a["vartype-distractor-attack"] == "0.90 -> 0.95 of .add prompts right" and not a["vartype-distractor-flips"]
    with pytest.raises(ValueError, match="attacked"):
        vartype.distractor_claims(rows, "p", "c")


def test_refresh_claims_regrades_the_configured_attack_without_remeasuring():
    from sparsecirc.wst import quote
    rows = [{"model": "s", "prefix": "", "accuracy_a": 0.9, "accuracy_b": 0.9},
            {"model": "s", "prefix": "x", "accuracy_a": 0.95, "accuracy_b": 0.85},
            {"model": "s", "prefix": "y", "accuracy_a": 0.9, "accuracy_b": 0.1}]
    res = {"quote": {"prune": {"edges": 3, "nodes": 2, "target": 0.15}},
           "vartype": {"prune": {"target": 0.15}, "heads": {"L0H1": {}}, "distractor": rows}}
    spec = {"distractors": {"prefixes": ["x", "y"]}}
    assert quote.refresh_claims(res, spec)["claims"]["vartype-distractor-attack"] == \
        "0.90 -> 0.95 of .add prompts right"  # default: the first prefix, against the set() prompts
    spec["distractors"].update(attack="y", attacked="b")
    out = quote.refresh_claims(res, spec)
    assert out["vartype"]["distractor_attack"] == {"prefix": "y", "attacked": "b"}
    assert out["claims"]["vartype-distractor-attack"] == "0.90 -> 0.10 of += prompts right"
    assert out["claims"]["vartype-distractor-flips"] is True and out["vartype"]["distractor"] is rows


def test_task_circuits_reads_one_task_per_model_bisected_and_cleaned():
    from sparsecirc.wst import quote

    def row(model, task, cell, cleaned=None, condition="main"):
        r = {"model": model, "task": task, "condition": condition, "k_coef": 3e-3,
             "targets": {"0.15": cell}, "test": {"loss": 0.05, "accuracy": 0.98},
             "faithfulness": {"agreement": 0.97}}
        return {**r, **({"cleaned": cleaned} if cleaned else {})}

    res = {"targets": [0.15], "runs": [
        row("a", "q", {"nodes": 40, "edges": 80}, {"nodes": 30, "edges": 60, "test": {"loss": 0.1, "accuracy": 0.95}}),
        row("a", "other", {"nodes": 1, "edges": 1}),
        row("b", "q", None),
        row("a", "q", {"nodes": 9, "edges": 9}, condition="random_init")]}  # a control: not a circuit of the model
    t = quote.task_circuits(res, "q", {"b": "low", "a": "base", "c": "absent"})
    assert list(t.index) == ["low", "base"]
    assert t.loc["base", ["nodes", "edges", "cleaned nodes", "cleaned edges"]].tolist() == [40, 80, 30, 60]
    assert t.loc["base", "agreement"] == 0.97 and t.loc["base", "cleaned test accuracy"] == 0.95
    assert t.loc["low"].drop("k_coef").isna().all()
