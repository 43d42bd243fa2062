"""Reading the converged circuit-size study (:mod:`sparsecirc.wst.prune_study`) for chapter 03: tables, claim values
and figures. Every function takes ``results.json`` dicts (one per pruning seed) and returns a DataFrame, a dict or a
Figure.

Rules, as in the earlier study: at a given budget, seed and target, a task enters a model comparison only when every
model's circuit reached the target with at least one edge; empty circuits are listed and left out (log 0 is
undefined). Ratios are dense / sparse geometric means over those tasks.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sparsecirc.core.metrics import nonzero_table
from sparsecirc.data import task_audit

SIZE_KEYS = ("edges", "nodes", "edges_with_residual")


def main_rows(results: dict) -> list[dict]:
    """The rows of the ``main`` condition (not the controls)."""
    return [r for r in results["runs"] if r.get("condition", "main") == "main"]


def sizes(results: dict, budget: int, target: float, key: str = "edges") -> dict[str, dict[str, int | None]]:
    """{task: {model: size at ``budget`` steps and ``target``, None if not reached}}, ``key`` in :data:`SIZE_KEYS`."""
    out: dict[str, dict] = {t: {} for t in results["tasks"]}
    for r in main_rows(results):
        cell = r["budgets"].get(str(budget), {}).get(str(float(target)))
        out[r["task"]][r["model"]] = None if cell is None else cell[key]
    return out


def usable(results: dict, budget: int, target: float, key: str = "edges") -> tuple[dict, list[str]]:
    """(tasks every model reached with a non-empty circuit: {task: {model: size}}, tasks left out as empty)."""
    table = sizes(results, budget, target, key)
    edges = sizes(results, budget, target, "edges")
    reached = {t: row for t, row in table.items() if row and all(v is not None for v in row.values())}
    empty = sorted(t for t in reached if any(v == 0 for v in edges[t].values()))
    return {t: row for t, row in reached.items() if t not in empty}, empty


def geomean(values) -> float | None:
    vals = [float(v) for v in values]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def ratio(results: dict, sparse: str, dense: str, budget: int, target: float, key: str = "edges") -> float | None:
    """Dense / sparse geometric-mean ``key`` over the usable tasks (None if no task is usable)."""
    ok, _ = usable(results, budget, target, key)
    if not ok:
        return None
    return geomean([row[dense] for row in ok.values()]) / geomean([row[sparse] for row in ok.values()])


def budget_table(by_seed: dict[int, dict], sparse: str, dense: str, target: float) -> pd.DataFrame:
    """One row per (mask budget, pruning seed): tasks used and left out, geometric-mean edges of each model, and the
    dense / sparse ratio of edges, nodes and edges with residual paths."""
    rows = []
    for seed, res in by_seed.items():
        for b in res["budgets"]:
            ok, empty = usable(res, b, target)
            rows.append({"budget (steps)": b, "seed": seed, "tasks": len(ok), "empty left out": len(empty),
                         "sparse edges": geomean([r[sparse] for r in ok.values()]),
                         "dense edges": geomean([r[dense] for r in ok.values()]),
                         "ratio (edges)": ratio(res, sparse, dense, b, target),
                         "ratio (nodes)": ratio(res, sparse, dense, b, target, "nodes"),
                         "ratio (edges + residual)": ratio(res, sparse, dense, b, target, "edges_with_residual")})
    return pd.DataFrame(rows).set_index(["budget (steps)", "seed"]).sort_index()


def headline(by_seed: dict[int, dict], sparse: str, dense: str, target: float) -> dict:
    """The numbers chapter 03 claims, at the **headline budget**, the largest budget every pruning seed was built
    to: per-seed ratios (edges, nodes) and their mean over seeds, the geometric-mean edges of each model (mean over
    seeds), a 5-95 % band of per-task ratios pooled over tasks and seeds, and the tasks used and left out. The
    convergence check compares the two largest budgets of the study (``previous budget`` and ``largest budget``)
    over the seeds built to both (``convergence seeds``): ``converged change`` is the relative change of the mean
    edge ratio, ``largest circuit move`` the largest factor by which one circuit's edges changed (the mean ratio
    can hold still while single circuits move)."""
    budget = min(max(r["budgets"]) for r in by_seed.values())
    table = budget_table(by_seed, sparse, dense, target)
    at = table.xs(budget, level="budget (steps)")
    per_task = []
    for res in by_seed.values():
        ok, _ = usable(res, budget, target)
        per_task += [row[dense] / row[sparse] for row in ok.values()]
    budgets = sorted(table.index.get_level_values(0).unique())
    change, moves, conv_seeds = None, [], []
    if len(budgets) >= 2:  # over the seeds built to both of the two largest budgets
        top = table.xs(budgets[-1], level="budget (steps)")["ratio (edges)"]
        prev = table.xs(budgets[-2], level="budget (steps)")["ratio (edges)"]
        conv_seeds = sorted(int(s) for s in top.index if s in prev.index)
        a, b = prev.loc[conv_seeds].mean(), top.loc[conv_seeds].mean()
        change = None if pd.isna(a) or pd.isna(b) else abs(b - a) / a
        for seed in conv_seeds:  # per (seed, model, task): factor between the circuit's edges at those budgets
            a_, b_ = sizes(by_seed[seed], budgets[-2], target), sizes(by_seed[seed], budgets[-1], target)
            moves += [max(a_[t][m], b_[t][m]) / min(a_[t][m], b_[t][m]) for t in a_ for m in a_[t]
                      if a_[t][m] and b_[t].get(m)]
    first_ok, first_empty = usable(next(iter(by_seed.values())), budget, target)
    return {"budget": budget, "seeds": sorted(int(s) for s in at.index), "ratio": _mean(at["ratio (edges)"]),
            "ratio per seed": {int(s): _num(v) for s, v in at["ratio (edges)"].items()},
            "ratio nodes": _mean(at["ratio (nodes)"]), "ratio with residual": _mean(at["ratio (edges + residual)"]),
            "sparse edges": _mean(at["sparse edges"]), "dense edges": _mean(at["dense edges"]),
            "band": (float(np.percentile(per_task, 5)), float(np.percentile(per_task, 95))) if per_task else None,
            "converged change": change, "previous budget": budgets[-2] if len(budgets) >= 2 else None,
            "largest budget": budgets[-1], "convergence seeds": conv_seeds,
            "largest circuit move": max(moves) if moves else None,
            "tasks": sorted(first_ok), "empty": first_empty}


def collapsed_runs(by_seed: dict[int, dict], threshold: float = 0.5) -> list[dict]:
    """Main runs whose mask collapsed (the sparsity penalty won and the mask answers near chance), with what was done.

    Rows built under the study's collapse rule (``prune_study.COLLAPSE``) carry ``collapse``: a collapsed run was
    rerun once with a smaller ``k_coef`` and is listed with its first and final batch loss and whether it is still
    collapsed. Older rows without it are listed when their mean batch task loss over the last 10 % of steps is at
    or above ``threshold`` (chance for two candidates is ln 2). Listed, not removed: the headline rule does not
    change."""
    out = []
    for seed, res in by_seed.items():
        for r in main_rows(res):
            col = r.get("collapse")
            if col is None and _end_loss(r) < threshold or col is not None and not col.get("rerun"):
                continue
            row = {"seed": seed, "model": r["model"], "task": r["task"], "k_coef": r.get("k_coef"),
                   "edges": (_final(r, res["targets"][0]) or {}).get("edges")}
            if col is None:
                row.update({"final batch loss": _end_loss(r), "rerun": False, "still collapsed": True})
            else:
                row.update({"first batch loss": col["first_final_task_loss"], "final batch loss":
                            col["final_task_loss"], "rerun": True, "still collapsed": col["still_collapsed"]})
            out.append(row)
    return out


def _end_loss(row: dict) -> float:
    """Mean batch task loss of a run over the last 10 % of its logged steps."""
    loss = row["trajectory"]["task_loss"]
    return float(np.mean(loss[-max(1, len(loss) // 10):]))


def _num(v):
    return None if v is None or pd.isna(v) else float(v)


def _mean(series: pd.Series) -> float | None:
    vals = [float(v) for v in series if v is not None and not pd.isna(v)]
    return float(np.mean(vals)) if vals else None


def convergence_table(results: dict) -> pd.DataFrame:
    """Per job: its k_coef, steps run, the step the plateau rule was met (None: not met), kept nodes at the end and
    how many of them sit at the +1 clamp of tau (tied: the tie-break orders them), the final window's mean task
    loss, and seconds."""
    rows = []
    for r in results["runs"]:
        tr = r["trajectory"]
        rows.append({"condition": r.get("condition", "main"), "model": r["model"], "task": r["task"],
                     "k_coef": r.get("k_coef"), "steps": r["steps_run"], "plateau at": r["converged_at"],
                     "kept at end": tr["kept"][-1], "of which at the +1 clamp": r.get("kept_at_clamp"),
                     "task loss (last 10 %)": _end_loss(r), "seconds": r["seconds"]})
    return pd.DataFrame(rows).set_index(["condition", "model", "task"])


def faithfulness_frame(results: dict) -> pd.DataFrame:
    """Per headline circuit, on test prompts: full-model loss, circuit loss before and after calibration, the
    calibration's scale and largest |bias|, agreement with the full model, KL(full || circuit), and whether the
    circuit beats its own model (flagged)."""
    rows = []
    for r in main_rows(results):
        f = r.get("faithfulness")
        if not f:
            continue
        rows.append({"model": r["model"], "task": r["task"], "full loss": f["full"]["loss"],
                     "circuit loss (raw)": f["uncalibrated"]["loss"], "circuit loss": f["calibrated"]["loss"],
                     "circuit acc": f["calibrated"]["accuracy"], "scale": f["scale"], "|bias| max": f["bias"],
                     "agreement": f["agreement"], "KL(full||circuit)": f["kl"], "beats full": f["beats_full"]})
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def inverse_frame(results: dict) -> pd.DataFrame:
    """Per non-empty headline circuit, on test prompts: task loss and accuracy with only the circuit ablated (inverse
    pruning, P1 Fig. 32) and with random node sets of the same size and kinds ablated instead (mean over draws).
    Empty circuits are left out: ablating nothing measures the full model."""
    rows = [{"model": r["model"], "task": r["task"],
             "nodes": sum(len(v) for v in r.get("circuit", {}).get("nodes", {}).values()),
             "inverse loss": r["inverse"]["loss"], "inverse acc": r["inverse"]["accuracy"],
             "random-node loss": r.get("random_inverse", {}).get("loss"),
             "random-node acc": r.get("random_inverse", {}).get("accuracy")}
            for r in main_rows(results) if "inverse" in r and r.get("circuit", {}).get("nodes")]
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def inverse_summary(results: dict, model: str) -> dict:
    """Mean inverse-pruning loss / accuracy of ``model``'s circuits and of their random-node controls, and how many
    circuits hurt the task more than random nodes of the same size (``beats random``: higher inverse loss)."""
    fr = inverse_frame(results)
    if not len(fr) or model not in fr.index.get_level_values("model"):
        return {"inverse loss": "no circuit", "random loss": "no circuit", "beats random": 0, "circuits": 0}
    m = fr.xs(model, level="model")
    out = {"inverse loss": float(m["inverse loss"].mean()), "inverse acc": float(m["inverse acc"].mean()),
           "random loss": "not measured", "random acc": "not measured", "beats random": 0, "circuits": len(m)}
    rnd = m.dropna(subset=["random-node loss"])
    if len(rnd):  # studies built without random_draws have no random-node rows
        out.update({"random loss": float(rnd["random-node loss"].mean()),
                    "random acc": float(rnd["random-node acc"].mean()),
                    "beats random": int((rnd["inverse loss"] > rnd["random-node loss"]).sum())})
    return out


def search_frame(results: dict) -> pd.DataFrame:
    """The lr x k_coef search per (model, task): one column per point tried (``"lr / k_coef"``, in the order the
    search ran them), nodes of the circuit bisected on the validation pairs (NaN: target not reached), and the
    chosen point. Empty if the study ran without a search."""
    rows = []
    for r in main_rows(results):
        found = r.get("search") or {}
        if not found.get("grid"):
            continue
        row = {"model": r["model"], "task": r["task"]}
        for g in found["grid"]:
            row[f"{g['lr']:g} / {g['k_coef']:g}"] = g["nodes"]
        row["chosen"] = f"{found['lr']:g} / {found['k_coef']:g}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def _final_view(res: dict, target: float, cell) -> dict:
    """``res`` with each main row's circuit cells replaced by ``cell(row)`` under the budget key ``"final"`` (so the
    usable-task rule and :func:`ratio` apply to any alternative circuit of a row)."""
    t = str(float(target))
    return {**res, "runs": [{**r, "budgets": {"final": {t: cell(r)}}} for r in main_rows(res)]}


def _cleaned_view(res: dict, target: float) -> dict:
    """:func:`_final_view` of each main row's greedily cleaned circuit (None where the study ran no clean-up)."""
    return _final_view(res, target, lambda r: r.get("cleaned") and {k: r["cleaned"][k] for k in SIZE_KEYS})


def ranking_table(by_seed: dict[int, dict], sparse: str, dense: str, target: float) -> pd.DataFrame:
    """The headline ratio under each ranking of a trained mask's tied nodes: the study's own tie-break (the
    headline) and every alternative it bisected (``rankings``), at the largest budget, per seed and their mean,
    with the geometric-mean edges of each model (mean over seeds)."""
    t = str(float(target))
    kinds: dict[str, dict] = {}
    for seed, res in by_seed.items():
        rows = main_rows(res)
        own = rows[0].get("tiebreak", "overshoot") if rows else "overshoot"
        for kind in [own, *sorted({k for r in rows for k in r.get("rankings", {})})]:
            view = _final_view(res, target, lambda r, kind=kind: r["targets"].get(t) if kind == own
                               else r["rankings"].get(kind))
            ok, empty = usable(view, "final", target)
            label = f"{kind} (headline)" if kind == own else kind
            kinds.setdefault(label, {})[seed] = (ratio(view, sparse, dense, "final", target),
                                                 geomean([v[sparse] for v in ok.values()]) if ok else None,
                                                 geomean([v[dense] for v in ok.values()]) if ok else None, len(ok))
    out = []
    for label, per in kinds.items():
        out.append({"tie-break": label, **{f"ratio seed {s}": v[0] for s, v in per.items()},
                    "ratio (mean)": _mean(pd.Series([v[0] for v in per.values()])),
                    "sparse edges": _mean(pd.Series([v[1] for v in per.values()])),
                    "dense edges": _mean(pd.Series([v[2] for v in per.values()])),
                    "tasks": min(v[3] for v in per.values())})
    return pd.DataFrame(out).set_index("tie-break")


def task_shortcuts(results: dict, target: float) -> pd.DataFrame:
    """Per studied task: the accuracy of a reader that sees only the prompt's last token
    (:func:`sparsecirc.data.task_audit.last_token_baseline`, fitted on train, scored on test; 0.5 = no shortcut)
    beside each model's circuit edges at ``target`` as the runs ended. Where the last token alone decides, a tiny
    circuit (even an empty one: the embedding-unembedding path) can solve the task without the mechanism P1 names."""
    out: dict[str, dict] = {}
    for r in main_rows(results):
        row = out.setdefault(r["task"], {"last-token baseline": task_audit.last_token_baseline(r["task"])})
        row[f"{r['model']} edges"] = (_final(r, target) or {}).get("edges")
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("task")


def cleanup_table(by_seed: dict[int, dict], sparse: str, dense: str, target: float) -> pd.DataFrame:
    """The greedy clean-up (``prune.cleanup``), reported beside the bisected circuits it starts from, per seed at the
    largest budget: the dense / sparse edge ratio before and after, each model's geometric-mean edges and nodes
    before and after (over the tasks usable both ways), and the cleaned circuits' mean test loss per model. Empty
    if the study ran without the clean-up."""
    t = str(float(target))
    rows = []
    for seed, res in by_seed.items():
        if not any("cleaned" in r for r in main_rows(res)):
            continue
        before = _final_view(res, target, lambda r: r["targets"].get(t))
        after = _cleaned_view(res, target)
        ok_b, _ = usable(before, "final", target)
        ok_a, _ = usable(after, "final", target)
        both = sorted(set(ok_b) & set(ok_a))
        row = {"seed": seed, "tasks": len(both), "ratio (bisected)": ratio(before, sparse, dense, "final", target),
               "ratio (cleaned)": ratio(after, sparse, dense, "final", target)}
        cells = {key: (sizes(before, "final", target, key), sizes(after, "final", target, key))
                 for key in ("edges", "nodes")}
        for mid, name in ((sparse, "sparse"), (dense, "dense")):
            for key, (b, a) in cells.items():
                row[f"{name} {key}"] = geomean([b[x][mid] for x in both]) if both else None
                row[f"{name} {key} cleaned"] = geomean([a[x][mid] for x in both]) if both else None
            losses = [r["cleaned"]["test"]["loss"] for r in main_rows(res) if r["model"] == mid and "cleaned" in r]
            row[f"{name} cleaned test loss"] = float(np.mean(losses)) if losses else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed") if rows else pd.DataFrame()


def frontier_frame(by_seed: dict[int, dict], runs: dict, names: dict[str, str], target: float,
                   cleaned: bool = False) -> pd.DataFrame:
    """Capability against interpretability (P1 Fig. 3) from converged pruning studies of several models.

    Args:
        by_seed: {pruning seed: a ``prune_study`` results.json over the frontier's models}.
        runs: {model id: loaded run} (``.model``, ``.metrics["val_loss"]``).
        names: {model id: row name}, in row order.
        target: the task loss.
        cleaned: size the greedily cleaned circuits instead of the bisected ones (same usable-task rule).
    Returns:
        One row per model: ``d_model``, ``L0 (nonzero weights)``, ``val loss``, ``edges`` (geometric mean over the
        tasks every model reached with a non-empty circuit at the largest budget, mean over seeds), ``edges seed
        <s>`` per seed, and ``tasks`` (the smallest count of usable tasks over seeds).
    """
    per_seed, n_tasks = {}, []
    for seed, res in by_seed.items():
        ok, _ = usable(_cleaned_view(res, target), "final", target) if cleaned else \
            usable(res, max(res["budgets"]), target)
        n_tasks.append(len(ok))
        per_seed[seed] = {mid: geomean([row[mid] for row in ok.values()]) if ok else None for mid in names}
    rows = []
    for mid, name in names.items():
        vals = [per_seed[s][mid] for s in per_seed]
        rows.append({"model": name, "d_model": runs[mid].model.cfg.d_model,
                     "L0 (nonzero weights)": sum(r["nonzero"] for r in nonzero_table(runs[mid].model)),
                     "val loss": runs[mid].metrics["val_loss"],
                     "edges": _mean(pd.Series(vals)) if all(v is not None for v in vals) else None,
                     **{f"edges seed {s}": per_seed[s][mid] for s in per_seed}, "tasks": min(n_tasks)})
    return pd.DataFrame(rows).set_index("model")


def attribution_frame(results: dict, target: float) -> pd.DataFrame:
    """Per job: edges of the learned-mask circuit and of the attribution-pruning circuit (P1 Fig. 31) at ``target``,
    both bisected on the same validation pairs, and their ratio (attribution / learned)."""
    rows = []
    for r in main_rows(results):
        if "attribution" not in r:
            continue
        learned, attr = r["targets"].get(str(float(target))), r["attribution"].get(str(float(target)))
        rows.append({"model": r["model"], "task": r["task"], "learned edges": learned["edges"] if learned else None,
                     "attribution edges": attr["edges"] if attr else None,
                     "attribution / learned": attr["edges"] / learned["edges"] if learned and attr and
                     learned["edges"] else None})
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def attribution_summary(results: dict, target: float) -> dict:
    """Geometric mean of attribution / learned edges over jobs where both are non-empty, and how many jobs the
    learned masks needed fewer edges on (``learned smaller``) out of ``compared``."""
    fr = attribution_frame(results, target)
    if not len(fr):
        return {"ratio": "not measured", "learned smaller": 0, "compared": 0}
    ok = fr.dropna()
    ok = ok[(ok["learned edges"] > 0) & (ok["attribution edges"] > 0)]
    return {"ratio": geomean(ok["attribution / learned"]) if len(ok) else "no comparable circuit",
            "learned smaller": int((ok["learned edges"] < ok["attribution edges"]).sum()), "compared": len(ok)}


def _final(row: dict, target: float):
    """A row's circuit cell at ``target`` for the mask as the run ended (the largest budget, or the plateau stop)."""
    return row["targets"].get(str(float(target)))


def _at_budget(row: dict, budget: int, target: float):
    """A main row's circuit cell after ``budget`` mask steps (its snapshot), or as the run ended if it has none."""
    snap = row["budgets"].get(str(budget))
    return snap.get(str(float(target))) if snap is not None else _final(row, target)


def controls_frame(controls: dict[int, dict], by_seed: dict[int, dict], target: float) -> pd.DataFrame:
    """Controls beside the reference rows, per pruning seed: one row per (condition, task, seed) on the controls'
    model(s) with the full-model loss on validation pairs, the steps the mask ran and the circuit's edges
    (``not reached`` if none). Reference rows are read after the controls' step cap (their largest budget)."""
    rows = []
    for seed, ctrl in controls.items():
        models = {c["model"] for c in ctrl["runs"]}
        ref = [x for x in main_rows(by_seed[seed]) if x["model"] in models] if seed in by_seed else []
        cap = max(ctrl["budgets"])
        for r in [*ref, *ctrl["runs"]]:
            main = r.get("condition", "main") == "main"
            cell = _at_budget(r, cap, target) if main else _final(r, target)
            rows.append({"condition": r.get("condition", "main"), "task": r["task"], "seed": seed,
                         "full loss": r.get("full_loss_val"), "steps run": min(cap, r["steps_run"]) if main else
                         r.get("steps_run"), "edges": (cell or {}).get("edges", "not reached")})
    return pd.DataFrame(rows).set_index(["condition", "task", "seed"]).sort_index() if rows else pd.DataFrame()


# --- figures ------------------------------------------------------------------------------------------------
def budget_curve(by_seed: dict[int, dict], sparse: str, dense: str, target: float, *, paper: float = 16):
    """Two panels over the mask budget (steps, log): geometric-mean edges of each model (one faint line per seed,
    a bold mean), and the dense / sparse ratio of edges and of nodes with P1's value dashed."""
    table = budget_table(by_seed, sparse, dense, target).reset_index()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for col, color, label in (("sparse edges", "C0", "sparse"), ("dense edges", "C1", "dense")):
        for _, g in table.groupby("seed"):
            a.plot(g["budget (steps)"], g[col], color=color, alpha=0.3, lw=1)
        m = table.groupby("budget (steps)")[col].mean()
        a.plot(m.index, m.values, "o-", color=color, label=label)
    a.set(xlabel="mask budget (steps)", ylabel="circuit edges (geo. mean over tasks)",
          title=f"circuit size at task loss {target}")
    a.legend(fontsize=8)
    for col, color in (("ratio (edges)", "k"), ("ratio (nodes)", "C2")):
        m = table.groupby("budget (steps)")[col].mean()
        b.plot(m.index, m.values, "o-", color=color, label=f"dense / sparse {col.split('(')[1][:-1]}")
        for _, g in table.groupby("seed"):
            b.plot(g["budget (steps)"], g[col], color=color, alpha=0.3, lw=1)
    b.axhline(paper, color="C3", ls="--", lw=1, label=f"P1 ≈ {paper:g} (edges)")
    b.set(xlabel="mask budget (steps)", ylabel="ratio", title="dense / sparse")
    b.legend(fontsize=7)
    if table[["sparse edges", "dense edges"]].notna().any().any():
        for ax in (a, b):
            ax.set(xscale="log", yscale="log")
    else:  # e.g. barely trained ci models: no task with non-empty circuits in both models
        a.text(0.5, 0.5, "no task usable at any budget", ha="center", va="center", transform=a.transAxes)
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def trajectories(results: dict, sparse: str, dense: str):
    """Kept nodes (top) and task loss (bottom) over mask steps, one line per task, sparse and dense side by side;
    a dot marks where the plateau rule was met."""
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 5.2), sharex=True)
    for col, model, name in ((0, sparse, "sparse"), (1, dense, "dense")):
        for i, r in enumerate(x for x in main_rows(results) if x["model"] == model):
            tr = r["trajectory"]
            axes[0, col].plot(tr["step"], tr["kept"], color=f"C{i}", lw=1, label=r["task"])
            axes[1, col].plot(tr["step"], tr["task_loss"], color=f"C{i}", lw=0.8, alpha=0.8)
            if r["converged_at"]:
                j = min(range(len(tr["step"])), key=lambda k: abs(tr["step"][k] - r["converged_at"]))
                axes[0, col].plot([tr["step"][j]], [tr["kept"][j]], "o", color=f"C{i}", ms=4)
        axes[0, col].set(yscale="symlog", title=f"{name}: kept nodes", ylabel="kept nodes")
        axes[1, col].set(yscale="symlog", yticks=[0, 0.1, 1], xlabel="mask step", ylabel="task loss (batch)")
        axes[1, col].set_yscale("symlog", linthresh=0.1)
    axes[0, 0].legend(fontsize=6, ncol=2)
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def smallest_circuit_task(results: dict, model: str, target: float) -> str | None:
    """The task whose stored headline circuit of ``model`` has the fewest edges, preferring non-empty circuits
    (ties by name); None if ``model`` has no stored circuit."""
    edges = {r["task"]: r["circuit"]["n_edges"] for r in main_rows(results)
             if r["model"] == model and r.get("circuit") and r["circuit"]["target_loss"] == target}
    return min(edges, key=lambda t: (edges[t] == 0, edges[t], t)) if edges else None


def partner_table(runs: dict) -> pd.DataFrame:
    """The compared models: validation loss, steps trained and whether the schedule ran to its end
    (``runs``: {name: loaded run})."""
    rows = {name: {"val loss": r.metrics["val_loss"], "steps trained": r.metrics.get("steps_run"),
                   "schedule completed": r.metrics.get("steps_run") == r.config.train.steps}
            for name, r in runs.items()}
    return pd.DataFrame(rows).T


def control_effect(controls: dict[int, dict], by_seed: dict[int, dict], kind: str, model: str,
                   target: float) -> dict:
    """One control condition against the reference rows of the same pruning seed, on ``model``, pooled over seeds.
    The reference is the main run's mask after as many steps as the controls' largest budget (their step cap), so
    a control stopped within 1000 steps is not compared with a 3000-step reference.

    Returns ``summary`` (e.g. ``"3/21 reached, 41 edges"``, or ``"not measured"`` without a controls study),
    ``reached`` / ``runs``, ``edges`` (geometric mean over reached non-empty circuits), ``vs main`` (geometric mean
    over (task, seed) of control edges / reference edges, where both are non-empty; None if none) and ``seeds``.
    """
    if not controls:
        return {"summary": "not measured", "reached": 0, "runs": 0, "edges": None, "vs main": None, "seeds": []}
    cells, both = [], []
    for seed, ctrl in controls.items():
        ref = {r["task"]: (_at_budget(r, max(ctrl["budgets"]), target) or {}).get("edges")
               for r in main_rows(by_seed.get(seed, {"runs": []})) if r["model"] == model}
        for r in ctrl["runs"]:
            if r["condition"] == kind and r["model"] == model:
                e = (_final(r, target) or {}).get("edges")
                cells.append(e)
                if e and ref.get(r["task"]):
                    both.append(e / ref[r["task"]])
    reached = [e for e in cells if e is not None]
    edges = geomean([e for e in reached if e > 0])
    summary = f"{len(reached)}/{len(cells)} reached" + (f", {edges:.0f} edges" if edges else "")
    return {"summary": summary, "reached": len(reached), "runs": len(cells), "edges": edges,
            "vs main": geomean(both) if both else None, "seeds": sorted(controls)}
