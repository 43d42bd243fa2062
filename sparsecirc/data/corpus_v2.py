"""Data version 2's corpus: v1's CPython stdlib documents plus the endless simple-Python-v2 stream, tokenised in chunks.

Version 1 (:mod:`sparsecirc.data.corpus`) holds a fixed list of 20,000 generated programs; version 2 reads
:func:`sparsecirc.data.simple_python_v2.program_at` ``(seed, i)`` for as many ``i`` as the requested number of
tokens needs, so a long run sees fresh programs and never repeats one (the stream holds > 1.8e10 distinct tokens,
see ``simple_python_v2``). A split is:

* ``stdlib`` - the same stdlib documents as v1, split by the same rule (``corpus.split_of``: sha256 of the text);
* ``simple`` - **val**: programs ``VAL_START .. VAL_START + VAL_PROGRAMS - 1`` (``VAL_START = 2**40``, a range no
  training run reaches); **train**: programs ``0, 1, 2, ...`` of the same seed, skipping any whose text equals a
  validation program's (so no text is in both splits), until the stream holds ``n_simple_tokens`` tokens.

The stream is ``doc EOT doc EOT ...``: the stdlib documents of the split (in ``corpus.load_corpus`` order), then
the programs; train is cut at exactly ``stdlib tokens + n_simple_tokens`` (the last program may be cut short), val
holds its ``VAL_PROGRAMS`` programs whole (~1 M tokens), whatever ``n_simple_tokens`` is. Token streams are
cached like v1's, as ``cache_dir()/tokens/<split>-v2-<key>.npy`` (uint16, written atomically), the key holding
split, seed, ``n_simple_tokens``, the parts, the tokenizer's sha256, the generator version (default 3) and the
sha256 of its four source files, the snapshot's sha256 and the Python version.

Example:
    >>> from sparsecirc.data.tokenizer import load_tokenizer
    >>> tok = load_tokenizer(version="v2")
    >>> ids = corpus_tokens_v2("train", tok, n_simple_tokens=2_000_000)   # [stdlib train tokens + 2,000,000]
    >>> val = corpus_tokens_v2("val", tok)                                 # the same for any n_simple_tokens
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from functools import lru_cache

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from sparsecirc.data import corpus, simple_python_v2
from sparsecirc.data.simple_python_v2 import GENERATOR_VERSION

VAL_START = 2 ** 40  # first program index of the validation stream
VAL_PROGRAMS = 4_000  # validation programs (~1 M tokens)
CHUNK = 2_000  # programs generated and encoded per step
SPLITS, PARTS = corpus.SPLITS, corpus.PARTS


def _check(split: str, parts: tuple[str, ...], seed: int, n_simple_tokens: int | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"unknown or no parts {list(parts)!r}; valid: {', '.join(PARTS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if split == "train" and "simple" in parts and (isinstance(n_simple_tokens, bool) or
                                                     not isinstance(n_simple_tokens, int) or n_simple_tokens <= 0):
        raise ValueError(f"the v2 train stream needs n_simple_tokens, a positive int (e.g. 60_000_000), "
                         f"got {n_simple_tokens!r}")


@lru_cache(maxsize=4)
def val_texts(seed: int = 0, generator_version: int = GENERATOR_VERSION) -> frozenset[str]:
    """The texts of the validation programs of stream ``seed`` (the train stream skips them)."""
    return frozenset(simple_python_v2.generate_programs(VAL_PROGRAMS, seed, start=VAL_START,
                                                        version=generator_version))


def simple_programs(split: str, seed: int = 0, start: int | None = None,
                    generator_version: int = GENERATOR_VERSION) -> Iterator[tuple[int, str]]:
    """``(index, text)`` of the ``split``'s simple-Python-v2 programs in stream order (see the module docstring).

    Args:
        split: ``"train"`` (endless: programs ``start, start + 1, ...`` minus the validation texts) or ``"val"``
            (the ``VAL_PROGRAMS`` programs from ``VAL_START``).
        seed: the stream's seed.
        start: first program index (default: 0 for train, ``VAL_START`` for val).
        generator_version: the generator version writing the programs (``simple_python_v2.VERSIONS``).
    """
    _check(split, PARTS, seed, 1)
    simple_python_v2.check_version(generator_version)
    if split == "val":
        first = VAL_START if start is None else start
        for i in range(first, VAL_START + VAL_PROGRAMS):
            yield i, simple_python_v2.program_at(seed, i, generator_version)
        return
    skip = val_texts(seed, generator_version)
    i = 0 if start is None else start
    while True:
        text = simple_python_v2.program_at(seed, i, generator_version)
        if text not in skip:
            yield i, text
        i += 1


def load_corpus_v2(split: str = "train", *, n_programs: int | None = None, seed: int = 0,
                   parts: tuple[str, ...] = PARTS, generator_version: int = GENERATOR_VERSION) -> datasets.Dataset:
    """The documents of a v2 split as a ``datasets.Dataset`` (columns ``text``, ``source``, ``doc_id``), like
    ``corpus.load_corpus``: the stdlib documents, then the first ``n_programs`` programs of the split's stream
    (train: required, the stream is endless; val: default all ``VAL_PROGRAMS``). ``doc_id`` of a program is
    ``simple_v2/<seed>/<index>``; ``generator_version`` picks the generator version writing the programs."""
    if split == "train" and "simple" in parts and n_programs is None:
        raise ValueError("the v2 train stream is endless: pass n_programs (a bounded sample)")
    _check(split, tuple(parts), seed, 1)
    cols: dict[str, list[str]] = {"text": [], "source": [], "doc_id": []}
    if "stdlib" in parts:
        std = corpus.load_corpus(split, parts=("stdlib",))
        cols["text"] += std["text"]
        cols["source"] += std["source"]
        cols["doc_id"] += std["doc_id"]
    if "simple" in parts:
        n = VAL_PROGRAMS if n_programs is None else n_programs
        for k, (i, text) in enumerate(simple_programs(split, seed, generator_version=generator_version)):
            if k == n:
                break
            cols["text"].append(text)
            cols["source"].append("simple")
            cols["doc_id"].append(f"simple_v2/{seed}/{i}")
    features = datasets.Features({k: datasets.Value("string") for k in cols})
    return datasets.Dataset.from_dict(cols, features=features)


def tokens_key(split: str, tokenizer, n_simple_tokens: int | None, seed: int, parts: tuple[str, ...],
               generator_version: int = GENERATOR_VERSION) -> str:
    """Cache file stem of a v2 token stream: ``<split>-v2-<16 hex of sha256(spec)>`` where the spec holds what
    the stream depends on (see the module docstring)."""
    _check(split, tuple(parts), seed, n_simple_tokens)
    spec = {"version": "v2", "split": split, "parts": list(parts), "seed": seed,
            "n_simple_tokens": n_simple_tokens if split == "train" and "simple" in parts else None,
            "stdlib": corpus.snapshot_sha256() if "stdlib" in parts else None,
            "generator_version": simple_python_v2.check_version(generator_version),
            "generator_sha256": simple_python_v2.source_sha256() if "simple" in parts else None,
            "val_start": VAL_START, "val_programs": VAL_PROGRAMS, "val_percent": corpus.VAL_PERCENT,
            "python": list(sys.version_info[:2]), "tokenizer": tokenizer.sha256, "layout": "doc EOT doc EOT ..."}
    return f"{split}-v2-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _fill(arr: np.ndarray, pos: int, encoded: list[list[int]], eot: int) -> tuple[int, int]:
    """Write ``ids EOT ids EOT ...`` into ``arr`` from ``pos`` until it is full; return the new position and the
    number of documents (whole or cut) written."""
    for k, ids in enumerate(encoded):
        n = min(len(ids), len(arr) - pos)
        arr[pos:pos + n] = ids[:n]
        pos += n
        if pos < len(arr):
            arr[pos] = eot
            pos += 1
        if pos == len(arr):
            return pos, k + 1
    return pos, len(encoded)


def build_tokens_v2(split: str, tokenizer, *, n_simple_tokens: int | None = None, seed: int = 0,
                    parts: tuple[str, ...] = PARTS, progress: bool = True,
                    generator_version: int = GENERATOR_VERSION) -> tuple[np.ndarray, dict]:
    """The v2 token stream of ``split`` as a uint16 array, built now (no cache), and build statistics.

    Returns:
        ``(tokens [n] uint16, stats)`` where stats holds ``programs``, ``last_index``, ``seconds``,
        ``programs_per_s``, ``tokens_per_s`` (of the simple part: generation + encoding) and ``stdlib_tokens``.
    """
    _check(split, tuple(parts), seed, n_simple_tokens)
    eot = tokenizer.eot_id
    head: list[np.ndarray] = []
    if "stdlib" in parts:
        for ids in tokenizer.encode_batch(list(corpus.load_corpus(split, parts=("stdlib",))["text"])):
            head.append(np.asarray(ids + [eot], dtype=np.uint16))
    stdlib = np.concatenate(head) if head else np.empty(0, dtype=np.uint16)
    stats = {"stdlib_tokens": len(stdlib), "programs": 0, "last_index": None}
    t0 = time.perf_counter()
    if "simple" not in parts:
        return stdlib, {**stats, "seconds": 0.0, "programs_per_s": 0.0, "tokens_per_s": 0.0}
    if split == "train":
        full = np.empty(len(stdlib) + n_simple_tokens, dtype=np.uint16)  # one allocation, no final copy
        full[:len(stdlib)] = stdlib
        arr = full[len(stdlib):]
        pos, stream = 0, simple_programs("train", seed, generator_version=generator_version)
        with tqdm(total=n_simple_tokens, unit="tok", unit_scale=True, disable=not progress,
                  desc=f"v2 train stream (seed {seed})") as bar:
            while pos < len(arr):
                n = min(CHUNK, (len(arr) - pos) // 200 + 16)  # ~260 tokens per program: little overshoot
                chunk = [next(stream) for _ in range(n)]
                new, used = _fill(arr, pos, tokenizer.encode_batch([t for _, t in chunk]), eot)
                stats["programs"] += used
                stats["last_index"] = chunk[used - 1][0]
                bar.update(new - pos)
                pos = new
    else:
        chunk = list(simple_programs("val", seed, generator_version=generator_version))
        encoded = tokenizer.encode_batch([t for _, t in chunk])
        full = np.empty(len(stdlib) + sum(len(e) + 1 for e in encoded), dtype=np.uint16)
        full[:len(stdlib)] = stdlib
        arr = full[len(stdlib):]
        _fill(arr, 0, encoded, eot)
        stats.update(programs=len(chunk), last_index=chunk[-1][0])
    secs = time.perf_counter() - t0
    stats.update(seconds=secs, programs_per_s=stats["programs"] / secs, tokens_per_s=len(arr) / secs)
    return full, stats


def corpus_tokens_v2(split: str, tokenizer, *, n_simple_tokens: int | None = None, seed: int = 0,
                     parts: tuple[str, ...] = PARTS, progress: bool = True,
                     generator_version: int = GENERATOR_VERSION) -> torch.Tensor:
    """Data version 2's token stream of ``split`` (see the module docstring), cached as ``.npy``.

    Args:
        split: ``"train"`` or ``"val"``.
        tokenizer: a ``CodeTokenizer`` (``load_tokenizer(version="v2")``); needs ``encode_batch``, ``eot_id``,
            ``sha256``.
        n_simple_tokens: tokens of the simple-Python-v2 part of the train stream (required for train; val ignores
            it: its ``VAL_PROGRAMS`` programs are fixed).
        seed: the program stream's seed.
        parts: any of ``"stdlib"``, ``"simple"``.
        progress: show a tqdm bar while building (stderr).
        generator_version: the simple-Python-v2 generator version (``simple_python_v2.VERSIONS``; default 3).
    Returns:
        ``[n_tokens]`` int32 tensor, documents separated by ``tokenizer.eot_id``.

    Example:
        >>> ids = corpus_tokens_v2("train", load_tokenizer(version="v2"), n_simple_tokens=60_000_000)
    """
    def build() -> np.ndarray:
        return build_tokens_v2(split, tokenizer, n_simple_tokens=n_simple_tokens, seed=seed, parts=tuple(parts),
                               progress=progress, generator_version=generator_version)[0]

    key = tokens_key(split, tokenizer, n_simple_tokens, seed, tuple(parts), generator_version)
    return corpus.cached_tokens(key, build)
