"""Independent held-out prompt sets for P1's three case-study tasks (quote, bracket depth, variable type).

A model that solves a task's test split may have learned the generator's templates rather than the idiom (issue
15: on prompts written independently the quote accuracy fell from 0.94 to 0.77). These sets are a second,
independent probe of the same contrasts, never used for training, mask fitting or bisection:

- ``single_double_quote``: eight templates of ``heldout_templates`` (a string after a keyword argument or a
  subscript, docstrings and comments with quotes nearby, strings containing the other quote, three blocks deep,
  ...) plus prompts **mined from the CPython stdlib snapshot's val split** (``corpus.load_corpus("val",
  parts=("stdlib",))``): a string argument that opens after ``(`` or ``, `` and closes at the end of its line
  with ``")`` / ``')``, cut after its content, with up to 12 preceding lines (whole docstrings only); the pair is
  the real line and the same line with the other opening quote;
- ``bracket_counting``: nine templates (``x =[[`` without a space, lists of names, of ``True/False/None``, of
  strings, conditional defaults (``x = y if y else [[``) and dict values, ``return [[``, ``x=[[-1.5,2.0``,
  elements on later lines; none inside a call, where ``]]`` is not the tokenizer's next token);
- ``set_or_string`` / ``set_or_string_fixedvarname``: eight templates (a method, a ``while`` over a stack, a
  ``with`` block, comprehensions, ``var=set()`` without spaces, a long gap with a decoy, comments, ``if``/``elif``);
  variable names from ``heldout_templates.VARTYPE_NAMES`` (none in either generator's pool), or ``current``.

Rows are text first (``heldout_text_pairs``: prompt, target, distractor, pair id, template id; deterministic in
``seed``); ``heldout_pairs(task, tokenizer)`` tokenizes them into the columns of ``tasks.load_task`` plus
``template``, dropping pairs whose candidates are not single tokens or not the next token in that tokenizer, or
whose prompt is longer than ``MAX_TOKENS`` (``drop_report`` counts them). ``evaluate_heldout`` reports a
model's accuracy on the held-out set beside the committed test split; ``heldout_table`` tabulates it for several
models (chapter 02).

Example:
    >>> from sparsecirc.data.tokenizer import load_tokenizer
    >>> ds = heldout_pairs("bracket_counting", load_tokenizer())
    >>> ds.num_rows >= 256 and set(ds["template"]) >= {"no_space", "names"}
    True
"""
from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache

import datasets
import pandas as pd
import torch

from sparsecirc.data import corpus, tasks
from sparsecirc.data.heldout_templates import BRACKET_TEMPLATES, QUOTE_TEMPLATES, VARTYPE_NAMES, VARTYPE_TEMPLATES, Hand

HELDOUT_TASKS = ("single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname")
N_PER_TEMPLATE, N_MINED, DEFAULT_SEED = 24, 64, 0
MAX_TOKENS = 128  # the zoo's context; longer prompts are dropped rather than truncated
MINED = "stdlib_val"  # template id of the mined quote prompts
FEATURES = datasets.Features({
    "pair_id": datasets.Value("int32"), "prompt": datasets.Value("string"), "target": datasets.Value("string"),
    "distractor": datasets.Value("string"), "prompt_ids": datasets.Sequence(datasets.Value("int32")),
    "target_id": datasets.Value("int32"), "distractor_id": datasets.Value("int32"),
    "template": datasets.Value("string")})
_MINE_RE = re.compile(r"""(?:\(|, )(?P<q>["'])(?P<body>[A-Za-z][^"'\\\n]*[A-Za-z])(?P=q)\)[ \t]*$""", re.M)


def _check_task(task: str) -> None:
    if task not in HELDOUT_TASKS:
        raise ValueError(f"no held-out set for task {task!r}; valid: {', '.join(HELDOUT_TASKS)}")


def templates(task: str) -> dict:
    """``{template id: fn(Hand, var) -> (prompt_a, prompt_b)}`` of ``task`` (mined prompts not included)."""
    _check_task(task)
    return dict({"single_double_quote": QUOTE_TEMPLATES, "bracket_counting": BRACKET_TEMPLATES}.get(task,
                                                                                                VARTYPE_TEMPLATES))


@lru_cache(maxsize=1)
def mined_quote_sites() -> tuple[tuple[str, str, str], ...]:
    """Every quote site of the stdlib val split: ``(doc_id, context + line up to the opening quote, content)``.

    A site is a string argument opened after ``(`` or ``, `` whose content starts and ends with a letter, holds
    no quote or backslash, and whose closing ``")`` / ``')`` ends the line; outside comments, with balanced
    quotes before it on its line and outside triple-quoted strings. The context is at most 12 preceding lines
    (at most 360 characters), trimmed from the top until it holds whole triple-quoted strings.
    """
    val = corpus.load_corpus("val", parts=("stdlib",))
    sites = []
    for doc_id, text in zip(val["doc_id"], val["text"]):
        for m in _MINE_RE.finditer(text):
            start = text.rfind("\n", 0, m.start()) + 1
            line = text[start:m.start("q")]
            if "#" in line or line.count('"') % 2 or line.count("'") % 2 or not line.strip():
                continue
            if (text[:start].count('"""') + text[:start].count("'''")) % 2:
                continue  # inside a docstring
            before = text[:start].split("\n")[:-1][-12:]
            while before and (sum(len(x) + 1 for x in before) > 360 or not before[0].strip() or
                              ("\n".join(before).count('"""') + "\n".join(before).count("'''")) % 2):
                before = before[1:]
            sites.append((doc_id, "\n".join(before + [line]), m["body"]))
    return tuple(sites)


def _mined_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` mined quote pairs ``(prompt_a, prompt_b, doc_id)`` sampled with ``seed`` (all if fewer)."""
    sites = list(mined_quote_sites())
    rng = random.Random(f"sparsecirc.heldout/{seed}/{MINED}")
    picked = sorted(rng.sample(range(len(sites)), min(n, len(sites))))
    return [(f'{sites[i][1]}"{sites[i][2]}', f"{sites[i][1]}'{sites[i][2]}", sites[i][0]) for i in picked]


def heldout_text_pairs(task: str, n_per_template: int = N_PER_TEMPLATE, seed: int = DEFAULT_SEED,
                       n_mined: int = N_MINED) -> list[dict]:
    """Text rows of the held-out set of ``task``: two per pair (variant A first), each ``{"pair_id", "prompt",
    "target", "distractor", "template", "source"}`` (``source``: the stdlib document of a mined prompt, else "").

    ``n_per_template`` distinct pairs per template, from ``random.Random("sparsecirc.heldout/<seed>/<task>/
    <template>")``; for the quote task also ``n_mined`` mined pairs. No prompt occurs twice.
    """
    _check_task(task)
    cand_a, cand_b = tasks.get_task(task).candidates
    pairs: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    for tid, fn in templates(task).items():
        rng = random.Random(f"sparsecirc.heldout/{seed}/{task}/{tid}")
        got = 0
        for _ in range(20 * n_per_template):
            if got == n_per_template:
                break
            var = ("current" if task.endswith("fixedvarname") else rng.choice(VARTYPE_NAMES)) \
                if task.startswith("set_or_string") else None
            a, b = fn(Hand(rng), var)
            if a in seen or b in seen or a == b:
                continue
            seen.update((a, b))
            pairs.append((a, b, tid, ""))
            got += 1
        else:
            raise RuntimeError(f"{task}/{tid}: only {got} distinct pairs of {n_per_template}")
    if task == "single_double_quote":
        pairs += [(a, b, MINED, doc) for a, b, doc in _mined_pairs(n_mined, seed) if a not in seen and b not in seen]
    rows = []
    for i, (a, b, tid, src) in enumerate(pairs):
        rows.append({"pair_id": i, "prompt": a, "target": cand_a, "distractor": cand_b, "template": tid, "source": src})
        rows.append({"pair_id": i, "prompt": b, "target": cand_b, "distractor": cand_a, "template": tid, "source": src})
    return rows


def _tokenize(rows: list[dict], tokenizer) -> tuple[list[dict], Counter]:
    """Tokenized rows of the pairs that pass ``tasks.make_example`` on both sides; drop counts by reason."""
    kept, drops = [], Counter()
    for i in range(0, len(rows), 2):
        pair = rows[i:i + 2]
        try:
            ex = [tasks.make_example(tokenizer, r["prompt"], r["target"], r["distractor"], MAX_TOKENS) for r in pair]
        except ValueError:
            drops["candidate_not_single_token"] += 1
            continue
        if any(e is None for e in ex):
            too_long = any(len(tokenizer.encode(r["prompt"])) > MAX_TOKENS for r in pair)
            drops["too_long" if too_long else "candidate_not_next_token"] += 1
            continue
        for r, e in zip(pair, ex):
            kept.append({"pair_id": len(kept) // 2, "prompt": e.prompt, "target": e.target, "distractor": e.distractor,
                         "prompt_ids": list(e.prompt_ids), "target_id": e.target_id, "distractor_id": e.distractor_id,
                         "template": r["template"]})
    return kept, drops


def heldout_pairs(task: str, tokenizer, n_per_template: int = N_PER_TEMPLATE, seed: int = DEFAULT_SEED,
                  n_mined: int = N_MINED) -> datasets.Dataset:
    """The held-out set of ``task`` in ``tokenizer``: the columns of ``tasks.load_task`` (``pair_id``, ``prompt``,
    ``target``, ``distractor``, ``prompt_ids``, ``target_id``, ``distractor_id``; pair ``i`` on rows ``2i``,
    ``2i + 1``, variant A first) plus ``template``, so ``tasks.pair_logits`` and the other evaluators take it.

    Pairs whose candidates are not single tokens, not the next token after the prompt, or whose prompt is
    longer than ``MAX_TOKENS`` are dropped (``drop_report``); ``pair_id`` counts the kept pairs.

    Example:
        >>> ds = heldout_pairs("single_double_quote", load_tokenizer())
        >>> lg = tasks.pair_logits(model, ds)       # [n, 2]
    """
    kept, _ = _tokenize(heldout_text_pairs(task, n_per_template, seed, n_mined), tokenizer)
    return datasets.Dataset.from_list(kept, features=FEATURES)


def drop_report(task: str, tokenizer, n_per_template: int = N_PER_TEMPLATE, seed: int = DEFAULT_SEED,
                n_mined: int = N_MINED) -> dict:
    """``{"n_pairs", "n_kept", "drop_rate", "drops": {reason: pairs}, "kept_per_template": {template: pairs}}``
    of ``heldout_pairs`` with the same arguments."""
    rows = heldout_text_pairs(task, n_per_template, seed, n_mined)
    kept, drops = _tokenize(rows, tokenizer)
    n = len(rows) // 2
    return {"n_pairs": n, "n_kept": len(kept) // 2, "drop_rate": 1 - len(kept) / len(rows), "drops": dict(drops),
            "kept_per_template": dict(Counter(r["template"] for r in kept[::2]))}


def _metrics(model: torch.nn.Module, ds: datasets.Dataset) -> dict:
    lg = tasks.pair_logits(model, ds)
    return {"loss": float(tasks.task_loss(lg).mean()), "accuracy": float(tasks.task_accuracy(lg).mean()),
            "n": ds.num_rows}


def evaluate_heldout(model: torch.nn.Module, task: str, tokenizer=None) -> dict:
    """A model on the committed test split and on the held-out set of ``task``: ``{"test": metrics,
    "heldout": metrics, "per_template": {template: metrics}}``, metrics ``{"loss", "accuracy", "n"}`` as in
    ``tasks.task_metrics`` (P1's two-candidate loss per prompt; accuracy = target logit above the distractor's).
    ``tokenizer``: default the tokenizer of the model's data version (``tasks.model_data_version``), which is also
    the version of the test split it is compared with."""
    tokenizer = tokenizer or tasks.task_tokenizer(tasks.model_data_version(model))
    ds = heldout_pairs(task, tokenizer)
    tids = ds["template"]
    per = {t: _metrics(model, ds.select([i for i, x in enumerate(tids) if x == t])) for t in sorted(set(tids))}
    return {"test": tasks.task_metrics(model, task, "test"), "heldout": _metrics(model, ds), "per_template": per}


CASE_TASKS = ("single_double_quote", "bracket_counting", "set_or_string_fixedvarname")  # P1's three case studies


def heldout_table(models: dict, task_names=CASE_TASKS):
    """Test against held-out accuracy of each model on each task: a DataFrame indexed by (model, task) with
    columns ``test``, ``held-out``, ``held-out - test`` and ``worst template`` (its held-out accuracy, and name).

    Args:
        models: ``{label: model}``; each is scored in its own data version.
        task_names: tasks with a held-out set (default: P1's three case-study tasks).
    """
    rows = []
    for label, model in models.items():
        for task in task_names:
            r = evaluate_heldout(model, task)
            worst = min(r["per_template"].items(), key=lambda kv: kv[1]["accuracy"])
            t, h = r["test"]["accuracy"], r["heldout"]["accuracy"]
            rows.append({"model": label, "task": task, "test": round(t, 3), "held-out": round(h, 3),
                         "held-out - test": round(h - t, 3),
                         "worst template": f"{worst[0]} {worst[1]['accuracy']:.2f}"})
    return pd.DataFrame(rows).set_index(["model", "task"])
