"""A baseline for P2's gate: the dense model *fine-tuned* under a fixed top-k attention budget (issue: does the gate
plus GECO matter beyond a sparsity budget?).

The producer of ``kind: addition_topk`` artifacts. Its config names the dense toy (``init_from``) and the gated
post-trained toy whose edge counts set the budget (``match``); each variant keeps, in every forward pass of
fine-tuning and evaluation, either the ``k`` largest softmax weights per query and head (``k``) or the sparse
model's edges per layer (``budget: matched``: the n_l largest weights of layer l over heads and pairs), without
renormalisation, as P2's gate does not renormalise. All weights train with Adam on the same task and batches as
the post-training::

    python -m sparsecirc reproduce spa-fig1-addition-topk-finetuned --scale book

``results.json``: per variant, the test exact match and CE before and after fine-tuning, edges per example, and the
validation curve; beside them the gated model's own numbers.
"""
from __future__ import annotations

import time
from contextlib import ExitStack

import pandas as pd

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.recipe import TrainHooks
from sparsecirc.core.train import train
from sparsecirc.spa.addition import LOSS_MASK, SEQ_LEN, batch_fn, evaluate_addition, test_set, val_subset
from sparsecirc.spa.attention_edges import causal_pairs, topk_attention, topk_edges_per_example


def variant_kwargs(variant: dict, sparse_edges_per_layer: list[float]) -> tuple[dict, int]:
    """(``topk_attention`` keyword arguments, edges per example) of one variant of the config."""
    if "k" in variant:
        return {"k": int(variant["k"]), "renormalize": False}, None
    if variant.get("budget") == "matched":
        budget = [max(1, round(e)) for e in sparse_edges_per_layer]
        return {"per_layer_budget": budget, "renormalize": False}, sum(budget)
    raise ValueError(f"a top-k variant needs `k: <int>` or `budget: matched`, got {variant!r}")


def finetune(cfg, dense_model, kwargs: dict, progress: bool = False):
    """Fine-tune a copy of ``dense_model`` with every attention pattern cut to ``kwargs`` (``topk_attention``);
    returns (test metrics under the same cut, history)."""
    test = test_set()
    with ExitStack() as stack:
        def hooks(model):
            stack.enter_context(topk_attention(model, **kwargs))  # the cut stays on through the evaluation below
            return TrainHooks()
        model, hist = train(cfg, None, val_subset(test), batch_fn=batch_fn(cfg.train.batch_size, cfg.train.seed),
                            loss_mask=LOSS_MASK, init_state=dense_model.state_dict(), hooks=hooks, progress=progress)
        return evaluate_addition(model, test), hist


def produce_addition_topk(ctx: BuildContext) -> None:
    cfg, variants = ctx.split_config("variants")
    variants = variants or ctx.spec["variants"]  # a scale may list its own variants
    dense = ctx.dep(ctx.spec["init_from"])
    sparse = ctx.dep(ctx.spec["match"])
    test = test_set()
    c = dense.model.cfg
    T = SEQ_LEN - 1
    possible = c.n_layer * c.n_head * causal_pairs(T)
    per_layer = sparse.metrics["test"]["edges_per_example_per_layer"]
    t0 = time.time()
    rows = []
    for variant in variants:
        kw, edges = variant_kwargs(variant, per_layer)
        edges = edges if edges is not None else topk_edges_per_example(c.n_layer, c.n_head, T, kw["k"])
        with topk_attention(dense.model, **kw):
            before = evaluate_addition(dense.model, test)
        after, hist = finetune(cfg, dense.model, kw, progress=ctx.progress)
        rows.append({"variant": variant, "edges_per_example": edges, "density": edges / possible,
                     "before": {k: before[k] for k in ("accuracy", "ce")},
                     "after": {k: after[k] for k in ("accuracy", "ce")},
                     "curve": {"step": list(hist.val_step), "val_loss": list(hist.val_loss)}})
    results = {"rows": rows, "sparse": {"accuracy": sparse.metrics["test"]["accuracy"],
                                        "ce": sparse.metrics["test"]["ce"],
                                        "edges_per_example": sparse.metrics["test"]["edges_per_example"]},
               "steps": cfg.train.steps, "wall_time_s": round(time.time() - t0, 1)}
    artifacts.write_json(ctx.folder / "results.json", results)
    artifacts.write_manifest(ctx.folder, ["results.json"], **ctx.manifest_info(
        kind="addition_topk", seed=cfg.train.seed, config={"spec": ctx.spec}, wall_time_s=results["wall_time_s"]))


def topk_table(results: dict) -> pd.DataFrame:
    """One row per variant (and the gated model): edges per example, exact match and CE, training-free and
    fine-tuned."""
    rows = []
    for r in results["rows"]:
        v = r["variant"]
        name = f"top-{v['k']} per query" if "k" in v else "budget matched per layer"
        rows.append({"baseline": name, "edges per example": r["edges_per_example"],
                     "exact match, cut only (%)": 100 * r["before"]["accuracy"],
                     "exact match, fine-tuned (%)": 100 * r["after"]["accuracy"],
                     "CE, fine-tuned": r["after"]["ce"]})
    s = results["sparse"]
    rows.append({"baseline": "gated + GECO (post-trained)", "edges per example": s["edges_per_example"],
                 "exact match, cut only (%)": None, "exact match, fine-tuned (%)": 100 * s["accuracy"],
                 "CE, fine-tuned": s["ce"]})
    return pd.DataFrame(rows)
