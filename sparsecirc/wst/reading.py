"""Reading a circuit, shared by the case studies (quote, variable type, bracket depth; P1 §3.2).

Loading a study's model and its mean-ablation values, pruning at a list of targets, storing the circuit,
which head writes a channel, a node's value at every position, and the same node on pretraining text.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.config import PruneConfig, RunConfig
from sparsecirc.core.hooks import record
from sparsecirc.core.model import GPT
from sparsecirc.core.plotting import token_heatmap
from sparsecirc.core.train import eval_windows
from sparsecirc.data import heldout
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import model_data_version, model_task, task_tokenizer
from sparsecirc.wst.ablation import compute_means
from sparsecirc.wst.circuits import Circuit
from sparsecirc.wst.prune import circuit_faithfulness, circuit_metrics, prune_to_circuit


def study_model(ctx: BuildContext, model_id: str) -> tuple[GPT, RunConfig, torch.Tensor]:
    """(model, its RunConfig, its validation token stream) of a model a study reads, through the build context."""
    run = ctx.dep(model_id)
    return run.model, run.config, lm_tokens(run.config, "val")


def mean_values(model: GPT, cfg: RunConfig, val_tokens: torch.Tensor, pcfg: PruneConfig) -> dict:
    """Mean-ablation values of every node over ``pcfg.n_mean_windows`` validation windows."""
    return compute_means(model, eval_windows(val_tokens, pcfg.n_mean_windows, cfg.model.n_ctx))


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


def short_name(model_id: str) -> str:
    """A zoo model's id without its ``wst-zoo-l2d128-`` / ``wst-zoo2-l4d128-`` prefix (legends, tables and claim
    lines); zoo v2 models keep a ``v2 `` mark."""
    return model_id.replace("wst-zoo-l2d128-", "").replace("wst-zoo2-l4d128-", "v2 ")


def is_registered(model_id: str) -> bool:
    """Is an optional model's book artifact registered? Then it joins the study at both scales (at ci its small
    twin is trained into the cache if missing), so ci mirrors book; the study never trains a book model."""
    return model_id in artifacts.load_registry()


def prune_at_targets(model, means, task: str, pcfg: PruneConfig, targets: list[float]):
    """Prune and keep the circuit at the smallest reached target (P1: 0.15); for a case-study task with a
    held-out prompt set (``data.heldout``), the circuit's faithfulness there as well (``info["heldout"]``)."""
    targets = sorted(targets)
    res = prune_to_circuit(model, model_task(model, task, "train"), means, pcfg.replace(target_loss=targets[0]),
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
    test = model_task(model, task, "test")
    info.update(nodes=c.n_nodes, edges=c.n_edges, loss=c.loss, summary=c.summary(),
                test=circuit_metrics(model, c, test, means),
                inverse=circuit_metrics(model, c, test, means, invert=True))
    ho = None
    if task in heldout.HELDOUT_TASKS:  # prompts written apart from the task generator, never fitted on
        ho = heldout.heldout_pairs(task, task_tokenizer(model_data_version(model)))
        info["heldout"] = circuit_faithfulness(model, c, ho, means, cfg=pcfg)
    cl = res.cleaned.get(chosen)
    if cl is not None:  # pcfg.cleanup: the greedy clean-up of the bisected circuit, reported beside it, never read
        info["cleaned"] = {"nodes": cl.n_nodes, "edges": cl.n_edges, "loss": cl.loss, "summary": cl.summary(),
                           "test": circuit_metrics(model, cl, test, means)}
        if ho is not None:
            info["cleaned"]["heldout"] = circuit_faithfulness(model, cl, ho, means, cfg=pcfg)
    return info, c


def prune_summary(r: dict) -> str:
    """Lines that sum up one case-study task's pruning (``results[name]`` of a case study): the full model's test
    accuracy and task loss, the circuit's (nodes, edges) at every target tried, the one read, and its accuracy and
    agreement with the full model on the held-out prompts (the calibrated circuit's, when that set exists)."""
    p = r["prune"]
    lines = [f"{r['task']} on {r['model']}: full-model test accuracy {r['task_metrics']['accuracy']:.2f}, "
             f"task loss {p['full_loss']:.3f}",
             "   circuit (nodes, edges) at each target: " + str(
                 {t: (v["nodes"], v["edges"]) if v else "not reached" for t, v in p["reached"].items()}),
             f"   read below: target {p['target']}" + ("" if p["target"] in (None, 0.15) else " (P1: 0.15)")
             + f", {p.get('nodes')} nodes, {p.get('edges')} edges"]
    cl = p.get("cleaned")
    if cl:
        lines.append(f"   after the greedy clean-up (not read): {cl['nodes']} nodes, {cl['edges']} edges, test loss "
                     f"{cl['test']['loss']:.3f} (bisected circuit: {p['test']['loss']:.3f})")
    h = p.get("heldout")
    if h:
        lines.append(f"   on the {h['n']} held-out prompts: full model accuracy {h['full']['accuracy']:.2f}, circuit "
                     f"{h['calibrated']['accuracy']:.2f} (uncalibrated {h['uncalibrated']['accuracy']:.2f}), "
                     f"agreement with the full model {h['agreement']:.2f}")
    return "\n".join(lines)


def save_circuit(folder: Path, circuit: Circuit | None, model_id: str, task: str) -> list[str]:
    """Write ``circuits/<model>__<task>.json`` under ``folder``; returns the manifest entries ([] for None)."""
    if circuit is None:
        return []
    name = f"circuits/{model_id}__{task}.json"
    circuit.save(folder / name, model_id)
    return [name]


def claim_arguments(values: dict, stored: dict, scale: str) -> dict[str, dict]:
    """The ``ours`` and ``expect`` arguments of a case study's claim lines, per slug.

    Args:
        values: the claim values recomputed from the study's results (e.g. ``quote_claim_values(res)``).
        stored: the copy the study stored (``res["claims"]``).
        scale: the chapter's SCALE; only at ``"book"`` is the stored value expected.

    Returns:
        ``{slug: {"ours": value, "expect": stored value or None}}``; a ``None`` value (a target the pruning did
        not reach) reads ``"not reached"`` on both sides.
    """
    def shown(v):
        return "not reached" if v is None else v
    book = scale == "book"
    return {slug: {"ours": shown(v), "expect": shown(stored[slug]) if book else None} for slug, v in values.items()}


def node_label(hook: str, index: int) -> str:
    """A short label for a node: ``blocks.1.attn.hook_z``, 78 -> ``L1 z[78]``."""
    return f"{hook.replace('blocks.', 'L').replace('.attn', '').replace('.hook_', ' ')}[{index}]"


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


def corpus_snippets(cfg: RunConfig, texts: tuple[str, ...], n: int = 4, before: int = 6, after: int = 14,
                    seed: int = 0) -> list[list[int]]:
    """:func:`snippets_around` occurrences of the single tokens ``texts`` (e.g. ``('("', "('")``) in the
    *pretraining validation stream* of a model trained with ``cfg`` (``run.config``): for reading a node on
    ordinary code rather than on task prompts. The tokens are looked up in the data version of ``cfg.model``."""
    val = lm_tokens(cfg, "val")
    tok = task_tokenizer(cfg.model.data_version)
    return snippets_around(val, [tok.single_token_id(t) for t in texts], n, before, after, seed)


def snippet_heatmap(model: GPT, snippets: list[list[int]], read: tuple[str, int], title: str = ""):
    """``read`` at every token of each snippet, one row per snippet on one colour scale (symmetric around 0),
    each snippet run with only its own tokens as context; token labels in the model's data version."""

    tok = task_tokenizer(model_data_version(model))
    vals = [position_profile(model, s, tuple(read))["read"] for s in snippets]
    v = float(max(np.abs(x).max() for x in vals)) or 1.0
    width = max(map(len, snippets))
    fig, axes = plt.subplots(len(snippets), 1, figsize=(max(6.0, 0.42 * width), 1.5 * len(snippets) + 0.6),
                             squeeze=False)
    for ax, s, x in zip(axes[:, 0], snippets, vals):
        token_heatmap([tok.decode([t]) for t in s], np.asarray(x, dtype=float)[None], [""], ax=ax, vrange=(-v, v),
                      colorbar=False, max_label=10)
        ax.set_yticks([])
    fig.suptitle(title or f"{node_label(*read)} on pretraining text", fontsize=10)
    fig.tight_layout()
    fig.colorbar(axes[-1, 0].images[0], ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01)
    return fig
