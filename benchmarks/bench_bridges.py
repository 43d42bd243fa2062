"""Bridge training's cost (chapter 10), measured side by side in one run.

    .venv/bin/python benchmarks/bench_bridges.py [--threads 1] [--steps 10] [--kl-positions 32]

On the committed pair (wst-zoo2-l4d128-dense, wst-zoo2-l4d128-sparse) and batches of the bridge runs' shape
(16 x 128 tokens, bf16 autocast as they train): the seconds per step of a plain sparse training step (CE, backward,
AdamW, top-k projection), of a joint bridge step (P1's full loss, the sparse model and the bridges trained), of a
frozen-sparse bridge step (only the bridges), and of a joint step with the KL on every position; the ratios to the
plain step. Then the committed bridge runs' own wall times (their manifests), where they exist.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from sparsecirc import artifacts, build
from sparsecirc.core.config import make_config
from sparsecirc.core.repro import setup_threads
from sparsecirc.core.sparsity import Projector
from sparsecirc.core.train import grad_rms_, make_optimizer
from sparsecirc.data.lm import lm_tokens
from sparsecirc.wst import bridges as B

DENSE, SPARSE = "wst-zoo2-l4d128-dense", "wst-zoo2-l4d128-sparse"
RUNS = ("wst-bridges-zoo2-joint", "wst-bridges-zoo2-frozen")


def load(artifact_id: str):
    return build.load(artifact_id, artifacts.ARTIFACTS_DIR / artifact_id, "book")


def step_seconds(sparse, dense, cfg, batches, mode: str, kl_positions: int | None) -> float:
    """Mean seconds of one optimizer step after one warm-up step."""
    sparse = copy.deepcopy(sparse).train()
    br = B.Bridges.between(dense, sparse) if mode != "plain" else None
    extra = {"bridges": br} if br is not None else None
    if mode == "frozen":
        sparse.requires_grad_(False)
    opt = make_optimizer(sparse, cfg, extra)
    proj = Projector(sparse, cfg.sparsity, cfg.train.steps)
    trainables = torch.nn.ModuleList([sparse] + ([br] if br is not None else []))
    lc = B.BridgeLoss(kl_positions=kl_positions)
    times = []
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ce = sparse.loss(batch)
            total = ce if br is None else B.bridge_losses(dense, sparse, br, batch, lc,
                                                          ce=None if mode == "frozen" else ce)["total"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        grad_rms_(trainables, cfg.train.grad_rms)
        opt.step()
        proj.project(cfg.train.steps)
        if i:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--kl-positions", type=int, default=32)
    args = ap.parse_args()
    setup_threads(args.threads)
    dense, sparse_run = load(DENSE).model.eval(), load(SPARSE)
    dense.requires_grad_(False)
    over = {k: v for k, v in build.read_spec(RUNS[0])["scales"]["book"].items() if k != "eval"}
    cfg = make_config("book", **over)  # the bridge runs' model, sparsity and batch
    tokens, _ = lm_tokens(cfg)
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(tokens) - cfg.model.n_ctx - 1, (args.steps + 1, cfg.train.batch_size), generator=g)
    batches = [torch.stack([tokens[s:s + cfg.model.n_ctx + 1] for s in row]).long() for row in starts]
    print(f"torch threads: {torch.get_num_threads()}; batch {cfg.train.batch_size} x {cfg.model.n_ctx} tokens; "
          f"{args.steps} timed steps each")
    rows = [("plain sparse step", "plain", None), ("joint bridge step", "joint", args.kl_positions),
            ("frozen-sparse bridge step", "frozen", args.kl_positions), ("joint, KL on every position", "joint", None)]
    base = None
    for label, mode, kp in rows:
        s = step_seconds(sparse_run.model, dense, cfg, batches, mode, kp)
        base = base or s
        print(f"{label:30s} {s:7.3f} s/step   ratio to plain {s / base:5.1f}x")
    for rid in RUNS:
        if rid in artifacts.load_registry():
            m = load(rid)
            print(f"{rid}: {len(m.history.step)} steps, {m.metrics['seconds_per_step']:.3f} s/step while training, "
                  f"wall {m.manifest.get('wall_time_s')} s")


if __name__ == "__main__":
    main()
