"""The quote-closing and variable-type study (P1 §3.2.1, §3.2.3; chapter 05): ``study: quote_and_type``.

Each task is pruned on its own model and read with :mod:`sparsecirc.wst.contrast`; the attacks the
variable-type circuit predicts come from :mod:`sparsecirc.wst.vartype`.
"""
from __future__ import annotations

import pandas as pd

from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.wst.contrast import contrast_task
from sparsecirc.wst.prune_report import main_rows
from sparsecirc.wst.reading import claim_arguments as reading_claim_arguments
from sparsecirc.wst.reading import mean_values, study_model
from sparsecirc.wst.vartype import distractor_claims, distractor_rows


def quote_study(ctx: BuildContext, sspec: dict, pcfg: PruneConfig, seed: int) -> tuple[dict, list[str]]:
    """Each task on its own model (``models: {name: id}``, default ``model``) and with its own target list
    (``task_targets: {name: [...]}``, default ``targets``; a scale's ``targets`` overrides both). Every model reads
    the task data of its own data version (``cfg.data_version``)."""
    spec = ctx.spec
    results, files, loaded = {}, [], {}
    for name, task in spec["tasks"].items():
        model_id = spec.get("models", {}).get(name, spec["model"])
        if model_id not in loaded:
            model, cfg, val = study_model(ctx, model_id)
            loaded[model_id] = (model, mean_values(model, cfg, val, pcfg))
        model, means = loaded[model_id]
        targets = [float(t) for t in sspec.get("targets", spec.get("task_targets", {}).get(name, spec["targets"]))]
        results[name], f = contrast_task(model, means, task, pcfg, targets, ctx.folder, model_id)
        results[name]["model"] = model_id
        files += f
    if spec.get("distractors"):  # attacks on the variable-type task that its circuit predicts
        d = spec["distractors"]
        task = spec["tasks"]["vartype"]
        ids = [spec.get("models", {}).get("vartype", spec["model"])] + list(d.get("compare_models", []))
        results["vartype"]["distractor"] = distractor_rows(  # each model on its own data version's test split
            {m: loaded[m][0] if m in loaded else ctx.dep(m).model for m in ids}, None, task, d["prefixes"])
        results["vartype"]["distractor_attack"] = distractor_attack(spec)
    results["claims"] = quote_claim_values(results)
    return results, files


def distractor_attack(spec: dict) -> dict | None:
    """The distractor prefix a study's claim line grades and the prompts it aims at: the config's
    ``distractors.attack`` / ``attacked`` (default: the first prefix, against the ``set()`` prompts, ``"a"``)."""
    d = spec.get("distractors")
    if not d:
        return None
    return {"prefix": d.get("attack", d["prefixes"][0]), "attacked": d.get("attacked", "a")}


def refresh_claims(results: dict, spec: dict) -> dict:
    """Stored results with the graded attack and the claim values recomputed under ``spec`` (the study's config),
    without re-measuring anything (``build.refresh_case_claims`` writes them back)."""
    if results["vartype"].get("distractor"):
        results["vartype"]["distractor_attack"] = distractor_attack(spec)
    results["claims"] = quote_claim_values(results)
    return results


def quote_claim_values(results: dict) -> dict:
    """The values chapter 05's claim lines print (recomputed there and checked against this stored copy)."""
    q, v = results["quote"]["prune"], results["vartype"]["prune"]
    out = {"quote-circuit-edges": q.get("edges"), "quote-circuit-nodes": q.get("nodes"),
           "quote-circuit-target": q["target"], "set-or-string-circuit-heads": len(results["vartype"]["heads"]),
           "set-or-string-circuit-target": v["target"]}
    d = results["vartype"].get("distractor")
    if d:
        att = results["vartype"].get("distractor_attack") or {"prefix": next(r["prefix"] for r in d if r["prefix"])}
        out.update(distractor_claims(d, att["prefix"], att.get("attacked", "a")))
    return out


def claim_arguments(results: dict, scale: str) -> dict[str, dict]:
    """Chapter 05's claim arguments: ``{slug: {"ours": ..., "expect": ...}}`` for ``sc.claim(slug, **args[slug])``.

    Args:
        results: the study's ``results.json`` (``run.results``), loaded or recomputed.
        scale: the chapter's SCALE (the stored values are expected at ``"book"`` only).

    Returns:
        One entry per value of :func:`quote_claim_values` (None reads "not reached").
    """
    return reading_claim_arguments(quote_claim_values(results), results["claims"], scale)


def task_circuits(results: dict, task: str, names: dict[str, str]) -> pd.DataFrame:
    """One task's circuits in a ``prune_study`` (e.g. the frontier's), one row per model, at the study's first
    target: the node penalty its search chose, the bisected circuit (nodes, edges, test loss and accuracy, agreement
    with the full model on test) and the greedily cleaned one (nodes, edges, test loss and accuracy); None where a
    circuit was not reached. ``names``: ``{model id: row name}``, in row order (models without a row are left out).
    """
    t = str(float(results["targets"][0]))
    rows = {r["model"]: r for r in main_rows(results) if r["task"] == task}
    out = []
    for mid, name in names.items():
        r = rows.get(mid)
        if r is None:
            continue
        cell, cl = r["targets"].get(t), r.get("cleaned")
        out.append({"model": name, "k_coef": r["k_coef"], "nodes": cell and cell["nodes"],
                    "edges": cell and cell["edges"], "test loss": cell and r["test"]["loss"],
                    "test accuracy": cell and r["test"]["accuracy"],
                    "agreement": cell and r["faithfulness"]["agreement"], "cleaned nodes": cl and cl["nodes"],
                    "cleaned edges": cl and cl["edges"], "cleaned test loss": cl and cl["test"]["loss"],
                    "cleaned test accuracy": cl and cl["test"]["accuracy"]})
    return pd.DataFrame(out).set_index("model") if out else pd.DataFrame()
