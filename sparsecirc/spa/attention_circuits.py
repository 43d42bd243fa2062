"""P2's circuit comparison (digest §6-§7): attribution patching on dense and attention-sparse models, one study.

The producer of ``kind: attention_circuits`` artifacts. Its config lists comparisons, each a dense model, its
post-trained sparse-attention partner and the prompt sets to patch (P1 tasks, the addition toy, induction)::

    python -m sparsecirc reproduce spa-attention-circuits --scale book

Per (comparison, prompt set, model) it records: the clean and corrupted metrics; EAP and EAP-IG scores of every
component edge; exact patching of every component edge on a subset of prompts and of a sample of attention edges,
with the rank correlations of EAP and EAP-IG against it; the explained-effect curves ranked by EAP-IG
(:func:`circuit_curves.curves`; for the gated model also with frozen gates); the smallest edges / heads /
attention edges reaching 0.9 and wall times. :func:`ratio_table` and :func:`summary` read the results.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.spa import circuit_curves as cc
from sparsecirc.spa.attention_edges import causal_pairs
from sparsecirc.spa.patching import (
    ComponentGraph,
    PatchPair,
    eap_scores,
    exact_scores,
    patched_metric,
    run_pair,
    spearman,
)

UNITS = cc.UNITS
IN_SAMPLE_UNITS = ("edges", "attention_edges")
SOLVED = 0.9  # a prompt set counts in the geometric means when both models get at least this share of it right


def prompt_set(model, name: str, spec: dict, n: int, seed: int, part: str = "eval") -> tuple[PatchPair, dict]:
    """The pairs of one prompt set: ``addition``, ``induction`` or a P1 task name. ``part="fit"`` gives the prompts
    edges are ranked on, ``"eval"`` disjoint ones the curves are measured on: a task's train and test splits,
    two halves of the addition test split, induction sequences from two seeds (none shared: checked)."""
    if part not in ("fit", "eval"):
        raise ValueError(f"part must be 'fit' or 'eval', not {part!r}")
    if name == "addition":
        return cc.addition_pairs(n, seed, part=part)
    if name == "induction":
        ind = spec.get("induction", {})
        args = (n, ind.get("length", 12), tuple(ind.get("vocab", (200, 2000))))
        pair, info = cc.induction_pairs(*args, seed if part == "fit" else seed + 1)
        if part == "eval":
            fit = {tuple(r) for r in cc.induction_pairs(*args, seed)[0].clean.tolist()}
            if any(tuple(r) in fit for r in pair.clean.tolist()):
                raise AssertionError("induction: an evaluation sequence is also a fitting sequence")
        return pair, {**info, "part": part}
    pair, info = cc.task_pairs(model, name, "train" if part == "fit" else "test", limit=n)
    return pair, {**info, "part": part}


@torch.no_grad()
def attention_exact(model, pair: PatchPair, graph: ComponentGraph, attn_scores: list[torch.Tensor], *,
                    prompts: int, per_prompt: int, seed: int) -> dict:
    """Exact patching of single attention edges on the first ``prompts`` prompts: per prompt the ``per_prompt``
    edges with the largest |score| and as many drawn at random among its causal pairs (query <= the scored
    position). Returns the EAP-IG scores and the exact effects, pooled."""
    g = torch.Generator().manual_seed(seed)
    est, exact = [], []
    for p in range(min(prompts, len(pair))):
        one = pair.prompt(p)
        runs = run_pair(model, one, graph)
        base = float(runs[0].metric[0])
        T = one.clean.shape[1]
        flat = torch.cat([a[p:p + 1].reshape(-1) for a in attn_scores])
        L, H = graph.n_layer, graph.n_head
        idx = torch.arange(flat.numel()).view(L, H, T, T)
        qpos = torch.arange(T).view(1, 1, T, 1).expand(L, H, T, T)
        kpos = torch.arange(T).view(1, 1, 1, T).expand(L, H, T, T)
        ok = (kpos <= qpos) & (qpos <= int(one.last[0]))
        cand = idx[ok]
        top = cand[flat[cand].abs().argsort(descending=True)[:per_prompt]]
        rnd = cand[torch.randperm(len(cand), generator=g)[:per_prompt]]
        for e in torch.unique(torch.cat([top, rnd])).tolist():
            keep = [torch.ones(1, H, T, T, dtype=torch.bool) for _ in range(L)]
            layer, rest = divmod(e, H * T * T)
            keep[layer].view(-1)[rest] = False
            exact.append(float(patched_metric(model, one, graph, keep_attn=keep, runs=runs)[0]) - base)
            est.append(float(flat[e]))
    return {"score": est, "exact": exact, "spearman": spearman(est, exact)}


def analyse(model, fit: PatchPair, ev: PatchPair, sspec: dict, seed: int) -> dict:
    """Everything the study records for one model on one prompt set. Scores (EAP, EAP-IG, exact patching and their
    correlations) on the fitting prompts ``fit``; the curves on the held-out prompts ``ev``, with edges and heads
    ranked by the fitting prompts' EAP-IG and attention edges by its scores pooled over positions relative to the
    scored position (:func:`circuit_curves.relative_attention_scores`). A control ranked on ``ev`` itself
    (``in_sample``: edges and attention edges) shows how much fitting on the evaluated prompts would flatter."""
    graph = ComponentGraph(model.cfg, qkv=True)
    out = {"n_edges": graph.n_edges, "seconds": {}}
    t = time.time()
    eap, _ = eap_scores(model, fit, graph, method="eap")
    out["seconds"]["eap"] = round(time.time() - t, 2)
    t = time.time()
    ig, ig_attn = eap_scores(model, fit, graph, method="eap-ig", steps=sspec["ig_steps"])
    out["seconds"]["eap_ig"] = round(time.time() - t, 2)
    sub = fit.subset(torch.arange(min(sspec["exact_prompts"], len(fit))))
    t = time.time()
    ex = exact_scores(model, sub, graph)
    out["seconds"]["exact"] = round(time.time() - t, 2)
    v = graph.valid
    out["spearman"] = {"eap": spearman(eap[v], ex[v]), "eap_ig": spearman(ig[v], ex[v])}
    out["scores"] = {"edge_names": graph.edge_names(), "eap": eap[v].tolist(), "eap_ig": ig[v].tolist(),
                     "exact": ex[v].tolist()}
    out["attention_exact"] = attention_exact(model, fit, graph, ig_attn, prompts=sspec["attn_exact_prompts"],
                                             per_prompt=sspec["attn_exact_per_prompt"], seed=seed)
    t = time.time()
    held = cc.attention_scores_at(cc.relative_attention_scores(ig_attn, fit.last), ev.last, ev.clean.shape[1])
    out["curves"] = {"recompute": cc.curves(model, ev, graph, ig, held, points=sspec["points"])}
    if model.cfg.attn_gate:
        out["curves"]["freeze"] = cc.curves(model, ev, graph, ig, held, gate="freeze", points=sspec["points"])
    out["seconds"]["curves"] = round(time.time() - t, 2)
    t = time.time()
    own, own_attn = eap_scores(model, ev, graph, method="eap-ig", steps=sspec["ig_steps"])
    out["in_sample"] = cc.curves(model, ev, graph, own, own_attn, points=sspec["points"], units=IN_SAMPLE_UNITS)
    out["seconds"]["in_sample"] = round(time.time() - t, 2)
    out["accuracy"] = float((run_pair(model, ev, graph)[0].metric > 0).float().mean())
    out["smallest"] = {u: cc.smallest_k(out["curves"]["recompute"][u]) for u in UNITS}
    out["smallest_in_sample"] = {u: cc.smallest_k(out["in_sample"][u]) for u in IN_SAMPLE_UNITS}
    return out


def produce_attention_circuits(ctx: BuildContext) -> None:
    """Run every comparison of the config and write ``results.json`` and the manifest."""
    spec, sspec = ctx.spec, ctx.overrides()
    seed = sspec.get("seed", 0)
    t0 = time.time()
    results = {"comparisons": {}, "level": cc.LEVEL, "settings": sspec}
    for name, comp in spec["comparisons"].items():
        models = {role: ctx.dep(comp[role]).model.eval() for role in ("dense", "sparse")}
        sets = sspec.get("prompt_sets", {}).get(name, comp["prompt_sets"])
        entry = {"dense": comp["dense"], "sparse": comp["sparse"], "sets": {}}
        for ps in sets:
            entry["sets"][ps] = {}
            for role, m in models.items():
                torch.manual_seed(seed)
                fit, fit_info = prompt_set(m, ps, comp, sspec["n_prompts"], seed, part="fit")
                ev, info = prompt_set(m, ps, comp, sspec["n_prompts"], seed, part="eval")
                entry["sets"][ps][role] = {"info": info, "fit_info": fit_info, **analyse(m, fit, ev, sspec, seed)}
                if ctx.progress:
                    print(f"{name} / {ps} / {role}: smallest {entry['sets'][ps][role]['smallest']}", flush=True)
        results["comparisons"][name] = entry
    results["wall_time_s"] = round(time.time() - t0, 1)
    artifacts.write_json(ctx.folder / "results.json", results)
    artifacts.write_manifest(ctx.folder, ["results.json"], **ctx.manifest_info(
        kind="attention_circuits", seed=seed, config={"spec": spec}, wall_time_s=results["wall_time_s"]))


def _ratio(d, s) -> float | None:
    return None if d is None or s is None or s == 0 else d / s


def ratio_table(results: dict) -> pd.DataFrame:
    """One row per (comparison, prompt set): the smallest count reaching 0.9 per unit, dense and sparse, and the
    ratio dense / sparse; the models' accuracy on the clean prompts; the dense circuit's share of the component
    graph (a ratio k_dense / k_sparse cannot exceed the graph's size over k_sparse)."""
    rows = []
    for name, comp in results["comparisons"].items():
        for ps, r in comp["sets"].items():
            row = {"comparison": name, "prompts": ps, "accuracy dense": r["dense"]["accuracy"],
                   "accuracy sparse": r["sparse"]["accuracy"],
                   "both solve": min(r["dense"]["accuracy"], r["sparse"]["accuracy"]) >= SOLVED}
            for u in UNITS:
                d, s = r["dense"]["smallest"][u], r["sparse"]["smallest"][u]
                row[f"{u} dense"], row[f"{u} sparse"], row[f"{u} ratio"] = d, s, _ratio(d, s)
            d = r["dense"]["smallest"]["edges"]
            row["dense circuit / graph"] = None if d is None else d / r["dense"]["n_edges"]
            rows.append(row)
    return pd.DataFrame(rows)


def geomean(xs) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return float(np.exp(np.mean(np.log(xs)))) if xs else None


def summary(results: dict) -> dict:
    """Geometric-mean ratios per comparison and unit over the prompt sets both models solve (a set neither model
    solves has no circuit to find; those left out are listed), and the correlations of EAP / EAP-IG with exact
    patching (median over models and prompt sets; component edges and attention edges)."""
    tab = ratio_table(results)
    out = {"ratios": {}, "spearman": {}, "left_out": tab.loc[~tab["both solve"], "prompts"].tolist()}
    for name, part in tab[tab["both solve"]].groupby("comparison"):
        out["ratios"][name] = {u: geomean(part[f"{u} ratio"].tolist()) for u in UNITS}
    rho = {"eap": [], "eap_ig": [], "attention_eap_ig": []}
    for comp in results["comparisons"].values():
        for r in comp["sets"].values():
            for role in ("dense", "sparse"):
                rho["eap"].append(r[role]["spearman"]["eap"])
                rho["eap_ig"].append(r[role]["spearman"]["eap_ig"])
                rho["attention_eap_ig"].append(r[role]["attention_exact"]["spearman"])
    out["spearman"] = {k: float(np.nanmedian(v)) for k, v in rho.items()}
    return out


def kept_attention_edges(model, pair: PatchPair, prompt: int, *, steps: int = 5, level: float = cc.LEVEL) -> dict:
    """The attention-edge circuit of one prompt: its edges ranked by EAP-IG, the smallest k whose explained effect
    on this prompt reaches ``level`` (and stays), and those k edges as (layer, head, query, key, score) plus the
    graph [n_layer, T, T] (1 where any head keeps the edge), for drawing."""
    one = pair.subset([prompt])  # trimmed to this prompt's own length
    T = int(one.last[0]) + 1
    graph = ComponentGraph(model.cfg)
    _, attn = eap_scores(model, one, graph, method="eap-ig", steps=steps)
    runs = run_pair(model, one, graph)
    clean, corr = float(runs[0].metric[0]), float(runs[1].metric[0])
    possible = graph.n_layer * graph.n_head * causal_pairs(T)
    ks = cc.grid(possible, 40)
    eff = [cc.explained_effect(patched_metric(model, one, graph, keep_attn=cc.top_attention_edges(attn, k),
                                              runs=runs), clean, corr) for k in ks]
    k = cc.smallest_k({"k": ks, "effect": eff}, level)
    keep = cc.top_attention_edges(attn, k if k is not None else possible)
    edges = [(layer, int(h), int(q), int(kk), float(attn[layer][0, h, q, kk]))
             for layer in range(graph.n_layer) for h, q, kk in torch.nonzero(keep[layer][0]).tolist()]
    g = np.stack([keep[layer][0].any(0).float().numpy() for layer in range(graph.n_layer)])
    return {"k": k, "possible": possible, "edges": edges, "graph": g, "curve": {"k": ks, "effect": eff},
            "tokens": one.clean[0].tolist()}


def correlation_table(results: dict) -> pd.DataFrame:
    """Spearman's rho of EAP and EAP-IG against exact patching, per (comparison, prompt set, model): component
    edges (every edge, on the exact-patching prompts) and the attention-edge sample (EAP-IG)."""
    rows = []
    for name, comp in results["comparisons"].items():
        for ps, r in comp["sets"].items():
            for role in ("dense", "sparse"):
                x = r[role]
                rows.append({"comparison": name, "prompts": ps, "model": role, "rho EAP": x["spearman"]["eap"],
                             "rho EAP-IG": x["spearman"]["eap_ig"],
                             "rho EAP-IG, attention edges": x["attention_exact"]["spearman"],
                             "attention edges patched": len(x["attention_exact"]["exact"])})
    return pd.DataFrame(rows)


def gate_modes_table(results: dict) -> pd.DataFrame:
    """The gated models' smallest counts reaching the 0.9 line with gates recomputed in the patched run and with
    the clean run's gates frozen."""
    rows = []
    for name, comp in results["comparisons"].items():
        for ps, r in comp["sets"].items():
            cur = r["sparse"]["curves"]
            row = {"comparison": name, "prompts": ps}
            for mode in ("recompute", "freeze"):
                for u in UNITS:
                    row[f"{u} ({mode})"] = cc.smallest_k(cur[mode][u]) if mode in cur else None
            rows.append(row)
    return pd.DataFrame(rows)


def in_sample_table(results: dict) -> pd.DataFrame:
    """Held-out against in-sample circuit sizes per (comparison, prompt set, model): the smallest count reaching
    0.9 on the evaluation prompts when edges are ranked on the fitting prompts (the study's numbers) and when ranked
    on the evaluation prompts themselves (the control: what fitting where one measures would report)."""
    rows = []
    for name, comp in results["comparisons"].items():
        for ps, r in comp["sets"].items():
            for role in ("dense", "sparse"):
                x = r[role]
                row = {"comparison": name, "prompts": ps, "model": role}
                for u in IN_SAMPLE_UNITS:
                    row[f"{u}, held-out"] = x["smallest"][u]
                    row[f"{u}, in-sample"] = x.get("smallest_in_sample", {}).get(u)
                rows.append(row)
    return pd.DataFrame(rows)


def parse_head(name: str) -> tuple[int, int]:
    """``"L1H7"`` (the curves' head names) -> (1, 7)."""
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def top_head(set_results: dict, role: str = "sparse", min_layer: int = 1) -> str:
    """The head EAP-IG ranks first among layers >= ``min_layer`` for one model on one prompt set (an induction
    head needs a layer before it to find the previous token)."""
    order = set_results[role]["curves"]["recompute"]["heads"]["order"]
    return next(h for h in order if parse_head(h)[0] >= min_layer)


@torch.no_grad()
def induction_keys_per_query(model, pair: PatchPair, head: str, copied_from: int) -> dict:
    """Keys one head reads per query over the second copy of induction prompts (positions ``copied_from`` on):
    open gates for a gated model, every causal key for a dense one; and the share of those queries whose
    open keys include the induction target (the token after the current token's first occurrence)."""
    layer, h = parse_head(head)
    graph = ComponentGraph(model.cfg)
    run = run_pair(model, pair, graph)[0]
    w = run.w[layer][:, h]  # [n, T, T] softmax weight x gate
    n, T, _ = w.shape
    q = torch.arange(copied_from, T)
    open_ = (w[:, q] > 0) if model.cfg.attn_gate else torch.ones(n, len(q), T, dtype=torch.bool).tril(copied_from)
    target = q - copied_from + 1  # the first copy's next token
    hit = open_[:, torch.arange(len(q)), target]
    return {"head": head, "keys_per_query": float(open_.sum(-1).float().mean()),
            "target_open": float(hit.float().mean()),
            "weight_on_target": float(w[:, q, :][:, torch.arange(len(q)), target].mean())}


def kept_edges_table(circuits: dict, tokens: list[str]) -> pd.DataFrame:
    """The kept attention edges of :func:`kept_attention_edges` per model: layer, head, query and key positions
    with their tokens, and the EAP-IG score."""
    rows = [{"model": name, "layer": layer, "head": h, "query": q, "query token": tokens[q], "key": k,
             "key token": tokens[k], "EAP-IG score": s}
            for name, c in circuits.items() for layer, h, q, k, s in c["edges"]]
    return pd.DataFrame(rows).round(3)


def curve_ends_ok(results: dict, atol: float = 1e-3) -> bool:
    """Consistency of every stored curve, what patching must give whatever the model (a broken patch or metric
    fails it): explained effect 0 with no component edge kept (the corrupted run), 1 with every component edge kept
    and 1 with every head kept. (With no head or no attention edge kept the MLPs still read the clean tokens at
    their own positions, so those ends need not be 0.)"""
    for comp in results["comparisons"].values():
        for r in comp["sets"].values():
            for role in ("dense", "sparse"):
                for curves in r[role]["curves"].values():
                    e, h = curves["edges"], curves["heads"]
                    if e["k"][0] != 0 or abs(e["effect"][0]) > atol or e["k"][-1] != r[role]["n_edges"]:
                        return False
                    if abs(e["effect"][-1] - 1) > atol or abs(h["effect"][-1] - 1) > atol:
                        return False
    return True
