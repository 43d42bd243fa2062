"""Runs and artifacts you can trust: refused overwrites, locked run folders and registry, checkpoints written as
one unit, all-artifact verification, and a named error for bad input (tokens, configs, files)."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sparsecirc import artifacts, build
from sparsecirc.artifacts import ArtifactError, FolderBusyError
from sparsecirc.core.config import ConfigError, ModelConfig, make_config, scale_overrides
from sparsecirc.core.model import GPT
from sparsecirc.core.train import load_model, train
from sparsecirc.data.tasks import pad_batch
from sparsecirc.data.tokenizer import load_tokenizer

TINY = {"n_layer": 1, "d_model": 32, "d_head": 8, "n_ctx": 16, "d_vocab": 40}
WORKER = Path(__file__).with_name("resume_worker.py")


def _tokens(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 40, (n,), generator=g)


def _cfg(steps=6, **train_kw):
    return make_config("ci", model=TINY, train={"steps": steps, "batch_size": 4, "eval_every": 3, "eval_batches": 1,
                                                **train_kw})


# --- run folders -------------------------------------------------------------------------------------------------
def test_an_existing_run_is_not_overwritten_without_force(tmp_path):
    train(_cfg(), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--resume.*--force"):
        train(_cfg(steps=3), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    train(_cfg(steps=3), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False, overwrite=True)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["step"] == 3


def test_out_naming_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        train(_cfg(), _tokens(), _tokens(seed=1), out=tmp_path / "f", progress=False)


def test_a_second_writer_of_a_run_folder_fails_at_once(tmp_path):
    with artifacts.folder_lock(tmp_path / "run"):
        with pytest.raises(FolderBusyError, match="another process"):
            train(_cfg(), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)
    train(_cfg(), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)  # free again afterwards


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(steps=6, checkpoint_every=2)
    real, calls = artifacts.write_manifest, []

    def dies_on_the_second_checkpoint(folder, files, **info):
        calls.append(info.get("step"))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(folder, files, **info)

    monkeypatch.setattr(artifacts, "write_manifest", dies_on_the_second_checkpoint)
    with pytest.raises(OSError, match="disk full"):
        train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)
    monkeypatch.setattr(artifacts, "write_manifest", real)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["step"] == 2
    load_model(tmp_path / "run")  # verifies: every file matches its manifest
    assert (tmp_path / ".run.new").exists()  # the torn write...
    _, hist = train(cfg, _tokens(), _tokens(seed=1), out=tmp_path / "run", resume=True, progress=False)
    assert not (tmp_path / ".run.new").exists() and hist.step[-1] == 5  # ...is cleaned up on the next start


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    train(_cfg(), _tokens(), _tokens(seed=1), out=tmp_path / "run", progress=False)
    os.rename(tmp_path / "run", tmp_path / ".run.old")  # killed after moving the old folder aside
    (tmp_path / ".run.new").mkdir()
    (tmp_path / ".run.new" / "model.safetensors").write_bytes(b"half")
    done = artifacts.recover_folder(tmp_path / "run")
    assert any("restored" in d for d in done)
    load_model(tmp_path / "run")
    assert not (tmp_path / ".run.new").exists() and not (tmp_path / ".run.old").exists()


def _random_points(n, seed=0):
    rng = random.Random(seed)
    return [(rng.choice(["KILL", "INT"]), rng.uniform(0.0, 1.0)) for _ in range(n)]


@pytest.mark.slow
def test_random_kills_and_interrupts_resume_bit_identically(tmp_path):
    """>= 20 SIGKILL / SIGINT at random moments of a small sparse run (checkpoints every 2 steps); after each, the
    run is resumed until it finishes; the final weights equal those of an uninterrupted run, byte for byte."""
    env = {**os.environ, "SPARSECIRC_NUM_THREADS": "1"}

    def run(out, resume):
        return subprocess.Popen([sys.executable, str(WORKER), str(out)] + (["--resume"] if resume else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    straight = tmp_path / "straight"
    assert run(straight, False).wait(timeout=300) == 0
    t0 = time.time()
    assert run(tmp_path / "timing", False).wait(timeout=300) == 0
    duration = time.time() - t0
    want = (straight / "model.safetensors").read_bytes()
    for i, (sig, frac) in enumerate(_random_points(22, seed=1)):
        out = tmp_path / f"r{i}"
        p = run(out, False)
        time.sleep(frac * duration)
        p.send_signal(signal.SIGKILL if sig == "KILL" else signal.SIGINT)
        p.wait(timeout=300)
        for _ in range(5):  # resume (or start over when the kill came before the first checkpoint)
            rc = run(out, (out / "manifest.json").exists() or (tmp_path / f".r{i}.old").exists()).wait(timeout=300)
            if rc == 0:
                break
        assert rc == 0, f"trial {i} ({sig} at {frac:.2f}) did not finish"
        assert (out / "model.safetensors").read_bytes() == want, f"trial {i}: {sig} at {frac:.2f} of the run"


# --- the registry ------------------------------------------------------------------------------------------------
def _fake_artifact(folder: Path, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "out.txt").write_text(text)
    artifacts.write_manifest(folder, ["out.txt"], id=folder.name, scale="book", seed=0)


def test_registrations_at_the_same_moment_all_land(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "REGISTRY_PATH", tmp_path / "registry.yaml")
    ids = [f"wst-toy-{i}" for i in range(8)]
    for i in ids:
        _fake_artifact(tmp_path / i, i)
    barrier = threading.Barrier(len(ids))

    def register(i):
        barrier.wait()
        artifacts.register(i, tmp_path / i, paper_ref="test", used_by=[])

    threads = [threading.Thread(target=register, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(artifacts.load_registry()) == ids


def test_verify_reports_every_bad_artifact_and_refuses_an_empty_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "REGISTRY_PATH", tmp_path / "registry.yaml")
    monkeypatch.setattr(artifacts, "ARTIFACTS_DIR", tmp_path)
    with pytest.raises(ArtifactError, match="missing or empty"):
        artifacts.verify_all()
    (tmp_path / "registry.yaml").write_text("")
    with pytest.raises(ArtifactError, match="missing or empty"):
        artifacts.verify_all()
    for i in ("wst-a", "wst-b", "wst-c"):
        _fake_artifact(tmp_path / i, i)
        artifacts.register(i, tmp_path / i, paper_ref="test", used_by=[])
    (tmp_path / "wst-a" / "out.txt").write_text("changed")
    (tmp_path / "wst-c" / "out.txt").unlink()
    rows = dict(artifacts.verify_all())
    assert rows["wst-b"] is None and "sha256 mismatch" in rows["wst-a"] and "missing" in rows["wst-c"]


def test_a_broken_registry_names_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "REGISTRY_PATH", tmp_path / "registry.yaml")
    (tmp_path / "registry.yaml").write_text("artifacts:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(ArtifactError, match=r"registry.yaml: line \d+"):
        artifacts.load_registry()


@pytest.fixture
def toy_artifact(tmp_cache, tmp_path, monkeypatch):
    """A registered-config artifact ``toy`` whose producer writes one file and logs each build: returns (configs
    folder, list of the ids built)."""
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setattr(artifacts, "CONFIGS_DIR", configs)
    monkeypatch.setattr(build, "PROCESS_RUN", "process-1")
    (configs / "toy.yaml").write_text("kind: toy\npaper_ref: x\nused_by: []\nscales: {book: {}, ci: {}}\n")
    built = []

    def toy(ctx):
        ctx.folder.mkdir(parents=True, exist_ok=True)
        (ctx.folder / "out.txt").write_text("x")
        artifacts.write_manifest(ctx.folder, ["out.txt"], **ctx.manifest_info())
        built.append(ctx.artifact_id)

    monkeypatch.setitem(build.PRODUCERS, "toy", toy)
    return configs, built


def test_a_cache_build_is_stamped_so_it_is_reused(toy_artifact):
    _, built = toy_artifact
    folder = build.produce("toy", "ci")  # what `python -m sparsecirc reproduce toy --scale ci` does
    artifacts.verify_cached("toy", folder)  # stamped: get_or_compute will reuse it
    assert build.cached_build("toy", "ci", folder) == folder and built == ["toy"]


def test_recompute_builds_an_artifact_once_per_process(toy_artifact, tmp_path, monkeypatch):
    """A ci chapter asks with recompute=True for a model another artifact already built as its dependency: the
    build of a moment ago is reused; a build from another process is not, nor one whose config changed since."""
    configs, built = toy_artifact
    folder = tmp_path / "cache" / "toy"
    build.cached_build("toy", "ci", folder)  # as a dependency
    build.cached_build("toy", "ci", folder, recompute=True)  # asked for again in the same process
    assert built == ["toy"]
    monkeypatch.setattr(build, "PROCESS_RUN", "process-2")  # another process outside any run: rebuild
    build.cached_build("toy", "ci", folder, recompute=True)
    assert built == ["toy", "toy"]
    (configs / "toy.yaml").write_text("kind: toy\npaper_ref: y\nused_by: []\nscales: {book: {}, ci: {a: 1}}\n")
    build.cached_build("toy", "ci", folder, recompute=True)  # the config changed: the stamp no longer verifies
    assert built == ["toy", "toy", "toy"]


def test_recompute_builds_an_artifact_once_per_book_run(toy_artifact, tmp_path, monkeypatch):
    """Chapters of one ``book execute`` share $SPARSECIRC_BUILD_RUN: a later kernel asking with recompute=True
    reuses the build an earlier one made in the same run, and rebuilds one from another run (or from no run)."""
    _, built = toy_artifact
    folder = tmp_path / "cache" / "toy"
    monkeypatch.setenv(build.BUILD_RUN_ENV, "run-a")
    build.cached_build("toy", "ci", folder, recompute=True)
    monkeypatch.setattr(build, "PROCESS_RUN", "process-2")  # the next chapter's kernel, same run
    build.cached_build("toy", "ci", folder, recompute=True)
    assert built == ["toy"]
    monkeypatch.setenv(build.BUILD_RUN_ENV, "run-b")  # the next `make test`
    build.cached_build("toy", "ci", folder, recompute=True)
    assert built == ["toy", "toy"] and (folder / build.BUILD_RUN_FILE).read_text() == "run-b"
    monkeypatch.delenv(build.BUILD_RUN_ENV)  # a kernel outside any run: recompute means rebuild
    build.cached_build("toy", "ci", folder, recompute=True)
    assert built == ["toy", "toy", "toy"]


def test_a_cache_build_waits_for_another_process_building_the_same_folder(toy_artifact, tmp_path):
    """Two chapters side by side ask for the same artifact: while one holds the build lock, the other waits for
    it instead of writing the folder at the same time."""
    import threading

    _, built = toy_artifact
    folder = tmp_path / "cache" / "toy"
    done = threading.Event()
    with artifacts.folder_lock(folder.parent / f"{folder.name}.build", wait=True):
        worker = threading.Thread(target=lambda: (build.cached_build("toy", "ci", folder), done.set()))
        worker.start()
        assert not done.wait(0.5) and built == []  # blocked on the lock (flock: per open file, so threads wait too)
    worker.join(10)
    assert done.is_set() and built == ["toy"]


# --- named errors for bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [5000, 2048, -1])
def test_decode_refuses_ids_outside_the_vocabulary(bad):
    with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary"):
        load_tokenizer().decode([bad])


def test_encode_names_a_lone_surrogate():
    with pytest.raises(ValueError, match="lone surrogate"):
        load_tokenizer().encode("x = '\ud800'")


@pytest.mark.parametrize("bad", [40, 99, -1])
def test_the_model_names_token_ids_outside_its_vocabulary(bad):
    m = GPT(ModelConfig(**TINY))
    with pytest.raises(ValueError, match=f"token id {bad} is outside the model's vocabulary"):
        m(torch.tensor([[1, 2, bad]]))


def test_an_empty_prompt_is_named():
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        pad_batch([[1, 2], []])


@pytest.mark.parametrize("over, match", [
    ({"train": {"lr": "fast"}}, "TrainConfig.lr must be a number"),
    ({"model": {"n_head": "2"}}, "ModelConfig.n_head must be an integer"),
    ({"sparsity": {"weight_nonzero_frac": "half"}}, "SparsityConfig.weight_nonzero_frac must be a number"),
    ({"train": {"weight_decay": "lots"}}, "TrainConfig.weight_decay must be a number"),
    ({"train": {"eval_every": 0}}, "TrainConfig.eval_every must be >= 1"),
])
def test_config_values_of_the_wrong_type_or_range_are_named(over, match):
    with pytest.raises(ConfigError, match=match):
        make_config("ci", **over)


def test_yaml_exponent_strings_are_read_as_numbers():
    assert make_config("ci", train={"lr": "3e-3"}).train.lr == pytest.approx(3e-3)  # YAML reads 3e-3 as a str


def test_d_vocab_smaller_than_the_tokenizer_is_named():
    from sparsecirc.data.lm import lm_tokens
    with pytest.raises(ValueError, match="d_vocab 100 is smaller than the tokenizer"):
        lm_tokens(make_config("ci", model={"d_vocab": 100}))


@pytest.mark.parametrize("spec, match", [
    ({"scales": ["ci"]}, "'scales' must be a mapping"),
    ({"scales": {"book": {}}}, "no 'ci' section"),
    ([1, 2], "expected a mapping"),
])
def test_malformed_config_files_are_named(spec, match):
    with pytest.raises(ConfigError, match=f"my.yaml: .*{match}"):
        scale_overrides(spec, "ci", "my.yaml")


def test_a_yaml_syntax_error_is_one_line_with_the_place(tmp_path):
    (tmp_path / "c.yaml").write_text("kind: lm\nscales: {ci: {train: {steps: 3}}\n")
    with pytest.raises(ArtifactError, match=r"c.yaml: line \d+, column \d+: not valid YAML"):
        artifacts.read_yaml(tmp_path / "c.yaml")


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        artifacts.atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


# --- what holds today, kept by a test each -------------------------------------------------------------------------
def test_unknown_ids_tasks_splits_and_scales_list_the_valid_values():
    from sparsecirc.data.tasks import load_task
    with pytest.raises(ArtifactError, match="known:"):
        artifacts.verify("wst-no-such-artifact")
    with pytest.raises(ArtifactError, match="known ids"):
        build.read_spec("wst-no-such-artifact")
    with pytest.raises(ValueError, match="valid"):
        load_task("no_such_task")
    with pytest.raises(ValueError, match="split"):
        load_task("var_if", "dev")
    with pytest.raises(ValueError, match="'book', 'ci'"):
        build.get_or_compute("wst-zoo-l2d128-sparse", scale="big")


def test_a_truncated_committed_artifact_is_refused_with_the_rebuild_command(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "REGISTRY_PATH", tmp_path / "registry.yaml")
    monkeypatch.setattr(artifacts, "ARTIFACTS_DIR", tmp_path)
    _fake_artifact(tmp_path / "wst-a", "a" * 100)
    artifacts.register("wst-a", tmp_path / "wst-a", paper_ref="test", used_by=[])
    (tmp_path / "wst-a" / "out.txt").write_text("a" * 10)
    with pytest.raises(ArtifactError, match="out.txt: sha256 mismatch.*python -m sparsecirc reproduce wst-a"):
        artifacts.verify("wst-a")


def test_no_pickle_eval_exec_or_shell_in_the_package():
    import ast
    bad = []
    for p in sorted((Path(__file__).resolve().parent.parent / "sparsecirc").rglob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in n.names] + ([n.module] if isinstance(n, ast.ImportFrom) else [])
                bad += [f"{p.name}: imports {x}" for x in names if x and x.split(".")[0] in ("pickle", "dill", "marshal")]
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("eval", "exec"):
                bad.append(f"{p.name}:{n.lineno}: {n.func.id}()")
            if isinstance(n, ast.keyword) and n.arg == "shell" and getattr(n.value, "value", False) is True:
                bad.append(f"{p.name}:{n.lineno}: shell=True")
            if isinstance(n, ast.Attribute) and n.attr in ("system", "popen") and getattr(n.value, "id", "") == "os":
                bad.append(f"{p.name}:{n.lineno}: os.{n.attr}")
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "load" \
                    and getattr(n.func.value, "id", "") == "torch":  # foreign files only, tensors only
                safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in n.keywords)
                if not safe:
                    bad.append(f"{p.name}:{n.lineno}: torch.load without weights_only=True (pickle)")
    assert not bad, bad


def test_inputs_longer_than_the_context_are_named():
    m = GPT(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="exceeds n_ctx=16"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.skipif(subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0,
                    reason="needs unprivileged network namespaces (unshare -rn)")
def test_loading_and_running_a_model_needs_no_network():
    code = ("import sparsecirc as sc, torch; from sparsecirc.data.tasks import load_task, task_metrics; "
            "run = sc.get_or_compute('wst-zoo-l2d128-sparse'); "
            "print(task_metrics(run.model, 'single_double_quote')['accuracy'])")
    r = subprocess.run(["unshare", "-rn", sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0.0 <= float(r.stdout.strip().splitlines()[-1]) <= 1.0


def test_unregister_drops_one_entry_and_refuses_an_unknown_id(tmp_path, monkeypatch):
    from sparsecirc import artifacts
    reg = tmp_path / "registry.yaml"
    monkeypatch.setattr(artifacts, "REGISTRY_PATH", reg)
    reg.write_text("artifacts:\n  a: {used_by: []}\n  b: {used_by: []}\n")
    artifacts.unregister("a")
    assert list(artifacts.load_registry()) == ["b"]
    with pytest.raises(KeyError, match="not in"):
        artifacts.unregister("a")
