"""sparsecirc.check.claim: the printed line, every verdict rule, the book/ci assertions, bad input."""
import re

import numpy as np
import pytest
import torch

from sparsecirc.book.check import Claim, claim, parse_claims

# The format the scorecard and readers rely on, written out independently of the module's own CLAIM_RE.
LINE = re.compile(r"^CLAIM\s+(\S+)\s*\|\s*ours\s+(.*?)\s*\|\s*paper\s+(.*?)\s*\|\s*(.*?)\s*$")


def verdict(ours, paper, **kw):
    return claim("x", ours, paper, **kw).verdict


# --- the printed line ---------------------------------------------------------------------------------------


def test_prints_exactly_one_matching_line(capsys):
    c = claim("sparse-circuit-ratio", 14.2, 16, unit="×")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    m = LINE.match(out.rstrip("\n"))
    assert m is not None, out
    assert m.groups() == ("sparse-circuit-ratio", "14.2×", "16×", "reproduced")
    assert isinstance(c, Claim) and c.line == out.rstrip("\n") and c.verdict == "reproduced"


@pytest.mark.parametrize(
    ("ours", "paper", "kw", "shown_ours", "shown_paper"),
    [
        (0.123456, 0.1, {}, "0.123", "0.1"),
        (3, 4, {}, "3", "4"),
        (np.float32(0.5), np.int64(2), {"compare": "rtol"}, "0.5", "2"),
        (torch.tensor(0.25), 0.25, {}, "0.25", "0.25"),
        (True, True, {"compare": "direction"}, "yes", "yes"),
        (False, True, {"compare": "direction"}, "no", "yes"),
        ("induction", "induction", {"compare": "direction"}, "induction", "induction"),
        (0.3, (0.2, 0.4), {"compare": "range", "unit": "%"}, "0.3%", "0.2–0.4%"),
        (120, 200, {"unit": "edges"}, "120 edges", "200 edges"),
        (0.5, None, {"fmt": "{:.2f}"}, "0.50", "—"),
    ],
)
def test_value_formatting(capsys, ours, paper, kw, shown_ours, shown_paper):
    claim("fmt-check", ours, paper, **kw)
    m = LINE.match(capsys.readouterr().out.rstrip("\n"))
    assert m and m.group(2) == shown_ours and m.group(3) == shown_paper


def test_parse_claims_reads_lines_back(capsys):
    claim("a-1", 1.0, 1.0)
    claim("b-2", 5.0, None)
    text = "noise\n" + capsys.readouterr().out + "CLAIMS are not lines\n"
    parsed = parse_claims(text)
    assert [(p.slug, p.ours, p.paper, p.verdict) for p in parsed] == [
        ("a-1", "1", "1", "reproduced"),
        ("b-2", "5", "—", "beyond-paper"),
    ]


# --- verdict rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "paper", "rtol", "expected"),
    [
        (10.0, 10.0, 0.25, "reproduced"),
        (12.5, 10.0, 0.25, "reproduced"),  # exactly at rtol
        (7.5, 10.0, 0.25, "reproduced"),
        (13.0, 10.0, 0.25, "partly"),  # within 4*rtol
        (4.0, 10.0, 0.25, "partly"),  # within 4*rtol
        (19.0, 10.0, 0.2, "partly"),  # beyond 4*rtol but within a factor 2
        (5.5, 10.0, 0.05, "partly"),  # factor-2 clause alone
        (21.0, 10.0, 0.25, "not reproduced"),
        (1.0, 10.0, 0.1, "not reproduced"),
        (-10.0, 10.0, 0.25, "not reproduced"),
        (float("nan"), 10.0, 0.25, "not reproduced"),
        (0.0, 0.0, 0.25, "reproduced"),
    ],
)
def test_rtol(ours, paper, rtol, expected):
    assert verdict(ours, paper, rtol=rtol) == expected


@pytest.mark.parametrize(
    ("ours", "expected"),
    [(0.2, "reproduced"), (0.5, "reproduced"), (0.3, "reproduced"), (0.11, "partly"), (0.9, "partly"),
     (0.09, "not reproduced"), (1.2, "not reproduced"), (-0.3, "not reproduced")],
)
def test_range(ours, expected):
    assert verdict(ours, (0.2, 0.5), compare="range") == expected


@pytest.mark.parametrize(
    ("compare", "ours", "expected"),
    [("at_least", 0.99, "reproduced"), ("at_least", 0.95, "reproduced"), ("at_least", 0.5, "partly"),
     ("at_least", 0.4, "not reproduced"), ("at_most", 0.004, "reproduced"), ("at_most", 0.009, "partly"),
     ("at_most", 0.02, "not reproduced")],
)
def test_at_least_at_most(compare, ours, expected):
    paper = 0.95 if compare == "at_least" else 0.005
    assert verdict(ours, paper, compare=compare) == expected


@pytest.mark.parametrize(
    ("ours", "paper", "expected"),
    [(True, True, "reproduced"), (False, True, "not reproduced"), (3.0, 0.5, "reproduced"),
     (-2, -0.1, "reproduced"), (-2, 1, "not reproduced"), (0, 1, "not reproduced"), ("a", "b", "not reproduced")],
)
def test_direction(ours, paper, expected):
    assert verdict(ours, paper, compare="direction") == expected


@pytest.mark.parametrize(
    ("ours", "paper", "expected"),
    [(14.0, 16.0, "reproduced"), (9.0, 16.0, "reproduced"), (3.0, 16.0, "partly"), (0.8, 16.0, "not reproduced"),
     (0.3, 0.5, "reproduced"), (0.1, 0.5, "partly"), (2.0, 0.5, "not reproduced")],
)
def test_ratio_direction(ours, paper, expected):
    assert verdict(ours, paper, compare="ratio_direction") == expected


@pytest.mark.parametrize("compare", ["rtol", "range", "at_least", "at_most", "direction", "ratio_direction"])
def test_no_paper_value_is_beyond_paper(compare):
    assert verdict(0.7, None, compare=compare) == "beyond-paper"


def test_verdict_cannot_be_passed_in():
    with pytest.raises(TypeError):
        claim("x", 1.0, 2.0, verdict="reproduced")


# --- scale checks -------------------------------------------------------------------------------------------


def test_book_scale_expect_passes_and_fails(capsys):
    claim("edges-kept", 0.0123, 0.004, expect=0.01231, scale="book")  # within 1e-3
    with pytest.raises(AssertionError, match=r"edges-kept.*0\.02.*0\.0123.*make artifact"):
        claim("edges-kept", 0.02, 0.004, expect=0.0123, scale="book")
    assert "edges-kept" in capsys.readouterr().out  # the passing call printed; the failing one did not


def test_expect_is_not_checked_at_ci_scale():
    claim("edges-kept", 0.5, 0.004, expect=0.0123, scale="ci")


def test_ci_check(capsys):
    claim("sparse-smaller", 3.0, 16.0, scale="ci", ci_check=True)
    with pytest.raises(AssertionError, match=r"^sparse-smaller: qualitative check failed at ci scale$"):
        claim("sparse-smaller", 3.0, 16.0, scale="ci", ci_check=False)
    with pytest.raises(AssertionError):
        claim("sparse-smaller", 3.0, 16.0, scale="ci", ci_check=np.bool_(False))
    claim("sparse-smaller", 3.0, 16.0, scale="book", ci_check=False)  # only checked at ci scale


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["Sparse", "sparse_ratio", "a b", "", "-a", "a--b", "a|b"])
def test_bad_slug(slug):
    with pytest.raises(ValueError, match="kebab-case"):
        claim(slug, 1.0, 1.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"compare": "close"}, "unknown compare"), ({"scale": "paper"}, "unknown scale"),
     ({"ci_check": 1}, "ci_check must be a bool"), ({"rtol": -0.1}, "rtol")],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        claim("x", 1.0, 1.0, **kw)


@pytest.mark.parametrize(
    ("ours", "paper", "compare"),
    [(1.0, 1.0, "range"), (1.0, (2.0, 1.0), "range"), (1.0, "a", "at_least"),
     (True, 1.0, "direction"), (None, 1.0, "rtol"), (1.0, "a|b", "direction"), (object(), 1.0, "rtol")],
)
def test_bad_values(ours, paper, compare):
    with pytest.raises(ValueError):
        claim("x", ours, paper, compare=compare)


# --- verdicts that cannot flatter --------------------------------------------------------------------------------
def test_a_target_we_set_is_never_reproduced(capsys):
    met = claim("toy-accuracy", 100.0, 100.0, compare="at_least", unit="%", paper_kind="target")
    assert met.verdict == "target met" and "paper target 100%" in met.line
    missed = claim("toy-density", 3.0, 2.0, compare="at_most", unit="%", paper_kind="target")
    assert missed.verdict == "target missed"


def test_a_reference_value_is_context_not_a_claim():
    c = claim("dense-seeds", 0.953, 0.94, compare="rtol", rtol=0.05, paper_kind="reference")
    assert c.verdict == "reference" and "paper reference 0.94" in c.line


def test_numbers_on_other_data_are_not_comparable():
    c = claim("val-loss", 1.0, (0.9, 1.3), compare="range", comparable=False)
    assert c.verdict == "not comparable"  # inside the range, and still not a reproduction


def test_counts_compare_exactly():
    assert claim("heads", 1, 2, compare="exact").verdict == "not reproduced"
    assert claim("heads", 2, 2, compare="exact").verdict == "reproduced"


def test_paper_kind_is_checked():
    with pytest.raises(ValueError, match="paper_kind"):
        claim("x", 1.0, 1.0, paper_kind="guess")
    with pytest.raises(ValueError, match="needs the target"):
        claim("x", 1.0, None, paper_kind="target")


def test_no_number_is_not_reproduced():
    assert claim("ratio", "not reached", 16, compare="ratio_direction").verdict == "not reproduced"
