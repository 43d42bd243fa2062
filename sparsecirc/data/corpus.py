"""The pinned, offline Python-code corpus: CPython stdlib sources + generated "simple Python" programs.

Gao et al. pretrain on a large Python corpus that is not released (paper §2, our digest §10.1). Offline and on
CPU we use two parts:

* ``stdlib`` - real code: the CPython 3.11.7 standard library (PSF licence), committed as one compressed
  JSONL snapshot, ``data/corpus/cpython-3.11.7-stdlib.jsonl.xz``, whose sha256 ``data/corpus/SOURCES.json``
  pins. ``build_stdlib_snapshot()`` (``python -m sparsecirc corpus``) rebuilds it from the running
  interpreter; the inclusion rules are ``_keep_reason`` below and are copied into SOURCES.json.
* ``simple`` - ``sparsecirc.data.simple_python.generate_programs(n_simple, seed)``, generated at load time;
  the default corpus' sha256 is pinned in SOURCES.json and checked by a test.

A document goes to ``val`` when ``int(sha256(text)[:8], 16) % 100 < VAL_PERCENT``, so the split of a document
never changes when others are added, and identical documents always share a split.

Example:
    >>> import sparsecirc.data.corpus as corpus
    >>> ds = corpus.load_corpus("val")          # datasets.Dataset: text, source, doc_id
    >>> tok = sparsecirc.data.tokenizer.load_tokenizer()
    >>> ids = corpus.corpus_tokens("val", tok)  # 1-D int32 tensor, documents separated by <|endoftext|>
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import re
import sys
import sysconfig
from pathlib import Path

import datasets
import numpy as np
import torch

from sparsecirc.artifacts import atomic_write_bytes, sha256_file
from sparsecirc.data import simple_python
from sparsecirc.paths import DATA_DIR, cache_dir

STDLIB_VERSION = "3.11.7"  # the snapshot is pinned to this interpreter's Lib/
SNAPSHOT_NAME = f"cpython-{STDLIB_VERSION}-stdlib.jsonl.xz"
CORPUS_DIR = DATA_DIR / "corpus"  # module attribute so tests can point it at a tmp copy
REBUILD_CMD = "python -m sparsecirc corpus"
SPLITS = ("train", "val")
PARTS = ("stdlib", "simple")
VAL_PERCENT = 5
DEFAULT_N_SIMPLE = 20_000  # ~8.9M characters, about the size of the stdlib part (see data/corpus/README.md)
XZ_PRESET = 9  # fixed preset; the .xz container stores no timestamps or file names
MAX_SNAPSHOT_BYTES = 3_000_000

_EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "lib-dynload"}
# generated data tables (codec maps, Sphinx topic dump, Unicode tables) teach no Python idioms
_GENERATED = re.compile(r"(?i)auto-?generated|automatically generated|with gencodec\.py|do not edit")


class SnapshotError(RuntimeError):
    """The committed stdlib snapshot is missing or does not match its pinned sha256."""


# --- helpers ------------------------------------------------------------------------------------------
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_of(text: str) -> str:
    """``"val"`` if ``int(sha256(text)[:8], 16) % 100 < VAL_PERCENT`` else ``"train"``."""
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def simple_sha256(programs: list[str]) -> str:
    """sha256 of the simple part: each program's UTF-8 bytes followed by a NUL byte."""
    h = hashlib.sha256()
    for p in programs:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _check_choice(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


# --- the stdlib snapshot ------------------------------------------------------------------------------
def _keep_reason(rel: Path, text: str | None) -> str | None:
    """None if ``rel`` goes into the snapshot, else the reason it is excluded."""
    if any(part in _EXCLUDED_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
        return "excluded directory"  # tests, idlelib, site-packages, build config
    if rel.name.startswith("_sysconfigdata"):
        return "machine-specific build data"
    if text is None:
        return "not valid UTF-8"
    if _GENERATED.search(text[:1500]):
        return "generated data table"
    return None


def _collect_stdlib(root: Path) -> tuple[list[dict], dict[str, str]]:
    docs, excluded = [], {}
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            text = None
        reason = _keep_reason(rel, text)
        if reason is None:
            docs.append({"path": rel.as_posix(), "text": text})
        elif reason != "excluded directory":  # whole directories are described by the rule, not listed
            excluded[rel.as_posix()] = reason
    return docs, excluded


def build_stdlib_snapshot(out_dir: Path | None = None) -> Path:
    """Write the stdlib snapshot and ``SOURCES.json`` into ``out_dir`` (default ``data/corpus``).

    Rules: all ``*.py`` under ``sysconfig.get_paths()["stdlib"]``, sorted by relative path, except
    ``_EXCLUDED_DIRS``, ``_sysconfigdata*`` and files whose header marks them as generated; if the
    result exceeds ``MAX_SNAPSHOT_BYTES`` compressed, the largest files are dropped (none are for 3.11.7).

    Returns:
        Path of the ``.jsonl.xz`` file.
    """
    version = ".".join(map(str, sys.version_info[:3]))
    if version != STDLIB_VERSION:
        raise RuntimeError(f"the snapshot is pinned to CPython {STDLIB_VERSION}; this is {version}")
    out_dir = Path(out_dir) if out_dir is not None else CORPUS_DIR
    docs, excluded = _collect_stdlib(Path(sysconfig.get_paths()["stdlib"]))
    while True:
        raw = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
        blob = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)
        if len(blob) <= MAX_SNAPSHOT_BYTES:
            break
        biggest = max(docs, key=lambda d: len(d["text"]))
        docs.remove(biggest)
        excluded[biggest["path"]] = "dropped to keep the snapshot under the size cap"
    snapshot = out_dir / SNAPSHOT_NAME
    atomic_write_bytes(snapshot, blob)
    licence = (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt").read_bytes()
    atomic_write_bytes(out_dir / "LICENSE-PSF.txt", licence)  # PSF licence clause 2: keep the notice with copies
    simple = simple_python.generate_programs(DEFAULT_N_SIMPLE, 0)
    sources = {
        "stdlib": {
            "file": SNAPSHOT_NAME, "sha256": _sha256_bytes(blob), "bytes": len(blob),
            "uncompressed_sha256": _sha256_bytes(raw), "documents": len(docs),
            "characters": sum(len(d["text"]) for d in docs),
            "source": f"CPython {STDLIB_VERSION} standard library (Lib/*.py) of the interpreter that ran the command",
            "license": "Python Software Foundation License Version 2 (PSF-2.0), https://docs.python.org/3/license.html",
            "license_file": "LICENSE-PSF.txt", "license_sha256": _sha256_bytes(licence),
            "made_by": REBUILD_CMD,
            "format": f"xz (preset {XZ_PRESET}, CRC64) of JSON lines {{\"path\", \"text\"}}, sorted by path",
            "rules": [f"exclude directories named {sorted(_EXCLUDED_DIRS)} and config-*",
                      "exclude _sysconfigdata*.py (machine-specific build paths)",
                      "exclude files that are not valid UTF-8",
                      f"exclude generated tables: first 1500 characters match /{_GENERATED.pattern}/",
                      f"drop the largest files while the .xz exceeds {MAX_SNAPSHOT_BYTES} bytes"],
            "excluded_files": excluded,
        },
        "simple": {
            "generator": "sparsecirc.simple_python.generate_programs",
            "generator_version": simple_python.GENERATOR_VERSION, "seed": 0, "n": DEFAULT_N_SIMPLE,
            "sha256": simple_sha256(simple), "characters": sum(map(len, simple)),
            "sha256_rule": "sha256 over each program's UTF-8 bytes followed by a NUL byte",
        },
        "split": {"val_percent": VAL_PERCENT, "rule": "val iff int(sha256(text)[:8], 16) % 100 < val_percent"},
    }
    atomic_write_bytes(out_dir / "SOURCES.json", (json.dumps(sources, indent=2) + "\n").encode("utf-8"))
    return snapshot


def _sources(corpus_dir: Path) -> dict:
    path = corpus_dir / "SOURCES.json"
    if not path.exists():
        raise SnapshotError(f"{path} is missing; rebuild with `{REBUILD_CMD}`")
    return json.loads(path.read_text())


def _verified_snapshot() -> tuple[Path, str]:
    """Path and sha256 of the stdlib snapshot, after checking it against SOURCES.json."""
    entry = _sources(CORPUS_DIR)["stdlib"]
    path = CORPUS_DIR / entry["file"]
    if not path.exists():
        raise SnapshotError(f"stdlib snapshot {path} is missing; rebuild with `{REBUILD_CMD}`")
    sha = sha256_file(path)
    if sha != entry["sha256"]:
        raise SnapshotError(f"stdlib snapshot {path} has sha256 {sha[:12]}..., SOURCES.json pins "
                            f"{entry['sha256'][:12]}...; restore it from git or rebuild with `{REBUILD_CMD}`")
    return path, sha


def snapshot_sha256() -> str:
    """sha256 of the committed stdlib snapshot, after checking it against ``SOURCES.json`` (SnapshotError if not)."""
    return _verified_snapshot()[1]


def _read_stdlib() -> list[dict]:
    path, _ = _verified_snapshot()
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# --- public API ---------------------------------------------------------------------------------------
def load_corpus(split: str = "train", *, n_simple: int = DEFAULT_N_SIMPLE, seed: int = 0,
                parts: tuple[str, ...] = PARTS) -> datasets.Dataset:
    """One split of the corpus as a ``datasets.Dataset``.

    Args:
        split: ``"train"`` or ``"val"``.
        n_simple: number of generated programs before the split (about 95% land in train).
        seed: seed of the program generator.
        parts: any of ``"stdlib"``, ``"simple"``; documents come in this order (stdlib sorted by path).
    Returns:
        Dataset with string columns ``text``, ``source`` (the part) and ``doc_id``
        (``stdlib/<path>`` or ``simple/<seed>/<index>``).

    Example:
        >>> ds = load_corpus("val", parts=("stdlib",))
        >>> ds[0]["doc_id"]          # e.g. 'stdlib/...'
    """
    _check_choice(split, SPLITS, "split")
    for part in parts:
        _check_choice(part, PARTS, "part")
    cols: dict[str, list[str]] = {"text": [], "source": [], "doc_id": []}

    def add(text: str, source: str, doc_id: str) -> None:
        if split_of(text) == split:
            cols["text"].append(text)
            cols["source"].append(source)
            cols["doc_id"].append(doc_id)

    for part in parts:
        if part == "stdlib":
            for d in _read_stdlib():
                add(d["text"], "stdlib", "stdlib/" + d["path"])
        else:
            for i, text in enumerate(simple_python.generate_programs(n_simple, seed)):
                add(text, "simple", f"simple/{seed}/{i}")
    features = datasets.Features({k: datasets.Value("string") for k in cols})
    return datasets.Dataset.from_dict(cols, features=features)


def _tokens_key(split: str, tokenizer, n_simple: int, seed: int, parts: tuple[str, ...]) -> str:
    """Cache key: what the token stream depends on. The simple part is identified by its generator's
    source bytes, seed and n (cheap) rather than by generating it."""
    _, snapshot_sha = _verified_snapshot() if "stdlib" in parts else (None, None)
    generator_sha = sha256_file(Path(simple_python.__file__)) if "simple" in parts else None
    spec = {"split": split, "parts": list(parts), "stdlib": snapshot_sha, "simple_generator": generator_sha,
            "simple_version": simple_python.GENERATOR_VERSION, "n_simple": n_simple, "seed": seed,
            "python": list(sys.version_info[:2]), "tokenizer": tokenizer.sha256, "val_percent": VAL_PERCENT,
            "layout": "doc EOT doc EOT ..."}
    return f"{split}-" + _sha256_bytes(json.dumps(spec, sort_keys=True).encode())[:16]


def corpus_tokens(split: str, tokenizer, *, n_simple: int = DEFAULT_N_SIMPLE, seed: int = 0,
                  parts: tuple[str, ...] = PARTS) -> torch.Tensor:
    """All documents of ``split`` tokenised, each followed by ``tokenizer.eot_id``; cached as ``.npy``.

    The cache file is ``cache_dir()/tokens/<split>-<key>.npy`` (uint16), where the key hashes the snapshot
    sha256, the generator source, ``n_simple``, ``seed``, ``parts`` and the tokenizer's sha256.

    Args:
        split: ``"train"`` or ``"val"``.
        tokenizer: a ``sparsecirc.data.tokenizer.CodeTokenizer`` (needs ``encode_batch``, ``eot_id``, ``sha256``).
    Returns:
        ``[n_tokens]`` int32 tensor, documents in ``load_corpus`` order.

    Example:
        >>> ids = corpus_tokens("val", load_tokenizer())
        >>> ids.dtype, ids.ndim
        (torch.int32, 1)
    """
    _check_choice(split, SPLITS, "split")
    for part in parts:
        _check_choice(part, PARTS, "part")
    def build() -> np.ndarray:
        texts = load_corpus(split, n_simple=n_simple, seed=seed, parts=parts)["text"]
        encoded = tokenizer.encode_batch(texts)
        arr = np.empty(sum(len(e) + 1 for e in encoded), dtype=np.uint16)  # vocab 2048 fits in uint16
        pos = 0
        for ids in encoded:
            arr[pos:pos + len(ids)] = ids
            arr[pos + len(ids)] = tokenizer.eot_id
            pos += len(ids) + 1
        return arr

    return cached_tokens(_tokens_key(split, tokenizer, n_simple, seed, tuple(parts)), build)


def cached_tokens(key: str, build) -> torch.Tensor:
    """The token stream cached as ``cache_dir()/tokens/<key>.npy`` (uint16, written atomically by ``build()`` the
    first time), as an int32 tensor."""
    path = cache_dir() / "tokens" / f"{key}.npy"
    if not path.exists():
        buf = io.BytesIO()
        np.save(buf, build(), allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.int32))


def corpus_stats(tokenizer=None, *, n_simple: int = DEFAULT_N_SIMPLE, seed: int = 0) -> dict:
    """Documents, characters (and tokens, if a tokenizer is given) per split and part.

    Returns:
        ``{split: {part: {"docs": int, "chars": int, "tokens": int}}}`` (``tokens`` only with a tokenizer).
    """
    stats: dict = {}
    for split in SPLITS:
        ds = load_corpus(split, n_simple=n_simple, seed=seed)
        for part in PARTS:
            texts = [t for t, s in zip(ds["text"], ds["source"]) if s == part]
            entry = {"docs": len(texts), "chars": sum(map(len, texts))}
            if tokenizer is not None:
                entry["tokens"] = sum(map(len, tokenizer.encode_batch(texts)))
            stats.setdefault(split, {})[part] = entry
    return stats


class CorpusIndex:
    """``prompt in index``: is ``prompt`` a substring of one of ``texts``? Exact; a line / line-pair set rules
    most prompts out before the (slow) substring search over all documents."""

    def __init__(self, texts):
        texts = list(texts)
        self.big = "\0".join(texts)  # \0 never occurs in a prompt: no match across documents
        self.lines, self.line_pairs = set(), set()
        for t in texts:
            ls = t.split("\n")
            self.lines.update(ls)
            self.line_pairs.update(a + "\n" + b for a, b in zip(ls, ls[1:]))

    def __call__(self, prompt: str) -> bool:
        return prompt in self

    def __contains__(self, prompt: str) -> bool:
        full = prompt.split("\n")[1:-1]  # lines of the prompt that must be whole lines of a matching document
        if any(a + "\n" + b not in self.line_pairs for a, b in zip(full, full[1:])):
            return False
        if any(line not in self.lines for line in full):
            return False
        return prompt in self.big


def main(argv: list[str] | None = None) -> None:
    """``python -m sparsecirc corpus``: rebuild the snapshot and SOURCES.json, print sizes."""
    path = build_stdlib_snapshot()
    print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {sha256_file(path)})")
    print(json.dumps(corpus_stats(), indent=1))


if __name__ == "__main__":
    main()
