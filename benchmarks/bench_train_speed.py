"""Training step speed of the weight-sparse recipe at the zoo shape: the trainer as it was against its faster paths,
side by side in one run (tokens/s and ratios).

    .venv/bin/python benchmarks/bench_train_speed.py [--config wst-zoo-l2d128-sparse] [--threads 1] [--steps 4]
                                                     [--rounds 5]

One full recipe step (forward, backward, gradient normalisation, AdamW, top-k projection of every sparse matrix)
on a fixed random batch of the config's shape. Variants, each switched on on top of the previous one, timed in
rounds (each round runs every variant in turn; the median round is reported):

1. ``reference``: the trainer before the speed work: deterministic mode filling new tensors with NaN, the
   projection's threshold by ``torch.kthvalue``, AbsTopK by ``torch.topk`` + scatter, the sink attention as an
   explicit softmax (kept in this script as the reference implementations);
2. ``no NaN fill``: ``torch.utils.deterministic.fill_uninitialized_memory = False``;
3. ``selection thresholds``: AbsTopK and the projection by a row-wise selection (``model.kth_largest``);
4. ``sink via SDPA``: the sink attention through ``scaled_dot_product_attention`` (one extra key);
5. ``fused AdamW``; 6. ``bf16 autocast`` (fp32 master weights; selections in fp32).

Steps 2-4 compute the same numbers as the reference (tests in ``tests/test_model.py``, ``tests/test_sparsity.py``);
5-6 change them within floating-point tolerance. Never run beside another torch job on a 2-core machine.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics

import torch

from sparsecirc import build
from sparsecirc.core import model as model_module
from sparsecirc.core import sparsity
from sparsecirc.core.hooks import patch
from sparsecirc.core.model import GPT
from sparsecirc.core.repro import seconds_per_call, seed_everything, setup_threads
from sparsecirc.core.train import grad_rms_, make_optimizer


def topk_scatter(x: torch.Tensor, frac: float) -> torch.Tensor:
    """AbsTopK as it was: ``torch.topk`` of |x|, then a scatter."""
    k = max(1, int(frac * x.shape[-1]))
    if k >= x.shape[-1]:
        return x
    idx = x.abs().topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


def kthvalue_threshold(a: torch.Tensor, k: int) -> torch.Tensor:
    """The projection's threshold as it was: ``torch.kthvalue`` (``a`` is 1-D here)."""
    return a.detach().kthvalue(a.shape[-1] - k + 1, dim=-1, keepdim=True).values


VARIANTS = ["reference", "no NaN fill", "selection thresholds", "sink via SDPA", "fused AdamW", "bf16 autocast"]


def make_variant(config: str, level: int):
    """(activate, step, tokens a step) of one variant: ``activate()`` sets the module-level switches this variant
    runs with (deterministic-mode fill, AbsTopK, projection threshold), ``step()`` is one full recipe step."""
    cfg = build.run_config(config, "book")
    seed_everything(0)
    model = GPT(cfg.model)
    hooks = sparsity.Projector(model, cfg.sparsity, cfg.train.steps).train_hooks()
    opt = make_optimizer(model, cfg)
    if level >= 4:
        opt = torch.optim.AdamW(opt.param_groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2),
                                eps=cfg.train.eps, fused=True)
    x = torch.randint(0, cfg.model.d_vocab, (cfg.train.batch_size, cfg.model.n_ctx + 1),
                      generator=torch.Generator().manual_seed(0))
    patterns = [f"blocks.{i}.attn.hook_pattern" for i in range(cfg.model.n_layer)] if level < 3 else []
    at = [cfg.train.steps // 2]  # mid-run: the projection keeps the final fraction

    def activate() -> None:
        torch.utils.deterministic.fill_uninitialized_memory = level < 1
        model_module.abs_topk = topk_scatter if level < 2 else FAST_ABS_TOPK
        sparsity.kth_largest = kthvalue_threshold if level < 2 else FAST_KTH

    def step() -> None:
        forced = patch(model, {p: (lambda t: t) for p in patterns})  # a hook on the pattern forces the softmax
        with forced if patterns else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=level >= 5):
                loss = model.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        grad_rms_(model, cfg.train.grad_rms)
        opt.step()
        hooks.after_step(model, at[0])
        at[0] += 1

    return activate, step, cfg.train.batch_size * cfg.model.n_ctx


FAST_ABS_TOPK, FAST_KTH = model_module.abs_topk, sparsity.kth_largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed steps of each variant per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; each runs every variant in turn")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    print(f"threads={n} config={a.config} torch={torch.__version__}; every round runs each variant for {a.steps} "
          f"steps in turn, so a slow spell of the machine hits all variants alike; median over {a.rounds} rounds")
    variants = [make_variant(a.config, level) for level in range(len(VARIANTS))]
    secs: list[list[float]] = [[] for _ in variants]
    for _ in range(a.rounds):
        for (activate, step, _), out in zip(variants, secs):
            activate()
            out.append(seconds_per_call(step, a.steps))
    variants[-1][0]()  # leave the fast switches on
    base = None
    for name, (_, _, tokens), s in zip(VARIANTS, variants, secs):
        tps = tokens / statistics.median(s)
        base = base or tps
        print(f"{name:22s} {tps:9.0f} tokens/s  {tps / base:5.2f}x the reference  "
              f"(rounds: {min(tokens / x for x in s):.0f}-{max(tokens / x for x in s):.0f})")


if __name__ == "__main__":
    main()
