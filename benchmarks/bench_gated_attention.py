"""Cost of P2's gated attention (addition toy or the code model): train-step time gated vs plain, post-training time.

    SPARSECIRC_NUM_THREADS=1 .venv/bin/python benchmarks/bench_gated_attention.py [--steps 100] [--batch 256]
    SPARSECIRC_NUM_THREADS=1 .venv/bin/python benchmarks/bench_gated_attention.py --model code --steps 30

Same model shape (toy: P2 Fig. 1, 4 layers, 4 heads, d_model 64; code: 2 layers, d_model 128, context 128), same
weights, same batch. "plain" runs the fused SDPA path; "plain, explicit pattern" forces the softmax-matrix path the
gate also uses (a hook on hook_pattern), so the gate's own cost is the last ratio. The post-training row times
``train`` with GECO hooks per 100 steps.
Never run it beside another torch job on a 2-core machine (STYLE §10).
"""
from __future__ import annotations

import argparse
import time

import torch

from sparsecirc import GPT
from sparsecirc.core.config import make_config
from sparsecirc.core.hooks import patch
from sparsecirc.core.repro import seconds_per_call, setup_threads
from sparsecirc.core.train import make_optimizer, train
from sparsecirc.spa import addition
from sparsecirc.spa.geco import GECO, GECOConfig

MODEL = dict(n_layer=4, n_head=4, d_head=16, d_model=64, d_mlp=256, n_ctx=11, d_vocab=12, pos_embed=True)
# --model code: the shape of chapter 08's code model (spa-codemodel-l2d128-gated), batch 16 x 128 tokens
CODE_MODEL = dict(n_layer=2, d_model=128, d_head=16, n_ctx=128, d_vocab=2048)


def step_seconds(gate: bool, batch: torch.Tensor, steps: int, explicit_pattern: bool = False, model_kw=None,
                 loss_mask=addition.LOSS_MASK) -> float:
    cfg = make_config("book", model={**(model_kw or MODEL), "attn_gate": gate}, train={"lr": 3e-4, "weight_decay": 0.0})
    torch.manual_seed(0)
    model = GPT(cfg.model).train()
    opt = make_optimizer(model, cfg)
    hooks = {"blocks.*.attn.hook_pattern": lambda p: p} if explicit_pattern else {}

    def step():
        with patch(model, hooks):
            loss = model.loss(batch, loss_mask=loss_mask)
            if gate:
                loss = loss + torch.stack([b.attn.gate_density for b in model.blocks]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return seconds_per_call(step, steps, warmup=5)


def post_training_seconds_per_100(steps: int, batch_size: int, code: bool = False) -> float:
    cfg = make_config("book", model={**(CODE_MODEL if code else MODEL), "attn_gate": True},
                      train={"steps": steps, "batch_size": batch_size, "lr": 3e-4, "weight_decay": 0.0,
                             "warmup_frac": 0.0, "final_lr_frac": 1.0, "grad_rms": "none", "eval_every": 10**9})
    geco = GECO(GECOConfig(tau=0.01))
    t0 = time.perf_counter()
    if code:
        stream = torch.randint(0, CODE_MODEL["d_vocab"], (200_000,), generator=torch.Generator().manual_seed(0))
        train(cfg, stream, stream[:10_000], hooks=geco.train_hooks(), progress=False)
    else:
        test = addition.test_set()
        train(cfg, None, test[:256], batch_fn=addition.batch_fn(batch_size), loss_mask=addition.LOSS_MASK,
              hooks=geco.train_hooks(), progress=False)
    return 100 * (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=None, help="default: 256 (toy) or 16 (code)")
    ap.add_argument("--model", choices=("toy", "code"), default="toy",
                    help="toy: chapter 07's addition model; code: chapter 08's 2-layer code model at context 128")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    code = a.model == "code"
    bs = a.batch or (16 if code else 256)
    if code:
        batch = torch.randint(0, CODE_MODEL["d_vocab"], (bs, CODE_MODEL["n_ctx"] + 1),
                              generator=torch.Generator().manual_seed(0))
        kw = dict(model_kw=CODE_MODEL, loss_mask=None)
    else:
        batch, kw = addition.batch_fn(bs)(0), {}
    plain = step_seconds(False, batch, a.steps, **kw)
    explicit = step_seconds(False, batch, a.steps, explicit_pattern=True, **kw)
    gated = step_seconds(True, batch, a.steps, **kw)
    per100 = post_training_seconds_per_100(a.steps, bs, code=code)
    print(f"model={a.model} threads={n} torch={torch.__version__} batch={bs} steps={a.steps}")
    print(f"{'train step':32s} {'ms/step':>8s} {'vs plain':>9s}")
    for name, t in (("plain (fused SDPA)", plain), ("plain, explicit pattern", explicit), ("gated (P2)", gated)):
        print(f"{name:32s} {1e3 * t:8.1f} {t / plain:9.2f}")
    print(f"gated / plain-explicit ratio: {gated / explicit:.2f}")
    print(f"post-training (train() + GECO): {per100:.1f} s per 100 steps")


if __name__ == "__main__":
    main()
