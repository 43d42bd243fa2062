"""Expressions of the version-2 simple-Python generator: names, numbers, strings, literals, calls, conditions.

:class:`ExprMaker` holds one program's ``random.Random`` and its surface style, drawn once per program: the
preferred quote, how ``=`` and ``,`` are spaced (``x = [[``, ``x =[[``, ``x=[[``, ``[1,2]``), whether brackets
are padded (``[ [1, 2], [3] ]``) and how often a literal gets a trailing comma or spans several lines. Element
types vary (ints, floats, negative numbers, strings with either quote and containing the other one, names,
``True`` / ``False`` / ``None``, tuples, dicts, calls), so that an idiom is not tied to one template.
:mod:`sparsecirc.data.simple_python_v2` builds statements and programs on top of it.

Every method returns source text; multi-line results indent continuation lines relative to column 0, so a
caller may prefix every line with more indentation and the text stays valid Python.

Example:
    >>> import random
    >>> e = ExprMaker(random.Random(0))
    >>> isinstance(e.list_literal(), str)
    True
"""
from __future__ import annotations

import keyword
import random

from sparsecirc.data import simple_python_v2_vocab as V

CONSTS = ("True", "False", "None")
EMPTY_STRINGS = ('""', "''")
STOCK_PAIRS = [("a", "b"), ("x", "y"), ("i", "j"), ("lo", "hi")]  # swap names of every version (``swap_names``)
SHORT_NAMES = sorted({n for n in V.SCALARS + [w for p in V.NOUNS for w in p] if not keyword.iskeyword(n)})
# relative frequency of the small compound idioms (``idiom_compound``), tuned so that every task idiom is at least
# as dense per token as in version 1's corpus (see simple_python_v2's docstring)
COMPOUND_WEIGHTS = {"if_eq": 3, "while_name": 1.2, "while_true": 1, "for": 2.6, "flag": 1, "accumulate": 1.5,
                    "def": 2, "class": 0.8, "with_open": 1.3}
P_IDIOM_STMT = 0.75  # share of filler statements that hold an idiom (raises idiom density per token to v1's)
ELEM_KINDS = ("int", "int", "int", "float", "neg", "str", "str", "str", "name", "const", "mixed", "call", "tuple",
              "dict", "list")


class ExprMaker:
    """Draws expressions from ``rng`` in one program's style (see the module docstring)."""

    def __init__(self, rng: random.Random, version: int = 3):
        self.r = rng
        self.version = version  # generator version (3, 4 or 5; see ``open_path``, ``nested``, ``swap_names``)
        self.p_double = rng.choice([0.1, 0.5, 0.9, 0.6, 0.3])
        self.p_eq_odd = rng.choice([0.0, 0.0, 0.03, 0.1, 0.3])  # `x=[[`, `x =[[`, `x= [[`
        self.p_tight_comma = rng.choice([0.0, 0.0, 0.0, 0.05, 0.6])
        self.p_pad = rng.choice([0.0, 0.0, 0.03, 0.3])  # `[ 1, 2 ]`
        self.p_trailing = rng.choice([0.0, 0.05, 0.2])
        self.p_multiline = rng.choice([0.05, 0.15, 0.35])

    # --- draws ------------------------------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def noun(self) -> tuple[str, str]:
        return self.pick(V.NOUNS)

    def ident(self) -> str:
        """A variable name: a scalar, a noun, or a compound such as ``max_count``, ``user_ids``, ``row2``."""
        r = self.r.random()
        one, many = self.noun()
        if r < 0.3:
            name = self.pick(V.SCALARS)
        elif r < 0.5:
            name = one
        elif r < 0.65:
            name = many
        elif r < 0.8:
            name = f"{self.pick(V.ADJECTIVES)}_{self.pick([one, many])}"
        elif r < 0.92:
            name = f"{one}_{self.pick(['count', 'id', 'ids', 'list', 'map', 'name', 'idx', 'data', 'set', 'size'])}"
        else:
            name = f"{self.pick([one, self.pick(V.SCALARS)])}{self.r.randint(0, 9)}"
        return name if not keyword.iskeyword(name) else name + "_"

    def idents(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            x = self.ident()
            if x not in out:
                out.append(x)
        return out

    def num(self) -> str:
        r = self.r.random()
        if r < 0.55:
            return str(self.r.randint(0, 20))
        if r < 0.75:
            return str(self.r.randint(21, 9999))
        if r < 0.87:
            return f"{self.r.randint(0, 99)}.{self.r.randint(0, 99)}"
        if r < 0.96:
            return "-" + self.pick([str(self.r.randint(1, 100)), f"{self.r.randint(0, 9)}.{self.r.randint(1, 9)}"])
        return self.pick(["1_000", "1e-3", "0.5", "1e6", "0x1F", "100_000", "3.14", ".5", "2e-5", "0b101"])

    def word(self) -> str:
        return self.pick(V.WORDS)

    def text(self) -> str:
        """String content: words, sentences, identifiers, paths, formats, sometimes with the other quote."""
        r = self.r.random()
        if r < 0.35:
            words = [self.word() for _ in range(self.r.choice([1, 1, 1, 2, 2, 3, 4, 6]))]
            if self.chance(0.4):
                words[0] = self.pick(V.CAPS)
            t = " ".join(words)
            return t + self.pick([""] * 12 + [":", "!", ".", "...", "?", ",", ": "])
        if r < 0.39:  # a longer sentence
            words = [self.word() for _ in range(self.r.randint(5, 12))]
            return self.pick(V.CAPS) + " " + " ".join(words) + self.pick([".", "", "!"])
        if r < 0.55:
            return self.pick(V.PHRASES) + self.pick(["", " " + self.word(), "!", " " + self.word() + "."])
        if r < 0.6:
            return self.pick(V.QUOTED)
        if r < 0.72:
            return self.ident()
        if r < 0.8:
            return self.pick(V.FORMATS)
        if r < 0.86:
            return self.pick(V.DIRS) + self.pick(V.READ_FILES + V.WRITE_FILES) + "." + self.pick(V.EXTS)
        if r < 0.92:
            return self.pick(V.CAPS) + self.pick([": ", " = ", " - ", " #", " "])
        return self.word() + self.pick(["_", "-", ".", "@", "/"]) + self.pick([self.word(), str(self.r.randint(0, 99))])

    def s(self, text: str | None = None, q: str | None = None) -> str:
        """A string literal: the program's preferred quote, switched or escaped when ``text`` contains it."""
        text = self.text() if text is None else text
        q = q or ('"' if self.chance(self.p_double) else "'")
        if q in text:
            other = "'" if q == '"' else '"'
            if other not in text and self.chance(0.85):
                q = other
            else:
                text = text.replace(q, "\\" + q)
        prefix = self.pick(["r", "b"]) if self.chance(0.02) and "\\" not in text and text.isascii() else ""
        return f"{prefix}{q}{text}{q}"

    def q(self) -> str:
        return '"' if self.chance(self.p_double) else "'"

    # --- formatting ---------------------------------------------------------------------------------------
    def eq(self) -> str:
        """The ``=`` of an assignment: `` = `` or, in some programs, ``=`` / `` =`` / ``= ``."""
        if self.chance(self.p_eq_odd):
            return self.pick(["=", "=", " =", " =", "= "])
        return " = "

    def assign(self, lhs: str, rhs: str) -> str:
        return f"{lhs}{self.eq()}{rhs}"

    def comma(self) -> str:
        return "," if self.chance(self.p_tight_comma) else ", "

    def seq(self, elems: list[str], o: str = "[", c: str = "]", multiline: bool | None = None) -> str:
        """``elems`` between ``o`` and ``c``: inline (maybe padded, tight commas, trailing comma) or one
        element / chunk per indented line."""
        if not elems:
            return o + c
        if multiline is None:
            multiline = len(elems) > 2 and self.chance(self.p_multiline + (0.3 if len(elems) > 12 else 0))
        if multiline:
            per = 1 if self.chance(0.5) or len(elems) < 6 else self.r.randint(3, 8)
            rows = [", ".join(elems[i:i + per]) for i in range(0, len(elems), per)]
            last = "," if self.chance(0.7) else ""
            if self.chance(0.8):
                body = "\n".join(f"    {x}," for x in rows[:-1]) + ("\n" if len(rows) > 1 else "")
                return f"{o}\n{body}    {rows[-1]}{last}\n{c}"
            pad = " " * len(o)  # hanging: first element on the opening line, closer hugs the last one
            return o + f",\n{pad}".join(rows) + c
        sep = self.comma()
        trail = "," if self.chance(self.p_trailing) and not (o == "(" and len(elems) == 1) else ""
        if o == "(" and len(elems) == 1:
            trail = ","  # a one-element tuple
        if self.chance(self.p_pad):
            return f"{o} {sep.join(elems)}{trail} {c}"
        return f"{o}{sep.join(elems)}{trail}{c}"

    # --- literals ------------------------------------------------------------------------------------------
    def atom(self, kind: str) -> str:
        if kind == "int":
            return str(self.r.randint(0, 20) if self.chance(0.7) else self.r.randint(0, 999))
        if kind == "float":
            return f"{self.r.randint(0, 99)}.{self.r.randint(0, 99)}"
        if kind == "neg":
            return self.pick([f"-{self.r.randint(1, 50)}", self.num(), str(self.r.randint(0, 9))])
        if kind == "str":
            return self.s(self.pick([self.word(), self.word(), self.text()]))
        if kind == "name":
            return self.ident()
        if kind == "const":
            return self.pick(CONSTS)
        if kind == "call":
            return self.pick([f"{self.pick(V.FUNCS)}({self.ident()})", f"{self.pick(V.CLASSES)}({self.num()})",
                              f"{self.ident()}.{self.pick(['get', 'copy', 'pop', 'strip', 'lower'])}()"])
        if kind == "tuple":
            return self.seq([self.atom(self.pick(["int", "str", "name"])) for _ in range(self.r.randint(1, 3))],
                            "(", ")", multiline=False)
        if kind == "dict":
            return self.dict_literal(n=self.r.randint(0, 2), multiline=False)
        if kind == "list":
            return self.seq([self.atom("int") for _ in range(self.r.randint(0, 3))], multiline=False)
        return self.atom(self.pick(ELEM_KINDS[:10]))  # mixed: each element its own kind

    def elems(self, kind: str | None = None, n: int | None = None) -> list[str]:
        kind = kind or self.pick(ELEM_KINDS)
        if n is None and self.chance(0.99):  # mostly short: a long list costs many tokens per idiom
            n = self.r.choice([0, 1, 2, 2, 3, 3, 4, 4, 5, 6, 8, 10, 16])
        elif n is None:
            n = self.r.randint(24, 48)
        return [self.atom(kind) for _ in range(n)]

    def list_literal(self, kind: str | None = None, n: int | None = None) -> str:
        return self.seq(self.elems(kind, n))

    def nested(self, depth: int, kind: str | None = None) -> str:
        """A list nested ``depth`` deep (1 = flat); rows may be ragged, empty, or spread over lines. A depth-2 list
        has one row (``[[1, 2, 3]]``, the ``bracket_counting`` task's form) 1 time in 9 up to version 4, 4 in 11 in
        version 5."""
        kind = kind or self.pick(ELEM_KINDS[:11])
        if depth <= 1:
            return self.seq(self.elems(kind, self.r.choice([1, 2, 2, 3, 3, 3, 4, 5, 7, 12])), multiline=False)
        counts = [1, 2, 2, 2, 3, 3, 4, 5, 8] if self.version < 5 else [1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 8]  # 1: `[[...]]`
        n = self.r.choice(counts) if depth == 2 else self.r.randint(1, 2)
        rows = [self.nested(depth - 1 if self.chance(0.93) else 1, kind) for _ in range(n)]
        return self.seq(rows, multiline=depth == 2 and n > 2 and self.chance(self.p_multiline + 0.35))

    def swap_names(self) -> tuple[str, str]:
        """The two names of a swap block (``blk_swap``). Versions 3 and 4: two ``ident`` names (3 in 5; mostly
        compounds of several tokens, such as ``max_count``) or a stock pair (``a, b``, ``x, y``, ``i, j``,
        ``lo, hi``); so a swap of two short names other than the stock pairs is rare. Version 5: two short names
        (a scalar or a noun, such as ``total, index``) half of the time, else two ``ident`` names (3 in 10) or a
        stock pair (2 in 10)."""
        if self.version < 5:
            return tuple(self.idents(2)) if self.chance(0.6) else self.pick(STOCK_PAIRS)
        r = self.r.random()
        if r < 0.5:
            return tuple(self.r.sample(SHORT_NAMES, 2))
        return tuple(self.idents(2)) if r < 0.8 else self.pick(STOCK_PAIRS)

    def dict_literal(self, n: int | None = None, multiline: bool | None = None) -> str:
        n = self.r.choice([0, 1, 2, 3, 3, 4, 5, 6, 9]) if n is None else n
        kk = self.pick(["str", "str", "str", "int", "name"])
        vk = self.pick(ELEM_KINDS)
        keys = [self.s(self.word()) if kk == "str" else self.atom(kk) for _ in range(n)]
        sep = self.pick([": "] * 12 + [":", " : "])
        if multiline is None and n >= 3 and self.chance(0.5):
            multiline = True  # config-style dicts, one entry per line
        return self.seq([f"{k}{sep}{self.atom(vk)}" for k in keys], "{", "}", multiline)

    def value(self) -> str:
        """A right-hand side for an ordinary assignment."""
        r = self.r.random()
        if r < 0.25:
            return self.num()
        if r < 0.45:
            return self.s()
        if r < 0.55:
            return self.pick(CONSTS)
        if r < 0.65:
            return self.call_expr()
        if r < 0.75:
            return self.list_literal(n=self.r.randint(0, 5))
        if r < 0.8:
            return self.dict_literal(n=self.r.randint(0, 3), multiline=False)
        if r < 0.9:
            return f"{self.ident()} {self.pick(['+', '-', '*', '/', '//', '%', '**'])} {self.num()}"
        return self.pick([f"{self.ident()}[{self.r.randint(-1, 5)}]", f"{self.ident()}.{self.ident()}",
                          f"len({self.ident()})", f"{self.ident()}[{self.s(self.word())}]"])

    def args(self) -> str:
        """Call arguments led by a string (``("``/``('`` then ``")``/``')`` are common), or by other values."""
        first = self.s() if self.chance(0.75) else self.pick([self.ident(), self.num(), self.value()])
        rest = [self.pick([self.ident(), self.s(), self.num()]) for _ in range(self.pick([0, 0, 0, 0, 1, 1, 2]))]
        if self.chance(0.2):  # one keyword argument, last
            rest.append(f"{self.pick(['sep', 'end', 'key', 'default', 'flush', 'level', 'file'])}={self.value()}")
        out = self.comma().join([first] + rest)
        return f" {out} " if self.chance(self.p_pad / 2) else out

    def call_expr(self) -> str:
        one, many = self.noun()
        fn = self.pick(["print", "print", "log", "logger.info", "logging.debug", "self.log", "sys.stdout.write",
                        f"{many}.append", f"{one}.split", f"{one}.startswith", f"{one}.endswith", f"{one}.replace",
                        f"{self.pick(V.VERBS)}_{one}", f"{self.pick(V.VERBS)}_{many}", f"{many}.count",
                        f"{one}.get", "str.join", f"{self.s(self.pick(V.SEPARATORS))}.join", "input",
                        f"{many}.index", f"{one}.format", "os.path.join", "re.compile", "warnings.warn",
                        f"{self.pick(V.CLASSES)}", f"{many}.extend", f"{one}.strip", "json.dumps", f"{one}.encode"])
        if fn in ("str.join",):
            return f"{self.s(', ')}.join({many})"
        return f"{fn}({self.args()})"

    def cond(self, x: str | None = None) -> str:
        """A condition on ``x`` (a fresh name by default): comparisons (mostly ``==``), membership, ``None`` tests."""
        x = x or self.ident()
        y = self.pick([self.num, self.ident, lambda: self.s(self.word()), lambda: "0", lambda: "None"])()
        c = self.pick([  # only the drawn form is built
            lambda: f"{x} > {y}", *[lambda: f"{x} == {y}"] * 5, lambda: f"{x} != {y}", lambda: f"{x} < {y}",
            lambda: f"{x} >= {y}", lambda: f"{x} <= {y}", lambda: f"{x} % 2 == 0", lambda: f"not {x}",
            lambda: f"{x} is None", lambda: f"{x} is not None", lambda: f"{x} in {self.ident()}",
            lambda: f"{x} not in {self.ident()}", lambda: f"len({x}) > {self.num()}", lambda: f"{x}",
            lambda: f"isinstance({x}, str)", lambda: f"{x}.startswith({self.s(self.word())})",
            lambda: f"{x} == {y} and {self.ident()}", lambda: f"{x} < {y} or {x} > {self.num()}",
            lambda: f"0 <= {x} < {self.r.randint(1, 100)}"])()
        return f"({c})" if self.chance(0.05) else c

    def label(self) -> str:
        """Short string content ending in a letter (``Done``, ``file not found``): the text of P1's quote idiom."""
        words = [self.word() for _ in range(self.r.choice([1, 1, 2, 2, 3, 4]))]
        return " ".join([self.pick(V.CAPS)] + words[1:] if self.chance(0.5) else words)

    def call_name(self, x: str) -> str:
        """A function or method that takes a string: ``print``, ``log``, ``words.append``, ``load_<x>``, ..."""
        r = self.r.random()
        if r < 0.55:
            return self.pick(["print", "print", "print", "log", "logger.info", "self.log", "warnings.warn", "input"])
        if r < 0.93:
            one, many = self.noun()
            return self.pick([f"{many}.append", f"{one}.startswith", f"{one}.split", f"{many}.count",
                              f"{one}.endswith"])
        return f"{self.pick(V.VERBS)}_{x}"

    def idiom_stmt(self) -> str:
        """A one-line statement holding a P1 idiom in one of its surface forms: a call whose only argument is a
        string (``("...")``), a plain or f-string print, a nested list, ``open(...)``, a ternary, a flag, an
        empty set or string, a list of strings or of numbers, a lambda, ``+=``. Only the drawn form is built."""
        x, q = self.ident(), self.q()
        call = lambda: f"{self.call_name(x)}({self.s(self.label())})"  # noqa: E731
        forms = [
            call, call,
            lambda: f"{self.ident()}{self.eq()}{call()}", lambda: f"{self.ident()}{self.eq()}{call()}",
            lambda: f"raise {self.pick(V.EXCEPTIONS)}({self.s(self.label())})",
            lambda: f"print({q}{self.pick(V.CAPS)}{self.pick(['', ' ' + self.word()])}{q})",
            lambda: f"{self.pick(['print', 'print', 'print', 'log', 'logger.info'])}({q}{self.pick(V.CAPS)}{q})",
            lambda: f"print(f{q}{self.pick(V.CAPS)}{self.pick(['', ' ' + self.word(), ':'])} {{{x}}}{q})",
            lambda: f"{self.ident()}{self.eq()}f{q}{{{x}}} {self.word()}{q}",
            lambda: self.assign(x, self.nested(2, self.pick(["int", "int", "neg", "float", "str", "name", "const"]))),
            lambda: self.assign(self.pick(["f", "fh", "fp", "handle"]), self.open_call(q)),
            lambda: self.assign(x, f"{self.value()} if {self.cond()} else {self.value()}"),
            lambda: self.assign(self.pick(V.FLAGS), self.pick(["True", "False"])),
            lambda: self.assign(x, self.pick(["set()", '""', "''"])),
            lambda: self.assign(x, self.seq([self.s(self.word()) for _ in range(self.r.randint(1, 5))])),
            lambda: self.assign(x, self.seq([self.atom("int") for _ in range(self.r.randint(1, 6))])),
            lambda: self.assign(self.pick(["f", "key_fn", "square", "double", "get_" + self.noun()[0]]),
                                f"lambda {self.pick(['x', 'v', 'n', 's'])}: {self.pick(['x', 'v', 'n', 's'])} "
                                f"{self.pick(['* 2', '+ 1', '** 2', '> 0'])}"),
            lambda: f"{self.noun()[1]}.sort(key=lambda {self.pick(['x', 'v', 'p'])}: {self.pick(['x', 'v', 'p'])}[0])",
            lambda: f"{x} += {self.pick([self.num(), self.ident(), self.s(self.word())])}",
        ]
        return self.pick(forms)()

    def idiom_compound(self) -> str:
        """A two-to-five-line compound statement holding a P1 idiom, drawn by :data:`COMPOUND_WEIGHTS`: ``if x ==``
        (with or without ``else``), ``while name:``, ``while True:``, a ``for`` loop, a flag test, a set or string
        accumulator, ``with open``, a ``def`` with defaults, a class whose ``__init__`` copies its parameters.
        Continuation lines are indented relative to column 0."""
        one, many = self.noun()
        x, q = self.ident(), self.q()
        form = self.r.choices(list(COMPOUND_WEIGHTS), list(COMPOUND_WEIGHTS.values()))[0]
        if form == "if_eq":
            out = f"if {x} == {self.pick([self.num(), self.ident(), self.s(self.word()), 'None'])}:\n    {self.stmt()}"
            if self.chance(0.2):
                out += f"\nelif {x} == {self.pick([self.num(), self.ident(), 'None'])}:\n    {self.stmt()}"
            return out + (f"\nelse:\n    {self.stmt()}" if self.chance(0.5) else "")
        if form == "while_name":
            if self.chance(0.25):
                op, bound = self.pick(["<", "<=", ">", "!="]), self.pick([self.num(), self.ident()])
                return f"while {x} {op} {bound}:\n    {self.stmt()}"
            return f"while {self.pick([many, self.pick(V.FLAGS), 'queue', 'stack', 'pending'])}:\n    {self.stmt()}"
        if form == "while_true":
            return f"while True:\n    {self.stmt()}\n    if {self.cond()}:\n        break"
        if form == "for":
            head = self.pick([f"for {one} in {many}:", f"for {self.pick(['i', 'j', 'k', 'n'])} in range({self.num()}):",
                              f"for {self.pick(['i', 'idx'])}, {one} in enumerate({many}):"])
            return f"{head}\n    {self.stmt()}"
        if form == "flag":
            return f"if {self.pick(V.FLAGS)} == {self.pick(['True', 'False'])}:\n    {self.stmt()}"
        if form == "accumulate":
            var = "current" if self.chance(0.3) else x
            if self.chance(0.5):
                return f"{self.assign(var, 'set()')}\n{var}.add({one})"
            return f"{self.assign(var, self.pick(EMPTY_STRINGS))}\n{var} += {one}"
        if form == "def":
            ps = self.idents(self.r.randint(1, 4))
            k = self.r.randint(0, len(ps) - 1) if self.chance(0.6) else len(ps)  # defaults from the k-th on
            sig = ", ".join(ps[:k] + [f"{p}={self.pick(['None', 'None', 'None', self.num(), 'True'])}" for p in ps[k:]])
            return f"def {self.pick(V.VERBS)}_{one}({sig}):\n    return {self.pick(ps)}"
        if form == "class":
            ps = self.idents(self.r.randint(1, 3))
            lines = "".join(f"\n        self.{p} = {p}" for p in ps)
            return f"class {self.pick(V.CLASSES)}:\n    def __init__(self, {', '.join(ps)}):{lines}"
        mode, fv = self.pick(["r", "w"]), self.pick(["f", "fh", "fp"])
        body = f"{fv}.read()" if mode == "r" else f"{fv}.write({self.s()})"
        name = self.pick(V.READ_FILES)
        return f"with open({self.open_path(self.s(name + '.txt'), name, mode)}, {q}{mode}{q}) as {fv}:\n    {body}"

    def open_call(self, q: str) -> str:
        """``open(<file>, <q>r<q>)`` or ``...w...`` (the one-line ``open`` idiom of :meth:`idiom_stmt`)."""
        name = self.pick(V.READ_FILES)
        path = self.s(name + ".txt")
        mode = self.pick(["r", "w"])
        return f"open({self.open_path(path, name, mode)}, {q}{mode}{q})"

    def open_path(self, path: str, name: str, mode: str) -> str:
        """The quoted file of a filler ``open`` idiom, drawn as a ``READ_FILES`` ``name`` before its ``mode``.

        Version 3 keeps the name whatever the mode, so read-file names are opened for writing about two times in
        five (``task_audit.open_modes``: in the first 20,000 programs of seed 0, ``r`` 4,769 and ``w`` 3,393),
        which teaches the ``with_open`` task's cue (a read-file name means ``r``) only weakly. Version 4 writes
        a ``WRITE_FILES`` name when the mode is ``w``, chosen by the read name's index, so it draws nothing: the
        random stream is not advanced differently and every other character of a program is version 3's."""
        if self.version < 4 or mode != "w":
            return path
        write = V.WRITE_FILES[V.READ_FILES.index(name) % len(V.WRITE_FILES)]
        return path.replace(name + ".txt", write + ".txt", 1)

    def stmt(self) -> str:
        """One simple statement (a filler line between the idioms; a third of them hold an idiom themselves)."""
        if self.chance(P_IDIOM_STMT):
            return self.idiom_stmt()
        r = self.r.random()
        x = self.ident()
        if r < 0.3:
            return self.assign(x, self.value())
        if r < 0.55:
            return self.call_expr()
        if r < 0.65:
            return f"{x} {self.pick(['+=', '-=', '*=', '//=', '|=', '+='])} {self.pick([self.num(), self.ident()])}"
        if r < 0.72:
            return f"{self.ident()}[{self.pick([self.num(), self.s(self.word()), self.ident()])}] = {self.value()}"
        if r < 0.78:
            return f"{self.ident()}.{self.ident()} = {self.value()}"
        if r < 0.9:
            return f"assert {self.cond(x)}" + (f", {self.s()}" if self.chance(0.4) else "")
        if r < 0.95:
            a, b = self.idents(2)
            return self.pick([f"{a}, {b} = {self.value()}, {self.value()}", f"{a} = {b} = {self.num()}",
                              f"{a}, *{b} = {self.ident()}"])
        return self.assign(x, f"{self.pick(V.FUNCS)}({self.ident()})")

    def comment(self) -> str:
        text = self.pick(V.COMMENTS).format(w=self.noun()[0], w2=self.noun()[1], n=self.r.randint(1, 99))
        return self.pick(["# ", "# ", "#", "## "]) + text
