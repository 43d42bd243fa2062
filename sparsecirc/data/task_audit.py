"""Shortcut baselines and pair-difference checks of the 20 committed P1 task sets (``tasks.py``).

A contrastive task (P1 §2.2, Table 1; digest §6) is only a probe of the mechanism it names if a prompt's answer
cannot be read off something simpler. Three checks, all on the committed data (``tasks.load_task``), no model:

- ``last_token_baseline``: the best predictor that sees only the prompt's last token (fit on train, scored on
  test). Both prompts of a pair usually end in the same token, so this sits at 0.5 unless the contrast itself is
  the last token (``else_elif`` by P1's definition) or tokenization leaks it (e.g. ``x`` vs `` x``).
- ``bag_of_tokens_baseline``: logistic regression on the prompt's token counts, i.e. a reader that ignores order.
  High for every task whose contrast is a token's presence (``[[`` vs ``[``, ``set()`` vs ``""``: P1's design);
  it should be at chance only where P1's task is about order or copying (``class_init``, ``var_swap``).
- ``pair_difference``: which tokens differ between the two prompts of a pair (``difflib`` alignment of ids).

``line_end_mismatches`` checks that a prompt's target is the tokenizer's next token once its line is finished
(its open brackets closed). ``open_modes`` and ``swap_completions`` count what training text says about two tasks
(``with_open``, ``var_swap``). Two more checks read a model's answers rather than the data:
``stream_bracket_table`` asks a model ``bracket_counting``'s question where training text asks it (a list closing
with ``]]`` or ``]``), and ``pair_outcomes`` splits a task's pairs into those the model gets right on both prompts,
those it gets right on one (it gave the *same* candidate to both prompts: it answered from a prior, blind to the
contrast), and those it gets wrong on both (it read the contrast backwards).

The checks read the committed data (``task`` a name) or columns generated in memory by ``generate_task`` (any
generator version, e.g. ``"v2"`` before its data is committed; ``audit_table("v2")``).

Both baselines predict the pair's *variant*: row ``2i`` of a split is variant A (target ``candidates[0]``), row
``2i + 1`` variant B, so the label "this prompt is variant A" is well defined also for the tasks whose candidates
are names drawn per pair (``class_init``, ``var_swap``, ``else_elif``'s B side). Accuracy is per prompt.

Example:
    >>> from sparsecirc.data import task_audit
    >>> task_audit.last_token_baseline("var_if")          # ~0.5
    >>> task_audit.audit_table()                          # one row per task, committed data
    >>> task_audit.audit_table("v2")                      # generated in memory by the version-2 generators
"""
from __future__ import annotations

import difflib
import keyword
import math
import random
import re
from collections import Counter

import pandas as pd
import torch

from sparsecirc.data import simple_python_v2_vocab as vocab
from sparsecirc.data import task_generators as gen
from sparsecirc.data import tasks


def variant_rows(task: str | dict, split: str = "test") -> dict[str, list]:
    """Columns ``prompt_ids``, ``target_id``, ``distractor_id`` and ``is_a`` (1 for variant A) of a task split.

    Args:
        task: a task name (its committed ``split`` is loaded) or a dict of columns ``prompt_ids``, ``target_id``,
            ``distractor_id`` with the pairs on consecutive rows, variant A first (e.g. a synthetic task in tests).
    """
    if isinstance(task, str):
        ds = tasks.load_task(task, split).with_format(None)
        cols = {k: list(ds[k]) for k in ("prompt_ids", "target_id", "distractor_id")}
    else:
        cols = {k: list(task[k]) for k in ("prompt_ids", "target_id", "distractor_id")}
    n = len(cols["prompt_ids"])
    if n % 2:
        raise ValueError(f"{n} rows: a task split holds whole pairs (rows 2i, 2i+1)")
    for i in range(0, n, 2):
        if (cols["target_id"][i], cols["distractor_id"][i]) != (cols["distractor_id"][i + 1], cols["target_id"][i + 1]):
            raise ValueError(f"rows {i}, {i + 1} are not a pair: their targets do not swap")
    cols["prompt_ids"] = [list(p) for p in cols["prompt_ids"]]
    cols["is_a"] = [1 - i % 2 for i in range(n)]
    return cols


def generate_task(name: str, n_train_pairs: int = 256, n_test_pairs: int = 128, seed: int = tasks.DEFAULT_SEED,
                  version: str = "v2", tok=None) -> dict[str, dict[str, list]]:
    """Train and test pairs of task ``name`` drawn in memory by generator ``version``: ``{split: columns}``.

    The columns are those of ``tasks.load_task`` (``pair_id``, ``prompt``, ``target``, ``distractor``,
    ``prompt_ids``, ``target_id``, ``distractor_id``). Draws, checks and de-duplication are those of
    ``tasks.build_task_dataset`` (same split streams ``"sparsecirc.tasks/<seed>/<name>/<split>"``, a pair redrawn
    until both prompts pass ``tasks.make_example``, no prompt twice across the splits), without the corpus
    check, so ``version="v1"`` reproduces the committed data of every task whose manifest records no test pair
    redrawn for the corpus. ``tok``: the tokenizer (default ``tasks.task_tokenizer()``, tinypy-2048).
    """
    task, tok = tasks.get_task(name), tok or tasks.task_tokenizer()
    gen.is_v2(version)  # ValueError for unknown versions
    names, seen, out = tasks.single_token_names(tok), set(), {}
    for split, n in (("train", n_train_pairs), ("test", n_test_pairs)):
        rng = random.Random(f"sparsecirc.tasks/{seed}/{name}/{split}")
        cols: dict[str, list] = {k: [] for k in ("pair_id", "prompt", "target", "distractor", "prompt_ids",
                                                 "target_id", "distractor_id")}
        for _ in range(20 * n + 100):
            if len(cols["prompt"]) == 2 * n:
                break
            pair = _draw_pair(task, rng, tok, names, version)
            if pair[0].prompt in seen or pair[1].prompt in seen:
                continue
            seen.update(e.prompt for e in pair)
            for e in pair:
                cols["pair_id"].append(len(cols["prompt"]) // 2)
                for k in ("prompt", "target", "distractor", "target_id", "distractor_id"):
                    cols[k].append(getattr(e, k))
                cols["prompt_ids"].append(list(e.prompt_ids))
        else:
            raise RuntimeError(f"{name} ({version}): only {len(cols['prompt']) // 2} distinct {split} pairs of {n}")
        out[split] = cols
    return out


def _draw_pair(task: tasks.Task, rng: random.Random, tok, names: tuple[str, ...], version: str):
    """``Task.make_pair`` with the generator's ``version`` (the same checks and redraws)."""
    for _ in range(200):
        (pa, ta), (pb, tb) = task.generator(gen.Draw(rng, names), version=version)
        if task.candidates is not None and (ta, tb) != task.candidates:
            raise RuntimeError(f"{task.name} ({version}): candidates {(ta, tb)}, expected {task.candidates}")
        a = tasks.make_example(tok, pa, ta, tb, task.max_tokens)
        b = tasks.make_example(tok, pb, tb, ta, task.max_tokens)
        if a is not None and b is not None and pa != pb and ta != tb:
            return a, b
    raise RuntimeError(f"{task.name} ({version}): no valid pair in 200 draws")


def _splits(task, split: str, train) -> tuple[dict, dict]:
    """(train columns, evaluation columns); a dict ``task`` is its own training set unless ``train`` is given."""
    if isinstance(task, str):
        return variant_rows(task, "train"), variant_rows(task, split)
    return variant_rows(train if train is not None else task), variant_rows(task)


def last_token_baseline(task: str | dict, split: str = "test", train: dict | None = None) -> float:
    """Accuracy of the best last-token-only predictor: for each last token id, the majority variant on the train
    split; ties and last tokens unseen in train score 0.5 (chance, as an expectation rather than a coin flip).

    Example:
        >>> last_token_baseline("else_elif")    # 1.0: `else` vs `elif` is P1's contrast itself
    """
    fit, ev = _splits(task, split, train)
    votes: dict[int, list[int]] = {}
    for ids, a in zip(fit["prompt_ids"], fit["is_a"]):
        votes.setdefault(ids[-1], [0, 0])[a] += 1
    score = 0.0
    for ids, a in zip(ev["prompt_ids"], ev["is_a"]):
        n_b, n_a = votes.get(ids[-1], [0, 0])
        score += 0.5 if n_a == n_b else float((n_a > n_b) == bool(a))
    return score / len(ev["is_a"])


def token_counts(prompt_ids: list[list[int]], d_vocab: int) -> torch.Tensor:
    """Bag-of-tokens features: ``[n, d_vocab]`` float32 counts of each token id in each prompt."""
    x = torch.zeros(len(prompt_ids), d_vocab)
    for i, ids in enumerate(prompt_ids):
        x[i].index_add_(0, torch.tensor(ids, dtype=torch.long), torch.ones(len(ids)))
    return x


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2,
                 steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression by full-batch L-BFGS from zero (deterministic): ``x [n, d]``,
    ``y [n]`` in {0, 1} -> (weights ``[d]``, bias ``[]``)."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def bag_of_tokens_baseline(task: str | dict, split: str = "test", train: dict | None = None,
                           l2: float = 1e-2) -> float:
    """Test accuracy of logistic regression on ``log1p`` token counts of the whole prompt, predicting the variant
    (A or B, i.e. which of the pair's two candidates is the target); fit on train. Order is invisible to it.

    Example:
        >>> bag_of_tokens_baseline("var_swap")   # ~0.5: which name comes first is an order fact
    """
    fit, ev = _splits(task, split, train)
    d_vocab = 1 + max(max(max(p) for p in fit["prompt_ids"]), max(max(p) for p in ev["prompt_ids"]))
    x_fit = torch.log1p(token_counts(fit["prompt_ids"], d_vocab))  # [n_train, d_vocab]
    x_ev = torch.log1p(token_counts(ev["prompt_ids"], d_vocab))  # [n_test, d_vocab]
    w, b = fit_logistic(x_fit, torch.tensor(fit["is_a"], dtype=torch.float32), l2)
    pred = (x_ev @ w + b > 0).long()  # [n_test]; a score of exactly 0 counts as variant B
    return float((pred == torch.tensor(ev["is_a"])).float().mean())


def chance_tolerance(n: int, z: float = 3.0) -> float:
    """Half-width of a ``z``-sigma band around 0.5 for the accuracy of ``n`` independent fair coin flips:
    ``z * 0.5 / sqrt(n)`` (0.094 for the 256 committed test prompts of a task)."""
    return z * 0.5 / math.sqrt(n)


def _decode(tok, ids) -> str:
    return "".join(tok.decode([i]) for i in ids)


_KEEP = set(keyword.kwlist) | {"set", "open", "print", "range", "enumerate", "self"}


def diff_shape(text: str) -> str:
    """``text`` with identifiers (other than keywords, a few builtins and string prefixes such as ``f"``) as
    ``<name>`` and numbers as ``<num>``, so that the blocks of pairs that draw their own names count as one shape."""
    text = re.sub(r"\b\d+\b", "<num>", text)
    return re.sub(r"""(?<![<\w])[A-Za-z_]\w*(?![\w>"'])""", lambda m: m[0] if m[0] in _KEEP else "<name>", text)


def pair_difference(task: str | dict, n: int = 200, split: str = "train", tok=None) -> dict:
    """Where the two prompts of a pair differ, over the first ``n`` committed pairs of ``split`` (or of the columns
    ``task``, a dict with ``prompt`` and ``prompt_ids`` such as a split of ``generate_task``; ``tok`` decodes them,
    default ``tasks.task_tokenizer()``).

    The token ids are aligned with ``difflib``; a differing block is the A-side and B-side text of one non-equal
    opcode. Returns ``{"n_pairs", "mean_tokens", "max_tokens"`` (differing tokens per pair, the longer side of each
    block), ``"mean_blocks"``, ``"last_line"`` (fraction of pairs whose first differing character lies on the
    prompt's last line), ``"common"`` (the 5 most frequent ``(A, B)`` block shapes, see ``diff_shape``, with the
    number of pairs that have them) and ``"blocks"`` (every pair's list of raw ``(A text, B text)`` blocks)}.
    """
    ds = tasks.load_task(task, split).with_format(None) if isinstance(task, str) else task
    tok = tok or tasks.task_tokenizer()
    ids, prompts = list(ds["prompt_ids"]), list(ds["prompt"])
    n = min(n, len(ids) // 2)
    sizes, n_blocks, on_last, common, blocks = [], [], 0, Counter(), []
    for i in range(n):
        a, b = list(ids[2 * i]), list(ids[2 * i + 1])
        ops = [o for o in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if o[0] != "equal"]
        pair_blocks = [(_decode(tok, a[i1:i2]), _decode(tok, b[j1:j2])) for _, i1, i2, j1, j2 in ops]
        sizes.append(sum(max(i2 - i1, j2 - j1) for _, i1, i2, j1, j2 in ops))
        n_blocks.append(len(ops))
        last_a = len(prompts[2 * i]) - len(prompts[2 * i].split("\n")[-1])  # char offset of A's last line
        first_diff = len(_decode(tok, a[:ops[0][1]])) if ops else len(prompts[2 * i])
        on_last += first_diff >= last_a
        common.update(sorted({(diff_shape(x), diff_shape(y)) for x, y in pair_blocks}))  # once per pair
        blocks.append(pair_blocks)
    return {"n_pairs": n, "mean_tokens": sum(sizes) / n, "max_tokens": max(sizes),
            "mean_blocks": sum(n_blocks) / n, "last_line": on_last / n, "common": common.most_common(5),
            "blocks": blocks}


def candidate_presence(task: str | dict, split: str = "test") -> dict[str, float]:
    """Fraction of prompts in which the target's token id, and the distractor's, occur in the prompt itself.

    A copy task (the answer is a name from the context) can only be solved by copying when the target occurs in
    the form it must be produced in (`` name`` with its leading space); ``"x"`` and ``" x"`` are different tokens.
    ``task``: a name (committed ``split``) or columns as for ``variant_rows``.
    """
    cols = variant_rows(task, split)
    rows = list(zip(cols["prompt_ids"], cols["target_id"], cols["distractor_id"]))
    return {"target_in_prompt": sum(t in p for p, t, _ in rows) / len(rows),
            "distractor_in_prompt": sum(d in p for p, _, d in rows) / len(rows)}


def audit(task: str, version: str | None = None, n_train_pairs: int = 256, n_test_pairs: int = 128,
          seed: int = tasks.DEFAULT_SEED) -> dict:
    """All checks of one task: both baselines on the test split, the test-set size and chance tolerance, the
    candidates' presence in the prompts, and a summary of the pair differences (first 200 train pairs).

    ``version=None`` audits the committed data; ``"v1"`` / ``"v2"`` audit ``generate_task(task, n_train_pairs,
    n_test_pairs, seed, version)`` (in memory, tinypy-2048).
    """
    if version is None:
        test, diff_on, fit = task, task, None
    else:
        g = generate_task(task, n_train_pairs, n_test_pairs, seed, version)
        test, diff_on, fit = g["test"], g["train"], g["train"]
    diff = pair_difference(diff_on)
    n_test = len(variant_rows(test, "test")["is_a"])
    top = diff["common"][0] if diff["common"] else (("", ""), 0)
    return {"task": task, "last_token_acc": last_token_baseline(test, train=fit),
            "bag_of_tokens_acc": bag_of_tokens_baseline(test, train=fit), "n_test": n_test,
            "chance_tol": chance_tolerance(n_test), **candidate_presence(test), "diff_tokens_mean": diff["mean_tokens"],
            "diff_tokens_max": diff["max_tokens"], "diff_on_last_line": diff["last_line"],
            "top_diff": f"{top[0][0]!r}->{top[0][1]!r} ({top[1]}/{diff['n_pairs']})"}


def audit_table(version: str | None = None, **kw) -> pd.DataFrame:
    """``audit`` of all 20 tasks in registry order, one row per task (``version`` and ``kw`` as for ``audit``)."""
    return pd.DataFrame([audit(name, version, **kw) for name in tasks.TASKS]).set_index("task")


_OPEN = re.compile(r"open\(([^\n]*?)(?:,\s*(?:mode=)?[\"']([rwa])|\))")
_FILE_NAME = re.compile(r"[\"'/_{]([a-z_]+)\.\w+[\"']")


def open_modes(programs) -> dict[tuple[str, str], int]:
    """Count ``open(...)`` calls in training text by the kind of file they open and the mode they pass: what the
    corpus teaches about task ``with_open`` (``r`` for a file read from, ``w`` for one written).

    The kind is ``read`` / ``write`` when the file's base name is one of the version-2 generator's ``READ_FILES`` /
    ``WRITE_FILES`` (a quoted name such as ``"data/input.csv"``), else ``other`` (a variable, a name from neither
    list); the mode is the first letter of a positional or ``mode=`` argument, or ``none``.

    Example:
        >>> open_modes(['with open("input.txt", "w") as f:', 'f = open("output.csv")'])
        {('read', 'w'): 1, ('write', 'none'): 1}
    """
    read, write = set(vocab.READ_FILES), set(vocab.WRITE_FILES)
    out: dict[tuple[str, str], int] = {}
    for text in programs:
        for m in _OPEN.finditer(text):
            name = _FILE_NAME.search(m.group(1))
            base = name.group(1) if name else None
            key = ("read" if base in read else "write" if base in write else "other", m.group(2) or "none")
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


_CLOSER = {"(": ")", "[": "]", "{": "}"}


def line_end(text: str) -> str | None:
    """The closing brackets that ``text``'s open brackets still need (outside string literals), innermost first;
    None when ``text`` ends inside a string. ``line_end('f(x, [[1, 2]]')`` is ``")"``."""
    stack, quote = [], None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in _CLOSER:
            stack.append(_CLOSER[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    return None if quote else "".join(reversed(stack))


def line_end_mismatches(ds, tok) -> list[int]:
    """Rows of a task split (``prompt``, ``target``, ``prompt_ids``, ``target_id`` columns) whose target is not
    the tokenizer's next token once the line is finished: ``prompt + target + line_end(prompt + target)`` must
    tokenize as ``prompt_ids + [target_id] + ...``. ``tasks.make_example`` checks only ``prompt + target``, which
    passes ``np.array([[1, 2`` + ``]]`` although the finished line ``np.array([[1, 2]])`` is written ``]`` ``])``.
    Prompts ending inside a string are not checked."""
    bad = []
    for i, row in enumerate(ds):
        end = line_end(row["prompt"] + row["target"])
        if end is None:
            continue
        n = len(row["prompt_ids"])
        if tok.encode(row["prompt"] + row["target"] + end)[:n + 1] != [*row["prompt_ids"], row["target_id"]]:
            bad.append(i)
    return bad


STREAM_BRACKET_SITES = ("flat list: ]", "only row: ]]", "only row, in a call: ]", "later row: ]]")


def stream_bracket_sites(programs, tok, n_ctx: int | None, per_kind: int = 300) -> dict[str, dict]:
    """Where training text itself asks ``bracket_counting``'s question (``]]`` or ``]`` next), by kind of site, as
    columns for ``tasks.pair_logits`` (the true next token as target, the other as distractor; the prompt is the
    ``n_ctx`` tokens before it; None: the whole program before it). Brackets are counted on tokens (strings are
    not skipped). Kinds (:data:`STREAM_BRACKET_SITES`): a flat list closing (``[1, 2`` -> ``]``); the only row
    of a nested literal closing as the statement ends (``[[1, 2`` -> ``]]``) or inside a call (``f([[1, 2`` ->
    ``]`` then ``])``); and the last of several rows (``[[1], [2, 3`` -> ``]]``). At most ``per_kind`` sites
    each, in stream order; ``"found"`` counts all sites of the kind."""
    close2, close1 = tok.single_token_id("]]"), tok.single_token_id("]")
    out = {k: {"prompt_ids": [], "target_id": [], "distractor_id": [], "found": 0} for k in STREAM_BRACKET_SITES}
    for text in programs:
        ids = tok.encode(text)
        depth = closed = 0
        for j, t in enumerate(ids[:-1]):
            s = tok.id_to_token(t)
            depth = max(depth + s.count("[") - s.count("]"), 0)
            closed = 0 if depth == 0 else closed + s.count("]")
            nxt = ids[j + 1]
            if nxt not in (close1, close2) or "[" in s or "]" in s or depth not in (1, 2):
                continue
            if depth == 1:
                kind = "flat list: ]" if nxt == close1 else None
            elif closed == 0:
                kind = "only row: ]]" if nxt == close2 else "only row, in a call: ]"
            else:
                kind = "later row: ]]" if nxt == close2 else None
            if kind is None:
                continue
            site = out[kind]
            site["found"] += 1
            if len(site["target_id"]) < per_kind:
                site["prompt_ids"].append(ids[max(0, j + 1 - (n_ctx or j + 1)):j + 1])
                site["target_id"].append(nxt)
                site["distractor_id"].append(close1 if nxt == close2 else close2)
    return out


def stream_bracket_table(models: dict[str, torch.nn.Module], programs, per_kind: int = 300) -> pd.DataFrame:
    """Each model's accuracy (true next token above the other bracket) at the sites of
    :func:`stream_bracket_sites` on ``programs`` (at most ``per_kind`` of each kind scored), with the number of
    sites found (row ``sites``); models share one data version."""
    model = next(iter(models.values()))
    tok = tasks.task_tokenizer(tasks.model_data_version(model))
    sites = stream_bracket_sites(programs, tok, model.cfg.n_ctx, per_kind)
    rows = {name: {k: tasks.task_accuracy(tasks.pair_logits(m, cols)).mean().item() if cols["target_id"] else
                   float("nan") for k, cols in sites.items()} for name, m in models.items()}
    table = pd.DataFrame(rows).T[list(STREAM_BRACKET_SITES)]
    table.loc["sites"] = [sites[k]["found"] for k in STREAM_BRACKET_SITES]
    return table


_SWAP = re.compile(r"^[ \t]*(\w+), (\w+) = \2, (\w+)", re.MULTILINE)


def swap_completions(programs) -> dict[str, int]:
    """What training text teaches task ``var_swap``: lines ``X, Y = Y, Z`` (a tuple assignment that starts by
    giving ``X`` the value of ``Y``), and how many of them complete with ``Z == X`` (the swap; the task's answer is
    the first name).

    Example:
        >>> swap_completions(["a, b = b, a\\n", "lo, hi = hi, lo + hi\\n", "x, y = y, 0\\n"])
        {'lines': 3, 'first_name': 2}
    """
    found = [m.groups() for text in programs for m in _SWAP.finditer(text)]
    return {"lines": len(found), "first_name": sum(z == x for x, _, z in found)}


def _scored_prompts(model: torch.nn.Module, task: str, split: str):
    """The task's ``split`` in the model's data version (plain format) and 1.0 / 0.0 per prompt: target above
    distractor."""
    ds = tasks.model_task(model, task, split).with_format(None)
    return ds, tasks.task_accuracy(tasks.pair_logits(model, ds)).tolist()


def pair_outcomes(model: torch.nn.Module, task: str, split: str = "test") -> dict:
    """How a model's answers fall on a task's pairs (``tasks.model_task``'s ``split``, grouped by ``pair_id``).

    The two prompts of a pair swap target and distractor, so a pair with exactly one prompt right is a pair where
    the model chose the same candidate for both: it answered from a prior, blind to the contrast.

    Returns:
        dict: ``accuracy`` (per prompt), ``pairs``, ``both_right``, ``same_answer`` (one right), ``both_wrong``
        (fractions of pairs) and ``prior`` (the candidate the same-answer pairs chose most often, with its share; not
        for tasks whose candidates are names drawn per pair).
    Example:
        >>> pair_outcomes(model, "var_swap")["same_answer"]     # near 1: the model never reads which name is first
    """
    ds, right = _scored_prompts(model, task, split)
    by: dict[int, list[tuple[float, str, str]]] = {}
    for pid, ok, tgt, dis in zip(ds["pair_id"], right, ds["target"], ds["distractor"]):
        by.setdefault(pid, []).append((ok, tgt, dis))
    if any(len(v) != 2 for v in by.values()):
        raise ValueError(f"{task}/{split}: a pair_id without exactly two prompts")
    n, hits = len(by), Counter(sum(ok for ok, _, _ in v) for v in by.values())  # {prompts right: pairs}
    same = [v for v in by.values() if sum(ok for ok, _, _ in v) == 1]
    chosen = Counter(tgt if ok else dis for v in same for ok, tgt, dis in v[:1])
    top = chosen.most_common(1)[0] if chosen else (None, 0)
    per_pair = task in tasks.TASKS and tasks.TASKS[task].candidates is None  # names drawn per pair: no one prior
    return {"accuracy": sum(right) / len(right), "pairs": n, "both_right": hits[2] / n,
            "same_answer": hits[1] / n, "both_wrong": hits[0] / n,
            "prior": "" if top[0] is None else "(a name per pair)" if per_pair else
            f"{top[0]!r} ({top[1] / max(1, len(same)):.0%})"}


def pair_outcome_table(models: dict[str, torch.nn.Module], names: list[str], split: str = "test") -> pd.DataFrame:
    """``pair_outcomes`` for each (model label, task): one row each, indexed by (task, model)."""
    rows = [{"task": t, "model": label, **pair_outcomes(m, t, split)} for t in names for label, m in models.items()]
    return pd.DataFrame(rows).set_index(["task", "model"])


def target_accuracy_table(models: dict[str, torch.nn.Module], task: str, split: str = "test") -> pd.DataFrame:
    """Each model's accuracy on the prompts of each target candidate of a task with fixed candidates (``with_open``:
    the prompts whose answer is ``r`` and those whose answer is ``w``): which side of the contrast a model gets.

    Returns:
        DataFrame indexed by model label, one column ``target <candidate>`` per target. ValueError for a task whose
        candidates are names drawn per pair (``var_swap``, ``class_init``): there a target has one or two prompts.
    """
    if task not in tasks.TASKS or tasks.TASKS[task].candidates is None:
        raise ValueError(f"{task!r} has no fixed candidates (names drawn per pair): no accuracy per target")
    rows = {}
    for label, model in models.items():
        ds, right = _scored_prompts(model, task, split)
        by: dict[str, list[float]] = {}
        for ok, tgt in zip(right, ds["target"]):
            by.setdefault(tgt, []).append(ok)
        rows[label] = {f"target {t!r}": sum(v) / len(v) for t, v in sorted(by.items())}
    return pd.DataFrame(rows).T
