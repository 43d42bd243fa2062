"""The bridges chapter's artifact (P1 §3.3, A.3-A.4): ``kind: bridges``.

Trains bridges (:mod:`sparsecirc.wst.bridges`) between a frozen dense model and a weight-sparse one, either with the
sparse model (``mode: joint``: the sparse model is trained on together with its bridges, from ``sparse`` as
initialisation, and becomes a new model) or onto the frozen sparse model (``mode: frozen``), then measures:

* every hybrid's cross-entropy on validation text and its task loss and accuracy on P1 task prompts
  (:func:`hybrid_table`), beside both pure models;
* P1's steering demos (:func:`steering_curve`): one sparse read channel, chosen on a task's train split as the
  one that best separates the two prompt kinds, moved from its value on the actual prompt toward its value on the
  counterfactual one, through the decoder, into the dense model; the probability of the counterfactual answer
  against strength, beside random directions of the same norm.

Resumable (``reproduce <id> --resume``); the run folder holds the sparse model, ``extra.safetensors`` (the bridges)
and ``metrics.json``. :func:`load_bridged` returns (dense, sparse, bridges) from it.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sparsecirc import artifacts
from sparsecirc.context import BuildContext
from sparsecirc.core.train import eval_windows, load_extra, save_run, train
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import columns, model_task, pad_batch, pair_logits, task_accuracy, task_loss
from sparsecirc.data.tokenizer import load_tokenizer
from sparsecirc.paths import cache_dir
from sparsecirc.wst import bridges as B

STRENGTHS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


# --- evaluation -------------------------------------------------------------------------------------------------
@torch.no_grad()
def window_ce(model, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token CE of any GPT-like module (a :class:`bridges.Hybrid` too) on ``windows`` [n, T + 1]."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size]
        logits = model(w[:, :-1])
        total += float(F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
        count += w[:, 1:].numel()
    return total / count


@torch.no_grad()
def site_nmse(dense, sparse, bridges, windows: torch.Tensor) -> dict[str, list[float]]:
    """Per site: NMSE of the encoder (dense -> sparse) and of the decoder (sparse -> dense) on ``windows``."""
    hd, _ = B.residuals(dense, windows[:, :-1])
    hs, _ = B.residuals(sparse, windows[:, :-1])
    return {"enc": [float(B.nmse(bridges.encode(i, d), s)) for i, (d, s) in enumerate(zip(hd, hs))],
            "dec": [float(B.nmse(bridges.decode(i, s), d)) for i, (d, s) in enumerate(zip(hd, hs))]}


def task_scores(model, tasks: list[str], n: int) -> dict[str, float]:
    """Mean task loss and accuracy over ``tasks`` (first ``n`` test prompts of each)."""
    loss, acc = [], []
    for t in tasks:
        ds = model_task(model, t, "test")
        ds = ds.select(range(min(n, ds.num_rows)))
        lg = pair_logits(model, ds)
        loss.append(float(task_loss(lg).mean()))
        acc.append(float(task_accuracy(lg).mean()))
    return {"task_loss": float(np.mean(loss)), "task_accuracy": float(np.mean(acc))}


def hybrid_table(dense, sparse, bridges, windows: torch.Tensor, tasks: list[str], n_task: int) -> dict:
    """CE on ``windows`` and mean task loss / accuracy of both pure models and every hybrid (per site, both
    directions: ``d2s`` = dense prefix, encoder, sparse suffix; ``s2d`` = sparse prefix, decoder, dense suffix)."""
    out = {"sites": B.site_names(dense.cfg.n_layer), "pure": {}, "d2s": [], "s2d": []}
    for name, m in (("dense", dense), ("sparse", sparse)):
        out["pure"][name] = {"ce": window_ce(m, windows), **task_scores(m, tasks, n_task)}
    for i in range(B.n_sites(dense)):
        for direction, (pre, suf) in (("d2s", (dense, sparse)), ("s2d", (sparse, dense))):
            h = B.Hybrid(pre, suf, bridges, i, direction).eval()
            out[direction].append({"ce": window_ce(h, windows), **task_scores(h, tasks, n_task)})
    out["nmse"] = site_nmse(dense, sparse, bridges, windows[:64])
    return out


# --- steering ---------------------------------------------------------------------------------------------------
def steering_pairs(model, task: str, split: str, steer_to: str) -> dict:
    """Equal-length (actual, counterfactual) prompt pairs of ``task``: the actual prompt's answer is not
    ``steer_to``, its partner's (same pair) is. Returns padded tokens, last positions and the token id."""
    tok = load_tokenizer(version=model.cfg.data_version)
    ids = tok.encode(steer_to)
    if len(ids) != 1:
        raise ValueError(f"steer_to {steer_to!r} is {len(ids)} tokens; it must be one")
    target = ids[0]
    cols = columns(model_task(model, task, split))
    acts, cfs = [], []
    for i in range(0, len(cols["prompt_ids"]) - 1, 2):
        a, b = list(cols["prompt_ids"][i]), list(cols["prompt_ids"][i + 1])
        ta, tb = cols["target_id"][i], cols["target_id"][i + 1]
        if tb == target and ta != target:
            pass
        elif ta == target and tb != target:
            a, b = b, a
        else:
            continue
        if len(a) == len(b) <= model.cfg.n_ctx:
            acts.append(a)
            cfs.append(b)
    if not acts:
        raise ValueError(f"{task}/{split}: no equal-length pair with one answer {steer_to!r}")
    actual, last = pad_batch(acts)
    counter, _ = pad_batch(cfs)
    return {"actual": actual, "counterfactual": counter, "last": last, "target": target}


@torch.no_grad()
def choose_channel(sparse, site: int, pairs: dict) -> tuple[int, np.ndarray]:
    """The sparse read channel at ``site`` that best separates actual from counterfactual prompts at the last
    token: |mean difference| / std over both (P1's "type" channel); returns (channel, every channel's value)."""
    read = B.site_read(sparse, site)
    rows = torch.arange(len(pairs["last"]))
    vals = []
    for key in ("actual", "counterfactual"):
        hs, _ = B.residuals(sparse, pairs[key])
        vals.append(read(hs[site])[rows, pairs["last"]].numpy())
    a, c = vals
    sep = np.abs(a.mean(0) - c.mean(0)) / (np.concatenate([a, c]).std(0) + 1e-12)
    return int(sep.argmax()), sep


@torch.no_grad()
def steering_curve(dense, sparse, bridges, site: int, channel: int, pairs: dict, *, n_random: int, seed: int,
                   strengths=STRENGTHS) -> dict:
    """P(steer_to) at the actual prompts' last position against strength, through the decoder column of
    ``channel`` and through ``n_random`` random directions of the same norm; plus the dense model's P(steer_to)
    on the counterfactual prompts themselves (where steering would ideally land)."""
    t, last = pairs["target"], pairs["last"]

    def prob(tokens, delta, s):
        logits = B.steered_logits(dense, site, tokens, delta, s, last) if delta is not None else \
            dense(tokens, positions=last)
        return float(F.softmax(logits.float(), -1)[:, t].mean())

    basis = B.steering_basis(dense, sparse, site, pairs["actual"], pairs["counterfactual"])
    delta = B.steering_delta(dense, sparse, bridges, site, channel, None, None, basis=basis)
    col = bridges.dec[site].weight[:, channel]
    g = torch.Generator().manual_seed(seed)
    rand = []
    for _ in range(n_random):
        r = torch.randn(col.shape, generator=g)
        d = B.steering_delta(dense, sparse, bridges, site, channel, None, None, direction=r * col.norm() / r.norm(),
                             basis=basis)
        rand.append([prob(pairs["actual"], d, s) for s in strengths])
    return {"strengths": list(strengths), "real": [prob(pairs["actual"], delta, s) for s in strengths],
            "random": rand, "counterfactual": prob(pairs["counterfactual"], None, 0.0),
            "site": site, "site_name": B.site_names(dense.cfg.n_layer)[site], "channel": channel,
            "prompts": len(last)}


@torch.no_grad()
def residual_transfer(dense, sparse, bridges, pairs: dict, limit: int = 64) -> dict:
    """Does the counterfactual cross the bridges at all? Per site, the dense model's P(steer_to) on the actual
    prompts when the decoded difference of the whole sparse residual, g_i(h^s_i(counterfactual)) - g_i(h^s_i(actual)),
    is *written into the dense residual stream* at site i (every later read sees it, unlike the read-node steering);
    beside it the dense model's own counterfactual residual patched in at site i (the ceiling) and P with no
    intervention. On the first ``limit`` pairs."""
    a, c, last = pairs["actual"][:limit], pairs["counterfactual"][:limit], pairs["last"][:limit]
    hd_a, logits = B.residuals(dense, a)
    hd_c, _ = B.residuals(dense, c)
    hs_a, _ = B.residuals(sparse, a)
    hs_c, _ = B.residuals(sparse, c)
    rows, t = torch.arange(len(last)), pairs["target"]

    def prob(i, x):
        lg = B.run_from(dense, i, x, a, positions=last[:, None])[:, 0]
        return float(F.softmax(lg.float(), -1)[:, t].mean())

    none = float(F.softmax(logits[rows, last].float(), -1)[:, t].mean())
    return {"sites": B.site_names(dense.cfg.n_layer), "none": none,
            "decoded": [prob(i, hd_a[i] + bridges.decode(i, hs_c[i]) - bridges.decode(i, hs_a[i]))
                        for i in range(B.n_sites(dense))],
            "dense_patch": [prob(i, hd_c[i]) for i in range(B.n_sites(dense))]}


def residual_transfers(dense, run, demos: dict, limit: int = 64) -> dict:
    """:func:`residual_transfer` for every steering demo of a bridge run (``demos``: the steering study's results
    for that run, which name each demo's task and answer), on the demo's test split."""
    sparse, bridges = run.model.eval(), load_bridged(run, dense)
    return {name: residual_transfer(dense, sparse, bridges, steering_pairs(sparse, d["task"], "test", d["steer_to"]),
                                    limit) for name, d in demos.items()}


def steering_demo(dense, sparse, bridges, st: dict, ev: dict, seed: int) -> tuple[dict, dict, np.ndarray]:
    """One steering demo of a config (``st``: task, site, steer_to) on a bridged pair: the channel that best
    separates the two prompt kinds on the task's train split and :func:`steering_curve` on its test split (the first
    ``ev["steer_prompts"]`` pairs when a scale caps them). Returns (the demo's record, the test pairs, every
    channel's separation)."""
    site = resolve_site(st["site"], dense.cfg.n_layer)
    channel, sep = choose_channel(sparse, site, steering_pairs(sparse, st["task"], "train", st["steer_to"]))
    test = steering_pairs(sparse, st["task"], "test", st["steer_to"])
    if ev.get("steer_prompts"):
        test = {k: v[:ev["steer_prompts"]] if torch.is_tensor(v) else v for k, v in test.items()}
    curve = steering_curve(dense, sparse, bridges, site, channel, test, n_random=ev.get("n_random", 8), seed=seed,
                           strengths=ev.get("strengths", STRENGTHS))
    return {**curve, "task": st["task"], "steer_to": st["steer_to"], "separation": float(sep[channel]),
            "separation_next": float(np.sort(sep)[-2])}, test, sep


@torch.no_grad()
def channel_sweep(dense, sparse, bridges, site: int, order, pairs: dict, ks, *, n_random: int, seed: int,
                  strengths=STRENGTHS) -> dict:
    """How many sparse channels steering needs: P(steer_to) at strength 1 when the ``k`` channels first in
    ``order`` (best separating first) are moved together, for each k in ``ks``, beside random directions of the same
    norms; and P against strength with every channel moved (the whole read difference through the decoder)."""
    t, last = pairs["target"], pairs["last"]
    g = torch.Generator().manual_seed(seed)

    def prob(delta, s):
        return float(F.softmax(B.steered_logits(dense, site, pairs["actual"], delta, s, last).float(), -1)[:, t].mean())

    basis = B.steering_basis(dense, sparse, site, pairs["actual"], pairs["counterfactual"])
    real, rand = [], []
    for k in ks:
        chans = [int(c) for c in order[:k]]
        real.append(prob(B.steering_delta(dense, sparse, bridges, site, chans, None, None, basis=basis), 1.0))
        cols = bridges.dec[site].weight[:, chans]
        draws = []
        for _ in range(n_random):
            r = torch.randn(cols.shape, generator=g)
            r = r * cols.norm(dim=0) / r.norm(dim=0)
            draws.append(prob(B.steering_delta(dense, sparse, bridges, site, chans, None, None, direction=r,
                                               basis=basis), 1.0))
        rand.append(float(np.mean(draws)))
    every = B.steering_delta(dense, sparse, bridges, site, list(range(sparse.cfg.d_model)), None, None, basis=basis)
    return {"k": list(ks), "real": real, "random": rand, "strengths": list(strengths),
            "all_channels": [prob(every, s) for s in strengths]}


def produce_bridge_steering(ctx: BuildContext) -> None:
    """The steering study of chapter 10 on committed bridge runs: per run and demo, the single-channel curve with
    its random controls (:func:`steering_curve`) and how many channels steering needs (:func:`channel_sweep`)."""
    spec, ev = ctx.spec, ctx.overrides()
    dense = ctx.dep(spec["dense"]).model.eval()
    t0 = time.time()
    out = {"runs": {}, "settings": ev}
    for rid in spec["runs"]:
        run = ctx.dep(rid)
        sparse, bridges = run.model.eval(), load_bridged(run, dense)
        out["runs"][rid] = {}
        for name, st in spec["steering"].items():
            demo, test, sep = steering_demo(dense, sparse, bridges, st, ev, ev.get("seed", 0))
            kw = dict(n_random=ev["n_random"], seed=ev.get("seed", 0), strengths=ev.get("strengths", STRENGTHS))
            out["runs"][rid][name] = {**demo, "sweep": channel_sweep(dense, sparse, bridges, demo["site"],
                                                                       np.argsort(-sep), test, ev["channels"], **kw)}
    out["wall_time_s"] = round(time.time() - t0, 1)
    artifacts.write_json(ctx.folder / "results.json", out)
    artifacts.write_manifest(ctx.folder, ["results.json"], **ctx.manifest_info(
        kind="bridge_steering", seed=ev.get("seed", 0), config={"spec": spec}, wall_time_s=out["wall_time_s"]))


# --- the producer -----------------------------------------------------------------------------------------------
def resolve_site(name: str, n_layer: int) -> int:
    """A site by name (``"L3.attn"``, ``"last.attn"``, ``"last.mlp"``, ``"final"``) or index."""
    names = B.site_names(n_layer)
    name = str(name).replace("last.", f"L{n_layer - 1}.")
    if name.isdigit() and int(name) < len(names):
        return int(name)
    if name not in names:
        raise ValueError(f"unknown site {name!r}; sites: {names}")
    return names.index(name)


def produce_bridges(ctx: BuildContext) -> None:
    """Train the bridges, then measure hybrids and steering; write the run folder (see module docstring).

    ``mode``: ``joint`` (the sparse model from ``sparse`` trained on with its bridges), ``frozen`` (only the bridges,
    onto ``sparse`` as it is) or ``scratch`` (P1's protocol: the sparse model trained from a random initialisation
    together with its bridges, under the config's sparsity anneal; ``sparse`` then only fixes the shape)."""
    spec = ctx.spec
    cfg, ev = ctx.split_config("eval")
    mode = spec["mode"]
    if mode not in ("joint", "frozen", "scratch"):
        raise artifacts.ArtifactError(f"{ctx.artifact_id}: mode must be 'joint', 'frozen' or 'scratch', not {mode!r}")
    dense_run, sparse_run = ctx.dep(spec["dense"]), ctx.dep(spec["sparse"])
    dense, init = dense_run.model.eval(), sparse_run.model
    if cfg.model.to_dict() != sparse_run.config.model.to_dict():
        raise artifacts.ArtifactError(f"{ctx.artifact_id}: the model section must equal {spec['sparse']}'s")
    lc = B.BridgeLoss.from_dict(spec.get("loss"))
    tokens, val_tokens = lm_tokens(cfg)
    windows = eval_windows(val_tokens, cfg.train.eval_batches * cfg.train.batch_size, cfg.model.n_ctx)
    bridges = B.Bridges.between(dense, init)
    torch.manual_seed(cfg.train.seed)
    warm = eval_windows(tokens, 64, cfg.model.n_ctx, seed=777)[:, :-1]
    if mode != "scratch":  # a random sparse model has nothing to regress onto
        with torch.no_grad():
            bridges.fit_least_squares(B.residuals(dense, warm)[0], B.residuals(init, warm)[0])
    ckpt = cache_dir() / "checkpoints" / ctx.scale / ctx.artifact_id
    resume = ctx.resume and (ckpt / "manifest.json").exists()
    hooks = B.bridge_hooks(dense, bridges, lc, freeze_sparse=mode == "frozen")
    t0 = time.time()
    sparse, hist = train(cfg, tokens, val_tokens, out=ckpt, resume=resume, overwrite=not resume,
                         progress=ctx.progress, hooks=hooks,
                         init_state=None if mode == "scratch" else init.state_dict())
    wall = time.time() - t0
    sparse.eval()
    table = hybrid_table(dense, sparse, bridges, windows, ev.get("tasks", spec["tasks"]), ev.get("task_prompts", 128))
    steering = {name: steering_demo(dense, sparse, bridges, st, ev, cfg.train.seed)[0]
                for name, st in spec.get("steering", {}).items()}
    metrics = {"mode": mode, "hybrids": table, "steering": steering, "loss": lc.__dict__,
               "train_seconds": hist.train_seconds, "seconds_per_step": hist.train_seconds / max(len(hist.step), 1),
               "tokens_seen": hist.tokens_seen, "n_bridge_params": sum(p.numel() for p in bridges.parameters()),
               "sparse_nonzero": float(sum(int((p != 0).sum()) for p in sparse.parameters()) / sparse.n_params())}
    save_run(ctx.folder, sparse, hist, cfg, metrics=metrics, extra={"bridges": bridges}, **ctx.manifest_info(
        kind="bridged_lm", mode=mode, dense=spec["dense"], init_from=None if mode == "scratch" else {
            "id": spec["sparse"], "model_sha256": artifacts.model_sha256(sparse_run)},
        wall_time_s=round(wall, 1)))


def load_bridged(run, dense) -> B.Bridges:
    """The bridges of a ``bridges`` artifact (``run`` from ``reading.load``/``build.load``) for its dense model."""
    br = B.Bridges.between(dense, run.model)
    load_extra(run.folder, {"bridges": br})
    return br.eval()


def steering_summary(demos: dict) -> dict:
    """Per steering demo: P(steer_to) at strength 0 and 1 through the channel, the mean over random directions at
    strength 1, their ratio, and the dense model's P on the counterfactual prompts."""
    out = {}
    for name, s in demos.items():
        real, rand = s["real"][-1], float(np.mean([r[-1] for r in s["random"]]))
        out[name] = {"real": real, "random": rand, "ratio": real / rand if rand > 0 else None,
                     "start": s["real"][0], "counterfactual": s["counterfactual"]}
    return out


def summary(metrics: dict) -> dict:
    """The hybrid headline of a bridge run: the worst hybrid's CE above the dense model's (and where), both pure
    CEs; and :func:`steering_summary` of the run's own steering demos."""
    h = metrics["hybrids"]
    dense_ce = h["pure"]["dense"]["ce"]
    worst = max(((d, i, r["ce"]) for d in ("d2s", "s2d") for i, r in enumerate(h[d])), key=lambda x: x[2])
    return {"dense_ce": dense_ce, "sparse_ce": h["pure"]["sparse"]["ce"], "worst_gap": worst[2] - dense_ce,
            "worst": f"{worst[0]} at {h['sites'][worst[1]]}", "steering": steering_summary(metrics["steering"])}


def hybrid_frame(runs: dict) -> pd.DataFrame:
    """One row per (run, site, direction): validation CE, its excess over the dense model's, task loss and
    accuracy, and the NMSE of the bridge used; the pure models as rows with site ``-``."""
    rows = []
    for label, m in runs.items():
        h = m["hybrids"]
        for name in ("dense", "sparse"):
            rows.append({"run": label, "site": "-", "model": f"{name} alone", **h["pure"][name],
                         "CE - dense CE": h["pure"][name]["ce"] - h["pure"]["dense"]["ce"], "bridge NMSE": None})
        for direction, what, nm in (("d2s", "dense -> sparse", "enc"), ("s2d", "sparse -> dense", "dec")):
            for i, r in enumerate(h[direction]):
                rows.append({"run": label, "site": h["sites"][i], "model": what, **r,
                             "CE - dense CE": r["ce"] - h["pure"]["dense"]["ce"], "bridge NMSE": h["nmse"][nm][i]})
    return pd.DataFrame(rows).rename(columns={"ce": "CE", "task_loss": "task loss", "task_accuracy": "task acc"})


def steering_table(runs: dict) -> pd.DataFrame:
    """Per (run, demo) of steering results (run label -> demo name -> result): the channel and site, its separation
    on the train split (and the runner-up's), P(answer) at strength 0 and 1 through the channel, the mean over random
    directions at strength 1, their ratio, with every channel moved (when measured), and on the counterfactual."""
    rows = []
    for label, demos in runs.items():
        sm = steering_summary(demos)
        for name, st in demos.items():
            rows.append({"run": label, "demo": name, "site": st["site_name"], "channel": st["channel"],
                         "separation": st["separation"], "runner-up": st["separation_next"],
                         "P at 0": sm[name]["start"], "P at 1": sm[name]["real"], "random at 1": sm[name]["random"],
                         "real / random": sm[name]["ratio"],
                         "every channel at 1": st["sweep"]["all_channels"][-1] if "sweep" in st else None,
                         "P on counterfactual": sm[name]["counterfactual"]})
    return pd.DataFrame(rows)
