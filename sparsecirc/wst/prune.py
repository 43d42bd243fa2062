"""Circuit extraction by node-mask pruning (P1 §2.2, A.5).

One mask parameter tau per node (hook, index), shared over prompts and positions. Forward uses the hard gate
m = 1[tau > 0]; backward uses the sigmoid surrogate d sigma(tau / T) / d tau (T = ``heaviside_temp``); tau is
clamped to [-1, 1]. A pruned node is **mean-ablated**: replaced by its mean over pretraining text (all positions),
after AbsTopK where the node is an AbsTopK site. Loss = task loss + ``k_coef`` * (number of kept nodes).
After training, the number of kept nodes k (top-k by tau) is **bisected** to the smallest circuit whose task loss
reaches the target (P1: 0.15), with a per-k logit calibration (a positive scale and a per-candidate-token bias: a shift of every logit
by one constant would be a no-op under softmax).

Example::

    means = compute_means(model, windows)
    res = prune_to_circuit(model, tasks.load_task("single_double_quote", "train"), means, PruneConfig())
    res.circuit.n_edges
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sparsecirc.core.config import PruneConfig
from sparsecirc.core.hooks import patch, record
from sparsecirc.core.model import GPT
from sparsecirc.data.tasks import columns, pad_batch
from sparsecirc.wst.circuits import Circuit, count_edges, node_sites


# --- mean-ablation values ------------------------------------------------------------------------------------------
@torch.no_grad()
def compute_means(model: GPT, windows: torch.Tensor, kinds=None, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Mean activation of every node over pretraining ``windows`` [n, pos(+1)], all positions: {hook: [dim]}."""
    sites = node_sites(model, kinds or PruneConfig().node_kinds)
    sums = {name: torch.zeros(dim, dtype=torch.float64) for name, dim in sites.items()}
    n = 0
    model.eval()
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size, :model.cfg.n_ctx]  # training windows carry one extra target token
        with record(model, list(sites)) as c:
            model(w)
        for name in sites:
            sums[name] += c[name].flatten(2).flatten(0, 1).sum(0).double() if c[name].dim() == 4 else \
                c[name].flatten(0, 1).sum(0).double()
        n += w.shape[0] * w.shape[1]
    return {name: (s / n).float() for name, s in sums.items()}


# --- masks --------------------------------------------------------------------------------------------------------
class NodeMask(nn.Module):
    """tau per node; ``gates()`` gives hard 0/1 gates with the sigmoid surrogate gradient."""

    def __init__(self, sites: dict[str, int], cfg: PruneConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.names = list(sites)
        self.temp = cfg.heaviside_temp
        self.tau = nn.ParameterList(
            nn.Parameter((torch.randn(d, generator=generator) * cfg.init_noise_scale + cfg.init_noise_bias)
                         .clamp(-1, 1)) for d in sites.values())

    def gates(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, t in zip(self.names, self.tau):
            soft = torch.sigmoid(t / self.temp)
            out[name] = (t > 0).float() + soft - soft.detach()  # Heaviside forward, sigmoid backward
        return out

    def flat(self) -> torch.Tensor:
        return torch.cat([t.detach() for t in self.tau])

    def topk_nodes(self, k: int) -> dict[str, list[int]]:
        """The ``k`` nodes with the largest tau (ties broken by position), as {hook: sorted indices}."""
        flat = self.flat()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        if k > 0:
            keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
        out, start = {}, 0
        for name, t in zip(self.names, self.tau):
            idx = torch.nonzero(keep[start:start + t.numel()]).flatten().tolist()
            if idx:
                out[name] = idx
            start += t.numel()
        return out


def gates_from_nodes(sites: dict[str, int], nodes: dict[str, list[int]], invert: bool = False) -> dict[str, torch.Tensor]:
    """0/1 gates per hook from a node set (``invert``: ablate exactly those nodes instead)."""
    out = {}
    for name, dim in sites.items():
        g = torch.zeros(dim)
        if nodes.get(name):
            g[torch.tensor(nodes[name])] = 1.0
        out[name] = 1.0 - g if invert else g
    return out


@contextmanager
def ablate(model: GPT, gates: dict[str, torch.Tensor], means: dict[str, torch.Tensor]):
    """Inside the block, node x becomes gate * x + (1 - gate) * mean at every position."""
    def make(g, mu):
        def fn(x):
            shape = x.shape
            flat = x.flatten(2) if x.dim() == 4 else x  # q/k/v: [B, T, H, Dh] -> [B, T, H*Dh]
            return (g * flat + (1 - g) * mu).view(shape)
        return fn
    with patch(model, {name: make(g, means[name]) for name, g in gates.items()}):
        yield


# --- task data ----------------------------------------------------------------------------------------------------
@dataclass
class PairData:
    """Padded prompts of a task split: tokens [n, T], last position [n], candidate ids [n, 2] (target first)."""

    tokens: torch.Tensor
    last: torch.Tensor
    cand: torch.Tensor

    @classmethod
    def from_dataset(cls, ds, n_ctx: int, limit: int | None = None) -> "PairData":
        cols = columns(ds if limit is None else ds.select(range(min(limit, ds.num_rows))))
        tokens, last = pad_batch(cols["prompt_ids"], n_ctx)
        cand = torch.tensor([cols["target_id"], cols["distractor_id"]], dtype=torch.long).T
        return cls(tokens, last, cand)

    def __len__(self) -> int:
        return len(self.last)

    def subset(self, idx: torch.Tensor) -> "PairData":
        tokens = self.tokens[idx]
        T = int(self.last[idx].max()) + 1  # trim padding columns nobody needs
        return PairData(tokens[:, :T], self.last[idx], self.cand[idx])


def pair_margin(model: GPT, data: PairData, batch_size: int = 128) -> torch.Tensor:
    """logit(target) - logit(distractor) at each prompt's last position: [n] (differentiable)."""
    outs = []
    for i in range(0, len(data), batch_size):
        d = data.subset(torch.arange(i, min(i + batch_size, len(data))))
        final = model(d.tokens, positions=d.last)  # [b, vocab]
        two = final.gather(1, d.cand)  # [b, 2]
        outs.append(two[:, 0] - two[:, 1])
    return torch.cat(outs)


def calibrate(margin: torch.Tensor, cand: torch.Tensor, steps: int = 16) -> tuple[dict, float]:
    """Fit a logit scale and a per-candidate-token logit bias (LBFGS): margin' = a * margin + b[target] - b[distractor].

    The bias depends on the token, never on which token is correct, so it cannot leak the label; a single shift of
    every logit would cancel in the two-way softmax. Only tokens that are a candidate in at least a quarter of the
    prompts get a bias (a task's fixed candidates such as `")`/`')`; not the many variable names of tasks like
    ``class_init``, which would otherwise give one free parameter per name). ``a = exp(log_a) > 0``.
    Returns ({"scale", "bias": {id: b}}, calibrated loss); no calibration if the fit does not lower the loss.
    """
    margin = margin.detach().double()
    ids, counts = torch.unique(cand, return_counts=True)
    ids = ids[counts * 4 >= len(cand)]
    onehot = (cand[..., None] == ids).double()  # [n, 2, n_ids]
    diff = onehot[:, 0] - onehot[:, 1]  # [n, n_ids]: +1 target, -1 distractor
    params = torch.zeros(1 + len(ids), dtype=torch.float64, requires_grad=True)

    def calibrated(p):
        return p[0].exp() * margin + diff @ p[1:]

    opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.softplus(-calibrated(params)).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        loss = float(F.softplus(-calibrated(params)).mean())
        plain = float(F.softplus(-margin).mean())
    if not math.isfinite(loss) or loss > plain:
        return {"scale": 1.0, "bias": {}}, plain
    p = params.detach()
    return {"scale": float(p[0].exp()), "bias": {int(i): float(b) for i, b in zip(ids, p[1:])}}, loss


def apply_calibration(margin: torch.Tensor, cand: torch.Tensor, calib: dict | None) -> torch.Tensor:
    """margin' = scale * margin + bias[target] - bias[distractor] (``calib`` from :func:`calibrate`)."""
    if not calib:
        return margin
    bias = calib.get("bias", {})
    b = torch.tensor([[bias.get(int(t), bias.get(str(int(t)), 0.0)) for t in row] for row in cand.tolist()],
                     dtype=margin.dtype)
    return calib["scale"] * margin + b[:, 0] - b[:, 1]


# --- the pruning run ----------------------------------------------------------------------------------------------
@dataclass
class PruneResult:
    """Trained mask, the bisected circuit at each target loss, and the run's history."""

    circuits: dict[float, Circuit]
    full_loss: float  # task loss of the unpruned model on the bisection set
    history: dict = field(default_factory=dict)  # per step: task loss, kept nodes
    seconds: float = 0.0
    order: list[tuple[str, int]] = field(default_factory=list)  # nodes by decreasing tau

    @property
    def circuit(self) -> Circuit:
        """The circuit at the first (default) target."""
        return next(iter(self.circuits.values()))


def train_mask(model: GPT, data: PairData, means: dict[str, torch.Tensor], cfg: PruneConfig,
               progress: bool = False) -> tuple[NodeMask, dict]:
    """Optimise the node mask on ``data`` (model weights frozen)."""
    g = torch.Generator().manual_seed(cfg.seed)
    sites = node_sites(model, cfg.node_kinds)
    mask = NodeMask(sites, cfg, g)
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(mask.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay)
    warm = max(1, round(cfg.warmup_frac * cfg.steps))
    hist = {"task_loss": [], "kept": []}
    model.eval()
    try:
        for step in tqdm(range(cfg.steps), desc="prune", disable=not progress, leave=False):
            lr = cfg.lr * ((step + 1) / warm if step < warm else 1 - (step - warm) / max(1, cfg.steps - warm))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, len(data), (2 * cfg.batch_pairs,), generator=g)
            gates = mask.gates()
            with ablate(model, gates, means):
                margin = pair_margin(model, data.subset(idx))
            task = F.softplus(-margin).mean()  # = -log softmax over the two candidates
            kept = sum(gt.sum() for gt in gates.values())
            loss = task + cfg.k_coef * kept
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mask.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for t in mask.tau:
                    t.clamp_(-1, 1)
            hist["task_loss"].append(float(task.detach()))
            hist["kept"].append(int(kept.detach()))
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return mask, hist


@torch.no_grad()
def masked_loss(model: GPT, data: PairData, means: dict[str, torch.Tensor], gates: dict[str, torch.Tensor],
                calibrate_steps: int = 0) -> tuple[float, float, dict | None]:
    """Task loss and accuracy with ``gates`` applied: (loss, accuracy, calibration or None)."""
    with ablate(model, gates, means):
        margin = pair_margin(model, data)
    calib = None
    if calibrate_steps:
        with torch.enable_grad():
            calib, loss = calibrate(margin, data.cand, calibrate_steps)
    else:
        loss = float(F.softplus(-margin).mean())
    acc = float((apply_calibration(margin, data.cand, calib) > 0).float().mean())
    return loss, acc, calib


def bisect_k(model: GPT, mask: NodeMask, data: PairData, means: dict[str, torch.Tensor], target: float,
             cfg: PruneConfig, cache: dict | None = None) -> tuple[int, float, dict | None] | None:
    """Smallest k whose top-k circuit reaches ``target`` task loss (calibrated).

    The upper end is all nodes, or else the trained mask's own node count (pruning is itself an optimisation and
    can do better than the whole model); None if neither reaches the target.
    """
    sites = node_sites(model, cfg.node_kinds)
    cache = {} if cache is None else cache
    steps = cfg.calib_steps if cfg.calibrate else 0

    def loss_at(k):
        if k not in cache:
            l, _, calib = masked_loss(model, data, means, gates_from_nodes(sites, mask.topk_nodes(k)), steps)
            cache[k] = (l, calib)
        return cache[k]

    n = sum(sites.values())
    trained = int((mask.flat() > 0).sum())  # the mask's own choice; can beat all nodes (e.g. random-init models)
    hi = next((k for k in (n, trained) if loss_at(k)[0] <= target), None)
    if hi is None:
        return None
    lo = 0
    while lo < hi:  # loss is (close to) decreasing in k: the classic lower-bound bisection
        mid = (lo + hi) // 2
        if loss_at(mid)[0] <= target:
            hi = mid
        else:
            lo = mid + 1
    return (hi, *loss_at(hi))


def prune_to_circuit(model: GPT, train_ds, means: dict[str, torch.Tensor], cfg: PruneConfig = PruneConfig(), *,
                     targets: tuple[float, ...] | None = None, task: str = "", progress: bool = False) -> PruneResult:
    """Train a node mask on a task's training pairs and bisect the circuit at each target loss.

    Args:
        model: the model to prune (weights are not changed).
        train_ds: the task's training split (``tasks.load_task(name, "train")``).
        means: ``compute_means(model, pretraining windows)``.
        cfg: pruning hyperparameters; ``cfg.target_loss`` is the first (default) target.
        targets: more target losses to bisect with the same trained mask (P1 Fig. 2 sweeps the target).
    Returns:
        PruneResult with ``circuits[target]`` (missing where even the full model misses the target).
    """
    t0 = time.time()
    data = PairData.from_dataset(train_ds, model.cfg.n_ctx)
    mask, hist = train_mask(model, data, means, cfg, progress)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    eval_data = data.subset(torch.randperm(len(data), generator=g)[:2 * cfg.eval_pairs])
    sites = node_sites(model, cfg.node_kinds)
    full_loss = masked_loss(model, eval_data, means, gates_from_nodes(sites, mask.topk_nodes(sum(sites.values()))))[0]
    circuits, cache = {}, {}
    for target in (cfg.target_loss, *(targets or ())):
        found = bisect_k(model, mask, eval_data, means, target, cfg, cache)
        if found is None:
            continue
        k, loss, calib = found
        nodes = mask.topk_nodes(k)
        circuits[target] = Circuit(task=task, nodes=nodes, edges=count_edges(model, nodes), target_loss=target,
                                   loss=loss, meta={"k": k, "calibration": calib})
    flat = mask.flat()
    names = [(n, i) for n, t in zip(mask.names, mask.tau) for i in range(t.numel())]
    order = [names[i] for i in torch.argsort(flat, descending=True, stable=True).tolist()]
    return PruneResult(circuits=circuits, full_loss=full_loss, history=hist, seconds=time.time() - t0, order=order)


def circuit_metrics(model: GPT, circuit: Circuit, ds, means: dict[str, torch.Tensor], *, invert: bool = False,
                    cfg: PruneConfig = PruneConfig()) -> dict[str, float]:
    """Task loss / accuracy of a circuit on a dataset with its stored calibration (``invert``: ablate the circuit
    and keep everything else, P1's inverse check)."""
    data = PairData.from_dataset(ds, model.cfg.n_ctx)
    gates = gates_from_nodes(node_sites(model, cfg.node_kinds), circuit.nodes, invert=invert)
    with torch.no_grad(), ablate(model, gates, means):
        margin = pair_margin(model, data)
    m = margin if invert else apply_calibration(margin, data.cand, circuit.meta.get("calibration"))
    return {"loss": float(F.softplus(-m).mean()), "accuracy": float((m > 0).float().mean()), "n": len(data)}


def circuit_faithfulness(model: GPT, circuit: Circuit, ds, means: dict[str, torch.Tensor], *,
                         cfg: PruneConfig = PruneConfig()) -> dict:
    """How far a circuit stands in for its full model on ``ds`` (held-out prompts), beside its loss.

    Returns:
        ``full`` / ``uncalibrated`` / ``calibrated``: task loss and accuracy of the full model and of the circuit
        (rest mean-ablated) before and after its stored calibration, whose ``scale`` and ``bias`` (largest |b|)
        are returned too; ``agreement``: fraction of prompts where the calibrated circuit picks the same
        candidate as the full model; ``kl``: mean KL(full || circuit) over the two candidates (nats);
        ``beats_full``: the calibrated circuit's loss is below the full model's (a sign that calibration, not
        the circuit, does the work).
    """
    data = PairData.from_dataset(ds, model.cfg.n_ctx)
    gates = gates_from_nodes(node_sites(model, cfg.node_kinds), circuit.nodes)
    with torch.no_grad():
        full = pair_margin(model, data)
        with ablate(model, gates, means):
            raw = pair_margin(model, data)
    calib = circuit.meta.get("calibration") or {}
    cal = apply_calibration(raw, data.cand, calib)

    def stats(m):
        return {"loss": float(F.softplus(-m).mean()), "accuracy": float((m > 0).float().mean())}

    p = torch.sigmoid(full)  # the full model's probability of the target, of the two candidates
    kl = p * (F.logsigmoid(full) - F.logsigmoid(cal)) + (1 - p) * (F.logsigmoid(-full) - F.logsigmoid(-cal))
    out = {"full": stats(full), "uncalibrated": stats(raw), "calibrated": stats(cal),
           "scale": float(calib.get("scale", 1.0)),
           "bias": max((abs(b) for b in calib.get("bias", {}).values()), default=0.0),
           "agreement": float(((full > 0) == (cal > 0)).float().mean()), "kl": float(kl.mean()), "n": len(data)}
    out["beats_full"] = out["calibrated"]["loss"] < out["full"]["loss"]
    return out
