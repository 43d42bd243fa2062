"""Producers: how each registered artifact is (re)built from its config ``data/configs/<id>.yaml``.

The only heavy entry point::

    python -m sparsecirc reproduce wst-codemodel-l2d128-dense --scale book   # rewrites data/artifacts/<id>/
    python -m sparsecirc reproduce wst-codemodel-l2d128-dense --scale ci     # into the cache folder

A config file holds ``kind`` (which producer), ``paper_ref``, ``used_by`` and per-scale overrides of the presets
in ``config.SCALES``::

    kind: lm
    scales:
      book: {model: {n_layer: 2, d_model: 128}, train: {steps: 3000}}
      ci:   {train: {steps: 150}}
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from . import artifacts
from .artifacts import ArtifactError, Run
from .config import RunConfig, make_config
from .paths import cache_dir


def read_spec(artifact_id: str) -> dict:
    path = artifacts.CONFIGS_DIR / f"{artifact_id}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in artifacts.CONFIGS_DIR.glob("*.yaml"))
        raise ArtifactError(f"no config {path} for artifact {artifact_id!r}; known ids: {known}")
    spec = yaml.safe_load(path.read_text())
    for key in ("kind", "scales", "paper_ref", "used_by"):
        if key not in spec:
            raise ArtifactError(f"{path}: missing key {key!r}")
    return spec


def run_config(artifact_id: str, scale: str) -> RunConfig:
    """The effective RunConfig of an artifact at a scale (preset + the config file's overrides)."""
    spec = read_spec(artifact_id)
    return make_config(scale, **spec["scales"].get(scale, {}))


def split_config(artifact_id: str, scale: str, section: str = "geco") -> tuple[RunConfig, dict, dict]:
    """(RunConfig, the config's extra ``section`` (e.g. GECO's settings, which are not a RunConfig field), spec)
    of an artifact at a scale; the section is ``{}`` when the config has none."""
    spec = read_spec(artifact_id)
    over = dict(spec["scales"].get(scale, {}))
    extra = over.pop(section, {})
    return make_config(scale, **over), extra, spec


def model_sha256(run: Run) -> str:
    """sha256 of a loaded artifact's ``model.safetensors``, from its manifest (for ``init_from`` provenance)."""
    return next(f["sha256"] for f in run.manifest["files"] if f["path"] == "model.safetensors")


def save_gpt_folder(folder: Path, artifact_id: str, kind: str, scale: str, cfg: RunConfig, model, hist,
                    metrics: dict, wall: float, **info) -> None:
    """Write a trained GPT's folder (model.safetensors, history.json, config.json, metrics.json) and its manifest
    (``info`` adds fields, e.g. ``init_from``); what :func:`load` reads back for the ``GPT_FOLDER_KINDS``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts.save_tensors(folder / "model.safetensors", model.state_dict())
    artifacts.write_json(folder / "history.json", hist.to_dict())
    artifacts.write_json(folder / "config.json", cfg.to_dict())
    artifacts.write_json(folder / "metrics.json", metrics)
    artifacts.write_manifest(folder, ["model.safetensors", "history.json", "config.json", "metrics.json"],
                             id=artifact_id, kind=kind, scale=scale, seed=cfg.train.seed, config=cfg.to_dict(),
                             precision="fp32", wall_time_s=round(wall, 1),
                             produced_by=f"python -m sparsecirc reproduce {artifact_id} --scale {scale}", **info)


def lm_tokens(cfg: RunConfig):
    """Train and validation token streams for a language-model config."""
    from .corpus import corpus_tokens
    from .tokenizer import load_tokenizer
    tok = load_tokenizer()
    kw = {"seed": cfg.data.seed, "parts": cfg.data.parts}
    if cfg.data.n_simple is not None:
        kw["n_simple"] = cfg.data.n_simple
    return corpus_tokens("train", tok, **kw), corpus_tokens("val", tok, **kw)


def lm_val_loss(model, cfg: RunConfig, val_tokens) -> tuple[float, int]:
    """Validation loss exactly as the producer measures it: fixed windows of the validation stream, fp32.

    Returns (loss in nats/token, number of windows).
    """
    from .train import evaluate, eval_windows
    windows = eval_windows(val_tokens, cfg.train.eval_batches * cfg.train.batch_size, cfg.model.n_ctx)
    return evaluate(model, windows), len(windows)


def lm_task_metrics(model) -> dict:
    """Loss and accuracy on the test split of all 20 P1 tasks (recorded in every language model's metrics)."""
    from .tasks import evaluate_all
    return {t: {"loss": round(m["loss"], 5), "accuracy": round(m["accuracy"], 5)}
            for t, m in evaluate_all(model, "test").items()}


def refresh_lm_metrics(artifact_id: str) -> dict:
    """Recompute a committed language model's metrics.json from its weights (what the producer writes after
    training), rewrite its manifest and registry entry. For artifacts built before a metric was added."""
    folder = artifacts.verify(artifact_id)
    manifest = artifacts.read_json(folder / "manifest.json")
    run = load(artifact_id, folder, "book")
    metrics = artifacts.read_json(folder / "metrics.json")
    val_loss, _ = lm_val_loss(run.model, run.extra["config"], lm_tokens(run.extra["config"])[1])
    if abs(val_loss - metrics["val_loss"]) > 1e-4 * abs(metrics["val_loss"]):
        raise ArtifactError(f"{artifact_id}: validation loss {val_loss} differs from the recorded {metrics['val_loss']}")
    metrics["tasks"] = lm_task_metrics(run.model)
    artifacts.write_json(folder / "metrics.json", metrics)
    keep = {k: v for k, v in manifest.items() if k not in ("files", "environment")}
    keep.setdefault("trained_environment", manifest["environment"])  # provenance of the weights themselves
    artifacts.write_manifest(folder, [f["path"] for f in manifest["files"]], **keep)
    spec = read_spec(artifact_id)
    artifacts.register(artifact_id, folder, paper_ref=spec["paper_ref"], used_by=spec["used_by"])
    return metrics


def _produce_lm(artifact_id: str, scale: str, folder: Path, progress: bool, resume: bool) -> None:
    """Train a language model. With ``match_val_loss_of: <id>`` in the config, training stops at the first
    validation whose loss is at or below that artifact's (a matched-loss baseline, P1 Fig. 2)."""
    from .train import train
    cfg = run_config(artifact_id, scale)
    tokens, val_tokens = lm_tokens(cfg)
    ckpt = cache_dir() / "checkpoints" / scale / artifact_id
    stop_when, target = None, None
    other = read_spec(artifact_id).get("match_val_loss_of")
    if other:
        target = artifacts.read_json(_folder_for(other, scale) / "metrics.json")["val_loss"]
        stop_when = lambda h: h.val_loss[-1] <= target  # noqa: E731
    t0 = time.time()
    model, hist = train(cfg, tokens, val_tokens, out=ckpt, resume=resume and (ckpt / "manifest.json").exists(),
                        progress=progress, stop_when=stop_when)
    wall = time.time() - t0
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "history.json", "config.json"):  # optimizer state stays in the cache
        shutil.copyfile(ckpt / name, folder / name)
    val_loss, n_windows = lm_val_loss(model, cfg, val_tokens)
    metrics = {"val_loss": val_loss, "val_windows": n_windows, "n_params": model.n_params(),
               "tokens_seen": hist.tokens_seen, "tokens_per_s": hist.tokens_seen / max(hist.train_seconds, 1e-9),
               "train_tokens": int(tokens.numel()), "val_tokens": int(val_tokens.numel()), "steps_run": len(hist.step)}
    if other:
        metrics.update(matched_to=other, matched_target_val_loss=target)
    metrics["tasks"] = lm_task_metrics(model)
    artifacts.write_json(folder / "metrics.json", metrics)
    artifacts.write_manifest(folder, ["model.safetensors", "history.json", "config.json", "metrics.json"],
                             id=artifact_id, kind="lm", scale=scale, seed=cfg.train.seed, config=cfg.to_dict(),
                             precision="bf16-autocast" if cfg.train.bf16 else "fp32", wall_time_s=round(wall, 1),
                             produced_by=f"python -m sparsecirc reproduce {artifact_id} --scale {scale}")


def _folder_for(artifact_id: str, scale: str) -> Path:
    """The verified folder of another artifact this one depends on (built first at ci scale if missing)."""
    if scale == "book":
        return artifacts.verify(artifact_id)
    return cached_build(artifact_id, scale, artifacts.artifact_folder(artifact_id, scale))


def cached_build(artifact_id: str, scale: str, folder: Path, progress: bool = False, recompute: bool = False) -> Path:
    """``folder`` holding a cache build of the artifact from its current config: reused when it verifies (and
    ``recompute`` is off), else built there and stamped with the config it came from."""
    if not recompute:
        try:
            artifacts.verify_cached(artifact_id, folder)
            return folder
        except ArtifactError:
            pass
    produce(artifact_id, scale, folder, progress=progress)
    artifacts.stamp_cached(artifact_id, folder)
    return folder


def _produce_circuits(*args) -> None:
    from .circuit_study import produce_circuits
    produce_circuits(*args)


def _produce_case_study(*args) -> None:
    from .case_study import produce_case_study
    produce_case_study(*args)


PRODUCERS = {"lm": _produce_lm, "circuits": _produce_circuits, "case_study": _produce_case_study}


def _produce_addition(kind: str):
    """P2 Fig. 1's addition toy (sparsecirc/addition.py), imported lazily like the lm producer's training code."""
    def produce(*args):
        from . import addition
        return {"addition_dense": addition.produce_dense, "addition_sparse": addition.produce_sparse}[kind](*args)
    return produce


PRODUCERS.update({kind: _produce_addition(kind) for kind in ("addition_dense", "addition_sparse")})


def _produce_gated_lm(*args) -> None:
    from .code_posttrain import produce_gated_lm
    produce_gated_lm(*args)


PRODUCERS["lm_gated"] = _produce_gated_lm
# manifest kinds whose folder holds model.safetensors + history.json + config.json + metrics.json (loaded by load)
GPT_FOLDER_KINDS = ("lm", "addition_dense", "addition_sparse", "lm_gated")


def produce(artifact_id: str, scale: str, folder: Path | None = None, *, progress: bool = True,
            resume: bool = False) -> Path:
    """Build an artifact at ``scale`` into ``folder`` (default: data/artifacts/<id> for book, the cache for ci)."""
    spec = read_spec(artifact_id)
    folder = Path(folder) if folder is not None else artifacts.artifact_folder(artifact_id, scale)
    PRODUCERS[spec["kind"]](artifact_id, scale, folder, progress, resume)
    if scale == "book" and folder == artifacts.ARTIFACTS_DIR / artifact_id:
        artifacts.register(artifact_id, folder, paper_ref=spec["paper_ref"], used_by=spec["used_by"])
    return folder


def load(artifact_id: str, folder: Path, scale: str) -> Run:
    """Load a verified artifact folder into a :class:`Run`."""
    from .train import History, load_model
    manifest = artifacts.verify_folder(folder, f"python -m sparsecirc reproduce {artifact_id} --scale {scale}")
    run = Run(id=artifact_id, scale=scale, folder=folder, manifest=manifest)
    if manifest.get("kind") in ("circuits", "case_study"):  # GPT-less kinds: results.json (+ circuits/)
        run.extra["results"] = artifacts.read_json(folder / "results.json")
    if manifest.get("kind") in GPT_FOLDER_KINDS:
        run.model = load_model(folder)
        run.history = History.from_dict(artifacts.read_json(folder / "history.json"))
        run.extra["metrics"] = artifacts.read_json(folder / "metrics.json")
        run.extra["config"] = RunConfig.from_dict(artifacts.read_json(folder / "config.json"))
    return run
