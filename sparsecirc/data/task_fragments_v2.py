"""Code fragments for the version-2 task generators (``task_generators_v2``): vocabulary and a drawer.

Version 1 of the task generators (``task_generators``) leads every prompt in with two to four one-line
statements from about a dozen templates. Version 2 draws the surrounding code from a wider set of its own
phrasings -- literals of several element types, calls with keyword arguments, comprehensions, annotated and
augmented assignments, imports, asserts, comments, literals and calls over several lines, and compound
statements (``if`` / ``for`` / ``while`` / ``with`` / ``try`` / ``def``) -- so that a probe is not solved by
recognising a template. Every statement is balanced (brackets and quotes closed) and a top-level context
compiles (``tests/test_task_generators_v2.py``). The vocabulary is this module's own: it does not copy the
simple-Python corpus generators' lists or line templates.

``CodeDraw`` wraps the :class:`~sparsecirc.data.task_generators.Draw` that ``tasks`` hands a generator (only
its ``r``, a ``random.Random``, and ``single_names`` are used), so it draws from the same seeded stream.

Example:
    >>> import random
    >>> from types import SimpleNamespace
    >>> c = CodeDraw(SimpleNamespace(r=random.Random(0), single_names=("x", "y")))
    >>> isinstance(c.context(), list)
    True
"""
from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    return text.split()


NOUNS = [tuple(p.split("/")) for p in _words("""
sensor/sensors reading/readings packet/packets frame/frames batch/batches sample/samples order/orders
client/clients invoice/invoices account/accounts vertex/vertices edge/edges cell/cells tile/tiles
worker/workers job/jobs ticket/tickets guest/guests word/words line/lines token/tokens entry/entries
record/records file/files path/paths user/users item/items row/rows column/columns node/nodes task/tasks
event/events match/matches score/scores price/prices city/cities student/students book/books page/pages
player/players card/cards note/notes step/steps chunk/chunks field/fields request/requests
""")]
SCALARS = _words("""total count index offset limit size length width height depth level start stop step
delta margin threshold target best mean low high left right counter amount balance speed distance
capacity budget n m k i j x y z retries elapsed score weight ratio""")
FLAGS = _words("""done found ready valid running active finished changed dirty visible enabled debug verbose
ok matched stopped complete cached loaded locked pending""")
VERBS = _words("""get compute load save parse find check update build make process format count filter merge
split clean read write collect group reset apply handle send fetch encode decode render normalize score
rank resolve prepare""")
OBJECTS = _words("self config state cache node window ctx args opts parser stats")
ATTRS = _words("""count total size name value state status mode level parent data items index limit owner
label color kind flag result""")
FUNCS = _words("len sum min max sorted abs round str int float list tuple set repr any all")
MODULES = _words("os sys re json math time random itertools functools collections csv logging string")
EXCEPTIONS = _words("ValueError KeyError IndexError TypeError RuntimeError OSError LookupError")
CLASS_NAMES = _words("""Reader Writer Buffer Sensor Packet Invoice Client Worker Ticket Matrix Grid Router
Session Profile Widget Filter Mapper Loader Scanner Builder Tracker Pool Job Shelf Vault""")
TEXT_WORDS = _words("""alpha beta gamma ready waiting retry failed passed skipped queued loaded saved opened
closed empty full left right north south east west red green blue orange purple small large medium fast slow
first last next previous total average minimum maximum header footer row column value key name user admin
guest login logout warning notice debug info error missing invalid unknown default enabled disabled
morning evening today tomorrow monday friday apple pear plum lemon river mountain forest ocean""")
TEXT_CAPS = _words("""Total Average Count Saved Loaded Skipping Reading Writing Checking Updating Starting
Finished Done Error Warning Notice Result Summary Status Progress Value Name Items Rows Found Missing""")
COMMENT_LINES = ["# walk over the {many}", "# NOTE: {one} can be empty", "# keep only the new {many}",
                 "# cache the {one} lookups", "# fall back to the default {one}", "# {many} are sorted by now",
                 "# the {one} count must stay positive", "# TODO(later): merge the {many}",
                 "# see {verb}_{one} below", "# {n} is an arbitrary cut-off", "# reset before the next {one}",
                 "# this used to be a dict of {many}"]
DOC_LINES = ['"""{Verb} the {many} and return the {one}."""', '"""Helper: {verb} one {one}."""',
             '"""{Verb} every {one} in place."""', '"""Return True when the {one} is usable."""',
             "'''{Verb} the {one} list.'''"]

_WORD_RE = re.compile(r"\w+")


class CodeDraw:
    """Draws ordinary Python fragments from a task ``Draw``'s random stream.

    Args:
        d: a ``task_generators.Draw`` (anything with ``r``, a ``random.Random``, and ``single_names``, the
            names that are one token after a space in the tokenizer).
    """

    def __init__(self, d):
        self.r = d.r
        self.single_names = tuple(d.single_names)

    # --- basic draws -------------------------------------------------------------------------------------
    def pick(self, seq):
        """One element of ``seq``."""
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.r.random() < p

    def randint(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.r.randint(lo, hi)

    def noun(self) -> tuple[str, str]:
        """A (singular, plural) noun pair, e.g. ``("packet", "packets")``."""
        return self.pick(NOUNS)

    def var(self) -> str:
        """A variable name: a scalar, a noun, or a compound such as ``raw_packets`` or ``packet_count``."""
        one, many = self.noun()
        r = self.r.random()
        if r < 0.3:
            return self.pick(SCALARS)
        if r < 0.55:
            return self.pick([one, many])
        if r < 0.8:
            return f"{self.pick(['raw', 'new', 'old', 'all', 'good', 'bad', 'last', 'next'])}_{many}"
        return f"{one}_{self.pick(['count', 'ids', 'map', 'index', 'total', 'name', 'list'])}"

    def int_(self) -> str:
        """An integer literal, mostly small."""
        return str(self.randint(0, 12) if self.chance(0.7) else self.randint(13, 4096))

    def number(self) -> str:
        """A numeric literal: int, negative, float or an exponent/underscore form."""
        r = self.r.random()
        if r < 0.6:
            return self.int_()
        if r < 0.75:
            return f"-{self.randint(1, 50)}"
        if r < 0.92:
            return f"{self.randint(0, 40)}.{self.randint(0, 99)}"
        return self.pick(["1e-4", "2_500", "0.001", "1e3", "0x10", "-0.5"])

    def words(self, lo: int = 1, hi: int = 4) -> str:
        """``lo``..``hi`` words of string content, no quotes, ending with a letter (``:")`` is a merged token)."""
        out = [self.pick(TEXT_WORDS) for _ in range(self.randint(lo, hi))]
        if self.chance(0.35):
            out[0] = self.pick(TEXT_CAPS)
        if len(out) > 1 and self.chance(0.25):
            out[0] += self.pick([":", ",", " -", " ="])
        if self.chance(0.1):
            out.insert(self.randint(0, len(out) - 1), str(self.randint(0, 99)))
        return " ".join(out)

    def strlit(self, q: str | None = None) -> str:
        """A balanced string literal (either quote unless ``q`` is given)."""
        q = q or self.pick(['"', "'"])
        body = self.pick([self.words(1, 3), self.pick(TEXT_WORDS), self.var(), f"{self.pick(TEXT_WORDS)}.txt",
                          "%s: %d", "{}", ", ", ""])
        return f"{q}{body}{q}"

    def attr(self) -> str:
        """An attribute access such as ``self.count`` or ``config.mode``."""
        return f"{self.pick(OBJECTS)}.{self.pick(ATTRS)}"

    def atom(self) -> str:
        """A name, literal, attribute, subscript or call."""
        one, many = self.noun()
        return self.pick([self.var(), self.var(), self.number(), self.strlit(), self.attr(), f"{many}[{self.int_()}]",
                          f"{many}[-1]", f"{self.pick(FUNCS)}({many})", "None", self.pick(["True", "False"]),
                          f"{self.pick(VERBS)}_{one}({self.var()})"])

    def expr(self) -> str:
        """An atom or a small arithmetic / boolean / call expression."""
        a, b = self.atom(), self.var()
        return self.pick([a, a, f"{b} + {self.int_()}", f"{b} * {self.number()}", f"{b} - {self.var()}",
                          f"{b} // 2", f"{b} or {self.atom()}", f"{self.pick(FUNCS)}({b}, {self.int_()})",
                          f"{b}.get({self.strlit()}, {self.int_()})", f"not {b}"])

    def cond(self, x: str | None = None) -> str:
        """A condition (on ``x`` if given) that ends in a name or a number, never in a closing bracket or a quote
        (``)`` + ``:`` would merge into ``):``)."""
        x = x or self.var()
        y, many = self.int_(), self.noun()[1]
        return self.pick([f"{x} > {y}", f"{x} == {y}", f"{x} != {y}", f"{x} <= {y}", f"{x} < len({many}) - 1",
                          f"{x} % 2 == 0", f"not {x}", f"{x} is None", f"{x} is not None", f"{x} in {many}",
                          f"{x} not in {many}", f"{x} and {self.pick(FLAGS)}", f"{x} >= {self.pick(SCALARS)}",
                          f"{self.pick(FLAGS)} or {x}", f"len({x}) > {y}"])

    # --- statements ----------------------------------------------------------------------------------------
    def elems(self, lo: int = 2, hi: int = 5) -> str:
        """A comma-separated sequence of same-kind elements (numbers, names, strings or constants)."""
        kind = self.pick(["num", "num", "name", "str", "const"])
        make = {"num": self.number, "name": self.var, "str": self.strlit,
                "const": lambda: self.pick(["True", "False", "None"])}[kind]
        return ", ".join(make() for _ in range(self.randint(lo, hi)))

    def stmt(self, code_only: bool = False) -> str:
        """One simple statement (balanced, no trailing newline); ``code_only``: never a comment (a block body)."""
        one, many = self.noun()
        v, w = self.var(), self.var()
        r = self.randint(0, 24)
        if code_only and r == 22:
            r = 0
        return [
            f"{v} = {self.expr()}", f"{v} = {self.number()}", f"{v} += {self.pick([self.int_(), w])}",
            f"{v} -= {self.int_()}", f"{v}: int = {self.int_()}", f"{many}.append({self.atom()})",
            f"{many}.extend({w})", f"{many}.sort(key={self.pick(FUNCS)}, reverse={self.pick(['True', 'False'])})",
            f"print({self.atom()}, {self.atom()}, sep={self.strlit()})",
            f"{v} = {self.pick(VERBS)}_{one}({self.atom()})",
            f"assert {self.cond(v)}, {self.strlit()}", f"{v} = [{self.elems()}]", f"{v} = ({self.elems(2, 3)})",
            f"{v} = {{{self.strlit()}: {self.atom()}, {self.strlit()}: {self.atom()}}}",
            f"{v} = [{one} {self.pick(['*', '+', '-'])} {self.int_()} for {one} in {many}]",
            f"{v} = {{{one} for {one} in {many} if {self.cond(one)}}}", f"{self.attr()} = {self.expr()}",
            f"{v} = {many}[{self.pick(['1:', ':-1', '::2', str(self.randint(0, 5))])}]",
            f"{v} = {self.strlit()}.join({many})", f"import {self.pick(MODULES)}",
            f"from {self.pick(MODULES)} import {self.pick(VERBS)}_{one}", f"del {many}[{self.int_()}]",
            self.pick(COMMENT_LINES).format(one=one, many=many, verb=self.pick(VERBS), n=self.int_()),
            f"{v}, {w} = {self.atom()}, {self.atom()}", f"{v} = {self.atom()} if {self.cond(w)} else {self.atom()}",
        ][r]

    def multiline(self, indent: str = "") -> list[str]:
        """A list, dict or call written over several lines (as formatters lay out long literals)."""
        v, inner = self.var(), indent + "    "
        kind = self.pick(["list", "dict", "call"])
        n = self.randint(2, 3)
        if kind == "list":
            body = [f"{inner}{self.atom()}," for _ in range(n)]
            return [f"{indent}{v} = ["] + body + [f"{indent}]"]
        if kind == "dict":
            body = [f"{inner}{self.strlit()}: {self.atom()}," for _ in range(n)]
            return [f"{indent}{v} = {{"] + body + [f"{indent}}}"]
        one = self.noun()[0]
        body = [f"{inner}{self.atom()},"] + [f"{inner}{k}={self.atom()}," for k in self.r.sample(ATTRS, n - 1)]
        return [f"{indent}{v} = {self.pick(VERBS)}_{one}("] + body + [f"{indent})"]

    def block(self, indent: str = "") -> list[str]:
        """A compound statement with a one- or two-line body (an ``if`` may get an ``else``)."""
        one, many = self.noun()
        inner = indent + "    "
        head = self.pick([f"if {self.cond()}:", f"for {one} in {many}:", f"while {self.cond()}:",
                          f"for {self.pick(['i', 'j', 'k'])}, {one} in enumerate({many}):",
                          f"with open({self.strlit()}) as {self.pick(['fh', 'src', 'stream'])}:", "try:",
                          f"def {self.pick(VERBS)}_{one}({one}, {self.pick([x for x in SCALARS if x != one])}="
                          f"{self.int_()}):"])
        body = [inner + self.stmt(code_only=True) for _ in range(self.randint(1, 2))]
        if head.startswith("def ") and self.chance(0.6):
            body.append(f"{inner}return {self.expr()}")
        out = [indent + head] + body
        if head == "try:":
            handler = self.pick(["pass", self.stmt(code_only=True), "raise"])
            out += [f"{indent}except {self.pick(EXCEPTIONS)}:", inner + handler]
        elif head.startswith("if ") and self.chance(0.3):
            out += [f"{indent}else:", inner + self.stmt(code_only=True)]
        return out

    def context(self, lo: int = 1, hi: int = 3, indent: str = "", block_p: float = 0.25,
                multi_p: float = 0.12) -> list[str]:
        """``lo``..``hi`` statements at ``indent``; each may instead be a compound block (followed by a blank line
        at top level, as formatted code has) or a literal/call over several lines."""
        out: list[str] = []
        for _ in range(self.randint(lo, hi)):
            r = self.r.random()
            if r < block_p:
                out += self.block(indent) + ([""] if not indent and self.chance(0.6) else [])
            elif r < block_p + multi_p:
                out += self.multiline(indent)
            else:
                out.append(indent + self.stmt())
        return out

    def context_avoiding(self, names, lo: int = 1, hi: int = 3, **kw) -> list[str]:
        """``context`` redrawn (up to 50 times) until none of ``names`` occurs in it as a whole word; the last
        draw with those words removed by a plain statement if all fail (never silently ambiguous)."""
        names = set(names)
        for _ in range(50):
            ctx = self.context(lo, hi, **kw)
            if not names & set(_WORD_RE.findall("\n".join(ctx))):
                return ctx
        return [kw.get("indent", "") + "pass"] * lo

    def docstring(self, indent: str = "    ") -> str:
        """A one-line docstring at ``indent``."""
        one, many = self.noun()
        verb = self.pick(VERBS)
        return indent + self.pick(DOC_LINES).format(one=one, many=many, verb=verb, Verb=verb.capitalize())
