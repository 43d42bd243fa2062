"""sparsecirc.book (toc -> chapters, scorecard, parameters) and the build configuration around it."""
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from sparsecirc.book import __main__ as cli
from sparsecirc.book import chapters, scorecard
from sparsecirc.paths import BOOK_DIR, REPO_ROOT

# --- helpers ------------------------------------------------------------------------------------------------


def make_notebook(path: Path, title: str, printed: list[str]) -> Path:
    """A small executed-looking chapter: a title cell and one code cell whose stdout holds ``printed``."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\nSome text."))
    code = nbformat.v4.new_code_cell("sc.check.claim(...)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="".join(line + "\n" for line in printed))]
    nb.cells.append(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def make_book(root: Path, toc: dict, notebooks: dict[str, list[str]]) -> Path:
    (root / "_toc.yml").write_text(yaml.safe_dump(toc))
    (root / "index.md").write_text(f"# Test book\n\nIntro.\n\n{scorecard.START}\nold table\n{scorecard.END}\n\nAfter.\n")
    for name, printed in notebooks.items():
        make_notebook(root / name, f"Chapter {name}", printed)
    return root


# --- chapters() ---------------------------------------------------------------------------------------------


def test_chapters_follow_the_toc_recursively(tmp_path):
    toc = {
        "format": "jb-book",
        "root": "index",
        "parts": [
            {"caption": "A", "chapters": [{"file": "02_b"}, {"file": "intro_page"}]},
            {"caption": "B", "chapters": [{"file": "01_a.ipynb", "sections": [{"file": "sub/03_c"}]}]},
        ],
    }
    make_book(tmp_path, toc, {"01_a.ipynb": [], "02_b.ipynb": [], "sub/03_c.ipynb": [], "99_unlisted.ipynb": []})
    (tmp_path / "intro_page.md").write_text("# A page\n")
    assert chapters.chapters(tmp_path) == [tmp_path / "02_b.ipynb", tmp_path / "01_a.ipynb", tmp_path / "sub/03_c.ipynb"]


def test_missing_chapter_is_named(tmp_path):
    make_book(tmp_path, {"format": "jb-book", "root": "index", "chapters": [{"file": "01_gone"}]}, {})
    with pytest.raises(FileNotFoundError, match="01_gone"):
        chapters.chapters(tmp_path)


def test_cli_list_reports_missing_chapter(tmp_path, capsys):
    make_book(tmp_path, {"format": "jb-book", "root": "index", "chapters": [{"file": "01_gone"}]}, {})
    assert cli.main(["--book-dir", str(tmp_path), "list"]) == 2
    assert "01_gone" in capsys.readouterr().err


def test_real_toc_lists_existing_notebooks():
    found = chapters.chapters(BOOK_DIR)
    assert found, "book/_toc.yml lists no chapter notebook"
    assert all(p.suffix == ".ipynb" and p.is_file() for p in found)
    assert all(re.match(r"^\d\d_[a-z0-9_]+$", p.stem) for p in found), [p.stem for p in found]


# --- parameters ---------------------------------------------------------------------------------------------


def test_validate_params_accepts_defaults():
    chapters.validate_params("book", False, 0)
    chapters.validate_params("ci", True, 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [(("big", False, 0), "SCALE must be 'book' or 'ci', got 'big'"),
     (("book", "False", 0), "RECOMPUTE must be True or False, got 'False'"),
     (("book", 0, 0), "RECOMPUTE must be True or False"),
     (("book", False, "0"), "SEED must be a non-negative int, got '0'"),
     (("book", False, True), "SEED must be a non-negative int"),
     (("book", False, -1), "SEED must be a non-negative int")],
)
def test_validate_params_one_line_errors(params, message):
    with pytest.raises(ValueError) as err:
        chapters.validate_params(*params)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_execute_rejects_bad_parameters_before_running(tmp_path):
    with pytest.raises(ValueError, match="SCALE must be"):
        chapters.execute("paper", book_dir=tmp_path)
    with pytest.raises(ValueError, match="--out"):  # ci outputs never overwrite committed chapters
        chapters.execute("ci", book_dir=tmp_path)


def test_execute_side_by_side_splits_threads_and_shares_one_build_run(tmp_path, monkeypatch):
    """--jobs 2: three chapters on two workers, each kernel with half the threads and the same build-run id; the
    report keeps toc order and a failing chapter fails alone."""
    names = ["03_c", "01_a", "02_b"]
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "index", "chapters": [{"file": n} for n in names]}))
    (tmp_path / "index.md").write_text("# Test book\n")
    for n in names:
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                               "display_name": "Python 3"}})
        params = nbformat.v4.new_code_cell("SCALE = 'book'\nRECOMPUTE = False\nSEED = 0")
        params.metadata["tags"] = ["parameters"]
        body = ("import os, pathlib\n"
                f"pathlib.Path('{n}.env').write_text(os.environ['SPARSECIRC_NUM_THREADS'] + ' ' + "
                "os.environ['SPARSECIRC_BUILD_RUN'])" + ("\nraise RuntimeError('broken chapter')" if n == "01_a" else ""))
        nb.cells += [params, nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, str(tmp_path / f"{n}.ipynb"))
    monkeypatch.setenv("SPARSECIRC_NUM_THREADS", "2")
    monkeypatch.delenv("SPARSECIRC_BUILD_RUN", raising=False)
    runs = chapters.execute("ci", out=tmp_path / "out", book_dir=tmp_path, jobs=2)
    assert [r.chapter for r in runs] == [f"{n}.ipynb" for n in names]
    assert [r.status for r in runs] == ["ok", "failed", "ok"] and "broken chapter" in runs[1].error
    seen = {(tmp_path / f"{n}.env").read_text() for n in names}
    assert len(seen) == 1 and seen.pop().startswith("1 ")  # 2 threads / 2 jobs, one run id for all kernels
    assert "SPARSECIRC_BUILD_RUN" not in os.environ  # restored after the call
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        chapters.execute("ci", out=tmp_path / "out", book_dir=tmp_path, jobs=0)


# --- scorecard ----------------------------------------------------------------------------------------------

TOC2 = {"format": "jb-book", "root": "index", "chapters": [{"file": "02_second"}, {"file": "01_first"}]}


def test_scorecard_table_from_claim_outputs(tmp_path):
    make_book(tmp_path, TOC2, {
        "01_first.ipynb": ["CLAIM a-one | ours 1.5 | paper 1.6 | reproduced", "CLAIM a-two | ours no | paper yes | "
                           "not reproduced"],
        "02_second.ipynb": ["noise", "CLAIM b-one | ours 0.2% | paper — | beyond-paper"],
    })
    assert scorecard.update_scorecard(tmp_path) is True
    text = (tmp_path / "index.md").read_text()
    assert "old table" not in text and text.startswith("# Test book") and text.endswith("After.\n")
    region = text.split(scorecard.START)[1].split(scorecard.END)[0]
    rows = [line for line in region.splitlines() if line.startswith("| `")]
    assert rows == [  # toc order (02 before 01), then order of appearance
        "| `b-one` | [Chapter 02_second.ipynb](02_second.ipynb) | 0.2% | — | beyond-paper |",
        "| `a-one` | [Chapter 01_first.ipynb](01_first.ipynb) | 1.5 | 1.6 | reproduced |",
        "| `a-two` | [Chapter 01_first.ipynb](01_first.ipynb) | no | yes | not reproduced |",
    ]
    assert "3 other claims: 1 reproduced, 1 not reproduced, 1 beyond-paper." in region
    n_headline = len(scorecard.HEADLINE_CLAIMS)  # none measured in this book: each one says so
    assert region.lstrip().startswith(f"**Headline claims of the papers: 0 reproduced, {n_headline} not measured.**")


def test_headline_claims_come_first_and_are_counted_alone(tmp_path):
    make_book(tmp_path, TOC2, {
        "01_first.ipynb": ["CLAIM circuit-size-ratio | ours 37.5× | paper 16× | partly",
                           "CLAIM side-one | ours 1 | paper 1 | reproduced"],
        "02_second.ipynb": ["CLAIM code-model-edge-density | ours 3% | paper 0.3% | not reproduced"],
    })
    scorecard.update_scorecard(tmp_path)
    region = (tmp_path / "index.md").read_text().split(scorecard.START)[1].split(scorecard.END)[0]
    first = region.strip().splitlines()[0]
    n_missing = len(scorecard.HEADLINE_CLAIMS) - 2
    assert first == (f"**Headline claims of the papers: 0 reproduced, 1 partly, 1 not reproduced, "
                     f"{n_missing} not measured.**")  # side-one's "reproduced" does not count here
    assert "1 other claim: 1 reproduced." in region
    assert scorecard.update_scorecard(tmp_path) is False  # idempotent


def test_scorecard_reads_text_plain_results(tmp_path):
    make_book(tmp_path, {"format": "jb-book", "root": "index", "chapters": [{"file": "01_first"}]}, {})
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "CLAIM r-1 | ours 2 | paper 2 | "
                                                                               "reproduced"}, execution_count=1)]
    nb.cells.append(cell)
    nbformat.write(nb, str(tmp_path / "01_first.ipynb"))
    assert [r.slug for r in scorecard.collect_claims(tmp_path)] == ["r-1"]


def test_scorecard_check_detects_stale_index(tmp_path, capsys):
    make_book(tmp_path, TOC2, {"01_first.ipynb": ["CLAIM a-one | ours 1 | paper 1 | reproduced"],
                               "02_second.ipynb": []})
    args = ["--book-dir", str(tmp_path), "scorecard"]
    assert cli.main([*args, "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert "old table" in (tmp_path / "index.md").read_text()  # --check writes nothing
    assert cli.main(args) == 0
    assert cli.main([*args, "--check"]) == 0
    make_notebook(tmp_path / "01_first.ipynb", "Chapter 01_first.ipynb", ["CLAIM a-one | ours 2 | paper 1 | partly"])
    assert cli.main([*args, "--check"]) == 1


def test_scorecard_rejects_duplicate_slugs_and_missing_markers(tmp_path):
    make_book(tmp_path, TOC2, {"01_first.ipynb": ["CLAIM a-one | ours 1 | paper 1 | reproduced"],
                               "02_second.ipynb": ["CLAIM a-one | ours 1 | paper 1 | reproduced"]})
    with pytest.raises(ValueError, match="a-one"):
        scorecard.collect_claims(tmp_path)
    (tmp_path / "index.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="scorecard:start"):
        scorecard.update_scorecard(tmp_path)


def test_committed_scorecard_is_up_to_date():
    assert scorecard.update_scorecard(BOOK_DIR, check=True) is False, (
        "book/index.md scorecard is stale: run `python -m sparsecirc.book scorecard`")


# --- strip_volatile -----------------------------------------------------------------------------------------


def test_strip_volatile_keeps_outputs_and_drops_timestamps():
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": "t0", "end_time": "t1", "duration": 1.0, "input_path": "/tmp/a",
                                "output_path": "/tmp/b", "parameters": {"SCALE": "book"}, "version": "2.7.0"}
    params = nbformat.v4.new_code_cell("SCALE = 'book'", metadata={"tags": ["parameters"]})
    cell = nbformat.v4.new_code_cell("print(1)", metadata={"papermill": {"duration": 0.1},
                                                           "execution": {"iopub.status.busy": "2026-01-01"}})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    injected = nbformat.v4.new_code_cell("SCALE = 'ci'", metadata={"tags": ["injected-parameters"]})
    nb.cells += [params, injected, cell]
    chapters.strip_volatile(nb)
    assert nb.metadata["papermill"] == {"parameters": {"SCALE": "book"}, "version": "2.7.0"}
    assert "papermill" not in cell.metadata and "execution" not in cell.metadata
    assert cell.outputs[0]["text"] == "1\n"
    assert params.metadata["tags"] == ["parameters", "remove-cell"]
    assert injected.metadata["tags"] == ["injected-parameters", "remove-cell"]
    assert injected["id"] == "injected-parameters"  # papermill's random id would churn the committed file


# --- configuration files ------------------------------------------------------------------------------------


def test_environment_yml_wraps_the_same_lock():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.lock" in pip_section and "-e ." in pip_section
    assert "pip" in deps
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1
    env_py = re.match(r"python\s*=+\s*(\d+\.\d+)", pythons[0]).group(1)
    # The lock may record its interpreter in a "# python X.Y" header; else it is the venv running these tests.
    header = re.search(r"^#.*python\s*(\d+\.\d+)", (REPO_ROOT / "requirements.lock").read_text(), re.M | re.I)
    lock_py = header.group(1) if header else f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert env_py == lock_py, f"environment.yml has python {env_py}, the lock was made with {lock_py}"


def test_pyproject_torch_pin_matches_lock():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lock = dict(line.split("==", 1) for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    lock = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in lock.items()}
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert lock["torch"].split("+")[0] == torch_pin.split("==")[1]
    for dep in project["dependencies"] + sum(project["optional-dependencies"].values(), []):
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", dep).group(0)).lower()
        assert name in lock, f"{name} is a dependency in pyproject.toml but not pinned in requirements.lock"


def test_config_uses_vendored_mathjax():
    cfg = yaml.safe_load((BOOK_DIR / "_config.yml").read_text())
    sphinx = cfg["sphinx"]["config"]
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert sphinx["mathjax_path"] == "mathjax/tex-chtml.js"
    assert sphinx["html_static_path"] == ["_vendor"]
    assert (BOOK_DIR / "_vendor" / "mathjax" / "tex-chtml.js").stat().st_size > 500_000
    assert (BOOK_DIR / "_vendor" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert not (BOOK_DIR / "_static" / "mathjax").exists(), "JB1 auto-loads .js under _static: keep it in _vendor"


def test_sanitize_config_leaves_claim_lines_alone():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((REPO_ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 6

    def sanitize(s: str) -> str:
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    line = "CLAIM edges-kept | ours 0.4% | paper 0.3–0.5% | reproduced"
    assert sanitize(line) == line
    assert sanitize("took 1.25 s at 0x7f00ab in /tmp/x/y.json") == "took <TIME> s at 0xADDR in <PATH>"
    assert sanitize(f"{REPO_ROOT}/data/a.json <Figure size 640x480 with 1 Axes>") == "<PATH> <Figure>"
    # the checkout may live anywhere (CI clones under /check/...); fractions and units stay untouched
    assert sanitize("/check/work/main/data/a.json") == "<PATH>"
    assert sanitize("/scratch/u/repo/x.safetensors, ok") == "<PATH>, ok"
    kept = "matrices 1/8, loss nats/token, a / b"
    assert sanitize(kept) == kept


BUILT = BOOK_DIR / "_build" / "html"


@pytest.mark.skipif(not (BUILT / "index.html").is_file(), reason="book not built (make html)")
def test_built_book_loads_nothing_remote():
    assert scorecard.remote_references(BUILT) == []
    assert (BUILT / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in BUILT.rglob("*.html"):
        text = page.read_text()
        if "tex-chtml" in text:  # a page with math loads the vendored MathJax, relative to itself
            assert re.search(r'src="(\.\./)*_static/mathjax/tex-chtml\.js', text), page


def test_remote_reference_scanner_finds_loads(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//fonts.example/f.css">'
        '<link rel="canonical" href="https://book.example/a.html"><a href="https://example.org">ok</a>'
        '<script src="_static/local.js"></script>')
    (tmp_path / "b.css").write_text("@font-face { src: url('https://fonts.example/x.woff2'); }")
    assert scorecard.remote_references(tmp_path) == [
        "a.html: https://cdn.example/x.js", "a.html: //fonts.example/f.css", "b.css: https://fonts.example/x.woff2"]
