"""Version 2 of the task generators (``task_generators_v2``): v1 unchanged, v2 audited in memory.

The v2 data is generated here, not loaded (``task_audit.generate_task``: 256 train + 128 test pairs per task, seed
0, the v1 tokenizer tinypy-2048, the build's own draws and checks). Chance tolerance: ``task_audit.chance_tolerance
(256) = 0.094``, the 3-sigma half-width for the 256 test prompts, i.e. a last-token reader must score within
0.406-0.594. By P1's definition only ``else_elif`` is decided by the last token ("`else` vs `elif`", Table 1,
task 11: the prompt ends in the keyword whose continuation is asked for), so it must score 1.0.

The bag-of-tokens reader must be at chance on the order / copy tasks (``class_init``, ``var_swap``: which name is
copied is an order fact). On every other task P1's contrast is a token's presence (``[[`` vs ``[``, ``set()`` vs
``""``, ``with`` vs an assignment, ``f"`` vs ``"``, the file's name, ...), so the bag reader solves it by design;
measured (v2, seed 0): 0.79 (``enumerate_range``) to 1.00, recorded by a lower bound.
"""
import difflib
import random
import re
from functools import lru_cache
from types import SimpleNamespace

import pytest

from sparsecirc.data import simple_python, simple_python_v2, task_audit, tasks
from sparsecirc.data import task_generators as gen
from sparsecirc.data.task_fragments_v2 import CodeDraw
from sparsecirc.data.task_generators import Draw

P1_TASKS = list(tasks.TASKS)
N_TRAIN, N_TEST = 256, 128
TOL = task_audit.chance_tolerance(2 * N_TEST)
LAST_TOKEN_BY_DESIGN = {"else_elif"}
STRUCTURE_TASKS = ["class_init", "var_swap"]
MANIFEST = tasks.json.loads((tasks.TASKS_DIR / "MANIFEST.json").read_text())


@lru_cache(maxsize=None)
def _v2(name):
    return task_audit.generate_task(name, N_TRAIN, N_TEST, 0, version="v2")


@lru_cache(maxsize=None)
def _baselines(name):
    g = _v2(name)
    return (task_audit.last_token_baseline(g["test"], train=g["train"]),
            task_audit.bag_of_tokens_baseline(g["test"], train=g["train"]))


def _pairs(name):
    """(A prompt, B prompt) of both splits."""
    return [(s["prompt"][i], s["prompt"][i + 1]) for s in _v2(name).values() for i in range(0, len(s["prompt"]), 2)]


# --- v1 is unchanged --------------------------------------------------------------------------------------------
def test_v1_regenerates_the_committed_data_of_every_task():
    """Same draws as before the version keyword: the committed v1 data of all 20 tasks (no test pair of any was
    redrawn for the corpus, so no corpus index is needed) comes back row for row."""
    assert not any(t["test_pairs_redrawn_as_in_corpus"] for t in MANIFEST["tasks"].values())
    for name in P1_TASKS:
        g = task_audit.generate_task(name, MANIFEST["n_train_pairs"], MANIFEST["n_test_pairs"], MANIFEST["seed"], "v1")
        for split in tasks.SPLITS:
            ref = tasks.load_task(name, split).to_dict()
            assert g[split] == ref, (name, split)


def test_versions_dispatch_and_unknown_versions_fail():
    names = tasks.single_token_names(tasks.task_tokenizer())
    for name, task in tasks.TASKS.items():
        a = task.generator(Draw(random.Random(3), names))
        assert task.generator(Draw(random.Random(3), names), version="v1") == a
        assert task.generator(Draw(random.Random(3), names), version="v2") != a
        with pytest.raises(ValueError, match="valid: v1, v2"):
            task.generator(Draw(random.Random(3), names), version="v3")


# --- well-formed pairs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", P1_TASKS)
def test_v2_pairs_are_checked_minimal_contrasts(name):
    tok, task = tasks.task_tokenizer(), tasks.TASKS[name]
    prompts = []
    assert [len(s["prompt"]) for s in _v2(name).values()] == [2 * N_TRAIN, 2 * N_TEST]
    for split in _v2(name).values():
        for i, (p, t, dd, ids) in enumerate(zip(split["prompt"], split["target"], split["distractor"],
                                                split["prompt_ids"])):
            assert tok.encode(p + t) == ids + [tok.single_token_id(t)] and len(ids) <= task.max_tokens
            assert tok.encode(p + dd) == ids + [tok.single_token_id(dd)]
            assert p == p.lstrip() and not p[-1].isspace()
            if task.candidates is not None:
                assert (t, dd) == (task.candidates if i % 2 == 0 else task.candidates[::-1])
        prompts += split["prompt"]
        for i in range(0, len(split["prompt"]), 2):
            a, b = split["prompt_ids"][i], split["prompt_ids"][i + 1]
            ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
            assert sum(max(i2 - i1, j2 - j1) for o, i1, i2, j1, j2 in ops if o != "equal") <= 8
    assert len(set(prompts)) == len(prompts)


# --- (b) shortcut baselines -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in P1_TASKS if n not in LAST_TOKEN_BY_DESIGN])
def test_v2_last_token_alone_is_at_chance(name):
    assert abs(_baselines(name)[0] - 0.5) <= TOL


def test_v2_last_token_decides_only_where_p1_contrasts_the_last_token():
    assert _baselines("else_elif")[0] == 1.0


@pytest.mark.parametrize("name", STRUCTURE_TASKS)
def test_v2_bag_of_tokens_is_at_chance_on_order_and_copy_tasks(name):
    assert abs(_baselines(name)[1] - 0.5) <= TOL


def test_v2_presence_tasks_are_solved_by_token_counts_by_design():
    bags = {n: _baselines(n)[1] for n in P1_TASKS if n not in STRUCTURE_TASKS}
    assert min(bags.values()) >= 0.75, bags


@pytest.mark.parametrize("name", STRUCTURE_TASKS)
def test_v2_copy_targets_occur_in_the_prompt_with_their_leading_space(name):
    p = task_audit.candidate_presence(_v2(name)["test"])
    assert p == {"target_in_prompt": 1.0, "distractor_in_prompt": 1.0}


# --- (c) pairs differ where P1 says -----------------------------------------------------------------------------
def _one_each(pa, pb):
    def same(a, b):
        (ma, na), (mb, nb) = re.subn(pa, "\0", a, flags=re.M), re.subn(pb, "\0", b, flags=re.M)
        return na == nb == 1 and ma == mb
    return same


def _one_char(ca, cb, tail):
    """One character differs, ``ca`` in A and ``cb`` in B, and what follows it matches ``tail`` (to the end)."""
    def same(a, b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(a) == len(b) and len(diff) == 1 and (a[diff[0]], b[diff[0]]) == (ca, cb) and \
            re.fullmatch(tail, a[diff[0] + 1:]) is not None
    return same


def _inserted(piece, tail):
    """A is B with ``piece`` inserted once, followed by ``tail`` (to the end)."""
    def same(a, b):
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(b))
        return a[:i] + a[i + len(piece):] == b and a[i:i + len(piece)] == piece and re.fullmatch(tail, a[i:])
    return same


def _last_lines(rule):
    """All lines but the last equal; ``rule(last_a, last_b)``."""
    def same(a, b):
        (ca, la), (cb, lb) = a.rsplit("\n", 1) if "\n" in a else ("", a), b.rsplit("\n", 1) if "\n" in b else ("", b)
        return ca == cb and la != lb and bool(rule(la, lb))
    return same


def _init_only(var_rule):
    def same(a, b):
        la, lb = a.split("\n"), b.split("\n")
        diff = [i for i, (x, y) in enumerate(zip(la, lb)) if x != y]
        if len(la) != len(lb) or len(diff) != 1:
            return False
        x = re.fullmatch(r"(\s*)(\w+) = set\(\)", la[diff[0]])
        y = re.fullmatch(r"(\s*)(\w+) = (?:\"\"|'')", lb[diff[0]])
        return bool(x and y) and x.groups() == y.groups() and la[-1].strip() == x[2] and var_rule(x[2])
    return same


def _swapped(la, lb):
    x, y = re.fullmatch(r"(\s*)(\w+), (\w+) = \3,", la), re.fullmatch(r"(\s*)(\w+), (\w+) = \3,", lb)
    return x and y and x[1] == y[1] and (x[2], x[3]) == (y[3], y[2])


DEFAULT = r"=(?:None|0|1|-1|True|False|\"\"|'')"
P1_DIFFERENCE_V2 = {
    "single_double_quote": _one_char('"', "'", r"[^\"'\n]*[A-Za-z]"),
    "bracket_counting": _inserted("[", r"\[(?:\n +)?[^\[\]]*"),
    "set_or_string": _init_only(lambda v: True),
    "set_or_string_fixedvarname": _init_only(lambda v: v == "current"),
    "final_kwarg": _last_lines(lambda la, lb: re.sub(DEFAULT + r"(?=, )", "", la) == lb),
    "class_init": _last_lines(lambda la, lb: re.fullmatch(r" {8}self\._?\w+ =", la) and
                              re.sub(r"\w+ =$", "", la) == re.sub(r"\w+ =$", "", lb)),
    "with_as": _last_lines(lambda la, lb: re.fullmatch(r"with (\S*open\(.*)", la) and
                           re.fullmatch(r"\w+ = (\S*open\(.*)", lb)[1] == la[5:]),
    "bracket_brace": _one_char("{", "[", r"(?:\n +)?\"[\w -]+"),
    "with_open": _last_lines(lambda la, lb: re.sub(r"(?<=[/\"'])\w+(?=\.\w+[\"'])", "F", la) ==
                             re.sub(r"(?<=[/\"'])\w+(?=\.\w+[\"'])", "F", lb)),
    "for_while": _one_each(r"\bfor(?= \w+\Z)", r"\bwhile(?= \w+\Z)"),
    "else_elif": _one_each(r"\belse\Z", r"\belif\Z"),
    "fstring_brace": _inserted("f", r"f\"[^\"\n]*[A-Za-z]"),
    "if_ternary": _last_lines(lambda la, lb: (x := re.fullmatch(r"(\s*)if (.+)", la)) and
                              re.fullmatch(re.escape(x[1]) + r"\S.* if " + re.escape(x[2]), lb)),
    "var_swap": _last_lines(_swapped),
    "indent_for": _one_each(r"\n\n(?=for [^\n]*\Z)", r"\n    (?=for [^\n]*\Z)"),
    "lambda_func": _last_lines(lambda la, lb: (x := re.fullmatch(r"(\s*)(\w+) = lambda (\w+(?:, \w+)+(?:=\S+)?)", la))
                               and lb == f"{x[1]}def {x[2]}({x[3]}"),
    "if_equals": _last_lines(lambda la, lb: re.sub(r"^(\s*)if ", r"\1", la) == lb and re.search(r"[.\[]", lb)),
    "enumerate_range": _last_lines(lambda la, lb: re.sub(r", (?:\w+|\(\w+, \w+\))(?= in$)", "", la) == lb),
    "var_if": _last_lines(lambda la, lb: re.sub(r"^if ([\w.]+) == (True|False)$", r"\1 = \2", la) == lb),
    "while_return_true": _one_each(r"^    while(?= True\Z)", r"^    return(?= True\Z)"),
}


@pytest.mark.parametrize("name", P1_TASKS)
def test_v2_pairs_differ_only_where_p1_says(name):
    bad = [(a, b) for a, b in _pairs(name) if not P1_DIFFERENCE_V2[name](a, b)]
    assert not bad, f"{len(bad)} pairs differ elsewhere, e.g. {bad[0]}"


def test_difference_checks_can_fail():
    assert not P1_DIFFERENCE_V2["single_double_quote"]('x = 1\nprint("ab', "x = 2\nprint('ab")
    assert not P1_DIFFERENCE_V2["bracket_counting"]("a = [1]\nx = [[1, 2", "a = [1]\nx = [1, 3")
    assert not P1_DIFFERENCE_V2["if_equals"]("if x", "x")
    assert not P1_DIFFERENCE_V2["var_swap"]("a, b = b,", "a, b = b,")


# --- what v2 fixed and broadened --------------------------------------------------------------------------------
def test_shortcut_fixes():
    tok = tasks.task_tokenizer()
    for a, b in _pairs("if_equals"):  # same last token on both sides
        assert tok.encode(a)[-1] == tok.encode(b)[-1]
    assert all(", " in a.split("lambda ")[-1] for a, _ in _pairs("lambda_func"))  # >= 2 parameters
    # class_init: variant A's answer is not "the next parameter in signature order"
    nxt = 0
    for a, _ in _pairs("class_init"):
        sig = re.search(r"__init__\(self, ([^)]*)\)", a)[1]
        params = [p.split("=")[0] for p in sig.split(", ")]
        done = re.findall(r"self\.(\w+) = \1$", a, re.M)
        target = re.search(r"self\._?(\w+) =\Z", a)[1]
        nxt += target == next(p for p in params if p not in done)
    assert nxt / len(_pairs("class_init")) < 0.65


def test_v2_varies_the_idioms():
    quotes = [a.split("\n")[-1] for a, _ in _pairs("single_double_quote")]
    assert 0.5 < sum('("' in q for q in quotes) / len(quotes) < 0.95  # also ` "` after an argument, or alone
    brackets = [a for a, _ in _pairs("bracket_counting")]
    assert not any("([[" in a for a in brackets)  # inside a call the tokenizer writes `]` `])`, not `]]`
    for form in ("= [[", " =[[", "+= [[", "] = [[", "[[\n"):
        assert sum(form in a for a in brackets) >= 10, form
    assert sum(bool(re.search(r"\[\[[^\]\n]*(?:True|None|[a-z_]+\b)", a)) for a in brackets) >= 100
    for name in ("set_or_string", "set_or_string_fixedvarname"):
        last = [a.split("\n")[-1] for a, _ in _pairs(name)]
        assert {len(x) - len(x.lstrip()) for x in last} == {0, 4, 8, 12}
    assert len({a.split("\n")[-1].strip() for a, _ in _pairs("set_or_string")}) >= 30
    swaps = [a for a, _ in _pairs("var_swap")]
    assert sum(a.startswith("def ") for a in swaps) > 50 and sum("\n    " in a for a in swaps) > 200


def test_contexts_compile():
    for seed in range(300):
        c = CodeDraw(SimpleNamespace(r=random.Random(seed), single_names=("x", "y")))
        compile("\n".join(c.context(1, 4)) + "\n", "<ctx>", "exec")
        compile("def f():\n" + "\n".join(c.context(1, 3, indent="    ")) + "\n    pass\n", "<ctx>", "exec")


# what follows each candidate in a minimal completion (then open strings and brackets are closed, a compound
# header gets its `:` and a `pass` body): every v2 prompt, completed with its target, compiles
AFTER = {".add": "(1)", " +=": ' "s"', " as": " f", '":': " 1", '",': " 2", " in": " x", " {": "x}",
         " else": " 0", "\n    ": "pass", "\n        ": "pass", " ==": " 1", " =": " 1", " enumerate": "(x)",
         " range": "(3)", ":": ""}
COMPOUND = ("if", "elif", "else", "for", "while", "with", "def", "class", "try", "except", "async")


def _complete(prompt, target):
    text = prompt + target + ("" if target == ":" and prompt.split()[-1] == "lambda" else AFTER.get(target, ""))
    text += " 0" if re.search(r"= lambda [^\n]*:\Z", text) else ""
    stack, quote, start, i = [], None, 0, 0  # start: where the last logical line begins
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch == "#":
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            stack.pop()
        elif ch == "\n" and not stack:
            start = i + 1
        i += 1
    text += (quote or "") + "".join({"(": ")", "[": "]", "{": "}"}[b] for b in reversed(stack))
    head = text[start:].lstrip()
    if head.startswith("with ") and " as " not in head:
        text += " as f"
    if head.split(" ")[0].rstrip(":") in COMPOUND and not text.endswith(":"):
        text += ":"
    if text.endswith(":"):
        line = text[text.rfind("\n") + 1:]
        text += "\n" + " " * (len(line) - len(line.lstrip()) + 4) + "pass"
    for m in re.finditer(r"^( *)try:$", text, re.M):  # a try block the prompt stops inside
        if not re.search(rf"^{m[1]}(?:except|finally)\b", text[m.end():], re.M):
            text += f"\n{m[1]}except Exception:\n{m[1]}    pass"
    return text + "\n"


@pytest.mark.parametrize("name", P1_TASKS)
def test_v2_prompts_completed_with_their_target_compile(name):
    """(The distractor makes invalid code in most tasks, by P1's design: `else x`, `[\"a\": 1]`, `for x:`.)"""
    bad = []
    for split in _v2(name).values():
        for p, t in zip(split["prompt"], split["target"]):
            try:
                compile(_complete(p, t), "<prompt>", "exec")
            except SyntaxError as err:
                bad.append((t, p, str(err)))
    assert not bad, f"{len(bad)} do not compile, e.g. {bad[0]}"


def test_v2_prompts_are_not_in_the_simple_python_programs():
    """No v2 prompt occurs in 1000 programs of each simple-Python generator (their templates, not copied)."""
    big = "\0".join(simple_python.generate_programs(1000, seed=0) + simple_python_v2.generate_programs(1000, seed=0))
    rng = random.Random(0)
    found = [(n, p) for n in P1_TASKS for p in rng.sample(_v2(n)["test"]["prompt"], 20) if p in big]
    assert not found, found[:3]


def test_generate_task_rejects_unknown_versions():
    with pytest.raises(ValueError, match="unknown task-generator version 'v9'"):
        task_audit.generate_task("var_if", 2, 2, version="v9")
    assert gen.VERSIONS == ("v1", "v2")


def test_audit_table_of_a_generated_version():
    row = task_audit.audit("var_swap", "v2", n_train_pairs=64, n_test_pairs=32)
    assert row["n_test"] == 64 and row["last_token_acc"] == 0.5 and row["target_in_prompt"] == 1.0
    assert row["top_diff"].startswith("' <name>'->' <name>'")
