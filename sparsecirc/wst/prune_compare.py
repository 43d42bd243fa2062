"""Circuit-size studies side by side (chapter 03: the first zoo against zoo v2).

Each study is a ``results.json`` dict of :mod:`sparsecirc.wst.prune_study` with the ids of its sparse and dense
model. The table reads every study at its own largest budget, pruning seed as stored, under
:mod:`sparsecirc.wst.prune_report`'s rules (a task enters a ratio only when both circuits reached the target with at
least one edge).
"""
from __future__ import annotations

import pandas as pd

from sparsecirc.wst.prune_report import geomean, main_rows, ratio, sizes, usable


def study_comparison(studies: dict[str, tuple[dict, str, str]], target: float | None = None) -> pd.DataFrame:
    """Per (study, task): each model's bisected and cleaned edges and nodes at the study's largest budget and
    ``target`` (default: the study's first target), and the dense / sparse edge ratio; then one ``geometric mean``
    row per study over its usable tasks. Also records the study's bisection rule (``bisect_rule``; studies built
    before it was recorded bisected with all nodes as the first upper end: ``all-first``).

    Args:
        studies: label -> (results, sparse model id, dense model id).
        target: the target loss to read (must be one the studies bisected at).

    Returns:
        DataFrame indexed by (study, task).
    """
    if not studies:
        raise ValueError("study_comparison: no studies given")
    rows = []
    for label, (res, sparse, dense) in studies.items():
        t = float(res["targets"][0] if target is None else target)
        budget = max(res["budgets"])
        edges, nodes = sizes(res, budget, t), sizes(res, budget, t, "nodes")
        ok, _ = usable(res, budget, t)
        cleaned = {(r["task"], r["model"]): r["cleaned"] for r in main_rows(res) if r.get("cleaned")}
        rule = res.get("bisect_rule", "all-first")
        for task in res["tasks"]:
            e, n = edges[task], nodes[task]
            row = {"study": label, "task": task, "budget": budget, "bisect rule": rule}
            for mid, name in ((sparse, "sparse"), (dense, "dense")):
                c = cleaned.get((task, mid), {})
                row.update({f"{name} edges": e.get(mid), f"{name} nodes": n.get(mid),
                            f"{name} edges cleaned": c.get("edges")})
            row["ratio (edges)"] = row["dense edges"] / row["sparse edges"] if task in ok else None
            rows.append(row)
        rows.append({"study": label, "task": "geometric mean", "budget": budget, "bisect rule": rule,
                     "sparse edges": geomean([row[sparse] for row in ok.values()]) if ok else None,
                     "dense edges": geomean([row[dense] for row in ok.values()]) if ok else None,
                     "ratio (edges)": ratio(res, sparse, dense, budget, t)})
    return pd.DataFrame(rows).set_index(["study", "task"])


def bisection_overshoots(results: dict, factor: float = 1.2) -> pd.DataFrame:
    """Circuits bisected to more than ``factor`` times the nodes their mask itself kept at that budget: what the
    ``all-first`` bisection rule could do (loss is not monotone in k, so a bisection over all nodes can stop far past
    the mask's own circuit). The mask's kept count at a budget is read from the run's stored trajectory (sampled
    every few steps): the larger of the two samples around the budget, so a row here is a real overshoot.

    Returns one row per such circuit (condition, model, task, budget, target, kept by the mask, bisected nodes),
    and ``attrs["checked"]``: how many circuits were checked.
    """
    rows, checked = [], 0
    for run in results["runs"]:
        traj = run.get("trajectory") or {}
        steps, kept = traj.get("step", []), traj.get("kept", [])
        if not steps:
            continue
        for budget, cells in run.get("budgets", {}).items():
            i = max(0, sum(1 for s in steps if s <= int(budget)) - 1)
            own = max(kept[i], kept[min(i + 1, len(kept) - 1)])
            for target, cell in cells.items():
                if not cell:
                    continue
                checked += 1
                if cell["nodes"] > factor * own:
                    rows.append({"condition": run.get("condition", "main"), "model": run["model"],
                                 "task": run["task"], "budget": int(budget), "target": float(target),
                                 "kept by the mask": own, "bisected nodes": cell["nodes"]})
    df = pd.DataFrame(rows, columns=["condition", "model", "task", "budget", "target", "kept by the mask",
                                     "bisected nodes"])
    df.attrs["checked"] = checked
    return df
