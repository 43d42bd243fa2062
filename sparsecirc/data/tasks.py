"""The 20 tasks of P1 Table 1 as seeded contrastive pairs, their committed data, and P1's task loss.

Gao et al. probe each circuit with pairs of minimally different prompts whose correct next tokens swap (paper
§2.2, Table 1, App. A.7; digest §6). The generators are not released, so ours (``task_generators.py``) write
prompts in the style of our simple-Python corpus and use P1's candidate tokens where they are known, adapted to
our tokenizer (``tinypy-2048``): e.g. ``'r'`` is not one token there, so ``with_open`` predicts ``r`` vs ``w``
after the opening quote. Every example is checked: target and distractor are single tokens (else the generator
refuses with a ValueError) and ``encode(prompt) + [target_id] == encode(prompt + target)``, likewise for the
distractor (else the pair is redrawn).

Data: ``python -m sparsecirc tasks`` writes ``data/tasks/<task>-<split>.parquet`` (one row per prompt, the two
prompts of a pair on consecutive rows sharing ``pair_id``, variant A first) and ``data/tasks/MANIFEST.json``
(sha256 of every file, tokenizer sha256, generator version, seed, counts). Test prompts never occur in the
training split of the task nor, as substrings, in any training-corpus document.

Task loss (P1 [C], digest §5): cross-entropy over the TWO candidates at the prompt's last position,
``-log_softmax([logit_target, logit_distractor])[0]``, averaged over prompts. The official code stores the sum
over the two prompts of a pair, i.e. twice this value; P1's target 0.15 is read per prompt. Accuracy is the
fraction of prompts with ``logit_target > logit_distractor``.

Data versions (``sparsecirc.data.versions``): every function takes ``version`` (default ``"v1"``, the committed
``data/tasks``; ``evaluate_all`` / ``task_metrics`` default to the model's ``cfg.data_version``). Version 2's data
live in ``data/tasks_v2`` (``python -m sparsecirc tasks --version v2``), are tokenised with its tokenizer, and their
test prompts are checked against v2's training corpus: the stdlib TRAIN documents plus the first
``N_CHECK_PROGRAMS_V2`` programs of the (endless) v2 train stream, a bounded sample. A task generator that accepts
a ``version`` keyword (``pair_<task>(d, version=...)``) is passed the data version; one that does not writes the
same text for every version (the manifest records which).

Example:
    >>> import sparsecirc as sc, sparsecirc.data.tasks as tasks
    >>> model = sc.GPT(sc.ModelConfig(n_layer=2, d_model=128))
    >>> tasks.task_metrics(model, "single_double_quote")      # {'loss': ..., 'accuracy': ..., 'n': 256}
    >>> results = tasks.evaluate_all(model)                   # {task name: metrics}
"""
from __future__ import annotations

import argparse
import inspect
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from sparsecirc.artifacts import sha256_file
from sparsecirc.data import corpus, corpus_v2
from sparsecirc.data import task_generators as gen
from sparsecirc.data.corpus import CorpusIndex
from sparsecirc.data.tokenizer import CodeTokenizer, load_tokenizer
from sparsecirc.data.versions import DATA_VERSIONS, DEFAULT_VERSION, get_version
from sparsecirc.paths import DATA_DIR

GENERATOR_VERSION = 1  # bump when any generator's output changes on purpose
TASKS_DIR = DATA_DIR / "tasks"  # v1's folder; module attribute so tests can point it at a tmp copy
TASKS_DIRS = {name: DATA_DIR / v.tasks_dir for name, v in DATA_VERSIONS.items() if name != DEFAULT_VERSION}
REBUILD_CMD = "python -m sparsecirc tasks"
N_CHECK_PROGRAMS_V2 = 50_000  # v2 test prompts are checked against this many train-stream programs (~13 M tokens)
SPLITS = ("train", "test")
DEFAULT_N_TRAIN_PAIRS, DEFAULT_N_TEST_PAIRS, DEFAULT_SEED = 512, 128, 0
MAX_TOKENS, MAX_TOKENS_BRACKETS = 100, 120
_MAX_TRIES = 200


class TaskDataError(RuntimeError):
    """Committed task data missing, or not matching its manifest or the tokenizer."""


@dataclass(frozen=True)
class Example:
    """One prompt with its correct next token (``target``) and its pair partner's (``distractor``)."""
    prompt: str
    target: str
    distractor: str
    prompt_ids: tuple[int, ...]
    target_id: int
    distractor_id: int


@dataclass(frozen=True)
class Task:
    """A P1 task: ``make_pair(rng) -> (Example, Example)``; ``idioms`` are rough regexes of the A- and B-side
    decision contexts in corpus text (``corpus_idiom_counts``)."""
    name: str
    description: str
    generator: Callable
    candidates: tuple[str, str] | None  # (A target, B target) texts; None where they are names drawn per pair
    idioms: tuple[str, str]
    max_tokens: int = MAX_TOKENS

    def make_pair(self, rng: random.Random, tok: CodeTokenizer | None = None,
                  version: str = DEFAULT_VERSION) -> tuple[Example, Example]:
        """Draw checked pairs from ``rng`` until one passes (see module docstring); returns (A, B). ``tok``
        defaults to data version ``version``'s tokenizer; the generator gets ``version`` if it takes it."""
        tok = tok or task_tokenizer(version)
        names = single_token_names(tok)
        kw = {"version": version} if takes_version(self.generator) else {}
        draw_kw = {"version": version} if takes_version(gen.Draw) else {}
        for _ in range(_MAX_TRIES):
            (pa_, ta), (pb, tb) = self.generator(gen.Draw(rng, names, **draw_kw), **kw)
            if self.candidates is not None and (ta, tb) != self.candidates:
                raise RuntimeError(f"{self.name}: generator returned candidates {(ta, tb)}, expected {self.candidates}")
            a, b = make_example(tok, pa_, ta, tb, self.max_tokens), make_example(tok, pb, tb, ta, self.max_tokens)
            if a is not None and b is not None and pa_ != pb and ta != tb:
                return a, b
        raise RuntimeError(f"{self.name}: no valid pair in {_MAX_TRIES} draws")


@lru_cache(maxsize=len(DATA_VERSIONS))
def task_tokenizer(version: str = DEFAULT_VERSION) -> CodeTokenizer:
    """Data version ``version``'s committed tokenizer (loaded once), the one its task data are tokenised with."""
    return load_tokenizer(version=get_version(version).name)


def takes_version(fn: Callable) -> bool:
    """Whether ``fn`` accepts a ``version`` keyword (task generators are being versioned; older ones are not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "version" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def tasks_dir(version: str = DEFAULT_VERSION) -> Path:
    """The folder of data version ``version``'s task sets (``TASKS_DIR`` for v1, ``TASKS_DIRS[version]`` else)."""
    name = get_version(version).name
    return TASKS_DIR if name == DEFAULT_VERSION else TASKS_DIRS[name]


def rebuild_cmd(version: str = DEFAULT_VERSION) -> str:
    """The command that regenerates data version ``version``'s task sets."""
    return REBUILD_CMD if version == DEFAULT_VERSION else f"{REBUILD_CMD} --version {version}"


@lru_cache(maxsize=4)
def single_token_names(tok: CodeTokenizer) -> tuple[str, ...]:
    """Names of ``gen.NAME_POOL`` that are one token after a space (candidates of else_elif/var_swap/class_init)."""
    names = tuple(n for n in gen.NAME_POOL if len(tok.encode(" " + n)) == 1)
    if len(names) < 8:
        raise ValueError(f"only {len(names)} single-token names in the pool: {names}")
    return names


def make_example(tok: CodeTokenizer, prompt: str, target: str, distractor: str, max_tokens: int) -> Example | None:
    """The checked Example, or None if a candidate is not the next token after ``prompt`` or it is too long.
    Raises ValueError if a candidate is not a single token (the generator refuses)."""
    tid, did = tok.single_token_id(target), tok.single_token_id(distractor)
    ids = tok.encode(prompt)
    if len(ids) > max_tokens:
        return None
    if tok.encode(prompt + target) != ids + [tid] or tok.encode(prompt + distractor) != ids + [did]:
        return None
    return Example(prompt, target, distractor, tuple(ids), tid, did)


# --- the registry (P1 Table 1; candidates adapted to tinypy-2048) -------------------------------------------
_TASK_LIST = [
    Task("single_double_quote", 'close a string with the quote that opened it: `")` after `("...`, `\')` after '
         "`('...` (only the opening quote token differs; strings end in a letter)", gen.pair_single_double_quote,
         ('")', "')"), (r'\("[^"\n]*[A-Za-z]"\)', r"\('[^'\n]*[A-Za-z]'\)")),
    Task("bracket_counting", "close a list of numbers at its nesting depth: `]]` after `x = [[1, 2, 3`, `]` after "
         "`x = [1, 2, 3` (only `[[` vs `[` differs, as in P1's released sample)", gen.pair_bracket_counting,
         ("]]", "]"), (r"= \[\[[\d, ]*\d\]\]", r"= \[[\d, ]*\d\]"), MAX_TOKENS_BRACKETS),
    Task("set_or_string", "use a variable by its type: `.add` if it was initialised as `set()`, ` +=` if as `\"\"` "
         "(only the initialisation differs; each pair has its own variable name)", gen.pair_set_or_string,
         (".add", " +="),
         (r"(\w+) = set\(\)\n(?:.*\n){0,6}?\s*\1\.add\(", r"(\w+) = (?:\"\"|'')\n(?:.*\n){0,6}?\s*\1 \+= ")),
    Task("set_or_string_fixedvarname", "set_or_string with the variable always named `current` (P1 §3.2.3)",
         gen.pair_set_or_string_fixedvarname, (".add", " +="),
         (r"current = set\(\)\n(?:.*\n){0,6}?\s*current\.add\(",
          r"current = (?:\"\"|'')\n(?:.*\n){0,6}?\s*current \+= ")),
    Task("final_kwarg", "inside a def signature, give the last parameter a default (`=None`) if earlier ones had "
         "defaults, else close the signature (`):`)", gen.pair_final_kwarg, ("=None", "):"),
         (r"^[ \t]*def \w+\([^)\n]*=[^)\n]*, \w+=None", r"^[ \t]*def \w+\((?:\w+, )+\w+\):")),
    Task("class_init", "in `__init__`, copy the attribute name after `self.x =` (` x`); the two prompts assign "
         "different parameters, so the candidates are two parameter names", gen.pair_class_init, None,
         (r"self\.(\w+) = \1$", r"self\.(\w+) = \1$")),
    Task("with_as", "after `open(...)` continue with ` as` in a `with` statement, with a newline (`\\n`) in an "
         "assignment `f = open(...)`", gen.pair_with_as, (" as", "\n"),
         (r"with open\([^\n]*\) as", r"^[ \t]*\w+ = open\([^\n]*\)$")),
    Task("bracket_brace", 'after the first string element, `":` inside a dict (`{"a`) and `",` inside a list '
         '(`["a`); P1\'s `:` vs `,` with the closing quote merged', gen.pair_bracket_brace, ('":', '",'),
         (r'\{"\w+":', r'\["\w+",')),
    Task("with_open", "choose the file mode from the file's name: `r` for `input.txt`, `w` for `output.txt` (the "
         "token after the mode's opening quote; `'r'` is not one token here)", gen.pair_with_open, ("r", "w"),
         (r"open\([^\n]*, [\"']r[\"']", r"open\([^\n]*, [\"']w[\"']")),
    Task("for_while", "after `for x` predict ` in`, after `while x` predict `:`", gen.pair_for_while, (" in", ":"),
         (r"^[ \t]*for \w+ in ", r"^[ \t]*while \w+:")),
    Task("else_elif", "after `else` predict `:`, after `elif` the condition's first token (the variable tested by "
         "the `if`, e.g. ` x`)", gen.pair_else_elif, None, (r"^[ \t]*else:", r"^[ \t]*elif \w+")),
    Task("fstring_brace", 'in a print, an f-string inserts a variable (` {` after `print(f"Total`), a plain string '
         'closes (`")` after `print("Total`)', gen.pair_fstring_brace, (" {", '")'),
         (r'\(f"[A-Z]\w*(?: \w+)? \{', r'\("[A-Z]\w*(?: \w+)?"\)')),
    Task("if_ternary", "after a condition, `:` in an if statement, ` else` in a conditional expression "
         "(`y = a if cond`)", gen.pair_if_ternary, (":", " else"),
         (r"^[ \t]*if [^\n]*:$", r"(?:=|\(|return) [^\n]* if [^\n]* else ")),
    Task("var_swap", "complete a swap `a, b = b,` with ` a`; the pair swaps the two names, so the candidates are "
         "the two names", gen.pair_var_swap, None,
         (r"^[ \t]*(\w+), (\w+) = \2, \1\b", r"^[ \t]*(\w+), (\w+) = \2, \1\b")),
    Task("indent_for", "indentation after a for loop's header: `\\n    ` at top level, `\\n        ` for a for "
         "nested in a block (only the header's own indentation differs)", gen.pair_indent_for, ("\n    ", "\n        "),
         (r"^for [^\n]*:\n    \S", r"^    for [^\n]*:\n        \S")),
    Task("lambda_func", "after the parameters, `:` in `f = lambda x`, `):` in `def f(x`", gen.pair_lambda_func,
         (":", "):"), (r"= lambda [\w, ]+:", r"^[ \t]*def \w+\([\w, ]+\):")),
    Task("if_equals", "after a name, ` ==` in a condition (`if x`), ` =` in an assignment (`x`)", gen.pair_if_equals,
         (" ==", " ="), (r"^[ \t]*if \w+ ==", r"^[ \t]*\w+ = ")),
    Task("enumerate_range", "after `for i, x in` predict ` enumerate`, after `for i in` predict ` range`",
         gen.pair_enumerate_range, (" enumerate", " range"), (r"for \w+, \w+ in enumerate\(", r"for \w+ in range\(")),
    Task("var_if", "`:` after `if flag == True`, newline after the assignment `flag = True`", gen.pair_var_if,
         (":", "\n"), (r"^[ \t]*if \w+ == (?:True|False):", r"^[ \t]*\w+ = (?:True|False)$")),
    Task("while_return_true", "`:` after `while True` vs end of line after `return True` at the end of a function "
         "(the blank line that follows is the single token `\\n\\n`)", gen.pair_while_return_true, (":", "\n\n"),
         (r"^[ \t]*while True:", r"^[ \t]*return True\n\n")),
]
TASKS: dict[str, Task] = {t.name: t for t in _TASK_LIST}


def get_task(name: str) -> Task:
    """The registered task ``name``; ValueError listing the valid names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


# --- datasets ---------------------------------------------------------------------------------------------
_SCHEMA = pa.schema([("pair_id", pa.int32()), ("prompt", pa.string()), ("target", pa.string()),
                     ("distractor", pa.string()), ("prompt_ids", pa.list_(pa.int32())), ("target_id", pa.int32()),
                     ("distractor_id", pa.int32())])


def _table(rows: list[tuple[int, Example]]) -> pa.Table:
    cols = {"pair_id": [p for p, _ in rows]}
    for field in ("prompt", "target", "distractor", "prompt_ids", "target_id", "distractor_id"):
        cols[field] = [list(getattr(e, field)) if field == "prompt_ids" else getattr(e, field) for _, e in rows]
    return pa.Table.from_pydict(cols, schema=_SCHEMA)


def _build_tables(name: str, n_train_pairs: int, n_test_pairs: int, seed: int,
                  exclude: Callable[[str], bool] | None,
                  version: str = DEFAULT_VERSION) -> tuple[dict[str, pa.Table], int]:
    """The two split tables and the number of test pairs redrawn because ``exclude`` hit one of its prompts."""
    task, tok = get_task(name), task_tokenizer(version)
    seen: set[str] = set()
    tables, n_excluded = {}, 0
    for split, n in (("train", n_train_pairs), ("test", n_test_pairs)):
        rng = random.Random(f"sparsecirc.tasks/{seed}/{name}/{split}")  # str seeds hash via sha512: stable
        rows: list[tuple[int, Example]] = []
        for _ in range(20 * n + 100):
            if len(rows) == 2 * n:
                break
            a, b = task.make_pair(rng, tok, version)
            if a.prompt in seen or b.prompt in seen:
                continue  # no duplicates within a split, no test prompt in train
            if split == "test" and exclude is not None and (exclude(a.prompt) or exclude(b.prompt)):
                n_excluded += 1
                continue
            seen.update((a.prompt, b.prompt))
            rows += [(len(rows) // 2, a), (len(rows) // 2, b)]
        else:
            raise RuntimeError(f"{name}: only {len(rows) // 2} distinct {split} pairs of {n} requested")
        tables[split] = _table(rows)
    return tables, n_excluded


def build_task_dataset(name: str, n_train_pairs: int = DEFAULT_N_TRAIN_PAIRS, n_test_pairs: int = DEFAULT_N_TEST_PAIRS,
                       seed: int = DEFAULT_SEED, exclude: Callable[[str], bool] | None = None, *,
                       version: str = DEFAULT_VERSION) -> datasets.DatasetDict:
    """Generate train/test pairs of one task (deterministic in ``name``, counts, ``seed`` and ``exclude``).

    Args:
        name: a key of ``TASKS``.
        n_train_pairs, n_test_pairs: pairs per split; each pair gives two rows (variant A, then B).
        seed: seed of the two split streams (``random.Random("sparsecirc.tasks/<seed>/<name>/<split>")``).
        exclude: optional predicate; test pairs with a prompt for which it is true are skipped
            (``save_task_data`` passes ``CorpusIndex`` of the training corpus).
        version: data version: its tokenizer tokenises the prompts, and generators that take it get it.
    Returns:
        ``DatasetDict`` with ``train`` / ``test`` columns pair_id, prompt, target, distractor, prompt_ids,
        target_id, distractor_id; no prompt occurs twice across both splits.

    Example:
        >>> dd = build_task_dataset("var_if", n_train_pairs=8, n_test_pairs=4)
        >>> dd["test"].num_rows
        8
    """
    tables, _ = _build_tables(name, n_train_pairs, n_test_pairs, seed, exclude, version)
    return datasets.DatasetDict({s: datasets.Dataset(t) for s, t in tables.items()})


def save_task_data(out_dir: str | Path | None = None, n_train_pairs: int = DEFAULT_N_TRAIN_PAIRS,
                   n_test_pairs: int = DEFAULT_N_TEST_PAIRS, seed: int = DEFAULT_SEED, *,
                   names: tuple[str, ...] | None = None, check_corpus: bool = True, version: str = DEFAULT_VERSION,
                   check_programs: int = N_CHECK_PROGRAMS_V2) -> Path:
    """Write ``<task>-<split>.parquet`` for every task and ``MANIFEST.json`` into ``out_dir`` (default
    ``tasks_dir(version)``: ``data/tasks``, ``data/tasks_v2``); ``python -m sparsecirc tasks [--version v2]``.
    v2 test prompts are checked against the stdlib TRAIN documents and the first ``check_programs`` programs of the
    v2 train stream (seed 0). Returns the manifest's path."""

    version = get_version(version).name
    out_dir = Path(out_dir) if out_dir is not None else tasks_dir(version)
    out_dir.mkdir(parents=True, exist_ok=True)
    if version == DEFAULT_VERSION:
        checked = {"split": "train", "n_simple": corpus.DEFAULT_N_SIMPLE, "seed": 0}
        texts = corpus.load_corpus("train")["text"] if check_corpus else None
    else:
        checked = {"split": "train", "data_version": version, "stdlib": True, "programs": [0, check_programs],
                   "seed": 0, "note": "a bounded sample of the endless train stream"}
        texts = corpus_v2.load_corpus_v2("train", n_programs=check_programs)["text"] if check_corpus else None
    exclude = CorpusIndex(texts) if check_corpus else None
    manifest = {"made_by": rebuild_cmd(version), "generator": "sparsecirc.tasks / sparsecirc.task_generators",
                "generator_version": GENERATOR_VERSION, "seed": seed, "n_train_pairs": n_train_pairs,
                "n_test_pairs": n_test_pairs, "tokenizer_sha256": task_tokenizer(version).sha256,
                "test_prompts_checked_against_corpus": checked if check_corpus else None,
                "format": "parquet (zstd), one row per prompt; rows 2i and 2i+1 are pair i (variants A, B)",
                "pyarrow": pa.__version__,  # the file bytes (not their content) depend on it
                "tasks": {}}
    if version != DEFAULT_VERSION:  # v1's manifest keeps its exact fields
        manifest.update(data_version=version, tokenizer_file=get_version(version).tokenizer_file)
    for name in names or tuple(TASKS):
        task, files = get_task(name), {}
        tables, n_excluded = _build_tables(name, n_train_pairs, n_test_pairs, seed, exclude, version)
        for split, table in tables.items():
            path = out_dir / f"{name}-{split}.parquet"
            pq.write_table(table, path, compression="zstd", compression_level=19)
            lengths = [len(x) for x in table.column("prompt_ids").to_pylist()]
            files[split] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                            "rows": table.num_rows, "max_prompt_tokens": max(lengths),
                            "mean_prompt_tokens": round(sum(lengths) / len(lengths), 1)}
        manifest["tasks"][name] = {"description": task.description, "candidates": task.candidates,
                                   "test_pairs_redrawn_as_in_corpus": n_excluded, "files": files}
        if version != DEFAULT_VERSION:
            manifest["tasks"][name]["generator_takes_version"] = takes_version(task.generator)
    path = out_dir / "MANIFEST.json"
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return path


def load_task(name: str, split: str = "test", version: str = DEFAULT_VERSION) -> datasets.Dataset:
    """The committed ``split`` of task ``name`` in data version ``version`` (``tasks_dir(version)``), after
    checking its sha256 and the tokenizer's against the folder's ``MANIFEST.json``. Raises ValueError for unknown
    names/splits/versions, TaskDataError otherwise."""
    get_task(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    folder, cmd, tok = tasks_dir(version), rebuild_cmd(version), task_tokenizer(version)
    manifest_path = folder / "MANIFEST.json"
    if not manifest_path.exists():
        raise TaskDataError(f"{manifest_path} is missing; rebuild with `{cmd}`")
    manifest = json.loads(manifest_path.read_text())
    entry = manifest.get("tasks", {}).get(name, {}).get("files", {}).get(split)
    if entry is None:
        raise TaskDataError(f"{manifest_path} lists no {split} data for {name}; rebuild with `{cmd}`")
    path = folder / entry["file"]
    if not path.exists():
        raise TaskDataError(f"task file {path} is missing; rebuild with `{cmd}`")
    if (sha := sha256_file(path)) != entry["sha256"]:
        raise TaskDataError(f"task file {path} has sha256 {sha[:12]}..., the manifest pins {entry['sha256'][:12]}...; "
                            f"restore it from git or rebuild with `{cmd}`")
    if manifest["tokenizer_sha256"] != tok.sha256:
        raise TaskDataError(f"task data was tokenized with tokenizer {manifest['tokenizer_sha256'][:12]}..., the "
                            f"current {version} one is {tok.sha256[:12]}...; rebuild with `{cmd}`")
    return datasets.Dataset(pq.read_table(path))


# --- corpus overlap and idiom frequency -------------------------------------------------------------------------
def corpus_idiom_counts(texts, sources) -> dict[str, dict[str, tuple[int, int]]]:
    """Rough frequency of each task's decision contexts: ``{task: {source: (count_A, count_B)}}`` where the counts
    are matches of ``Task.idioms`` in the documents of each source (e.g. ``"simple"``, ``"stdlib"``)."""
    by_source: dict[str, list[str]] = {}
    for t, s in zip(texts, sources):
        by_source.setdefault(s, []).append(t)
    joined = {s: "\0\n".join(ts) for s, ts in by_source.items()}  # \0: no match across documents
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for task in TASKS.values():
        pats = [re.compile(p, re.MULTILINE) for p in task.idioms]
        out[task.name] = {s: tuple(sum(1 for _ in p.finditer(text)) for p in pats) for s, text in joined.items()}
    return out


# --- evaluation -------------------------------------------------------------------------------------------------
def columns(data) -> dict[str, list]:
    """Column lists of a ``datasets.Dataset`` (respecting select/format) or of a dict batch ``ds[i:j]``."""
    if isinstance(data, datasets.Dataset):
        data = data.with_format(None)[:]
    return {k: [x.tolist() if hasattr(x, "tolist") else x for x in data[k]] if k == "prompt_ids" else list(data[k])
            for k in ("prompt_ids", "target_id", "distractor_id")}


def pad_batch(prompt_ids: list[list[int]], n_ctx: int | None = None, pad_id: int = 0):
    """Right-pad prompts into ``tokens [n, T]`` and return ``last [n]``, each prompt's last real position.

    Causal attention means pad tokens after a position never change its logits, so no mask is needed (left
    padding would). Prompts longer than ``n_ctx`` keep their last ``n_ctx`` tokens, as P1's code left-truncates
    task prompts to its context ([C], digest §5).
    """
    seqs = [list(p)[-n_ctx:] if n_ctx else list(p) for p in prompt_ids]
    if not seqs:
        raise ValueError("pad_batch: no prompts")
    empty = [i for i, q in enumerate(seqs) if not q]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty ({len(empty)} empty in all): a task prompt needs at least one "
                         "token, the one the answer follows")
    T = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # [n, T]
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, torch.tensor([len(s) - 1 for s in seqs], dtype=torch.long)


@torch.no_grad()
def pair_logits(model: torch.nn.Module, data, batch_size: int = 64) -> torch.Tensor:
    """Logits of (target, distractor) at each prompt's last position: ``[n, 2]`` float32, rows in ``data``'s order.

    Args:
        model: ``GPT`` (tokens ``[batch, pos]`` -> logits ``[batch, pos, vocab]``); put in eval mode for the call.
        data: a task ``datasets.Dataset`` or a dict batch with ``prompt_ids``, ``target_id``, ``distractor_id``.
        batch_size: prompts per forward; prompts are grouped by length to limit padding.
    Example:
        >>> lg = pair_logits(model, load_task("var_if"))     # [256, 2]
    """
    cols = columns(data)
    ids = cols["prompt_ids"]
    cand = torch.tensor([cols["target_id"], cols["distractor_id"]], dtype=torch.long).T  # [n, 2]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), 2)
    device = next(model.parameters()).device
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tokens, last = pad_batch([ids[i] for i in idx], n_ctx)
            final = model(tokens.to(device), positions=last.to(device))  # [b, vocab]
            out[idx] = final.gather(1, cand[idx].to(device)).float().cpu()  # [b, 2]
    finally:
        model.train(was_training)
    return out


def task_loss(logits2: torch.Tensor) -> torch.Tensor:
    """P1's per-prompt task loss from ``pair_logits`` ``[n, 2]``: ``-log_softmax(logits2)[:, 0]`` -> ``[n]``
    (the official code stores the sum over a pair's two prompts, i.e. twice the mean of this)."""
    return -F.log_softmax(logits2.float(), dim=-1)[:, 0]


def task_accuracy(logits2: torch.Tensor) -> torch.Tensor:
    """1.0 where the target's logit beats the distractor's, else 0.0: ``[n, 2] -> [n]``."""
    return (logits2[:, 0] > logits2[:, 1]).float()


def model_data_version(model: torch.nn.Module) -> str:
    """The data version a model was trained on: ``model.cfg.data_version`` (``"v1"`` for a model without one)."""
    return getattr(getattr(model, "cfg", None), "data_version", DEFAULT_VERSION)


def model_task(model: torch.nn.Module, name: str, split: str = "test") -> datasets.Dataset:
    """:func:`load_task` in the data version ``model`` was trained on (its tokenizer's ids)."""
    return load_task(name, split, version=model_data_version(model))


def task_metrics(model: torch.nn.Module, name: str, split: str = "test", max_examples: int | None = None,
                 version: str | None = None) -> dict:
    """``{"loss", "accuracy", "n"}`` of ``model`` on the committed ``split`` of task ``name`` (first
    ``max_examples`` prompts, rounded down to whole pairs), in data version ``version`` (None: the model's)."""
    ds = load_task(name, split, model_data_version(model) if version is None else version)
    if max_examples is not None:
        ds = ds.select(range(min(ds.num_rows, max_examples - max_examples % 2)))
    lg = pair_logits(model, ds)
    return {"loss": float(task_loss(lg).mean()), "accuracy": float(task_accuracy(lg).mean()), "n": ds.num_rows}


def evaluate_all(model: torch.nn.Module, split: str = "test", max_examples: int | None = None,
                 version: str | None = None) -> dict[str, dict]:
    """``task_metrics`` for all 20 tasks, ``{task name: {"loss", "accuracy", "n"}}`` in registry order, in data
    version ``version`` (None: the model's ``cfg.data_version``)."""
    version = model_data_version(model) if version is None else version
    return {name: task_metrics(model, name, split, max_examples, version) for name in TASKS}


def main(argv: list[str] | None = None) -> None:
    """``python -m sparsecirc tasks [--version v2]``: regenerate a version's task data and print a summary."""
    parser = argparse.ArgumentParser(prog="python -m sparsecirc tasks", description=main.__doc__)
    parser.add_argument("--version", default=DEFAULT_VERSION, choices=list(DATA_VERSIONS))
    path = save_task_data(version=parser.parse_args(argv).version)
    manifest = json.loads(path.read_text())
    total = sum(f["bytes"] for t in manifest["tasks"].values() for f in t["files"].values())
    print(f"wrote {path} ({len(manifest['tasks'])} tasks, {total} bytes of parquet)")
