"""The bracket-depth study (P1 §3.2.2, Fig. 5 and 8; chapter 06).

Prune ``bracket_counting`` on the weight-sparse model, look among the circuit's attention channels for the node
that carries list depth, and run the two attacks P1 derives from the circuit (:mod:`sparsecirc.wst.attacks`) on the
sparse model and on dense baselines, which P1 did not test. Stored in ``results.json`` with the claim values
chapter 06 checks (:func:`claim_values`).

Data versions: every model reads the task data and list prompts of its own data version (``cfg.data_version``;
a v2 list opens with two single ``[`` tokens, see :mod:`sparsecirc.wst.attacks`); :func:`list_pair`, which takes no
model, takes ``version`` (default ``"v1"``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.core.hooks import patch
from sparsecirc.core.model import GPT
from sparsecirc.data import heldout
from sparsecirc.data.tasks import (
    model_data_version,
    model_task,
    pad_batch,
    pair_logits,
    task_accuracy,
    task_loss,
    task_metrics,
)
from sparsecirc.data.versions import DEFAULT_VERSION
from sparsecirc.wst import attacks
from sparsecirc.wst.ablation import ablate, gates_from_nodes
from sparsecirc.wst.circuits import node_sites
from sparsecirc.wst.reading import claim_arguments as reading_claim_arguments
from sparsecirc.wst.reading import (
    is_registered,
    mean_values,
    node_label,
    prune_at_targets,
    save_circuit,
    short_name,
    study_model,
    writing_head,
)


def depth_candidates(circuit_nodes: dict[str, list[int]]) -> list[dict]:
    """The circuit's attention writes and v channels as candidates for the depth node. A v channel is read at
    the last position through the head's output (``hook_z``, same flat index): the attention-weighted average of
    that channel over the context, which is what the head writes."""
    out = []
    for hook, idx in sorted(circuit_nodes.items()):
        if hook.endswith("hook_attn_out") or hook.endswith("attn.hook_v"):
            read = hook.replace("hook_v", "hook_z")
            out += [{"site": [hook, int(i)], "read": [read, int(i)]} for i in idx]
    return out


def score_depth_candidates(sweep: dict, candidates: list[dict]) -> list[dict]:
    """Rank candidates by how well their nested-list activation falls with context length (log-log R² of the
    power-law fit, counted only when the exponent is negative and the sign never changes) times how well they
    separate nested from flat lists (mean |nested - flat| over lengths, relative to the best candidate).

    Returns the candidates with "exponent", "r2", "separation", "score", best first; if no candidate falls,
    the score is the relative separation alone (and "falls" is False for all).
    """
    x = np.asarray(sweep["n_tokens"])
    nested, flat = np.asarray(sweep["nested"]["nodes"]), np.asarray(sweep["flat"]["nodes"])  # [L, k]
    sep = np.abs(nested - flat).mean(0)  # [k]
    rows = []
    for j, cand in enumerate(candidates):
        y = nested[:, j]
        one_sign = bool(np.all(y > 0) or np.all(y < 0))
        k, r2 = (attacks.fit_power_law(x, y)[0], attacks.power_law_r2(x, y)) if one_sign else (float("nan"), 0.0)
        rows.append({**cand, "exponent": k, "r2": r2, "separation": float(sep[j]), "falls": one_sign and k < 0,
                     "nested_first": float(y[0]), "nested_last": float(y[-1]),
                     "flat_first": float(flat[0, j]), "flat_last": float(flat[-1, j])})
    top = max(sep.max(), 1e-12)
    any_falls = any(r["falls"] for r in rows)
    for r in rows:
        rel = r["separation"] / top
        r["score"] = (r["r2"] * rel if r["falls"] else 0.0) if any_falls else rel
    return sorted(rows, key=lambda r: -r["score"])


def opposite_node(ranked: list[dict], depth: dict) -> dict | None:
    """The candidate that separates the list kinds most strongly the other way round (higher on flat lists when
    the depth node is higher on nested ones): the other half of a two-sided read-out, if there is one."""
    sign = np.sign(depth["nested_first"] - depth["flat_first"])
    other = [r for r in ranked if np.sign(r["nested_first"] - r["flat_first"]) == -sign]
    return dict(max(other, key=lambda r: r["separation"])) if other else None


def patched_p_nested(model: GPT, examples, read: tuple[str, int], value: float) -> float:
    """Mean p(``]]``) with the depth read set to ``value`` at each prompt's last position only."""
    _, last = pad_batch([e.prompt_ids for e in examples])
    hook, idx = read

    def fn(x):
        x = x.clone(memory_format=torch.contiguous_format)  # z arrives as a transposed (non-contiguous) view
        flat = x.view(x.shape[0], x.shape[1], -1)  # [b, pos, n_head*d_head] view of z (or [b, pos, d_model])
        flat[torch.arange(len(last)), last, idx] = value
        return x
    with patch(model, {hook: fn}):
        return float(attacks.measure(model, examples, batch_size=len(examples))["p_nested"].mean())


def interventions(model: GPT, depth: dict, means: dict, test_ds, n_prompts: int, length: int, seed: int) -> dict:
    """Mean-ablate the depth node (task loss on the test split should rise), and patch its last-position read with
    the other list kind's mean (p(``]]``) should follow the patched value). ``test_ds`` and the list prompts are in
    the model's data version."""
    site = depth["site"]
    gates = {site[0]: gates_from_nodes(node_sites(model), {site[0]: [site[1]]}, invert=True)[site[0]]}
    full = pair_logits(model, test_ds)
    with ablate(model, gates, means):
        abl = pair_logits(model, test_ds)
    bases = attacks.draw_bases(n_prompts, [length], seed, n_ctx=model.cfg.n_ctx, version=model_data_version(model))
    nested = [attacks.list_example(b, length, True, max_tokens=model.cfg.n_ctx) for b in bases]
    flat = [attacks.list_example(b, length, False, max_tokens=model.cfg.n_ctx) for b in bases]
    read = tuple(depth["read"])
    mn, mf = attacks.measure(model, nested, read), attacks.measure(model, flat, read)
    return {"ablate": {"full_loss": float(task_loss(full).mean()), "full_accuracy": float(task_accuracy(full).mean()),
                       "ablated_loss": float(task_loss(abl).mean()),
                       "ablated_accuracy": float(task_accuracy(abl).mean())},
            "patch": {"length": length, "nested_value": float(mn["node"].mean()),
                      "flat_value": float(mf["node"].mean()),
                      "flat_p_nested": float(mf["p_nested"].mean()),
                      "flat_p_nested_patched": patched_p_nested(model, flat, read, float(mn["node"].mean())),
                      "nested_p_nested": float(mn["p_nested"].mean()),
                      "nested_p_nested_patched": patched_p_nested(model, nested, read, float(mf["node"].mean()))}}


def model_attacks(model, sweep_kw: dict, distractors: dict, n_distractor: int, seed: int) -> dict:
    sw = attacks.dilution_sweep(model, **sweep_kw)
    return {"dilution": sw,
            "failure_length": {k: attacks.failure_length(sw["lengths"], sw[k]["p_correct"])
                               for k in ("nested", "flat")},
            "distractor": {name: attacks.distractor_effect(model, n_distractor, seed, comment=c)
                           for name, c in distractors.items()}}


def bracket_study(ctx: BuildContext, sspec: dict, pcfg: PruneConfig, seed: int) -> tuple[dict, list[str]]:
    """Prune the bracket task, find the depth node, run the attacks on every model: (results, circuit files).
    Each model reads the task data and list prompts of its own data version."""
    spec = ctx.spec
    task = spec["task"]
    n_prompts, n_distractor = sspec["n_prompts"], sspec["distractor_prompts"]
    lengths = sspec.get("lengths")  # None: 1 .. the longest list that fits the context
    sparse_id = spec["model"]
    others = list(spec.get("compare_models", []))
    skipped = [m for m in spec.get("optional_models", []) if not is_registered(m)]
    others += [m for m in spec.get("optional_models", []) if m not in skipped]
    model, cfg, val = study_model(ctx, sparse_id)
    means = mean_values(model, cfg, val, pcfg)
    results = {"task": task, "model": sparse_id, "compare_models": others, "skipped_models": skipped, "models": {}}
    targets = [float(t) for t in sspec.get("targets", spec["targets"])]
    results["prune"], circuit = prune_at_targets(model, means, task, pcfg, targets)
    files = save_circuit(ctx.folder, circuit, sparse_id, task)
    # depth node: scan the circuit's attention channels along the dilution sweep
    cands = depth_candidates(circuit.nodes if circuit is not None else {})
    results["depth_candidates_from"] = "circuit" if cands else "model"
    if not cands:  # no circuit, or one without attention channels (barely trained ci models): scan them all
        cands = depth_candidates({h: list(range(d)) for h, d in node_sites(model, ("v", "attn_write")).items()})
    scan = attacks.dilution_sweep(model, lengths, n_prompts, seed, nodes=[c["read"] for c in cands])
    ranked = score_depth_candidates(scan, cands)
    depth = dict(ranked[0])
    depth["head"] = list(writing_head(model, *depth["read"]))
    flat_node = opposite_node(ranked, depth)
    if flat_node is not None:
        flat_node["head"] = list(writing_head(model, *flat_node["read"]))
    results.update(depth_candidates=ranked, depth_node=depth, flat_node=flat_node)
    kw = {"lengths": scan["lengths"], "n_prompts": n_prompts, "seed": seed}
    for mid in [sparse_id] + others:
        m = model if mid == sparse_id else ctx.dep(mid).model
        extra = {"node": depth["read"], "head": depth["head"]} if mid == sparse_id else {}
        results["models"][mid] = {"task_metrics": task_metrics(m, task), **model_attacks(
            m, {**kw, **extra}, spec["distractor_comments"], n_distractor, seed)}
    if flat_node is not None:  # the same sweep read through the node that is higher on flat lists
        results["models"][sparse_id]["dilution_flat_node"] = attacks.dilution_sweep(
            model, **kw, node=flat_node["read"], head=flat_node["head"])
    results["depth_fit"] = depth_fit(results["models"][sparse_id]["dilution"])
    results["interventions"] = interventions(model, depth, means, model_task(model, task, "test"), n_prompts,
                                             min(8, max(scan["lengths"])), seed)
    results["claims"] = claim_values(results)
    return results, files


def attacks_study(ctx: BuildContext, sspec: dict, pcfg: PruneConfig, seed: int) -> tuple[dict, list[str]]:
    """``study: bracket_attacks``: the dilution sweep and the distractor attack on whole models, no circuit (for
    models that have not learned the task well enough to prune: the question is then whether they track depth at
    all). Each model reads the task data, held-out prompts and list prompts of its own data version. Results have
    the layout of :func:`bracket_study`'s ``models`` part (``distractor_table`` and ``case_plots.dilution``'s
    accuracy panel read it), plus each model's held-out accuracy; ``pcfg`` is unused."""
    spec = ctx.spec
    task = spec["task"]
    models = [spec["model"]] + list(spec.get("compare_models", []))
    kw = {"lengths": sspec.get("lengths"), "n_prompts": sspec["n_prompts"], "seed": seed}
    results = {"task": task, "model": models[0], "compare_models": models[1:], "models": {}}
    for mid in models:
        m = ctx.dep(mid).model.eval()
        r = heldout.evaluate_heldout(m, task)  # the test split's metrics beside the held-out set's
        results["models"][mid] = {"task_metrics": r["test"], "heldout": r["heldout"],
                                  **model_attacks(m, kw, spec["distractor_comments"], sspec["distractor_prompts"],
                                                  seed)}
    return results, []


def depth_fit(sw: dict) -> dict:
    fit = {}
    for xname, x in (("tokens", sw["n_tokens"]), ("elements", sw["lengths"])):
        k, a = attacks.fit_power_law(x, sw["nested"]["node"])
        fit[xname] = {"exponent": k, "prefactor": a, "r2": attacks.power_law_r2(x, sw["nested"]["node"])}
    k, a = attacks.fit_power_law(sw["n_tokens"], sw["nested"]["attn_opening"])
    fit["attention_to_opening"] = {"exponent": k, "prefactor": a}
    return fit


def failure_text(length: float | None, longest: int) -> str:
    """A failure length for a claim line: ``"31 elements"`` or ``"none up to 46 elements"``."""
    def el(n):
        return f"{n:.0f} element" + ("" if round(n) == 1 else "s")
    return f"none up to {el(longest)}" if length is None else el(length)


def claim_values(results: dict) -> dict:
    """The values chapter 06's claim lines print, computed once from ``results`` (the chapter recomputes them
    with this function and checks them against the stored copy at book scale)."""
    sparse = results["models"][results["model"]]
    dense = [results["models"][m] for m in results["compare_models"]]
    longest = max(sparse["dilution"]["lengths"])
    fl = sparse["failure_length"]
    p = results["prune"]
    return {"bracket-circuit-edges": p.get("edges"), "bracket-circuit-nodes": p.get("nodes"),
            "dilution-failure-length": f"nested {failure_text(fl['nested'], longest)}; "
                                       f"flat {failure_text(fl['flat'], longest)}",
            "dilution-breaks-nested-lists": fl["nested"] is not None,
            "dilution-depth-exponent": results["depth_fit"]["tokens"]["exponent"],
            "dilution-transfers-to-dense": "; ".join(
                f"{short_name(m)}: " + ("no" if d["failure_length"]["nested"] is None
                                   else f"yes at {failure_text(d['failure_length']['nested'], longest)}")
                for m, d in zip(results["compare_models"], dense)) or "no dense model",
            "distractor-attack": sparse["distractor"]["p1"]["flips_majority"],
            "distractor-attack-double-bracket": sparse["distractor"]["double"]["flips_majority"]}


def claim_arguments(results: dict, scale: str) -> dict[str, dict]:
    """Chapter 06's claim arguments: ``{slug: {"ours": ..., "expect": ...}}`` for ``sc.claim(slug, **args[slug])``.

    Args:
        results: the study's ``results.json`` (``run.results``), loaded or recomputed.
        scale: the chapter's SCALE (the stored values are expected at ``"book"`` only).

    Returns:
        One entry per value of :func:`claim_values` (None reads "not reached").
    """
    return reading_claim_arguments(claim_values(results), results["claims"], scale)


def candidate_table(results: dict, n: int = 6) -> pd.DataFrame:
    """The best ``n`` depth-node candidates of the study (ranked by score), one row each.

    Args:
        results: the study's results (``depth_candidates`` from :func:`score_depth_candidates`).
        n: how many rows.

    Returns:
        DataFrame with columns node, separation, nested_first, nested_last, flat_first, flat_last, exponent, r2,
        score.
    """
    cands = pd.DataFrame(results["depth_candidates"])
    cands["node"] = [node_label(*site) for site in cands["site"]]
    cols = ["node", "separation", "nested_first", "nested_last", "flat_first", "flat_last", "exponent", "r2", "score"]
    return cands[cols].head(n)


def list_pair(n_ctx: int, length: int, seed: int, version: str = DEFAULT_VERSION) -> list:
    """One nested and one flat list prompt of ``length`` elements on the same drawn base (for position heatmaps).

    Args:
        n_ctx: the model's context; the prompts fit in it.
        length: list elements.
        seed: the base's seed.
        version: the data version (default v1; pass the model's, ``tasks.model_data_version(model)``). In v1 the
            two prompts have the same token length; in v2 the nested one is one token longer (``[[`` is two).

    Returns:
        ``[nested example, flat example]`` (:class:`~sparsecirc.data.tasks.Example`).
    """
    base = attacks.draw_bases(1, [length], seed, n_ctx=n_ctx, version=version)[0]
    return [attacks.list_example(base, length, nested, max_tokens=n_ctx) for nested in (True, False)]


def distractor_table(results: dict) -> pd.DataFrame:
    """The distractor attack on every model of the study: one row per (model, comment).

    Args:
        results: the study's results.

    Returns:
        DataFrame with columns model, comment, p(]]) control, p(]]) attack, rise, flip rate, majority predicts ]].
    """
    rows = []
    for m in [results["model"]] + list(results["compare_models"]):
        for d in results["models"][m]["distractor"].values():
            rows.append({"model": short_name(m), "comment": d["comment"], "p(]]) control": d["p_nested_control"],
                         "p(]]) attack": d["p_nested_attack"], "rise": d["rise"], "flip rate": d["flip_rate"],
                         "majority predicts ]]": d["flips_majority"]})
    return pd.DataFrame(rows)
