"""Frozen configuration dataclasses and the one scale dial.

Every run is described by a :class:`RunConfig` (model + data + train), which round-trips through plain dicts
(JSON/YAML) and is written next to every artifact. ``SCALES`` holds the presets: ``ci`` (trains in about a
minute on 2 cores), ``book`` (the scale of the committed artifacts) and ``paper`` (P1's shapes; out of reach on
a CPU, kept so the same code documents the target).

Example::
    cfg = make_config("ci", model={"n_layer": 2}); RunConfig.from_dict(cfg.to_dict()) == cfg   # True
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any

# P1 A.1: AbsTopK sites (8 locations). Names follow openai/circuit_sparsity's `afrac_loctypes`.
ACT_SPARSITY_SITES = ("attn_in", "attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out")
# two more sites circuit_sparsity knows (the residual stream after each block's add); never on by default
RESID_SPARSITY_SITES = ("resid_post_attn", "resid_post_mlp")
# data.versions.DATA_VERSIONS' keys and simple_python_v2.VERSIONS (core may not import data; tests hold them equal)
DATA_VERSION_NAMES, GENERATOR_VERSIONS = ("v1", "v2"), (3, 4, 5)
DEFAULT_DATA_VERSION = "v1"
# ModelConfig fields to_dict leaves out at their defaults (committed configs serialise as before they existed)
OMITTED_AT_DEFAULT = ("data_version", "norm", "norm_eps", "norm_bias", "mlp_activation", "resid_activation",
                      "d_pos_emb", "unembed_bias", "attn_gate_block")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and what is valid."""


def _check_keys(cls, d: dict) -> None:
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(valid)}")


class DictConfig:
    """Base of every config dataclass: ``to_dict`` / ``from_dict`` (unknown keys refused) / ``replace``."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if dataclasses.is_dataclass(v):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
        _check_keys(cls, d)
        hints = typing.get_type_hints(cls)
        kw = {f.name: coerce_field(cls.__name__, f.name, hints[f.name], d[f.name]) for f in fields(cls) if f.name in d}
        return cls(**kw)

    def replace(self, **changes):
        _check_keys(type(self), changes)
        hints = typing.get_type_hints(type(self))
        return dataclasses.replace(self, **{k: coerce_field(type(self).__name__, k, hints[k], v)
                                            for k, v in changes.items()})


def coerce_field(owner: str, name: str, hint: Any, value: Any) -> Any:
    """``value`` checked against a config field's type, with the conversions a YAML file needs: a number where a
    float is expected becomes a float (YAML reads ``3e-3`` as the string "3e-3", so such strings are parsed too),
    a list becomes a tuple. Anything else of the wrong type is a ConfigError naming the field and the type."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{owner}.{name} must not be empty (null)")
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base) or base
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
    else:
        return value
    want = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            tuple: "a list"}.get(origin, str(origin))
    raise ConfigError(f"{owner}.{name} must be {want}{' or null' if optional else ''}, got {value!r}")


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelConfig(DictConfig):
    """Shape and architecture switches of the P1-style GPT (see ``model.py``).

    ``n_head`` and ``d_mlp`` default to ``d_model // d_head`` and ``4 * d_model`` (P1 A.1).
    ``act_keep_frac`` = None disables AbsTopK; P1 keeps 1/4 at the 8 sites in ``ACT_SPARSITY_SITES``.
    The fields after ``data_version`` serve imported openai/circuit_sparsity checkpoints (``sparsecirc.official``);
    their defaults are this model's own behaviour and ``to_dict`` writes them only when set otherwise.
    ``data_version`` names the tokenizer (and so what the embedding rows mean), corpus and task data
    (``sparsecirc.data.versions``). ``to_dict`` writes it only when it is not ``"v1"``, so a v1 config (every
    committed one) serialises exactly as before the setting existed, and a stored config without it loads as v1.
    """

    n_layer: int = 2
    d_model: int = 128
    d_head: int = 16
    n_head: int | None = None
    d_mlp: int | None = None
    n_ctx: int = 128
    d_vocab: int = 2048
    pos_embed: bool = False  # P1: no positional embedding in most experiments
    act_keep_frac: float | None = None
    act_sparsity_sites: tuple[str, ...] = ACT_SPARSITY_SITES
    attn_sink: bool = False  # per-head learnable sink logit (P1 A.1)
    bigram_table: bool = False  # dense d_vocab x d_vocab logit table (P1 A.1)
    use_bias: bool = True
    init_std: float = 0.02
    attn_gate: bool = False  # P2: hard Bernoulli gate per attention edge from the same score (gating.py)
    attn_gate_bias: float = 3.0  # P2's constant b in gate logit = q.k/sqrt(d) + b (sigma(3) ~ 0.95: open at start)
    # gated attention in blocks of this many queries with its own backward (core/gated_attention.py: no T x T
    # tensors, the causal half only; its training noise is drawn per block); None: the explicit form
    attn_gate_block: int | None = None
    data_version: str = DEFAULT_DATA_VERSION  # tokenizer + corpus + task data (sparsecirc.data.versions)
    norm: str = "rms"  # "rms" (P1) or "layer" (LayerNorm; circuit_sparsity's default)
    norm_eps: float | None = 1e-6  # None: torch.finfo(dtype).eps (torch.nn.RMSNorm's default)
    norm_bias: bool = False  # LayerNorm bias
    mlp_activation: str = "gelu"  # exact GELU, or "relu"
    resid_activation: str = "identity"  # or "relu" on the residual stream after each block's add
    d_pos_emb: int | None = None  # concatenated position channels instead of added positions
    unembed_bias: bool | None = None  # None: follow use_bias

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; ``data_version`` and the import options only when they differ from their
        defaults (see above), so every committed config serialises as before they existed."""
        out = super().to_dict()
        for f in fields(self):
            if f.name in OMITTED_AT_DEFAULT and out[f.name] == f.default:
                del out[f.name]
        return out

    @property
    def d_read(self) -> int:
        """Width of every attention / MLP read: ``d_model`` (+ ``d_pos_emb`` concatenated position channels)."""
        return self.d_model + (self.d_pos_emb or 0)

    def __post_init__(self):
        for name in ("n_layer", "d_model", "d_head", "n_ctx", "d_vocab"):
            v = getattr(self, name)
            _require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                     f"ModelConfig.{name} must be a positive int, got {v!r}")
        if self.n_head is None:
            _require(self.d_model % self.d_head == 0,
                     f"ModelConfig: d_model={self.d_model} is not a multiple of d_head={self.d_head}; set n_head")
            object.__setattr__(self, "n_head", self.d_model // self.d_head)
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        _require(self.n_head > 0 and self.d_mlp > 0, "ModelConfig: n_head and d_mlp must be positive")
        if self.act_keep_frac is not None:
            _require(0.0 < float(self.act_keep_frac) <= 1.0,
                     f"ModelConfig.act_keep_frac must be in (0, 1] or None, got {self.act_keep_frac!r}")
        _require(self.data_version in DATA_VERSION_NAMES,
                 f"ModelConfig.data_version: unknown data version {self.data_version!r}; valid: "
                 f"{', '.join(DATA_VERSION_NAMES)}")
        valid = ACT_SPARSITY_SITES + RESID_SPARSITY_SITES
        bad = [s for s in self.act_sparsity_sites if s not in valid]
        _require(not bad, f"ModelConfig.act_sparsity_sites: unknown site(s) {bad}; valid: {list(valid)}")
        for name, ok in (("norm", ("rms", "layer")), ("mlp_activation", ("gelu", "relu")),
                         ("resid_activation", ("identity", "relu"))):
            _require(getattr(self, name) in ok, f"ModelConfig.{name} must be one of {ok}, got {getattr(self, name)!r}")
        _require(self.norm_eps is None or self.norm_eps > 0, f"ModelConfig.norm_eps: > 0 or None, not {self.norm_eps}")
        _require(self.attn_gate_block is None or (isinstance(self.attn_gate_block, int) and self.attn_gate_block > 0
                                                  and self.attn_gate),
                 f"ModelConfig.attn_gate_block: a positive int with attn_gate, or None; got {self.attn_gate_block!r}")
        _require(not self.norm_bias or self.norm == "layer", "ModelConfig.norm_bias needs norm='layer' (RMSNorm)")
        _require(self.d_pos_emb is None or (self.d_pos_emb > 0 and self.pos_embed),
                 f"ModelConfig.d_pos_emb={self.d_pos_emb!r} needs pos_embed=true and a positive width")
        object.__setattr__(self, "act_sparsity_sites", tuple(self.act_sparsity_sites))


@dataclass(frozen=True)
class DataConfig(DictConfig):
    """Which corpus the language model trains on (``corpus.py`` for data v1, ``corpus_v2.py`` for v2; the version
    is ``ModelConfig.data_version``).

    ``n_simple`` (v1 only; v2 does not read it): number of generated programs, None for the corpus' default.
    ``n_simple_tokens`` (v2 only, required there): tokens of the simple-Python-v2 part of the train stream; None
    is v1's behaviour, and a v1 run refuses a value (``RunConfig``).
    ``generator_version`` (v2 only): the simple-Python-v2 generator version, one of ``GENERATOR_VERSIONS``; None is 3.
    """

    parts: tuple[str, ...] = ("stdlib", "simple")
    n_simple: int | None = None  # v1: None = the corpus module's default
    seed: int = 0  # seed of the simple-Python generator
    n_simple_tokens: int | None = None  # v2: size of the generated part of the train stream (e.g. 60_000_000)
    generator_version: int | None = None  # v2: simple-Python-v2 generator version; None = 3 (the default stream)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; the two v2 keys only when set (earlier configs serialise as before)."""
        out = super().to_dict()
        for key in ("n_simple_tokens", "generator_version"):
            if out[key] is None:
                del out[key]
        return out

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple(self.parts))
        _require(self.n_simple_tokens is None or self.n_simple_tokens > 0,
                 f"DataConfig.n_simple_tokens must be a positive int or None, got {self.n_simple_tokens!r}")
        gv = self.generator_version
        _require(gv is None or (gv in GENERATOR_VERSIONS and not isinstance(gv, bool)),
                 f"DataConfig.generator_version must be one of {GENERATOR_VERSIONS} or None, got {gv!r}")


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """One training loop's knobs (``train.py``). Steps, not epochs; batches are drawn by step index."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    warmup_frac: float = 0.01  # P1 A.2: 1% warmup, then linear decay to 0
    final_lr_frac: float = 0.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_rms: str = "clip"  # "clip": scale down if grad RMS > 1; "normalize": always divide by it (P1); "none"
    bf16: bool = False  # bf16 autocast for the training forward/backward (eval is always fp32)
    fused_adamw: bool = False  # torch's fused AdamW kernel (same update within float rounding)
    sampling: str = "random"  # "random": windows at random offsets; "sequential": disjoint windows, no repeats
    eval_every: int = 50
    eval_batches: int = 8
    checkpoint_every: int = 0  # 0: only at the end
    seed: int = 0

    def __post_init__(self):
        _require(isinstance(self.steps, int) and self.steps > 0,
                 f"TrainConfig.steps must be a positive int, got {self.steps!r}")
        _require(isinstance(self.batch_size, int) and self.batch_size > 0,
                 f"TrainConfig.batch_size must be a positive int, got {self.batch_size!r}")
        _require(self.lr > 0, f"TrainConfig.lr must be > 0, got {self.lr!r}")
        _require(0 <= self.warmup_frac < 1, f"TrainConfig.warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        _require(self.eval_every >= 1,
                 f"TrainConfig.eval_every must be >= 1 (steps between validations), got {self.eval_every!r}")
        _require(self.eval_batches >= 1, f"TrainConfig.eval_batches must be >= 1, got {self.eval_batches!r}")
        _require(self.checkpoint_every >= 0,
                 f"TrainConfig.checkpoint_every must be >= 0 (0: only at the end), got {self.checkpoint_every!r}")
        _require(self.weight_decay >= 0, f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
                 f"TrainConfig.beta1/beta2 must be in [0, 1), got {self.beta1!r}, {self.beta2!r}")
        _require(self.eps > 0, f"TrainConfig.eps must be > 0, got {self.eps!r}")
        _require(0 <= self.final_lr_frac <= 1,
                 f"TrainConfig.final_lr_frac must be in [0, 1], got {self.final_lr_frac!r}")
        _require(self.sampling in ("random", "sequential"),
                 f"TrainConfig.sampling must be 'random' or 'sequential', got {self.sampling!r}")
        _require(self.grad_rms in ("clip", "normalize", "none"),
                 f"TrainConfig.grad_rms must be 'clip', 'normalize' or 'none', got {self.grad_rms!r}")


@dataclass(frozen=True)
class SparsityConfig(DictConfig):
    """Weight-sparsity knobs of P1 §2.1 / A.2 (applied by ``sparsity.Projector``); 1.0 everywhere = dense.

    ``weight_nonzero_frac``: kept fraction of every block weight matrix at the end of the anneal.
    ``embed_nonzero_frac``: kept fraction of embed / unembed (None: same as matrices).
    ``sparsify_biases``: P1's text sparsifies biases too; the authors' train.py keeps them dense (our default).
    """

    weight_nonzero_frac: float = 1.0
    embed_nonzero_frac: float | None = None
    sparsify_biases: bool = False
    min_nonzero_per_unit: int = 4  # P1 A.2 (j = 4)
    anneal_start_frac: float = 0.01  # [C-train]: dense until 1% of training
    anneal_end_frac: float = 0.5  # P1 A.2: target reached at 50% of training
    lr_scale_with_l0: bool = True  # the "sharkfin" factor sqrt(L0_target / L0_now)

    def __post_init__(self):
        for name in ("weight_nonzero_frac",) + (("embed_nonzero_frac",) if self.embed_nonzero_frac is not None else ()):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"SparsityConfig.{name} must be in (0, 1], got {v!r}")
        if not 0.0 <= self.anneal_start_frac <= self.anneal_end_frac <= 1.0:
            raise ConfigError("SparsityConfig: need 0 <= anneal_start_frac <= anneal_end_frac <= 1, got "
                              f"{self.anneal_start_frac}, {self.anneal_end_frac}")
        if self.min_nonzero_per_unit < 0:
            raise ConfigError(f"SparsityConfig.min_nonzero_per_unit must be >= 0, got {self.min_nonzero_per_unit}")

    @classmethod
    def from_budget(cls, expansion_factor: int, pfrac: float, **kw) -> "SparsityConfig":
        """P1's size bookkeeping ([C-train]): matrices keep ``pfrac / ef**2``, embeddings ``pfrac / ef``.

        ``pfrac`` is the nonzero count as a multiple of the dense ef = 1 model; ``ef`` widens every layer.
        """
        ef = expansion_factor
        return cls(weight_nonzero_frac=min(1.0, pfrac / ef**2), embed_nonzero_frac=min(1.0, pfrac / ef), **kw)


@dataclass(frozen=True)
class PruneConfig(DictConfig):
    """Node-mask pruning (P1 §2.2, A.5). Defaults are P1 Table 2's CARBS search centres where given.

    P1 tunes these per model and task with CARBS (256-768 runs); we use the centres, fixed and documented.
    """

    steps: int = 400
    batch_pairs: int = 32  # P1: 64 pairs
    lr: float = 3e-3
    beta2: float = 0.95  # P1 Table 2: inv_beta2 = 1 - beta2 = 0.05
    weight_decay: float = 1e-3
    warmup_frac: float = 0.05
    k_coef: float = 1e-4  # penalty per kept node
    init_noise_scale: float = 1e-2
    init_noise_bias: float = 0.1
    heaviside_temp: float = 1.0
    target_loss: float = 0.15  # P1: task loss 0.15 per prompt
    calibrate: bool = True  # fit a logit scale and a relative candidate shift (16 LBFGS steps)
    calib_steps: int = 16
    n_mean_windows: int = 64  # pretraining windows for the mean-ablation values
    eval_pairs: int = 64  # legacy (val_pairs = 0): training-split pairs the bisection measures
    # held-out validation: this many pairs of the training split are kept out of mask training; bisection,
    # calibration, the clean-up pass and the hyperparameter search measure them (0: legacy, bisect on eval_pairs
    # pairs drawn from the mask-training pairs themselves). The split depends on split_seed only, not on seed.
    val_pairs: int = 0
    split_seed: int = 0
    schedule: str = "linear"  # lr after warmup: "linear" decay to 0 at `steps`, or "constant"
    tie_qk: bool = False  # one mask entry per (q, k) channel pair of a layer (P1 fn. 17)
    ablation: str = "mean"  # pruned nodes take their pretraining mean ("mean") or 0 ("zero")
    freeze_norms: bool = False  # RMSNorm scales frozen to the full model's values under ablation (Drori)
    # mask steps and bisections run the prompts packed end to end (sparsecirc.core.packing: no padding outside
    # attention, one call per op instead of one per chunk); False: padded chunks, the pruner before packing. The
    # same numbers up to float rounding.
    pack: bool = True
    # how the bisection ranks nodes of a trained mask: by tau, ties (tau saturates at +1) broken by how far the
    # optimiser pushed a node past the clamp over the run ("overshoot"), by attribution at the mask's own gates
    # ("attribution"), or by position ("none", the ranking before tie-breaks existed)
    tiebreak: str = "overshoot"
    # plateau rule (recorded always; stops the run only with stop_at_plateau): at every plateau_window-th step the
    # window means of kept nodes and task loss are compared with the previous window's; the plateau is reached
    # at the first of plateau_patience consecutive boundaries where |d kept| <= plateau_tol * kept + 1 and
    # |d loss| <= plateau_loss_tol
    plateau_window: int = 50
    plateau_tol: float = 0.02
    plateau_loss_tol: float = 0.02
    plateau_patience: int = 3
    stop_at_plateau: bool = False
    snapshots: tuple[int, ...] = ()  # also bisect the mask as it stood after these steps (a budget curve)
    cleanup: bool = False  # greedy clean-up after bisection: drop a node whenever the circuit still meets target
    node_kinds: tuple[str, ...] = ("attn_read", "q", "k", "v", "attn_write", "mlp_read", "neuron", "mlp_write")
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "node_kinds", tuple(self.node_kinds))
        object.__setattr__(self, "snapshots", tuple(int(s) for s in self.snapshots))
        _require(self.steps > 0 and self.batch_pairs > 0, "PruneConfig: steps and batch_pairs must be positive")
        _require(self.target_loss > 0, f"PruneConfig.target_loss must be > 0, got {self.target_loss}")
        _require(self.schedule in ("linear", "constant"),
                 f"PruneConfig.schedule must be 'linear' or 'constant', got {self.schedule!r}")
        _require(self.tiebreak in ("overshoot", "attribution", "none"),
                 f"PruneConfig.tiebreak must be 'overshoot', 'attribution' or 'none', got {self.tiebreak!r}")
        _require(self.ablation in ("mean", "zero"),
                 f"PruneConfig.ablation must be 'mean' or 'zero', got {self.ablation!r}")
        _require(self.val_pairs >= 0 and self.plateau_window > 0 and self.plateau_patience > 0,
                 "PruneConfig: val_pairs >= 0, plateau_window > 0 and plateau_patience > 0 are required")
        _require(all(0 < s <= self.steps for s in self.snapshots),
                 f"PruneConfig.snapshots must lie in 1..steps={self.steps}, got {self.snapshots}")


@dataclass(frozen=True)
class RunConfig(DictConfig):
    """Everything a training run needs; written as ``config.json`` next to its artifact."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    scale: str = "ci"

    def __post_init__(self):
        v1, d = self.model.data_version == "v1", self.data
        _require(not (v1 and d.n_simple_tokens is not None), f"data.n_simple_tokens={d.n_simple_tokens} sizes data "
                 "v2's program stream; this run's model.data_version is 'v1' (set model.data_version: v2, or "
                 "data.n_simple for v1)")
        _require(not (v1 and d.generator_version is not None), f"data.generator_version={d.generator_version} "
                 "picks data v2's program generator; this run's model.data_version is 'v1'")

    @property
    def is_sparse(self) -> bool:
        s = self.sparsity
        return s.weight_nonzero_frac < 1.0 or (s.embed_nonzero_frac is not None and s.embed_nonzero_frac < 1.0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"RunConfig: expected a mapping, got {type(d).__name__}")
        _check_keys(cls, d)
        return cls(model=ModelConfig.from_dict(d.get("model", {})), data=DataConfig.from_dict(d.get("data", {})),
                   train=TrainConfig.from_dict(d.get("train", {})),
                   sparsity=SparsityConfig.from_dict(d.get("sparsity", {})), scale=d.get("scale", "ci"))


# --- the scale dial ----------------------------------------------------------------------------------------
SCALES: dict[str, dict[str, dict[str, Any]]] = {
    # trains end-to-end in about a minute on 2 cores
    "ci": {"model": {"n_layer": 2, "d_model": 64, "n_ctx": 64},
           "data": {"n_simple": 4000},
           "train": {"steps": 150, "batch_size": 16, "eval_every": 50, "eval_batches": 4}},
    # the scale of the committed artifacts (tens of CPU-minutes)
    "book": {"model": {"n_layer": 2, "d_model": 128, "n_ctx": 128},
             "data": {},
             "train": {"steps": 3000, "batch_size": 32, "eval_every": 250, "eval_batches": 16}},
    # P1's default shape (A.1): 8 layers, d_model 2048, ctx 256 -- not trainable on a CPU
    "paper": {"model": {"n_layer": 8, "d_model": 2048, "n_ctx": 256},
              "data": {},
              "train": {"steps": 100_000, "batch_size": 512}},
}


# Scales an artifact is built at and a chapter runs at (``paper`` is a config preset only); the one list every
# command line, chapter parameter and cache folder checks against.
BUILD_SCALES = ("book", "ci")


def check_scale(scale: str, allowed: tuple[str, ...] = BUILD_SCALES) -> str:
    """Return ``scale`` if it is one of ``allowed``, else raise a ValueError that lists them."""
    if scale not in allowed:
        raise ValueError(f"scale must be one of {', '.join(repr(a) for a in allowed)}, got {scale!r}")
    return scale


def scale_overrides(spec: Any, scale: str, source: str = "config") -> dict[str, Any]:
    """The ``scales: {<scale>: {...}}`` section of a parsed config file for one scale, checked: the file is a
    mapping, ``scales`` is a mapping of mappings and names ``scale`` (a missing scale is an error, not the bare
    preset). ``source`` (the file name) starts every message."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: expected a mapping at the top, got {type(spec).__name__}")
    scales = spec.get("scales")
    if not isinstance(scales, dict):
        raise ConfigError(f"{source}: 'scales' must be a mapping of scale name -> overrides, e.g. "
                          f"'scales: {{ci: {{train: {{steps: 150}}}}}}', got {type(scales).__name__}")
    if scale not in scales:
        raise ConfigError(f"{source}: no '{scale}' section under 'scales' (it has {sorted(scales)}); add one")
    over = scales[scale] or {}
    if not isinstance(over, dict):
        raise ConfigError(f"{source}: scales.{scale} must be a mapping, got {type(over).__name__}")
    return dict(over)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(scale: str = "ci", **overrides: dict[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from the ``scale`` preset plus per-section overrides.

    Args:
        scale: one of ``SCALES`` (``"ci"``, ``"book"``, ``"paper"``).
        overrides: ``model={...}``, ``data={...}``, ``train={...}``, ``sparsity={...}`` dicts applied on top of
            the preset.
    Returns:
        RunConfig with ``scale`` set.
    Example::

        cfg = make_config("book", train={"steps": 10})
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; valid scales are {sorted(SCALES)}")
    bad = sorted(set(overrides) - {"model", "data", "train", "sparsity"})
    if bad:
        raise ConfigError(f"make_config: unknown section(s) {bad}; valid: ['data', 'model', 'sparsity', 'train']")
    d = _merge(SCALES[scale], overrides)
    d["scale"] = scale
    return RunConfig.from_dict(d)
