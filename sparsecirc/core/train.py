"""One training loop for every language model in the book (dense now; sparse recipes plug in via ``TrainHooks``).

AdamW, warmup + linear decay, gradient-RMS clipping (or P1's normalisation), optional bf16 autocast, tqdm progress,
periodic validation loss, checkpoints (safetensors + JSON manifest, written atomically). Batches are drawn from the
step index alone, so a resumed run is bit-identical to an uninterrupted one.

Run it::

    python -m sparsecirc train --config data/configs/wst-codemodel-l2d128-dense.yaml --scale ci --out /tmp/run
    python -m sparsecirc train ... --resume          # continue from the last checkpoint in --out
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sparsecirc import artifacts
from sparsecirc.core.config import RunConfig
from sparsecirc.core.model import GPT
from sparsecirc.core.recipe import TrainHooks, compose_hooks
from sparsecirc.core.repro import bf16_enabled, seed_everything, setup_threads
from sparsecirc.core.sparsity import Projector

HISTORY_FILE = "history.json.gz"  # gzip: a long run's per-step lists are ~1.4 MB as text, ~0.4 MB compressed


@dataclass
class History:
    """Per-step training loss and lr, periodic validation loss, throughput."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    train_seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # recipe series by name, one value per step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)

    @classmethod
    def read(cls, folder: str | Path) -> "History":
        """A run folder's history: ``history.json.gz``, or ``history.json`` in folders written before compression."""
        gz = Path(folder) / HISTORY_FILE
        return cls.from_dict(artifacts.read_json(gz if gz.exists() else Path(folder) / "history.json"))


# --- schedule and batches -------------------------------------------------------------------------------------
def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup over ``warmup_frac`` of the steps, then linear decay to ``final_lr_frac`` (P1 A.2)."""
    t = cfg.train
    warm = max(1, round(t.warmup_frac * t.steps))
    if step < warm:
        return t.lr * (step + 1) / warm
    frac = (step - warm) / max(1, t.steps - warm)
    return t.lr * (1.0 - (1.0 - t.final_lr_frac) * frac)


def sample_batch(tokens: torch.Tensor, batch_size: int, n_ctx: int, seed: int, step: int) -> torch.Tensor:
    """Random windows [batch, n_ctx + 1] from a 1-D token tensor; depends only on (seed, step)."""
    if tokens.numel() <= n_ctx + 1:
        raise ValueError(f"token stream of length {tokens.numel()} is too short for n_ctx={n_ctx}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, tokens.numel() - n_ctx - 1, (batch_size,), generator=g)
    return torch.stack([tokens[s:s + n_ctx + 1] for s in starts.tolist()]).long()


@lru_cache(maxsize=4)
def _window_order(n_windows: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n_windows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def sequential_batch(tokens: torch.Tensor, batch_size: int, n_ctx: int, seed: int, step: int) -> torch.Tensor:
    """Windows [batch, n_ctx + 1] that never repeat within an epoch: the stream is cut into disjoint windows of
    ``n_ctx + 1`` tokens, visited in a seeded random order; batch ``step`` takes the next ``batch_size`` of them
    (a new order each pass over the stream). Depends only on (seed, step), so a resumed run draws the same batches."""
    n = tokens.numel() // (n_ctx + 1)
    if n < batch_size:
        raise ValueError(f"token stream of length {tokens.numel()} holds {n} windows of {n_ctx + 1} tokens, "
                         f"fewer than one batch of {batch_size}")
    out = []
    for i in range(step * batch_size, (step + 1) * batch_size):
        w = int(_window_order(n, seed, i // n)[i % n]) * (n_ctx + 1)
        out.append(tokens[w:w + n_ctx + 1])
    return torch.stack(out).long()


def window_sampler(sampling: str) -> Callable[..., torch.Tensor]:
    """The window-drawing function of ``train.sampling``: :func:`sequential_batch` or :func:`sample_batch`, both
    ``(tokens, batch_size, n_ctx, seed, step) -> [batch, n_ctx + 1]``."""
    return sequential_batch if sampling == "sequential" else sample_batch


def eval_windows(tokens: torch.Tensor, n: int, n_ctx: int, seed: int = 12345) -> torch.Tensor:
    """A fixed set of ``n`` validation windows [n, n_ctx + 1] (a 2-D tensor is taken as the windows)."""
    if tokens.dim() == 2:
        return tokens
    return sample_batch(tokens, n, n_ctx, seed, step=0)


@torch.no_grad()
def evaluate(model: GPT, windows: torch.Tensor, batch_size: int = 32, loss_mask: torch.Tensor | None = None) -> float:
    """Mean next-token cross-entropy (nats) over ``windows`` in fp32 (eval mode: deterministic gates)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size]
        total += model.loss(w, reduction="sum", loss_mask=loss_mask).item()
        count += w[:, 1:].numel() if loss_mask is None else float(loss_mask.expand(len(w), -1).sum())
    model.train(was)
    return total / count


# --- optimizer --------------------------------------------------------------------------------------------------
def named_trainables(model: GPT, extra: dict[str, torch.nn.Module] | None = None,
                     ) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's named parameters, then those of ``extra`` modules as ``extra.<module>.<name>``."""
    out = list(model.named_parameters())
    for key, mod in (extra or {}).items():
        out += [(f"extra.{key}.{n}", p) for n, p in mod.named_parameters()]
    return out


def make_optimizer(model: GPT, cfg: RunConfig, extra: dict[str, torch.nn.Module] | None = None) -> torch.optim.AdamW:
    """AdamW; decoupled weight decay on weight matrices and embeddings only (not norms, biases, sink, bigram).
    ``extra`` modules (e.g. bridges) are optimized alongside, by the same rule."""
    t = cfg.train
    named = named_trainables(model, extra)
    decay = [p for n, p in named if p.dim() >= 2 and n != "bigram"]
    rest = [p for n, p in named if not (p.dim() >= 2 and n != "bigram")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
                             **({"fused": True} if t.fused_adamw else {"foreach": False}))


def grad_rms_(model: torch.nn.Module, mode: str) -> float:
    """Gradient-RMS handling of one step, in place (``TrainConfig.grad_rms``): clip or normalise (P1) the gradients
    of ``model`` (any module: pass a ModuleList to include extra modules) by their root-mean-square over all
    entries; returns the RMS before the change."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    sq = sum(float(g.float().pow(2).sum()) for g in grads)
    n = sum(g.numel() for g in grads)
    rms = (sq / max(n, 1)) ** 0.5
    if mode == "normalize" or (mode == "clip" and rms > 1.0):
        for g in grads:
            g.div_(rms + 1e-12)
    return rms


# --- run folders (checkpoints and trained-model artifacts) --------------------------------------------------------
def save_run(folder: str | Path, model: GPT, history: History, cfg: RunConfig, *, opt=None,
             metrics: dict | None = None, recipe_state: dict | None = None,
             extra: dict[str, torch.nn.Module] | None = None, **info) -> dict:
    """The one run-folder writer: ``model.safetensors``, ``history.json.gz``, ``config.json``, then
    ``optimizer.safetensors`` (a checkpoint: pass ``opt``; it also holds torch's RNG state) and ``metrics.json``
    (an artifact: pass ``metrics``), ``extra.safetensors`` (extra trained modules such as bridges, keys
    ``<module>.<name>``: pass ``extra``), and ``manifest.json`` last with every file's sha256 plus ``seed``, ``scale``,
    ``config``, a recipe's state (``recipe_state``) and ``info``.

    The folder is written as one unit (:func:`sparsecirc.artifacts.replace_folder`): all files come from the same
    in-memory state, and the previous folder stays whole until the new one is complete.

    Example::

        save_run(out, model, hist, cfg, opt=opt, step=1000)                        # a resumable checkpoint
        save_run(folder, model, hist, cfg, metrics=m, id="wst-...", kind="lm")     # a trained-model artifact
    """
    def write(staging: Path) -> dict:
        artifacts.save_tensors(staging / "model.safetensors", model.state_dict())
        artifacts.write_json(staging / HISTORY_FILE, history.to_dict())
        artifacts.write_json(staging / "config.json", cfg.to_dict())
        files = ["model.safetensors", HISTORY_FILE, "config.json"]
        if extra:
            artifacts.save_tensors(staging / "extra.safetensors", extra_state(extra))
            files.insert(1, "extra.safetensors")
        if opt is not None:
            artifacts.save_tensors(staging / "optimizer.safetensors", _optimizer_tensors(model, opt, extra))
            files.insert(1, "optimizer.safetensors")
        if metrics is not None:
            artifacts.write_json(staging / "metrics.json", metrics)
            files.append("metrics.json")
        fields = {"seed": cfg.train.seed, "scale": cfg.scale, "config": cfg.to_dict(), **info}
        if recipe_state:
            fields["recipe_state"] = recipe_state
        return artifacts.write_manifest(staging, files, **fields)
    return artifacts.replace_folder(folder, write)


RNG_KEY = "rng::torch"  # torch's CPU generator state, stored with the optimizer state


def extra_state(extra: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """One flat state dict of extra modules: ``<module>.<name>``."""
    return {f"{key}.{n}": v for key, mod in extra.items() for n, v in mod.state_dict().items()}


def load_extra(folder: str | Path, extra: dict[str, torch.nn.Module]) -> None:
    """Load ``folder/extra.safetensors`` into ``extra`` modules strictly (every key present, none left over)."""
    path = Path(folder) / "extra.safetensors"
    state = artifacts.load_tensors(path)
    for key, mod in extra.items():
        mine = {n[len(key) + 1:]: v for n, v in state.items() if n.startswith(f"{key}.")}
        mod.load_state_dict(mine, strict=True)
    unknown = [n for n in state if n.split(".")[0] not in extra]
    if unknown:
        raise artifacts.ArtifactError(f"{path}: tensors of modules this run does not have: {unknown[:4]}")


def _optimizer_tensors(model: GPT, opt, extra: dict[str, torch.nn.Module] | None = None) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in named_trainables(model, extra)}
    state = {RNG_KEY: torch.get_rng_state()}  # gates sample from it in training mode (P2)
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                state[f"{names[id(p)]}::{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return state


def load_run(folder: str | Path, rebuild_hint: str = "") -> tuple[GPT, History, RunConfig, dict | None]:
    """The one run-folder loader: verify ``folder``'s manifest, load the model strictly (every key must match).

    Returns:
        (model in eval mode, History, RunConfig, metrics dict or None when the folder has no ``metrics.json``)
    """
    folder = Path(folder)
    artifacts.verify_folder(folder, rebuild_hint)
    cfg = RunConfig.from_dict(artifacts.read_json(folder / "config.json"))
    model = GPT(cfg.model)
    model.load_state_dict(artifacts.load_tensors(folder / "model.safetensors"), strict=True)
    model.eval()
    history = History.read(folder)
    metrics = artifacts.read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else None
    return model, history, cfg, metrics


def load_model(folder: str | Path, rebuild_hint: str = "") -> GPT:
    """The model of a run folder (:func:`load_run`'s first element)."""
    return load_run(folder, rebuild_hint)[0]


def _restore(out: Path, model: GPT, opt, cfg: RunConfig, hooks: TrainHooks) -> tuple[int, History]:
    """Load a checkpoint written by :func:`save_run` into the model, optimizer, RNG and recipe state."""
    manifest = artifacts.verify_folder(out, f"delete {out} and train again, or train without --resume")
    saved = RunConfig.from_dict(artifacts.read_json(out / "config.json")).to_dict()  # absent keys = defaults
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(cfg.to_dict())):
        raise ValueError(f"{out}: checkpoint was written with a different config; use another --out or the same config")
    model.load_state_dict(artifacts.load_tensors(out / "model.safetensors"), strict=True)
    if hooks.modules:
        load_extra(out, hooks.modules)
    state = artifacts.load_tensors(out / "optimizer.safetensors")
    params = dict(named_trainables(model, hooks.modules))
    for key, v in state.items():
        if key == RNG_KEY:
            torch.set_rng_state(v)
            continue
        name, k = key.split("::")
        opt.state[params[name]][k] = v
    if manifest.get("recipe_state") and hooks.load_state:
        hooks.load_state(manifest["recipe_state"])
    return manifest["step"], History.read(out)


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train over an existing run by accident; recover a checkpoint a crash left mid-swap."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder; name a folder for the checkpoints")
    for line in artifacts.recover_folder(out):
        print(f"{out}: {line}")
    holds_run = out.is_dir() and any(out.iterdir())
    if resume and not (out / "manifest.json").exists():
        raise FileNotFoundError(f"--resume: no checkpoint in {out}; train without --resume first")
    if not resume and holds_run and not overwrite:
        raise FileExistsError(f"{out} already holds a run; continue it with --resume, or replace it with --force "
                              "(overwrite=True)")


class InterruptGuard:
    """Ctrl-C (SIGINT) during a training step only sets a flag; the loop stops at the next step boundary, so a
    checkpoint never holds weights that include a step its history does not record. Outside the main thread
    (where Python cannot install handlers) it does nothing and the loop relies on its own consistency flag."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if not self.requested:
            print("\ninterrupt: stopping after this step (checkpoint follows)", flush=True)
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --- several processes (torchrun) ---------------------------------------------------------------------------
def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up (gloo on CPU); returns (rank, world_size), (0, 1) without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist_info()


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _mean_over_ranks(x: torch.Tensor, world: int) -> torch.Tensor:
    if world == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world


def _assert_in_sync(model: GPT, world: int) -> None:
    """Every rank must hold identical weights (and so identical top-k masks); fail loudly otherwise."""
    if world == 1:
        return
    check = torch.stack([p.detach().double().abs().sum() for p in model.parameters()])
    lo, hi = check.clone(), check.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError("ranks hold different weights: data-parallel training went out of sync")


class _LossModule(torch.nn.Module):
    """The model's loss as a forward pass, so DistributedDataParallel can wrap it."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss(batch, loss_mask=loss_mask)


# --- the loop ---------------------------------------------------------------------------------------------------
def train(cfg: RunConfig, tokens: torch.Tensor, val_tokens: torch.Tensor, *, out: str | Path | None = None,
          resume: bool = False, progress: bool = True,
          hooks: TrainHooks | Callable[[GPT], TrainHooks] | None = None, stop_after: int | None = None,
          batch_fn: Callable[[int], torch.Tensor] | None = None, loss_mask: torch.Tensor | None = None,
          init_state: dict | None = None, stop_when: Callable[[History], bool] | None = None,
          overwrite: bool = False, checkpoint_every: int | None = None) -> tuple[GPT, History]:
    """Train a GPT on a token stream.

    Args:
        cfg: the run's configuration.
        tokens, val_tokens: 1-D token tensors (train / validation); ``val_tokens`` may be 2-D fixed windows.
        out: checkpoint folder (written every ``checkpoint_every`` steps, on Ctrl-C at the next step boundary,
            and at the end; locked while training, so a second run into it fails at once).
        resume: continue from the checkpoint in ``out`` (bit-identical to an uninterrupted run).
        overwrite: replace a run already in ``out`` (without it, an existing run is refused).
        checkpoint_every: steps between checkpoints (default: the config's ``train.checkpoint_every``).
        hooks: recipe extension points: a :class:`TrainHooks`, or a function of the new model returning one
            (e.g. ``lambda m: Projector(m, sparsity_cfg, steps).train_hooks()``).
        stop_after: stop (and checkpoint) after this many total steps, e.g. to test resuming.
        batch_fn: ``batch_fn(step) -> [batch, pos+1]`` replaces sampling windows from ``tokens`` (toy tasks).
        loss_mask: bool [pos] of predicted positions that count in the loss (train and validation).
        init_state: a state dict to start from (post-training), loaded strictly.
        stop_when: checked after every validation; ``True`` ends training there (e.g. at a matched loss).
    Returns:
        (model, History)

    Under ``torchrun --nproc_per_node N`` each rank computes ``batch_size / N`` rows of the same global batch and
    DistributedDataParallel averages the gradients, so N processes follow the one-process run; only rank 0
    writes checkpoints.
    """
    rank, world = init_distributed()
    if cfg.train.batch_size % world:
        raise ValueError(f"batch_size {cfg.train.batch_size} is not divisible by the {world} processes")
    out = Path(out) if out is not None and rank == 0 else None  # one writer
    with ExitStack() as stack:
        if out is not None:
            stack.enter_context(artifacts.folder_lock(out))
            _prepare_out(out, resume, overwrite)
        elif resume and rank == 0:
            raise FileNotFoundError("--resume needs --out, the folder holding the checkpoint")
        every = cfg.train.checkpoint_every if checkpoint_every is None else checkpoint_every
        return _train_locked(cfg, tokens, val_tokens, out=out, resume=resume, progress=progress, hooks=hooks,
                             stop_after=stop_after, batch_fn=batch_fn, loss_mask=loss_mask, init_state=init_state,
                             stop_when=stop_when, rank=rank, world=world, checkpoint_every=every)


def _train_locked(cfg, tokens, val_tokens, *, out, resume, progress, hooks, stop_after, batch_fn, loss_mask,
                  init_state, stop_when, rank, world, checkpoint_every) -> tuple[GPT, History]:
    setup_threads()
    seed_everything(cfg.train.seed)
    model = GPT(cfg.model)
    if init_state is not None:
        model.load_state_dict(init_state, strict=True)
    hooks = (hooks(model) if callable(hooks) else hooks) or TrainHooks()
    if cfg.is_sparse:  # P1's weight-sparse recipe, from the config's sparsity section
        hooks = compose_hooks(Projector(model, cfg.sparsity, cfg.train.steps).train_hooks(), hooks)
    if hooks.modules and world > 1:
        raise ValueError("extra trainable modules (hooks.modules) are not supported under torchrun yet")
    opt = make_optimizer(model, cfg, hooks.modules)
    trainables = torch.nn.ModuleList([model, *(hooks.modules or {}).values()])
    t, m, bf16 = cfg.train, cfg.model, bf16_enabled(cfg.train.bf16)  # decided once per run
    start, hist = 0, History()
    if resume and out is not None:
        start, hist = _restore(out, model, opt, cfg, hooks)
        print(f"resuming {out} at step {start} of {t.steps}", flush=True)
    windows = eval_windows(val_tokens, t.eval_batches * t.batch_size, m.n_ctx)
    end = min(t.steps, stop_after) if stop_after else t.steps
    model.train()
    net = _LossModule(model)
    if world > 1:
        net = DistributedDataParallel(net)
    rows = slice(rank * t.batch_size // world, (rank + 1) * t.batch_size // world)

    def checkpoint(step: int, **info) -> None:
        if out is not None:
            save_run(out, model, hist, cfg, opt=opt, step=step, extra=hooks.modules,
                     recipe_state=hooks.state() if hooks.state else None, **info)

    draw = window_sampler(t.sampling)
    bar = tqdm(range(start, end), desc="train", disable=not progress or rank > 0, initial=start, total=end,
               leave=False)
    consistent = True  # False while a step is half applied: weights and history disagree
    try:
        with InterruptGuard() as guard:
            for step in bar:
                consistent = False
                t0 = time.perf_counter()
                lr = lr_at(step, cfg) * (hooks.lr_factor(step) if hooks.lr_factor else 1.0)
                for group in opt.param_groups:
                    group["lr"] = lr
                batch = batch_fn(step) if batch_fn else draw(tokens, t.batch_size, m.n_ctx, t.seed, step)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = net(batch[rows], loss_mask)
                    total = hooks.objective(model, batch[rows], loss) if hooks.objective else loss
                opt.zero_grad(set_to_none=True)
                total.backward()
                grad_rms_(trainables, t.grad_rms)
                opt.step()
                if hooks.after_step:
                    hooks.after_step(model, step)
                hist.step.append(step)
                loss = _mean_over_ranks(loss, world)
                hist.train_loss.append(loss.item())
                hist.lr.append(lr)
                hist.tokens_seen += batch[:, 1:].numel()
                for k, v in (hooks.log(step) if hooks.log else {}).items():
                    hist.extra.setdefault(k, []).append(v)
                hist.train_seconds += time.perf_counter() - t0
                if (step + 1) % t.eval_every == 0 or step + 1 == t.steps:
                    hist.val_step.append(step + 1)
                    hist.val_loss.append(evaluate(model, windows, loss_mask=loss_mask))
                    _assert_in_sync(model, world)
                    if stop_when is not None and stop_when(hist):
                        end = step + 1
                        consistent = True
                        break
                    bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{hist.val_loss[-1]:.3f}")
                consistent = True
                if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < end:
                    checkpoint(step + 1)
                if guard.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if out is not None and consistent:  # nothing is lost: keep what was trained; --resume continues here
            checkpoint(len(hist.step))
            print(f"\ninterrupted: checkpoint at step {len(hist.step)} in {out}; continue with --resume")
        elif out is not None:
            print(f"\ninterrupted mid-step: the last checkpoint in {out} stays; continue with --resume")
        raise
    finally:
        bar.close()
    checkpoint(end, tokens_per_s=hist.tokens_seen / max(hist.train_seconds, 1e-9))
    model.eval()
    return model, hist
