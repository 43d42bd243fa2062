"""P2's gated attention: the blockwise form (``ModelConfig.attn_gate_block``) against the explicit one, side by side.

    .venv/bin/python benchmarks/bench_gated_blocks.py [--threads 1] [--lengths 256,1024] [--block 32]

One post-training step (forward with sampled gates, the GECO-style loss CE + mean gate density, backward) of the
pos-1024 code model's shape (``wst-zoo-l2d128-dense-pos1024``: 2 layers, d_model 128, learned positions, context
1024) with the gate switched on, at the same tokens per step for every length (batch x length = 2048), in seconds,
median of ``--rounds`` interleaved rounds; the ratio explicit / blockwise; and the peak resident memory of each
path in a fresh process. The weights are random (the step's cost does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from sparsecirc import GPT, ModelConfig
from sparsecirc.core.repro import setup_threads

SHAPE = dict(n_layer=2, d_model=128, d_head=16, n_ctx=1024, d_vocab=2048, pos_embed=True, attn_gate=True,
             attn_gate_bias=0.0)
TOKENS = 2048  # per step, as the pos-1024 post-training configs (8 x 256, 2 x 1024)


def step_seconds(T: int, block: int | None, steps: int) -> list[float]:
    torch.manual_seed(0)
    m = GPT(ModelConfig(**SHAPE, attn_gate_block=block)).train()
    tokens = torch.randint(0, SHAPE["d_vocab"], (max(1, TOKENS // T), T + 1))
    out = []
    for _ in range(steps + 1):  # one warm-up step
        t0 = time.perf_counter()
        loss = m.loss(tokens) + sum(b.attn.gate_density.mean() for b in m.blocks)
        loss.backward()
        out.append(time.perf_counter() - t0)
    return out[1:]


def peak_mib() -> float:
    """This process's peak resident memory in MiB: VmHWM, which starts afresh at exec (``ru_maxrss`` would carry
    the parent's peak into a child started by fork + exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover (not Linux)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lengths", default="256,1024")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # "T,block": one step, print peak RSS
    a = ap.parse_args()
    setup_threads(a.threads)
    if a.memory_of:
        T, block = (int(x) for x in a.memory_of.split(","))
        step_seconds(T, block or None, 1)
        print(json.dumps(peak_mib()))
        return
    print(f"threads={a.threads}, {TOKENS} tokens a step, block {a.block}, median of {a.rounds} interleaved rounds")
    for T in (int(x) for x in a.lengths.split(",")):
        times = {"explicit": [], "blockwise": []}
        for _ in range(a.rounds):
            times["explicit"] += step_seconds(T, None, a.steps)
            times["blockwise"] += step_seconds(T, a.block, a.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        mem = {}
        for name, block in (("explicit", 0), ("blockwise", a.block)):
            cmd = [sys.executable, __file__, "--threads", str(a.threads), "--memory-of", f"{T},{block}"]
            mem[name] = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])
        print(f"T={T:5d} batch {max(1, TOKENS // T)}: explicit {med['explicit']:.3f} s, blockwise "
              f"{med['blockwise']:.3f} s a step: {med['explicit'] / med['blockwise']:.2f}x; peak RSS "
              f"{mem['explicit']:.0f} vs {mem['blockwise']:.0f} MiB")


if __name__ == "__main__":
    main()
