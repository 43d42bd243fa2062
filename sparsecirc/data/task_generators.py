"""Text generators of the 20 P1 task pairs (paper Table 1; digest §6). Registry, checks and evaluation: ``tasks.py``.

Each ``pair_<task>(d)`` draws one contrastive pair from ``d`` (a :class:`Draw`, i.e. a seeded ``random.Random``)
and returns ``((prompt_a, target_a), (prompt_b, target_b))``: two prompts that differ minimally, each with the
text of its correct next token. ``tasks.make_pair`` then checks that both targets are single tokens and that
each target is exactly the next token after its prompt, and redraws otherwise.

Prompts imitate ``sparsecirc.data.simple_python`` (a few lines of plain code leading to the decision point) with an
independent vocabulary, so that the task data does not change when the corpus generator does.

Versions: every generator takes ``version`` (``VERSIONS``; default ``"v1"``). ``"v1"`` is the code below, which
made the committed ``data/tasks`` and must keep its output (and its random draws) unchanged; ``"v2"`` runs the
namesake in ``task_generators_v2`` (shortcut fixes and broader prompts, see that module).

Example:
    >>> import random
    >>> (pa, ta), (pb, tb) = pair_single_double_quote(Draw(random.Random(0)))
    >>> (ta, tb)
    ('")', "')")
"""
from __future__ import annotations

import random

from sparsecirc.data import task_generators_v2 as v2

VERSIONS = ("v1", "v2")  # task-generator versions; v1 made the committed data/tasks

# --- vocabulary (independent of simple_python's, overlapping with ordinary Python naming) ---------------------
_PAIRS = [tuple(p.split("/")) for p in """
item/items value/values name/names word/words number/numbers score/scores line/lines row/rows
record/records user/users file/files path/paths key/keys label/labels tag/tags price/prices point/points
node/nodes task/tasks job/jobs event/events message/messages token/tokens city/cities student/students
book/books page/pages order/orders product/products entry/entries letter/letters card/cards player/players
step/steps result/results error/errors box/boxes query/queries animal/animals fruit/fruits song/songs
sample/samples cell/cells block/blocks chunk/chunks part/parts field/fields column/columns url/urls
request/requests element/elements pair/pairs size/sizes weight/weights day/days date/dates ticket/tickets
room/rooms member/members team/teams note/notes comment/comments post/posts vote/votes coin/coins
""".split()]
_SCALARS = """total count index offset limit size length width height depth level start end step delta margin
threshold target best average mean low high left right top bottom counter amount balance speed distance
capacity budget x y z a b c i j k n m""".split()
_FLAGS = """done found ready valid running active finished changed visible enabled debug verbose success matched
stopped complete""".split()
_VERBS = """get compute load save parse find check update build make process format count filter merge split
clean read write add remove sort show validate convert collect group reset apply handle send fetch""".split()
_PREDICATES = "is_valid is_empty has_key contains is_even is_sorted can_move is_member exists is_ready".split()
_CLASSES = """Point Node User Account Config Parser Counter Tracker Player Item Order Record Student Book Car Shape
Vector Queue Stack Timer Logger Cache Graph Task Game Board Card Deck Inventory Product Course Ticket Room
Robot Sensor Window Message Session Team""".split()
_WORDS = """hello world done error ready start stop yes no loading saving finished missing found invalid unknown
default admin guest red green blue apple banana cherry alice bob north south east west small medium large
low high on off name value total count result warning average welcome goodbye success failed retry skip
empty full open closed active pending new old left right up down data input output file line row item
key label tag text message summary report""".split()
_CAPS = ["Total", "Result", "Average", "Count", "Name", "Score", "Done", "Error", "Warning", "Value",
         "Processing", "Loaded", "Saved", "Found", "Missing", "Hello", "Status", "Best", "Max", "Min"]
_READ_FILES = "input data config source words names records scores settings users notes numbers".split()
_WRITE_FILES = "output result results report summary backup out export saved totals".split()
_EXTS = ["txt", "txt", "csv", "json", "log", "dat"]
_COMMENTS = ["# load the {w} data", "# compute the {w} total", "# check {w} before use", "# note: {w} may be None",
             "# step 2: update the {w}", "# (optional) {w}", "# TODO: clean up {w}"]
# loop variables that read naturally after both ``for`` and ``while`` (task for_while)
_LOOP_VARS = """node line item task chunk token queue stack batch job entry page row block request current pending
todo frontier buffer waiting remaining""".split()

# single-token identifiers are required where the candidate IS a name (else_elif, var_swap, class_init); the
# lists below are filtered by ``tasks`` with the tokenizer, so these are only the raw pools
NAME_POOL = sorted(set(_SCALARS + [p[0] for p in _PAIRS] + ["name", "age", "color", "radius", "owner", "title",
                                                             "price", "speed", "data", "parent", "value"]))


class Draw:
    """A ``random.Random`` plus helpers that draw code fragments in the corpus's style.

    ``single_names`` (names whose `` name`` is one token) is set by ``tasks`` before the generators run.
    """

    def __init__(self, rng: random.Random, single_names: tuple[str, ...] = ()):
        self.r = rng
        self.single_names = single_names

    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def num(self) -> str:
        return str(self.r.randint(0, 20) if self.r.random() < 0.75 else self.r.randint(21, 999))

    def q(self) -> str:
        return self.pick(['"', "'"])

    def text(self, max_words: int = 3) -> str:
        """1..max_words words; always ends with a letter (``:")`` and ``,")`` are merged tokens)."""
        words = [self.pick(_WORDS) for _ in range(self.r.randint(1, max_words))]
        if self.chance(0.3):
            words[0] = self.pick(_CAPS)
        return " ".join(words)

    def s(self) -> str:
        q = self.q()
        return f"{q}{self.text()}{q}"

    def pair(self) -> tuple[str, str]:
        return self.pick(_PAIRS)

    def scalar(self) -> str:
        return self.pick(_SCALARS)

    def name(self, exclude: tuple[str, ...] = ()) -> str:
        """A single-token name (`` name`` is one token), not in ``exclude``."""
        return self.pick([n for n in self.single_names if n not in exclude])

    def cond(self, x: str) -> str:
        """A condition on ``x`` ending in a name or number (``)`` + ``:`` would merge into ``):``)."""
        y = self.num()
        return self.pick([f"{x} > {y}", f"{x} == {y}", f"{x} != {y}", f"{x} < {y}", f"{x} >= {y}",
                          f"{x} % 2 == 0", f"not {x}", f"{x} is None", f"{x} in {self.pair()[1]}",
                          f"len({x}) > {y}"])

    def line(self) -> str:
        """One self-contained statement (balanced brackets and quotes)."""
        one, many = self.pair()
        return self.pick([
            f"{self.scalar()} = {self.num()}", f"{many} = [{', '.join(self.num() for _ in range(3))}]",
            f"print({self.s()})", f"{many}.append({one})", f"{self.scalar()} = len({many})",
            f"{self.scalar()} += {self.num()}", f"{one} = {many}[0]", f"{one} = {self.pick(_VERBS)}_{one}({self.s()})",
            f"{self.pick(_FLAGS)} = {self.pick(['True', 'False'])}", f"print({one})",
            self.pick(_COMMENTS).format(w=one),
        ])

    def lines(self, lo: int = 0, hi: int = 3, indent: str = "") -> list[str]:
        return [indent + self.line() for _ in range(self.r.randint(lo, hi))]

    def block(self) -> list[str]:
        """A two- or three-line top-level block (header + indented body)."""
        one, many = self.pair()
        head = self.pick([f"for {one} in {many}:", f"if {self.cond(self.scalar())}:", f"while {self.pick(_FLAGS)}:",
                          f"for i in range({self.num()}):"])
        return [head] + self.lines(1, 2, "    ")

    def context(self, lo: int = 2, hi: int = 4, block_p: float = 0.3) -> list[str]:
        """Top-level lead-in: an optional block (followed by a blank line, as in the corpus) and some lines."""
        out = self.block() + [""] if self.chance(block_p) else []
        return out + self.lines(lo, hi)


def join_lines(lines: list[str], last: str) -> str:
    """The context lines, then ``last`` (the line the decision is on) -- how every prompt is assembled."""
    return "\n".join(lines + [last])


def _blank_after(lines: list[str]) -> list[str]:
    """``lines`` plus a blank line (the corpus puts one before a def/class), unless there are none."""
    return lines + [""] if lines else []


def is_v2(version: str) -> bool:
    """True for ``"v2"``, False for ``"v1"``; ValueError naming the valid versions otherwise."""
    if version not in VERSIONS:
        raise ValueError(f"unknown task-generator version {version!r}; valid: {', '.join(VERSIONS)}")
    return version == "v2"


# --- the 20 tasks ---------------------------------------------------------------------------------------------
def pair_single_double_quote(d: Draw, version: str = "v1"):
    """``")`` after ``("...``, ``')`` after ``('...`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_single_double_quote(d)
    one, many = d.pair()
    call = d.pick(["print(", "print(", "log(", f"{many}.append(", f"{d.pick(_VERBS)}_{one}(", f"{one}.startswith(",
                   f"{many}.count(", f"{one} = input(", "raise ValueError("])
    ctx, text = d.context(), d.text(4)
    indent = ""
    if d.chance(0.3):  # inside a block
        ctx, indent = ctx + [f"for {one} in {many}:"], "    "
    return (join_lines(ctx, f'{indent}{call}"{text}'), '")'), (join_lines(ctx, f"{indent}{call}'{text}"), "')")


def pair_bracket_counting(d: Draw, version: str = "v1"):
    """``]]`` after ``x = [[1, 2``, ``]`` after ``x = [1, 2`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_bracket_counting(d)
    # P1's official sample: `values =[[5, 3, 11, 3, 12, ...` -> `]]`; only the opening `[[` / `[` differs
    name = d.pick(["values", "grid", "matrix", "data", "rows", "table", "board", "nested", "pairs", d.pair()[1]])
    elems = ", ".join(d.num() for _ in range(d.r.randint(2, 16)))
    ctx = d.context(2, 3)
    return (join_lines(ctx, f"{name} = [[{elems}"), "]]"), (join_lines(ctx, f"{name} = [{elems}"), "]")


def _set_or_string(d: Draw, var: str):
    one, many = d.pair()
    q = d.q()
    ctx = d.context(1, 2, block_p=0.2)
    mid, last = d.lines(0, 2), var
    if d.chance(0.75):
        mid.append(f"for {one} in {many}:")
        last = "    " + var
        if d.chance(0.4):
            mid.append(f"    if {d.cond(one)}:")
            last = "        " + var
    return ((join_lines(ctx + [f"{var} = set()"] + mid, last), ".add"),
            (join_lines(ctx + [f"{var} = {q}{q}"] + mid, last), " +="))


def pair_set_or_string(d: Draw, version: str = "v1"):
    """``.add`` after a variable initialised as ``set()``,
    `` +=`` after one initialised as a string (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_set_or_string(d)
    one, many = d.pair()
    var = d.pick(["seen", "result", "out", "acc", "unique", "collected", "buf", "text", "visited", "output", "found",
                  "chars", "joined", "buffer", "names", "keys", "letters", "tags", "message", f"{one}_set",
                  f"{many}_seen", f"all_{many}", f"{one}_text"])
    return _set_or_string(d, var)


def pair_set_or_string_fixedvarname(d: Draw, version: str = "v1"):
    """set_or_string with the variable always named ``current`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_set_or_string_fixedvarname(d)
    return _set_or_string(d, "current")  # P1 §3.2.3: the variable is always named `current`


def pair_final_kwarg(d: Draw, version: str = "v1"):
    """``=None`` for a last parameter after parameters with defaults,
    ``):`` after plain ones (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_final_kwarg(d)
    names = d.r.sample(sorted({p[0] for p in _PAIRS} | set(_SCALARS[:40]) | set(_FLAGS)), 5)
    n_pos, n_kw = d.r.randint(0, 2), d.r.randint(1, 2)
    pos, kw, last = names[:n_pos], names[n_pos:n_pos + n_kw], names[n_pos + n_kw]
    defaults = [d.pick(["None"] * 5 + ["0", "True", "False"]) for _ in kw]
    sig_a = ", ".join(pos + [f"{k}={v}" for k, v in zip(kw, defaults)] + [last])
    sig_b = ", ".join(pos + kw + [last])
    one = d.pair()[0]
    ctx = _blank_after(d.context(1, 2, block_p=0.2))
    if d.chance(0.25):  # a method
        head, fn = ctx + [f"class {d.pick(_CLASSES)}:"], f"    def {d.pick(_VERBS)}_{one}(self, "
    else:
        head, fn = ctx, f"def {d.pick(_VERBS)}_{one}("
    return (join_lines(head, fn + sig_a), "=None"), (join_lines(head, fn + sig_b), "):")


def pair_class_init(d: Draw, version: str = "v1"):
    """copy the parameter named by ``self.<name> =`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_class_init(d)
    params = d.r.sample(d.single_names, d.r.randint(2, 4))
    k = d.r.randint(0, len(params) - 2)
    pa, pb = params[k], d.pick(params[k + 1:])
    head = _blank_after(d.context(1, 2, block_p=0.2)) + [f"class {d.pick(_CLASSES)}:",
                                                        f"    def __init__(self, {', '.join(params)}):"]
    head += [f"        self.{p} = {p}" for p in params[:k]]
    return (join_lines(head, f"        self.{pa} ="), f" {pa}"), (join_lines(head, f"        self.{pb} ="), f" {pb}")


def pair_with_as(d: Draw, version: str = "v1"):
    """`` as`` after ``with open(...)``, a newline after ``f = open(...)`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_with_as(d)
    q, write = d.q(), d.chance(0.5)
    fname = f"{d.pick(_WRITE_FILES if write else _READ_FILES)}.{d.pick(_EXTS)}"
    mode = d.pick(["", f", {q}{'w' if write else 'r'}{q}"])
    opener = f"open({q}{fname}{q}{mode})"
    fv = d.pick(["f", "f", "fh", "out" if write else "src", "handle"])
    ctx = d.context()
    return (join_lines(ctx, f"with {opener}"), " as"), (join_lines(ctx, f"{fv} = {opener}"), "\n")


def pair_bracket_brace(d: Draw, version: str = "v1"):
    """``":`` after ``{"key``, ``",`` after ``["word`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_bracket_brace(d)
    name = d.pick(["config", "counts", "lookup", "mapping", "settings", "info", "options", "table", "colors",
                   "labels", "names", f"{d.pair()[0]}_map", d.pair()[1]])
    word = d.pick(_WORDS)
    ctx = d.context()
    return (join_lines(ctx, f'{name} = {{"{word}'), '":'), (join_lines(ctx, f'{name} = ["{word}'), '",')


def pair_with_open(d: Draw, version: str = "v1"):
    """the mode (``r`` / ``w``) after ``open(<name>,
    "`` from the file's name (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_with_open(d)
    q, ext = d.q(), d.pick(_EXTS)
    read, write = d.pick(_READ_FILES), d.pick(_WRITE_FILES)
    fv = d.pick(["f", "f", "fh", "handle"])
    start = d.pick(["with open(", f"{fv} = open("])
    ctx = d.context()
    return ((join_lines(ctx, f"{start}{q}{read}.{ext}{q}, {q}"), "r"),
            (join_lines(ctx, f"{start}{q}{write}.{ext}{q}, {q}"), "w"))


def _maybe_in_def(d: Draw, ctx_lines: list[str]) -> tuple[list[str], str]:
    """Either top-level ``ctx_lines`` or the same lines as the body of a function; returns (lines, indent)."""
    if d.chance(0.3):
        one, many = d.pair()
        return [f"def {d.pick(_VERBS)}_{many}({many}):"] + ["    " + ln for ln in ctx_lines if ln], "    "
    return ctx_lines, ""


def pair_for_while(d: Draw, version: str = "v1"):
    """`` in`` after ``for x``, ``:`` after ``while x`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_for_while(d)
    v = d.pick(_LOOP_VARS)
    ctx, ind = _maybe_in_def(d, d.context(2, 3, block_p=0.2))
    return (join_lines(ctx, f"{ind}for {v}"), " in"), (join_lines(ctx, f"{ind}while {v}"), ":")


def pair_else_elif(d: Draw, version: str = "v1"):
    """``:`` after ``else``, the tested name after ``elif`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_else_elif(d)
    x, y = d.name(), d.pick(_SCALARS + [p[0] for p in _PAIRS])
    lines = d.context(1, 2, block_p=0.2) + [f"if {d.cond(x)}:", f"    {y} = {d.s()}"]
    if d.chance(0.4):
        lines += [f"elif {d.cond(x)}:", f"    {y} = {d.s()}"]
    return (join_lines(lines, "else"), ":"), (join_lines(lines, "elif"), f" {x}")


def pair_fstring_brace(d: Draw, version: str = "v1"):
    """`` {`` in ``print(f"Total``, ``")`` in ``print("Total`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_fstring_brace(d)
    x = d.pick(_SCALARS[:35] + [p[0] for p in _PAIRS])
    text = d.pick(_CAPS) + (" " + d.pick(_WORDS) if d.chance(0.4) else "")
    call = d.pick(["print(", "print(", "log(", "lines.append("])
    ctx = d.context(1, 2) + [d.pick([f"{x} = {d.num()}", f"{x} = len({d.pair()[1]})", f"{x} = {d.pair()[0]}"])]
    return (join_lines(ctx, f'{call}f"{text}'), " {"), (join_lines(ctx, f'{call}"{text}'), '")')


def pair_if_ternary(d: Draw, version: str = "v1"):
    """``:`` after ``if cond``, `` else`` after ``y = a if cond`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_if_ternary(d)
    x, y = d.r.sample(_SCALARS, 2)
    cond = d.pick([d.cond(x), d.pick(_FLAGS)])
    ctx = d.context()
    value = d.pick([d.s(), x, d.num()])
    stmt = d.pick([f"{y} = {value} if {cond}", f"print({d.s()} if {cond}", f"return {value} if {cond}"])
    if stmt.startswith("return"):  # a return needs a function around it
        ctx = [f"def {d.pick(_VERBS)}_{y}({x}):"] + ["    " + ln for ln in ctx if ln]
        return (join_lines(ctx, f"    if {cond}"), ":"), (join_lines(ctx, "    " + stmt), " else")
    return (join_lines(ctx, f"if {cond}"), ":"), (join_lines(ctx, stmt), " else")


def pair_var_swap(d: Draw, version: str = "v1"):
    """`` a`` after ``a, b = b,`` (the pair swaps the names) (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_var_swap(d)
    a, b = d.r.sample(d.single_names, 2)
    ctx = d.context(1, 2) + [d.pick([f"{a}, {b} = {d.num()}, {d.num()}", f"{a} = {d.num()}\n{b} = {d.num()}"])]
    if d.chance(0.3):
        ctx += [f"for _ in range({d.num()}):"]
        ind = "    "
    else:
        ctx += d.lines(0, 1)
        ind = ""
    return (join_lines(ctx, f"{ind}{a}, {b} = {b},"), f" {a}"), (join_lines(ctx, f"{ind}{b}, {a} = {a},"), f" {b}")


def pair_indent_for(d: Draw, version: str = "v1"):
    """indentation after a top-level vs a nested ``for`` header (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_indent_for(d)
    one, many = d.pair()
    head = d.pick([f"for {one} in {many}:", f"for i in range(len({many})):", f"for i, {one} in enumerate({many}):",
                   f"for {one} in {d.pick(_VERBS)}_{many}():"])
    ctx = d.lines(1, 2) + d.block()
    return (join_lines(ctx + [""], head), "\n    "), (join_lines(ctx, "    " + head), "\n        ")


def pair_lambda_func(d: Draw, version: str = "v1"):
    """``:`` after ``f = lambda x``, ``):`` after ``def f(x`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_lambda_func(d)
    fn = d.pick(["square", "double", "half", "inc", "negate", "area", "key_fn", "score", "norm", "cube", "add",
                 "scale", "clip", "combine", "first", "total", "ratio", "mix"])
    params = ", ".join(d.r.sample(["x", "n", "v", "a", "b", "item", "value", "row", "pair", "k"], d.r.randint(1, 2)))
    ctx = d.context()
    return (join_lines(ctx, f"{fn} = lambda {params}"), ":"), (join_lines(ctx, f"def {fn}({params}"), "):")


def pair_if_equals(d: Draw, version: str = "v1"):
    """`` ==`` after ``if x``, `` =`` after ``x`` at a line start (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_if_equals(d)
    x = d.pick(_SCALARS)
    ctx = d.context(1, 2) + [d.pick([f"{x} = {d.num()}", f"{x} = len({d.pair()[1]})", f"{x} = get_{x}()"])]
    ctx += d.lines(0, 2)
    ind = ""
    if d.chance(0.3):
        one, many = d.pair()
        ctx, ind = ctx + [f"for {one} in {many}:"], "    "
    return (join_lines(ctx, f"{ind}if {x}"), " =="), (join_lines(ctx, f"{ind}{x}"), " =")


def pair_enumerate_range(d: Draw, version: str = "v1"):
    """`` enumerate`` after ``for i, x in``, `` range`` after ``for i in`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_enumerate_range(d)
    one, many = d.pair()
    i = d.pick(["i", "i", "j", "k", "idx", "n", "pos"])
    lead = d.context(2, 3, block_p=0.2) + ([f"{many} = load_{many}()"] if d.chance(0.3) else [])
    ctx, ind = _maybe_in_def(d, lead)
    return (join_lines(ctx, f"{ind}for {i}, {one} in"), " enumerate"), (join_lines(ctx, f"{ind}for {i} in"), " range")


def pair_var_if(d: Draw, version: str = "v1"):
    """``:`` after ``if flag == True``, a newline after ``flag = True`` (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_var_if(d)
    flag, val = d.pick(_FLAGS), d.pick(["True", "False"])
    ctx = d.context()
    return (join_lines(ctx, f"if {flag} == {val}"), ":"), (join_lines(ctx, f"{flag} = {val}"), "\n")


def pair_while_return_true(d: Draw, version: str = "v1"):
    """``:`` after ``while True``,
    ``\\n\\n`` after ``return True`` at a function's end (``version``: see the module docstring)."""
    if is_v2(version):
        return v2.pair_while_return_true(d)
    one, many = d.pair()
    head = [f"def {d.pick(_PREDICATES)}({d.pick([many, one, f'{many}, target'])}):"]
    body = d.lines(0, 2, "    ")
    ctx = _blank_after(d.lines(1, 2))
    # `return True` ends the function: the corpus then has a blank line, i.e. the single token "\n\n"
    a, b = join_lines(ctx + head + body, "    while True"), join_lines(ctx + head + body, "    return True")
    return (a, ":"), (b, "\n\n")
