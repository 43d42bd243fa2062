import json
import os
import signal

import pytest
import torch

from sparsecirc import artifacts
from sparsecirc.artifacts import ArtifactError
from sparsecirc.core.config import make_config
from sparsecirc.core.train import TrainHooks, load_model, lr_at, sample_batch, save_run, train

TINY = {"n_layer": 1, "d_model": 32, "d_head": 8, "n_ctx": 16, "d_vocab": 40}


def _tokens(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 40, (n,), generator=g)
    base[1::2] = (base[0::2] + 1) % 40  # learnable structure: every odd token = previous + 1
    return base


def _cfg(steps=12, **train):
    return make_config("ci", model=TINY, train={"steps": steps, "batch_size": 4, "eval_every": 4, "eval_batches": 2,
                                                "lr": 1e-2, **train})


def test_lr_schedule_warmup_then_linear_decay():
    cfg = make_config("ci", train={"steps": 1000, "lr": 1.0, "warmup_frac": 0.01})
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(505, cfg) == pytest.approx(0.5)
    assert lr_at(999, cfg) == pytest.approx(1 / 990, rel=1e-6)


def test_batches_depend_only_on_seed_and_step():
    t = _tokens()
    assert torch.equal(sample_batch(t, 4, 16, 0, 7), sample_batch(t, 4, 16, 0, 7))
    assert not torch.equal(sample_batch(t, 4, 16, 0, 7), sample_batch(t, 4, 16, 0, 8))
    with pytest.raises(ValueError, match="too short"):
        sample_batch(t[:10], 4, 16, 0, 0)


def test_training_lowers_loss():
    _, hist = train(_cfg(steps=60), _tokens(), _tokens(seed=1), progress=False)
    assert hist.val_loss[-1] < hist.val_loss[0] - 0.3


def test_resume_is_bit_identical(tmp_path):
    cfg = _cfg(steps=12)
    straight, h1 = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "a", progress=False)
    train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", progress=False, stop_after=6)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["step"] == 6
    resumed, h2 = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", resume=True, progress=False)
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss


def test_interrupt_saves_a_resumable_checkpoint(tmp_path):
    """A Ctrl-C (SIGINT) in the middle of step 4 stops after step 4: the checkpoint says step 5 and holds exactly
    those weights, so the resumed run equals an uninterrupted one bit for bit."""
    cfg = _cfg(steps=12, checkpoint_every=3)
    straight, h1 = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "a", progress=False)

    def ctrl_c(model, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", progress=False, hooks=TrainHooks(after_step=ctrl_c))
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["step"] == 5
    resumed, h2 = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", resume=True, progress=False)
    assert h2.step[-1] == 11 and h1.train_loss == h2.train_loss
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n


def test_an_interrupt_inside_a_step_keeps_the_last_checkpoint(tmp_path):
    """An exception raised after opt.step() but before the step is recorded (what a Ctrl-C outside the main
    thread looks like) must not write a checkpoint whose weights are one step ahead of its step count."""
    cfg = _cfg(steps=12, checkpoint_every=2)
    straight, _ = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "a", progress=False)

    def boom(model, step):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", progress=False, hooks=TrainHooks(after_step=boom))
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["step"] == 4  # the checkpoint before it
    resumed, hist = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "b", resume=True, progress=False)
    assert hist.step[-1] == 11
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_cfg(), _tokens(), _tokens(), out=tmp_path / "none", resume=True, progress=False)
    train(_cfg(steps=4), _tokens(), _tokens(), out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(_cfg(steps=8), _tokens(), _tokens(), out=tmp_path / "x", resume=True, progress=False)


def test_corrupt_or_missing_checkpoint_is_named(tmp_path):
    train(_cfg(steps=2), _tokens(), _tokens(), out=tmp_path, progress=False)
    load_model(tmp_path)
    with open(tmp_path / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256 mismatch.*rebuild with `make it`"):
        load_model(tmp_path, rebuild_hint="make it")
    train(_cfg(steps=2), _tokens(), _tokens(), out=tmp_path / "m", progress=False)
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"config\.json: missing"):
        load_model(tmp_path / "m")


def test_strict_loading_rejects_foreign_keys(tmp_path):
    train(_cfg(steps=2), _tokens(), _tokens(), out=tmp_path, progress=False)
    sd = artifacts.load_tensors(tmp_path / "model.safetensors")
    sd["extra.weight"] = torch.zeros(1)
    artifacts.save_tensors(tmp_path / "model.safetensors", sd)
    artifacts.write_manifest(tmp_path, ["model.safetensors", "config.json"])
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_model(tmp_path)


def test_bf16_autocast_trains():
    _, hist = train(_cfg(steps=20, bf16=True), _tokens(), _tokens(seed=1), progress=False)
    assert hist.val_loss[-1] < hist.val_loss[0]


def test_sparsecirc_bf16_decides_whether_a_bf16_config_autocasts(monkeypatch):
    from sparsecirc.core import repro
    monkeypatch.delenv("SPARSECIRC_BF16", raising=False)
    assert repro.bf16_enabled(True) and not repro.bf16_enabled(False)  # default "on": as configured
    monkeypatch.setenv("SPARSECIRC_BF16", "auto")
    assert repro.bf16_enabled(True) == repro.native_bf16() and not repro.bf16_enabled(False)
    monkeypatch.setenv("SPARSECIRC_BF16", "sometimes")
    with pytest.raises(ValueError, match="SPARSECIRC_BF16"):
        repro.bf16_enabled(True)
    monkeypatch.setenv("SPARSECIRC_BF16", "off")  # a bf16 config then trains exactly as the fp32 one
    w_off = train(_cfg(steps=3, bf16=True), _tokens(), _tokens(seed=1), progress=False)[0].state_dict()
    w_fp32 = train(_cfg(steps=3), _tokens(), _tokens(seed=1), progress=False)[0].state_dict()
    monkeypatch.setenv("SPARSECIRC_BF16", "on")
    w_on = train(_cfg(steps=3, bf16=True), _tokens(), _tokens(seed=1), progress=False)[0].state_dict()
    assert all(torch.equal(w_off[k], w_fp32[k]) for k in w_fp32)
    assert not all(torch.equal(w_on[k], w_fp32[k]) for k in w_fp32)


def test_grad_normalize_mode_runs_and_hooks_are_called():
    seen = []
    hooks = TrainHooks(lr_factor=lambda s: 0.5, after_step=lambda m, s: seen.append(s))
    _, hist = train(_cfg(steps=5, grad_rms="normalize"), _tokens(), _tokens(), progress=False, hooks=hooks)
    assert seen == list(range(5))
    assert hist.lr[-1] == pytest.approx(0.5 * lr_at(4, _cfg(steps=5)))


def test_loss_mask_batch_fn_init_state_and_objective():
    from sparsecirc import GPT
    cfg = _cfg(steps=6)
    toks = _tokens()
    mask = torch.zeros(16, dtype=torch.bool)
    mask[-3:] = True
    m = GPT(cfg.model)
    w = sample_batch(toks, 4, 16, 0, 0)
    per = m.loss(w, reduction="none")
    assert m.loss(w, loss_mask=mask).item() == pytest.approx(per[:, -3:].mean().item(), rel=1e-6)
    seen = []
    fixed = sample_batch(toks, 4, 16, 0, 99)

    def batch_fn(step):
        seen.append(step)
        return fixed

    hooks = TrainHooks(objective=lambda model, batch, ce: 0 * ce, log=lambda s: {"twice": 2 * s})
    model, hist = train(cfg, toks, fixed, progress=False, batch_fn=batch_fn, loss_mask=mask,
                        init_state=m.state_dict(), hooks=hooks)
    assert seen == list(range(6))
    assert hist.extra["twice"] == [0, 2, 4, 6, 8, 10]
    # a zero objective leaves weights where init_state put them (up to decoupled weight decay with zero grads)
    before = m.state_dict()["blocks.0.mlp.W_in.bias"]
    assert torch.equal(model.state_dict()["blocks.0.mlp.W_in.bias"], before)


def test_stop_when_ends_training_at_the_first_validation_that_satisfies_it(tmp_path):
    cfg = _cfg(steps=40)
    _, hist = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path, progress=False,
                    stop_when=lambda h: len(h.val_loss) == 2)
    assert hist.val_step == [4, 8] and hist.step[-1] == 7
    assert json.loads((tmp_path / "manifest.json").read_text())["step"] == 8


def test_save_run_takes_the_manifest_fields_a_producer_passes(tmp_path):
    """Producers pass id/scale/kind/produced_by (BuildContext.manifest_info); save_run adds seed/scale/config."""
    cfg = _cfg(steps=2)
    model, hist = train(cfg, _tokens(), _tokens(seed=1), progress=False)
    m = save_run(tmp_path / "a", model, hist, cfg, metrics={"val_loss": 1.0}, id="wst-x", scale="ci", kind="lm",
                 produced_by="python -m sparsecirc reproduce wst-x --scale ci")
    assert m["scale"] == "ci" and m["kind"] == "lm" and m["seed"] == cfg.train.seed
    assert [f["path"] for f in m["files"]][-1] == "metrics.json"


def test_run_folder_history_is_compressed_and_legacy_folders_still_load(tmp_path):
    import gzip

    from sparsecirc import artifacts
    from sparsecirc.core.train import load_run
    cfg = _cfg(steps=3)
    model, hist = train(cfg, _tokens(), _tokens(seed=1), progress=False)
    m = save_run(tmp_path / "a", model, hist, cfg, metrics={"val_loss": 1.0})
    assert "history.json.gz" in [f["path"] for f in m["files"]] and not (tmp_path / "a" / "history.json").exists()
    raw = (tmp_path / "a" / "history.json.gz").read_bytes()
    assert json.loads(gzip.decompress(raw)) == json.loads(json.dumps(hist.to_dict()))
    assert load_run(tmp_path / "a")[1] == hist
    save_run(tmp_path / "b", model, hist, cfg)
    assert (tmp_path / "b" / "history.json.gz").read_bytes() == raw  # same history, same bytes (gzip mtime 0)
    legacy = tmp_path / "legacy"  # a folder written before compression: history.json in its manifest
    legacy.mkdir()
    artifacts.save_tensors(legacy / "model.safetensors", model.state_dict())
    artifacts.write_json(legacy / "history.json", hist.to_dict())
    artifacts.write_json(legacy / "config.json", cfg.to_dict())
    artifacts.write_manifest(legacy, ["model.safetensors", "history.json", "config.json"])
    assert load_run(legacy)[1] == hist
    (tmp_path / "a" / "history.json.gz").write_bytes(raw[:-8])  # truncated: the manifest's sha256 catches it
    with pytest.raises(artifacts.ArtifactError, match="sha256"):
        load_run(tmp_path / "a")


def test_sequential_batches_are_disjoint_windows_that_never_repeat_within_a_pass():
    from sparsecirc.core.train import sequential_batch
    t = torch.arange(17 * 40 + 5)  # 40 windows of 17 tokens, 5 left over
    seen = torch.cat([sequential_batch(t, 4, 16, 3, s) for s in range(10)])  # one pass: 10 batches of 4
    starts = sorted(int(w[0]) for w in seen)
    assert starts == [17 * i for i in range(40)]  # every window once
    assert all(torch.equal(w, torch.arange(int(w[0]), int(w[0]) + 17)) for w in seen)
    assert torch.equal(sequential_batch(t, 4, 16, 3, 7), sequential_batch(t, 4, 16, 3, 7))
    assert not torch.equal(sequential_batch(t, 4, 16, 3, 10), sequential_batch(t, 4, 16, 3, 0))  # next pass reshuffles
    with pytest.raises(ValueError, match="fewer than one batch"):
        sequential_batch(t[:50], 4, 16, 0, 0)
    _, hist = train(_cfg(steps=4, sampling="sequential"), _tokens(), _tokens(seed=1), progress=False)
    assert len(hist.train_loss) == 4


def test_fast_paths_follow_the_fp32_reference_within_tolerance():
    """bf16 autocast (fp32 master weights, selections in fp32) and fused AdamW against the plain fp32 trainer on the
    weight-sparse recipe (AbsTopK, sink, top-k projection), after 10 steps. Fused AdamW: the same update up to float
    rounding. bf16: matmuls round to 8 mantissa bits, so losses move by ~1e-2 and the projection keeps a few
    different near-tied entries; weights stay within 10 % (all parameters together) and >= 90 % of the kept
    pattern agrees."""
    sparse = {"sparsity": {"weight_nonzero_frac": 0.25}, "model": {**TINY, "act_keep_frac": 0.25, "attn_sink": True}}

    def run(**train_kw):
        cfg = make_config("ci", model=sparse["model"], sparsity=sparse["sparsity"],
                          train={"steps": 10, "batch_size": 4, "eval_every": 5, "eval_batches": 2, "lr": 3e-3,
                                 **train_kw})
        model, hist = train(cfg, _tokens(), _tokens(seed=1), progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()]), hist

    ref_w, ref = run()
    for kw, loss_tol, w_tol, agree in (({"fused_adamw": True}, 1e-5, 1e-5, 1.0),
                                       ({"bf16": True, "fused_adamw": True}, 3e-2, 0.1, 0.9)):
        w, hist = run(**kw)
        pairs = zip(hist.train_loss + hist.val_loss, ref.train_loss + ref.val_loss)
        assert max(abs(a - b) for a, b in pairs) < loss_tol, kw
        assert (w - ref_w).norm() <= w_tol * ref_w.norm(), kw
        assert ((w != 0) == (ref_w != 0)).float().mean() >= agree, kw
