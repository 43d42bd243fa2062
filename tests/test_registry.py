"""The registry, the configs and the chapters agree: every committed artifact verifies, every artifact a chapter
loads is registered, every registered artifact names chapters that exist."""
import json
import re

import pytest

from sparsecirc import artifacts, book, make
from sparsecirc.config import RunConfig

REG = artifacts.load_registry()
CONFIGS = sorted(p.stem for p in artifacts.CONFIGS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("artifact_id", sorted(REG))
def test_committed_artifacts_verify(artifact_id):
    folder = artifacts.verify(artifact_id)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scale"] == "book" and manifest["produced_by"].endswith(f"{artifact_id} --scale book")


@pytest.mark.parametrize("artifact_id", sorted(REG))
def test_registered_artifacts_name_existing_chapters(artifact_id):
    stems = {p.stem for p in book.chapters()}
    for ch in REG[artifact_id]["used_by"]:
        assert ch in stems, f"{artifact_id} says it is used by {ch}, which is not a chapter in book/_toc.yml"


def test_every_artifact_a_chapter_loads_is_registered():
    for nb in book.chapters():
        src = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        for artifact_id in re.findall(r"[\"'](wst-[a-z0-9-]+|spa-[a-z0-9-]+)[\"']", src):
            if artifact_id in CONFIGS:
                assert artifact_id in REG, f"{nb.name} loads {artifact_id}, which is not in data/registry.yaml"


@pytest.mark.parametrize("artifact_id", CONFIGS)
def test_configs_parse_at_both_scales(artifact_id):
    spec = make.read_spec(artifact_id)
    assert spec["kind"] in make.PRODUCERS
    if spec["kind"] == "lm":
        for scale in ("ci", "book"):
            cfg = make.run_config(artifact_id, scale)
            assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_artifact_and_tampered_file_errors(tmp_path, monkeypatch):
    with pytest.raises(artifacts.ArtifactError, match="not in"):
        artifacts.verify("wst-no-such-artifact")
    with pytest.raises(artifacts.ArtifactError, match="no config"):
        make.read_spec("wst-no-such-artifact")
