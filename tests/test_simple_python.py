"""The simple-Python generator: valid, deterministic, idiom-rich, pinned."""
import ast
import json
import random
import re

import pytest

from sparsecirc.data import simple_python
from sparsecirc.data.simple_python import MAX_LINES, MIN_LINES, generate_program, generate_programs
from sparsecirc.paths import DATA_DIR


@pytest.fixture(scope="module")
def programs():
    return generate_programs(3000, seed=123)


def test_programs_parse_and_have_5_to_30_lines(programs):
    for p in programs:
        ast.parse(p)  # raises SyntaxError on an invalid program
        assert MIN_LINES <= p.count("\n") <= MAX_LINES
        assert p.endswith("\n") and not p.startswith("\n")


def test_same_seed_same_text_different_seed_different_text():
    assert generate_programs(50, seed=7) == generate_programs(50, seed=7)
    assert generate_programs(50, seed=7) != generate_programs(50, seed=8)
    rng = random.Random(7)
    assert [generate_program(rng) for _ in range(5)] == generate_programs(5, seed=7)


# Each idiom the tasks probe must be common (the fraction of programs that contain it).
IDIOMS = {
    "open_double": ('("', 0.3), "open_single": ("('", 0.3), "close_double": ('")', 0.3),
    "close_single": ("')", 0.3), "double_close": ("]]", 0.15), "row_sep": ("],", 0.2),
    "dict": (re.compile(r"= \{['\"\d]"), 0.15), "set_init": ("= set()", 0.1), "add": (".add(", 0.05),
    "str_init": (re.compile(r"= (''|\"\")\n"), 0.05), "plus_eq": ("+=", 0.15),
    "current": ("current = ", 0.05), "kw_none": ("=None", 0.1), "init": ("def __init__(self, ", 0.08),
    "with_open": ("with open(", 0.1), "plain_open": (re.compile(r"\w = open\("), 0.05),
    "read": (re.compile(r"open\(.*['\"]r['\"]"), 0.08), "write": (re.compile(r"open\(.*['\"]w['\"]"), 0.08),
    "for_in": (re.compile(r"for \w+ in "), 0.4), "range": ("in range(", 0.1), "enumerate": ("in enumerate(", 0.05),
    "while": ("while ", 0.15), "while_true": ("while True:", 0.05), "return_true": ("return True", 0.08),
    "return_false": ("return False", 0.08), "elif": ("elif ", 0.05), "else": ("else:", 0.1),
    "if_eq": (re.compile(r"if \w+ == "), 0.15), "eq_true": (re.compile(r"== (True|False)"), 0.03),
    "ternary": (re.compile(r"= .+ if .+ else "), 0.04), "lambda": (" = lambda ", 0.04),
    "fstring": (re.compile(r"f['\"]"), 0.2), "swap": (re.compile(r"\b(\w+), (\w+) = \2, \1\b"), 0.04),
    "comment": (re.compile(r"^# ", re.M), 0.1), "multiline_list": (re.compile(r"= \[\n"), 0.05),
}


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_is_frequent(programs, name):
    pattern, min_frac = IDIOMS[name]
    found = sum(1 for p in programs if (pattern in p if isinstance(pattern, str) else pattern.search(p)))
    assert found / len(programs) >= min_frac, f"{name}: {found}/{len(programs)}"


def test_file_mode_follows_file_name(programs):
    opens = re.findall(r"open\(['\"](?:\w+/)?(\w+)\.\w+['\"], ['\"]([rw])['\"]", "".join(programs))
    assert len(opens) > 100
    for base, mode in opens:
        assert base in (simple_python.WRITE_FILES if mode == "w" else simple_python.READ_FILES), (base, mode)


def test_identifier_vocabulary_is_large(programs):
    names = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", "".join(programs)))
    assert len(names) > 300


def test_default_simple_part_matches_sources_json():
    from sparsecirc.data.corpus import DEFAULT_N_SIMPLE, simple_sha256

    pinned = json.loads((DATA_DIR / "corpus" / "SOURCES.json").read_text())["simple"]
    assert (pinned["n"], pinned["seed"], pinned["generator_version"]) == (DEFAULT_N_SIMPLE, 0,
                                                                          simple_python.GENERATOR_VERSION)
    assert simple_sha256(generate_programs(DEFAULT_N_SIMPLE, 0)) == pinned["sha256"], (
        "the generator's output drifted: rerun `python -m sparsecirc corpus` (and retrain the tokenizer) "
        "if the change is intended")
