"""Training step speed of the weight-sparse recipe at the zoo shape: the trainer as it was against its faster paths,
side by side in one run (tokens/s and ratios).

    .venv/bin/python benchmarks/bench_train_speed.py [--config wst-zoo-l2d128-sparse] [--threads 1] [--steps 4]
                                                     [--rounds 5] [--official PATH] [--save FILE]

``--save`` writes the table (tokens/s per variant, every round, the ratios) with the machine, thread count, torch
version and commit to a JSON file; ``data/benchmarks/train_speed.json`` is the committed copy chapter 02 reads
(``sparsecirc.core.train.speed_benchmark``).

One full recipe step (forward, backward, gradient normalisation, AdamW, top-k projection of every sparse matrix)
on a fixed random batch of the config's shape. Variants, each switched on on top of the previous one, timed in
rounds (each round runs every variant in turn; the median round is reported):

1. ``reference``: the trainer before the speed work: deterministic mode filling new tensors with NaN, the
   projection's threshold by ``torch.kthvalue``, AbsTopK by ``torch.topk`` + scatter, the sink attention as an
   explicit softmax (kept in this script as the reference implementations);
2. ``no NaN fill``: ``torch.utils.deterministic.fill_uninitialized_memory = False``;
3. ``selection thresholds``: AbsTopK and the projection by a row-wise selection (``model.kth_largest``);
4. ``sink via SDPA``: the sink attention through ``scaled_dot_product_attention`` (one extra key);
5. ``fused AdamW``; 6. ``bf16 autocast`` (fp32 master weights; selections in fp32, the bf16 activations
   converted to float32 for AbsTopK's selection; attention through SDPA in bf16);
7. ``fp32 attention, bit selection``: attention through the fused kernel in float32 with the sink's gradient from
   its log-sum-exp (``core.attention``), AbsTopK's selection on the bf16 bit patterns (no conversion);
8. with ``--official PATH``: the official ``circuit_sparsity/train.py`` step at the same shape (see
   :func:`official_variant`), and the ratio of the fastest path to it.

Steps 2-4 and 7 compute the same numbers as the step before them (tests in ``tests/test_model.py``,
``tests/test_sparsity.py``, ``tests/test_attention.py``); 5-6 change them within floating-point tolerance.
Never run beside another torch job on a 2-core machine.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sparsecirc import artifacts, build
from sparsecirc.core import attention, sparsity
from sparsecirc.core import model as model_module
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


def abs_topk_via_float(x: torch.Tensor, frac: float) -> torch.Tensor:
    """AbsTopK by a row-wise selection, bf16 activations converted to float32 for it (variants 3-6)."""
    k = max(1, int(frac * x.shape[-1]))
    if k >= x.shape[-1]:
        return x
    a = x.detach().abs()
    return x * (a >= model_module.kth_largest(a, k))


VARIANTS = ["reference", "no NaN fill", "selection thresholds", "sink via SDPA", "fused AdamW", "bf16 autocast",
            "fp32 attention, bits"]


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
        model_module.abs_topk = topk_scatter if level < 2 else abs_topk_via_float if level < 6 else FAST_ABS_TOPK
        attention.USE_CPU_FLASH = level >= 6
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


def official_variant(path: str, config: str):
    """(activate, step, tokens a step) of the official trainer's step (``circuit_sparsity/train.py`` of a checkout at
    ``path``, never committed here) at the config's shape: its GPT with AbsTopK at P1's 8 sites and the sink, its
    gradient-RMS normalisation, fused Adam, its top-k projection (``apply_topk_``, one kept fraction for every matrix
    as in its constant-pfrac mode) and its decoupled weight decay, in the order its loop runs them. On CPU in fp32:
    its mixed precision is CUDA autocast; its SDPA path (``flash``, with its sink module); ``grad_checkpointing`` off
    (its default, on, is slower). Its file-loading imports (``blobfile``, ``tiktoken``) are stubbed when absent: the
    step never reads a file."""
    import importlib
    import sys
    import types
    for name in ("blobfile", "tiktoken", "tiktoken.load"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.read_file_cached = None
            sys.modules[name] = stub
    sys.path.insert(0, path)
    gpt = importlib.import_module("circuit_sparsity.inference.gpt")
    official = importlib.import_module("circuit_sparsity.train")
    cfg = build.run_config(config, "book")
    m, t = cfg.model, cfg.train
    sites = ",".join(m.act_sparsity_sites)  # the official code knows the same 8 site names
    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(block_size=1024, vocab_size=m.d_vocab, n_layer=m.n_layer, n_head=m.n_head,
                                  d_head=m.d_head, d_model=m.d_model, d_mlp=m.d_mlp, rms_norm=True,
                                  activation_type="gelu", tied_unembed=False, afrac=m.act_keep_frac,
                                  afrac_loctypes=sites, sink=m.attn_sink, grad_checkpointing=False))
    model.transformer.wpe.weight.data.zero_()  # as its script: positions zeroed (block_size 1024 is its assumption)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=t.lr, eps=t.eps, betas=(t.beta1, t.beta2), fused=True)
    keep = cfg.sparsity.weight_nonzero_frac
    x = torch.randint(0, m.d_vocab, (t.batch_size, m.n_ctx), generator=torch.Generator().manual_seed(0))

    def activate() -> None:
        torch.utils.deterministic.fill_uninitialized_memory = False

    def step() -> None:
        opt.zero_grad()
        logits, _, _ = model(x, include_resid_mid=True)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        with torch.no_grad():
            rms = torch.nn.utils.clip_grad_norm_(params, 1e10) / sum(p.numel() for p in params) ** 0.5
            for p in params:
                p.grad /= rms + 1e-5
        opt.step()
        official.apply_topk_(model, pfrac=keep, expansion_factor=1, expansion_factor_mlp=1, final_pfrac=keep,
                             achyuta_mixed_neuronwise_v2=True, minimum_alive_per_neuron=4)
        with torch.no_grad():
            for p in params:
                if p.dim() > 1:
                    p -= t.weight_decay * t.lr * p

    return activate, step, t.batch_size * (m.n_ctx - 1)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    except OSError:
        return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="wst-zoo-l2d128-sparse")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed steps of each variant per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; each runs every variant in turn")
    ap.add_argument("--save", default=None, metavar="FILE", help="write the results as JSON (with provenance)")
    ap.add_argument("--official", default=None, metavar="PATH",
                    help="a checkout of the official circuit_sparsity repository with circuit_sparsity/train.py: "
                         "its step is timed beside ours (not committed here; skipped when absent)")
    a = ap.parse_args()
    n = setup_threads(a.threads)
    print(f"threads={n} config={a.config} torch={torch.__version__}; every round runs each variant for {a.steps} "
          f"steps in turn, so a slow spell of the machine hits all variants alike; median over {a.rounds} rounds")
    variants = [make_variant(a.config, level) for level in range(len(VARIANTS))]
    names = list(VARIANTS)
    if a.official and Path(a.official, "circuit_sparsity", "train.py").exists():
        variants.append(official_variant(a.official, a.config))
        names.append("official train.py")
    else:
        why = "no --official path given" if not a.official else f"no circuit_sparsity/train.py under {a.official}"
        print(f"official trainer: skipped ({why})")
    secs: list[list[float]] = [[] for _ in variants]
    for _ in range(a.rounds):
        for (activate, step, _), out in zip(variants, secs):
            activate()
            out.append(seconds_per_call(step, a.steps))
    variants[len(VARIANTS) - 1][0]()  # leave the fast switches on
    base, rows = None, {}
    for name, (_, _, tokens), s in zip(names, variants, secs):
        tps = tokens / statistics.median(s)
        base = base or tps
        rows[name] = {"tokens_per_s": tps, "vs_reference": tps / base, "rounds": [tokens / x for x in s]}
        print(f"{name:22s} {tps:9.0f} tokens/s  {tps / base:5.2f}x the reference  "
              f"(rounds: {min(tokens / x for x in s):.0f}-{max(tokens / x for x in s):.0f})")
    out = {"config": a.config, "threads": n, "steps": a.steps, "rounds": a.rounds, "variants": rows,
           "fastest": VARIANTS[-1], "speedup": rows[VARIANTS[-1]]["vs_reference"]}
    if len(names) > len(VARIANTS):
        fast, off = (tokens / statistics.median(s) for (_, _, tokens), s in zip(variants[-2:], secs[-2:]))
        out["vs_official"] = fast / off
        print(f"fastest path / official train.py: {fast / off:.2f}x")
    if a.save:
        out.update(environment=artifacts.environment(), cpu=cpu_name(),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="benchmarks/bench_train_speed.py " + " ".join(sys.argv[1:]))
        artifacts.write_json(a.save, out)
        print(f"wrote {a.save}")


if __name__ == "__main__":
    main()
