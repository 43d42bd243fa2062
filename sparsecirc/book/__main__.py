"""The book's command line (the chapter list always comes from ``book/_toc.yml``)::

    python -m sparsecirc.book list                          # chapter notebooks, in toc order
    python -m sparsecirc.book execute --scale book          # in place at default parameters, then scorecard
    python -m sparsecirc.book execute --scale ci --recompute --out book/_build/ci --jobs 2   # `make test`
    python -m sparsecirc.book scorecard [--check]           # CLAIM lines -> table in book/index.md
    python -m sparsecirc.book check-html                    # built HTML loads nothing from the network
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from sparsecirc.book.chapters import chapters, execute
from sparsecirc.book.scorecard import remote_references, update_scorecard
from sparsecirc.core.config import BUILD_SCALES
from sparsecirc.paths import BOOK_DIR

# ---------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsecirc.book", description=__doc__.split("\n")[0])
    parser.add_argument("--book-dir", type=Path, default=BOOK_DIR, help="book folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="print the chapter notebooks in toc order")
    ex = sub.add_parser("execute", help="execute chapters with papermill")
    ex.add_argument("--scale", choices=BUILD_SCALES, required=True)
    ex.add_argument("--recompute", action="store_true", help="RECOMPUTE=True (ci scale always recomputes)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", type=Path, help="write executed copies here instead of in place")
    ex.add_argument("--only", help="one chapter: file name, stem or two-digit prefix")
    ex.add_argument("--jobs", type=int, default=1,
                    help="chapters executed side by side, each with $SPARSECIRC_NUM_THREADS // jobs threads")
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
                       book_dir=args.book_dir, jobs=args.jobs)
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
