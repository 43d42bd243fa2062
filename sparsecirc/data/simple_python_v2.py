"""Version 2 of the seeded "simple Python" generator: endless, resumable, and varied like real code.

Version 1 (:mod:`sparsecirc.data.simple_python`) writes each idiom of P1's 20 tasks (digest §6) from one or two
templates, and models trained on it learned the templates rather than the idioms: on prompts written
independently the quote task falls from 0.94 to 0.77, a nested list opened without a space (``x =[[``) is near
0.14, lists of names or of ``True`` / ``False`` / ``None`` are at chance, and no swap is ever written in the
reverse order (``b, a = a, b`` after ``a, b = ...``). Version 2 varies every idiom along the axes real code
varies: element types, spacing (``x = [[``, ``x =[[``, ``x=[[``, ``[ [1, 2], [3] ]``, trailing commas), literals
over several lines, strings that contain the other quote, long lists, nesting depth 1-4, and more surrounding
code (functions, classes, loops, comprehensions, ``try``, comments, docstrings). Vocabulary, expressions and
blocks live in ``simple_python_v2_vocab``, ``simple_python_v2_exprs`` and ``simple_python_v2_blocks``.

Program ``i`` of stream ``seed`` depends only on ``(seed, i)``: it is drawn from
``random.Random(f"simple_python_v2:{seed}:{i}")`` (a str seed is hashed with sha512, not with Python's salted
``hash``), so :func:`stream_programs` can resume at any index and a long run never sees a program twice.

Version 3 (``GENERATOR_VERSION = 3``) raises idiom density per token. Version 2 spent its tokens on variety, and
per token its training stream held fewer of every task idiom than version 1's (stdlib + version-1 programs): 0.3-0.5x
for the quote-closing and f-string idioms, 0.55-0.9x for most others. Block weights alone cannot fix that (fitting
them by the smallest ratio reaches 0.33x of version 1's programs), so version 3 also makes the filler work:
three in four filler statements are one-line idioms (``ExprMaker.idiom_stmt``: a call whose only argument is a
string, plain and f-string prints, nested lists, ``open``, ...), more than half of a block's statements are small
compound idioms (``idiom_compound``: ``if x ==``, ``while name:``, ``for``, a ``def`` with defaults, ``set()`` /
``""`` accumulators, ...), long lists (24-48 elements), headers, comments and long sentences are rarer, and the
block weights are fitted (greedy search on the smallest ratio to version 1). Measured on programs
2,000,000-2,015,999 of seed 0 with the v2 tokenizer, against version 1's training corpus with tinypy-2048: in a
60 M-token v2 train stream (stdlib + programs) every idiom of :data:`IDIOMS` (``context.*`` aside) and every decision
context of the 20 tasks (``tasks.Task.idioms``) is at least 1.02x as dense as in version 1; in a 30 M-token stream
(more stdlib) the least dense are ``quote.close_double`` (0.98x) and ``indent_for.top`` (0.99x). Only the drawn
alternative of a choice is built, which made version 3 2.7x faster than version 2.

Version 4 (opt-in: ``program_at(seed, i, version=4)``, a model's ``data.generator_version``) mends one data-recipe
flaw found by ``task_audit.open_modes``: version 3's two filler ``open`` idioms draw a read-file name and then a
random mode, so read-file names are opened with ``w`` about two times in five and the ``with_open`` task's cue is
taught weakly. Version 4 gives a write-file name to those opened with ``w`` without drawing anything else, so its
programs are version 3's except for those names (tested). Version 3 stays the default: the tokenizer and every
committed zoo-v2 model were made from it.

Version 5 (opt-in likewise) is version 4 with two idioms drawn more often, after the models' own next-token choices
on fresh version-3 programs showed them unlearned there: a depth-2 list has a single row (``x = [[1, 2, 3]]``) 4 times
in 11 instead of 1 in 9 (after ``[[`` and elements the next token was ``]]`` 83 times and ``]`` 71 times in 2,000
programs, against 494 ``],``; version 5: 268 and 86), and a swap block's names are two short names (a scalar or a
noun) half of the time (``ExprMaker.nested``, ``ExprMaker.swap_names``): in programs 0-1,999 of seed 0, 343 of 567
swap lines swap two such names (version 4: 144 of 559); on version-3 programs past their training streams the
zoo-v2 models chose the line's first name over the second in 0.27-0.40 of the swaps of two one-token names other
than the stock pairs (only 15 in 1,500 programs), against 0.81-0.88 for the stock pairs ``x, y``, ``i, j``, .... Its
random stream differs from version 4's from the first such draw on: its programs are other programs.

Measured (seed 0, Python 3.11, one core, ``distinct_estimate(0, 20_000, tokenizer=load_tokenizer())``): 769
characters, 274 tinypy-2048 tokens and 263 tinypy2-2048 tokens per program (version 1: 436 characters and 139
tokens); 5,600 programs/s (4.3 M characters/s) on a quiet core. No exact duplicate among 20,000 consecutive
programs, so by the birthday bound (95%) the stream holds more than 6.7e7 distinct programs, i.e. more than 1.8e10
distinct tokens (the requirement was 5e7); 62% of the non-blank lines of programs 18,000-20,000 never occur in
programs 0-18,000.

Example:
    >>> from sparsecirc.data.simple_python_v2 import program_at, stream_programs
    >>> it = stream_programs(seed=0, start=5)
    >>> next(it) == program_at(0, 5)
    True
"""
from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sparsecirc.data.simple_python_v2_blocks import MAX_LINES, MIN_LINES, ProgramMaker

GENERATOR_VERSION = 3  # the default stream (tokenizer tinypy2-2048 and every committed zoo-v2 model)
VERSIONS = (3, 4, 5)  # 4: version 3 with the filler `open` idioms' file name following the mode (``open_path``)
# 5: version 4 with more one-row nested lists and more swaps of two short names (``ExprMaker.nested``, ``swap_names``)
SOURCE_FILES = ("simple_python_v2.py", "simple_python_v2_blocks.py", "simple_python_v2_exprs.py",
                "simple_python_v2_vocab.py")
__all__ = ["GENERATOR_VERSION", "VERSIONS", "check_version", "SOURCE_FILES", "MAX_LINES", "MIN_LINES", "IDIOMS",
           "generate_program", "program_at", "stream_programs", "generate_programs", "idiom_counts",
           "distinct_estimate", "source_sha256"]


def source_sha256() -> str:
    """sha256 of the generator's four source files (:data:`SOURCE_FILES`, in that order, each file's bytes
    followed by a NUL byte): the text of the stream depends on nothing else (and the Python version)."""
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def check_version(version: int) -> int:
    """``version`` if it is one of :data:`VERSIONS`; ValueError naming them otherwise."""
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError(f"unknown simple-Python-v2 generator version {version!r}; valid: "
                         f"{', '.join(map(str, VERSIONS))}")
    return version


def generate_program(rng: random.Random, version: int = GENERATOR_VERSION) -> str:
    """One program (``MIN_LINES``..``MAX_LINES`` lines, ends with a newline) drawn from ``rng`` (advanced), as
    generator ``version`` writes it (:data:`VERSIONS`)."""
    return ProgramMaker(rng, check_version(version)).program()


def program_at(seed: int, index: int, version: int = GENERATOR_VERSION) -> str:
    """Program ``index`` of stream ``seed``; depends on nothing else (no state, no salted ``hash``). Versions 3
    and 4 draw the same random numbers: their programs differ only in the file names of filler ``open`` idioms
    opened for writing (``ExprMaker.open_path``)."""
    return generate_program(random.Random(f"simple_python_v2:{seed}:{index}"), version)


def stream_programs(seed: int = 0, start: int = 0, version: int = GENERATOR_VERSION) -> Iterator[str]:
    """The endless stream ``program_at(seed, start)``, ``program_at(seed, start + 1)``, ...

    Example:
        >>> list(itertools.islice(stream_programs(1, start=3), 2)) == [program_at(1, 3), program_at(1, 4)]
        True
    """
    check_version(version)
    for i in itertools.count(start):
        yield program_at(seed, i, version)


def generate_programs(n: int, seed: int, start: int = 0, version: int = GENERATOR_VERSION) -> list[str]:
    """Programs ``start``..``start + n - 1`` of stream ``seed`` (generator ``version``) as a list."""
    return [program_at(seed, i, version) for i in range(start, start + n)]


# --- idioms ------------------------------------------------------------------------------------------------
_Q = r"[\"']"
# P1 idiom -> regex (multiline); "<task>.<variant>" names a surface variant of a task's idiom (digest §6)
IDIOMS: dict[str, str] = {
    "quote.close_double": r"\w\"\)", "quote.close_single": r"\w'\)",
    "quote.double_holds_single": r"\"[^\"\n]*\w'\w[^\"\n]*\"", "quote.single_holds_double": r"'[^'\n]*\"\w+\"[^'\n]*'",
    "quote.escaped": r"\\[\"']", "quote.long_string": _Q + r"[\w ,.!?:']{40,}" + _Q,
    "bracket.open_eq_space": r"\w = \[\[", "bracket.open_eq_nospace": r"\w ?=\[\[", "bracket.open_padded": r"\[ \[",
    "bracket.open_multiline": r"\[\n[ \t]+\[", "bracket.close_double": r"\]\]", "bracket.close_padded": r"\] \]",
    "bracket.depth3": r"\[\[\[", "bracket.row_sep": r"\],", "bracket.str_rows": r"\[\[" + _Q,
    "bracket.name_rows": r"\[\[[a-z_]", "bracket.const_rows": r"\[\[(?:True|False|None)", "bracket.float_rows":
    r"\[\[-?\d+\.\d", "bracket.neg_rows": r"\[\[-\d", "bracket.trailing_comma": r",\s*\]",
    "list.long": r"\[(?:[^\[\]\n,]*, ){30,}", "list.str_first": r"\[ ?" + _Q + r"\w+" + _Q + ",",
    "list.const": r"\[(?:True|False|None), ", "list.names": r"\[[a-z_]\w*, [a-z_]\w*",
    "dict.str_key": r"\{ ?" + _Q + r"\w+" + _Q + r" ?:", "dict.multiline": r"= ?\{\n",
    "set_or_string.set_init": r"\w ?= ?set\(\)", "set_or_string.str_init": r"\w ?= ?(?:''|\"\")$",
    "set_or_string.add": r"\w\.add\(", "set_or_string.plus_eq": r"\w \+= ", "set_or_string.current": r"\bcurrent ?= ?",
    "set_or_string.set_then_add": r"(\w+) ?= ?set\(\)\n(?:.*\n){0,6}?\s*\1\.add\(",
    "set_or_string.str_then_plus": r"(\w+) ?= ?(?:\"\"|'')\n(?:.*\n){0,6}?\s*\1 \+= ",
    "final_kwarg.none": r"=None", "final_kwarg.kw_then_kw": r"def \w+\([^)\n]*=[^)\n]*, \w+ ?=",
    "final_kwarg.annotated": r"def \w+\([^)\n]*\w: \w+", "class_init.self_copy": r"self\.(\w+) = \1$",
    "class_init.init": r"def __init__\(self", "with_open.with": r"with open\(",
    "with_open.plain": r"^\s*\w+ ?= ?open\(",
    "with_open.mode_r": r"open\([^\n]*" + _Q + "r", "with_open.mode_w": r"open\([^\n]*" + _Q + "w",
    "with_open.mode_a": r"open\([^\n]*" + _Q + "a", "with_open.mode_kw": r"mode=" + _Q,
    "for_while.for_in": r"^\s*for \w+ in ", "for_while.while_name": r"^\s*while \w+:",
    "for_while.while_cond": r"^\s*while [^\n:]+ [<>=!]", "else_elif.else": r"^\s*else:",
    "else_elif.elif": r"^\s*elif \w+", "fstring.brace": r"\bf" + _Q + r"[^\"'\n]*\{",
    "fstring.spec": r"\{\w+(?:!r)?:[^}\n]+\}", "fstring.plain_print": r"print\(" + _Q + r"[A-Z]\w*",
    "ternary.expr": r"(?:=|\(|return) [^\n]* if [^\n]* else ", "ternary.if_stmt": r"^\s*if [^\n]*:$",
    "swap.any": r"^\s*(\w+), (\w+) = \2, \1\b",
    "swap.forward": r"^\s*(\w+), (\w+) = [^\n]+\n(?:.*\n){0,3}?\s*\1, \2 = \2, \1\b",
    "swap.reverse": r"^\s*(\w+), (\w+) = [^\n]+\n(?:.*\n){0,3}?\s*\2, \1 = \1, \2\b",
    "indent_for.top": r"^for [^\n]*:\n    \S", "indent_for.nested": r"^(\s+)for [^\n]*:\n\1    \S",
    "lambda_func.lambda": r"= lambda [\w, ]+:", "lambda_func.key": r"key=lambda", "lambda_func.def": r"^\s*def \w+\(",
    "if_equals.if_eq": r"^\s*if \w+ == ", "if_equals.assign": r"^\s*\w+ = ",
    "enumerate_range.enumerate": r"for \w+, \w+ in enumerate\(", "enumerate_range.range": r"for \w+ in range\(",
    "var_if.eq_bool": r"if \w+ == (?:True|False) ?:", "var_if.assign_bool": r"^\s*\w+ = (?:True|False)$",
    "while_return_true.while_true": r"while True:", "while_return_true.return_true": r"return True\n\n",
    "context.try": r"^\s*try:", "context.comprehension": r"\[[^\n\]]* for \w+ in ", "context.comment": r"#",
    "context.docstring": r"\"\"\"", "context.class": r"^\s*class \w+", "context.import": r"^import \w+",
}
_COMPILED = {k: re.compile(v, re.MULTILINE) for k, v in IDIOMS.items()}


def idiom_counts(programs: Iterable[str]) -> dict[str, int]:
    """Occurrences of each idiom of :data:`IDIOMS` in ``programs`` (no match spans two programs).

    Example:
        >>> idiom_counts(["a, b = 1, 2\\nb, a = a, b\\n"])["swap.reverse"]
        1
    """
    programs = list(programs)
    return {k: sum(1 for text in programs for _ in p.finditer(text)) for k, p in _COMPILED.items()}


def distinct_estimate(seed: int = 0, n: int = 20_000, start: int = 0, tokenizer=None) -> dict:
    """How much distinct text the stream holds, measured on programs ``start``..``start + n - 1``.

    Exact duplicates ``d`` (pairs of equal programs) bound the number of distinct programs by the birthday
    argument: ``N >= n (n - 1) / (2 lam)`` with ``lam`` the 95% Poisson upper bound of ``d`` (3.0 for
    ``d = 0``). Times the mean tokens per program (``tokenizer.encode``, else characters / 3.5) this is a lower
    bound on the distinct tokens available. ``new_line_frac`` is the share of the last tenth's lines that never
    occurred in the first nine tenths (content novelty beyond whole programs).

    Returns:
        dict: n, seconds, programs_per_s, chars_per_s, chars_per_program, tokens_per_program, duplicate_pairs,
        distinct_programs_lower, distinct_tokens_lower, new_line_frac.
    """
    t0 = time.perf_counter()
    progs = generate_programs(n, seed, start)
    secs = time.perf_counter() - t0
    chars = sum(len(p) for p in progs)
    counts: dict[str, int] = {}
    for p in progs:
        counts[p] = counts.get(p, 0) + 1
    dups = sum(c * (c - 1) // 2 for c in counts.values())
    lam = 3.0 if dups == 0 else dups + 1.645 * math.sqrt(dups) + 1.0
    n_distinct = n * (n - 1) / (2 * lam)
    if tokenizer is not None:
        tok_per = sum(len(tokenizer.encode(p)) for p in progs[:2000]) / min(n, 2000)
    else:
        tok_per = chars / n / 3.5
    cut = n - n // 10
    seen = {ln for p in progs[:cut] for ln in p.split("\n")}
    tail = [ln for p in progs[cut:] for ln in p.split("\n") if ln.strip()]
    return {"n": n, "seconds": secs, "programs_per_s": n / secs, "chars_per_s": chars / secs,
            "chars_per_program": chars / n, "tokens_per_program": tok_per, "duplicate_pairs": dups,
            "distinct_programs_lower": n_distinct, "distinct_tokens_lower": n_distinct * tok_per,
            "new_line_frac": sum(ln not in seen for ln in tail) / max(1, len(tail))}
