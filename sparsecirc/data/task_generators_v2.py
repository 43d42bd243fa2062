"""Version 2 of the 20 P1 task generators (``task_generators.pair_<task>(d, version="v2")`` dispatches here).

Same contract as version 1: ``pair_<task>(d)`` takes a ``task_generators.Draw`` and returns
``((prompt_a, target_a), (prompt_b, target_b))`` with the candidates of ``tasks.TASKS[<task>]``; ``tasks`` checks
the tokens and redraws. What changed (measured in ``tests/test_task_generators_v2.py`` and
``task_audit``, v1 numbers on the committed data):

- shortcut fixes: ``if_equals`` tests and assigns attributes and subscripts (``if self.count`` / ``self.count``),
  so both prompts end in the same token (v1: the bare name is `` x`` after ``if`` and ``x`` at a line start,
  last-token reader 1.000); ``lambda_func`` always has two or three parameters (v1: ``(x`` vs `` x`` with one
  parameter, 0.762); ``var_swap`` uses both names with a leading space before the swap (`` a`` must be produced,
  v1 had it only as the line-initial ``a``) and draws swaps from real idioms (ordering two bounds, gcd,
  Fibonacci); ``class_init`` assigns earlier attributes in a shuffled order and asks for either of two
  unassigned parameters (v1: variant A was always the next parameter in signature order);
- broader prompts: the surrounding code comes from ``task_fragments_v2.CodeDraw`` (literals of several element
  types, comprehensions, keyword arguments, literals over several lines, compound blocks, imports, comments),
  decision lines sit at top level, in functions, loops and methods, and each task varies its own idiom
  (quotes opened after ``(`` or after an earlier argument; lists of numbers, names, constants and strings,
  opened as ``= [[``, ``=[[``, ``: list = [[``, ``+= [[`` or over several lines; dict keys opened as ``{"`` or
  on the next line; ``open(...)`` with directories, ``os.path.join`` and ``mode=``; ...);
- ``bracket_counting`` opens its list only where the closing bracket is the tokenizer's next token: until
  2026-12 it also opened lists inside calls (``np.array([[``) and ``for`` headers, where the tokenizer writes
  ``]`` then ``])`` after ``[[1, 2`` and ``]:`` after ``for x in [1, 2``: the target was not the next token in
  the 50 test prompts of its 25 pairs opened in a call (of 256; ``task_audit.line_end_mismatches``) and in the
  12 flat prompts opened in a ``for`` header.

Each pair still differs only where P1 Table 1 puts the contrast (digest §6): the opening quote, ``[[`` vs ``[``,
the variable's initialisation, the defaults, ``with`` vs an assignment, ``{`` vs ``[``, the file's name,
``for`` vs ``while``, ``else`` vs ``elif``, the ``f`` prefix, the ternary's left part, the swapped names,
the header's indentation, ``lambda`` vs ``def``, ``if`` vs nothing, the second loop variable, ``if ... ==`` vs
``=``, ``while`` vs ``return``.

Example:
    >>> import random
    >>> from sparsecirc.data.task_generators import Draw
    >>> (pa, ta), (pb, tb) = pair_if_equals(Draw(random.Random(0), ("x", "y")))
    >>> (ta, tb)
    (' ==', ' =')
"""
from __future__ import annotations

from sparsecirc.data.task_fragments_v2 import (
    ATTRS,
    CLASS_NAMES,
    FLAGS,
    OBJECTS,
    SCALARS,
    TEXT_CAPS,
    TEXT_WORDS,
    VERBS,
    CodeDraw,
)

IND = "    "
# variables bound to a set or a string (set_or_string); none of them occurs in CodeDraw's vocabulary
TYPED_VARS = """seen out acc uniq collected buf text visited output found chars joined buffer letters tags
message pieces prefix suffix used parts blob marks banner keyset taken""".split()
_LOOP_VARS = """item line node task chunk token batch job entry page row block request current pending frontier
buffer queue stack waiting remaining todo cursor frame packet""".split()
_READ = """input data config source words names records scores settings users notes numbers params template
vocab corpus readings inventory questions prices catalog""".split()
_WRITE = """output result results report summary backup export saved totals stats answers predictions
cleaned merged filtered archive dump log_out""".split()
_EXTS = "txt txt csv json log dat tsv md ini".split()
_DIRS = ["", "", "", "data/", "out/", "logs/", "tmp/", "../", "reports/"]
_FNS = """square double half inc negate area key_fn scale clip combine pick ratio mix blend weigh merge_two
distance dot lerp clamp""".split()
_PARAMS = "x y n v a b k item value row pair acc left right lo hi base".split()
_DEFAULTS = ["None", "None", "None", "0", "1", "True", "False", '""', "''", "-1"]


def _call_opener(c: CodeDraw) -> str:
    """Text before a string argument's opening quote: ``name(`` mostly, else ``name(arg, `` (P1's ``("``/``('``
    is the common case; the second form opens the string with `` "`` / `` '``)."""
    one, many = c.noun()
    fn = c.pick(["print", "log.info", "logger.warning", "self.emit", f"{many}.append", f"{c.pick(VERBS)}_{one}",
                 f"{one}.startswith", "sys.stdout.write", "warnings.warn", "parser.add_argument", "re.compile"])
    if c.chance(0.7):
        return f"{fn}("
    return f"{fn}({c.pick([c.var(), c.int_(), c.attr()])}, "


def pair_single_double_quote(d):
    """Close a string with the quote that opened it; only the opening quote differs."""
    c = CodeDraw(d)
    text, ind, in_def = c.words(1, 5), "", False
    ctx = c.context(1, 3)
    if c.chance(0.35):
        head = c.pick([f"def {c.pick(VERBS)}_{c.noun()[0]}({c.var()}):", f"for {c.noun()[0]} in {c.var()}:",
                       f"if {c.cond()}:", "try:", f"with {c.attr()}:"])
        ind, in_def = IND, head.startswith("def ")
        ctx += [head] + c.context(0, 1, IND, block_p=0)
    lead = c.pick(["", "", "", f"{c.var()} = ", f"assert {c.cond()}, "] + (["return "] if in_def else []))
    if c.chance(0.15):  # arguments over several lines, the string on the last one
        ctx += [f"{ind}{lead}{c.pick(VERBS)}_{c.noun()[0]}(", f"{ind}{IND}{c.atom()},"]
        last = ind + IND
    elif c.chance(0.1):
        last = f"{ind}raise {c.pick(['ValueError', 'KeyError', 'RuntimeError'])}("
    else:
        last = f"{ind}{lead}{_call_opener(c)}"
    return (("\n".join(ctx + [f'{last}"{text}']), '")'), ("\n".join(ctx + [f"{last}'{text}"]), "')"))


def bracket_list_draws(c: CodeDraw, n: int | None = None, *, safe_ends: str = "last") -> dict:
    """The draws of a ``bracket_counting`` prompt before its layout, in the task's order: the list's elements, its
    name and opener, the context lines and the indent. ``n``: the element count (None: drawn from 2-14 at the
    task's point in the order). A list cut after an element ending in ``"``, ``'`` or ``)`` would merge with the
    closing bracket into one token, so ``safe_ends="last"`` (the task) replaces the last element by a name or
    number, and ``"all"`` (the dilution sweep, which cuts a list anywhere) draws such a replacement for every
    element (``ends``). Returns ``{"one", "many", "elements", "ends", "name", "opener", "ctx", "ind"}``."""
    one, many = c.noun()
    kind = c.pick(["int", "int", "num", "name", "const", "mixed", "str"])
    n = c.randint(2, 14) if n is None else n
    make = {"int": c.int_, "num": c.number, "name": c.var, "const": lambda: c.pick(["True", "False", "None"]),
            "mixed": lambda: c.pick([c.int_(), c.var(), "None", c.strlit()]), "str": c.strlit}[kind]
    elems = [make() for _ in range(n)]
    safe = lambda e: e if e[-1] not in "\"')" else c.pick([c.int_(), c.var(), "None", "True"])  # noqa: E731
    ends = [safe(e) for e in elems] if safe_ends == "all" else None
    if safe_ends == "last":
        elems[-1] = safe(elems[-1])
    name = c.pick([many, "grid", "matrix", "rows", "table", "pairs", "layers", "board", c.var()])
    # every opener leaves the list the only open bracket of a simple statement, so that the closing bracket is the
    # next token: after `f([[1, 2` the tokenizer writes `]` then `])`, and after `for x in [1, 2` it writes `]:`
    opener = c.pick([f"{name} = ", f"{name} = ", f"{name} =", f"{name}=", f"{c.attr()} = ", "return ",
                     f"{name}: {c.pick(['list', 'List[list]', 'Sequence', 'list[list]'])} = ",
                     f"{name} = {c.pick(VERBS)}_{one} or ", f"{name}[{c.strlit()}] = ", f"{many} += "])
    ctx, ind = c.context(1, 3), ""
    if opener == "return " or c.chance(0.2):
        ctx += [f"def {c.pick(VERBS)}_{many}({c.var()}):"]
        ind = IND
        ctx += c.context(0, 1, IND, block_p=0)
    return {"one": one, "many": many, "elements": elems, "ends": ends, "name": name, "opener": opener, "ctx": ctx,
            "ind": ind}


def pair_bracket_counting(d):
    """Close a list at its depth (``]]`` vs ``]``); only the opening ``[[`` vs ``[`` differs."""
    c = CodeDraw(d)
    b = bracket_list_draws(c)
    elems, opener, ctx, ind, n = b["elements"], b["opener"], b["ctx"], b["ind"], len(b["elements"])
    if c.chance(0.15):  # elements on the following lines
        k = c.randint(1, n - 1)
        tail = [f"{ind}{IND}{', '.join(elems[:k])},", f"{ind}{IND}{', '.join(elems[k:])}"]
        a, b = [f"{ind}{opener}[["] + tail, [f"{ind}{opener}["] + tail
    else:
        a, b = [f"{ind}{opener}[[{', '.join(elems)}"], [f"{ind}{opener}[{', '.join(elems)}"]
    return ("\n".join(ctx + a), "]]"), ("\n".join(ctx + b), "]")


def _set_or_string(c: CodeDraw, var: str):
    """``var = set()`` vs ``var = ""``/``''``, then code that does not use the type, then the bare ``var``."""
    one, many = c.noun()
    q = c.pick(['"', "'"])
    ctx, ind = c.context_avoiding([var], 0, 2), ""
    if c.chance(0.35):
        ctx = (ctx + [""] if ctx and ctx[-1] else ctx) + [f"def {c.pick(VERBS)}_{many}({many}):"]
        ind = IND
        if c.chance(0.4):
            ctx.append(c.docstring())
    init = ind
    mid = c.context_avoiding([var], 0, 2, indent=ind, block_p=0.15, multi_p=0.05)
    if c.chance(0.35):  # another variable, of the same type in both prompts
        other = c.pick([v for v in ("names", "result", "cache", "pending", "lookup") if v != var])
        decoy = f"{ind}{other} = {c.pick(['set()', 'dict()', '[]', q + q, '0'])}"
        mid = [decoy] + mid if c.chance(0.5) else mid + [decoy]
    loop = c.pick([f"for {one} in {many}:", f"for {one} in {many}:", f"while {many}:",
                   f"for i, {one} in enumerate({many}):", f"with open({c.strlit()}) as fh:", None])
    if loop is not None:
        mid.append(ind + loop)
        ind += IND
        if loop.startswith("while"):
            mid.append(f"{ind}{one} = {many}.pop()")
        if c.chance(0.5):
            mid.append(ind + c.pick([f"if {c.cond(one)}:", f"if {one} not in {var}:", f"if not {one}:",
                                     f"if len({var}) < {c.int_()}:"]))
            ind += IND
        if c.chance(0.3):
            mid.append(ind + c.stmt(code_only=True))
    a = ctx + [f"{init}{var} = set()"] + mid + [ind + var]
    b = ctx + [f"{init}{var} = {q}{q}"] + mid + [ind + var]
    return ("\n".join(a), ".add"), ("\n".join(b), " +=")


def pair_set_or_string(d):
    """``.add`` after a variable bound to ``set()``, `` +=`` after one bound to a string; only the init differs."""
    c = CodeDraw(d)
    one, many = c.noun()
    var = c.pick(TYPED_VARS + [f"{one}_set", f"seen_{many}", f"all_{many}", f"{one}_text", f"{one}_buf"])
    return _set_or_string(c, var)


def pair_set_or_string_fixedvarname(d):
    """``set_or_string`` with the variable always named ``current`` (P1 §3.2.3)."""
    return _set_or_string(CodeDraw(d), "current")


def _head(c: CodeDraw) -> tuple[list[str], str]:
    """Lines before a top-level or method ``def``: a context, maybe a class with a decorator; (lines, indent)."""
    ctx = c.context(0, 2)
    ctx = ctx + [""] if ctx and ctx[-1] else ctx
    if c.chance(0.3):
        ctx += [f"class {c.pick(CLASS_NAMES)}:"] + ([c.docstring()] if c.chance(0.4) else [])
        if c.chance(0.3):
            ctx += [f"    {c.pick(ATTRS)} = {c.atom()}", ""]
        if c.chance(0.3):
            ctx += [c.pick(["    @staticmethod", "    @classmethod", "    @property"])]
        return ctx, IND
    if c.chance(0.2):
        ctx += [c.pick(["@cache", "@staticmethod", "@functools.lru_cache(maxsize=None)", "@app.route('/')"])]
    return ctx, ""


def pair_final_kwarg(d):
    """``=None`` for a last parameter after parameters with defaults, ``):`` after plain ones."""
    c = CodeDraw(d)
    names = c.r.sample(sorted(set(_PARAMS + SCALARS + FLAGS + ATTRS)), 6)
    n_pos, n_kw = c.randint(0, 2), c.randint(1, 3)
    pos, kw, last = names[:n_pos], names[n_pos:n_pos + n_kw], names[n_pos + n_kw]
    defaults = [c.pick(_DEFAULTS) for _ in kw]
    head, ind = _head(c)
    fn = f"{ind}{c.pick(['def', 'def', 'def', 'async def'])} {c.pick(VERBS)}_{c.noun()[0]}("
    pos = (["self"] if ind and c.chance(0.8) else []) + pos
    sig_a = ", ".join(pos + [f"{k}={v}" for k, v in zip(kw, defaults)] + [last])
    sig_b = ", ".join(pos + kw + [last])
    return ("\n".join(head + [fn + sig_a]), "=None"), ("\n".join(head + [fn + sig_b]), "):")


def pair_class_init(d):
    """Copy the parameter named by ``self.<name> =``; earlier attributes come in a shuffled order."""
    c = CodeDraw(d)
    params = c.r.sample(c.single_names, c.randint(3, 5))
    done = c.r.sample(params, c.randint(0, len(params) - 2))
    pa, pb = c.r.sample([p for p in params if p not in done], 2)
    n_default = c.randint(0, 2) if c.chance(0.3) else 0  # defaults on the last parameters only
    sig = ", ".join(p if i < len(params) - n_default else f"{p}={c.pick(['None', '0', 'True', '()'])}"
                    for i, p in enumerate(params))
    ctx = c.context_avoiding(params, 0, 2)
    base = c.pick(["", "", "(Base)", "(object)"])
    head = (ctx + [""] if ctx and ctx[-1] else ctx) + [f"class {c.pick(CLASS_NAMES)}{base}:"]
    if c.chance(0.3):
        head.append(c.docstring())
    if c.chance(0.3):
        head += [f"    {c.pick(['kind', 'version', 'slots'])} = {c.atom()}", ""]
    head.append(f"    def __init__(self, {sig}):")
    body = ["        super().__init__()"] if base == "(Base)" and c.chance(0.7) else []
    body += [f"        self.{p} = {p}" for p in done]
    if c.chance(0.4):
        body.insert(c.randint(0, len(body)), f"        self.{c.pick(['_cache', 'children', 'history'])} = "
                                              f"{c.pick(['[]', '{}', 'set()', 'None', '0'])}")
    under = c.pick(["", "", "", "_"])
    lines = head + body
    return (("\n".join(lines + [f"        self.{under}{pa} ="]), f" {pa}"),
            ("\n".join(lines + [f"        self.{under}{pb} ="]), f" {pb}"))


def pair_with_as(d):
    """`` as`` after ``with open(...)``, a newline after ``f = open(...)`` (top level: the newline is ``\\n``)."""
    c = CodeDraw(d)
    q, write = c.pick(['"', "'"]), c.chance(0.5)
    fname = f"{q}{c.pick(_DIRS)}{c.pick(_WRITE if write else _READ)}.{c.pick(_EXTS)}{q}"
    path = c.pick([fname, fname, f"os.path.join({c.var()}, {fname})", c.pick(["path", "filename", "src_path"])])
    mode = c.pick(["", "", f", {q}{'w' if write else 'r'}{q}", f", mode={q}{'a' if write else 'rb'}{q}",
                   f", encoding={q}utf-8{q}", f", {q}{'w' if write else 'r'}{q}, newline={q}{q}"])
    opener = c.pick(["open", "open", "open", "io.open", "gzip.open", "codecs.open"]) + f"({path}{mode})"
    fv = c.pick(["f", "fh", "handle", "out" if write else "src", "stream", "fp"])
    ctx = c.context(1, 3)
    return ("\n".join(ctx + [f"with {opener}"]), " as"), ("\n".join(ctx + [f"{fv} = {opener}"]), "\n")


def pair_bracket_brace(d):
    """``":`` after a dict's first key, ``",`` after a list's first string; only ``{`` vs ``[`` differs."""
    c = CodeDraw(d)
    w1, w2 = c.pick(TEXT_WORDS), c.pick(TEXT_WORDS)
    word = c.pick([c.pick(ATTRS), c.var(), w1, f"{w1} {w2}", f"{w1}_{w2}", f"{w1}-{w2}", c.pick(TEXT_CAPS)])
    name = c.pick([c.var(), "config", "defaults", "mapping", "lookup", "options", "labels", "headers"])
    pre = c.pick([f"{name} = ", f"{name} = ", f"{name}=", "return ", f"{c.pick(VERBS)}_{c.noun()[0]}(",
                  f"{c.attr()} = ", f"{name} = {c.pick(['dict', 'list', 'tuple', 'sorted'])}("])
    ctx, ind = c.context(1, 3), ""
    if pre == "return " or c.chance(0.2):
        ctx, ind = ctx + [f"def {c.pick(VERBS)}_{c.noun()[1]}():"], IND
    sep = f"\n{ind}{IND}" if c.chance(0.25) else ""  # the first key on the next line
    return ("\n".join(ctx + [f'{ind}{pre}{{{sep}"{word}']), '":'), ("\n".join(ctx + [f'{ind}{pre}[{sep}"{word}']), '",')


def pair_with_open(d):
    """The mode after ``open(<name>, "``: ``r`` for a file read from, ``w`` for one written; only the name differs."""
    c = CodeDraw(d)
    q, ext, folder = c.pick(['"', "'"]), c.pick(_EXTS), c.pick(_DIRS)
    names = c.pick(_READ), c.pick(_WRITE)
    path = c.pick(["{q}{f}{n}.{e}{q}"] * 3 + ["os.path.join({v}, {q}{n}.{e}{q})"])
    mode = c.pick([", {q}", ", {q}", ", mode={q}"])
    start = c.pick(["with open(", "with open(", f"{c.pick(['f', 'fh', 'handle', 'fp'])} = open("])
    ctx, ind = c.context(1, 3), ""
    if c.chance(0.3):
        ctx, ind = ctx + [f"def {c.pick(VERBS)}_{c.noun()[1]}({c.var()}):"], IND
    v = c.var()
    a, b = ((ind + start + path.format(q=q, f=folder, n=n, e=ext, v=v) + mode.format(q=q)) for n in names)
    return ("\n".join(ctx + [a]), "r"), ("\n".join(ctx + [b]), "w")


def _maybe_in_def(c: CodeDraw, lines: list[str]) -> tuple[list[str], str]:
    """``lines`` at top level, or as the body of a function or method; returns (lines, indent of the body)."""
    if c.chance(0.35):
        one, many = c.noun()
        head = [f"def {c.pick(VERBS)}_{many}({many}):"] + ([c.docstring()] if c.chance(0.3) else [])
        return head + [IND + x if x else x for x in lines], IND
    return lines, ""


def pair_for_while(d):
    """`` in`` after ``for x``, ``:`` after ``while x``; only the keyword differs."""
    c = CodeDraw(d)
    v = c.pick(_LOOP_VARS)
    ctx, ind = _maybe_in_def(c, c.context_avoiding([v], 1, 3))
    if ctx and not ctx[-1]:
        ctx = ctx[:-1]
    return ("\n".join(ctx + [f"{ind}for {v}"]), " in"), ("\n".join(ctx + [f"{ind}while {v}"]), ":")


def pair_else_elif(d):
    """``:`` after ``else``, the tested variable after ``elif`` (the last token is P1's contrast)."""
    c = CodeDraw(d)
    x = c.pick(c.single_names)
    ctx = c.context_avoiding([x], 0, 2)
    ctx = ctx[:-1] if ctx and not ctx[-1] else ctx
    ctx, ind = _maybe_in_def(c, ctx)
    if c.chance(0.25):
        one, many = c.noun()
        ctx.append(f"{ind}for {one} in {many}:")
        ind += IND
    lines = ctx + [f"{ind}if {c.cond(x)}:"] + [ind + IND + c.stmt(code_only=True) for _ in range(c.randint(1, 2))]
    if c.chance(0.4):
        lines += [f"{ind}elif {c.cond(x)}:", ind + IND + c.stmt(code_only=True)]
    return ("\n".join(lines + [ind + "else"]), ":"), ("\n".join(lines + [ind + "elif"]), f" {x}")


def pair_fstring_brace(d):
    """`` {`` inside an f-string, ``")`` closing a plain one; only the ``f`` prefix differs."""
    c = CodeDraw(d)
    x = c.var()
    text = c.pick(TEXT_CAPS) + c.pick(["", "", f" {c.pick(TEXT_WORDS)}", f" {c.pick(TEXT_WORDS)} {c.pick(TEXT_WORDS)}"])
    call = c.pick(["print(", "print(", "log.info(", "logger.debug(", "self.write(", "lines.append(",
                   f"raise {c.pick(['ValueError', 'RuntimeError'])}(", "sys.stderr.write(", f"print({c.var()}, "])
    ctx = c.context(1, 2) + [c.pick([f"{x} = {c.expr()}", f"{x} = len({c.noun()[1]})", f"{x} = {c.atom()}"])]
    ctx, ind = _maybe_in_def(c, ctx)
    return ("\n".join(ctx + [f'{ind}{call}f"{text}']), " {"), ("\n".join(ctx + [f'{ind}{call}"{text}']), '")')


def pair_if_ternary(d):
    """``:`` after ``if <cond>``, `` else`` after ``<value> if <cond>``; the left part differs."""
    c = CodeDraw(d)
    x, y = c.r.sample(SCALARS, 2)
    cond = c.pick([c.cond(x), c.pick(FLAGS), f"{c.cond(x)} and {c.pick(FLAGS)}", f"{c.attr()} is not None"])
    value = c.pick([x, x, str(c.randint(0, 9)), "None", "-1", "[]", '""', "''"])
    ctx, ind = _maybe_in_def(c, c.context(1, 3))
    lead = c.pick([f"{y} = ", f"{y} = ", "print(", f"{c.pick(['out', 'rows', 'seen'])}.append(",
                   f"self.{c.pick(['n', 'x', 'key'])} = "] + (["return ", "yield "] if ind else []))
    return ("\n".join(ctx + [f"{ind}if {cond}"]), ":"), ("\n".join(ctx + [f"{ind}{lead}{value} if {cond}"]), " else")


def pair_var_swap(d):
    """Complete ``a, b = b,`` with `` a``: both names occur before with a leading space; the pair swaps them."""
    c = CodeDraw(d)
    a, b = c.r.sample(c.single_names, 2)
    x, y = (a, b) if c.chance(0.5) else (b, a)  # the order the names are introduced in: not the answer
    ctx = c.context_avoiding([a, b], 0, 2)
    ctx = ctx[:-1] if ctx and not ctx[-1] else ctx
    ctx += [c.pick([f"{x}, {y} = {c.int_()}, {c.int_()}", f"{x} = {c.number()}\n{y} = {c.number()}",
                    f"{x}, {y} = {c.pick(['sys.argv[1:3]', 'pair', 'bounds', 'divmod(n, 7)'])}"])]
    use = c.pick([f"print({c.strlit()}, {x}, {y})", f"total = {x} + {y}", f"assert {x} != {y}",
                  f"gap = {x} - {y}", f"pair = ({c.int_()}, {x}, {y})", f"{c.pick(SCALARS)} = max(0, {x}, {y})"])
    ind, form = "", c.pick(["plain", "order", "loop", "def"])
    if form == "order":
        ctx += [use, f"if {x} > {y}:"]
        ind = IND
    elif form == "loop":
        ctx += [f"while {c.pick([x, y])} > 0 and {c.pick([x, y])} != {c.int_()}:", IND + use]
        ind = IND
    elif form == "def":
        ctx = [f"def {c.pick(['swap', 'step', 'advance', 'order', 'fib_step'])}({x}, {y}):",
               f"{IND}{use}"] + ([IND + c.stmt()] if c.chance(0.4) else [])
        ind = IND
    else:
        ctx += [use] + c.context_avoiding([a, b], 0, 1, block_p=0)
    return ("\n".join(ctx + [f"{ind}{a}, {b} = {b},"]), f" {a}"), ("\n".join(ctx + [f"{ind}{b}, {a} = {a},"]), f" {b}")


def pair_indent_for(d):
    """``\\n    `` after a top-level ``for`` header, ``\\n        `` after one inside a block."""
    c = CodeDraw(d)
    one, many = c.noun()
    head = c.pick([f"for {one} in {many}:", f"for i in range(len({many})):", f"for i, {one} in enumerate({many}):",
                   f"for {one} in {c.pick(VERBS)}_{many}():", f"for key, {one} in {many}.items():",
                   f"for {one}, other in zip({many}, {c.var()}):", f"for {one} in sorted({many}, reverse=True):"])
    block = c.pick([f"def {c.pick(VERBS)}_{many}({many}):", f"if {c.cond()}:", f"while {c.cond()}:",
                    f"with open({c.strlit()}) as fh:", f"for {c.pick(['row', 'part', 'k'])} in {c.var()}:"])
    ctx = c.context(0, 2, block_p=0.15)
    ctx = ctx[:-1] if ctx and not ctx[-1] else ctx
    ctx += [block] + [IND + c.stmt(code_only=True) for _ in range(c.randint(1, 2))]
    return ("\n".join(ctx + ["", head]), "\n    "), ("\n".join(ctx + [IND + head]), "\n        ")


def pair_lambda_func(d):
    """``:`` after ``f = lambda a, b``, ``):`` after ``def f(a, b``; always two or three parameters."""
    c = CodeDraw(d)
    fn = c.pick(_FNS)
    params = c.r.sample(_PARAMS, c.randint(2, 3))
    if c.chance(0.25):
        params[-1] += f"={c.pick(['0', '1', 'None', '2.0'])}"
    ctx, ind = c.context(1, 3), ""
    if c.chance(0.3):
        ctx, ind = ctx + [f"def {c.pick(VERBS)}_{c.noun()[1]}({c.var()}):"], IND
    ps = ", ".join(params)
    return ("\n".join(ctx + [f"{ind}{fn} = lambda {ps}"]), ":"), ("\n".join(ctx + [f"{ind}def {fn}({ps}"]), "):")


def _target(c: CodeDraw) -> str:
    """An attribute or subscript: the same last token whether or not ``if`` precedes it."""
    one, many = c.noun()
    return c.pick([c.attr(), c.attr(), f"{one}.{c.pick(ATTRS)}", f"{many}[{c.pick(['i', 'key', 'idx', '0', '-1'])}]",
                   f"counts[{one}]", f"self.{c.pick(ATTRS)}[{c.pick(['i', 'key', '0'])}]",
                   f"{c.pick(OBJECTS)}.{c.pick(ATTRS)}.{c.pick(ATTRS)}"])


def pair_if_equals(d):
    """`` ==`` after ``if <target>``, `` =`` after ``<target>`` at a statement's start; targets are attributes or
    subscripts, so both prompts end in the same token."""
    c = CodeDraw(d)
    t = _target(c)
    ctx, ind = _maybe_in_def(c, c.context(1, 3))
    if c.chance(0.3):
        one, many = c.noun()
        ctx.append(f"{ind}for {one} in {many}:")
        ind += IND
    return ("\n".join(ctx + [f"{ind}if {t}"]), " =="), ("\n".join(ctx + [f"{ind}{t}"]), " =")


def pair_enumerate_range(d):
    """`` enumerate`` after ``for i, x in``, `` range`` after ``for i in``; the second loop variable differs."""
    c = CodeDraw(d)
    one = c.pick([c.noun()[0], c.noun()[0], "(a, b)", "(key, value)", "_"])
    i = c.pick(["i", "i", "j", "k", "idx", "n", "pos", "lineno", "row_no"])
    ctx, ind = _maybe_in_def(c, c.context(1, 3))
    if c.chance(0.2):
        ctx.append(f"{ind}if {c.cond()}:")
        ind += IND
    a, b = "\n".join(ctx + [f"{ind}for {i}, {one} in"]), "\n".join(ctx + [f"{ind}for {i} in"])
    return (a, " enumerate"), (b, " range")


def pair_var_if(d):
    """``:`` after ``if flag == True``, a newline after ``flag = True`` (top level)."""
    c = CodeDraw(d)
    flag = c.pick(FLAGS + [f"{c.pick(['config', 'state', 'opts', 'args'])}.{c.pick(FLAGS)}", f"is_{c.noun()[0]}",
                           f"has_{c.noun()[1]}"])
    val = c.pick(["True", "False"])
    ctx = c.context(1, 3)
    return ("\n".join(ctx + [f"if {flag} == {val}"]), ":"), ("\n".join(ctx + [f"{flag} = {val}"]), "\n")


def pair_while_return_true(d):
    """``:`` after ``while True``, ``\\n\\n`` after ``return True`` as the last line of a top-level function."""
    c = CodeDraw(d)
    one, many = c.noun()
    fn = c.pick([f"is_{c.pick(['valid', 'ready', 'sorted', 'empty', 'done'])}", f"has_{many}", f"can_{c.pick(VERBS)}",
                 f"{c.pick(VERBS)}_{many}", "check", "run", "main"])
    args = c.pick([many, one, f"{many}, limit={c.int_()}", f"{one}, {c.pick(SCALARS)}", ""])
    ctx = c.context(0, 2)
    ctx = (ctx + [""] if ctx and ctx[-1] else ctx) + [f"def {fn}({args}):"]
    if c.chance(0.3):
        ctx.append(c.docstring())
    body = c.context(0, 2, IND, block_p=0.3, multi_p=0.05)
    if c.chance(0.4):
        body += [f"{IND}if {c.cond()}:", f"{IND}{IND}return False"]
    return ("\n".join(ctx + body + [f"{IND}while True"]), ":"), ("\n".join(ctx + body + [f"{IND}return True"]), "\n\n")
