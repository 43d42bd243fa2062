"""The house rules, checked on the source with ``ast`` (README, "A map of the house").

- the package's import graph (module-level and function-level imports) has no cycle;
- layering: ``artifacts`` sits at the bottom, ``core`` imports nothing from ``data/wst/spa/book/build``, ``data``
  nothing from ``wst/spa/book/build``, ``wst`` and ``spa`` never import each other, and nothing but the package's
  entry points imports ``build``;
- imports sit at the top of a module (a lazy import only for an optional heavy dependency);
- no ``_private`` name is used outside its module (package, tests, benchmarks, chapters);
- chapters define no function or class, draw no figure by hand, keep cells short and import only declared
  packages; no module is over ~500 lines.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "sparsecirc"
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
LAZY_OK = {"papermill", "nbformat"}  # the [book] extra: `import sparsecirc` must work without it
ENTRY_POINTS = {"sparsecirc", "sparsecirc.__main__"}  # the facade and the command line may import build
MAX_LINES = 500
MAX_CELL_LINES = 15


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(node: ast.ImportFrom | ast.Import, here: str, is_pkg: bool) -> list[str]:
    """The sparsecirc modules an import statement loads (``from pkg import mod`` counts ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "sparsecirc"]
    if node.level:
        base = here.split(".") if is_pkg else here.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "sparsecirc":
        return []
    subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
    # `from pkg import mod` loads pkg.mod; the package itself only counts when a name is not a submodule
    return subs + ([mod] if len(subs) < len(node.names) else [])


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported sparsecirc module, line, inside a function?) for every import in ``path``."""
    here = module_name(path)
    tree = ast.parse(path.read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            for m in resolve(n, here, path.name == "__init__.py"):
                if m in MODULES and m != here:
                    out.append((m, n.lineno, id(n) in inner))
    return out


GRAPH = {m: sorted({i for i, _, _ in imports_of(p)}) for m, p in MODULES.items()}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as a list of modules (None if the graph is acyclic); package ``__init__`` edges to its
    own submodules are the package's facade and left out."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in graph.get(m, []):
            if d.startswith(m + "."):
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                cyc = visit(d)
                if cyc:
                    return cyc
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state:
            cyc = visit(m)
            if cyc:
                return cyc
    return None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():  # the check above must be able to fail
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# which top-level parts of the package each part may import (itself always allowed)
ALLOWED = {
    "paths": set(),
    "version": set(),
    "offline": set(),
    "artifacts": {"paths", "version"},
    "core": {"paths", "version", "artifacts"},
    "context": {"artifacts", "core"},
    "data": {"paths", "version", "artifacts", "core"},
    "wst": {"paths", "artifacts", "context", "core", "data"},
    "spa": {"paths", "artifacts", "context", "core", "data"},
    "book": {"paths", "core"},
    "build": {"paths", "artifacts", "context", "core", "data", "wst", "spa"},
    "official": {"paths", "version", "artifacts", "core"},  # the openai/circuit_sparsity loader
}


def test_layering():
    bad = []
    for m, deps in GRAPH.items():
        if m in ENTRY_POINTS:
            continue
        own = layer(m)
        if own not in ALLOWED:
            bad.append(f"{m}: top-level part {own!r} has no layer in ALLOWED (add it, with its rule)")
            continue
        for d in deps:
            if layer(d) != own and layer(d) not in ALLOWED[own]:
                bad.append(f"{m} imports {d}")
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_imports_sit_at_the_top():
    bad = []
    for m, p in MODULES.items():
        tree = ast.parse(p.read_text())
        for f in ast.walk(tree):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(f):
                if isinstance(n, ast.Import):
                    names = [a.name for a in n.names]
                elif isinstance(n, ast.ImportFrom):
                    names = [("." * n.level) + (n.module or "")]
                else:
                    continue
                if any(x.split(".")[0] not in LAZY_OK for x in names):
                    bad.append(f"{p.relative_to(ROOT)}:{n.lineno} imports {names} inside {f.name}()")
    assert not bad, "imports inside functions:\n" + "\n".join(bad)


def private_uses(source: str, where: str) -> list[str]:
    """``from sparsecirc... import _x`` and ``<sparsecirc module>._x`` in ``source``."""
    tree = ast.parse(source)
    bad, modnames = [], {"sc", "sparsecirc"}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").split(".")[0] == "sparsecirc"):
            for a in n.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"{where}:{n.lineno} imports {a.name}")
                else:
                    modnames.add(a.asname or a.name)
        elif isinstance(n, ast.Import):
            modnames.update(a.asname or a.name.split(".")[0] for a in n.names if a.name.startswith("sparsecirc"))
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                and isinstance(n.value, ast.Name) and n.value.id in modnames):
            bad.append(f"{where}:{n.lineno} uses {n.value.id}.{n.attr}")
    return bad


def chapter_code(nb: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]


def test_no_private_name_crosses_a_module():
    bad = []
    for p in [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]:
        bad += private_uses(p.read_text(), str(p.relative_to(ROOT)))
    for nb in CHAPTERS:
        for i, src in enumerate(chapter_code(nb)):
            bad += private_uses(src, f"{nb.name} code cell {i}")
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_private_use_check_can_fail():
    assert private_uses("from sparsecirc.data.tasks import _tok\n", "x")
    assert private_uses("from sparsecirc.data import tasks\ntasks._tok()\n", "x")
    assert not private_uses("from sparsecirc.data import tasks\ntasks.load_task()\n", "x")


def test_no_module_is_too_long():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem[:2])
def test_chapter_defines_nothing_and_draws_through_the_library(nb):
    bad = []
    for i, src in enumerate(chapter_code(nb)):
        tree = ast.parse(src)
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                bad.append(f"cell {i}: defines {getattr(n, 'name', 'a lambda')}")
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
                if n.value.id == "plt" and n.attr not in ("show", "close"):
                    bad.append(f"cell {i}: plt.{n.attr} (a figure is one library call)")
                if n.value.id in ("ax", "axes") or (n.value.id == "fig" and n.attr in ("axes", "add_subplot",
                                                                                       "tight_layout")):
                    bad.append(f"cell {i}: {n.value.id}.{n.attr} (a figure is one library call)")
        n_lines = len(src.strip().splitlines())
        if n_lines > MAX_CELL_LINES:
            bad.append(f"cell {i}: {n_lines} lines (at most {MAX_CELL_LINES})")
    assert not bad, f"{nb.name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem[:2])
def test_chapter_calls_setup_notebook(nb):
    assert any("sc.setup_notebook(SCALE, RECOMPUTE, SEED)" in src for src in chapter_code(nb)), nb.name


def declared_packages() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        reqs += extra
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower().replace("-", "_") for r in reqs}
    return names


IMPORT_NAME = {"yaml": "pyyaml", "IPython": "ipython", "PIL": "pillow", "sklearn": "scikit_learn"}


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem[:2])
def test_chapter_imports_only_declared_packages(nb):
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    declared = declared_packages() | {"sparsecirc"} | set(sys.stdlib_module_names)
    missing = set()
    for src in chapter_code(nb):
        for n in ast.walk(ast.parse(src)):
            names = ([a.name for a in n.names] if isinstance(n, ast.Import)
                     else [n.module] if isinstance(n, ast.ImportFrom) and not n.level else [])
            for name in names:
                top = name.split(".")[0]
                dist = IMPORT_NAME.get(top, top).lower().replace("-", "_")
                if top not in declared and dist not in declared:
                    missing.add(top)
    assert not missing, f"{nb.name} imports packages pyproject.toml does not declare: {sorted(missing)}"
