"""The openai/circuit_sparsity loader (``sparsecirc.official``) on checkpoints built here from the documented format.

No network and no official code: each test writes a ``beeg_config.json`` + ``final_model.pt`` folder by hand (random
sparse weights, official key names and shapes), loads it, and compares with :func:`reference`, a forward pass
written in this file from the format's definition in plain torch on the *official* state dict, so a mapping error
(a transposed matrix, q/k/v cut in the wrong order, a wrongly scaled sink) shows up as different logits.
"""
import json
import math
import os
import re
from pathlib import Path

import datasets
import pytest
import torch

from sparsecirc.__main__ import main
from sparsecirc.artifacts import read_json, sha256_file
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.train import load_model
from sparsecirc.official import (
    FORWARD_DEFAULTS,
    IGNORED_FLAGS,
    LEGACY_FLAGS,
    OfficialFormatError,
    from_official_layout,
    hook_name,
    load,
    official_hook_name,
    record_official,
    to_official_layout,
)
from sparsecirc.spa import patching
from sparsecirc.wst import attacks, bridges
from sparsecirc.wst.ablation import compute_means
from sparsecirc.wst.circuits import Circuit, count_edges, draw_circuit, node_sites
from sparsecirc.wst.prune import prune_to_circuit

ROOT = Path(__file__).resolve().parent.parent
SHAPE = {"block_size": 16, "vocab_size": 40, "n_layer": 2, "n_head": 2, "d_model": 16}
ALL_SITES = "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out"
FLAGS = {
    # P1's released style: RMSNorm, AbsTopK at all 8 sites, sink, bigram, no biases, untied; d_head apart from
    # d_model / n_head; the legacy n_mlp; flags that leave the forward pass alone
    "p1_style": {"rms_norm": True, "afrac": 0.25, "afrac_loctypes": ALL_SITES, "sink": True, "bias": False,
                 "enable_bigram_table": True, "tied_unembed": False, "d_head": 4, "n_mlp": 24, "dropout": 0.0,
                 "tokenizer_name": "tinypython_2k", "flash": True, "grad_checkpointing": True, "pfrac": 0.01},
    # nothing but the shape: the upstream defaults (LayerNorm with bias, biases, tied, no AbsTopK) and no
    # final_logits_bias in the file (zeros)
    "defaults": {},
    "relu_residual": {"ln_bias": False, "activation_type": "relu", "residual_activation_type": "relu", "afrac": 0.5,
                      "afrac_loctypes": "attn_in,attn_v,mlp_neuron,resid_post_attn,resid_post_mlp", "sink": True,
                      "tied_unembed": False},
    "cat_positions": {"d_pos_emb": 4, "rms_norm": True, "afrac": 0.25, "bias": False},
    "k_zero": {"rms_norm": True, "afrac": 0.05, "afrac_loctypes": "attn_q,mlp_in", "tied_unembed": False},
}


# --- the format, written out -------------------------------------------------------------------------------------
def official_state(conf: dict, seed: int = 0, density: float = 0.3, logits_bias: bool = True) -> dict:
    """An official-format state dict for ``conf`` (random sparse matrices, dense biases / norms)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def sparse(*shape, scale=0.7):
        return rnd(*shape, scale=scale) * (torch.rand(*shape, generator=g) < density)

    D, H, V, T = conf["d_model"], conf["n_head"], conf["vocab_size"], conf["block_size"]
    hd = H * (conf.get("d_head") or D // H)
    dm = conf.get("d_mlp") or conf.get("n_mlp") or 4 * D
    dp = conf.get("d_pos_emb")
    d_in = D + (dp or 0)
    rms, bias = conf.get("rms_norm", False), conf.get("bias", True)
    sd = {"transformer.wte.weight": sparse(V, D, scale=1.0), "transformer.wpe.weight": sparse(T, dp or D)}

    def norm(name, d):
        sd[f"{name}.weight"] = 1 + rnd(d, scale=0.3)
        if not rms and conf.get("ln_bias", True):
            sd[f"{name}.bias"] = rnd(d, scale=0.2)

    for i in range(conf["n_layer"]):
        p = f"transformer.h.{i}"
        norm(f"{p}.ln_1", D)
        norm(f"{p}.ln_2", D)
        if dp:
            norm(f"{p}.ln_p1", dp)
            norm(f"{p}.ln_p2", dp)
        for name, out, inp in (("attn.c_attn", 3 * hd, d_in), ("attn.c_proj", D, hd), ("mlp.c_fc", dm, d_in),
                               ("mlp.c_proj", D, dm)):
            sd[f"{p}.{name}.weight"] = sparse(out, inp)
            if bias:
                sd[f"{p}.{name}.bias"] = rnd(out, scale=0.1)
        if conf.get("sink"):
            sd[f"{p}.attn.attn_imp.sink_logit"] = rnd(H)
    norm("transformer.ln_f", D)
    sd["lm_head.weight"] = sd["transformer.wte.weight"] if conf.get("tied_unembed", True) else sparse(V, D)
    if logits_bias:
        sd["final_logits_bias"] = rnd(V, scale=0.1)
    if conf.get("enable_bigram_table"):
        sd["bigram_table"] = rnd(V, V, scale=0.1)
    return sd


def write_folder(folder: Path, conf: dict, sd: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(conf))
    torch.save(sd, folder / "final_model.pt")
    return folder


def reference(sd: dict, conf: dict, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """circuit_sparsity's forward pass from the format's definition: (logits, activations by official name)."""
    D, H, L = conf["d_model"], conf["n_head"], conf["n_layer"]
    dh = conf.get("d_head") or D // H
    rms = conf.get("rms_norm", False)
    afrac = conf.get("afrac")
    sites = conf.get("afrac_loctypes", "attn_in,attn_out,mlp_in,mlp_out").split(",")
    relu_resid = conf.get("residual_activation_type", "identity") == "relu"

    def norm(name, x):
        w = sd[f"{name}.weight"]
        if rms:  # torch.nn.RMSNorm with eps=None: the dtype's machine epsilon
            return x / torch.sqrt((x * x).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps) * w
        mu = x.mean(-1, keepdim=True)
        y = (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-5) * w
        return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y

    def topk(x, site):  # keep int(afrac * dim) largest |x| (none when that is 0)
        if afrac is None or site not in sites:
            return x
        i = x.abs().topk(int(afrac * x.shape[-1]), dim=-1).indices
        return torch.zeros_like(x).scatter(-1, i, x.gather(-1, i))

    def linear(name, x):
        y = x @ sd[f"{name}.weight"].T
        return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y

    def act(x):
        return torch.relu(x) if conf.get("activation_type") == "relu" else 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    B, T = idx.shape
    wpe = sd["transformer.wpe.weight"][:T].expand(B, T, -1)
    cat = conf.get("d_pos_emb") is not None
    x = sd["transformer.wte.weight"][idx] + (0 if cat else wpe)
    acts = {}
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(L):
        p = f"transformer.h.{i}"
        acts[f"{i}.resid_in"] = x
        h = norm(f"{p}.ln_1", x)
        h = topk(torch.cat([h, norm(f"{p}.ln_p1", wpe)], -1) if cat else h, "attn_in")
        acts[f"{i}.attn.act_in"] = h
        q, k, v = linear(f"{p}.attn.c_attn", h).split(H * dh, dim=-1)
        q, k, v = topk(q, "attn_q"), topk(k, "attn_k"), topk(v, "attn_v")
        acts.update({f"{i}.attn.q": q, f"{i}.attn.k": k, f"{i}.attn.v": v})
        qh, kh, vh = (t.view(B, T, H, dh).transpose(1, 2) for t in (q, k, v))
        s = (qh @ kh.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~causal, float("-inf"))
        if conf.get("sink"):  # one more slot: key 0, value 0, logit sink_logit[h] (not scaled)
            s = torch.cat([s, sd[f"{p}.attn.attn_imp.sink_logit"].view(1, H, 1, 1).expand(B, H, T, 1)], -1)
        y = (torch.softmax(s, -1)[..., :T] @ vh).transpose(1, 2).reshape(B, T, H * dh)
        acts[f"{i}.attn.y"] = y
        acts[f"{i}.attn.resid_delta"] = o = topk(linear(f"{p}.attn.c_proj", y), "attn_out")
        x = topk(torch.relu(x + o) if relu_resid else x + o, "resid_post_attn")
        acts[f"{i}.resid_mid"] = x
        h = norm(f"{p}.ln_2", x)
        acts[f"{i}.mlp.act_in"] = h = topk(torch.cat([h, norm(f"{p}.ln_p2", wpe)], -1) if cat else h, "mlp_in")
        acts[f"{i}.mlp.post_act"] = h = topk(act(linear(f"{p}.mlp.c_fc", h)), "mlp_neuron")
        acts[f"{i}.mlp.resid_delta"] = o = topk(linear(f"{p}.mlp.c_proj", h), "mlp_out")
        x = topk(torch.relu(x + o) if relu_resid else x + o, "resid_post_mlp")
    acts["final_resid"] = x
    logits = norm("transformer.ln_f", x) @ sd["lm_head.weight"].T
    logits = logits + sd.get("final_logits_bias", 0)
    if conf.get("enable_bigram_table"):
        logits = logits + sd["bigram_table"][idx]
    return logits, acts


def tokens(conf, seed=1, batch=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, conf["vocab_size"], (batch, conf["block_size"]), generator=g)


# --- loading matches the reference --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLAGS)
def test_load_matches_the_reference_forward_and_the_official_hooks(tmp_path, name):
    conf = {**SHAPE, **FLAGS[name]}
    sd = official_state(conf, logits_bias=name != "defaults")
    model = load(write_folder(tmp_path / name, conf, sd))
    idx = tokens(conf)
    want, acts = reference(sd, conf, idx)
    with torch.no_grad(), record_official(model, list(acts)) as got:
        logits = model(idx)
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
    assert set(got) == set(acts)
    for n, a in acts.items():
        torch.testing.assert_close(got[n], a, rtol=1e-5, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
    if name == "defaults":  # absent final_logits_bias: zeros; LayerNorm with bias; tied
        assert torch.equal(model.unembed.bias, torch.zeros(40)) and model.cfg.norm == "layer"
        assert torch.equal(model.embed.weight, model.unembed.weight) and model.blocks[0].ln1.norm.bias is not None
    if name == "k_zero":  # int(0.05 * 8) = 0 q channels kept: uniform causal attention
        assert not got["0.attn.q"].any() and got["0.attn.act_in"].any()


def test_the_reference_catches_mapping_errors(tmp_path):
    """The comparison above has power: the same reference on a state dict mapped wrongly differs visibly."""
    conf = {**SHAPE, **FLAGS["p1_style"]}
    sd = official_state(conf)
    idx = tokens(conf)
    with torch.no_grad():
        logits = load(write_folder(tmp_path, conf, sd))(idx)
    q, k, v = sd["transformer.h.0.attn.c_attn.weight"].chunk(3)
    mistakes = {"q and k swapped": {"transformer.h.0.attn.c_attn.weight": torch.cat([k, q, v])},
                "sink scaled by 1/sqrt(d_head)": {k: v / 2 for k, v in sd.items() if k.endswith("sink_logit")},
                "unembedding read transposed": {"lm_head.weight": sd["lm_head.weight"].T.reshape(40, 16)}}
    for what, change in mistakes.items():
        wrong, _ = reference({**sd, **change}, conf, idx)
        assert (wrong - logits).abs().max() > 1e-3, what


# --- strictness: each bad input is one error naming the key or flag and the file -----------------------------------
def _folder(tmp_path, flags=None, edit=None, **conf_edit):
    conf = {**SHAPE, **FLAGS["p1_style"], **(flags or {})}
    sd = official_state(conf)
    if edit:
        edit(sd)
    return write_folder(tmp_path / "m", {**conf, **conf_edit}, sd)


BAD_STATE = {
    "unknown key": (lambda sd: sd.update({"transformer.h.0.attn.c_attn.weightt": torch.zeros(3)}),
                    r"unknown key\(s\) \['transformer\.h\.0\.attn\.c_attn\.weightt'\]"),
    "missing key": (lambda sd: sd.pop("transformer.h.1.mlp.c_fc.weight"),
                    r"missing key\(s\) \['transformer\.h\.1\.mlp\.c_fc\.weight'\]"),
    "missing sink": (lambda sd: sd.pop("transformer.h.0.attn.attn_imp.sink_logit"), r"missing.*h\.0\.attn\.attn_imp"),
    "shape": (lambda sd: sd.update({"transformer.h.0.attn.c_proj.weight": sd["transformer.h.0.attn.c_proj.weight"].T}),
              r"key 'transformer\.h\.0\.attn\.c_proj\.weight' has shape \(8, 16\), the config needs \(16, 8\)"),
    "integer tensor": (lambda sd: sd.update({"transformer.ln_f.weight": torch.ones(16, dtype=torch.long)}),
                       r"'transformer\.ln_f\.weight' is torch\.int64"),
    "mask buffer not a mask": (lambda sd: sd.update({"transformer.h.0.attn.bias": torch.ones(1, 1, 16, 16)}),
                               r"'transformer\.h\.0\.attn\.bias' is not the causal-mask buffer"),
}


@pytest.mark.parametrize("case", BAD_STATE)
def test_bad_state_dicts_are_named_errors(tmp_path, case):
    edit, match = BAD_STATE[case]
    folder = _folder(tmp_path, edit=edit)
    with pytest.raises(OfficialFormatError, match=match) as e:
        load(folder)
    assert str(folder / "final_model.pt") in str(e.value)


def test_a_sink_the_config_does_not_ask_for_is_refused_not_dropped(tmp_path):
    folder = _folder(tmp_path, flags={"sink": False},
                     edit=lambda sd: sd.update({"transformer.h.0.attn.attn_imp.sink_logit": torch.ones(2)}))
    with pytest.raises(OfficialFormatError, match=r"unknown key.*attn_imp\.sink_logit"):
        load(folder)


def test_the_causal_mask_buffer_is_accepted_and_a_tied_mismatch_is_not(tmp_path):
    mask = torch.ones(16, 16).tril().view(1, 1, 16, 16)
    load(_folder(tmp_path / "a", edit=lambda sd: sd.update({"transformer.h.1.attn.bias": mask})))
    with pytest.raises(OfficialFormatError, match=r"'tied_unembed' is true .*'transformer\.wte\.weight' and "
                                                  r"'lm_head\.weight' differ"):
        load(_folder(tmp_path / "b", flags={"tied_unembed": True},
                     edit=lambda sd: sd.update({"lm_head.weight": sd["lm_head.weight"] + 1})))


BAD_FLAGS = {
    "use_tied_aux_matrix": ({"use_tied_aux_matrix": True}, r"flag 'use_tied_aux_matrix' must be false"),
    "unknown flag": ({"n_experts": 4}, r"unknown flag\(s\) \['n_experts'\]"),
    "activation": ({"activation_type": "swish"}, r"flag 'activation_type' must be 'gelu' or 'relu'"),
    "residual": ({"residual_activation_type": "tanh"}, r"flag 'residual_activation_type'"),
    "site": ({"afrac_loctypes": "attn_in,mlp_hidden"}, r"flag 'afrac_loctypes' .*unknown: \['mlp_hidden'\]"),
    "afrac": ({"afrac": 1.5}, r"flag 'afrac' must be null or a fraction"),
    "bool": ({"sink": "yes"}, r"flag 'sink' must be true or false"),
    "n_mlp vs d_mlp": ({"d_mlp": 32}, r"flags 'n_mlp' .* and 'd_mlp' = 32 disagree"),
    "n_embd": ({"n_embd": 32}, r"flag 'n_embd' must be equal to d_model=16"),
    "n_head": ({"n_head": 3}, r"flag 'n_head' must be a divisor of d_model=16"),
}


@pytest.mark.parametrize("case", BAD_FLAGS)
def test_bad_or_unsupported_flags_are_refused_by_name(tmp_path, case):
    conf_edit, match = BAD_FLAGS[case]
    folder = _folder(tmp_path, **conf_edit)
    with pytest.raises(OfficialFormatError, match=match) as e:
        load(folder)
    assert str(folder / "beeg_config.json") in str(e.value)


def test_truncated_corrupt_wrapped_and_missing_files_name_the_file(tmp_path):
    folder = _folder(tmp_path)
    pt = folder / "final_model.pt"
    data = pt.read_bytes()
    for what, content, match in (("truncated", data[:len(data) // 2], "truncated or corrupt"),
                                 ("corrupt", os.urandom(4096), "truncated or corrupt"),
                                 ("empty", b"", "truncated or corrupt")):
        pt.write_bytes(content)
        with pytest.raises(OfficialFormatError, match=match) as e:
            load(folder)
        assert str(pt) in str(e.value), what
    torch.save({"model": official_state({**SHAPE, **FLAGS["p1_style"]})}, pt)
    with pytest.raises(OfficialFormatError, match="flat state dict of tensors"):
        load(folder)
    (folder / "beeg_config.json").write_text("{not json")
    with pytest.raises(OfficialFormatError, match=r"beeg_config\.json: not valid JSON"):
        load(folder)
    with pytest.raises(OfficialFormatError, match=r"beeg_config\.json: missing"):
        load(tmp_path / "nowhere")


class Payload:
    """Pickles as a call to ``os.mkdir(path)``: loading it with a plain unpickler would run that call."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    folder = _folder(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"transformer.wte.weight": Payload(marker)}, folder / "final_model.pt")
    with pytest.raises(OfficialFormatError, match="refused") as e:
        load(folder)
    assert str(folder / "final_model.pt") in str(e.value) and not marker.exists()
    torch.load(folder / "final_model.pt", weights_only=False)  # the control: an unsafe load runs the payload
    assert marker.is_dir()


# --- import-official: our run folder, identical logits --------------------------------------------------------------
def test_import_official_round_trips_with_identical_logits(tmp_path, capsys):
    conf = {**SHAPE, **FLAGS["relu_residual"]}
    folder = write_folder(tmp_path / "csp", conf, official_state(conf))
    out = tmp_path / "ours"
    assert main(["import-official", str(folder), "--out", str(out)]) == 0
    ours, loaded = load_model(out), load(folder)
    idx = tokens(conf)
    with torch.no_grad():
        assert torch.equal(ours(idx), loaded(idx))
    manifest = read_json(out / "manifest.json")
    assert manifest["kind"] == "official-import" and manifest["official_config"] == conf
    assert [f["sha256"] for f in manifest["source"]["files"]] == [
        sha256_file(folder / "beeg_config.json"), sha256_file(folder / "final_model.pt")]
    assert main(["import-official", str(folder), "--out", str(out)]) == 2  # not over an existing folder
    assert "--force" in capsys.readouterr().err
    (folder / "beeg_config.json").write_text(json.dumps({**conf, "sink": "maybe"}))
    assert main(["import-official", str(folder), "--out", str(tmp_path / "x")]) == 2
    assert "flag 'sink' must be true or false" in capsys.readouterr().err


# --- names ---------------------------------------------------------------------------------------------------------
def test_hook_names_both_ways_and_the_flat_qkv_layout():
    assert hook_name("0.attn.q", 4) == "blocks.0.attn.hook_q"
    assert hook_name("2.mlp.post_act", 4) == "blocks.2.mlp.hook_post"
    assert hook_name("final_resid", 4) == "blocks.3.hook_resid_post"
    assert hook_name("3.resid_in", 4) == "blocks.3.hook_resid_pre"
    for off in ["final_resid"] + [f"{layer}.{s}" for layer in range(4) for s in (
            "resid_in", "resid_mid", "attn.act_in", "attn.q", "attn.k", "attn.v", "attn.y", "attn.resid_delta",
            "mlp.act_in", "mlp.post_act", "mlp.resid_delta")]:
        ours = hook_name(off, 4)
        assert official_hook_name(ours, 4) == off or (off.endswith("resid_in") and ours.endswith("resid_pre"))
    assert official_hook_name("blocks.1.hook_resid_post", 4) == "2.resid_in"
    with pytest.raises(KeyError, match="9.attn.q"):
        hook_name("9.attn.q", 4)
    x = torch.randn(2, 5, 3, 4)  # ours: [B, T, n_head, d_head]
    flat = to_official_layout("1.attn.v", x)
    assert flat.shape == (2, 5, 12) and torch.equal(flat[..., 1 * 4 + 2], x[..., 1, 2])  # channel h * d_head + i
    assert torch.equal(from_official_layout("1.attn.v", flat, 3), x)
    assert to_official_layout("1.mlp.post_act", flat) is flat


def test_the_appendix_name_table_and_flag_lists_agree_with_the_loader():
    text = (ROOT / "book" / "appendix_released_models.md").read_text()
    names = text.split("## Names")[1].split("## The state dict")[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|", names, flags=re.M)
    assert len(rows) == 12, "the appendix lost rows of its name table"
    for official, ours, tl in rows:
        want = ours.replace("{l}", "1").replace("{L-1}", "3")
        assert hook_name(official.replace("{l}", "1"), 4) == want and tl == ours, official
    flags = text.split("## The flags")[1]
    assert not [f for f in [*FORWARD_DEFAULTS, *IGNORED_FLAGS, *LEGACY_FLAGS] if f"`{f}`" not in flags]
    assert "appendix_released_models" in (ROOT / "book" / "_toc.yml").read_text()


# --- the toolkit runs on a loaded model ----------------------------------------------------------------------------
TOOLKIT = {"p1_style": {"rms_norm": True, "afrac": 0.25, "afrac_loctypes": ALL_SITES, "sink": True, "bias": False,
                        "tied_unembed": False},
           "layernorm_cat_positions": {"d_pos_emb": 4, "residual_activation_type": "relu", "afrac": 0.5}}


@pytest.mark.parametrize("name", TOOLKIT)
def test_pruning_means_drawing_and_the_dilution_attack_run_on_a_loaded_model(tmp_path, name):
    conf = {"block_size": 64, "vocab_size": 2048, "n_layer": 2, "n_head": 4, "d_model": 16, **TOOLKIT[name]}
    model = load(write_folder(tmp_path, conf, official_state(conf, density=0.5)))
    g = torch.Generator().manual_seed(3)
    means = compute_means(model, torch.randint(0, 2048, (8, 17), generator=g))
    assert set(means) == set(node_sites(model))
    assert means["blocks.0.ln1.hook_normalized"].shape == (16 + conf.get("d_pos_emb", 0),)
    prompts = torch.randint(0, 2048, (48, 10), generator=g)
    with torch.no_grad():
        pref = model(prompts)[:, -1, 3] > model(prompts)[:, -1, 5]
    ds = datasets.Dataset.from_dict({"prompt_ids": prompts.tolist(), "target_id": torch.where(pref, 3, 5).tolist(),
                                     "distractor_id": torch.where(pref, 5, 3).tolist()})
    cfg = PruneConfig(steps=12, batch_pairs=4, val_pairs=8, target_loss=0.69, calib_steps=2, freeze_norms=True)
    res = prune_to_circuit(model, ds, means, cfg, task="own_preference")
    assert math.isfinite(res.full_loss) and len(res.order) == sum(node_sites(model).values())
    nodes = {h: [i] for h, i in res.order[:12]}
    circuit = res.circuit or Circuit("own_preference", nodes, count_edges(model, nodes), 0.69, float("nan"))
    assert draw_circuit(circuit) is not None
    sw = attacks.dilution_sweep(model, lengths=[1, 3], n_prompts=4, seed=0, node=("blocks.1.hook_attn_out", 2))
    assert all(0 < p < 1 for p in sw["nested"]["p_correct"] + sw["flat"]["p_correct"])


def test_functional_passes_run_a_loaded_layernorm_model_and_refuse_blocks_they_do_not_write_out(tmp_path):
    conf = {**SHAPE, **FLAGS["defaults"]}
    model = load(write_folder(tmp_path / "a", conf, official_state(conf)))
    idx = tokens(conf)
    with torch.no_grad():
        torch.testing.assert_close(bridges.residuals(model, idx)[1], model(idx), rtol=1e-5, atol=1e-5)
    conf = {**SHAPE, **FLAGS["relu_residual"]}
    model = load(write_folder(tmp_path / "b", conf, official_state(conf)))
    for fn in (lambda: bridges.residuals(model, idx), lambda: patching.check_model(model)):
        with pytest.raises(ValueError, match=r"resid_activation.*act_sparsity_sites.*mlp_activation"):
            fn()
