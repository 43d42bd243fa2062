"""The two-digit addition toy of P2 Fig. 1 (digest §8): task, exact-match evaluation and the two artifact producers.

Vocabulary: digits ``0``-``9`` (ids 0-9), ``+`` (10), ``=`` (11). An example is ``ab+cd=eeeee``: 11 tokens with the
sum zero-padded to 5 digits (``36+28=00064``), as on P2 Fig. 1. The model reads the first 10 tokens; loss and
accuracy count only the 5 answer digits (``LOSS_MASK``). The 10,000 possible problems are split once: a fixed
test set of 4096 pairs and the rest for training, from which every step draws a fresh seeded batch.

Artifacts (``data/configs/spa-fig1-addition-l4h4-*.yaml``)::

    python -m sparsecirc reproduce spa-fig1-addition-l4h4-dense --scale book    # dense model, AdamW
    python -m sparsecirc reproduce spa-fig1-addition-l4h4-sparse --scale book   # gated post-training with GECO

Example::

    test = test_set()                                # [4096, 11]
    evaluate_addition(model, test)                            # {"accuracy": ..., "ce": ..., "density": ..., ...}
"""
from __future__ import annotations

import time

import pandas as pd
import torch

from sparsecirc.artifacts import model_sha256
from sparsecirc.context import BuildContext
from sparsecirc.core.model import GPT
from sparsecirc.core.train import compose_hooks, save_run, train
from sparsecirc.spa.attention_edges import causal_pairs, edge_masks, edge_stats, topk_attention, topk_edges_per_example
from sparsecirc.spa.geco import GECO, GECOConfig, log_point, trajectory_hooks

VOCAB = list("0123456789+=")
PLUS, EQUALS = 10, 11
SEQ_LEN = 11  # a b + c d = e e e e e
N_TEST = 4096
TEST_SEED = 1234
ANSWER = slice(6, 11)  # token positions of the 5 answer digits
LOSS_MASK = torch.zeros(SEQ_LEN - 1, dtype=torch.bool)
LOSS_MASK[5:] = True  # predicted positions 5..9 (inputs `=` and the first four answer digits)
FIG1_PROMPTS = ("53+21", "36+28", "43+59")  # no carry, one carry, two carries (P2 Fig. 1 and its companion)


def encode(a: int, b: int) -> torch.Tensor:
    """``ab+cd=eeeee`` for two numbers in [0, 99]: [11] long."""
    if not (0 <= a <= 99 and 0 <= b <= 99):
        raise ValueError(f"operands must be in [0, 99], got {a}, {b}")
    return torch.tensor([VOCAB.index(ch) for ch in f"{a:02d}+{b:02d}={a + b:05d}"])


def encode_prompt(prompt: str) -> torch.Tensor:
    """``"36+28"`` -> the full example [11] (answer included; the model reads the first 10 tokens)."""
    a, b = (int(x) for x in prompt.split("+"))
    return encode(a, b)


def decode(tokens) -> str:
    return "".join(VOCAB[int(t)] for t in tokens)


def pairs_to_tokens(pairs: torch.Tensor) -> torch.Tensor:
    """pairs [n] in [0, 10000) (a = p // 100, b = p % 100) -> examples [n, 11]."""
    a, b = pairs // 100, pairs % 100
    s = a + b
    digits = lambda x, n: torch.stack([(x // 10 ** (n - 1 - i)) % 10 for i in range(n)], -1)  # noqa: E731
    n = len(pairs)
    return torch.cat([digits(a, 2), torch.full((n, 1), PLUS), digits(b, 2), torch.full((n, 1), EQUALS),
                      digits(s, 5)], dim=1).long()  # [n, 11]


def split(seed: int = TEST_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(train pair ids [5904], test pair ids [4096]): a fixed partition of the 10,000 problems."""
    perm = torch.randperm(10_000, generator=torch.Generator().manual_seed(seed))
    return perm[N_TEST:].sort().values, perm[:N_TEST].sort().values


def test_set(seed: int = TEST_SEED) -> torch.Tensor:
    """The fixed test examples [4096, 11]."""
    return pairs_to_tokens(split(seed)[1])


def batch_fn(batch_size: int, seed: int = 0):
    """``step -> [batch_size, 11]``: fresh training pairs drawn with replacement, depending only on (seed, step)."""
    train_ids = split()[0]

    def fn(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return pairs_to_tokens(train_ids[torch.randint(0, len(train_ids), (batch_size,), generator=g)])
    return fn


def carries(tokens: torch.Tensor) -> torch.Tensor:
    """The two carries of each example [n, >=5] -> [n, 2] bool: (units digits sum >= 10, tens column sum >= 10)."""
    a1, a0, b1, b0 = tokens[:, 0], tokens[:, 1], tokens[:, 3], tokens[:, 4]
    c_units = a0 + b0 >= 10
    c_tens = a1 + b1 + c_units.long() >= 10
    return torch.stack([c_units, c_tens], -1)


@torch.no_grad()
def evaluate_addition(model, tokens: torch.Tensor, batch_size: int = 1024) -> dict:
    """Exact match and answer-digit CE in eval mode (deterministic gates), plus the edge counts of ``edge_stats``.

    Exact match under teacher forcing: all 5 answer digits are the argmax (equivalent to greedy decoding).
    Call it inside :func:`~sparsecirc.spa.attention_edges.topk_attention` to evaluate the top-k baseline (its edge
    counts are then those of the unpatched model).
    """
    was = model.training
    model.eval()
    correct, ce_sum = [], 0.0
    try:
        for i in range(0, len(tokens), batch_size):
            x = tokens[i:i + batch_size]
            logits = model(x[:, :-1])[:, LOSS_MASK]  # [b, 5, d_vocab]
            correct.append((logits.argmax(-1) == x[:, ANSWER]).all(-1))
            ce_sum += torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, ANSWER].flatten(),
                                                        reduction="sum").item()
    finally:
        model.train(was)
    correct = torch.cat(correct)
    return {"accuracy": float(correct.float().mean()), "ce": ce_sum / (5 * len(tokens)), "n": len(tokens),
            **edge_stats(model, tokens[:, :-1])}


# --- artifacts ----------------------------------------------------------------------------------------------
def val_subset(test: torch.Tensor, n: int = 1024) -> torch.Tensor:
    """The in-training validation examples: the first ``n`` test examples (eval mode)."""
    return test[:n]


def produce_dense(ctx: BuildContext) -> None:
    """Train the dense toy (AdamW, fresh pairs each step) and store model, history and test metrics."""
    cfg, _ = ctx.split_config()
    progress = ctx.progress
    test = test_set()
    t0 = time.time()
    model, hist = train(cfg, None, val_subset(test), batch_fn=batch_fn(cfg.train.batch_size, cfg.train.seed),
                        loss_mask=LOSS_MASK, progress=progress)  # tokens=None: batches come from batch_fn
    wall = time.time() - t0
    metrics = {"test": evaluate_addition(model, test), "n_params": model.n_params(), "train_seconds": hist.train_seconds,
               "seconds_per_step": hist.train_seconds / len(hist.step)}
    save_run(ctx.folder, model, hist, cfg, metrics=metrics,
             **ctx.manifest_info(kind="addition_dense", precision="fp32", wall_time_s=round(wall, 1)))


TARGET_DENSITY = 0.02  # chapter 07's target: 100 % exact match at <= 2 % of causal edges (digest §8)


def first_target_hit(trajectory: dict, max_density: float = TARGET_DENSITY) -> int | None:
    """Index of the first trajectory point with exact match 1.0 and eval-gate density <= ``max_density`` (None if
    no point meets both)."""
    if max_density <= 0:
        raise ValueError(f"max_density must be > 0, got {max_density!r}")
    return next((i for i, (a, d) in enumerate(zip(trajectory["accuracy"], trajectory["density"]))
                 if a == 1.0 and d <= max_density), None)


def geco_run_row(name: str, metrics: dict, history, max_density: float = TARGET_DENSITY) -> dict:
    """One row describing a post-training run (chapter 07's comparison of multiplier caps): its λ bounds, the
    largest λ reached, the first trajectory step that meets the target (and the seconds to it, when recorded), and
    the final test exact match and density."""
    traj, lam = metrics["trajectory"], history.extra["lambda"]
    hit = first_target_hit(traj, max_density)
    cfg = metrics["geco"]["config"]
    row = {"run": name, "lambda_0": cfg["lambda_init"], "lambda_max (clamp)": cfg["lambda_max"],
           "largest lambda": max(lam), "steps": len(lam),
           "first step at target": None if hit is None else traj["step"][hit],
           "seconds to target": None if hit is None or "seconds" not in traj else traj["seconds"][hit],
           "exact match (%)": 100 * metrics["test"]["accuracy"], "open edges (%)": 100 * metrics["test"]["density"]}
    return row


def geco_runs_table(runs: dict) -> pd.DataFrame:
    """:func:`geco_run_row` of several runs side by side (one column per run), rounded to 3 decimals, a target
    never met reading "not reached".

    Args:
        runs: ``{label: (metrics, history)}`` of post-training runs (``run.metrics``, ``run.history``).

    Returns:
        DataFrame, rows = the fields of :func:`geco_run_row`, columns = the run labels (object dtype).
    """
    rows = [geco_run_row(name, metrics, history) for name, (metrics, history) in runs.items()]
    return pd.DataFrame(rows).set_index("run").round(3).T.astype(object).fillna("not reached")


TRAJECTORY_KEYS = ("accuracy", "ce", "density", "density_per_layer", "edges_per_example")


def trajectory_values(model, val: torch.Tensor) -> dict:
    """The point a post-training trajectory logs: exact match, CE and edge density on ``val`` (eval mode)."""
    ev = evaluate_addition(model, val)
    return {k: ev[k] for k in TRAJECTORY_KEYS}


def gated_copy(model_cfg, dense_model):
    """The dense weights under the gate of ``model_cfg`` (same shapes, gate on), before any post-training."""
    model = GPT(model_cfg)
    model.load_state_dict(dense_model.state_dict(), strict=True)
    return model


def post_train(cfg, geco_cfg, dense_model, dense_ce: float, progress: bool = False):
    """P2's post-training of the dense toy: gate on (``cfg.model``), GECO with τ = ``dense_ce`` + slack.

    Returns ``(model, history, geco, trajectory)``; the trajectory has the deterministic-gate exact match, CE and
    edge density on 1024 test problems every ``cfg.train.eval_every`` steps (and at step 0), with wall seconds.
    """
    val = val_subset(test_set())
    geco = GECO(geco_cfg, reference_ce=dense_ce)
    traj: dict = {}
    log_point(traj, 0, trajectory_values(gated_copy(cfg.model, dense_model), val), 0.0)  # before post-training
    hooks = compose_hooks(geco.train_hooks(),
                          trajectory_hooks(lambda m: trajectory_values(m, val), cfg.train.eval_every, traj))
    model, hist = train(cfg, None, val, batch_fn=batch_fn(cfg.train.batch_size, cfg.train.seed),
                        loss_mask=LOSS_MASK, init_state=dense_model.state_dict(), hooks=hooks, progress=progress)
    return model, hist, geco, traj


def produce_sparse(ctx: BuildContext) -> None:
    """Post-train the dense toy with P2's gate and GECO (τ = dense test CE + slack); store metrics and baselines."""
    cfg, geco_over = ctx.split_config()
    dense_id = ctx.spec["init_from"]
    dense = ctx.dep(dense_id)
    progress = ctx.progress
    test = test_set()
    dense_test = dense.metrics["test"]
    init_test = evaluate_addition(gated_copy(cfg.model, dense.model), test)
    t0 = time.time()
    model, hist, geco, traj = post_train(cfg, GECOConfig.from_dict(geco_over), dense.model, dense_test["ce"],
                                         progress=progress)
    wall = time.time() - t0
    ev = evaluate_addition(model, test)
    metrics = {"test": ev, "dense_test": dense_test, "init_test": init_test, "geco": geco.state(),
               "trajectory": traj,
               "n_params": model.n_params(), "train_seconds": hist.train_seconds,
               "seconds_per_step": hist.train_seconds / len(hist.step),
               "topk_baseline": topk_baseline(dense.model, test, ev["edges_per_example_per_layer"])}
    save_run(ctx.folder, model, hist, cfg, metrics=metrics, **ctx.manifest_info(
        kind="addition_sparse", precision="fp32", wall_time_s=round(wall, 1),
        init_from={"id": dense_id, "model_sha256": model_sha256(dense)}))


def topk_baseline(dense_model, test: torch.Tensor, sparse_edges_per_layer: list[float],
                  ks: tuple[int, ...] = (1, 2, 4)) -> list[dict]:
    """Training-free baselines on the dense model: per-query top-k and a per-layer budget matched to the sparse model.

    Returns rows {"method", "k" or "budget", "renormalize", "accuracy", "ce", "edges_per_example", "density"}.
    """
    c = dense_model.cfg
    T = SEQ_LEN - 1
    possible = c.n_layer * c.n_head * causal_pairs(T)
    budget = [max(1, round(e)) for e in sparse_edges_per_layer]
    rows = []
    for renorm in (False, True):
        for k in ks:
            with topk_attention(dense_model, k=k, renormalize=renorm):
                ev = evaluate_addition(dense_model, test)
            edges = topk_edges_per_example(c.n_layer, c.n_head, T, k)
            rows.append({"method": f"top-{k} per query", "k": k, "renormalize": renorm, "accuracy": ev["accuracy"],
                         "ce": ev["ce"], "edges_per_example": edges, "density": edges / possible})
        with topk_attention(dense_model, per_layer_budget=budget, renormalize=renorm):
            ev = evaluate_addition(dense_model, test)
        rows.append({"method": "matched budget per layer", "budget": budget, "renormalize": renorm,
                     "accuracy": ev["accuracy"], "ce": ev["ce"], "edges_per_example": sum(budget),
                     "density": sum(budget) / possible})
    return rows


CARRY_GROUPS = {"no carry": (False, False), "tens carry only": (False, True), "units carry only": (True, False),
                "both carries": (True, True)}


def carry_table(model, tokens: torch.Tensor) -> pd.DataFrame:
    """Open edges per example and layer, averaged within each carry group (P2 Fig. 1's carry story).

    Args:
        model: a gated addition model.
        tokens: problems [n, 11] (the model reads the first 10 tokens).

    Returns:
        DataFrame, one row per carry group (no carry, tens only, units only, both) with columns "L0 edges" ..
        and "examples" (the group's size).
    """
    carry = carries(tokens)  # [example, 2]: units carry, tens carry
    per_example = edge_masks(model, tokens[:, :-1]).sum((2, 3, 4)).float()  # [layer, example]
    cols = {}
    for name, (u, t) in CARRY_GROUPS.items():
        sel = (carry[:, 0] == u) & (carry[:, 1] == t)
        cols[name] = per_example[:, sel].mean(1).tolist() + [int(sel.sum())]
    return pd.DataFrame(cols, index=[f"L{layer} edges" for layer in range(model.cfg.n_layer)] + ["examples"]).T


def sparse_row(stats: dict, test_metrics: dict) -> dict:
    """The post-trained model as a row of :func:`topk_baseline` (edges from ``stats``, exact match and CE from
    ``test_metrics``, the run's ``metrics["test"]``)."""
    return {"method": "post-trained gates", "renormalize": False, "edges_per_example": stats["edges_per_example"],
            "density": stats["density"], "accuracy": test_metrics["accuracy"], "ce": test_metrics["ce"]}


def topk_table(rows: list[dict], stats: dict, test_metrics: dict) -> pd.DataFrame:
    """The training-free top-k baselines next to the post-trained gates, one row each.

    Args:
        rows: :func:`topk_baseline` rows (on the dense model).
        stats: :func:`~sparsecirc.spa.attention_edges.edge_stats` of the post-trained model.
        test_metrics: the post-trained model's test metrics (``accuracy``, ``ce``).

    Returns:
        DataFrame with columns method, renormalised, edges per example, open fraction (%), exact match (%),
        answer CE; the post-trained gates last.
    """
    return pd.DataFrame([{"method": r["method"], "renormalised": r["renormalize"],
                          "edges per example": float(r["edges_per_example"]), "open fraction (%)": 100 * r["density"],
                          "exact match (%)": 100 * r["accuracy"], "answer CE": r["ce"]}
                         for r in rows + [sparse_row(stats, test_metrics)]])


def topk_points(rows: list[dict], stats: dict, dense_metrics: dict, test_metrics: dict) -> list[dict]:
    """The points of :func:`sparsecirc.spa.plots.accuracy_vs_edges`: the dense model (all edges), every top-k
    baseline and the post-trained gates.

    Args:
        rows: :func:`topk_baseline` rows.
        stats: edge statistics of the post-trained model (its ``possible_edges_per_example`` places the dense point).
        dense_metrics: the dense model's test metrics; ``test_metrics``: the post-trained model's.

    Returns:
        Dicts with label, edges_per_example, accuracy, color, marker (and note "k=.." on plain top-k points).
    """
    points = [{"label": "dense (all edges)", "edges_per_example": stats["possible_edges_per_example"],
               "accuracy": dense_metrics["accuracy"], "color": "0.4", "marker": "s"}]
    for r in rows:
        top_k = "k" in r
        points.append({"label": ("top-k per query" if top_k else "matched budget per layer")
                       + (", renormalised" if r["renormalize"] else ""),
                       "note": f"k={r['k']}" if top_k and not r["renormalize"] else "",
                       "edges_per_example": r["edges_per_example"], "accuracy": r["accuracy"],
                       "color": "C1" if r["renormalize"] else "C0", "marker": "o" if top_k else "^"})
    points.append({"label": "post-trained gates", "edges_per_example": stats["edges_per_example"],
                   "accuracy": test_metrics["accuracy"], "color": "C3", "marker": "*"})
    return points
