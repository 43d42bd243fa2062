"""Reading a two-kind task's circuit node by node (P1 §3.2.1 and §3.2.3; chapter 05).

Every circuit node is read on the task's A prompts and B prompts (e.g. ``("`` vs ``('``); the node that best
tells them apart at the last token is patched with the other kind's mean, and so is every circuit value channel
of its head. Node roles (:func:`node_role`) name the nodes in P1's vocabulary.

Data versions: a function given a model reads the task data and token ids of the model's data version
(``tasks.model_data_version``); one without a model takes ``version`` (default ``"v1"``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sparsecirc.core.config import PruneConfig
from sparsecirc.core.hooks import patch, record
from sparsecirc.core.model import GPT
from sparsecirc.core.plotting import token_heatmap
from sparsecirc.data.tasks import (
    columns,
    get_task,
    model_data_version,
    model_task,
    pad_batch,
    pair_logits,
    task_accuracy,
    task_metrics,
    task_tokenizer,
)
from sparsecirc.data.versions import DEFAULT_VERSION, get_version
from sparsecirc.wst import attacks
from sparsecirc.wst.circuits import kind_of, node_sites
from sparsecirc.wst.reading import (
    node_label,
    position_profile,
    prune_at_targets,
    save_circuit,
)


def key_position(task: str, prompt_ids, version: str = DEFAULT_VERSION) -> int:
    """The token a task's answer depends on, in data version ``version`` (default v1): the opening quote for
    ``single_double_quote``; the initialisation (`` set`` / `` ""`` / `` ''``) after ``current =`` for
    ``set_or_string_fixedvarname``.

    The opening quote is the last `` ("`` / `` ('`` token in v1; in v2, whose prompts also open the string after
    an argument (`` "``), on a line of its own (``"``) or merged with its first letters (``'s``), it is the last
    token holding a quote character (the string's words hold none)."""
    tok, ids = task_tokenizer(version), list(prompt_ids)
    if task == "single_double_quote":
        if get_version(version).name != DEFAULT_VERSION:
            return max(i for i, t in enumerate(ids) if set(tok.decode([t])) & set("\"'"))
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
    :func:`separation`. Per head: attention from the last position to the key token, and to the sink. ``ds`` is
    task data in the model's data version (``tasks.model_task``), whose token ids it reads.
    """
    version = model_data_version(model)
    cols = columns(ds)
    is_a = np.array([t == token_id(get_task(task).candidates[0], version) for t in cols["target_id"]])
    hooks = sorted({r["read"][0] for r in reads} | {f"blocks.{l}.attn.hook_pattern" for l, _ in heads})
    last_v, key_v, att, sink = [], [], [], []
    model.eval()
    n_ctx = model.cfg.n_ctx
    for i in range(0, len(is_a), batch_size):
        ids = cols["prompt_ids"][i:i + batch_size]
        tokens, last = pad_batch(ids, n_ctx)  # left-truncated to the context, as pair_logits does
        # key position inside the kept window (clamped to 0 if truncation cut it off: only small ci contexts)
        key = torch.tensor([max(0, key_position(task, p, version) - max(0, len(p) - n_ctx)) for p in ids])
        with record(model, hooks) as c:
            model(tokens)
        last_v.append(torch.stack([attacks.node_value(c[h], last, j) for h, j in (r["read"] for r in reads)], -1))
        key_v.append(torch.stack([attacks.node_value(c[h], key, j) for h, j in (r["read"] for r in reads)], -1))
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


def token_id(text: str, version: str = DEFAULT_VERSION) -> int:
    """The id of the single token ``text`` in data version ``version``'s tokenizer (default v1)."""
    return task_tokenizer(version).single_token_id(text)


@torch.no_grad()
def patched_accuracy(model: GPT, ds, task: str, read, value_a, value_b) -> dict:
    """Task accuracy with ``read`` at the last position swapped to the other kind's mean (A prompts get
    ``value_b``, B prompts ``value_a``): if the node carries the answer, accuracy should fall far below chance.

    ``read`` is one (hook, flat index) with float values, or a list of them with one value per read (e.g. all of a
    head's value channels at once). ``ds`` is task data in the model's data version (``tasks.model_task``)."""
    single = isinstance(read[0], str)
    reads = [tuple(read)] if single else [tuple(r) for r in read]
    va, vb = ([value_a], [value_b]) if single else (list(value_a), list(value_b))
    if not len(reads) == len(va) == len(vb):
        raise ValueError(f"{len(reads)} reads but {len(va)} / {len(vb)} values")
    cols = columns(ds)
    a_id = token_id(get_task(task).candidates[0], model_data_version(model))
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


def head_value_patch(model: GPT, ds, task: str, contrast_nodes: list[dict],
                     read: tuple[str, int] | None = None) -> dict | None:
    """:func:`patched_accuracy` with *every* circuit value channel of one head swapped at once: one channel alone
    may leave the answer to its siblings. The head owns ``read`` (a ``hook_z`` read); without one (or for another
    kind of read, e.g. an attention write) it is the head of the value channel that best tells the kinds apart at
    the last token (the first ``hook_z`` row of ``contrast_nodes``, which :func:`contrast` sorts). None when the
    circuit has no value channel."""
    if read is None or not read[0].endswith("attn.hook_z"):
        read = next((tuple(r["read"]) for r in contrast_nodes if r["read"][0].endswith("attn.hook_z")), None)
        if read is None:
            return None
    hook, j = read
    dh, layer = model.cfg.d_head, hook.split(".")[1]
    rows = [r for r in contrast_nodes if r["read"][0] == hook and r["read"][1] // dh == j // dh]
    out = patched_accuracy(model, ds, task, [tuple(r["read"]) for r in rows], [r["a_last"] for r in rows],
                           [r["b_last"] for r in rows])
    return {**out, "head": f"L{layer}H{j // dh}", "channels": [int(r["read"][1]) for r in rows]}


def contrast_task(model, means, task: str, pcfg: PruneConfig, targets, folder: Path, model_id: str):
    """Prune one task, read every circuit node on A vs B test prompts, name the answer-carrying node, patch it
    (the task data of the model's data version throughout)."""
    info, circuit = prune_at_targets(model, means, task, pcfg, targets)
    out = {"task": task, "task_metrics": task_metrics(model, task), "prune": info}
    files = save_circuit(folder, circuit, model_id, task)
    nodes = circuit.nodes if circuit is not None else {}
    out["heads"] = circuit_heads(model, nodes)
    out["read_from"] = "circuit" if nodes else "model"
    if not nodes:  # an empty circuit (barely trained ci models): read all attention channels instead
        nodes = {h: list(range(d)) for h, d in node_sites(model, ("v", "attn_write")).items()}
    heads = circuit_heads(model, nodes)
    test = model_task(model, task, "test")
    hl = [(int(k[1:].split("H")[0]), int(k.split("H")[1])) for k in heads]
    out["contrast"] = contrast(model, test, task, circuit_reads(nodes), hl)
    carriers = [r for r in out["contrast"]["nodes"] if r["read"][0].endswith(("hook_attn_out", "hook_z"))]
    if carriers:  # the attention read at the last position that best tells A from B (P1: the copied type channel)
        best = carriers[0]
        out["answer_node"] = best
        out["patch"] = patched_accuracy(model, test, task, tuple(best["read"]), best["a_last"], best["b_last"])
        out["patch_head"] = head_value_patch(model, test, task, out["contrast"]["nodes"], tuple(best["read"]))
    return out, files


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


def contrast_table(part: dict, by: str = "sep_last", n: int = 8, kinds: tuple[str, ...] | None = None,
                   role: str | None = None):
    """The ``n`` circuit nodes with the largest |``by``| (``sep_last`` or ``sep_key``) of a contrast study part,
    optionally only of some node ``kinds`` (``circuits.NODE_SITES`` keys) or one :func:`node_role`, as a pandas
    DataFrame: the role, means on A and B prompts at the key and the last token, and their separation."""

    t = pd.DataFrame(part["contrast"]["nodes"])
    if t.empty:
        return t
    if kinds:
        t = t[[kind_of(h)[1] in kinds for h, _ in t["site"]]]
    t["node"] = [node_label(h, i) for h, i in t["site"]]
    t["role"] = [node_role(r) for r in t.to_dict("records")]
    if role is not None:
        t = t[t["role"] == role]
    cols = ["node", "role", "a_key", "b_key", "sep_key", "a_last", "b_last", "sep_last"]
    return t.reindex(t[by].abs().sort_values(ascending=False).index)[cols].head(n).round(3).reset_index(drop=True)


def head_table(part: dict):
    """The circuit's attention heads: kept q/k/v channels and attention from the last token to the key token (A
    and B prompts) and to the sink, as a pandas DataFrame."""
    att = {tuple(h["head"]): h for h in part["contrast"]["heads"]}
    rows = []
    for name, ch in part["heads"].items():
        a = att.get((int(name[1:].split("H")[0]), int(name.split("H")[1])), {})
        rows.append({"head": name, "q": len(ch["q"]), "k": len(ch["k"]), "v": len(ch["v"]),
                     "attn to key (A)": a.get("attn_key_a"), "attn to key (B)": a.get("attn_key_b"),
                     "attn to sink": a.get("attn_sink")})
    return pd.DataFrame(rows).round(3)


def pair_heatmap(model: GPT, task: str, pair, read: tuple[str, int]):
    """Heatmap of ``read`` at every token of a task pair (rows: the two prompts, labelled by their targets). The
    prompts share a prefix and a suffix; the differing middle tokens (``("|('``, `` set()| ""``) share columns,
    the shorter side padded with 0. ``pair`` holds task rows of the model's data version, whose tokenizer labels
    the columns."""
    tok = task_tokenizer(model_data_version(model))
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
    return token_heatmap(toks, rows, [repr(r["target"]) for r in pair], title=f"{node_label(*read)} at each token")
