"""Attribution patching's cost (chapter 09), measured side by side in one run.

    .venv/bin/python benchmarks/bench_attribution.py [--threads 1] [--prompts 64] [--sets single_double_quote,addition]

For each committed model pair (chapter 07's addition toy, chapter 08's code model) and prompt set, on the same
prompts: EAP (one forward and backward), EAP-IG (5 interpolation steps), exact patching of every component edge
(one forward per edge), and one explained-effect sweep (three units); seconds and the ratio of each to EAP. Then
the committed study's own per-job seconds and total wall time (``spa-attention-circuits``), and the post-training
runs' wall time to their density targets where their trajectories record it.
"""
from __future__ import annotations

import argparse
import time

import torch

from sparsecirc import artifacts, build
from sparsecirc.core.repro import setup_threads
from sparsecirc.spa import circuit_curves as cc
from sparsecirc.spa.patching import ComponentGraph, eap_scores, exact_scores

PAIRS = {"addition": ("spa-fig1-addition-l4h4-dense", "spa-fig1-addition-l4h4-sparse"),
         "code": ("wst-zoo-l2d128-dense-s0", "spa-codemodel-l2d128-gated")}


def load(artifact_id: str):
    return build.load(artifact_id, artifacts.ARTIFACTS_DIR / artifact_id, "book")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--sets", default="addition,single_double_quote,bracket_counting")
    args = ap.parse_args()
    setup_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, {args.prompts} prompts per set")
    print(f"{'model':34s} {'set':22s} {'edges':>5s} {'EAP s':>7s} {'EAP-IG s':>9s} {'exact s':>8s} {'sweep s':>8s}"
          f" {'IG/EAP':>7s} {'exact/EAP':>9s}")
    for ps in args.sets.split(","):
        comp = "addition" if ps == "addition" else "code"
        for mid in PAIRS[comp]:
            model = load(mid).model.eval()
            pair = cc.addition_pairs(args.prompts)[0] if ps == "addition" else \
                cc.task_pairs(model, ps, limit=args.prompts)[0]
            graph = ComponentGraph(model.cfg)
            (_, _), t_eap = timed(lambda: eap_scores(model, pair, graph, method="eap"))
            (ig, ig_attn), t_ig = timed(lambda: eap_scores(model, pair, graph, method="eap-ig", steps=5))
            _, t_ex = timed(lambda: exact_scores(model, pair, graph))
            _, t_sw = timed(lambda: cc.curves(model, pair, graph, ig, ig_attn))
            print(f"{mid:34s} {ps:22s} {graph.n_edges:5d} {t_eap:7.2f} {t_ig:9.2f} {t_ex:8.2f} {t_sw:8.2f}"
                  f" {t_ig / t_eap:7.1f} {t_ex / t_eap:9.1f}")
    try:
        study = load("spa-attention-circuits")
    except artifacts.ArtifactError as e:
        print(f"(no committed study: {e})")
    else:
        r = study.results
        print(f"\ncommitted study spa-attention-circuits: wall time {r['wall_time_s']:.0f} s "
              f"({r['settings']['n_prompts']} prompts per set, exact patching on {r['settings']['exact_prompts']})")
        for name, comp in r["comparisons"].items():
            for ps, sets in comp["sets"].items():
                for role in ("dense", "sparse"):
                    s = sets[role]["seconds"]
                    print(f"  {name:9s} {ps:28s} {role:7s} " + "  ".join(f"{k} {v:.1f}s" for k, v in s.items()))
    for mid in ("spa-fig1-addition-l4h4-sparse", "spa-codemodel-l2d128-gated", "spa-codemodel-l2d128-pos1024-gated"):
        try:
            run = load(mid)
        except artifacts.ArtifactError:
            print(f"{mid}: not built")
            continue
        print(f"post-training {mid}: {run.manifest['wall_time_s']:.0f} s wall, "
              f"{run.metrics['seconds_per_step']:.3f} s/step")


if __name__ == "__main__":
    main()
