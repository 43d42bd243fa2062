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

import os
import time
import uuid
from pathlib import Path

from sparsecirc import artifacts
from sparsecirc.artifacts import ArtifactError, Run, rebuild_command
from sparsecirc.context import BuildContext
from sparsecirc.core.config import BUILD_SCALES, RunConfig, check_scale, make_config, scale_overrides
from sparsecirc.core.repro import bf16_enabled, setup_threads
from sparsecirc.core.train import History, load_run, save_run, train
from sparsecirc.data.lm import lm_task_metrics, lm_tokens, lm_val_loss
from sparsecirc.paths import BUILD_RUN_ENV, cache_dir
from sparsecirc.spa import addition, attention_circuits, code_posttrain, topk_finetune
from sparsecirc.wst import bridge_study, case_study, circuit_study, prune_study, quote


def read_spec(artifact_id: str) -> dict:
    """The parsed config file ``data/configs/<id>.yaml`` (ArtifactError naming the known ids if it is missing)."""
    path = artifacts.CONFIGS_DIR / f"{artifact_id}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in artifacts.CONFIGS_DIR.glob("*.yaml"))
        raise ArtifactError(f"no config {path} for artifact {artifact_id!r}; known ids: {known}")
    spec = artifacts.read_yaml(path)
    if not isinstance(spec, dict):
        raise ArtifactError(f"{path}: expected a mapping at the top, got {type(spec).__name__}")
    for key in ("kind", "scales", "paper_ref", "used_by"):
        if key not in spec:
            raise ArtifactError(f"{path}: missing key {key!r}")
    for scale in BUILD_SCALES:  # every shipped config builds at both scales; a missing one is an error
        scale_overrides(spec, scale, str(path))
    if spec["kind"] not in PRODUCERS:
        raise ArtifactError(f"{path}: unknown kind {spec['kind']!r}; known: {sorted(PRODUCERS)}")
    return spec


def run_config(artifact_id: str, scale: str) -> RunConfig:
    """The effective RunConfig of an artifact at a scale (preset + the config file's overrides)."""
    spec = read_spec(artifact_id)
    over = scale_overrides(spec, scale, f"data/configs/{artifact_id}.yaml")
    over.pop("match_steps", None)  # the producer's search over run lengths, not a RunConfig field
    return make_config(scale, **over)


# --- the language-model producer ---------------------------------------------------------------------------
def produce_lm(ctx: BuildContext) -> None:
    """Train a language model. With ``match_val_loss_of: <id>`` in the config, training stops at the first
    validation whose loss is at or below that artifact's (a matched-loss baseline, P1 Fig. 2). With
    ``match_steps: [s1, s2, ...]`` as well, no run is cut short: complete runs (warmup and decay to the end) of
    s1, s2, ... steps are trained in turn and the first whose final validation loss is at or below the target is
    kept (every candidate's loss is recorded in ``metrics["match_search"]``)."""
    if ctx.spec.get("match_steps"):
        return _produce_lm_full_schedule(ctx)
    cfg = ctx.config()
    tokens, val_tokens = lm_tokens(cfg)
    ckpt = cache_dir() / "checkpoints" / ctx.scale / ctx.artifact_id
    stop_when, target = None, None
    other = ctx.spec.get("match_val_loss_of")
    if other:
        target = ctx.dep(other).metrics["val_loss"]
        stop_when = lambda h: h.val_loss[-1] <= target  # noqa: E731
    resume = ctx.resume and (ckpt / "manifest.json").exists()
    if ctx.resume and not resume:
        print(f"{ctx.artifact_id}: no checkpoint in {ckpt}; training from step 0")
    # periodic checkpoints (about 20 per run) unless the config sets its own interval, so --resume loses little
    every = cfg.train.checkpoint_every or max(1, cfg.train.steps // 20)
    t0 = time.time()
    model, hist = train(cfg, tokens, val_tokens, out=ckpt, resume=resume, overwrite=not resume,
                        progress=ctx.progress, stop_when=stop_when, checkpoint_every=every)
    wall = time.time() - t0
    extra = {"matched_to": other, "matched_target_val_loss": target} if other else {}
    _save_lm(ctx, model, hist, cfg, tokens, val_tokens, lm_val_loss(model, cfg, val_tokens), wall, **extra)


def _save_lm(ctx: BuildContext, model, hist, cfg: RunConfig, tokens, val_tokens, val: tuple[float, int], wall: float,
             **extra) -> None:
    """Write a trained language model's run folder: the standard metrics (``val`` = (validation loss, windows)),
    ``extra`` fields, the task metrics, and the manifest."""
    val_loss, n_windows = val
    metrics = {"val_loss": val_loss, "val_windows": n_windows, "n_params": model.n_params(),
               "tokens_seen": hist.tokens_seen, "tokens_per_s": hist.tokens_seen / max(hist.train_seconds, 1e-9),
               "train_tokens": int(tokens.numel()), "val_tokens": int(val_tokens.numel()), "steps_run": len(hist.step),
               **extra}
    metrics["tasks"] = lm_task_metrics(model)
    save_run(ctx.folder, model, hist, cfg, metrics=metrics, **ctx.manifest_info(
        kind="lm", precision="bf16-autocast" if bf16_enabled(cfg.train.bf16) else "fp32", wall_time_s=round(wall, 1)))


def _produce_lm_full_schedule(ctx: BuildContext) -> None:
    """The ``match_steps`` form of :func:`produce_lm`: the shortest complete schedule that reaches the loss."""
    other = ctx.spec.get("match_val_loss_of")
    if not other:
        raise ArtifactError(f"{ctx.artifact_id}: match_steps needs match_val_loss_of")
    target = ctx.dep(other).metrics["val_loss"]
    base, scale_steps = ctx.split_config("match_steps")
    candidates = [int(s) for s in (scale_steps or ctx.spec["match_steps"])]
    tokens, val_tokens = lm_tokens(base)
    search, t0 = [], time.time()
    for steps in candidates:
        cfg = base.replace(train=base.train.replace(steps=steps))
        ckpt = cache_dir() / "checkpoints" / ctx.scale / f"{ctx.artifact_id}-{steps}"
        model, hist = train(cfg, tokens, val_tokens, out=ckpt, overwrite=True, progress=ctx.progress,
                            checkpoint_every=cfg.train.checkpoint_every or max(1, steps // 10))
        val_loss, n_windows = lm_val_loss(model, cfg, val_tokens)
        search.append({"steps": steps, "val_loss": val_loss})
        print(f"{ctx.artifact_id}: {steps} steps -> val loss {val_loss:.4f} (target {target:.4f})")
        if val_loss <= target:
            break
    _save_lm(ctx, model, hist, cfg, tokens, val_tokens, (val_loss, n_windows), time.time() - t0, matched_to=other,
             matched_target_val_loss=target, match_search=search, match_reached=val_loss <= target)


def _rewrite_manifest(folder: Path, provenance_key: str) -> None:
    """Rewrite a committed folder's manifest after some of its files were recomputed: the same files (hashed
    anew) and fields, today's environment, and the environment of the original build kept under
    ``provenance_key`` (the first time only)."""
    manifest = artifacts.read_json(folder / "manifest.json")
    keep = {k: v for k, v in manifest.items() if k not in ("files", "environment")}
    keep.setdefault(provenance_key, manifest["environment"])
    artifacts.write_manifest(folder, [f["path"] for f in manifest["files"]], **keep)


def refresh_lm_metrics(artifact_id: str, reason: str | None = None, tasks: list[str] | None = None) -> dict:
    """Recompute a committed language model's metrics.json from its weights (what the producer writes after
    training), rewrite its manifest and registry entry. For artifacts built before a metric was added; or, with
    ``tasks`` and ``reason``, after those tasks' committed data were regenerated: then only their metrics are
    recomputed (the others keep the numbers of the machine that trained the model; the weights are checked by
    their sha256) and ``metrics["tasks_rescored"]`` records the tasks and the reason."""
    if (reason is None) != (tasks is None):
        raise ValueError("refresh_lm_metrics: give both reason and tasks, or neither")
    folder = artifacts.verify(artifact_id)
    run = load(artifact_id, folder, "book")
    metrics = run.metrics
    if tasks is None:
        val_loss, _ = lm_val_loss(run.model, run.config, lm_tokens(run.config, "val"))
        if abs(val_loss - metrics["val_loss"]) > 1e-4 * abs(metrics["val_loss"]):
            raise ArtifactError(f"{artifact_id}: validation loss {val_loss} differs from the recorded "
                                f"{metrics['val_loss']}")
        metrics["tasks"] = lm_task_metrics(run.model)
    else:
        unknown = sorted(set(tasks) - set(metrics["tasks"]))
        if unknown:
            raise ValueError(f"{artifact_id}: no recorded metrics for tasks {unknown}")
        fresh = lm_task_metrics(run.model, tasks)
        metrics["tasks"] = {t: fresh.get(t, m) for t, m in metrics["tasks"].items()}
        metrics["tasks_rescored"] = [*metrics.get("tasks_rescored", []), {"tasks": sorted(tasks), "reason": reason}]
    artifacts.write_json(folder / "metrics.json", metrics)
    _rewrite_manifest(folder, "trained_environment")  # provenance of the weights themselves
    spec = read_spec(artifact_id)
    artifacts.register(artifact_id, folder, paper_ref=spec["paper_ref"], used_by=spec["used_by"])
    return metrics


def refresh_case_claims(artifact_id: str) -> dict:
    """Recompute a committed ``quote_and_type`` study's claim values from its stored results under its config as
    it is now (which distractor prefix the claim grades); nothing is re-measured. Rewrites ``results.json``, the
    manifest (the build's environment kept as ``built_environment``) and the registry entry; returns the claims."""
    folder = artifacts.verify(artifact_id)
    spec = read_spec(artifact_id)
    if spec.get("study") != "quote_and_type":
        raise ArtifactError(f"{artifact_id}: not a quote_and_type study")
    results = quote.refresh_claims(artifacts.read_json(folder / "results.json"), spec)
    artifacts.write_json(folder / "results.json", results)
    _rewrite_manifest(folder, "built_environment")
    artifacts.register(artifact_id, folder, paper_ref=spec["paper_ref"], used_by=spec["used_by"])
    return results["claims"]


# --- the producer table: config ``kind`` -> producer ----------------------------------------------------------
# Every cache build is stamped (file BUILD_RUN_FILE) with the run that made it: ``$SPARSECIRC_BUILD_RUN``, which
# ``python -m sparsecirc.book execute`` sets for all its chapters' kernels, else this process's own id. A build
# stamped with the current run was made a moment ago (as another artifact's dependency, or by the chapter before or
# beside this one), so ``recompute=True`` reuses it instead of building it again.
PROCESS_RUN = uuid.uuid4().hex
BUILD_RUN_FILE = "build_run"

PRODUCERS = {
    "lm": produce_lm,
    "circuits": circuit_study.produce_circuits,
    "prune_study": prune_study.produce_prune_study,
    "case_study": case_study.produce_case_study,
    "addition_dense": addition.produce_dense,
    "addition_sparse": addition.produce_sparse,
    "lm_gated": code_posttrain.produce_gated_lm,
    "attention_circuits": attention_circuits.produce_attention_circuits,
    "addition_topk": topk_finetune.produce_addition_topk,
    "bridges": bridge_study.produce_bridges,
    "bridge_steering": bridge_study.produce_bridge_steering,
}
RESUMABLE_KINDS = ("lm", "bridges")  # producers that continue an interrupted build from its checkpoint
# manifest kinds whose folder is a run folder (core.train.save_run with metrics), loaded by load_run
GPT_FOLDER_KINDS = ("lm", "addition_dense", "addition_sparse", "lm_gated", "bridged_lm")
# kinds whose folder holds results.json (+ circuits/)
STUDY_KINDS = ("circuits", "case_study", "prune_study", "attention_circuits", "addition_topk", "bridge_steering")


def produce(artifact_id: str, scale: str, folder: Path | None = None, *, progress: bool = True,
            resume: bool = False) -> Path:
    """Build an artifact at ``scale`` into ``folder`` (default: data/artifacts/<id> for book, the cache for ci);
    a book-scale build into ``data/artifacts/<id>`` is registered."""
    check_scale(scale)
    spec = read_spec(artifact_id)
    folder = Path(folder) if folder is not None else artifacts.artifact_folder(artifact_id, scale)
    if resume and spec["kind"] not in RESUMABLE_KINDS:
        print(f"{artifact_id}: kind {spec['kind']!r} builds from scratch (resumable kinds: {list(RESUMABLE_KINDS)})")
    ctx = BuildContext(artifact_id=artifact_id, scale=scale, folder=folder, spec=spec, progress=progress,
                       resume=resume and spec["kind"] in RESUMABLE_KINDS,
                       load_dep=lambda dep_id: load_dependency(dep_id, scale))
    setup_threads()  # every producer, not only the trainer, runs at $SPARSECIRC_NUM_THREADS (reproduce --threads)
    PRODUCERS[spec["kind"]](ctx)
    if scale == "book" and folder == artifacts.ARTIFACTS_DIR / artifact_id:
        artifacts.register(artifact_id, folder, paper_ref=spec["paper_ref"], used_by=spec["used_by"])
    else:  # a cache build: record which config it came from, so get_or_compute reuses it
        artifacts.stamp_cached(artifact_id, folder)
    return folder


def recorded_threads(artifact_id: str) -> int | None:
    """The torch thread count the committed artifact was built with (its manifest's environment), if any.
    Weight-sparse training is thread-count sensitive (top-k ties break differently), so ``reproduce`` uses it."""
    path = artifacts.ARTIFACTS_DIR / artifact_id / "manifest.json"
    if not path.exists():
        return None
    env = artifacts.read_json(path).get("trained_environment") or artifacts.read_json(path).get("environment", {})
    n = env.get("threads")
    return int(n) if isinstance(n, int) and n > 0 else None


class OmittedModel:
    """Stands in for the weights of a run committed without them (:func:`omit_weights`): any use says so and names
    the command that rebuilds them."""

    def __init__(self, artifact_id: str):
        self._why = (f"{artifact_id}: its weights are not committed (data/ is kept small; its metrics and history "
                     f"are); rebuild them with `{rebuild_command(artifact_id)}`")

    def __getattr__(self, name):
        raise ArtifactError(self._why)

    def __call__(self, *args, **kwargs):
        raise ArtifactError(self._why)


def load(artifact_id: str, folder: Path, scale: str) -> Run:
    """Load a verified artifact folder into a :class:`Run` (``run.model`` an :class:`OmittedModel` when the
    weights were not committed)."""
    manifest = artifacts.verify_folder(folder, rebuild_command(artifact_id, scale))
    run = Run(id=artifact_id, scale=scale, folder=folder, manifest=manifest)
    if manifest.get("kind") in STUDY_KINDS:
        run.results = artifacts.read_json(folder / "results.json")
    if manifest.get("kind") in GPT_FOLDER_KINDS and weights_omitted(manifest):
        run.model, run.history = OmittedModel(artifact_id), History.read(folder)
        run.config = RunConfig.from_dict(artifacts.read_json(folder / "config.json"))
        run.metrics = artifacts.read_json(folder / "metrics.json")
    elif manifest.get("kind") in GPT_FOLDER_KINDS:
        run.model, run.history, run.config, run.metrics = load_run(folder)
    return run


def weights_omitted(manifest: dict) -> bool:
    return "model.safetensors" in manifest.get("omitted", ())


def omit_weights(artifact_id: str, reason: str) -> dict:
    """Take a committed run's ``model.safetensors`` out of ``data/`` (to keep it small), keeping everything else:
    the manifest still lists the file's sha256 and bytes under ``omitted`` with ``reason``; metrics, history and
    config still load (``run.model`` is an :class:`OmittedModel`); an artifact built *from* it rebuilds it in the
    cache first (:func:`load_dependency`). Returns the new registry entry."""
    reg = artifacts.load_registry()
    if artifact_id not in reg:
        raise ArtifactError(f"{artifact_id} is not a committed artifact")
    folder = artifacts.verify(artifact_id)
    manifest = artifacts.read_json(folder / "manifest.json")
    if manifest.get("kind") not in GPT_FOLDER_KINDS or weights_omitted(manifest):
        raise ArtifactError(f"{artifact_id}: not a run with committed weights")
    manifest.update(omitted=["model.safetensors"], omitted_reason=str(reason))
    artifacts.write_json(folder / "manifest.json", manifest)
    (folder / "model.safetensors").unlink()
    return artifacts.register(artifact_id, folder, paper_ref=reg[artifact_id]["paper_ref"],
                              used_by=reg[artifact_id]["used_by"])


def cached_build(artifact_id: str, scale: str, folder: Path, progress: bool = False, recompute: bool = False) -> Path:
    """``folder`` holding a cache build of the artifact from its current config: reused when it verifies (and
    ``recompute`` is off, or this process or this run built it: a dependency built a moment ago is not built
    twice, nor what another chapter of the same ``book execute`` built), else built there and stamped with the
    config it came from. Processes building the same folder take turns (a waiting lock), so chapters executed side
    by side never write one folder at once; the second finds the first's build and reuses it."""
    folder = Path(folder)
    run, stamp = os.environ.get(BUILD_RUN_ENV) or PROCESS_RUN, folder / BUILD_RUN_FILE
    with artifacts.folder_lock(folder.parent / f"{folder.name}.build", wait=True, what="a cache build"):
        if not recompute or (stamp.is_file() and stamp.read_text().strip() == run):
            try:
                artifacts.verify_cached(artifact_id, folder)
                return folder
            except ArtifactError:
                pass
        produce(artifact_id, scale, folder, progress=progress)
        artifacts.atomic_write_bytes(stamp, run.encode())
    return folder


def load_dependency(artifact_id: str, scale: str) -> Run:
    """An artifact another one is built from: at book scale the committed one when it is registered with its
    weights (else a cache build: a run committed without them, :func:`omit_weights`, is rebuilt there), at ci
    scale the cache build (built first when missing or stale)."""
    if scale == "book" and artifact_id in artifacts.load_registry():
        run = load(artifact_id, artifacts.verify(artifact_id), scale)
        if not isinstance(run.model, OmittedModel):
            return run
    return load(artifact_id, cached_build(artifact_id, scale, cache_dir() / "artifacts" / scale / artifact_id), scale)


def get_or_compute(artifact_id: str, scale: str = "book", recompute: bool = False, progress: bool = True) -> Run:
    """Load a committed artifact (``book``, verified by sha256) or compute it (``ci``, or ``recompute=True``).

    Args:
        artifact_id: registry key, e.g. ``"wst-codemodel-l2d128-dense"``; its config is ``data/configs/<id>.yaml``.
        scale: ``"book"`` (committed) or ``"ci"`` (recomputed in the cache folder in about a minute).
        recompute: rebuild into the cache folder (at ``book`` scale instead of loading ``data/``; at ``ci`` scale
            instead of reusing an earlier ci build in the cache), unless this process already built it (e.g. as
            another artifact's dependency) or another chapter of the same ``book execute`` run did
            (``$SPARSECIRC_BUILD_RUN``). Artifacts it depends on are reused if cached.
    Returns:
        :class:`Run` with ``model``, ``history``, ``config``, ``metrics`` (trained models) or ``results``
        (studies), and ``manifest``.
    Example::

        run = get_or_compute("wst-zoo-l2d128-sparse", scale="book")
        run.model, run.metrics["val_loss"]
    """
    check_scale(scale, BUILD_SCALES)
    if not isinstance(recompute, bool):
        raise TypeError(f"recompute must be True or False, got {recompute!r}")
    if scale == "book" and not recompute:
        return load(artifact_id, artifacts.verify(artifact_id), scale)
    folder = cached_build(artifact_id, scale, cache_dir() / "artifacts" / scale / artifact_id, progress, recompute)
    return load(artifact_id, folder, scale)
