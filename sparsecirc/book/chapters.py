"""Chapters: the toc (``book/_toc.yml``, never a hand-kept list), the papermill parameters, execution.

Chapters call :func:`validate_params` (through :func:`setup_notebook`) in their first code cell, so a mistyped
papermill parameter stops the run with one line (``ValueError: SCALE must be 'book' or 'ci', got 'big'``).
papermill and nbformat are imported lazily: ``import sparsecirc`` works without the ``[book]`` extra.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from sparsecirc.core.config import BUILD_SCALES
from sparsecirc.core.repro import report, seed_everything, setup_threads
from sparsecirc.paths import BOOK_DIR, BUILD_RUN_ENV

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
    if SCALE not in BUILD_SCALES:
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
            only: str | None = None, book_dir: Path | str = BOOK_DIR, jobs: int = 1) -> list[ChapterRun]:
    """Execute chapters with papermill; in place when ``out`` is None, else into ``out``.

    In place, each chapter runs into ``<book>/_build/inplace/`` first and replaces the committed notebook only
    on success, with volatile metadata stripped (:func:`strip_volatile`). Timings go to
    ``<book>/_build/timings-<scale>.json``.

    ``jobs`` > 1 executes that many chapters side by side, each kernel with ``$SPARSECIRC_NUM_THREADS // jobs``
    torch threads (at least one): the ci-scale models are small, and one thread each on two cores beats two
    threads on one chapter at a time. All kernels of one call share one ``$SPARSECIRC_BUILD_RUN``, so a cache
    build made by one chapter is reused by the next with ``RECOMPUTE=True`` (:func:`sparsecirc.build.cached_build`).

    Returns:
        one :class:`ChapterRun` per chapter, in toc order (failures included; the caller decides the exit code).
    """
    validate_params(scale, recompute, seed)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    book_dir = Path(book_dir).resolve()
    if out is None and scale != "book":
        raise ValueError("ci-scale outputs must not replace the committed book-scale chapters: pass --out DIR")
    todo = _select(chapters(book_dir), only)
    target_dir = Path(out).resolve() if out is not None else book_dir / "_build" / "inplace"
    params = {"SCALE": scale, "RECOMPUTE": recompute, "SEED": seed}
    jobs = max(1, min(jobs, len(todo)))  # an empty toc runs nothing, as before
    env = {BUILD_RUN_ENV: os.environ.get(BUILD_RUN_ENV) or uuid.uuid4().hex}
    if jobs > 1:
        env["SPARSECIRC_NUM_THREADS"] = str(max(1, setup_threads() // jobs))
    work = [(nb_path, book_dir, target_dir, params, out is None) for nb_path in todo]
    t0 = time.perf_counter()
    with _inline_figures(), _environ(env):
        if jobs == 1:
            runs = [_execute_one(*w) for w in work]
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                runs = list(pool.map(_execute_one, *zip(*work)))
    _report(runs, book_dir, scale, recompute, wall=time.perf_counter() - t0, jobs=jobs)
    return runs


def _execute_one(nb_path: Path, book_dir: Path, target_dir: Path, params: dict, in_place: bool) -> ChapterRun:
    import papermill as pm

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
    run = ChapterRun(str(rel), time.perf_counter() - t0, "ok")
    print(f"done {rel} in {run.seconds:.0f} s", flush=True)
    return run


@contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for the block (kernels and workers started in it inherit them), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def _report(runs: list[ChapterRun], book_dir: Path, scale: str, recompute: bool, wall: float, jobs: int) -> None:
    width = max([len("chapter")] + [len(r.chapter) for r in runs])
    total = sum(r.seconds for r in runs)
    n_failed = sum(r.status != "ok" for r in runs)
    print(f"\n{'chapter':<{width}}  {'seconds':>8}  status")
    for r in runs:
        print(f"{r.chapter:<{width}}  {r.seconds:8.1f}  {r.status}")
    print(f"{'total':<{width}}  {total:8.1f}  {len(runs) - n_failed} ok, {n_failed} failed")
    print(f"{'wall time':<{width}}  {wall:8.1f}  {jobs} chapter(s) at a time")
    for r in runs:
        if r.status != "ok":
            print(f"FAILED {r.chapter}: {r.error}", file=sys.stderr)
    timings = {"scale": scale, "recompute": recompute, "total_seconds": round(total, 2),
               "wall_seconds": round(wall, 2), "jobs": jobs,
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




def setup_notebook(SCALE, RECOMPUTE, SEED) -> None:  # noqa: N803 -- the chapters' parameter names
    """One call at the top of every chapter: validate parameters, set threads, seed, print the report.

    Example::

        sc.setup_notebook(SCALE, RECOMPUTE, SEED)
    """
    validate_params(SCALE, RECOMPUTE, SEED)
    setup_threads()
    seed_everything(SEED)
    report()
