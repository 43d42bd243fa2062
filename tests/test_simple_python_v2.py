"""The version-2 simple-Python generator: deterministic, resumable, valid, varied, disjoint from the task prompts."""
import itertools
import random
import re

import pytest

from sparsecirc.data import simple_python_v2 as v2
from sparsecirc.data.tasks import TASKS, load_task

N = 2000


@pytest.fixture(scope="module")
def programs():
    return v2.generate_programs(N, seed=123)


def test_same_seed_and_index_same_text_else_different():
    assert v2.program_at(7, 42) == v2.program_at(7, 42)
    assert v2.generate_programs(20, seed=7) == [v2.program_at(7, i) for i in range(20)]
    assert v2.generate_programs(20, seed=7) != v2.generate_programs(20, seed=8)
    assert v2.program_at(7, 1) != v2.program_at(7, 2)
    assert v2.generate_program(random.Random(5)) == v2.generate_program(random.Random(5))


def test_stream_resumes_at_any_index():
    k = 37
    skipped = list(itertools.islice(v2.stream_programs(3), k, k + 10))
    assert list(itertools.islice(v2.stream_programs(3, start=k), 10)) == skipped
    assert v2.generate_programs(10, seed=3, start=k) == skipped


def test_programs_compile_and_have_the_stated_length(programs):
    for p in programs:
        compile(p, "<generated>", "exec")  # stricter than ast.parse: also return/break placement, duplicate args
        assert v2.MIN_LINES <= p.count("\n") <= v2.MAX_LINES + 3  # + the optional __main__ guard
        assert p.endswith("\n") and not p.startswith("\n") and "\n\n\n" not in p
        assert p.isascii()


def test_no_exact_duplicates_in_a_window():
    window = v2.generate_programs(5000, seed=0, start=50_000)
    assert len(set(window)) == len(window)


def test_distinct_estimate_reports_a_large_lower_bound():
    est = v2.distinct_estimate(seed=1, n=1500)
    assert est["duplicate_pairs"] == 0
    assert est["distinct_tokens_lower"] > 5e7  # 1500 programs already bound it by ~3.7e5 programs * ~220 tokens
    assert 0 < est["new_line_frac"] <= 1


# per-program rate each idiom must reach; variants of one idiom are listed separately so that none is missing
MIN_RATE = {k: 0.02 for k in v2.IDIOMS}
MIN_RATE.update({"quote.close_double": 0.3, "quote.close_single": 0.3, "quote.double_holds_single": 0.1,
                 "quote.single_holds_double": 0.1, "bracket.close_double": 0.3, "bracket.open_eq_space": 0.1,
                 "for_while.for_in": 0.5, "set_or_string.set_then_add": 0.05, "set_or_string.str_then_plus": 0.05,
                 "set_or_string.current": 0.05, "with_open.mode_r": 0.05, "with_open.mode_w": 0.05,
                 "list.long": 0.01, "bracket.neg_rows": 0.01, "swap.reverse": 0.02, "swap.forward": 0.02})


def test_every_idiom_and_variant_is_frequent(programs):
    counts = v2.idiom_counts(programs)
    low = {k: counts[k] / N for k in v2.IDIOMS if counts[k] / N < MIN_RATE[k]}
    assert not low, f"idioms below their minimum rate: {low}"


def test_nested_lists_open_with_and_without_a_space(programs):
    text = "".join(programs)
    quotes = ["[[" + q for q in "'\""]
    for variant in [" = [[", "=[[", " =[[", "[ [", "] ]", "[[[", "[[True", "[[None"] + quotes:
        assert variant in text, variant


def test_idiom_counts_sees_reverse_swaps_and_no_cross_program_matches():
    assert v2.idiom_counts(["a, b = 1, 2\nb, a = a, b\n"])["swap.reverse"] == 1
    assert v2.idiom_counts(["a, b = 1, 2\n", "b, a = a, b\n"])["swap.reverse"] == 0


def test_no_task_prompt_occurs_in_generated_programs():
    """Train/test overlap guard: 20 test prompts of each of the 20 tasks are not substrings of 1000 programs."""
    big = "\0".join(v2.generate_programs(1000, seed=0))
    rng = random.Random(0)
    found = []
    for name in TASKS:
        prompts = load_task(name, "test")["prompt"]
        for p in rng.sample(prompts, min(20, len(prompts))):
            if p in big:
                found.append((name, p))
    assert not found, found[:3]


# sha256 of programs 0..2999 of seed 0 (each followed by a NUL byte), generator version 3, measured before version 4
# existed: the stream the tokenizer and every committed zoo-v2 model were made from must not change
V3_STREAM_SHA256 = "35bf91d67d2441f0745748aa689aecb1db7492b5de3eaf9cf8a720d82d2720fd"


def test_version_3_stream_is_unchanged():
    import hashlib
    h = hashlib.sha256()
    for text in v2.generate_programs(3000, seed=0):
        h.update(text.encode() + b"\0")
    assert h.hexdigest() == V3_STREAM_SHA256


def test_version_4_differs_from_3_only_in_write_mode_open_names():
    from sparsecirc.data import simple_python_v2_vocab as V
    from sparsecirc.data.task_audit import open_modes
    changed = 0
    for i in range(1500):
        a, b = v2.program_at(0, i, 3), v2.program_at(0, i, 4)
        la, lb = a.split("\n"), b.split("\n")
        assert len(la) == len(lb)
        for x, y in zip(la, lb):
            if x != y:
                changed += 1
                assert "open(" in x and ("'w'" in x or '"w"' in x), x
                (old,), (new,) = re.findall(r"(\w+)\.txt", x), re.findall(r"(\w+)\.txt", y)
                assert old in V.READ_FILES and new in V.WRITE_FILES, (x, y)
                assert x.replace(f"{old}.txt", f"{new}.txt", 1) == y
    assert changed > 100  # the flaw is common: ~1 program in 6
    modes3 = open_modes(v2.generate_programs(1500, seed=0))
    modes4 = open_modes(v2.generate_programs(1500, seed=0, version=4))
    assert modes3.get(("read", "w"), 0) > 200  # version 3's flaw, measured on the same programs
    assert modes4.get(("read", "w"), 0) == 0 and modes4[("read", "r")] == modes3[("read", "r")]
    assert modes4[("write", "w")] == modes3[("write", "w")] + modes3[("read", "w")]


def test_version_5_draws_more_one_row_nested_lists_and_short_name_swaps():
    from sparsecirc.data import simple_python_v2_exprs as E
    from sparsecirc.data.task_audit import open_modes
    one_row = re.compile(r"\[\[[^\[\]\n]+\]\]")  # `[[1, 2, 3]]`: a depth-2 list with a single row
    swap = re.compile(r"^\s*(\w+), (\w+) = \2, \1\b", re.M)
    short = set(E.SHORT_NAMES) - {n for p in E.STOCK_PAIRS for n in p}
    counts = {}
    for version in (4, 5):
        progs = v2.generate_programs(1500, seed=0, version=version)
        pairs = [m.groups() for p in progs for m in swap.finditer(p)]
        counts[version] = (sum(len(one_row.findall(p)) for p in progs), sum(set(x) <= short for x in pairs),
                           len(pairs), open_modes(progs).get(("read", "w"), 0))
    (rows4, short4, swaps4, rw4), (rows5, short5, swaps5, rw5) = counts[4], counts[5]
    assert rows5 > 2 * rows4 > 0
    assert short5 > 2 * short4 > 0 and short5 > swaps5 / 2
    assert 0.6 * swaps4 < swaps5 < 1.6 * swaps4  # as many swap blocks; other names
    assert rw4 == rw5 == 0  # version 4's mend is kept
    assert v2.program_at(0, 0, 5) != v2.program_at(0, 0, 4) or v2.program_at(0, 1, 5) != v2.program_at(0, 1, 4)


def test_unknown_generator_version_is_refused():
    for bad in (2, 6, True, "4"):
        with pytest.raises(ValueError, match="generator version"):
            v2.program_at(0, 0, bad)
    with pytest.raises(ValueError, match="generator version"):
        next(v2.stream_programs(0, version=9))
