"""Weight-sparse training costs, measured in one run (P1 §2.1; issue: projection overhead <= 0.10 of a step).

    .venv/bin/python benchmarks/bench_sparse_training.py [--threads 2] [--steps 6]

Prints, for the book-scale zoo shape (2 layers, d_model 128, ctx 128, batch 16):
  * tokens/s of the dense model and of the full sparse recipe (AbsTopK x8 + sink + top-k projection), and the ratio;
  * the top-k projection's time / the dense step's time (target <= 0.10);
  * the machine's peak fp32 matmul GFLOP/s (1024^3 GEMM) and the dense step's achieved fraction of it.
"""
from __future__ import annotations

import argparse

import torch

from sparsecirc import GPT
from sparsecirc.core.config import make_config
from sparsecirc.core.repro import seconds_per_call, setup_threads
from sparsecirc.core.sparsity import Projector, SparsityConfig
from sparsecirc.core.train import make_optimizer

MODEL = {"n_layer": 2, "d_model": 128, "n_ctx": 128}
BATCH = 16


def step_fn(model_kw: dict, sparse: bool):
    cfg = make_config("book", model=model_kw, train={"batch_size": BATCH})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    opt = make_optimizer(model, cfg)
    proj = Projector(model, SparsityConfig(weight_nonzero_frac=0.125, embed_nonzero_frac=0.25), 100) if sparse else None
    x = torch.randint(0, cfg.model.d_vocab, (BATCH, cfg.model.n_ctx + 1))

    def step():
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if proj:
            proj.project(100)
    return step, proj, model


def peak_gflops(n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    sec = seconds_per_call(lambda: a @ b, reps)
    return 2 * n**3 / sec / 1e9


def step_flops(model: GPT, tokens: int) -> float:
    """~6 x (weight matrix parameters) x tokens (forward + backward), plus attention's 2 x T^2 x d per layer x 3."""
    c = model.cfg
    mats = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and n != "embed.weight")
    attn = 3 * 2 * 2 * c.n_layer * c.n_ctx * c.n_head * c.d_head * tokens
    return 6 * mats * tokens + attn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    n = setup_threads(a.threads)
    tokens = BATCH * MODEL["n_ctx"]
    dense_step, _, dense_model = step_fn(MODEL, sparse=False)
    t_dense = seconds_per_call(dense_step, a.steps)
    sparse_step, proj, _ = step_fn({**MODEL, "act_keep_frac": 0.25, "attn_sink": True}, sparse=True)
    t_sparse = seconds_per_call(sparse_step, a.steps)
    t_proj = seconds_per_call(lambda: proj.project(100), a.steps)
    peak = peak_gflops()
    achieved = step_flops(dense_model, tokens) / t_dense / 1e9
    print(f"threads={n} torch={torch.__version__} shape=L{MODEL['n_layer']} d{MODEL['d_model']} ctx{MODEL['n_ctx']} "
          f"batch {BATCH}")
    print(f"{'dense tokens/s':34s} {tokens / t_dense:10.0f}")
    print(f"{'sparse recipe tokens/s':34s} {tokens / t_sparse:10.0f}")
    print(f"{'sparse / dense throughput':34s} {t_dense / t_sparse:10.2f}")
    print(f"{'projection / dense step time':34s} {t_proj / t_dense:10.3f}   (target <= 0.10)")
    print(f"{'peak fp32 matmul GFLOP/s':34s} {peak:10.1f}")
    print(f"{'dense step GFLOP/s (fraction)':34s} {achieved:10.1f}   ({achieved / peak:.2f} of peak)")


if __name__ == "__main__":
    main()
