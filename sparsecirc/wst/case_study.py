"""The ``kind: case_study`` producer: run the study a config names (``study:``) and store it.

Studies: ``bracket`` and ``bracket_attacks`` (whole models, no circuit; :mod:`sparsecirc.wst.bracket`, chapter
06) and ``quote_and_type``
(:mod:`sparsecirc.wst.quote`, chapter 05). Stored: ``results.json`` and ``circuits/<model>__<task>.json`` (kept
nodes; edges are recomputed from the weights on load, :func:`sparsecirc.wst.circuits.load_circuit`). Run with
``python -m sparsecirc reproduce wst-bracket-circuit-l2d128``.
"""
from __future__ import annotations

import time

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig
from sparsecirc.wst.bracket import attacks_study, bracket_study
from sparsecirc.wst.quote import quote_study

STUDIES = {"bracket": bracket_study, "bracket_attacks": attacks_study, "quote_and_type": quote_study}


def produce_case_study(ctx: BuildContext) -> None:
    """Run the study the config names (``study:``; default ``bracket`` for ``task: bracket_counting``) and write
    ``results.json``, the circuit files and the manifest."""
    spec = ctx.spec
    study = spec.get("study", "bracket" if spec.get("task") == "bracket_counting" else None)
    if study not in STUDIES:
        raise ValueError(f"{ctx.artifact_id}: unknown case study {study!r}; known: {sorted(STUDIES)}")
    sspec = ctx.overrides()
    seed = sspec.get("seed", 0)
    pcfg = PruneConfig.from_dict(sspec.get("prune", {}))
    t0 = time.time()
    results, files = STUDIES[study](ctx, sspec, pcfg, seed)
    results["wall_time_s"] = round(time.time() - t0, 1)
    artifacts.write_json(ctx.folder / "results.json", results)
    artifacts.write_manifest(ctx.folder, ["results.json", *files], **ctx.manifest_info(
        kind="case_study", seed=seed, config={"spec": spec, "prune": pcfg.to_dict()},
        wall_time_s=results["wall_time_s"]))

