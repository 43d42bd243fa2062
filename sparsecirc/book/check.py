"""Claim checks: one printed line per reproduced number, with a verdict computed from a declared rule.

Every chapter ends with a claim-check cell marked ``# NBVAL_CHECK_OUTPUT`` (STYLE.md section 7). It calls
:func:`claim`, which prints exactly one line::

    CLAIM sparse-circuit-ratio | ours 14.2× | paper 16× | reproduced

nbval compares that line between the committed notebook and a re-run, and ``python -m sparsecirc.book
scorecard`` collects the lines of all chapters into the table on the book's front page. The verdict is
computed from ``compare`` (never typed in by hand), so a changed number cannot keep an old verdict.

Two scale checks make the cell fail loudly instead of printing a wrong line:

* at ``scale="book"`` with ``expect`` given, ``ours`` must equal the committed value (rel. ``expect_rtol``);
  a mismatch means the artifact changed and its number in the book is stale.
* at ``scale="ci"`` with ``ci_check`` given, the qualitative check (a bool the chapter computes, e.g.
  ``sparse_edges < dense_edges``) must be ``True``; ci-scale numbers themselves are not compared.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sparsecirc.core.config import BUILD_SCALES

__all__ = ["Claim", "ClaimLine", "claim", "parse_claims", "VERDICTS", "COMPARES", "CLAIM_RE"]

VERDICTS = ("reproduced", "partly", "not reproduced", "not comparable", "target met", "target missed", "reference",
            "beyond-paper")
COMPARES = ("rtol", "range", "at_least", "at_most", "direction", "ratio_direction", "exact")
#: what the paper column holds: a number the paper prints, a target we set ourselves, or a reference value (ours
#: or the paper's) that is context rather than a claim. Only ``printed`` can give ``reproduced``.
PAPER_KINDS = ("printed", "target", "reference")

#: The line format; the scorecard and the tests parse with exactly this expression.
CLAIM_RE = re.compile(r"^CLAIM\s+(\S+)\s*\|\s*ours\s+(.*?)\s*\|\s*paper\s+(.*?)\s*\|\s*(.*?)\s*$")
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Claim:
    """The result of :func:`claim`: the values compared, the computed verdict and the printed line."""

    slug: str
    ours: Any
    paper: Any
    verdict: str
    line: str


@dataclass(frozen=True)
class ClaimLine:
    """A ``CLAIM`` line parsed back from text (all fields are the printed strings)."""

    slug: str
    ours: str
    paper: str
    verdict: str


# ---------------------------------------------------------------------------------------------------------
# public API


def claim(
    slug: str,
    ours,
    paper,
    *,
    compare: str = "rtol",
    rtol: float = 0.25,
    scale: str = "book",
    expect=None,
    expect_rtol: float = 1e-3,
    ci_check: bool | None = None,
    fmt: str = "{:.3g}",
    unit: str = "",
    paper_kind: str = "printed",
    comparable: bool = True,
) -> Claim:
    """Compare our number with the paper's, print one ``CLAIM`` line and return a :class:`Claim`.

    Args:
        slug: kebab-case name of the claim (``[a-z0-9-]+``), unique in the book; the scorecard key.
        ours: our value: a number (python, numpy or 0-d torch), a bool, or a short string.
        paper: the paper's value; ``None`` when the paper reports no such number; a ``(lo, hi)`` tuple
            for ``compare="range"``.
        compare: the rule that computes the verdict ("within a factor 2" means both values have the same
            sign and the larger magnitude is at most twice the smaller):

            * ``"rtol"`` -- ``|ours - paper| <= rtol*|paper|``: reproduced; ``<= 4*rtol*|paper|`` or within a
              factor 2: partly; otherwise not reproduced.
            * ``"range"`` -- ``paper=(lo, hi)``; ``lo <= ours <= hi``: reproduced; within a factor 2 of the
              nearest end: partly; otherwise not reproduced.
            * ``"at_least"`` / ``"at_most"`` -- ``ours >= paper`` / ``ours <= paper``: reproduced; within a
              factor 2 of ``paper``: partly; otherwise not reproduced.
            * ``"direction"`` -- bools (or strings) equal, or numbers of the same sign (-1, 0, +1):
              reproduced; otherwise not reproduced.
            * ``"ratio_direction"`` -- for ratios (e.g. "dense circuits are 16x larger"): ours and paper on
              the same side of 1 and within a factor 2: reproduced; same side only: partly; otherwise not
              reproduced.

            * ``"exact"`` -- counts (heads, layers): equal: reproduced; otherwise not reproduced.

            Whatever the rule, ``paper=None`` gives ``beyond-paper``; a string ``ours`` under a numeric rule (e.g.
            "not reached": no number was obtained) gives ``not reproduced``.
        rtol: relative tolerance of the ``"rtol"`` rule.
        scale: the chapter's ``SCALE`` parameter, ``"book"`` or ``"ci"``.
        expect: committed value of ``ours`` at book scale; checked (``math.isclose``, rel ``expect_rtol``) only
            when ``scale="book"``.
        expect_rtol: relative tolerance of the ``expect`` check.
        ci_check: a bool computed by the chapter (the qualitative claim); must be ``True`` when ``scale="ci"``.
        fmt: format for floats (ints print as ints, bools as yes/no, strings verbatim, ``None`` as ``—``).
        unit: appended to numbers and ranges; directly when it starts with a symbol (``"%"``, ``"×"``), else after a
            space (``"edges"`` -> ``"120 edges"``).
        paper_kind: ``"printed"`` (a number the paper prints; the only kind that can be ``reproduced``),
            ``"target"`` (a goal we set ourselves: the paper column reads ``target …`` and the verdict is ``target
            met`` / ``target missed`` by the same rule) or ``"reference"`` (context, not a claim: ``reference …``,
            verdict ``reference``).
        comparable: False when ours and the paper's number are measured on different data, tokenizers or tasks:
            the verdict is ``not comparable`` whatever the numbers.

    Returns:
        Claim(slug, ours, paper, verdict, line); ``line`` is what was printed.

    Raises:
        ValueError: bad slug, compare, scale or value types.
        AssertionError: the ``expect`` check (book) or the ``ci_check`` (ci) failed.

    Example:
        >>> c = claim("sparse-circuit-ratio", 14.2, 16, unit="×", expect=14.2)
        CLAIM sparse-circuit-ratio | ours 14.2× | paper 16× | reproduced
    """
    if not isinstance(slug, str) or not _SLUG_RE.match(slug):
        raise ValueError(f"claim slug must be kebab-case [a-z0-9-]+, got {slug!r}")
    if compare not in COMPARES:
        raise ValueError(f"{slug}: unknown compare {compare!r}; expected one of {', '.join(COMPARES)}")
    if scale not in BUILD_SCALES:
        raise ValueError(f"{slug}: unknown scale {scale!r}; expected one of {', '.join(BUILD_SCALES)}")
    if not (isinstance(rtol, (int, float)) and rtol >= 0):
        raise ValueError(f"{slug}: rtol must be a non-negative number, got {rtol!r}")
    if paper_kind not in PAPER_KINDS:
        raise ValueError(f"{slug}: unknown paper_kind {paper_kind!r}; expected one of {', '.join(PAPER_KINDS)}")
    if paper_kind != "printed" and paper is None:
        raise ValueError(f"{slug}: paper_kind={paper_kind!r} needs the target or reference value as paper")
    ours, paper = _plain(ours, slug, "ours"), _plain(paper, slug, "paper")
    expect, ci_check = _plain(expect, slug, "expect"), _plain(ci_check, slug, "ci_check")
    if ours is None or isinstance(ours, tuple):
        raise ValueError(f"{slug}: ours must be a number, bool or string, got {ours!r}")
    if ci_check is not None and not isinstance(ci_check, bool):
        raise ValueError(f"{slug}: ci_check must be a bool, got {ci_check!r}")

    verdict = _verdict(slug, ours, paper, compare, rtol)
    if paper_kind == "target":
        verdict = "target met" if verdict == "reproduced" else "target missed"
    elif paper_kind == "reference":
        verdict = "reference"
    if not comparable:
        verdict = "not comparable"
    shown = _fmt(paper, fmt, unit) if paper_kind == "printed" else f"{paper_kind} {_fmt(paper, fmt, unit)}"
    line = f"CLAIM {slug} | ours {_fmt(ours, fmt, unit)} | paper {shown} | {verdict}"

    if scale == "book" and expect is not None and not _matches(ours, expect, expect_rtol):
        raise AssertionError(
            f"{slug}: ours={ours!r} but the book expects {expect!r} (rel. tol. {expect_rtol:g}). The committed "
            "artifact no longer gives the number in the text: regenerate the artifact this chapter loads "
            "(`make artifact ID=<id>`; ids and their chapters are in data/registry.yaml) and update `expect`."
        )
    if scale == "ci" and ci_check is not None and ci_check is not True:
        raise AssertionError(f"{slug}: qualitative check failed at ci scale")

    print(line)
    return Claim(slug=slug, ours=ours, paper=paper, verdict=verdict, line=line)


def parse_claims(text: str) -> list[ClaimLine]:
    """Return the ``CLAIM`` lines found in ``text`` (one per line, in order).

    Example:
        >>> parse_claims("x\\nCLAIM a-b | ours 1 | paper 2 | partly\\n")[0].verdict
        'partly'
    """
    found = []
    for raw in text.splitlines():
        m = CLAIM_RE.match(raw.rstrip("\r"))
        if m:
            found.append(ClaimLine(*m.groups()))
    return found


# ---------------------------------------------------------------------------------------------------------
# verdict rules


def _verdict(slug: str, ours, paper, compare: str, rtol: float) -> str:
    if paper is None:
        return "beyond-paper"
    if compare == "direction":
        return _direction(slug, ours, paper)
    if compare == "range":
        if not (isinstance(paper, tuple) and len(paper) == 2 and all(_is_num(v) for v in paper)):
            raise ValueError(f"{slug}: compare='range' needs paper=(lo, hi), got {paper!r}")
        lo, hi = paper
        if lo > hi:
            raise ValueError(f"{slug}: range paper=(lo, hi) needs lo <= hi, got {paper!r}")
    elif not _is_num(paper):
        raise ValueError(f"{slug}: compare={compare!r} needs a numeric paper value, got {paper!r}")
    if isinstance(ours, str):  # no number was obtained ("not reached"): nothing to compare, so not reproduced
        return "not reproduced"
    if not _is_num(ours):
        raise ValueError(f"{slug}: compare={compare!r} needs a numeric ours value, got {ours!r}")

    if compare == "exact":
        return "reproduced" if ours == paper else "not reproduced"
    if compare == "rtol":
        err = abs(ours - paper)
        if err <= rtol * abs(paper):
            return "reproduced"
        return "partly" if err <= 4 * rtol * abs(paper) or _within_factor2(ours, paper) else "not reproduced"
    if compare == "range":
        if lo <= ours <= hi:
            return "reproduced"
        nearest = lo if ours < lo else hi
        return "partly" if _within_factor2(ours, nearest) else "not reproduced"
    if compare in ("at_least", "at_most"):
        ok = ours >= paper if compare == "at_least" else ours <= paper
        if ok:
            return "reproduced"
        return "partly" if _within_factor2(ours, paper) else "not reproduced"
    # ratio_direction
    same_side = (ours > 1 and paper > 1) or (ours < 1 and paper < 1) or (ours == 1 and paper == 1)
    if same_side and _within_factor2(ours, paper):
        return "reproduced"
    return "partly" if same_side else "not reproduced"


def _direction(slug: str, ours, paper) -> str:
    if isinstance(ours, (bool, str)) or isinstance(paper, (bool, str)):
        if type(ours) is not type(paper):
            raise ValueError(f"{slug}: compare='direction' needs ours and paper of the same kind, "
                             f"got {ours!r} and {paper!r}")
        return "reproduced" if ours == paper else "not reproduced"
    if not (_is_num(ours) and _is_num(paper)):
        raise ValueError(f"{slug}: compare='direction' needs bools, strings or numbers, got {ours!r}, {paper!r}")
    return "reproduced" if _sign(ours) == _sign(paper) else "not reproduced"


def _within_factor2(a: float, b: float) -> bool:
    if a == b:
        return True
    if a == 0 or b == 0 or (a > 0) != (b > 0):
        return False
    big, small = max(abs(a), abs(b)), min(abs(a), abs(b))
    return big <= 2 * small


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _matches(ours, expect, rel: float) -> bool:
    if _is_num(ours) and _is_num(expect):
        return math.isclose(ours, expect, rel_tol=rel, abs_tol=1e-12)
    return ours == expect and type(ours) is type(expect)


# ---------------------------------------------------------------------------------------------------------
# values and formatting


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _plain(x, slug: str, name: str):
    """Turn numpy / torch scalars into python values; tuples elementwise; reject anything else."""
    if x is None or isinstance(x, (bool, int, float, str)):
        if isinstance(x, str) and ("|" in x or "\n" in x):
            raise ValueError(f"{slug}: {name} string may not contain '|' or a newline: {x!r}")
        return x
    if isinstance(x, (tuple, list)):
        return tuple(_plain(v, slug, name) for v in x)
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # numpy scalar or 0-d array / tensor
        return _plain(x.item(), slug, name)
    raise ValueError(f"{slug}: {name} must be a number, bool, string or tuple, got {type(x).__name__}")


def _fmt(x, fmt: str, unit: str) -> str:
    if x is None:
        return "—"
    if isinstance(x, tuple):
        return "–".join(_fmt(v, fmt, "") for v in x) + _unit(unit)
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x}{_unit(unit)}"
    if isinstance(x, float):
        return f"{fmt.format(x)}{_unit(unit)}"
    return x  # strings verbatim


def _unit(unit: str) -> str:
    if not unit:
        return ""
    return unit if not unit[0].isalnum() else f" {unit}"
