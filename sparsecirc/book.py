"""The book runner: execute chapters with papermill, build the claim scorecard, check the built HTML.

The chapter list always comes from ``book/_toc.yml`` (never a hand-kept list, STYLE.md section 11.5)::

    python -m sparsecirc.book list                          # chapter notebooks, in toc order
    python -m sparsecirc.book execute --scale book          # in place at default parameters, then scorecard
    python -m sparsecirc.book execute --scale ci --recompute --out book/_build/ci    # the `make test` stage
    python -m sparsecirc.book scorecard [--check]           # CLAIM lines -> table in book/index.md
    python -m sparsecirc.book check-html                    # built HTML loads nothing from the network

Chapters call :func:`validate_params` in their first code cell, so a mistyped papermill parameter stops the
run with one line (``ValueError: SCALE must be 'book' or 'ci', got 'big'``). papermill and nbformat are
imported lazily: ``import sparsecirc`` works without the ``[book]`` extra.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .check import parse_claims
from .paths import BOOK_DIR

__all__ = ["chapters", "validate_params", "execute", "collect_claims", "render_scorecard", "update_scorecard",
           "strip_volatile", "remote_references", "main"]

SCALES = ("book", "ci")
START, END = "<!-- scorecard:start -->", "<!-- scorecard:end -->"
_TOC_KEYS = ("parts", "chapters", "sections", "subtrees", "entries")


# ---------------------------------------------------------------------------------------------------------
# chapters and parameters


def chapters(book_dir: Path | str = BOOK_DIR) -> list[Path]:
    """Return the chapter notebooks listed in ``<book_dir>/_toc.yml``, in toc order.

    Walks ``root`` and every nested ``parts`` / ``chapters`` / ``sections`` entry. Markdown pages are skipped;
    an entry with no file behind it raises ``FileNotFoundError`` naming it.

    Example:
        >>> [p.name for p in chapters()][:1]
        ['01_a_tiny_python_code_model.ipynb']
    """
    book_dir = Path(book_dir)
    toc_path = book_dir / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path}: expected a mapping with a 'root' entry")
    found: list[Path] = []

    def visit(entry) -> None:
        if isinstance(entry, list):
            for item in entry:
                visit(item)
            return
        if not isinstance(entry, dict):
            raise ValueError(f"{toc_path}: unexpected toc entry {entry!r}")
        if "glob" in entry:
            raise ValueError(f"{toc_path}: glob entries are not supported, list chapters explicitly: {entry!r}")
        if "file" in entry or "root" in entry:
            path = _resolve(book_dir, str(entry.get("file", entry.get("root"))), toc_path)
            if path.suffix == ".ipynb" and path not in found:
                found.append(path)
        for key in _TOC_KEYS:
            if key in entry:
                visit(entry[key])

    visit(toc)
    return found


def _resolve(book_dir: Path, name: str, toc_path: Path) -> Path:
    base = book_dir / name
    candidates = [base] if base.suffix in (".ipynb", ".md", ".rst") else [base.with_name(base.name + s)
                                                                          for s in (".ipynb", ".md", ".rst")]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{toc_path} lists {name!r}, but none of {', '.join(str(p) for p in candidates)} exists")


def validate_params(SCALE, RECOMPUTE, SEED) -> None:  # noqa: N803 -- the chapters' parameter names
    """Check a chapter's papermill parameters; raise a one-line ``ValueError`` on a bad value.

    Example (first code cell of every chapter):
        >>> validate_params("book", False, 0)
    """
    if SCALE not in SCALES:
        raise ValueError(f"SCALE must be 'book' or 'ci', got {SCALE!r}")
    if not isinstance(RECOMPUTE, bool):
        raise ValueError(f"RECOMPUTE must be True or False, got {RECOMPUTE!r}")
    if isinstance(SEED, bool) or not isinstance(SEED, int) or SEED < 0:
        raise ValueError(f"SEED must be a non-negative int, got {SEED!r}")


# ---------------------------------------------------------------------------------------------------------
# execution


@dataclass
class ChapterRun:
    chapter: str
    seconds: float
    status: str  # "ok" | "failed"
    error: str = ""


def execute(scale: str, *, recompute: bool = False, seed: int = 0, out: Path | str | None = None,
            only: str | None = None, book_dir: Path | str = BOOK_DIR) -> list[ChapterRun]:
    """Execute chapters with papermill; in place when ``out`` is None, else into ``out``.

    In place, each chapter runs into ``<book>/_build/inplace/`` first and replaces the committed notebook only
    on success, with volatile metadata stripped (:func:`strip_volatile`). Timings go to
    ``<book>/_build/timings-<scale>.json``.

    Returns:
        one :class:`ChapterRun` per chapter (failures included; the caller decides the exit code).
    """
    import papermill as pm

    validate_params(scale, recompute, seed)
    book_dir = Path(book_dir).resolve()
    if out is None and scale != "book":
        raise ValueError("ci-scale outputs must not replace the committed book-scale chapters: pass --out DIR")
    todo = _select(chapters(book_dir), only)
    target_dir = Path(out).resolve() if out is not None else book_dir / "_build" / "inplace"
    params = {"SCALE": scale, "RECOMPUTE": recompute, "SEED": seed}
    runs: list[ChapterRun] = []
    with _inline_figures():
        for nb_path in todo:
            runs.append(_execute_one(pm, nb_path, book_dir, target_dir, params, in_place=out is None))
    _report(runs, book_dir, scale, recompute)
    return runs


def _execute_one(pm, nb_path: Path, book_dir: Path, target_dir: Path, params: dict, in_place: bool) -> ChapterRun:
    rel = nb_path.relative_to(book_dir)
    dest = target_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"executing {rel} ({', '.join(f'{k}={v!r}' for k, v in params.items())}) ...", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb_path), str(dest), parameters=params, kernel_name="python3",
                            cwd=str(nb_path.parent), progress_bar=False, log_output=False)
    except Exception as exc:  # report every chapter, then fail
        run = ChapterRun(str(rel), time.perf_counter() - t0, "failed", _one_line(exc))
        print(f"FAILED {rel}: {run.error}", file=sys.stderr, flush=True)
        return run
    if in_place:
        _write_clean(dest, nb_path)
    return ChapterRun(str(rel), time.perf_counter() - t0, "ok")


@contextmanager
def _inline_figures():
    """Let the kernels use ipykernel's inline backend while papermill runs.

    The Makefile and .ci/run export ``MPLBACKEND=Agg`` for headless scripts; a kernel inherits it, and then
    ``plt.show()`` stores no figure in the notebook. ipykernel picks the inline backend when the variable is unset.
    """
    saved = os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved


def _select(found: list[Path], only: str | None) -> list[Path]:
    if only is None:
        return found
    picked = [p for p in found if only in (p.name, p.stem) or p.stem.split("_", 1)[0] == only]
    if not picked:
        raise ValueError(f"--only {only!r} matches no chapter; chapters: {', '.join(p.stem for p in found)}")
    return picked


def _one_line(exc: BaseException) -> str:
    """``cell 3: ValueError: SCALE must be ...`` for papermill errors, ``Type: message`` otherwise."""
    if exc.__class__.__name__ == "PapermillExecutionError":
        evalue = (str(exc.evalue).strip().splitlines() or [""])[0]
        return f"cell {exc.exec_count}: {exc.ename}: {evalue}"
    msg = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {msg}"


def _report(runs: list[ChapterRun], book_dir: Path, scale: str, recompute: bool) -> None:
    width = max([len("chapter")] + [len(r.chapter) for r in runs])
    total = sum(r.seconds for r in runs)
    n_failed = sum(r.status != "ok" for r in runs)
    print(f"\n{'chapter':<{width}}  {'seconds':>8}  status")
    for r in runs:
        print(f"{r.chapter:<{width}}  {r.seconds:8.1f}  {r.status}")
    print(f"{'total':<{width}}  {total:8.1f}  {len(runs) - n_failed} ok, {n_failed} failed")
    for r in runs:
        if r.status != "ok":
            print(f"FAILED {r.chapter}: {r.error}", file=sys.stderr)
    timings = {"scale": scale, "recompute": recompute, "total_seconds": round(total, 2),
               "chapters": [asdict(r) | {"seconds": round(r.seconds, 2)} for r in runs]}
    path = book_dir / "_build" / f"timings-{scale}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=1) + "\n")


def _write_clean(executed: Path, committed: Path) -> None:
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    strip_volatile(nb)
    tmp = committed.with_name(committed.name + ".tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(committed)


def strip_volatile(nb) -> None:
    """Remove run-specific metadata from an executed notebook in place, keeping outputs.

    Drops papermill's start/end times, durations and paths, and the per-cell ``execution`` timestamps, so
    re-executing an unchanged chapter leaves ``git diff`` empty. Also tags the ``parameters`` and
    ``injected-parameters`` cells ``remove-cell`` so the rendered book hides them (STYLE.md section 7).
    """
    pm_meta = nb.metadata.get("papermill")
    if pm_meta is not None:
        nb.metadata["papermill"] = {k: pm_meta[k] for k in ("parameters", "version") if k in pm_meta}
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = tags = [*tags, "remove-cell"]
        if "injected-parameters" in tags and "id" in cell:
            cell["id"] = "injected-parameters"  # papermill draws a random id on every run


# ---------------------------------------------------------------------------------------------------------
# scorecard


@dataclass(frozen=True)
class ScoreRow:
    slug: str
    chapter: str  # path relative to the book folder, e.g. "01_a_tiny_python_code_model.ipynb"
    title: str
    ours: str
    paper: str
    verdict: str


def collect_claims(book_dir: Path | str = BOOK_DIR) -> list[ScoreRow]:
    """Collect the CLAIM lines printed in the chapters' stored outputs, in toc order then appearance."""
    import nbformat

    book_dir = Path(book_dir)
    rows: list[ScoreRow] = []
    seen: dict[str, str] = {}
    for nb_path in chapters(book_dir):
        nb = nbformat.read(str(nb_path), as_version=4)
        rel = nb_path.relative_to(book_dir).as_posix()
        title = _title(nb) or nb_path.stem
        for cell in nb.cells:
            for text in _output_texts(cell):
                for c in parse_claims(text):
                    if c.slug in seen:
                        raise ValueError(f"claim {c.slug!r} is printed twice: in {seen[c.slug]} and {rel}")
                    seen[c.slug] = rel
                    rows.append(ScoreRow(c.slug, rel, title, c.ours, c.paper, c.verdict))
    return rows


def _output_texts(cell) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            texts.append(_joined(output.get("text", "")))
        elif output.get("output_type") in ("execute_result", "display_data"):
            texts.append(_joined(output.get("data", {}).get("text/plain", "")))
    return texts


def _joined(text) -> str:
    return "".join(text) if isinstance(text, list) else str(text)


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in _joined(cell.source).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def render_scorecard(rows: list[ScoreRow]) -> str:
    """The markdown that goes between the scorecard markers of ``index.md``."""
    out = ["<!-- generated by `python -m sparsecirc.book scorecard` from the chapters' CLAIM lines; "
           "do not edit by hand -->", ""]
    if not rows:
        return "\n".join([*out, "_No claim has been checked yet._", ""])

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def link(row: ScoreRow) -> str:
        title = re.sub(r"([\[\]])", r"\\\1", row.title)
        return f"[{cell(title)}]({row.chapter})"

    out += ["| claim | chapter | ours | paper | verdict |", "|---|---|---|---|---|"]
    out += [f"| `{r.slug}` | {link(r)} | {cell(r.ours)} | {cell(r.paper)} | {cell(r.verdict)} |" for r in rows]
    counts = {v: sum(r.verdict == v for r in rows) for v in ("reproduced", "partly", "not reproduced")}
    beyond = sum(r.verdict == "beyond-paper" for r in rows)
    n = f"{len(rows)} claim{'s' if len(rows) != 1 else ''}"
    out += ["", f"{n}: {counts['reproduced']} reproduced, {counts['partly']} partly, "
                f"{counts['not reproduced']} not reproduced, {beyond} beyond the papers.", ""]
    return "\n".join(out)


def update_scorecard(book_dir: Path | str = BOOK_DIR, *, check: bool = False) -> bool:
    """Rewrite the scorecard region of ``<book_dir>/index.md``; return True when it changed.

    With ``check=True`` nothing is written (the return value says whether ``index.md`` is stale).
    """
    book_dir = Path(book_dir)
    index = book_dir / "index.md"
    text = index.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{index}: needs exactly one {START} ... {END} region")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    new = f"{head}{START}\n{render_scorecard(collect_claims(book_dir))}{END}{tail}"
    if new != text and not check:
        index.write_text(new)
    return new != text


# ---------------------------------------------------------------------------------------------------------
# built HTML

_REMOTE = r"""(?:https?:)?//[^"'\s)]+"""
_HTML_PATTERNS = [
    re.compile(rf"""<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=["']?({_REMOTE})""", re.I),
    re.compile(rf"""<link\b(?![^>]*\brel=["']?(?:canonical|alternate|author|license|search)\b)[^>]*"""
               rf"""\bhref=["']?({_REMOTE})""", re.I),
    re.compile(rf"""(?:@import\s+|url\(\s*["']?)({_REMOTE})""", re.I),
]


def remote_references(html_dir: Path | str) -> list[str]:
    """Return ``file: url`` for every script, stylesheet, font, image or import a built page loads remotely.

    Scans ``*.html`` (tags and inline styles) and ``*.css``; plain ``<a href>`` links are not loads.
    """
    html_dir = Path(html_dir)
    found = []
    for path in sorted([*html_dir.rglob("*.html"), *html_dir.rglob("*.css")]):
        text = path.read_text(errors="replace")
        patterns = _HTML_PATTERNS if path.suffix == ".html" else _HTML_PATTERNS[2:]
        for pattern in patterns:
            found += [f"{path.relative_to(html_dir)}: {m.group(1)}" for m in pattern.finditer(text)]
    return found


# ---------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsecirc.book", description=__doc__.split("\n")[0])
    parser.add_argument("--book-dir", type=Path, default=BOOK_DIR, help="book folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="print the chapter notebooks in toc order")
    ex = sub.add_parser("execute", help="execute chapters with papermill")
    ex.add_argument("--scale", choices=SCALES, required=True)
    ex.add_argument("--recompute", action="store_true", help="RECOMPUTE=True (ci scale always recomputes)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", type=Path, help="write executed copies here instead of in place")
    ex.add_argument("--only", help="one chapter: file name, stem or two-digit prefix")
    sc = sub.add_parser("scorecard", help="regenerate the scorecard in index.md")
    sc.add_argument("--check", action="store_true", help="exit 1 if index.md is stale, write nothing")
    hc = sub.add_parser("check-html", help="fail if the built HTML loads anything from the network")
    hc.add_argument("--html-dir", type=Path, help="default: <book-dir>/_build/html")
    args = parser.parse_args(argv)

    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "list":
        for path in chapters(args.book_dir):
            print(_display(path))
        return 0
    if args.cmd == "execute":
        runs = execute(args.scale, recompute=args.recompute, seed=args.seed, out=args.out, only=args.only,
                       book_dir=args.book_dir)
        if any(r.status != "ok" for r in runs):
            return 1
        if args.out is None:
            shutil.rmtree(Path(args.book_dir) / "_build" / "inplace", ignore_errors=True)
            changed = update_scorecard(args.book_dir)
            print(f"scorecard: {'updated' if changed else 'unchanged'} {_display(Path(args.book_dir) / 'index.md')}")
        return 0
    if args.cmd == "scorecard":
        index = _display(Path(args.book_dir) / "index.md")
        stale = update_scorecard(args.book_dir, check=args.check)
        if args.check and stale:
            print(f"{index}: scorecard is stale; run `python -m sparsecirc.book scorecard`", file=sys.stderr)
            return 1
        print(f"scorecard: {'up to date' if not stale else 'updated'} {index}")
        return 0
    html_dir = args.html_dir or Path(args.book_dir) / "_build" / "html"
    if not html_dir.is_dir():
        raise FileNotFoundError(f"{html_dir} does not exist; build the book first")
    remote = remote_references(html_dir)
    for ref in remote:
        print(f"remote load: {ref}", file=sys.stderr)
    print(f"check-html: {len(remote)} remote loads in {_display(html_dir)}")
    return 1 if remote else 0


def _display(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
