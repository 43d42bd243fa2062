"""Hand-read circuits of P1 §3.2 at CPU scale: one producer (``kind: case_study``) per interpreted task.

The bracket study (P1 §3.2.2, Fig. 5 and 8; chapter 06) prunes ``bracket_counting`` on the weight-sparse model,
looks among the circuit's attention channels for the node that carries list depth, and runs the two attacks P1
derives from the circuit (``attacks.py``) on the sparse model and on dense baselines, which P1 did not test.

Stored: ``results.json`` (metrics, sweeps, fits, attacks, interventions, the claim values the chapter checks) and
``circuits/<model>__<task>.json`` (kept nodes; edges are recomputed from the weights by
``circuit_study.load_circuit``). Run with ``python -m sparsecirc reproduce wst-bracket-circuit-l2d128``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import artifacts, attacks
from .config import PruneConfig
from .hooks import patch
from .model import GPT


# --- the depth node ----------------------------------------------------------------------------------------------
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


def writing_head(model: GPT, hook: str, index: int) -> tuple[int, int]:
    """(layer, head) behind a depth read: the head of a z channel, or for an attention write the head whose
    W_O columns feed that residual channel most strongly."""
    layer, dh = int(hook.split(".")[1]), model.cfg.d_head
    if hook.endswith("hook_z"):
        return layer, index // dh
    w = model.blocks[layer].attn.W_O.weight[index].detach().view(model.cfg.n_head, dh)  # [n_head, d_head]
    return layer, int(w.norm(dim=-1).argmax())


@torch.no_grad()
def position_profile(model: GPT, prompt_ids, read: tuple[str, int] | None = None,
                     head: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """One prompt, position by position: ``read`` (hook, flat index) at every token [T] and the attention of
    ``head`` (layer, head) from the last token to every token [T] (for heatmaps)."""
    from .hooks import record
    hooks = ([read[0]] if read else []) + ([f"blocks.{head[0]}.attn.hook_pattern"] if head else [])
    model.eval()
    with record(model, hooks) as c:
        model(torch.tensor([list(prompt_ids)]))
    out = {}
    if read:
        out["read"] = c[read[0]][0].flatten(1)[:, read[1]].numpy()  # [T]
    if head:
        out["attention"] = c[f"blocks.{head[0]}.attn.hook_pattern"][0, head[1], -1].numpy()  # [T]
    return out


# --- interventions -----------------------------------------------------------------------------------------------
def patched_p_nested(model: GPT, examples, read: tuple[str, int], value: float) -> float:
    """Mean p(``]]``) with the depth read set to ``value`` at each prompt's last position only."""
    from .tasks import pad_batch
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
    the other list kind's mean (p(``]]``) should follow the patched value)."""
    from .circuits import node_sites
    from .prune import ablate, gates_from_nodes
    from .tasks import pair_logits, task_accuracy, task_loss
    site = depth["site"]
    gates = {site[0]: gates_from_nodes(node_sites(model), {site[0]: [site[1]]}, invert=True)[site[0]]}
    full = pair_logits(model, test_ds)
    with ablate(model, gates, means):
        abl = pair_logits(model, test_ds)
    bases = attacks.draw_bases(n_prompts, [length], seed, n_ctx=model.cfg.n_ctx)
    nested = [attacks.list_example(b, length, True, max_tokens=model.cfg.n_ctx) for b in bases]
    flat = [attacks.list_example(b, length, False, max_tokens=model.cfg.n_ctx) for b in bases]
    read = tuple(depth["read"])
    mn, mf = attacks.measure(model, nested, read), attacks.measure(model, flat, read)
    return {"ablate": {"full_loss": float(task_loss(full).mean()), "full_accuracy": float(task_accuracy(full).mean()),
                       "ablated_loss": float(task_loss(abl).mean()),
                       "ablated_accuracy": float(task_accuracy(abl).mean())},
            "patch": {"length": length, "nested_value": float(mn["node"].mean()), "flat_value": float(mf["node"].mean()),
                      "flat_p_nested": float(mf["p_nested"].mean()),
                      "flat_p_nested_patched": patched_p_nested(model, flat, read, float(mn["node"].mean())),
                      "nested_p_nested": float(mn["p_nested"].mean()),
                      "nested_p_nested_patched": patched_p_nested(model, nested, read, float(mf["node"].mean()))}}


# --- the producer ------------------------------------------------------------------------------------------------
def _available(model_id: str) -> bool:
    """Is an optional model's book artifact registered? Then it joins the study at both scales (at ci its small
    twin is trained into the cache if missing), so ci mirrors book; the study never trains a book model."""
    return model_id in artifacts.load_registry()


def _prune(model, means, task: str, pcfg: PruneConfig, targets: list[float]):
    """Prune and keep the circuit at the smallest reached target (P1: 0.15)."""
    from .prune import circuit_metrics, prune_to_circuit
    from .tasks import load_task
    targets = sorted(targets)
    res = prune_to_circuit(model, load_task(task, "train"), means, pcfg.replace(target_loss=targets[0]),
                           targets=tuple(targets[1:]), task=task)
    reached = {str(t): None if t not in res.circuits else
               {"nodes": res.circuits[t].n_nodes, "edges": res.circuits[t].n_edges, "loss": res.circuits[t].loss}
               for t in targets}
    chosen = next((t for t in targets if t in res.circuits), None)
    info = {"targets": targets, "reached": reached, "target": chosen, "seconds": round(res.seconds, 1),
            "full_loss": res.full_loss, "final_kept": res.history["kept"][-1], "prune_config": pcfg.to_dict()}
    if chosen is None:
        return info, None
    c = res.circuits[chosen]
    test = load_task(task, "test")
    info.update(nodes=c.n_nodes, edges=c.n_edges, loss=c.loss, summary=c.summary(),
                test=circuit_metrics(model, c, test, means), inverse=circuit_metrics(model, c, test, means, invert=True))
    return info, c


def _model_attacks(model, sweep_kw: dict, distractors: dict, n_distractor: int, seed: int) -> dict:
    sw = attacks.dilution_sweep(model, **sweep_kw)
    return {"dilution": sw,
            "failure_length": {k: attacks.failure_length(sw["lengths"], sw[k]["p_correct"]) for k in ("nested", "flat")},
            "distractor": {name: attacks.distractor_effect(model, n_distractor, seed, comment=c)
                           for name, c in distractors.items()}}


def produce_case_study(artifact_id: str, scale: str, folder: Path, progress: bool, resume: bool) -> None:
    """Run the study the config names (``study:``; default ``bracket`` for ``task: bracket_counting``) and write
    ``results.json``, the circuit files and the manifest."""
    from .make import read_spec
    spec = read_spec(artifact_id)
    study = spec.get("study", "bracket" if spec.get("task") == "bracket_counting" else None)
    if study not in _STUDIES:
        raise ValueError(f"{artifact_id}: unknown case study {study!r}; known: {sorted(_STUDIES)}")
    sspec = spec["scales"][scale]
    seed = sspec.get("seed", 0)
    pcfg = PruneConfig.from_dict(sspec.get("prune", {}))
    t0 = time.time()
    results, files = _STUDIES[study](spec, sspec, scale, folder, pcfg, seed)
    results["wall_time_s"] = round(time.time() - t0, 1)
    artifacts.write_json(folder / "results.json", results)
    artifacts.write_manifest(folder, ["results.json", *files], id=artifact_id, kind="case_study", scale=scale,
                             seed=seed, config={"spec": spec, "prune": pcfg.to_dict()},
                             wall_time_s=results["wall_time_s"],
                             produced_by=f"python -m sparsecirc reproduce {artifact_id} --scale {scale}")


def _save_circuit(folder: Path, circuit, model_id: str, task: str) -> list[str]:
    from .circuit_study import _nodes_json
    if circuit is None:
        return []
    name = f"circuits/{model_id}__{task}.json"
    artifacts.atomic_write_bytes(folder / name, _nodes_json(circuit, model_id).encode())
    return [name]


def _bracket_study(spec: dict, sspec: dict, scale: str, folder: Path, pcfg: PruneConfig, seed: int):
    from .circuit_study import _lm, _means
    from .circuits import node_sites
    from .tasks import load_task, task_metrics
    task = spec["task"]
    n_prompts, n_distractor = sspec["n_prompts"], sspec["distractor_prompts"]
    lengths = sspec.get("lengths")  # None: 1 .. the longest list that fits the context
    sparse_id = spec["model"]
    others = list(spec.get("compare_models", []))
    skipped = [m for m in spec.get("optional_models", []) if not _available(m)]
    others += [m for m in spec.get("optional_models", []) if m not in skipped]
    model, cfg, val = _lm(sparse_id, scale)
    means = _means(model, cfg, val, pcfg)
    results = {"task": task, "model": sparse_id, "compare_models": others, "skipped_models": skipped, "models": {}}
    results["prune"], circuit = _prune(model, means, task, pcfg, [float(t) for t in sspec.get("targets", spec["targets"])])
    files = _save_circuit(folder, circuit, sparse_id, task)
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
        m = model if mid == sparse_id else _lm(mid, scale)[0]
        extra = {"node": depth["read"], "head": depth["head"]} if mid == sparse_id else {}
        results["models"][mid] = {"task_metrics": task_metrics(m, task), **_model_attacks(
            m, {**kw, **extra}, spec["distractor_comments"], n_distractor, seed)}
    if flat_node is not None:  # the same sweep read through the node that is higher on flat lists
        results["models"][sparse_id]["dilution_flat_node"] = attacks.dilution_sweep(
            model, **kw, node=flat_node["read"], head=flat_node["head"])
    results["depth_fit"] = _depth_fit(results["models"][sparse_id]["dilution"])
    results["interventions"] = interventions(model, depth, means, load_task(task, "test"), n_prompts,
                                             min(8, max(scan["lengths"])), seed)
    results["claims"] = claim_values(results)
    return results, files


def _depth_fit(sw: dict) -> dict:
    fit = {}
    for xname, x in (("tokens", sw["n_tokens"]), ("elements", sw["lengths"])):
        k, a = attacks.fit_power_law(x, sw["nested"]["node"])
        fit[xname] = {"exponent": k, "prefactor": a, "r2": attacks.power_law_r2(x, sw["nested"]["node"])}
    k, a = attacks.fit_power_law(sw["n_tokens"], sw["nested"]["attn_opening"])
    fit["attention_to_opening"] = {"exponent": k, "prefactor": a}
    return fit


# --- quote and variable-type circuits (P1 §3.2.1, §3.2.3; chapter 05) -----------------------------------------
def key_position(task: str, prompt_ids) -> int:
    """The token a task's answer depends on: the opening quote (`` ("`` / `` ('``, the last one) for
    ``single_double_quote``; the initialisation (`` set`` / `` ""`` / `` ''``) after ``current =`` for
    ``set_or_string_fixedvarname``."""
    from .tasks import _tokenizer
    tok, ids = _tokenizer(), list(prompt_ids)
    if task == "single_double_quote":
        opening = {tok.single_token_id('("'), tok.single_token_id("('")}
        return max(i for i, t in enumerate(ids) if t in opening)
    if task == "set_or_string_fixedvarname":
        cur, eq = tok.single_token_id("current"), tok.single_token_id(" =")
        return next(i + 2 for i in range(len(ids) - 2) if ids[i] == cur and ids[i + 1] == eq)
    raise ValueError(f"no key token defined for task {task!r}")


def circuit_reads(nodes: dict[str, list[int]]) -> list[dict]:
    """Every circuit node with where to read it; v channels are read through the head output (``hook_z``)."""
    return [{"site": [h, int(i)], "read": [h.replace("attn.hook_v", "attn.hook_z"), int(i)]}
            for h, idx in sorted(nodes.items()) for i in idx]


def circuit_heads(model: GPT, nodes: dict[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """Attention heads with q, k or v channels in the circuit: {"L{l}H{h}": {"q": [...], "k": [...], "v": [...]}}."""
    out: dict[str, dict[str, list[int]]] = {}
    for hook, idx in sorted(nodes.items()):
        kind = hook.rsplit("hook_", 1)[-1]
        if ".attn.hook_" not in hook or kind not in ("q", "k", "v"):
            continue
        for i in idx:
            key = f"L{hook.split('.')[1]}H{i // model.cfg.d_head}"
            out.setdefault(key, {"q": [], "k": [], "v": []})[kind].append(int(i))
    return dict(sorted(out.items(), key=lambda kv: tuple(int(x) for x in kv[0][1:].split("H"))))


def separation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(mean over A - mean over B) / std over all prompts, per column of a [n_a, k] and b [n_b, k]: +-2 for a clean
    two-valued split (e.g. an embedding read that only sees the key token), 0 for none. Bounded, unlike d',
    which divides by the within-group spread and explodes for deterministic reads."""
    return (a.mean(0) - b.mean(0)) / (np.concatenate([a, b]).std(0) + 1e-12)


@torch.no_grad()
def contrast(model: GPT, ds, task: str, reads: list[dict], heads: list[tuple[int, int]], batch_size: int = 64) -> dict:
    """Node reads and head attention on a task's A prompts (first candidate correct) vs B prompts.

    Per read: mean at the last position and at the key token (:func:`key_position`) for A and B, and their
    :func:`separation`. Per head: attention from the last position to the key token, and to the sink.
    """
    from .hooks import record
    from .tasks import _columns, get_task, pad_batch
    cols = _columns(ds)
    is_a = np.array([t == _tok_id(get_task(task).candidates[0]) for t in cols["target_id"]])
    hooks = sorted({r["read"][0] for r in reads} | {f"blocks.{l}.attn.hook_pattern" for l, _ in heads})
    last_v, key_v, att, sink = [], [], [], []
    model.eval()
    n_ctx = model.cfg.n_ctx
    for i in range(0, len(is_a), batch_size):
        ids = cols["prompt_ids"][i:i + batch_size]
        tokens, last = pad_batch(ids, n_ctx)  # left-truncated to the context, as pair_logits does
        # key position inside the kept window (clamped to 0 if truncation cut it off: only small ci contexts)
        key = torch.tensor([max(0, key_position(task, p) - max(0, len(p) - n_ctx)) for p in ids])
        with record(model, hooks) as c:
            model(tokens)
        last_v.append(torch.stack([attacks._node_value(c[h], last, j) for h, j in (r["read"] for r in reads)], -1))
        key_v.append(torch.stack([attacks._node_value(c[h], key, j) for h, j in (r["read"] for r in reads)], -1))
        rows = torch.arange(len(ids))
        pat = [c[f"blocks.{l}.attn.hook_pattern"][rows, h, last] for l, h in heads]  # each [b, T]
        att.append(torch.stack([p[rows, key] for p in pat], -1) if heads else torch.zeros(len(ids), 0))
        sink.append(torch.stack([1 - p.sum(-1) for p in pat], -1) if heads else torch.zeros(len(ids), 0))
    lv, kv = torch.cat(last_v).numpy(), torch.cat(key_v).numpy()  # [n, k]
    at, sk = torch.cat(att).numpy(), torch.cat(sink).numpy()  # [n, n_heads]
    s_last, s_key = separation(lv[is_a], lv[~is_a]), separation(kv[is_a], kv[~is_a])
    nodes = [{**r, "a_last": float(lv[is_a, j].mean()), "b_last": float(lv[~is_a, j].mean()),
              "sep_last": float(s_last[j]), "a_key": float(kv[is_a, j].mean()), "b_key": float(kv[~is_a, j].mean()),
              "sep_key": float(s_key[j])} for j, r in enumerate(reads)]
    return {"nodes": sorted(nodes, key=lambda r: -abs(r["sep_last"])),
            "heads": [{"head": [l, h], "attn_key_a": float(at[is_a, j].mean()), "attn_key_b": float(at[~is_a, j].mean()),
                       "attn_sink": float(sk[:, j].mean())} for j, (l, h) in enumerate(heads)],
            "n_a": int(is_a.sum()), "n_b": int((~is_a).sum())}


def _tok_id(text: str) -> int:
    from .tasks import _tokenizer
    return _tokenizer().single_token_id(text)


@torch.no_grad()
def patched_accuracy(model: GPT, ds, task: str, read, value_a, value_b) -> dict:
    """Task accuracy with ``read`` at the last position swapped to the other kind's mean (A prompts get
    ``value_b``, B prompts ``value_a``): if the node carries the answer, accuracy should fall far below chance.

    ``read`` is one (hook, flat index) with float values, or a list of them with one value per read (e.g. all of a
    head's value channels at once)."""
    from .tasks import _columns, get_task, pad_batch, pair_logits, task_accuracy
    single = isinstance(read[0], str)
    reads = [tuple(read)] if single else [tuple(r) for r in read]
    va, vb = ([value_a], [value_b]) if single else (list(value_a), list(value_b))
    if not len(reads) == len(va) == len(vb):
        raise ValueError(f"{len(reads)} reads but {len(va)} / {len(vb)} values")
    cols = _columns(ds)
    a_id = _tok_id(get_task(task).candidates[0])
    tokens, last = pad_batch(cols["prompt_ids"], model.cfg.n_ctx)
    is_a = torch.tensor([t == a_id for t in cols["target_id"]])
    cand = torch.tensor([cols["target_id"], cols["distractor_id"]]).T  # [n, 2]
    by_hook: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for (hook, j), a, b in zip(reads, va, vb):
        by_hook.setdefault(hook, []).append((int(j), torch.where(is_a, float(b), float(a))))

    def make(items):
        def fn(x):
            x = x.clone(memory_format=torch.contiguous_format)
            for j, fill in items:
                x.view(x.shape[0], x.shape[1], -1)[torch.arange(len(last)), last, j] = fill
            return x
        return fn
    with patch(model, {h: make(items) for h, items in by_hook.items()}):
        logits = model(tokens, positions=last).gather(1, cand)  # [n, 2]
    plain = pair_logits(model, ds)
    return {"accuracy": float(task_accuracy(plain).mean()), "patched_accuracy": float(task_accuracy(logits).mean())}


def head_value_patch(model: GPT, ds, task: str, contrast_nodes: list[dict], read: tuple[str, int]) -> dict | None:
    """:func:`patched_accuracy` with *every* circuit value channel of the head that owns ``read`` (a ``hook_z``
    read) swapped at once: one channel alone may leave the answer to its siblings. None for other reads."""
    hook, j = read
    if not hook.endswith("attn.hook_z"):
        return None
    dh, layer = model.cfg.d_head, hook.split(".")[1]
    rows = [r for r in contrast_nodes if r["read"][0] == hook and r["read"][1] // dh == j // dh]
    out = patched_accuracy(model, ds, task, [tuple(r["read"]) for r in rows], [r["a_last"] for r in rows],
                           [r["b_last"] for r in rows])
    return {**out, "head": f"L{layer}H{j // dh}", "channels": [int(r["read"][1]) for r in rows]}


def _contrast_task(model, means, task: str, pcfg: PruneConfig, targets, folder: Path, model_id: str):
    """Prune one task, read every circuit node on A vs B test prompts, name the answer-carrying node, patch it."""
    from .tasks import load_task, task_metrics
    info, circuit = _prune(model, means, task, pcfg, targets)
    out = {"task": task, "task_metrics": task_metrics(model, task), "prune": info}
    files = _save_circuit(folder, circuit, model_id, task)
    nodes = circuit.nodes if circuit is not None else {}
    out["heads"] = circuit_heads(model, nodes)
    out["read_from"] = "circuit" if nodes else "model"
    if not nodes:  # an empty circuit (barely trained ci models): read all attention channels instead
        from .circuits import node_sites
        nodes = {h: list(range(d)) for h, d in node_sites(model, ("v", "attn_write")).items()}
    heads = circuit_heads(model, nodes)
    test = load_task(task, "test")
    hl = [(int(k[1:].split("H")[0]), int(k.split("H")[1])) for k in heads]
    out["contrast"] = contrast(model, test, task, circuit_reads(nodes), hl)
    carriers = [r for r in out["contrast"]["nodes"] if r["read"][0].endswith(("hook_attn_out", "hook_z"))]
    if carriers:  # the attention read at the last position that best tells A from B (P1: the copied type channel)
        best = carriers[0]
        out["answer_node"] = best
        out["patch"] = patched_accuracy(model, test, task, tuple(best["read"]), best["a_last"], best["b_last"])
        out["patch_head"] = head_value_patch(model, test, task, out["contrast"]["nodes"], tuple(best["read"]))
    return out, files


def _quote_study(spec: dict, sspec: dict, scale: str, folder: Path, pcfg: PruneConfig, seed: int):
    """Each task on its own model (``models: {name: id}``, default ``model``) and with its own target list
    (``task_targets: {name: [...]}``, default ``targets``; a scale's ``targets`` overrides both)."""
    from .circuit_study import _lm, _means
    results, files, loaded = {}, [], {}
    for name, task in spec["tasks"].items():
        model_id = spec.get("models", {}).get(name, spec["model"])
        if model_id not in loaded:
            model, cfg, val = _lm(model_id, scale)
            loaded[model_id] = (model, _means(model, cfg, val, pcfg))
        model, means = loaded[model_id]
        targets = [float(t) for t in sspec.get("targets", spec.get("task_targets", {}).get(name, spec["targets"]))]
        results[name], f = _contrast_task(model, means, task, pcfg, targets, folder, model_id)
        results[name]["model"] = model_id
        files += f
    if spec.get("distractors"):  # attacks on the variable-type task that its circuit predicts
        from .tasks import load_task
        d = spec["distractors"]
        task = spec["tasks"]["vartype"]
        ids = [spec.get("models", {}).get("vartype", spec["model"])] + list(d.get("compare_models", []))
        ds = load_task(task, "test")
        results["vartype"]["distractor"] = distractor_rows(
            {m: loaded[m][0] if m in loaded else _lm(m, scale)[0] for m in ids}, ds, task, d["prefixes"])
    results["claims"] = quote_claim_values(results)
    return results, files


def distractor_rows(models: dict[str, GPT], ds, task: str, prefixes: list[str]) -> list[dict]:
    """:func:`prefixed_accuracy` of every model with no prefix and with each of ``prefixes``: rows
    ``{"model", "prefix", "accuracy", "accuracy_a", "accuracy_b", "n"}``, the unprefixed row first per model."""
    return [{"model": mid, "prefix": pre, **prefixed_accuracy(m, ds, task, pre)}
            for mid, m in models.items() for pre in ["", *prefixes]]


def distractor_claims(rows: list[dict], attack: str) -> dict:
    """Claim values of a distractor prefix aimed at A prompts: for the first model (the one whose circuit predicts
    the attack) its A accuracy without and with it, and for the others whether the attack also halves it."""
    def acc(mid, pre):
        return next(r["accuracy_a"] for r in rows if r["model"] == mid and r["prefix"] == pre)
    ids = list(dict.fromkeys(r["model"] for r in rows))
    first = ids[0]
    out = {"vartype-distractor-attack": f"{acc(first, ''):.2f} -> {acc(first, attack):.2f} of .add prompts right",
           "vartype-distractor-flips": acc(first, attack) < 0.5}
    out["vartype-distractor-transfers-to-dense"] = "; ".join(
        f"{m.replace('wst-zoo-l2d128-', '')}: {'yes' if acc(m, attack) < 0.5 * acc(m, '') else 'no'} "
        f"({acc(m, ''):.2f} -> {acc(m, attack):.2f})" for m in ids[1:]) or "no dense model"
    return out


def quote_claim_values(results: dict) -> dict:
    """The values chapter 05's claim lines print (recomputed there and checked against this stored copy)."""
    q, v = results["quote"]["prune"], results["vartype"]["prune"]
    out = {"quote-circuit-edges": q.get("edges"), "quote-circuit-nodes": q.get("nodes"),
           "quote-circuit-target": q["target"], "set-or-string-circuit-heads": len(results["vartype"]["heads"]),
           "set-or-string-circuit-target": v["target"]}
    d = results["vartype"].get("distractor")
    if d:
        out.update(distractor_claims(d, next(r["prefix"] for r in d if r["prefix"])))
    return out


_STUDIES = {"bracket": _bracket_study, "quote_and_type": _quote_study}


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

    def short(model_id):
        return model_id.replace("wst-zoo-l2d128-", "")
    return {"bracket-circuit-edges": p.get("edges"), "bracket-circuit-nodes": p.get("nodes"),
            "dilution-failure-length": f"nested {failure_text(fl['nested'], longest)}; "
                                       f"flat {failure_text(fl['flat'], longest)}",
            "dilution-breaks-nested-lists": fl["nested"] is not None,
            "dilution-depth-exponent": results["depth_fit"]["tokens"]["exponent"],
            "dilution-transfers-to-dense": "; ".join(
                f"{short(m)}: " + ("no" if d["failure_length"]["nested"] is None
                                   else f"yes at {failure_text(d['failure_length']['nested'], longest)}")
                for m, d in zip(results["compare_models"], dense)) or "no dense model",
            "distractor-attack": sparse["distractor"]["p1"]["flips_majority"],
            "distractor-attack-double-bracket": sparse["distractor"]["double"]["flips_majority"]}


# --- tables and figures for the chapters -------------------------------------------------------------------------
def _node_label(hook: str, index: int) -> str:
    return f"{hook.replace('blocks.', 'L').replace('.attn', '').replace('.hook_', ' ')}[{index}]"


def node_role(row: dict, strong: float = 1.0) -> str:
    """A reading aid in P1's vocabulary for one :func:`contrast` row (a rule, not a proof; the chapter tests the
    claims by patching):

    - ``type -> last``: tells the two kinds apart at the last token (|sep_last| >= ``strong``), i.e. the answer
      has arrived there;
    - ``type at key``: tells them apart at the key token only (P1's "quote type" channel);
    - ``detector``: on for both kinds at the key token with the same sign and similar size, and much weaker at
      the last token (P1's "quote detector");
    - ``other``: none of these (context, normalisation, or a weak share of the above).
    """
    if abs(row["sep_last"]) >= strong:
        return "type -> last"
    if abs(row["sep_key"]) >= strong:
        return "type at key"
    a, b = row["a_key"], row["b_key"]
    lo, hi = min(abs(a), abs(b)), max(abs(a), abs(b))
    if a * b > 0 and lo >= 0.5 * hi and lo > 2 * max(abs(row["a_last"]), abs(row["b_last"])):
        return "detector"
    return "other"


def role_counts(part: dict, strong: float = 1.0) -> dict[str, int]:
    """How many circuit nodes :func:`node_role` puts in each role."""
    out = {"type -> last": 0, "type at key": 0, "detector": 0, "other": 0}
    for row in part["contrast"]["nodes"]:
        out[node_role(row, strong)] += 1
    return out


def snippets_around(stream: torch.Tensor, token_ids, n: int = 4, before: int = 6, after: int = 14,
                    seed: int = 0) -> list[list[int]]:
    """``n`` windows of a 1-D token ``stream``, each ``before`` tokens before an occurrence of any of
    ``token_ids`` to ``after`` tokens after it, occurrences drawn at random (seeded), returned in stream order."""
    ids = torch.as_tensor(list(token_ids))
    where = torch.nonzero(torch.isin(stream, ids)).flatten()
    where = where[(where >= before) & (where + after < len(stream))]
    if len(where) == 0:
        raise ValueError(f"none of the token ids {ids.tolist()} occurs in the stream (length {len(stream)}) with "
                         f"{before} tokens before and {after} after it")
    g = torch.Generator().manual_seed(seed)
    pick = where[torch.randperm(len(where), generator=g)[:n]].sort().values
    return [stream[int(i) - before:int(i) + after + 1].tolist() for i in pick]


def corpus_snippets(model_id: str, texts: tuple[str, ...], n: int = 4, before: int = 6, after: int = 14,
                    scale: str = "book", seed: int = 0) -> list[list[int]]:
    """:func:`snippets_around` occurrences of the single tokens ``texts`` (e.g. ``('("', "('")``) in the model's
    *pretraining validation stream*: for reading a node on ordinary code rather than on task prompts."""
    from .make import _folder_for, load, lm_tokens
    from .tasks import _tokenizer
    run = load(model_id, _folder_for(model_id, scale), scale)
    val = lm_tokens(run.extra["config"])[1]
    tok = _tokenizer()
    return snippets_around(val, [tok.single_token_id(t) for t in texts], n, before, after, seed)


def snippet_heatmap(model: GPT, snippets: list[list[int]], read: tuple[str, int], title: str = ""):
    """``read`` at every token of each snippet, one row per snippet on one colour scale (symmetric around 0),
    each snippet run with only its own tokens as context."""
    import matplotlib.pyplot as plt

    from .plotting import token_heatmap
    from .tasks import _tokenizer
    tok = _tokenizer()
    vals = [position_profile(model, s, tuple(read))["read"] for s in snippets]
    v = float(max(np.abs(x).max() for x in vals)) or 1.0
    width = max(map(len, snippets))
    fig, axes = plt.subplots(len(snippets), 1, figsize=(max(6.0, 0.42 * width), 1.5 * len(snippets) + 0.6),
                             squeeze=False)
    for ax, s, x in zip(axes[:, 0], snippets, vals):
        token_heatmap([tok.decode([t]) for t in s], np.asarray(x, dtype=float)[None], [""], ax=ax, vrange=(-v, v),
                      colorbar=False, max_label=10)
        ax.set_yticks([])
    fig.suptitle(title or f"{_node_label(*read)} on pretraining text", fontsize=10)
    fig.tight_layout()
    fig.colorbar(axes[-1, 0].images[0], ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01)
    return fig


def contrast_table(part: dict, by: str = "sep_last", n: int = 8, kinds: tuple[str, ...] | None = None,
                   role: str | None = None):
    """The ``n`` circuit nodes with the largest |``by``| (``sep_last`` or ``sep_key``) of a contrast study part,
    optionally only of some node ``kinds`` (``circuits.NODE_SITES`` keys) or one :func:`node_role`, as a pandas
    DataFrame: the role, means on A and B prompts at the key and the last token, and their separation."""
    import pandas as pd

    from .circuits import kind_of
    t = pd.DataFrame(part["contrast"]["nodes"])
    if t.empty:
        return t
    if kinds:
        t = t[[kind_of(h)[1] in kinds for h, _ in t["site"]]]
    t["node"] = [_node_label(h, i) for h, i in t["site"]]
    t["role"] = [node_role(r) for r in t.to_dict("records")]
    if role is not None:
        t = t[t["role"] == role]
    cols = ["node", "role", "a_key", "b_key", "sep_key", "a_last", "b_last", "sep_last"]
    return t.reindex(t[by].abs().sort_values(ascending=False).index)[cols].head(n).round(3).reset_index(drop=True)


def head_table(part: dict):
    """The circuit's attention heads: kept q/k/v channels and attention from the last token to the key token (A
    and B prompts) and to the sink, as a pandas DataFrame."""
    import pandas as pd
    att = {tuple(h["head"]): h for h in part["contrast"]["heads"]}
    rows = []
    for name, ch in part["heads"].items():
        a = att.get((int(name[1:].split("H")[0]), int(name.split("H")[1])), {})
        rows.append({"head": name, "q": len(ch["q"]), "k": len(ch["k"]), "v": len(ch["v"]),
                     "attn to key (A)": a.get("attn_key_a"), "attn to key (B)": a.get("attn_key_b"),
                     "attn to sink": a.get("attn_sink")})
    return pd.DataFrame(rows).round(3)


def _named_position(name: str, key: int, last: int) -> int:
    """``"last"``, ``"key"`` or ``"key-2"`` / ``"key+1"`` (offsets from :func:`key_position`) as an index."""
    if name == "last":
        return last
    if not name.startswith("key"):
        raise ValueError(f"position name must be 'last', 'key' or 'key±n', got {name!r}")
    try:
        return key + (int(name[3:]) if name[3:] else 0)
    except ValueError:
        raise ValueError(f"position name must be 'last', 'key' or 'key±n', got {name!r}") from None


@torch.no_grad()
def hop_attention(model: GPT, ds, task: str, heads: list[str],
                  hops: tuple[tuple[str, str], ...] = (("key", "key-2"), ("last", "key"), ("last", "key+1"),
                                                       ("last", "key-2")), batch_size: int = 64):
    """Mean attention of each head from one named position of a task's prompts to another, as a DataFrame.

    Positions are ``"last"``, ``"key"`` (:func:`key_position`) or an offset from it (``"key-2"``). The defaults
    test P1's two-hop variable-type circuit: the initialisation token looking back at the ``current`` it is
    assigned to (``key -> key-2``), and the final ``current`` looking at the initialisation (``last -> key``,
    ``key+1`` for the ``()`` of ``set()``) or straight at the earlier ``current``. ``heads``: names ``"L{l}H{h}"``
    (the keys of :func:`circuit_heads`). Columns ``"q -> k"`` plus ``"last -> sink"``; rows the heads.
    """
    import pandas as pd
    from .hooks import record
    from .tasks import _columns, pad_batch
    parsed = [(int(n[1:].split("H")[0]), int(n.split("H")[1])) for n in heads]
    for l, h in parsed:
        if not (0 <= l < model.cfg.n_layer and 0 <= h < model.cfg.n_head):
            raise ValueError(f"head L{l}H{h} is not in a model with {model.cfg.n_layer} layers x {model.cfg.n_head} heads")
    ids_all = _columns(ds)["prompt_ids"]
    n_ctx = model.cfg.n_ctx
    sums = np.zeros((len(parsed), len(hops) + 1))
    model.eval()
    for i in range(0, len(ids_all), batch_size):
        ids = ids_all[i:i + batch_size]
        tokens, last = pad_batch(ids, n_ctx)
        with record(model, sorted({f"blocks.{l}.attn.hook_pattern" for l, _ in parsed})) as c:
            model(tokens)
        for b, p in enumerate(ids):
            key = key_position(task, p) - max(0, len(p) - n_ctx)
            pos = [(_named_position(q, key, int(last[b])), _named_position(k, key, int(last[b]))) for q, k in hops]
            for j, (l, h) in enumerate(parsed):
                pat = c[f"blocks.{l}.attn.hook_pattern"][b, h]  # [T, T]
                for m, (q, k) in enumerate(pos):
                    sums[j, m] += float(pat[q, k]) if 0 <= k <= q else 0.0
                sums[j, -1] += 1.0 - float(pat[int(last[b])].sum())
    cols = [f"{q} -> {k}" for q, k in hops] + ["last -> sink"]
    return pd.DataFrame(sums / len(ids_all), index=list(heads), columns=cols).round(3)


@torch.no_grad()
def prefixed_accuracy(model: GPT, ds, task: str, prefix: str) -> dict:
    """Task accuracy with ``prefix`` (source text, e.g. an unrelated line of code) put before every prompt.

    Each prompt is re-tokenized as ``prefix + prompt``; A prompts (first candidate correct) and B prompts are
    scored apart, since a distractor aimed at one kind should only move that kind. Returns ``{"accuracy",
    "accuracy_a", "accuracy_b", "n"}``; with ``prefix=""`` this is the plain task accuracy.
    """
    from .tasks import _tokenizer, get_task, pair_logits, task_accuracy
    tok = _tokenizer()
    rows = ds.with_format(None)[:] if hasattr(ds, "with_format") else ds
    ids = [tok.encode(prefix + p) for p in rows["prompt"]]
    data = {"prompt_ids": ids, "target_id": list(rows["target_id"]), "distractor_id": list(rows["distractor_id"])}
    ok = task_accuracy(pair_logits(model.eval(), data)).float().numpy()
    is_a = np.array([t == _tok_id(get_task(task).candidates[0]) for t in rows["target_id"]])
    return {"accuracy": float(ok.mean()), "accuracy_a": float(ok[is_a].mean()), "accuracy_b": float(ok[~is_a].mean()),
            "n": int(len(ok))}


def distractor_plot(rows: list[dict], labels: tuple[str, str] = ("A prompts", "B prompts"), title: str = ""):
    """Grouped bars of :func:`distractor_rows`: one panel per model, one group per prefix, A and B accuracy."""
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rows))
    prefixes = list(dict.fromkeys(r["prefix"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False, sharey=True)
    x = np.arange(len(prefixes))
    for ax, mid in zip(axes[0], models):
        by = {r["prefix"]: r for r in rows if r["model"] == mid}
        for k, (key, lab) in enumerate(zip(("accuracy_a", "accuracy_b"), labels)):
            ax.bar(x + (k - 0.5) * 0.38, [by[p][key] if p in by else np.nan for p in prefixes], 0.38, label=lab)
        ax.set_xticks(x, ["(none)" if not p else repr(p)[1:-1] for p in prefixes], rotation=20, fontsize=8,
                      family="monospace", ha="right")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=mid, ylim=(0, 1.05))
    axes[0, 0].set_ylabel("accuracy")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def pair_heatmap(model: GPT, task: str, pair, read: tuple[str, int]):
    """Heatmap of ``read`` at every token of a task pair (rows: the two prompts, labelled by their targets). The
    prompts share a prefix and a suffix; the differing middle tokens (``("|('``, `` set()| ""``) share columns,
    the shorter side padded with 0."""
    from .plotting import token_heatmap
    from .tasks import _tokenizer
    tok = _tokenizer()
    ids = [list(r["prompt_ids"]) for r in pair]
    vals = [position_profile(model, i, tuple(read))["read"] for i in ids]
    n = min(map(len, ids))
    pre = next((k for k in range(n) if ids[0][k] != ids[1][k]), n)  # common prefix
    suf = 0  # common suffix, not overlapping the prefix
    while suf < n - pre and ids[0][-1 - suf] == ids[1][-1 - suf]:
        suf += 1
    mids = [i[pre:len(i) - suf] for i in ids]
    width = max(map(len, mids))
    rows = np.zeros((2, pre + width + suf))
    for r, (v, m) in enumerate(zip(vals, mids)):
        rows[r, :pre + len(m)] = v[:pre + len(m)]
        rows[r, pre + width:] = v[len(v) - suf:]
    middle = ["|".join(tok.decode([m[k]]) if k < len(m) else "" for m in mids) for k in range(width)]
    toks = [tok.decode([t]) for t in ids[0][:pre]] + middle + [tok.decode([t]) for t in ids[0][len(ids[0]) - suf:]]
    return token_heatmap(toks, rows, [repr(r["target"]) for r in pair], title=f"{_node_label(*read)} at each token")
