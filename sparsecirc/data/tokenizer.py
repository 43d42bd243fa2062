"""2048-token byte-level BPEs for Python code, trained on our corpus and committed (``tinypy-2048``, ``tinypy2-2048``).

The paper's tokenizer (``tinypython_2k``: 2048 tokens, ``<|endoftext|>`` = 2047, paper A.6 / digest §4) is
not reachable offline, so we train our own with HF ``tokenizers`` on the TRAIN split of
``sparsecirc.data.corpus`` and commit it as ``data/tokenizer/tinypy-2048.json`` (sha256 pinned in
``data/tokenizer/SOURCES.json``).

Pre-tokenisation (``SPLIT_PATTERN``) follows cl100k without its contraction branch, as the authors' code does,
with two changes for code:

* identifiers include ``_`` and digits (``__init__``, ``utf8``) and may carry one leading space or punctuation
  mark, so ``.add``, ``=None``, `` in`` can become single tokens;
* a line break is split off together with the following line's indentation (``"\\n    "``), so punctuation
  runs never absorb a newline. ``")`` and ``]]`` are then the same token whether or not the line ends there
  (the authors' pattern lets punctuation absorb trailing newlines; the tasks only need the first token).

Punctuation runs stay together, so ``("``, ``('``, ``")``, ``')``, ``]]`` and ``],`` are single tokens
(the task-critical ones, paper A.7); ``tests/test_tokenizer.py`` checks them.

Data version 2 (``sparsecirc.data.versions``) has its own tokenizer, ``data/tokenizer/tinypy2-2048.json``, trained
the same way on the v2 corpus (the stdlib TRAIN documents plus the first ``N_V2_PROGRAMS`` programs of the
simple-Python-v2 stream) with ``versions.SPLIT_PATTERN_V2``: a ``[`` is always a piece of its own (at most one
leading space), so no token holds two ``[`` and ``[[`` / `` [[`` are two tokens. ``load_tokenizer(version="v2")``
loads it; ``python -m sparsecirc tokenizer --version v2`` retrains it.

Example:
    >>> tok = load_tokenizer()
    >>> tok.decode(tok.encode('print("hi")\\n')) == 'print("hi")\\n'
    True
    >>> tok.id_to_token(tok.single_token_id('("'))
    '("'
"""
from __future__ import annotations

import argparse
import hashlib
import json
import numbers
from functools import lru_cache
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from sparsecirc.artifacts import atomic_write_bytes, sha256_file
from sparsecirc.data import corpus, simple_python_v2
from sparsecirc.data.versions import DATA_VERSIONS, DEFAULT_VERSION, SPLIT_PATTERN_V1, get_version
from sparsecirc.paths import DATA_DIR

VOCAB_SIZE = 2048
EOT = "<|endoftext|>"  # id VOCAB_SIZE - 1 = 2047, as in the paper's tinypython_2k
TOKENIZER_DIR = DATA_DIR / "tokenizer"  # module attribute so tests can point it at a tmp copy
TOKENIZER_NAME = "tinypy-2048.json"  # version 1's file (``versions.DATA_VERSIONS[v].tokenizer_file`` for each)
REBUILD_CMD = "python -m sparsecirc tokenizer"
SPLIT_PATTERN = SPLIT_PATTERN_V1  # version 1's pre-tokeniser (see ``sparsecirc.data.versions``)
N_V2_PROGRAMS = 12_000  # simple-Python-v2 programs 0..11,999 (~9 M characters, about the stdlib part's size)
REQUIRED_SINGLE_TOKENS = ('("', "('", '")', "')", "]]", "],")  # paper A.7
CANDIDATE_TOKENS = ("]", "[", ":", ",", "=", " =", "==", " ==", ".add", "+=", " +=", "in", " in", "(",
                    "elif", " elif", "else", "enumerate", " enumerate", "range", " range", " as", "=None",
                    "True", " True", "):", "while", "for", " if", " else", "lambda", " lambda", "'r'", "'w'",
                    "r", "w", "\n", "\n    ", "\n        ")


class TokenizerError(RuntimeError):
    """The committed tokenizer file is missing or does not match its pinned sha256."""


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode stand-ins for bytes (Ġ = space, Ċ = newline), inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codes, n = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def _new_tokenizer(split_pattern: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def check_text(text: str) -> str:
    """``text`` if it can be encoded: a ``str`` that is valid Unicode (no lone surrogates such as ``"\\ud800"``,
    which UTF-8 cannot hold); else a ValueError saying what is wrong and where."""
    if not isinstance(text, str):
        raise TypeError(f"the tokenizer encodes str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"text has a lone surrogate {text[e.start:e.end]!r} at character {e.start}: not valid "
                         "Unicode (decode your bytes with errors='replace' first)") from None
    return text


class CodeTokenizer:
    """Thin wrapper over a ``tokenizers.Tokenizer``: exact round trip, human-readable tokens."""

    def __init__(self, tok: Tokenizer, sha256: str):
        self._tok = tok
        self.sha256 = sha256
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.eot_id = tok.token_to_id(EOT)
        self._encoder = {v: k for k, v in _byte_decoder().items()}

    def __repr__(self) -> str:
        return f"CodeTokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id}, sha256={self.sha256[:12]})"

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. A literal ``<|endoftext|>`` in ``text`` becomes ``eot_id``."""
        return self._tok.encode(check_text(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts, in parallel (Rust)."""
        return [e.ids for e in self._tok.encode_batch([check_text(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids) -> str:
        """Text of ``ids`` (list or 1-D tensor); ``decode(encode(t)) == t`` for any ``t``."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i!r} is outside the vocabulary [0, {self.vocab_size})")
        ids = [int(i) for i in ids]
        return self._tok.decode(ids, skip_special_tokens=False)

    def id_to_token(self, i: int) -> str:
        """The token's text for display (``Ġ``/``Ċ`` mapped back to space/newline; bytes that are not whole
        UTF-8 characters shown as ``\\xNN``)."""
        raw = self._tok.id_to_token(int(i))
        if raw is None:
            raise ValueError(f"token id {i} out of range [0, {self.vocab_size})")
        if i == self.eot_id:
            return raw
        return bytes(_byte_decoder()[c] for c in raw).decode("utf-8", errors="backslashreplace")

    def token_to_id(self, s: str) -> int | None:
        """The id of the vocabulary entry whose text is ``s``, or None."""
        if s == EOT:
            return self.eot_id
        return self._tok.token_to_id("".join(self._encoder[b] for b in s.encode("utf-8")))

    def single_token_id(self, s: str) -> int:
        """The id ``s`` encodes to on its own; ValueError unless that is exactly one token."""
        ids = self.encode(s)
        if len(ids) != 1:
            shown = [self.id_to_token(i) for i in ids]
            raise ValueError(f"{s!r} is not a single token: it encodes to {len(ids)} tokens {shown}")
        return ids[0]


def tokenizer_path(version: str = DEFAULT_VERSION) -> Path:
    """Path of data version ``version``'s committed tokenizer (``TOKENIZER_DIR / <its tokenizer_file>``)."""
    return TOKENIZER_DIR / get_version(version).tokenizer_file


def load_tokenizer(path: str | Path | None = None, *, verify: bool = True,
                   version: str = DEFAULT_VERSION) -> CodeTokenizer:
    """Load a committed tokenizer: data version ``version``'s (default ``"v1"``, ``tinypy-2048.json``), or ``path``.

    Args:
        path: a tokenizer JSON (its sha256 must be listed in ``SOURCES.json`` next to it), or a data version name
            (``load_tokenizer("v2")`` is ``load_tokenizer(version="v2")``); None: ``version``'s file.
        verify: check that sha256 (pass False only for a tokenizer you just trained yourself).
        version: a key of ``sparsecirc.data.versions.DATA_VERSIONS``; ignored when ``path`` names a file.
    Returns:
        A ``CodeTokenizer``.

    Example:
        >>> load_tokenizer(version="v2").encode("x =[[1]]")   # ' =', '[', '[', '1', ']]'
    """
    if isinstance(path, str) and path in DATA_VERSIONS:
        path, version = None, path
    path = Path(path) if path is not None else tokenizer_path(version)
    if not path.exists():
        raise TokenizerError(f"tokenizer {path} is missing; rebuild with `{_rebuild_cmd(path)}`")
    sha = sha256_file(path)
    if verify:
        sources = path.parent / "SOURCES.json"
        pinned = json.loads(sources.read_text()).get(path.name, {}).get("sha256") if sources.exists() else None
        if sha != pinned:
            pinned_text = (pinned or "nothing")[:12]
            raise TokenizerError(f"tokenizer {path} has sha256 {sha[:12]}..., {sources} pins {pinned_text}...; "
                                 f"restore it from git or rebuild with `{_rebuild_cmd(path)}`")
    return CodeTokenizer(Tokenizer.from_file(str(path)), sha)


def _rebuild_cmd(path: Path) -> str:
    """The command that rebuilds the committed tokenizer named like ``path``."""
    version = next((v.name for v in DATA_VERSIONS.values() if v.tokenizer_file == path.name), DEFAULT_VERSION)
    return REBUILD_CMD if version == DEFAULT_VERSION else f"{REBUILD_CMD} --version {version}"


def train_bpe(texts, vocab_size: int = VOCAB_SIZE, split_pattern: str = SPLIT_PATTERN) -> Tokenizer:
    """BPE on ``texts`` with pre-tokeniser ``split_pattern``: ``vocab_size - 1`` merges+bytes, then
    ``<|endoftext|>`` as the last id."""
    tok = _new_tokenizer(split_pattern)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.add_special_tokens([EOT])
    if tok.get_vocab_size() != vocab_size or tok.token_to_id(EOT) != vocab_size - 1:
        raise RuntimeError(f"training produced {tok.get_vocab_size()} tokens, expected {vocab_size}")
    return tok


def training_texts(version: str = DEFAULT_VERSION) -> tuple[list[str], dict]:
    """The documents a version's tokenizer is trained on, and their description for ``SOURCES.json``.

    v1: the corpus TRAIN split (stdlib + ``simple_python`` programs, default sizes). v2: the stdlib TRAIN
    documents plus ``simple_python_v2`` programs ``0 .. N_V2_PROGRAMS - 1`` of seed 0 (the start of the v2 train
    stream; the validation stream starts at program 2**40, see ``corpus_v2``).
    """
    corpus_sources = json.loads((corpus.CORPUS_DIR / "SOURCES.json").read_text())
    if get_version(version).name == "v1":
        texts = list(corpus.load_corpus("train")["text"])
        return texts, {"split": "train", "stdlib_sha256": corpus_sources["stdlib"]["sha256"],
                       "simple_sha256": corpus_sources["simple"]["sha256"],
                       "n_simple": corpus.DEFAULT_N_SIMPLE, "seed": 0, "documents": len(texts)}
    stdlib = list(corpus.load_corpus("train", parts=("stdlib",))["text"])
    programs = simple_python_v2.generate_programs(N_V2_PROGRAMS, seed=0)
    return stdlib + programs, {
        "split": "train", "stdlib_sha256": corpus_sources["stdlib"]["sha256"], "stdlib_documents": len(stdlib),
        "generator": simple_python_v2.__name__, "generator_version": simple_python_v2.GENERATOR_VERSION,
        "generator_sha256": simple_python_v2.source_sha256(), "generator_files": list(simple_python_v2.SOURCE_FILES),
        "seed": 0, "programs": [0, N_V2_PROGRAMS], "simple_sha256": corpus.simple_sha256(programs),
        "documents": len(stdlib) + len(programs)}


def train_tokenizer(out_path: str | Path | None = None, vocab_size: int = VOCAB_SIZE, *,
                    version: str = DEFAULT_VERSION) -> Path:
    """Train data version ``version``'s tokenizer on its documents (``training_texts``), write the JSON and its
    ``SOURCES.json`` entry (default path: ``tokenizer_path(version)``).

    Returns:
        Path of the tokenizer JSON. Fails if a ``REQUIRED_SINGLE_TOKENS`` entry is not one token, or (v2) if a
        vocabulary entry holds two ``[``.
    """
    dv = get_version(version)
    out_path = Path(out_path) if out_path is not None else tokenizer_path(version)
    texts, trained_on = training_texts(version)
    tok = train_bpe(texts, vocab_size, dv.split_pattern)
    data = tok.to_str(pretty=True).encode("utf-8")
    wrapped = CodeTokenizer(tok, hashlib.sha256(data).hexdigest())
    for s in REQUIRED_SINGLE_TOKENS:
        wrapped.single_token_id(s)  # raises before anything is written
    if dv.name != "v1":
        double = [wrapped.id_to_token(i) for i in range(vocab_size) if wrapped.id_to_token(i).count("[") > 1]
        if double:
            raise RuntimeError(f"the {version} tokenizer must not hold two '[' in one token, found {double[:5]}")
    atomic_write_bytes(out_path, data)
    sources_path = out_path.parent / "SOURCES.json"
    sources = json.loads(sources_path.read_text()) if sources_path.exists() else {}
    candidates = CANDIDATE_TOKENS + (("[", " [", "[[", " [["," =[[", "=[") if dv.name != "v1" else ())
    sources[out_path.name] = {
        "sha256": wrapped.sha256, "bytes": len(data), "vocab_size": vocab_size, "eot_id": wrapped.eot_id,
        "made_by": REBUILD_CMD if dv.name == "v1" else f"{REBUILD_CMD} --version {dv.name}",
        "tokenizers": __import__("tokenizers").__version__,
        **({} if dv.name == "v1" else {"data_version": dv.name}),
        "trained_on": trained_on,
        "split_pattern": dv.split_pattern,
        "single_tokens": {s: wrapped.token_to_id(s) is not None and len(wrapped.encode(s)) == 1
                          for s in REQUIRED_SINGLE_TOKENS + candidates},
    }
    atomic_write_bytes(sources_path, (json.dumps(sources, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return out_path


def main(argv: list[str] | None = None) -> None:
    """``python -m sparsecirc tokenizer [--version v2]``: retrain and rewrite a committed tokenizer."""
    parser = argparse.ArgumentParser(prog="python -m sparsecirc tokenizer", description=main.__doc__)
    parser.add_argument("--version", default=DEFAULT_VERSION, choices=list(DATA_VERSIONS),
                        help="data version whose tokenizer to train (default %(default)s)")
    args = parser.parse_args(argv)
    path = train_tokenizer(version=args.version)
    print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {sha256_file(path)})")


if __name__ == "__main__":
    main()
