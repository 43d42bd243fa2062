"""Shortcut audit of the committed P1 task data (``sparsecirc.data.task_audit``).

(a) the baselines can fail: synthetic tasks where the last token or a token's presence decides;
(b) per task, the last-token-only predictor is at chance, and a bag-of-tokens reader is at chance where P1's task
    is about order or copying; (c) the two prompts of every committed pair differ exactly where P1 says.

Chance tolerance: ``task_audit.chance_tolerance(n) = 3 * 0.5 / sqrt(n)``, the 3-sigma half-width of the accuracy
of n independent coin flips; 0.094 for the 256 test prompts of a task (conservative: the two prompts of a pair
usually end in the same token, so a last-token predictor scores exactly one of them and the spread is smaller).
Measured failures are ``xfail(strict=True)`` with the measured number, so a fixed generator turns them red.
"""
import random
import re
from functools import lru_cache
from types import SimpleNamespace

import pytest
import torch

from sparsecirc.data import task_audit, tasks

P1_TASKS = list(tasks.TASKS)
N_TEST = 2 * 128
TOL = task_audit.chance_tolerance(N_TEST)

# P1's contrast is the last token itself: `else` vs `elif` is Table 1's task 11, not a leak
LAST_TOKEN_BY_DESIGN = {"else_elif"}
# measured leaks (committed data, generator version 1)
LAST_TOKEN_LEAKS = {
    "if_equals": "last token 1.000: the A side ends in ` x` (after `if`), the B side in the bare `x` that starts a "
                 "line (after `\\n` / `\\n    `), so the token id alone tells a condition from an assignment",
    "lambda_func": "last token 0.762: in the 67/128 test pairs with one parameter the def side ends in `(x` "
                   "(`(` + name merged) or a bare `x`, the lambda side in ` x`; the 61 two-parameter pairs share "
                   "the last token `, y` and sit at exactly 0.5",
}
# P1 tasks about order / copying a name: a reader of token counts must not solve them
STRUCTURE_TASKS = ["class_init", "var_swap"]
# copy tasks whose candidates are names drawn per pair: the target should occur in the prompt as often as the
# distractor (as the same token id, i.e. with its leading space)
COPY_TASKS = {
    "class_init": None,
    "var_swap": "target token in 0.27 of test prompts, distractor in 1.00 (variant A: 0/128 vs 128/128): the "
                "answer's name occurs only line-initially (init line, swap LHS), i.e. as the bare token `a`, "
                "never as the ` a` to be produced; the distractor is always the swap's RHS ` b`",
}


@lru_cache(maxsize=None)
def _baselines(name):
    return task_audit.last_token_baseline(name), task_audit.bag_of_tokens_baseline(name)


# --- (a) the baselines can fail ---------------------------------------------------------------------------------
def _synthetic(n_pairs, make, seed=0):
    """Columns of ``n_pairs`` pairs; ``make(rng, variant) -> prompt ids``; targets 100 (A) / 101 (B)."""
    rng, cols = random.Random(seed), {"prompt_ids": [], "target_id": [], "distractor_id": []}
    for _ in range(n_pairs):
        ctx = [rng.randrange(10, 90) for _ in range(rng.randint(3, 12))]
        for variant, (t, d) in enumerate(((100, 101), (101, 100))):
            cols["prompt_ids"].append(make(rng, variant, list(ctx)))
            cols["target_id"].append(t)
            cols["distractor_id"].append(d)
    return cols


def test_last_token_baseline_detects_a_label_carried_by_the_last_token():
    def label_last(rng, v, ctx):  # A ends in 5, B in 6
        return ctx + [5 + v]

    def shared_last(rng, v, ctx):  # the label is earlier in the prompt; both end in 9
        return ctx[:1] + [5 + v] + ctx[1:] + [9]

    train, test = _synthetic(200, label_last, 0), _synthetic(100, label_last, 1)
    assert task_audit.last_token_baseline(test, train=train) == 1.0
    train, test = _synthetic(200, shared_last, 0), _synthetic(100, shared_last, 1)
    assert task_audit.last_token_baseline(test, train=train) == 0.5
    unseen = _synthetic(100, lambda rng, v, ctx: ctx + [7 + v], 1)  # last tokens never seen in train: chance
    assert task_audit.last_token_baseline(unseen, train=train) == 0.5


def test_bag_of_tokens_baseline_detects_presence_but_not_order():
    def presence(rng, v, ctx):  # token 5 somewhere in A, token 6 somewhere in B; same last token
        ctx.insert(rng.randrange(len(ctx)), 5 + v)
        return ctx + [9]

    def order(rng, v, ctx):  # A has 3 then 4, B 4 then 3: identical bags
        return ctx + ([3, 4] if v == 0 else [4, 3]) + [9]

    train, test = _synthetic(300, presence, 0), _synthetic(100, presence, 1)
    assert task_audit.bag_of_tokens_baseline(test, train=train) >= 0.95
    assert task_audit.last_token_baseline(test, train=train) == 0.5
    train, test = _synthetic(300, order, 0), _synthetic(100, order, 1)
    assert task_audit.bag_of_tokens_baseline(test, train=train) == 0.5  # equal scores: one of each pair right


def test_variant_rows_rejects_rows_that_are_not_pairs():
    cols = {"prompt_ids": [[1], [2], [3]], "target_id": [5, 6, 5], "distractor_id": [6, 5, 6]}
    with pytest.raises(ValueError, match="whole pairs"):
        task_audit.variant_rows(cols)
    cols = {"prompt_ids": [[1], [2]], "target_id": [5, 5], "distractor_id": [6, 6]}
    with pytest.raises(ValueError, match="do not swap"):
        task_audit.variant_rows(cols)
    assert task_audit.variant_rows("var_if")["is_a"][:4] == [1, 0, 1, 0]
    assert TOL == pytest.approx(0.09375)


# --- (b) shortcut baselines per task ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=LAST_TOKEN_LEAKS[n]))
                                  if n in LAST_TOKEN_LEAKS else n for n in P1_TASKS if n not in LAST_TOKEN_BY_DESIGN])
def test_last_token_alone_is_at_chance(name):
    assert tasks.load_task(name, "test").num_rows == N_TEST
    assert abs(_baselines(name)[0] - 0.5) <= TOL


@pytest.mark.parametrize("name", sorted(LAST_TOKEN_BY_DESIGN))
def test_last_token_decides_where_p1_contrasts_the_last_token(name):
    assert _baselines(name)[0] == 1.0


@pytest.mark.parametrize("name", STRUCTURE_TASKS)
def test_bag_of_tokens_is_at_chance_on_order_and_copy_tasks(name):
    assert abs(_baselines(name)[1] - 0.5) <= TOL


def test_presence_tasks_are_solved_by_token_counts():
    """P1's other contrasts are a token's presence (`[[` vs `[`, `set()` vs `""`, `for` vs `while`): recorded, so a
    reader knows that a high task accuracy there needs no order-sensitive mechanism."""
    bags = {n: _baselines(n)[1] for n in P1_TASKS if n not in STRUCTURE_TASKS}
    assert min(bags.values()) >= 0.8, bags


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=r)) if r else n
                                  for n, r in COPY_TASKS.items()])
def test_copy_targets_occur_in_the_prompt_as_often_as_distractors(name):
    p = task_audit.candidate_presence(name)
    assert p["target_in_prompt"] >= p["distractor_in_prompt"] - TOL, p


def test_copy_task_labels_are_decidable_from_the_prompt():
    """The answer is a function of the prompt text (no label noise), for every committed prompt."""
    for split in tasks.SPLITS:
        for name, rule in (("var_swap", r"^\s*(\w+), \w+ = \w+,\Z"), ("class_init", r"self\.(\w+) =\Z")):
            ds = tasks.load_task(name, split)
            assert all(f" {re.search(rule, p, re.M)[1]}" == t for p, t in zip(ds["prompt"], ds["target"]))
    words = {}
    for split in tasks.SPLITS:
        ds = tasks.load_task("with_open", split)
        for p, t in zip(ds["prompt"], ds["target"]):
            words.setdefault(t, set()).add(re.search(r"open\([\"'](\w+)\.\w+[\"'], [\"']\Z", p)[1])
    assert not words["r"] & words["w"] and len(words["r"]) >= 10 and len(words["w"]) >= 8


# --- (c) pairs differ where P1 says ------------------------------------------------------------------------------
def _one_each(pa, pb):
    """Both prompts match their pattern exactly once and agree once the matches are masked."""
    def same(a, b):
        (ma, na), (mb, nb) = re.subn(pa, "\0", a, flags=re.M), re.subn(pb, "\0", b, flags=re.M)
        return na == nb == 1 and ma == mb
    return same


def _swapped_names(a, b):
    (ca, la), (cb, lb) = a.rsplit("\n", 1), b.rsplit("\n", 1)
    x, y = re.fullmatch(r"(\s*)(\w+), (\w+) = \3,", la), re.fullmatch(r"(\s*)(\w+), (\w+) = \3,", lb)
    return ca == cb and bool(x and y) and x[1] == y[1] and (x[2], x[3]) == (y[3], y[2])


def _lambda_vs_def(a, b):
    x = re.fullmatch(r"(?s)(.*\n|)(\w+) = lambda ([\w, ]+)", a)
    y = re.fullmatch(r"(?s)(.*\n|)def (\w+)\(([\w, ]+)", b)
    return bool(x and y) and x.groups() == y.groups()


LAST = r"(?=[^\n]*\Z)"  # on the prompt's last line
P1_DIFFERENCE = {  # task -> (a, b) -> bool, from P1 Table 1 / §2.2 (digest §6)
    "single_double_quote": _one_each(r'\("' + LAST, r"\('" + LAST),  # only the opening quote differs
    "bracket_counting": _one_each(r"= \[\[" + LAST, r"= \[" + LAST),  # only `[[` vs `[`
    "set_or_string": _one_each(r"(?<= = )set\(\)$", r"(?<= = )(?:\"\"|'')$"),  # only the initialisation
    "set_or_string_fixedvarname": _one_each(r"(?<=^current = )set\(\)$", r"(?<=^current = )(?:\"\"|'')$"),
    "final_kwarg": lambda a, b: a != b and re.sub(r"=(?:None|0|True|False)(?=, [^\n]*\Z)", "", a) == b,
    "class_init": lambda a, b: a != b and _one_each(r"(?<=self\.)\w+(?= =\Z)", r"(?<=self\.)\w+(?= =\Z)")(a, b),
    "with_as": _one_each(r"^with (?=open\([^\n]*\Z)", r"^\w+ = (?=open\([^\n]*\Z)"),
    "bracket_brace": _one_each(r' \{"(?=\w+\Z)', r' \["(?=\w+\Z)'),
    "with_open": lambda a, b: a != b and _one_each(r"(?<=open\([\"'])\w+(?=\.\w+[\"'], [\"']\Z)",
                                                   r"(?<=open\([\"'])\w+(?=\.\w+[\"'], [\"']\Z)")(a, b),
    "for_while": _one_each(r"\bfor(?= \w+\Z)", r"\bwhile(?= \w+\Z)"),
    "else_elif": _one_each(r"^else\Z", r"^elif\Z"),
    "fstring_brace": _one_each(r'\(f"' + LAST, r'\("' + LAST),
    "if_ternary": _one_each(r"^\s*if (?=[^\n]*\Z)", r"^\s*(?:\w+ = |print\(|return )[^\n]*? if (?=[^\n]*\Z)"),
    "var_swap": _swapped_names,  # `x, y = y,` vs `y, x = x,`
    "indent_for": _one_each(r"\n\n(?=for [^\n]*\Z)", r"\n    (?=for [^\n]*\Z)"),
    "lambda_func": _lambda_vs_def,
    "if_equals": lambda a, b: re.sub(r"^(\s*)if (?=\w+\Z)", r"\1", a, flags=re.M) == b != a,
    "enumerate_range": lambda a, b: re.sub(r", \w+(?= in\Z)", "", a) == b != a,
    "var_if": lambda a, b: re.sub(r"^if (\w+) == (True|False)\Z", r"\1 = \2", a, flags=re.M) == b != a,
    "while_return_true": _one_each(r"^    while(?= True\Z)", r"^    return(?= True\Z)"),
}


@pytest.mark.parametrize("name", P1_TASKS)
def test_committed_pairs_differ_only_where_p1_says(name):
    check = P1_DIFFERENCE[name]
    for split in tasks.SPLITS:
        prompts = tasks.load_task(name, split)["prompt"]
        bad = [(a, b) for a, b in zip(prompts[0::2], prompts[1::2]) if not check(a, b)]
        assert not bad, f"{len(bad)} {split} pairs differ elsewhere, e.g. {bad[0]}"


def test_pair_difference_summary():
    d = task_audit.pair_difference("bracket_counting", n=50)
    assert (d["n_pairs"], d["mean_tokens"], d["max_tokens"], d["last_line"]) == (50, 1.0, 1, 1.0)
    assert d["common"] == [((" [[", " ["), 50)]
    d = task_audit.pair_difference("var_swap", n=50)
    assert {c[0] for c in d["common"][:2]} == {(" <name>", " <name>"), ("<name>", "<name>")}  # the swapped names
    assert d["mean_blocks"] == 3 and d["common"][0][1] == 50


def test_audit_table_has_one_row_per_task():
    df = task_audit.audit_table()
    assert list(df.index) == P1_TASKS and (df["n_test"] == N_TEST).all()
    assert {"last_token_acc", "bag_of_tokens_acc", "diff_tokens_mean", "top_diff"} <= set(df.columns)


# --- (d) open_modes and pair_outcomes ----------------------------------------------------------------------------
def test_open_modes_reads_name_kind_and_mode():
    texts = ['with open("data/input.csv", "r") as f:\n    f = open(\'output.txt\', mode=\'w\')',
             'fh = open(path)\nout = open("results.json", "a")\nopen("zzz.txt", "w")']
    assert task_audit.open_modes(texts) == {("other", "none"): 1, ("other", "w"): 1, ("read", "r"): 1,
                                            ("write", "a"): 1, ("write", "w"): 1}


class _PriorModel(torch.nn.Module):
    """Logits that ignore the prompt: a fixed random score per vocabulary id (a pure prior)."""

    def __init__(self, d_vocab=4096, seed=0):
        super().__init__()
        self.cfg = SimpleNamespace(data_version="v2", n_ctx=None)
        self.scores = torch.nn.Parameter(torch.randn(d_vocab, generator=torch.Generator().manual_seed(seed)))

    def forward(self, tokens, positions=None):
        return self.scores.expand(tokens.shape[0], -1)


def test_pair_outcomes_counts_a_prior_as_the_same_answer_on_both_prompts():
    out = task_audit.pair_outcomes(_PriorModel(), "var_swap")
    assert out["pairs"] == 128 and out["same_answer"] == 1.0 and out["both_right"] == out["both_wrong"] == 0.0
    assert out["accuracy"] == 0.5


def test_pair_outcomes_splits_pairs_by_how_many_prompts_are_right(monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict({"pair_id": [0, 0, 1, 1, 2, 2, 3, 3], "target": list("abbaabba"),
                                     "distractor": list("baabbaab")})
    right = [1, 1, 1, 0, 0, 0, 0, 1]  # pair 0 both right, 1 one (chose "b"), 2 none, 3 one (chose "a")
    monkeypatch.setattr(tasks, "model_task", lambda m, t, s: ds)
    monkeypatch.setattr(tasks, "pair_logits", lambda m, d: torch.tensor([[float(r), 0.5] for r in right]))
    out = task_audit.pair_outcomes(None, "x")
    assert (out["both_right"], out["same_answer"], out["both_wrong"]) == (0.25, 0.5, 0.25)
    assert out["accuracy"] == 0.5
    monkeypatch.setattr(tasks, "model_task", lambda m, t, s: ds.select(range(7)))
    monkeypatch.setattr(tasks, "pair_logits", lambda m, d: torch.zeros(7, 2))
    with pytest.raises(ValueError, match="exactly two"):
        task_audit.pair_outcomes(None, "x")


def test_target_accuracy_splits_a_prior_into_one_side_right_and_one_wrong():
    table = task_audit.target_accuracy_table({"prior": _PriorModel(), "other": _PriorModel(seed=3)}, "with_open")
    assert list(table.columns) == ["target 'r'", "target 'w'"] and list(table.index) == ["prior", "other"]
    for _, row in table.iterrows():  # a model that ignores the prompt answers one mode everywhere
        assert sorted(row.tolist()) == [0.0, 1.0]
    with pytest.raises(ValueError, match="no fixed candidates"):
        task_audit.target_accuracy_table({"prior": _PriorModel()}, "var_swap")


def test_swap_completions_counts_only_line_initial_tuple_assignments():
    texts = ["a, b = b, a\n    lo, hi = hi, lo + hi\nx, y = y, 0\n", "print(a, b = b, a)\nfoo(x, y = y, x)\n"]
    assert task_audit.swap_completions(texts) == {"lines": 3, "first_name": 2}


def test_line_end_closes_open_brackets_outside_strings():
    assert task_audit.line_end("f(x, [[1, 2]]") == ")"
    assert task_audit.line_end('d = {"(": [[1') == "]]}"
    assert task_audit.line_end("x = [1, 2]") == ""
    assert task_audit.line_end('print("(abc') is None


def test_line_end_mismatches_flags_a_target_the_finished_line_tokenizes_otherwise():
    tok = tasks.task_tokenizer("v2")
    rows = []
    for prompt, target in (("grid = np.array([[1, 2", "]]"), ("grid = [[1, 2", "]]"), ("for x in [1, 2", "]")):
        rows.append({"prompt": prompt, "target": target, "prompt_ids": tok.encode(prompt),
                     "target_id": tok.single_token_id(target)})
    assert task_audit.line_end_mismatches(rows, tok) == [0]  # `]]` then `)` is written `]` `])`
    # (a `for` header's `]:` is not a bracket: the task generators do not open lists there)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_committed_target_is_the_next_token_of_the_finished_line(version):
    tok = tasks.task_tokenizer(version)
    bad = {(name, split): task_audit.line_end_mismatches(tasks.load_task(name, split, version=version), tok)
           for name in P1_TASKS for split in ("train", "test")}
    assert {k: len(v) for k, v in bad.items() if v} == {}


def test_bracket_counting_never_opens_its_list_in_a_compound_header():
    for split in ("train", "test"):
        for prompt in tasks.load_task("bracket_counting", split, version="v2")["prompt"]:
            line = prompt[:prompt.rindex("[")].rsplit("\n", 1)[-1]
            assert not re.match(r"\s*(for|while|if|elif|with)\b", line), line


def test_stream_bracket_sites_sorts_closings_by_kind():
    tok = tasks.task_tokenizer("v2")
    progs = ["a = [1, 2]\nb = [[3, 4]]\nc = [[5], [6, 7]]\nprint(f([[8, 9]]))\n"]
    sites = task_audit.stream_bracket_sites(progs, tok, n_ctx=64)
    assert all(v["found"] == 1 for v in sites.values())
    decoded = {k: [tok.decode(p[-2:]) for p in v["prompt_ids"]] for k, v in sites.items()}
    assert decoded == {"flat list: ]": [", 2"], "only row: ]]": [", 4"], "only row, in a call: ]": [", 9"],
                       "later row: ]]": [", 7"]}
    for v in sites.values():  # the true next token is the target, the other bracket the distractor
        two, one = tok.single_token_id("]]"), tok.single_token_id("]")
        assert {(t, d) for t, d in zip(v["target_id"], v["distractor_id"])} <= {(two, one), (one, two)}


def test_stream_bracket_table_scores_a_prior_on_one_side_only():
    progs = ["a = [1, 2]\nb = [[3, 4]]\nc = [[5], [6, 7]]\nprint(f([[8, 9]]))\n"] * 3
    table = task_audit.stream_bracket_table({"prior": _PriorModel()}, progs, per_kind=2)  # found 3, scored 2
    row = table.loc["prior"]
    assert row["flat list: ]"] == row["only row, in a call: ]"] == 1 - row["only row: ]]"] == 1 - row["later row: ]]"]
    assert list(table.loc["sites"]) == [3, 3, 3, 3]
