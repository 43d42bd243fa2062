"""Post-training the dense code model with P2's gated attention under GECO (P2 §3-§5 on our P1-style code model).

The producer of ``kind: lm_gated`` artifacts. Its config names a dense language model (``init_from``) and adds a
``geco:`` section; the model section must equal the dense model's except for ``attn_gate`` / ``attn_gate_bias``
(the gate adds no parameters, so the dense weights load strictly)::

    python -m sparsecirc reproduce spa-codemodel-l2d128-gated --scale book

What it records (``metrics.json``): the dense and post-trained validation CE on the same windows, τ (GECO's bound on
the training CE, ``tau_train``, and a slack above the dense validation CE, ``tau_val``: the spec's ``val_slack``,
by default the training slack) and whether the
post-trained validation CE (deterministic gate) is within ``tau_val``, deterministic edge statistics per layer at
the training context, the same at other context lengths (:func:`density_vs_context`; our code model has no
positional embedding, so it runs at any length), the 20-task table, and a density trajectory.

A run can continue an earlier post-training: ``init_from`` then names the gated artifact to start from and
``reference`` the dense model that τ, the dense CE and the dense task table refer to (default: ``init_from``), so the
bound stays the dense parent's and does not drift to the starting model's loss. GECO, Adam and the warm-up start
afresh (``geco.lambda_init`` can start the multiplier where the earlier run left it).

Density depends on the context length T (P2 digest §4): a model that keeps ``e`` keys per query has density
``2e/(T+1)``. :func:`density_at_context` converts edges per query into the density at another T under that
assumption, which is how the chapter puts our T = 128 model next to P2's ≈0.3 % at T = 1024.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import pandas as pd
import torch

from sparsecirc import artifacts
from sparsecirc.artifacts import model_sha256
from sparsecirc.context import BuildContext
from sparsecirc.core.model import GPT
from sparsecirc.core.recipe import compose_hooks
from sparsecirc.core.train import eval_windows, evaluate, sample_batch, save_run, train, window_sampler
from sparsecirc.data.lm import lm_task_metrics, lm_tokens, lm_val_loss
from sparsecirc.data.tokenizer import load_tokenizer
from sparsecirc.paths import cache_dir
from sparsecirc.spa.attention_edges import attention_graph, causal_pairs, edge_stats, eval_record
from sparsecirc.spa.geco import GECO, GECOConfig, HeldoutConstraint, trajectory_hooks, window_ces

#: context lengths of the density sweep (the training context is 128 at book scale)
SWEEP_LENGTHS = (16, 32, 64, 128, 256, 512, 1024)


def density_at_context(edges_per_query: float, T: int) -> float:
    """Density at context ``T`` of a model that keeps ``edges_per_query`` keys per query and head (self-edge
    included): ``edges_per_query * T / (T(T+1)/2) = 2 e / (T + 1)``. P2's 0.3 % at T = 1024 is ≈1.5 keys."""
    if T < 1:
        raise ValueError(f"context length must be >= 1, got {T}")
    if edges_per_query < 0:
        raise ValueError(f"edges per query must be >= 0, got {edges_per_query}")
    return edges_per_query * T / causal_pairs(T)


def tiled_windows(tokens: torch.Tensor, n_ctx: int) -> torch.Tensor:
    """The whole 1-D stream as non-overlapping windows [n, n_ctx + 1] (the ragged tail is dropped)."""
    w = n_ctx + 1
    n = tokens.numel() // w
    if n == 0:
        raise ValueError(f"token stream of length {tokens.numel()} is shorter than one window of {w}")
    return tokens[:n * w].view(n, w).long()


def stream_ce(run, tokens: torch.Tensor, n_ctx: int) -> float:
    """A model's CE on the whole stream in tiled windows of ``n_ctx`` (:func:`tiled_windows`), remembered in the
    cache under the model's and the stream's sha256: a chain of post-training runs from one dense parent computes
    its training-stream CE once (it is the bound's reference; ~2 CPU minutes on the book stream).

    Args:
        run: a loaded run (``run.model``; its weights' sha256 keys the cache).
        tokens: the 1-D token stream.
        n_ctx: the window length.
    """
    stream_sha = hashlib.sha256(tokens.numpy().tobytes()).hexdigest()
    key = hashlib.sha256(f"{model_sha256(run)}|{stream_sha}|{tokens.dtype}|{int(n_ctx)}".encode()).hexdigest()[:24]
    path = cache_dir() / "stream_ce" / f"{key}.json"
    if path.exists():
        return float(json.loads(path.read_text())["ce"])
    ce = evaluate(run.model, tiled_windows(tokens, n_ctx), batch_size=64)
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_bytes(path, json.dumps({"ce": ce, "n_ctx": int(n_ctx)}).encode())
    return ce


def with_context(model, n_ctx: int):
    """A copy of a position-embedding-free GPT that accepts sequences up to ``n_ctx`` (same weights, strict); a
    model with learned positions is returned itself for lengths up to its own context."""
    if model.cfg.pos_embed:
        if n_ctx > model.cfg.n_ctx:
            raise ValueError(f"a model with learned positions runs up to its context ({model.cfg.n_ctx}), not {n_ctx}")
        return model
    other = GPT(dataclasses.replace(model.cfg, n_ctx=int(n_ctx)))
    other.load_state_dict(model.state_dict(), strict=True)
    return other.train(model.training)


@torch.no_grad()
def density_vs_context(model, val_tokens: torch.Tensor, lengths=SWEEP_LENGTHS, n_windows: int = 16,
                       seed: int = 777) -> list[dict]:
    """Deterministic edge statistics and validation CE at several context lengths (same model, no retraining).

    Returns one row per length: ``T``, ``ce`` (nats/token over ``n_windows`` windows of length T), ``density``,
    ``density_per_layer``, ``edges_per_query_per_head`` (per layer) and ``edges_per_query`` (mean over layers).
    Lengths above the training context are off-distribution for the model's loss; the CE column shows how far.
    """
    rows = []
    for T in lengths:
        m = with_context(model, T)
        windows = sample_batch(val_tokens, n_windows, T, seed, step=T)
        st = edge_stats(m, windows[:, :-1])
        epq = st["edges_per_query_per_head"]
        rows.append({"T": int(T), "ce": evaluate(m, windows, batch_size=4), "density": st["density"],
                     "density_per_layer": st["density_per_layer"], "edges_per_query_per_head": epq,
                     "edges_per_query": sum(epq) / len(epq)})
    return rows


def validation_windows(cfg, val_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The validation windows the edge statistics are measured on: ``eval_batches * batch_size`` windows of the
    training context, inputs only [n, n_ctx].

    Args:
        cfg: the gated model's RunConfig (``run.config``).
        val_tokens: its validation stream (default: ``lm_tokens(cfg, "val")``).

    Returns:
        LongTensor [n, n_ctx].
    """
    val_tokens = lm_tokens(cfg, "val") if val_tokens is None else val_tokens
    return eval_windows(val_tokens, cfg.train.eval_batches * cfg.train.batch_size, cfg.model.n_ctx)[:, :-1]


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    """The :func:`density_vs_context` rows as a table indexed by T: CE, open fraction (%) overall and per layer,
    and keys per query per head.

    Args:
        rows: :func:`density_vs_context` rows (``metrics["density_vs_context"]``).

    Returns:
        DataFrame indexed by T with columns "CE (nats)", "open fraction (%)", "L0 (%)" .., "keys per query per head".
    """
    return pd.DataFrame([{"T": r["T"], "CE (nats)": r["ce"], "open fraction (%)": 100 * r["density"],
                          **{f"L{layer} (%)": 100 * d for layer, d in enumerate(r["density_per_layer"])},
                          "keys per query per head": r["edges_per_query"]} for r in rows]).set_index("T")


def stream_ce_table(models: dict, cfg, val_tokens: torch.Tensor | None = None, bound: float = 0.02,
                    sample: int | None = None, seed: int = 0, part: str = "all") -> pd.DataFrame:
    """Paired CE on the whole validation stream: every model on the same tiled windows of ``cfg.model.n_ctx``
    tokens (deterministic gates), its excess over the first model's CE, and whether that excess is within ``bound``.

    A post-training run's own ``within_tau`` is measured on its ``eval_batches x batch_size`` validation windows
    (four at batch 2); this is the same comparison on every window of the stream.

    Args:
        models: label -> model (``GPT``), the reference (the dense parent) first.
        cfg: a run config whose ``model.n_ctx`` sets the window length and whose data section names the stream.
        val_tokens: the stream (default: the validation stream ``lm_tokens(cfg, "val")``; pass
            ``lm_tokens(cfg, "train")`` for the training stream, on which GECO's constraint was held).
        bound: the slack (nats) the excess is compared with (the runs' ``tau_slack``).
        sample: this many of the stream's tiled windows, drawn at random with ``seed`` (the same for every model),
            instead of all of them (the training stream is ~20x the validation stream).
        part: ``"all"`` the tiled windows, or one of the interleaved halves of :func:`split_validation`:
            ``"even"`` (the windows a held-out constraint reads) or ``"odd"`` (the windows such a run is judged on).

    Returns:
        DataFrame indexed by label: "CE (nats)", "above the first", "within bound", "windows".
    """
    val_tokens = lm_tokens(cfg, "val") if val_tokens is None else val_tokens
    if part not in ("all", "even", "odd"):
        raise ValueError(f"part must be 'all', 'even' or 'odd', got {part!r}")
    windows = tiled_windows(val_tokens, cfg.model.n_ctx) if part == "all" else \
        split_validation(val_tokens, cfg.model.n_ctx)[part == "odd"]
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be a positive number of windows, got {sample}")
        g = torch.Generator().manual_seed(seed)
        windows = windows[torch.randperm(len(windows), generator=g)[:sample]]
    ce = {label: evaluate(m, windows, batch_size=8) for label, m in models.items()}  # eval mode, restored after
    first = next(iter(ce.values()))
    return pd.DataFrame({label: {"CE (nats)": v, "above the first": v - first, "within bound": v - first <= bound,
                                 "windows": len(windows)} for label, v in ce.items()}).T


def runs_table(runs: dict) -> pd.DataFrame:
    """Post-training runs side by side: what they were trained on (context, steps, GECO's slack over the dense
    CE and the text the constraint was measured on), where their multiplier went, their validation CE against its
    bound (and on how many windows: a held-out-constraint run's on the odd validation half it never read), and
    their open fraction at the model's context (overall, per layer, keys per query per head).

    Args:
        runs: label -> a loaded ``lm_gated`` artifact (``sc.get_or_compute``), whose metrics hold ``edges`` (measured
            on validation windows of the model's full context) and whose history holds GECO's ``lambda``.

    Returns:
        DataFrame, one row per run (indexed by label).
    """
    rows = {}
    for label, r in runs.items():
        m, lam = r.metrics, r.history.extra["lambda"]
        e, j = m["edges"], m.get("judged")  # a held-out-constraint run is judged on the odd validation half
        rows[label] = {"train T": m["train_context"], "steps": len(r.history.step),
                       "lambda cap": m["geco"]["config"]["lambda_max"], "lambda max": max(lam), "lambda final": lam[-1],
                       "constraint on": m.get("constraint_source", "training batches"),
                       "train slack": m["geco"]["config"].get("tau_slack"),
                       "val windows": j["windows"] if j else m.get("val_windows"),
                       "val CE": j["val_loss"] if j else m["val_loss"], "bound": j["bound"] if j else m["tau_val"],
                       "within": m["within_tau"],
                       f"open % at T={r.config.model.n_ctx}": 100 * e["density"],
                       **{f"L{i} %": 100 * d for i, d in enumerate(e["density_per_layer"])},
                       **{f"L{i} keys/query/head": k for i, k in enumerate(e["edges_per_query_per_head"])}}
    return pd.DataFrame(rows).T


def gated_config(ctx: BuildContext):
    """(RunConfig, geco overrides, spec) of an ``lm_gated`` artifact, checked: ``init_from`` and the gate are set."""
    cfg, geco = ctx.split_config()
    spec, artifact_id = ctx.spec, ctx.artifact_id
    if "init_from" not in spec:
        raise artifacts.ArtifactError(f"{artifact_id}: an lm_gated config needs `init_from: <dense lm id>`")
    if not cfg.model.attn_gate:
        raise artifacts.ArtifactError(f"{artifact_id}: model.attn_gate must be true for a gated post-training run")
    return cfg, geco, spec


def check_same_shape(gated_cfg, dense_cfg) -> None:
    """The post-trained model must be the dense model plus the gate: every other model field equal."""
    gate = ("attn_gate", "attn_gate_bias", "attn_gate_block")
    a = {k: v for k, v in gated_cfg.model.to_dict().items() if k not in gate}
    b = {k: v for k, v in dense_cfg.model.to_dict().items() if k not in gate}
    diff = sorted(k for k in a if a[k] != b.get(k))
    if diff:
        raise artifacts.ArtifactError(f"gated config differs from the dense model in {diff}: "
                                      + ", ".join(f"{k}={a[k]!r} vs {b.get(k)!r}" for k in diff))


def validation_bound(spec: dict, dense_val: float, train_slack: float, artifact_id: str = "") -> tuple[float, float]:
    """(bound on the validation CE, its slack): the dense validation CE plus the spec's ``val_slack`` (nats), or
    plus GECO's training slack when the spec sets none. A post-trained model's excess over its dense parent is
    larger on validation text than on the training text GECO holds its bound on (chapter 08), so a run may train
    with a tighter slack than the one it is judged by; the two are recorded apart (``train_slack``, ``val_slack``)."""
    val_slack = float(spec.get("val_slack", train_slack))
    if not val_slack >= 0:
        why = "" if "val_slack" in spec else " (the training slack, its default, is negative: set val_slack)"
        raise artifacts.ArtifactError(f"{artifact_id}: val_slack must be a number >= 0, got {val_slack!r}{why}")
    return dense_val + val_slack, val_slack


def split_validation(val_tokens: torch.Tensor, n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiled validation stream in two interleaved halves [n, n_ctx + 1]: the even windows feed a run's
    held-out constraint (``heldout_constraint``), the odd ones judge it. Interleaving keeps both halves' mix of
    kinds of code alike (the stream holds the stdlib first, then the generated programs); no token is in both."""
    w = tiled_windows(val_tokens, n_ctx)
    return w[0::2], w[1::2]


def judged_loss(model, dense_model, cfg, slack: float, val_tokens: torch.Tensor | None = None) -> dict:
    """CE of a post-trained model and its dense parent on the judged (odd) validation windows at the model's
    context, and whether the model is within ``slack`` nats of the parent there: :func:`stream_ce_table`'s odd
    half, the table chapter 08's claim reads."""
    t = stream_ce_table({"dense": dense_model, "model": model}, cfg, val_tokens, bound=float(slack), part="odd")
    ce, dense_ce = float(t.loc["model", "CE (nats)"]), float(t.loc["dense", "CE (nats)"])
    return {"windows": int(t.loc["model", "windows"]), "val_loss": ce, "dense_val_loss": dense_ce,
            "slack": float(slack), "bound": dense_ce + float(slack), "within": bool(t.loc["model", "within bound"])}


def heldout_hooks(spec: dict, geco_over: dict, dense_model, cfg, val_tokens) -> tuple[GECO, HeldoutConstraint]:
    """GECO whose λ reads the excess over the dense parent on the even validation windows (spec
    ``heldout_constraint: {batch, every}``; slack = ``geco.tau_slack``); τ reported = the parent's CE there + slack."""
    hc = spec["heldout_constraint"]
    unknown = set(hc) - {"batch", "every"}
    if unknown:
        raise artifacts.ArtifactError(f"heldout_constraint: unknown keys {sorted(unknown)} (known: batch, every)")
    windows = split_validation(val_tokens, cfg.model.n_ctx)[0]
    ref = window_ces(dense_model, windows)
    geco = GECO(GECOConfig.from_dict(geco_over), reference_ce=float(ref.mean()))
    held = HeldoutConstraint(geco, windows, ref, slack=geco.tau - float(ref.mean()), batch=int(hc.get("batch", 4)),
                             every=int(hc.get("every", 1)), seed=cfg.train.seed)
    return geco, held


def produce_gated_lm(ctx: BuildContext) -> None:
    """Post-train ``init_from`` with the gate and GECO (τ = the dense CE on the whole training stream + slack);
    store model and metrics. With ``heldout_constraint`` in the spec, λ reads the excess over the dense parent on
    the even validation windows instead (:func:`heldout_hooks`), and the run is judged on the odd ones
    (``metrics["judged"]``, which ``within_tau`` then refers to)."""
    cfg, geco_over, spec = gated_config(ctx)
    start_id = spec["init_from"]
    start = ctx.dep(start_id)
    check_same_shape(cfg, start.config)
    dense_id = spec.get("reference", start_id)  # the dense model τ refers to
    dense = start
    if dense_id != start_id:
        dense = ctx.dep(dense_id)
        check_same_shape(cfg, dense.config)
    tokens, val_tokens = lm_tokens(cfg)
    dense_val, n_windows = lm_val_loss(dense.model, cfg, val_tokens)
    # GECO constrains the CE of the training batches, so τ is set from the dense model's CE on training windows
    # (the training stream is harder than the validation stream: a τ from the validation CE would ask for a loss
    # below the dense model's own). The stream mixes kinds of code whose CEs differ by ~1.6 nats, so even 8192
    # random windows estimate its mean only to ~0.02 nats, as much as the slack: the reference is the dense CE on
    # the whole training stream (tiled windows, ~2 CPU minutes). "Within τ" is then checked on validation.
    # ``train_context`` (optional, models with learned positions): post-train on windows shorter than the model's
    # context (the gated attention is quadratic in it); τ then comes from the dense CE at that length, and the
    # density trajectory is measured there too. The final statistics are measured at the model's full context.
    tc = spec.get("train_context", cfg.model.n_ctx)
    T_train = int(tc.get(ctx.scale, cfg.model.n_ctx) if isinstance(tc, dict) else tc)  # per scale, or one value
    if T_train > cfg.model.n_ctx:
        raise artifacts.ArtifactError(f"{ctx.artifact_id}: train_context {T_train} exceeds n_ctx {cfg.model.n_ctx}")
    dense_train = stream_ce(dense, tokens, T_train)
    held = None
    if "heldout_constraint" in spec:  # λ reads held-out validation windows; the odd half judges the run
        geco, held = heldout_hooks(spec, geco_over, dense.model, cfg, val_tokens)
        train_slack = held.slack
    else:
        geco = GECO(GECOConfig.from_dict(geco_over), reference_ce=dense_train)
        train_slack = geco.tau - dense_train
    tau_val, val_slack = validation_bound(spec, dense_val, train_slack, ctx.artifact_id)
    probe = eval_windows(val_tokens, 32, T_train, seed=4242)[:, :-1]  # density trajectory windows
    draw = window_sampler(cfg.train.sampling)
    batch_fn = None if T_train == cfg.model.n_ctx else \
        (lambda step: draw(tokens, cfg.train.batch_size, T_train, cfg.train.seed, step))
    traj: dict = {}

    def measure(model):
        st = edge_stats(model, probe)
        return {"density": st["density"], "density_per_layer": st["density_per_layer"]}

    hooks = compose_hooks((held or geco).train_hooks(),
                          trajectory_hooks(measure, cfg.train.eval_every, traj, first_step=True))
    t0 = time.time()
    model, hist = train(cfg, tokens, val_tokens, init_state=start.model.state_dict(), hooks=hooks,
                        progress=ctx.progress, batch_fn=batch_fn)
    wall = time.time() - t0
    val, _ = lm_val_loss(model, cfg, val_tokens)
    st = edge_stats(model, validation_windows(cfg, val_tokens))
    longest = cfg.model.n_ctx if cfg.model.pos_embed else 8 * cfg.model.n_ctx  # learned positions end at n_ctx
    sweep_lengths = [T for T in SWEEP_LENGTHS if T <= longest]
    metrics = {"val_loss": val, "dense_val_loss": dense_val, "val_windows": n_windows, "tau_val": tau_val,
               "within_tau": bool(val <= tau_val), "val_slack": val_slack, "train_slack": train_slack,
               "dense_train_windows_loss": dense_train, "tau_train": geco.tau,
               "geco": geco.state(), "edges": st,
               "density_vs_context": density_vs_context(model, val_tokens, sweep_lengths),
               "dense_density_vs_context": density_vs_context(dense.model, val_tokens, sweep_lengths[:1]),
               "trajectory": traj, "n_params": model.n_params(), "train_seconds": hist.train_seconds,
               "seconds_per_step": hist.train_seconds / max(len(hist.step), 1),
               "tokens_seen": hist.tokens_seen, "tasks": lm_task_metrics(model), "train_context": T_train,
               "dense_tasks": dense.metrics.get("tasks")}
    if held is not None:
        judged = judged_loss(model, dense.model, cfg, val_slack, val_tokens)
        metrics.update(constraint_source="even validation windows", constraint_windows=len(held.windows),
                       judged=judged, within_tau=judged["within"], within_tau_on="judged: odd validation windows")
    save_run(ctx.folder, model, hist, cfg, metrics=metrics, **ctx.manifest_info(
        kind="lm_gated", precision="fp32", wall_time_s=round(wall, 1), geco=geco_over,
        init_from={"id": start_id, "model_sha256": model_sha256(start)},
        **({} if dense_id == start_id else {"reference": {"id": dense_id, "model_sha256": model_sha256(dense)}})))


# --- reading the gates on P1's task prompts ---------------------------------------------------------------------
def display_tokens(ids) -> list[str]:
    """Token strings for axis labels: newlines as ⏎, spaces as ·, tabs as →."""
    tok = load_tokenizer()
    return [tok.decode([int(t)]).replace("\n", "⏎").replace(" ", "·").replace("\t", "→") for t in ids]


def key_positions(ids, chars: str) -> list[int]:
    """Positions of the tokens of ``ids`` whose text contains any of ``chars`` (e.g. the quote or ``[`` tokens)."""
    tok = load_tokenizer()
    return [i for i, t in enumerate(ids) if any(c in tok.decode([int(t)]) for c in chars)]


@torch.no_grad()
def last_query_reads(model, prompts, chars: str) -> dict:
    """Which keys the final position of each prompt reads, per layer (gated model: open gates, union over heads).

    ``prompts``: lists of token ids (the task prompts; the final position predicts the task's answer token);
    prompts longer than the model's context keep their last ``n_ctx`` tokens.
    Returns ``keys`` [n_layer] (mean open keys of the last query, union over heads), ``reads_marked`` [n_layer]
    (fraction of prompts whose last query has an open edge to a token containing one of ``chars``, e.g. the
    opening quote), ``marked_share`` [n_layer] (of the last query's open keys, the mean fraction that are marked
    tokens) and ``n`` (prompts). For a dense model every causal edge is open.
    """
    L = model.cfg.n_layer
    keys, reads, share = torch.zeros(L), torch.zeros(L), torch.zeros(L)
    n = 0
    for ids in prompts:
        ids = [int(t) for t in ids][-model.cfg.n_ctx:]  # like the task evaluation: the last n_ctx tokens
        marked = key_positions(ids, chars)
        g = attention_graph(model, torch.tensor(ids))  # [L, T, T]
        opened = torch.from_numpy(g[:, -1] > 0.5) if model.cfg.attn_gate else torch.ones(L, len(ids), dtype=torch.bool)
        k = opened.sum(1).float()
        on_marked = opened[:, marked].sum(1).float() if marked else torch.zeros(L)
        keys += k
        reads += (on_marked > 0).float()
        share += torch.where(k > 0, on_marked / k.clamp(min=1), torch.zeros(L))
        n += 1
    if n == 0:
        raise ValueError("last_query_reads: no prompts")
    return {"keys": (keys / n).tolist(), "reads_marked": (reads / n).tolist(), "marked_share": (share / n).tolist(),
            "n": n}


@torch.no_grad()
def last_query_weights(model, ids) -> tuple[torch.Tensor, list[str]]:
    """Effective attention weights of the final position, every head: ([n_layer * n_head, T], row labels).

    Dense model: the softmax weights. Gated model: softmax weight × deterministic gate (what actually reaches
    the value sum, without renormalisation), so a shut edge reads 0. ``ids`` longer than ``n_ctx`` keep the end.
    """
    c = model.cfg
    ids = torch.tensor([int(t) for t in ids][-c.n_ctx:]).view(1, -1)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(c.n_layer)]
    if c.attn_gate:
        names += [f"blocks.{layer}.attn.hook_sparse_mask" for layer in range(c.n_layer)]
    cache = eval_record(model, ids, names)
    rows = []
    for layer in range(c.n_layer):
        w = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, -1]  # [n_head, T]
        if c.attn_gate:
            w = w * cache[f"blocks.{layer}.attn.hook_sparse_mask"][0, :, -1]
        rows.append(w)
    labels = [f"L{layer}H{h}" for layer in range(c.n_layer) for h in range(c.n_head)]
    return torch.cat(rows).float(), labels


def reads_table(prompts: dict, probes: dict, models: dict) -> pd.DataFrame:
    """:func:`last_query_reads` of several models on several tasks' prompts, one row per (task, model, layer).

    Args:
        prompts: ``{task: list of prompt token-id lists}``.
        probes: ``{task: marked characters}`` (e.g. ``"[" `` for the bracket task), the tasks in row order.
        models: ``{label: model}``.

    Returns:
        DataFrame indexed by (task, model, layer) with columns "keys read by last position", "reads a marked token
        (%)", "marked share of its keys (%)".
    """
    rows = []
    for name, chars in probes.items():
        for label, model in models.items():
            r = last_query_reads(model, prompts[name], chars)
            for layer in range(model.cfg.n_layer):
                rows.append({"task": name, "model": label, "layer": layer,
                             "keys read by last position": r["keys"][layer],
                             "reads a marked token (%)": 100 * r["reads_marked"][layer],
                             "marked share of its keys (%)": 100 * r["marked_share"][layer]})
    return pd.DataFrame(rows).set_index(["task", "model", "layer"])
