"""Artifacts: atomic writes, sha256, the registry in ``data/registry.yaml``, and ``get_or_compute``.

An artifact is a folder ``<id>/`` holding files plus ``manifest.json`` (config, seed, scale, versions, commit,
wall time, sha256 and bytes of every file; ``omitted``: files recorded but not committed, see
``build.omit_weights``). Committed (``book`` scale) artifacts live in ``data/artifacts/<id>/`` and are listed in the
registry; ``ci``-scale ones are recomputed into the cache folder.
This module is the bottom of the house: it imports nothing from the rest of the package but ``paths`` and
``version``. Loading an artifact into a :class:`Run` (``get_or_compute``) lives in :mod:`sparsecirc.build`.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save

from sparsecirc.paths import DATA_DIR, REPO_ROOT, cache_dir
from sparsecirc.version import __version__

REGISTRY_PATH = DATA_DIR / "registry.yaml"
ARTIFACTS_DIR = DATA_DIR / "artifacts"
CONFIGS_DIR = DATA_DIR / "configs"


class ArtifactError(RuntimeError):
    """A missing, corrupt or unregistered artifact; the message names the file and the command that rebuilds it."""


def rebuild_command(artifact_id: str, scale: str = "book") -> str:
    """The one command that rebuilds an artifact (written into manifests, the registry and error messages)."""
    return f"python -m sparsecirc reproduce {artifact_id} --scale {scale}"


# --- provenance -------------------------------------------------------------------------------------------------
def git_info() -> dict[str, object]:
    """The checkout's commit SHA and whether the work tree is dirty (None outside a git checkout)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    try:
        sha = run("rev-parse", "HEAD")
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": sha.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict[str, object]:
    """Versions and settings that affect numbers: recorded in every manifest."""
    return {"sparsecirc": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(), "platform": sys.platform,
            **git_info()}


# --- files ----------------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace`` (the one atomic
    writer of the package); the file gets the mode a plain ``open`` would give it (0666 less the umask), not
    ``mkstemp``'s 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON, atomically; gzip-compressed (mtime 0) when the path ends in ``.gz``."""
    data = (json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n").encode()
    atomic_write_bytes(path, gzip.compress(data, 9, mtime=0) if str(path).endswith(".gz") else data)


def _jsonable(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: missing")
    try:
        return json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_text())
    except (json.JSONDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


SPARSE_KEY = "sparsecirc.sparse"  # safetensors metadata: JSON {name: shape} of the tensors stored sparsely
SPARSE_MAX_DENSITY = 0.25  # a float tensor at or below this fraction of nonzeros is stored as (indices, values)
SPARSE_MIN_NUMEL = 4096


def _encode_sparse(tensors: dict, metadata: dict[str, str] | None) -> tuple[dict, dict[str, str] | None]:
    """Store each large, mostly-zero float tensor as ``<name>#idx`` (int32 flat indices of its nonzeros) and
    ``<name>#val`` (their values), its shape in the file's metadata: a weight-sparse model at 1/32 nonzeros takes
    1/16 of the bytes. Exact up to the sign of zero: :func:`load_tensors` rebuilds the same values, but a -0.0
    comes back as +0.0 (a weight-sparse model's masked weights are about half -0.0; keeping them would store every
    zero). Arithmetic does not see the difference (outputs can differ only in the sign of an exact zero), but a
    hash of the raw bytes does: the re-encoded models' ``prune_study.weights_sha256`` changed, so prune jobs cached
    before the re-encoding are not reused."""
    out, shapes = {}, {}
    for k, v in tensors.items():
        v = v.detach()
        if "#" in k:
            raise ValueError(f"tensor name {k!r} contains '#', which the sparse encoding reserves")
        if v.is_floating_point() and v.numel() >= SPARSE_MIN_NUMEL and v.numel() < 2 ** 31:
            nz = torch.nonzero(v.reshape(-1)).reshape(-1)
            if nz.numel() <= SPARSE_MAX_DENSITY * v.numel():
                out[f"{k}#idx"] = nz.to(torch.int32).contiguous()
                out[f"{k}#val"] = v.reshape(-1)[nz].contiguous()
                shapes[k] = list(v.shape)
                continue
        out[k] = v.contiguous()
    if not shapes:
        return out, metadata
    return out, {**(metadata or {}), SPARSE_KEY: json.dumps(shapes, sort_keys=True)}


def _decode_sparse(path: Path, tensors: dict, metadata: dict[str, str] | None) -> dict:
    shapes = json.loads((metadata or {}).get(SPARSE_KEY, "{}"))
    for k, shape in shapes.items():
        idx, val = tensors.pop(f"{k}#idx", None), tensors.pop(f"{k}#val", None)
        if idx is None or val is None or idx.shape != val.shape:
            raise ArtifactError(f"{path}: sparse tensor {k!r} lacks matching '#idx'/'#val' entries")
        dense = torch.zeros(int(np.prod(shape)), dtype=val.dtype)
        dense[idx.long()] = val
        tensors[k] = dense.reshape(shape)
    stray = [k for k in tensors if "#" in k]
    if stray:
        raise ArtifactError(f"{path}: sparse entries {stray} have no shape in the file's metadata")
    return tensors


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None, *,
                 sparse: bool = True) -> None:
    """safetensors, written atomically (contiguous copies; no pickles). With ``sparse`` (the default), tensors
    that are mostly zeros are stored as indices + values (see :func:`_encode_sparse`); :func:`load_tensors`
    returns them dense, so callers never see the encoding."""
    tensors, metadata = _encode_sparse(tensors, metadata) if sparse else (
        {k: v.detach().contiguous() for k, v in tensors.items()}, metadata)
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> dict:
    """The tensors of a safetensors file, sparse-encoded ones rebuilt dense. A missing, truncated or corrupt file
    is an ArtifactError naming it."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt") as f:  # one open: the tensors and the metadata
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ArtifactError(f"{path}: unreadable safetensors file ({e})") from None
    return _decode_sparse(path, tensors, metadata)


def reencode_sparse(folder: str | os.PathLike, file: str = "model.safetensors") -> dict:
    """Rewrite ``folder/file`` in the sparse encoding (same tensors, fewer bytes) and update the folder's manifest
    in place: the file's new sha256 and bytes, and a ``reencoded`` record with the old sha256 (which downstream
    manifests may still quote as provenance). The manifest's build record (commit, wall time, environment) is
    kept: nothing was rebuilt. Returns the updated manifest."""
    folder = Path(folder)
    manifest = verify_folder(folder)
    old = next(e for e in manifest["files"] if e["path"] == file)
    tensors = load_tensors(folder / file)
    save_tensors(folder / file, tensors)
    again = load_tensors(folder / file)
    if again.keys() != tensors.keys() or any(not torch.equal(again[k], tensors[k]) for k in tensors):
        raise ArtifactError(f"{folder / file}: sparse re-encoding did not round-trip")  # pragma: no cover
    new = {"path": file, "sha256": sha256_file(folder / file), "bytes": (folder / file).stat().st_size}
    manifest["files"] = [new if e["path"] == file else e for e in manifest["files"]]
    manifest.setdefault("reencoded", []).append(
        {"file": file, "from_sha256": old["sha256"], "from_bytes": old["bytes"], "encoding": "sparse (indices, values)",
         "by": {"sparsecirc": __version__, **git_info()}})
    write_json(folder / "manifest.json", manifest)
    return manifest


# --- whole folders: one writer at a time, replaced as a unit ------------------------------------------------------
class FolderBusyError(RuntimeError):
    """Another process holds the lock of a run folder (or of the registry)."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: a hidden sibling, so replacing the folder never moves its lock."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False, what: str = "a run") -> Iterator[Path]:
    """Hold an advisory lock (``fcntl.flock``) on ``folder`` for the block.

    With ``wait=False`` a second holder fails at once with :class:`FolderBusyError` naming the folder; with
    ``wait=True`` it waits its turn (the registry: two registrations at once must both land). The lock is
    released when the block exits or the process dies, so a crash never leaves a folder locked.
    """
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"{folder}: another process is writing {what} there (lock {path}); wait for it "
                                  "to finish or choose another folder") from None
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def staging_paths(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(``.<name>.new``, ``.<name>.old``): the siblings :func:`replace_folder` writes through."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.new", folder.parent / f".{folder.name}.old"


def replace_folder(folder: str | os.PathLike, write: Callable[[Path], Any]) -> Any:
    """Write a whole folder as one unit: ``write(staging)`` fills a fresh sibling folder, which then takes
    ``folder``'s place by two renames; the previous ``folder`` stays complete until the new one is. A kill at any
    moment leaves either the old or the new folder whole (:func:`recover_folder` puts it back). Returns what
    ``write`` returns."""
    folder = Path(folder)
    new, old = staging_paths(folder)
    for stale in (new, old):
        if stale.exists():
            shutil.rmtree(stale)
    new.mkdir(parents=True)
    result = write(new)
    _fsync_dir(new)
    if folder.exists():
        os.rename(folder, old)
    os.rename(new, folder)
    _fsync_dir(folder.parent)
    if old.exists():
        shutil.rmtree(old)
    return result


def recover_folder(folder: str | os.PathLike) -> list[str]:
    """After a crash inside :func:`replace_folder`: restore the last complete folder and drop stale temporaries.
    Returns what it did, one line each (empty when there was nothing to do)."""
    folder = Path(folder)
    new, old = staging_paths(folder)
    done = []
    if not (folder / "manifest.json").exists():
        for candidate in (old, new):  # the old folder was complete; a new one only if its manifest verifies
            if candidate.exists():
                try:
                    verify_folder(candidate)
                except ArtifactError:
                    continue
                if folder.exists():
                    shutil.rmtree(folder)
                os.rename(candidate, folder)
                done.append(f"restored {folder} from {candidate.name}")
                break
    for stale in (new, old):
        if stale.exists():
            shutil.rmtree(stale)
            done.append(f"removed the stale {stale}")
    return done


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- manifests --------------------------------------------------------------------------------------------------
def write_manifest(folder: str | os.PathLike, files: list[str], **info: Any) -> dict:
    """Hash ``files`` (relative to ``folder``) and write ``manifest.json`` last, so a torn write is detectable."""
    folder = Path(folder)
    entries = [{"path": f, "sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size} for f in files]
    manifest = {**info, "environment": environment(), "files": entries}
    write_json(folder / "manifest.json", manifest)
    return manifest


def verify_folder(folder: str | os.PathLike, rebuild_hint: str = "") -> dict:
    """Check every file of ``folder/manifest.json`` against its sha256; return the manifest."""
    folder = Path(folder)
    hint = f"; rebuild with `{rebuild_hint}`" if rebuild_hint else ""
    if not (folder / "manifest.json").exists():
        raise ArtifactError(f"{folder / 'manifest.json'}: missing{hint}")
    manifest = read_json(folder / "manifest.json")
    for e in (e for e in manifest["files"] if e["path"] not in manifest.get("omitted", ())):  # build.omit_weights
        p = folder / e["path"]
        if not p.exists():
            raise ArtifactError(f"{p}: missing{hint}")
        got = sha256_file(p)
        if got != e["sha256"]:
            raise ArtifactError(f"{p}: sha256 mismatch (expected {e['sha256'][:12]}…, got {got[:12]}…){hint}")
    return manifest


# --- registry ---------------------------------------------------------------------------------------------------
BENCHMARKS_DIR = DATA_DIR / "benchmarks"


def benchmark_result(name: str) -> dict:
    """A committed benchmark result, ``data/benchmarks/<name>.json`` (written by a script under ``benchmarks/``
    with ``--save``; the file records the command, machine, thread count and commit that produced it).

    Raises:
        FileNotFoundError: naming the file and the script's ``command`` recorded for it, when it is absent.
    """
    path = BENCHMARKS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no committed benchmark result {path}; run the script under benchmarks/ that "
                                f"writes it with --save {path}")
    return read_json(path)


def load_registry() -> dict[str, dict]:
    """The registry's entries by artifact id ({} when the file does not exist yet); a malformed file is an
    ArtifactError naming the file and the line."""
    if not REGISTRY_PATH.exists():
        return {}
    doc = read_yaml(REGISTRY_PATH)
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("artifacts", {}), dict):
        raise ArtifactError(f"{REGISTRY_PATH}: expected a mapping with an 'artifacts' mapping; restore it from git")
    return doc.get("artifacts") or {}


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a syntax error is one ArtifactError line naming the file, line and column."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ArtifactError(f"{path}:{where}: not valid YAML ({problem})") from None


def register(artifact_id: str, folder: str | os.PathLike, *, paper_ref: str, used_by: list[str]) -> dict:
    """Add or update ``artifact_id`` in the registry from its folder's manifest."""
    m = verify_folder(folder := Path(folder))
    kept = [f for f in m["files"] if f["path"] not in m.get("omitted", ())]
    entry = {"files": kept + [{"path": "manifest.json", "sha256": sha256_file(folder / "manifest.json"),
                               "bytes": (folder / "manifest.json").stat().st_size}],
             "produced_by": rebuild_command(artifact_id),
             "config": f"data/configs/{artifact_id}.yaml", "seed": m.get("seed"), "scale": m.get("scale"),
             "commit": m["environment"].get("commit"), "torch": m["environment"].get("torch"),
             "wall_time_s": m.get("wall_time_s"), "paper_ref": paper_ref, "used_by": sorted(used_by)}
    _update_registry(lambda reg: reg.__setitem__(artifact_id, entry))
    return entry


def unregister(artifact_id: str) -> None:
    """Drop ``artifact_id`` from the registry (its committed folder is the caller's to delete; its config stays,
    so ``reproduce`` can rebuild it). Raises KeyError when it is not registered."""
    if artifact_id not in load_registry():
        raise KeyError(f"{artifact_id} is not in {REGISTRY_PATH}")
    _update_registry(lambda reg: reg.pop(artifact_id))


def _update_registry(change: Callable[[dict], Any]) -> None:
    """Read the registry, apply ``change`` to its dict, write it back atomically, one process at a time."""
    with folder_lock(REGISTRY_PATH, wait=True, what="the registry"):
        reg = load_registry()
        change(reg)
        text = "# Registry of committed artifacts: written by sparsecirc.artifacts.register; do not edit by hand.\n"
        text += yaml.safe_dump({"artifacts": dict(sorted(reg.items()))}, sort_keys=False, width=120)
        atomic_write_bytes(REGISTRY_PATH, text.encode())


def verify_all(ids: list[str] | None = None) -> list[tuple[str, str | None]]:
    """Verify every registered artifact (or ``ids``): one ``(id, error or None)`` per artifact, never stopping
    at the first bad one. A missing or empty registry is an ArtifactError (nothing to verify is not a pass)."""
    reg = load_registry()
    if not reg:
        raise ArtifactError(f"{REGISTRY_PATH}: missing or empty; restore it from git")
    out = []
    for artifact_id in ids or sorted(reg):
        try:
            verify(artifact_id)
            out.append((artifact_id, None))
        except ArtifactError as e:
            out.append((artifact_id, str(e)))
    return out


def verify(artifact_id: str) -> Path:
    """Verify a committed artifact against the registry; return its folder."""
    reg = load_registry()
    hint = rebuild_command(artifact_id)
    if artifact_id not in reg:
        raise ArtifactError(f"{artifact_id!r} is not in {REGISTRY_PATH}; known: {sorted(reg)}")
    folder = ARTIFACTS_DIR / artifact_id
    for e in reg[artifact_id]["files"]:
        p = folder / e["path"]
        if not p.exists():
            raise ArtifactError(f"{p}: missing; rebuild with `{hint}`")
        got = sha256_file(p)
        if got != e["sha256"]:
            raise ArtifactError(f"{p}: sha256 mismatch with the registry (expected {e['sha256'][:12]}…, "
                                f"got {got[:12]}…); rebuild with `{hint}`")
    return folder


# --- loaded artifacts -------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A loaded artifact bundle: what chapters call ``run``.

    ``model``, ``history``, ``config`` and ``metrics`` are set for artifacts that hold a trained GPT (a run folder,
    :func:`sparsecirc.core.train.save_run`); ``results`` for studies (``results.json``, circuits in ``circuits/``).
    """

    id: str
    scale: str
    folder: Path
    manifest: dict
    model: Any = None
    history: Any = None
    config: Any = None
    metrics: dict | None = None
    results: dict | None = None


def model_sha256(run: Run) -> str:
    """sha256 of a loaded artifact's ``model.safetensors``, from its manifest (for ``init_from`` provenance)."""
    return next(f["sha256"] for f in run.manifest["files"] if f["path"] == "model.safetensors")


def _config_sha256(artifact_id: str) -> str:
    return sha256_file(CONFIGS_DIR / f"{artifact_id}.yaml") if (CONFIGS_DIR / f"{artifact_id}.yaml").exists() else ""


def verify_cached(artifact_id: str, folder: str | os.PathLike) -> dict:
    """:func:`verify_folder` for a cache build, which must also come from the *current* ``data/configs/<id>.yaml``:
    a build made before the config was edited is stale (ArtifactError), so callers rebuild it."""
    folder = Path(folder)
    m = verify_folder(folder)
    stamp = folder / "config.sha256"
    if not stamp.exists() or stamp.read_text().strip() != _config_sha256(artifact_id):
        raise ArtifactError(f"{folder}: built from another version of data/configs/{artifact_id}.yaml")
    return m


def stamp_cached(artifact_id: str, folder: str | os.PathLike) -> None:
    """Record which config a cache build came from (checked by :func:`verify_cached`)."""
    atomic_write_bytes(Path(folder) / "config.sha256", _config_sha256(artifact_id).encode())


def artifact_folder(artifact_id: str, scale: str) -> Path:
    return ARTIFACTS_DIR / artifact_id if scale == "book" else cache_dir() / "artifacts" / scale / artifact_id
