"""Load openai/circuit_sparsity checkpoints (P1's released models) strictly and safely, and name their hooks.

A released model is a folder with ``beeg_config.json`` (the official ``GPTConfig`` as JSON) and ``final_model.pt``
(a plain dense state dict, mostly zeros). :func:`load` turns it into our :class:`~sparsecirc.core.model.GPT`, so
pruning, mean ablation, circuit drawing and the dilution attack run on it unchanged; ``python -m sparsecirc
import-official FOLDER --out DIR`` writes it as one of our run folders (safetensors, config, manifest with the
source files' sha256), which :func:`sparsecirc.core.train.load_model` reads.

What this loader does differently from the official one (``circuit_sparsity.inference.gpt.load_model``), on purpose:

- the file is read with ``torch.load(weights_only=True)`` and nothing else; a file that asks the unpickler to build
  anything but tensors and containers, or a truncated / corrupt one, is an error naming the file;
- strict, explicit key mapping (:func:`key_map`): an unknown key, a missing key (the one exception, as upstream: an
  absent ``final_logits_bias`` means zeros) or a shape mismatch is one error naming the official key(s) and the
  file (upstream: ``load_state_dict(strict=False)``, so a missing key silently keeps its random init);
- every ``beeg_config.json`` flag is honoured (:data:`FORWARD_DEFAULTS`), explicitly ignored because it does not
  change the inference forward pass (:data:`IGNORED_FLAGS`, each with its reason), or refused by name;
- the attention sink is honoured whatever ``flash`` says (an older upstream loader defaulted to ``flash=False``,
  whose attention has no sink, and ``strict=False`` then dropped ``sink_logit`` without a word);
- a tied embedding (``tied_unembed``) must be stored tied: ``transformer.wte.weight`` equal to ``lm_head.weight``.

Example::

    model = load("models/csp_yolo2")                   # GPT in eval mode
    with record_official(model, ["0.attn.q", "final_resid"]) as acts:
        model(tokens)
    acts["0.attn.q"].shape                             # [batch, pos, n_head * d_head], the official layout
    hook_name("0.attn.q", model.cfg.n_layer)           # 'blocks.0.attn.hook_q' ([batch, pos, n_head, d_head])
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from sparsecirc.artifacts import sha256_file
from sparsecirc.core.config import ACT_SPARSITY_SITES, RESID_SPARSITY_SITES, ConfigError, ModelConfig, RunConfig
from sparsecirc.core.hooks import from_csp_name, record, to_csp_name
from sparsecirc.core.model import GPT
from sparsecirc.core.train import History, save_run

CONFIG_FILE = "beeg_config.json"
WEIGHTS_FILE = "final_model.pt"

# The flags of circuit_sparsity's GPTConfig that shape the forward pass, with its defaults (an absent flag takes
# its default, as upstream). Note rms_norm false (LayerNorm, eps 1e-5, bias ln_bias), tied_unembed true and only
# four AbsTopK sites by default.
FORWARD_DEFAULTS: dict[str, object] = {
    "block_size": 1024, "vocab_size": 50304, "n_layer": 12, "n_head": 12, "d_head": None, "d_model": 768,
    "d_mlp": None, "bias": True, "ln_bias": True, "rms_norm": False, "residual_activation_type": "identity",
    "activation_type": "gelu", "afrac": None, "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out",
    "tied_unembed": True, "enable_bigram_table": False, "d_pos_emb": None, "sink": False,
}
# Flags that leave the inference forward pass unchanged: accepted, recorded in an import's manifest, not used.
IGNORED_FLAGS: dict[str, str] = {
    "dropout": "dropout is inactive in eval mode",
    "debug_nans": "NaN assertions only",
    "grad_checkpointing": "recomputes activations in the backward pass; same values",
    "flash": "the official loader overrides it; the sink is honoured either way",
    "tokenizer_name": "token ids are the official tokenizer's; recorded in the import manifest",
    "learnable_bigram_table": "parameter or buffer; the table is read from the file either way",
    "dropout_cat_pos_emb": "training-time dropout of the position channels",
    "sinusoidal_cat_pos_emb": "initialises wpe, which is read from the file",
    "enable_sparse_kernels": "a kernel choice with the same maths",
    # legacy training keys found in released configs (an upstream loader dropped them; its inference code never
    # reads them)
    "pfrac": "weight-sparsity target (training)",
    "expansion_factor": "width multiplier (training bookkeeping; the shapes are in d_model / d_mlp)",
    "expansion_factor_mlp": "width multiplier (training bookkeeping; the shapes are in d_mlp)",
    "afrac_approx": "approximate top-k during training; inference uses the exact AbsTopK",
    "ignore_dw_grad": "a training-time gradient option",
    "bigram_table_rank": "training-time setting; the bigram table is read whole ([vocab, vocab]) from the file",
    "debug_exact_topk": "a training-time check",
    "sparse_matmul_impl": "a kernel choice with the same maths",
    "rtopk": "a training-time top-k implementation",
}
LEGACY_FLAGS = ("n_mlp", "n_embd", "use_tied_aux_matrix")  # renamed / checked by name (model_config)
OFFICIAL_SITES = ACT_SPARSITY_SITES + RESID_SPARSITY_SITES  # what afrac_loctypes may name
FLAT_HOOKS = ("q", "k", "v", "y")  # official {l}.attn.{q,k,v,y} are [B, T, n_head * d_head]; ours split the heads


class OfficialFormatError(ValueError):
    """An official checkpoint folder cannot be loaded as it is; the message names the file and the key or flag."""


# --- the config ---------------------------------------------------------------------------------------------------
def _want(source: str, flag: str, value, ok: bool, what: str) -> None:
    if not ok:
        raise OfficialFormatError(f"{source}: flag {flag!r} must be {what}, got {value!r}")


def _posint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def model_config(conf: dict, source: str = CONFIG_FILE) -> ModelConfig:
    """Our :class:`ModelConfig` for an official ``beeg_config.json`` dict; every flag honoured, ignored
    (:data:`IGNORED_FLAGS`) or refused by name. ``source`` (the file) starts every error message."""
    if not isinstance(conf, dict):
        raise OfficialFormatError(f"{source}: expected a JSON object of flags, got {type(conf).__name__}")
    conf = dict(conf)
    unknown = sorted(set(conf) - set(FORWARD_DEFAULTS) - set(IGNORED_FLAGS) - set(LEGACY_FLAGS))
    if unknown:
        raise OfficialFormatError(f"{source}: unknown flag(s) {unknown}: neither circuit_sparsity's GPTConfig nor a "
                                  "legacy key this loader knows; refusing to guess what they do to the forward pass")
    if conf.pop("use_tied_aux_matrix", False) is not False:
        raise OfficialFormatError(f"{source}: flag 'use_tied_aux_matrix' must be false (the official loader requires "
                                  "it too; the tied auxiliary matrix is not supported)")
    if "n_mlp" in conf:  # the legacy name of d_mlp
        if conf.get("d_mlp") is not None and conf["d_mlp"] != conf["n_mlp"]:
            raise OfficialFormatError(f"{source}: flags 'n_mlp' (legacy name of d_mlp) = {conf['n_mlp']!r} and "
                                      f"'d_mlp' = {conf['d_mlp']!r} disagree")
        conf["d_mlp"] = conf.pop("n_mlp")
    f = {**FORWARD_DEFAULTS, **{k: v for k, v in conf.items() if k in FORWARD_DEFAULTS}}
    for k in ("block_size", "vocab_size", "n_layer", "n_head", "d_model"):
        _want(source, k, f[k], _posint(f[k]), "a positive integer")
    for k in ("d_head", "d_mlp", "d_pos_emb"):
        _want(source, k, f[k], f[k] is None or _posint(f[k]), "a positive integer or null")
    for k in ("bias", "ln_bias", "rms_norm", "tied_unembed", "enable_bigram_table", "sink"):
        _want(source, k, f[k], isinstance(f[k], bool), "true or false")
    a = f["afrac"]
    _want(source, "afrac", a, a is None or (isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a <= 1),
          "null or a fraction in (0, 1]")
    _want(source, "activation_type", f["activation_type"], f["activation_type"] in ("gelu", "relu"),
          "'gelu' or 'relu'")
    _want(source, "residual_activation_type", f["residual_activation_type"],
          f["residual_activation_type"] in ("identity", "relu"), "'identity' or 'relu'")
    _want(source, "n_head", f["n_head"], f["d_model"] % f["n_head"] == 0, f"a divisor of d_model={f['d_model']}")
    if "n_embd" in conf:  # legacy name of d_model
        _want(source, "n_embd", conf["n_embd"], conf["n_embd"] == f["d_model"], f"equal to d_model={f['d_model']}")
    _want(source, "afrac_loctypes", f["afrac_loctypes"], isinstance(f["afrac_loctypes"], str),
          "a comma-separated string of sites")
    sites = tuple(s for s in f["afrac_loctypes"].split(",") if s)
    bad = [s for s in sites if s not in OFFICIAL_SITES]
    _want(source, "afrac_loctypes", f["afrac_loctypes"], not bad, f"made of {list(OFFICIAL_SITES)} (unknown: {bad})")
    rms = f["rms_norm"]
    try:
        return ModelConfig(
            n_layer=f["n_layer"], d_model=f["d_model"], n_head=f["n_head"],
            d_head=f["d_head"] or f["d_model"] // f["n_head"], d_mlp=f["d_mlp"] or 4 * f["d_model"],
            n_ctx=f["block_size"], d_vocab=f["vocab_size"], pos_embed=True, d_pos_emb=f["d_pos_emb"],
            act_keep_frac=None if a is None else float(a), act_sparsity_sites=sites, attn_sink=f["sink"],
            bigram_table=f["enable_bigram_table"], use_bias=f["bias"], unembed_bias=True,  # final_logits_bias
            norm="rms" if rms else "layer", norm_eps=None if rms else 1e-5, norm_bias=not rms and f["ln_bias"],
            mlp_activation=f["activation_type"], resid_activation=f["residual_activation_type"])
    except ConfigError as e:
        raise OfficialFormatError(f"{source}: {e}") from None


def read_config(path: str | Path) -> dict:
    """The flags of a ``beeg_config.json`` (a missing file or bad JSON is an error naming it)."""
    path = Path(path)
    if not path.is_file():
        raise OfficialFormatError(f"{path}: missing (an official model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OfficialFormatError(f"{path}: not valid JSON ({e})") from None


# --- the state dict -----------------------------------------------------------------------------------------------
def key_map(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Every official state-dict key of a model with config ``cfg``: its shape and the key(s) of ours it fills. A
    key with several of ours is cut evenly along dim 0: ``c_attn`` (the fused projection) into q, k, v in that
    order, each ``n_head * d_head`` rows over all heads. Linear weights are ``[out, in]`` in both."""
    c = cfg
    D, V, hd = c.d_model, c.d_vocab, c.n_head * c.d_head
    m = {"transformer.wte.weight": ((V, D), ("embed.weight",)),
         "transformer.wpe.weight": ((c.n_ctx, c.d_pos_emb or D), ("pos_embed.weight",)),
         "lm_head.weight": ((V, D), ("unembed.weight",)),
         "final_logits_bias": ((V,), ("unembed.bias",))}

    def norm(official: str, ours: str, d: int) -> None:
        m[f"{official}.weight"] = ((d,), (f"{ours}.weight",))
        if c.norm_bias:
            m[f"{official}.bias"] = ((d,), (f"{ours}.bias",))

    for i in range(c.n_layer):
        o, b = f"transformer.h.{i}", f"blocks.{i}"
        norm(f"{o}.ln_1", f"{b}.ln1.norm", D)
        norm(f"{o}.ln_2", f"{b}.ln2.norm", D)
        if c.d_pos_emb:
            norm(f"{o}.ln_p1", f"{b}.ln1.pos_norm", c.d_pos_emb)
            norm(f"{o}.ln_p2", f"{b}.ln2.pos_norm", c.d_pos_emb)
        for official, shape, ours in (("attn.c_attn", (3 * hd, c.d_read), ("attn.W_Q", "attn.W_K", "attn.W_V")),
                                      ("attn.c_proj", (D, hd), ("attn.W_O",)),
                                      ("mlp.c_fc", (c.d_mlp, c.d_read), ("mlp.W_in",)),
                                      ("mlp.c_proj", (D, c.d_mlp), ("mlp.W_out",))):
            m[f"{o}.{official}.weight"] = (shape, tuple(f"{b}.{x}.weight" for x in ours))
            if c.use_bias:
                m[f"{o}.{official}.bias"] = ((shape[0],), tuple(f"{b}.{x}.bias" for x in ours))
        if c.attn_sink:
            m[f"{o}.attn.attn_imp.sink_logit"] = ((c.n_head,), (f"{b}.attn.sink_logit",))
    norm("transformer.ln_f", "ln_final.norm", D)
    if c.bigram_table:
        m["bigram_table"] = ((V, V), ("bigram",))
    return m


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official ``final_model.pt``, read with ``torch.load(weights_only=True)`` (memory-mapped
    where the file's format allows). Anything that is not a flat ``{str: tensor}`` mapping is an error naming
    the file: a pickle that asks for other objects (and could run code) is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise OfficialFormatError(f"{path}: missing (an official model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 -- every failure here is reported as a problem of this file
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        why = next((x for x in lines if "GLOBAL" in x.upper() or "Unsupported" in x), lines[0] if lines else "")
        if type(e).__name__ == "UnpicklingError" and "GLOBAL" in why.upper():  # it names a callable to import
            raise OfficialFormatError(f"{path}: refused: it asks the unpickler for objects other than tensors and "
                                      f"plain containers (which could run code); nothing was run ({why})") from None
        raise OfficialFormatError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{type(e).__name__} {why}".rstrip()) from None
    if not isinstance(sd, Mapping):
        raise OfficialFormatError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise OfficialFormatError(f"{path}: expected a flat state dict of tensors; entries {bad[:5]} are not "
                                  "(a wrapped checkpoint? pass the model's own state dict)")
    return dict(sd)


def convert(sd: dict[str, torch.Tensor], cfg: ModelConfig, tied_unembed: bool,
            source: str = WEIGHTS_FILE) -> dict[str, torch.Tensor]:
    """Our state dict (float32; views of ``sd``'s tensors where no cast is needed, so a model's
    ``load_state_dict`` makes the one copy) from an official one, strictly (:func:`key_map`): unknown keys,
    missing keys, wrong shapes or non-float tensors are one error naming the keys and ``source``. The causal-mask
    buffer ``transformer.h.{i}.attn.bias`` of upstream's non-flash attention is accepted only if it is that mask."""
    plan = key_map(cfg)
    masks = {f"transformer.h.{i}.attn.bias" for i in range(cfg.n_layer)}
    problems = []
    unknown = [k for k in sd if k not in plan and k not in masks]
    if unknown:
        problems.append(f"unknown key(s) {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    missing = [k for k in plan if k not in sd and k != "final_logits_bias"]
    if missing:
        problems.append(f"missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    for k, t in sd.items():
        if k in plan and tuple(t.shape) != plan[k][0]:
            problems.append(f"key {k!r} has shape {tuple(t.shape)}, the config needs {plan[k][0]}")
        elif k in plan and (not t.is_floating_point() or t.layout != torch.strided):
            problems.append(f"key {k!r} is {t.dtype} {t.layout}, expected a dense floating-point tensor")
    for k in sorted(masks & set(sd)):
        causal = torch.ones(cfg.n_ctx, cfg.n_ctx).tril().view(1, 1, cfg.n_ctx, cfg.n_ctx)
        if tuple(sd[k].shape) != tuple(causal.shape) or not torch.equal(sd[k].float(), causal):
            problems.append(f"key {k!r} is not the causal-mask buffer of the non-flash attention")
    if problems:
        raise OfficialFormatError(f"{source}: {'; '.join(problems)}")
    if tied_unembed and not torch.equal(sd["transformer.wte.weight"], sd["lm_head.weight"]):
        raise OfficialFormatError(f"{source}: flag 'tied_unembed' is true (its default) but 'transformer.wte.weight' "
                                  "and 'lm_head.weight' differ; set tied_unembed: false if the model is untied")
    out = {}
    for k, (shape, ours) in plan.items():
        t = sd[k] if k in sd else torch.zeros(shape)  # absent final_logits_bias: zeros, as upstream
        out.update(zip(ours, t.to(torch.float32).chunk(len(ours), 0)))
    return out


# --- loading and importing ----------------------------------------------------------------------------------------
def read(folder: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """(our config, our state dict, info) of an official model folder; info holds the raw flags and the ignored
    ones with their reasons."""
    folder = Path(folder)
    conf = read_config(folder / CONFIG_FILE)
    cfg = model_config(conf, str(folder / CONFIG_FILE))
    tied = conf.get("tied_unembed", FORWARD_DEFAULTS["tied_unembed"])
    state = convert(read_state_dict(folder / WEIGHTS_FILE), cfg, tied, str(folder / WEIGHTS_FILE))
    ignored = {k: IGNORED_FLAGS[k] for k in conf if k in IGNORED_FLAGS}
    return cfg, state, {"official_config": conf, "ignored_flags": ignored}


def model_from_state(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> GPT:
    """A GPT (eval mode) holding copies of ``state``, loaded strictly. (Built on the CPU and overwritten: a model
    built on the meta device and assigned would skip the init, but costs ~0.8 s of torch set-up per process and
    more memory at the benchmark's shape; ``benchmarks/bench_official_load.py``.)"""
    model = GPT(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load(folder: str | Path) -> GPT:
    """Load an official model folder (``beeg_config.json`` + ``final_model.pt``) as our GPT, in eval mode.

    Strict and safe (module docstring): every key mapped, every flag honoured or refused by name, the file read
    with ``weights_only=True``. Raises :class:`OfficialFormatError` naming the file and the key or flag."""
    cfg, state, _ = read(folder)
    return model_from_state(cfg, state)


def import_official(folder: str | Path, out: str | Path, *, force: bool = False) -> dict:
    """Convert an official model folder into our run folder ``out`` (``model.safetensors``, ``config.json``,
    ``history.json.gz``, ``manifest.json`` with the source files' sha256 and flags); returns the manifest.
    :func:`sparsecirc.core.train.load_model` reads it back. ``out`` must be empty unless ``force``."""
    folder, out = Path(folder), Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out}: not empty; choose another --out or pass --force to replace it")
    cfg, state, info = read(folder)
    model = model_from_state(cfg, state)
    files = [{"path": f, "sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size}
             for f in (CONFIG_FILE, WEIGHTS_FILE)]
    source = {"folder": str(folder), "files": files}
    return save_run(out, model, History(), RunConfig(model=cfg, scale="paper"), kind="official-import",
                    produced_by=f"python -m sparsecirc import-official {folder} --out {out}", source=source, **info)


# --- hook names and layouts ---------------------------------------------------------------------------------------
def hook_name(official_name: str, n_layer: int) -> str:
    """Our hook name (= TransformerLens's) of an official recorder name, e.g. ``'0.mlp.post_act'`` ->
    ``'blocks.0.mlp.hook_post'``, ``'final_resid'`` -> the last block's ``hook_resid_post``. The table is
    ``sparsecirc.core.hooks.HOOK_TABLE``; q/k/v/y change layout too (:func:`from_official_layout`)."""
    return from_csp_name(official_name, n_layer)


def official_hook_name(name: str, n_layer: int) -> str:
    """The inverse of :func:`hook_name`: ``'blocks.3.hook_resid_post'`` -> ``'4.resid_in'`` (or ``'final_resid'``)."""
    return to_csp_name(name, n_layer)


def _flat(official_name: str) -> bool:
    parts = official_name.split(".")
    return len(parts) == 3 and parts[1] == "attn" and parts[2] in FLAT_HOOKS


def to_official_layout(official_name: str, x: torch.Tensor) -> torch.Tensor:
    """Our activation at ``hook_name(official_name)`` in the official layout: q/k/v/y ``[B, T, n_head, d_head]`` ->
    ``[B, T, n_head * d_head]`` (head-major: official channel ``h * d_head + i`` is our head h, channel i, and is
    also our circuit node index, which counts q/k/v channels flat); other names are unchanged."""
    return x.flatten(-2) if _flat(official_name) else x


def from_official_layout(official_name: str, x: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of :func:`to_official_layout` (``n_head`` splits the flat q/k/v/y channels)."""
    return x.unflatten(-1, (n_head, -1)) if _flat(official_name) else x


class OfficialActivations(Mapping):
    """A recorded cache read by official names, in the official layout (what :func:`record_official` yields)."""

    def __init__(self, cache: dict[str, torch.Tensor], names: dict[str, str]):
        self.cache, self.names = cache, names

    def __getitem__(self, official_name: str) -> torch.Tensor:
        return to_official_layout(official_name, self.cache[self.names[official_name]])

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, ours in self.names.items() if ours in self.cache])

    def __len__(self) -> int:
        return len(list(iter(self)))


@contextmanager
def record_official(model: GPT, official_names: list[str]) -> Iterator[OfficialActivations]:
    """Record activations by official recorder names (like upstream's ``hook_recorder``), through our hooks."""
    names = {n: hook_name(n, model.cfg.n_layer) for n in official_names}
    with record(model, sorted(set(names.values()))) as cache:
        yield OfficialActivations(cache, names)
