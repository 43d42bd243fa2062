"""Circuits: kept nodes, the edges between them, counts, JSON round-trip, a networkx graph and a drawing.

Nodes are ``(hook name, index)`` pairs at P1's locations (§2.2): residual reads after each RMSNorm, q/k/v channels,
residual writes of each attention / MLP block, MLP neurons. An **edge** is a nonzero weight entry between two kept
nodes (P1 §2, fn. 3: read -> neuron -> write is 3 nodes / 2 edges). Counted matrices, per layer: W_Q, W_K, W_V
(read -> q/k/v channel), W_O (v channel -> attention write), W_in (read -> neuron), W_out (neuron -> MLP write).
Not counted (as in P1's hand-read circuits): query-key products (no weight), residual identity paths from a write
to a later read of the same channel, embeddings and unembedding.

Example::

    c = load_circuit(run.folder / "circuits" / "<model>__<task>.json", model)
    c.n_nodes, c.n_edges
    fig = draw_circuit(c)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import networkx as nx
import torch

from sparsecirc.artifacts import ArtifactError, atomic_write_bytes
from sparsecirc.core.model import GPT

# kind -> (hook name template, dimension attribute); reads are d_read = d_model (+ concatenated position channels)
NODE_SITES: dict[str, tuple[str, str]] = {
    "attn_read": ("blocks.{l}.ln1.hook_normalized", "d_read"),
    "q": ("blocks.{l}.attn.hook_q", "qkv"),
    "k": ("blocks.{l}.attn.hook_k", "qkv"),
    "v": ("blocks.{l}.attn.hook_v", "qkv"),
    "attn_write": ("blocks.{l}.hook_attn_out", "d_model"),
    "mlp_read": ("blocks.{l}.ln2.hook_normalized", "d_read"),
    "neuron": ("blocks.{l}.mlp.hook_post", "d_mlp"),
    "mlp_write": ("blocks.{l}.hook_mlp_out", "d_model"),
}
# (weight path template, output-node kind, input-node kind): W[out, in] connects input node -> output node
EDGE_MATRICES = [("blocks.{l}.attn.W_Q.weight", "q", "attn_read"), ("blocks.{l}.attn.W_K.weight", "k", "attn_read"),
                 ("blocks.{l}.attn.W_V.weight", "v", "attn_read"), ("blocks.{l}.attn.W_O.weight", "attn_write", "v"),
                 ("blocks.{l}.mlp.W_in.weight", "neuron", "mlp_read"),
                 ("blocks.{l}.mlp.W_out.weight", "mlp_write", "neuron")]


def node_sites(model: GPT, kinds=tuple(NODE_SITES)) -> dict[str, int]:
    """Hook name -> number of nodes at it, for every layer and every kind in ``kinds``."""
    c = model.cfg
    dims = {"d_model": c.d_model, "d_read": c.d_read, "qkv": c.n_head * c.d_head, "d_mlp": c.d_mlp}
    bad = [k for k in kinds if k not in NODE_SITES]
    if bad:
        raise ValueError(f"unknown node kind(s) {bad}; valid: {list(NODE_SITES)}")
    return {NODE_SITES[k][0].format(l=l): dims[NODE_SITES[k][1]] for l in range(c.n_layer) for k in kinds}


def kind_of(hook: str) -> tuple[int, str]:
    """(layer, kind) of a node hook name."""
    layer = int(hook.split(".")[1])
    for k, (tmpl, _) in NODE_SITES.items():
        if tmpl.format(l=layer) == hook:
            return layer, k
    raise ValueError(f"{hook!r} is not a node location")


@torch.no_grad()
def count_edges(model: GPT, nodes: dict[str, list[int]]) -> list[tuple[str, int, str, int, float]]:
    """Edges between kept ``nodes``: ``(src hook, src index, dst hook, dst index, weight)``, nonzero weights only."""
    edges = []
    for l in range(model.cfg.n_layer):
        for wpath, out_kind, in_kind in EDGE_MATRICES:
            out_hook, in_hook = NODE_SITES[out_kind][0].format(l=l), NODE_SITES[in_kind][0].format(l=l)
            outs, ins = nodes.get(out_hook, []), nodes.get(in_hook, [])
            if not outs or not ins:
                continue
            W = model.get_parameter(wpath.format(l=l))  # [out, in]
            sub = W[torch.tensor(outs)][:, torch.tensor(ins)]
            for i, j in torch.nonzero(sub).tolist():
                edges.append((in_hook, ins[j], out_hook, outs[i], float(sub[i, j])))
    return edges


@torch.no_grad()
def residual_edges(model: GPT, nodes: dict[str, list[int]], candidates: list[int] | tuple[int, ...] = ()) -> int:
    """Edges :func:`count_edges` leaves out, for the ``edges_with_residual`` count: residual write -> later read of
    the same channel between kept nodes (an identity path, no weight), and kept write -> candidate unembedding
    entries (nonzero ``unembed`` weight of each candidate token on the written channel; P1 counts neither in its
    headline edges). Embedding -> read paths are not counted."""
    writes, reads = [], []
    for hook, idx in nodes.items():
        layer, kind = kind_of(hook)
        stage = (layer, list(NODE_SITES).index(kind))
        if kind in ("attn_write", "mlp_write"):
            writes += [(stage, i) for i in idx]
        elif kind in ("attn_read", "mlp_read"):
            reads += [(stage, i) for i in idx]
    n = sum(1 for ws, wi in writes for rs, ri in reads if wi == ri and rs > ws)
    if candidates and writes:
        W = model.unembed.weight[torch.tensor(sorted(set(candidates)))]  # [n_cand, d_model]
        chans = torch.tensor([i for _, i in writes])
        n += int((W[:, chans] != 0).sum())
    return n


@dataclass
class Circuit:
    """A pruned circuit: kept nodes per hook, the edges between them, and how well it does the task."""

    task: str
    nodes: dict[str, list[int]]
    edges: list[tuple[str, int, str, int, float]]
    target_loss: float
    loss: float  # task loss of the circuit (mean-ablated complement) on the bisection set, after calibration
    meta: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return sum(len(v) for v in self.nodes.values())

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def to_json(self, model_id: str) -> str:
        """The stored form: the kept nodes, losses and meta, and the edge count; the edges themselves are
        recomputed from the model's weights on load (:meth:`from_json`), so a file cannot disagree with them."""
        return json.dumps({"model": model_id, "task": self.task, "nodes": self.nodes, "target_loss": self.target_loss,
                           "loss": self.loss, "n_edges": self.n_edges, "meta": self.meta}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, model: GPT, source: str = "circuit") -> "Circuit":
        """Rebuild a circuit from :meth:`to_json`'s text: nodes from the text, edges from ``model``'s weights
        (ArtifactError naming ``source`` if their count differs from the stored one: another model's circuit)."""
        d = json.loads(text)
        nodes = {k: list(v) for k, v in d["nodes"].items()}
        edges = count_edges(model, nodes)
        if len(edges) != d["n_edges"]:
            raise ArtifactError(f"{source}: stored {d['n_edges']} edges but the model gives {len(edges)}; "
                                "the circuit does not belong to this model")
        return cls(task=d["task"], nodes=nodes, edges=edges, target_loss=d["target_loss"], loss=d["loss"],
                   meta=d["meta"])

    def save(self, path: str | Path, model_id: str) -> None:
        """Write :meth:`to_json` atomically."""
        atomic_write_bytes(path, self.to_json(model_id).encode())

    def to_networkx(self):
        """A directed graph: node ids ``"hook[i]"`` with ``layer``/``kind``/``hook``/``index`` attributes,
        edges with ``weight``."""
        g = nx.DiGraph()
        for hook, idx in self.nodes.items():
            layer, kind = kind_of(hook)
            for i in idx:
                g.add_node(f"{hook}[{i}]", hook=hook, index=i, layer=layer, kind=kind)
        for s, i, d, j, w in self.edges:
            g.add_edge(f"{s}[{i}]", f"{d}[{j}]", weight=w)
        return g

    def summary(self) -> dict[str, int]:
        """Node counts by kind (summed over layers)."""
        out: dict[str, int] = {}
        for hook, idx in self.nodes.items():
            out[kind_of(hook)[1]] = out.get(kind_of(hook)[1], 0) + len(idx)
        return out


def load_circuit(path: str | Path, model: GPT) -> Circuit:
    """Load a stored circuit (``<study folder>/circuits/<model>__<task>.json``) onto ``model``'s weights."""
    return Circuit.from_json(Path(path).read_text(), model, source=str(path))


_STAGE = {k: i for i, k in enumerate(NODE_SITES)}
_SHORT = {"attn_read": "attn.in", "q": "q", "k": "k", "v": "v", "attn_write": "attn.out", "mlp_read": "mlp.in",
          "neuron": "neuron", "mlp_write": "mlp.out"}


def draw_circuit(circuit: Circuit, *, ax=None, max_label: int = 40, title: str | None = None,
                 figsize: tuple[float, float] | None = None):
    """Layered drawing: columns are node locations in forward order (layer by layer), edge width by |weight|.

    Dashed grey lines are residual identity paths (a write and a later read of the same channel): they carry the
    signal but are not counted as edges. ``figsize`` (inches) overrides the size picked from the circuit's shape
    when the function makes its own figure (no ``ax``).
    """
    g = circuit.to_networkx()
    cols = sorted({(d["layer"], _STAGE[d["kind"]]) for _, d in g.nodes(data=True)})
    col_x = {c: i for i, c in enumerate(cols)}
    pos = {}
    for c in cols:
        members = sorted((n for n, d in g.nodes(data=True) if (d["layer"], _STAGE[d["kind"]]) == c),
                         key=lambda n: g.nodes[n]["index"])
        for r, n in enumerate(members):
            pos[n] = (col_x[c], r - (len(members) - 1) / 2)
    if ax is None:
        height = max(3.0, 0.35 * max((sum(1 for p in pos.values() if p[0] == x) for x in col_x.values()), default=1))
        fig, ax = plt.subplots(figsize=figsize or (max(6.0, 1.5 * len(cols)), min(height, 14)))
    else:
        fig = ax.figure
    wmax = max((abs(w) for *_, w in circuit.edges), default=1.0) or 1.0
    for s, i, d, j, w in circuit.edges:
        (x0, y0), (x1, y1) = pos[f"{s}[{i}]"], pos[f"{d}[{j}]"]
        ax.plot([x0, x1], [y0, y1], color="C3" if w < 0 else "C0", lw=0.5 + 3 * abs(w) / wmax, alpha=0.7, zorder=1)
    writes = [n for n, d in g.nodes(data=True) if d["kind"] in ("attn_write", "mlp_write")]
    reads = [n for n, d in g.nodes(data=True) if d["kind"] in ("attn_read", "mlp_read")]
    for wn in writes:
        for rn in reads:
            a, b = g.nodes[wn], g.nodes[rn]
            if a["index"] == b["index"] and (b["layer"], _STAGE[b["kind"]]) > (a["layer"], _STAGE[a["kind"]]):
                (x0, y0), (x1, y1) = pos[wn], pos[rn]
                ax.plot([x0, x1], [y0, y1], color="0.6", lw=0.8, ls="--", zorder=0)
    for n, (x, y) in pos.items():
        ax.scatter([x], [y], s=60, color="white", edgecolor="k", zorder=2)
        if len(pos) <= max_label:
            ax.annotate(str(g.nodes[n]["index"]), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xticks(range(len(cols)), [f"L{l} {_SHORT[list(_STAGE)[s]]}" for l, s in cols], rotation=45, fontsize=8)
    ax.set_yticks([])
    ax.set_title(title or f"{circuit.task}: {circuit.n_nodes} nodes, {circuit.n_edges} edges", fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig
