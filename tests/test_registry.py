"""The registry, the configs and the chapters agree: every committed artifact verifies, every artifact a chapter
loads is registered, every registered artifact names chapters that exist."""
import ast
import json
import re

import pytest

from sparsecirc import artifacts, build
from sparsecirc.book import chapters
from sparsecirc.core.config import RunConfig

REG = artifacts.load_registry()
CONFIGS = sorted(p.stem for p in artifacts.CONFIGS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("artifact_id", sorted(REG))
def test_committed_artifacts_verify(artifact_id):
    folder = artifacts.verify(artifact_id)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scale"] == "book" and manifest["produced_by"].endswith(f"{artifact_id} --scale book")


@pytest.mark.parametrize("artifact_id", sorted(REG))
def test_registered_artifacts_name_existing_chapters(artifact_id):
    stems = {p.stem for p in chapters.chapters()}
    for ch in REG[artifact_id]["used_by"]:
        assert ch in stems, f"{artifact_id} says it is used by {ch}, which is not a chapter in book/_toc.yml"


def optional_artifacts(src: str) -> set[str]:
    """Ids a chapter lists in ``OPTIONAL = [...]``: loaded only when registered (book builds of hours), so they may be
    missing from the registry; the chapter must then ask ``is_registered`` before loading them."""
    out = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "OPTIONAL" for t in node.targets):
            out |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    if out:
        assert "is_registered(" in src, "a chapter with OPTIONAL artifacts must check reading.is_registered"
    return out


def test_optional_artifacts_are_read_from_the_chapter():
    assert optional_artifacts('OPTIONAL = ["a", "b"]\nreading.is_registered(x)') == {"a", "b"}
    with pytest.raises(AssertionError, match="is_registered"):
        optional_artifacts('OPTIONAL = ["a"]')


def test_every_artifact_a_chapter_loads_is_registered():
    for nb in chapters.chapters():
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        src = "\n".join("".join(c["source"]) for c in cells)
        optional = optional_artifacts("\n".join(line for line in src.splitlines() if not line.startswith("%")))
        for artifact_id in re.findall(r"[\"'](wst-[a-z0-9-]+|spa-[a-z0-9-]+)[\"']", src):
            if artifact_id in CONFIGS and artifact_id not in optional:
                assert artifact_id in REG, f"{nb.name} loads {artifact_id}, which is not in data/registry.yaml"


@pytest.mark.parametrize("artifact_id", CONFIGS)
def test_configs_parse_at_both_scales(artifact_id):
    spec = build.read_spec(artifact_id)
    assert spec["kind"] in build.PRODUCERS
    if spec["kind"] == "lm":
        for scale in ("ci", "book"):
            cfg = build.run_config(artifact_id, scale)
            assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_artifact_and_tampered_file_errors(tmp_path, monkeypatch):
    with pytest.raises(artifacts.ArtifactError, match="not in"):
        artifacts.verify("wst-no-such-artifact")
    with pytest.raises(artifacts.ArtifactError, match="no config"):
        build.read_spec("wst-no-such-artifact")


def test_a_cache_build_from_an_edited_config_is_rebuilt(tmp_cache, tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setattr(artifacts, "CONFIGS_DIR", configs)
    (configs / "toy.yaml").write_text("kind: x\nsteps: 1\n")
    built = []

    def fake_produce(artifact_id, scale, folder, progress=False):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "out.txt").write_text(f"build {len(built)}")
        artifacts.write_manifest(folder, ["out.txt"], id=artifact_id)
        artifacts.stamp_cached(artifact_id, folder)  # as build.produce does for every cache build
        built.append(artifact_id)

    monkeypatch.setattr(build, "produce", fake_produce)
    monkeypatch.setattr(build, "load", lambda artifact_id, folder, scale: (folder / "out.txt").read_text())
    assert build.get_or_compute("toy", scale="ci") == "build 0"
    assert build.get_or_compute("toy", scale="ci") == "build 0" and len(built) == 1  # reused
    (configs / "toy.yaml").write_text("kind: x\nsteps: 2\n")  # the config changes: the cached build is stale
    with pytest.raises(artifacts.ArtifactError, match="another version"):
        artifacts.verify_cached("toy", artifacts.artifact_folder("toy", "ci"))
    assert build.get_or_compute("toy", scale="ci") == "build 1" and len(built) == 2
    assert build.load_dependency("toy", "ci") == "build 1" and len(built) == 2  # a dependency reuses it too


def test_sparse_encoding_round_trips_and_shrinks(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 128, generator=g) * (torch.rand(256, 128, generator=g) < 1 / 32)
    t = {"w": w, "dense": torch.randn(64, 64, generator=g), "small": torch.zeros(8), "ids": torch.arange(5000)}
    artifacts.save_tensors(tmp_path / "s.safetensors", t)
    artifacts.save_tensors(tmp_path / "d.safetensors", t, sparse=False)
    back = artifacts.load_tensors(tmp_path / "s.safetensors")
    assert back.keys() == t.keys() and all(torch.equal(back[k], t[k]) and back[k].dtype == t[k].dtype for k in t)
    assert (tmp_path / "s.safetensors").stat().st_size < 0.7 * (tmp_path / "d.safetensors").stat().st_size
    with pytest.raises(ValueError, match="reserves"):
        artifacts.save_tensors(tmp_path / "x.safetensors", {"a#b": w})


def test_a_sparse_entry_without_its_shape_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    save_file({"w#idx": torch.arange(3, dtype=torch.int32), "w#val": torch.ones(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(artifacts.ArtifactError, match="no shape"):
        artifacts.load_tensors(tmp_path / "bad.safetensors")


def test_reencoding_a_folder_keeps_its_tensors_and_records_the_old_hash(tmp_path):
    torch = pytest.importorskip("torch")
    w = torch.zeros(128, 64)
    w[::7, ::5] = 1.5
    artifacts.save_tensors(tmp_path / "model.safetensors", {"w": w}, sparse=False)
    artifacts.write_manifest(tmp_path, ["model.safetensors"], scale="book")
    old = artifacts.sha256_file(tmp_path / "model.safetensors")
    m = artifacts.reencode_sparse(tmp_path)
    artifacts.verify_folder(tmp_path)
    assert m["reencoded"][0]["from_sha256"] == old != m["files"][0]["sha256"]
    assert torch.equal(artifacts.load_tensors(tmp_path / "model.safetensors")["w"], w)


def test_a_run_committed_without_its_weights_loads_its_record_and_is_rebuilt_as_a_dependency(tmp_cache, tmp_path,
                                                                                              monkeypatch):
    torch = pytest.importorskip("torch")
    from sparsecirc.core.config import make_config
    from sparsecirc.core.model import GPT
    from sparsecirc.core.train import History, save_run
    for name, value in {"ARTIFACTS_DIR": tmp_path / "artifacts", "REGISTRY_PATH": tmp_path / "registry.yaml",
                        "CONFIGS_DIR": tmp_path / "configs"}.items():
        monkeypatch.setattr(artifacts, name, value)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "toy.yaml").write_text("kind: lm\n")
    cfg = make_config("ci", model={"n_layer": 1, "d_model": 16, "d_head": 4, "n_ctx": 8, "d_vocab": 20})
    model = GPT(cfg.model)
    folder = tmp_path / "artifacts" / "toy"
    save_run(folder, model, History(step=[0], train_loss=[1.0]), cfg, metrics={"val_loss": 1.0}, kind="lm",
             scale="book")
    artifacts.register("toy", folder, paper_ref="p", used_by=["ch"])
    assert isinstance(build.get_or_compute("toy").model, GPT)
    with pytest.raises(artifacts.ArtifactError, match="not a committed"):
        build.omit_weights("other", "size")
    entry = build.omit_weights("toy", "data size")
    assert not (folder / "model.safetensors").exists()
    assert "model.safetensors" not in [f["path"] for f in entry["files"]]
    manifest = artifacts.read_json(folder / "manifest.json")
    assert manifest["omitted"] == ["model.safetensors"] and manifest["omitted_reason"] == "data size"
    assert any(f["path"] == "model.safetensors" for f in manifest["files"])  # its sha256 is still on record
    run = build.get_or_compute("toy")  # verifies; the record loads, the model says why it is not there
    assert run.metrics == {"val_loss": 1.0} and run.history.train_loss == [1.0] and run.config == cfg
    with pytest.raises(artifacts.ArtifactError, match="not committed.*reproduce toy"):
        run.model.eval()
    with pytest.raises(artifacts.ArtifactError, match="not a run with committed weights"):
        build.omit_weights("toy", "again")
    # an artifact built from it rebuilds it in the cache first
    rebuilt = []

    def fake_produce(artifact_id, scale, out, progress=False):
        save_run(out, model, History(step=[0], train_loss=[2.0]), cfg, metrics={"val_loss": 2.0}, kind="lm",
                 scale=scale)
        artifacts.stamp_cached(artifact_id, out)
        rebuilt.append(out)

    monkeypatch.setattr(build, "produce", fake_produce)
    dep = build.load_dependency("toy", "book")
    assert isinstance(dep.model, GPT) and dep.metrics == {"val_loss": 2.0} and len(rebuilt) == 1
    assert torch.equal(dep.model.embed.weight, model.embed.weight)
