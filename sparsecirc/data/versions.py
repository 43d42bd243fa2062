"""Data versions: which tokenizer, task data and simple-Python generator a model's data is made of.

A model's vocabulary is part of the model (its embedding rows mean one tokenizer's tokens), so the data version is
a model setting, ``ModelConfig.data_version`` (default ``"v1"``, the version of every committed artifact). Each
version names:

* ``tokenizer_file`` - the committed BPE in ``data/tokenizer/`` (sha256 pinned in ``data/tokenizer/SOURCES.json``);
* ``split_pattern`` - the pre-tokeniser regex it was trained with (the JSON file stores it too);
* ``tasks_dir`` - the folder of the 20 task sets under ``data/`` (``tasks`` / ``tasks_v2``);
* ``generator`` - the simple-Python generator of its corpus: v1 ``simple_python`` (``generate_programs(n,
  seed)``, a fixed list of programs), v2 ``simple_python_v2`` (``program_at(seed, i)``, an endless stream).

Version 2's pre-tokeniser never puts two ``[`` into one piece (P1's bracket-depth circuit reads single ``[``
tokens, paper §3.2.2; v1's `` [[`` token made nesting depth a token identity): a ``[`` is always a piece of its
own, with at most one leading space (`` [``). Runs of other punctuation stay together as in v1, so ``]]``,
``],``, ``("``, ``('``, ``")``, ``')`` are still single tokens.

Example:
    >>> get_version("v2").tokenizer_file
    'tinypy2-2048.json'
    >>> get_version("v3")
    Traceback (most recent call last):
    ValueError: unknown data version 'v3'; valid: v1, v2
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from sparsecirc.data import simple_python, simple_python_v2

# v1 (tinypy-2048): cl100k without its contraction branch, identifiers with `_` and digits and one leading
# space/punctuation mark, punctuation runs, a line break together with the next line's indentation
SPLIT_PATTERN_V1 = (
    r"[^\r\n\p{L}\p{N}_]?[\p{L}_][\p{L}\p{N}_]*"  # identifier, optionally after one space/punctuation mark
    r"| ?\p{N}{1,3}"                               # numbers, up to 3 digits per piece, optional leading space
    r"| ?[^\s\p{L}\p{N}_]+"                        # punctuation runs: (" ") ]] ], == +=
    r"|[ \t]*(?:\r?\n[ \t]*)+"                     # line breaks plus the next line's indentation
    r"|\s+(?!\S)|\s+"                              # other whitespace (cl100k)
)
# v2 (tinypy2-2048): v1 with `[` taken out of identifiers' leading mark and of punctuation runs, and a piece of
# its own (one leading space allowed), so no token holds two `[` and `x =[[` reads ` =`, `[`, `[`
SPLIT_PATTERN_V2 = (
    r"[^\r\n\p{L}\p{N}_\[]?[\p{L}_][\p{L}\p{N}_]*"  # identifier, optionally after one space/punctuation mark but `[`
    r"| ?\p{N}{1,3}"                                 # numbers, as in v1
    r"| ?\["                                         # one `[`, optionally after one space: `[`, ` [`
    r"| ?[^\s\p{L}\p{N}_\[]+"                        # punctuation runs without `[`: (" ") ]] ], == +=
    r"|[ \t]*(?:\r?\n[ \t]*)+"                       # line breaks plus the next line's indentation
    r"|\s+(?!\S)|\s+"                                # other whitespace (cl100k)
)


@dataclass(frozen=True)
class DataVersion:
    """What one data version is made of (see the module docstring).

    Attributes:
        name: ``"v1"`` or ``"v2"``.
        tokenizer_file: file name in ``data/tokenizer/``.
        split_pattern: the pre-tokeniser regex the tokenizer was trained with.
        tasks_dir: folder of the task sets, relative to ``data/``.
        generator: dotted name of the simple-Python generator module.
        streamed: True if the generator is an endless stream read by program index (``program_at``), False if
            the corpus holds a fixed number of programs (``generate_programs(n, seed)``).
    """

    name: str
    tokenizer_file: str
    split_pattern: str
    tasks_dir: str
    generator: str
    streamed: bool

    @property
    def generator_module(self) -> ModuleType:
        """The generator module itself (``sparsecirc.data.simple_python`` or ``...simple_python_v2``)."""
        return _GENERATORS[self.generator]


_GENERATORS = {m.__name__: m for m in (simple_python, simple_python_v2)}
DATA_VERSIONS: dict[str, DataVersion] = {
    "v1": DataVersion("v1", "tinypy-2048.json", SPLIT_PATTERN_V1, "tasks", simple_python.__name__, False),
    "v2": DataVersion("v2", "tinypy2-2048.json", SPLIT_PATTERN_V2, "tasks_v2", simple_python_v2.__name__, True),
}
DEFAULT_VERSION = "v1"  # every committed model, task set and artifact


def get_version(name: str) -> DataVersion:
    """The registered data version ``name``; ValueError naming the valid versions otherwise."""
    if not isinstance(name, str) or name not in DATA_VERSIONS:
        raise ValueError(f"unknown data version {name!r}; valid: {', '.join(DATA_VERSIONS)}")
    return DATA_VERSIONS[name]
