"""Training throughput (tokens/s) of the dense GPT at three sizes, fp32 vs bf16 autocast, in one run.

    .venv/bin/python benchmarks/bench_train_throughput.py [--threads 2] [--steps 6]

Prints a table and the bf16/fp32 ratio per size. Random tokens (throughput does not depend on the data).
Never run it beside another torch job on a 2-core machine: two threads collapse under contention (STYLE §10).
"""
from __future__ import annotations

import argparse

import torch

from sparsecirc import GPT
from sparsecirc.core.config import make_config
from sparsecirc.core.repro import seconds_per_call, setup_threads
from sparsecirc.core.train import make_optimizer

SIZES = [("L2 d64 ctx64 (ci)", {"n_layer": 2, "d_model": 64, "n_ctx": 64}),
         ("L2 d128 ctx128 (book)", {"n_layer": 2, "d_model": 128, "n_ctx": 128}),
         ("L4 d256 ctx128", {"n_layer": 4, "d_model": 256, "n_ctx": 128})]


def tokens_per_s(model_kw: dict, bf16: bool, steps: int, batch: int = 32) -> float:
    cfg = make_config("book", model=model_kw)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    opt = make_optimizer(model, cfg)
    x = torch.randint(0, cfg.model.d_vocab, (batch, cfg.model.n_ctx + 1))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch * cfg.model.n_ctx / seconds_per_call(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    n = setup_threads(a.threads)
    print(f"threads={n} torch={torch.__version__}")
    print(f"{'model':24s} {'params':>9s} {'fp32 tok/s':>11s} {'bf16 tok/s':>11s} {'bf16/fp32':>9s}")
    for name, kw in SIZES:
        params = GPT(make_config("book", model=kw).model).n_params()
        f32 = tokens_per_s(kw, False, a.steps)
        b16 = tokens_per_s(kw, True, a.steps)
        print(f"{name:24s} {params / 1e6:8.2f}M {f32:11.0f} {b16:11.0f} {b16 / f32:9.2f}")


if __name__ == "__main__":
    main()
