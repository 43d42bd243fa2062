"""Seeded generator of short "simple Python" programs, the half of the corpus that teaches the task idioms.

Gao et al. pretrain on Python code and probe 20 idioms with contrastive pairs (paper §2.2, Table 1; our
digest §6). The stdlib alone is too sparse in some of them (``print("...")``, ``set()`` vs ``""`` followed
by ``.add`` / ``+=``, ``with open("output.txt", "w")``, ``]]`` closing a nested list), so this module writes
small, syntactically valid programs (5-30 lines) in which every probed idiom appears often, with identifiers
drawn from a vocabulary of a few hundred names so a model must read the context rather than memorise.

The output depends only on ``seed`` (``random.Random``), and on this file: ``GENERATOR_VERSION`` is bumped
on purpose when the distribution changes, and ``data/corpus/SOURCES.json`` pins the sha256 of the default
corpus so accidental drift fails a test.

Example:
    >>> from sparsecirc.data.simple_python import generate_programs
    >>> progs = generate_programs(3, seed=0)
    >>> all(isinstance(p, str) and p.endswith("\\n") for p in progs)
    True
"""
from __future__ import annotations

import random

GENERATOR_VERSION = 1
MIN_LINES, MAX_LINES = 5, 30

# --- vocabulary ---------------------------------------------------------------------------------------
_PAIRS = [tuple(p.split("/")) for p in """
item/items value/values name/names word/words number/numbers score/scores line/lines row/rows
record/records user/users file/files path/paths key/keys label/labels tag/tags color/colors price/prices
point/points node/nodes edge/edges task/tasks job/jobs event/events message/messages token/tokens
city/cities student/students grade/grades book/books page/pages order/orders product/products
entry/entries char/chars letter/letters digit/digits card/cards player/players game/games step/steps
result/results error/errors person/people child/children box/boxes match/matches query/queries
country/countries animal/animals fruit/fruits car/cars song/songs movie/movies email/emails
account/accounts sample/samples pixel/pixels cell/cells col/cols block/blocks chunk/chunks part/parts
piece/pieces field/fields column/columns header/headers url/urls host/hosts port/ports packet/packets
request/requests response/responses element/elements pair/pairs coord/coords vertex/vertices
shape/shapes size/sizes weight/weights reading/readings temp/temps day/days month/months year/years
date/dates ticket/tickets seat/seats room/rooms guest/guests member/members team/teams friend/friends
contact/contacts note/notes comment/comments post/posts review/reviews rating/ratings vote/votes
trade/trades stock/stocks coin/coins bill/bills payment/payments town/towns lesson/lessons
""".split()]
_SCALARS = """total count result index offset limit size length width height depth level start end step
delta margin threshold target best worst average mean maximum minimum low high left right top bottom
counter amount balance speed distance capacity budget score_sum max_len min_val max_val num_rows
num_cols n m k x y z a b c i j""".split()
_FLAGS = """done found ready valid running active finished changed visible enabled debug verbose success
matched is_empty has_error stopped is_open is_ready complete""".split()
_VERBS = """get compute calculate load save parse find check update build make process format count filter
merge split clean read write sum add remove sort show validate convert normalize collect group scale
reset apply handle render send fetch search insert print_all summarize encode decode""".split()
_PREDICATES = """is_valid is_empty has_key contains is_even is_prime is_sorted all_positive any_negative
can_move is_member has_duplicates is_palindrome is_ready exists""".split()
_CLASSES = """Point Node User Account Matrix Config Parser Counter Tracker Player Item Order Record Student
Book Car Shape Circle Rectangle Vector Queue Stack Timer Logger Cache Graph Edge Task Game Board Card Deck
Bank Library Inventory Product Employee Course Ticket Room Robot Sensor Window Button Message Session
Team Recipe Animal Planet""".split()
_WORDS = """hello world done error ready start stop yes no ok loading saving finished missing found invalid
unknown default admin guest red green blue apple banana cherry alice bob carol dave north south east
west small medium large low high on off name value total count processing result warning average
welcome goodbye success failed retry skip empty full open closed active pending new old left right
up down data input output file line row item key label tag text message summary report""".split()
_CAPS = ["Total", "Result", "Average", "Count", "Name", "Score", "Done", "Error", "Warning", "Value",
         "Processing", "Loaded", "Saved", "Found", "Missing", "Hello", "Status", "Best", "Max", "Min"]
READ_FILES = "input data config source words names records scores settings users notes numbers".split()
WRITE_FILES = "output result results report summary backup out export saved log_out totals".split()
_EXTS = ["txt", "txt", "csv", "json", "log", "dat", "md"]
_COMMENTS = ["# load the {w} data", "# TODO: handle [{w}] case", "# returns {{{w}: count}}",
             "# shape is [rows, cols]", "# see {w}[0] for the first one", "# (optional) {w}",
             "# compute the {w} total", "# check {w} before use", "# list of [{w}, {w2}] pairs",
             "# keep a set() of seen {w}s", "# note: {w} may be None", "# step 2: update the {w}"]


class _Gen:
    """Builds one program; holds the rng and the program's quote preference."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.p_double = rng.choice([0.15, 0.5, 0.85])  # mix styles within and across programs (task 1)

    # --- small helpers --------------------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def q(self) -> str:
        return '"' if self.r.random() < self.p_double else "'"

    def s(self, text: str | None = None) -> str:
        """A string literal with a randomly chosen quote style."""
        if text is None:
            text = self.text()
        q = '"' if "'" in text else self.q()
        return f"{q}{text}{q}"

    def text(self) -> str:
        r = self.r
        n = r.choice([1, 1, 1, 2, 2, 3, 4])
        words = [self.pick(_WORDS) for _ in range(n)]
        if r.random() < 0.3:
            words[0] = self.pick(_CAPS)
        t = " ".join(words)
        if r.random() < 0.2:
            t += self.pick([":", "!", ".", "...", "?", ","])
        if r.random() < 0.04:
            t = self.pick(["it's ", "don't ", "can't "]) + t
        return t

    def pair(self) -> tuple[str, str]:
        return self.pick(_PAIRS)

    def scalar(self) -> str:
        return self.pick(_SCALARS)

    def num(self) -> str:
        r = self.r.random()
        if r < 0.7:
            return str(self.r.randint(0, 20))
        if r < 0.85:
            return str(self.r.randint(0, 1000))
        if r < 0.95:
            return f"{self.r.randint(0, 99)}.{self.r.randint(0, 9)}"
        return str(-self.r.randint(1, 50))

    def pos_int(self) -> str:
        return str(self.r.choice([self.r.randint(1, 20), self.r.randint(1, 200)]))

    def elem(self, kind: str) -> str:
        return self.s(self.pick(_WORDS)) if kind == "str" else self.num()

    def cond(self, x: str, y: str | None = None) -> str:
        y = y or self.num()
        return self.pick([f"{x} > {y}", f"{x} == {y}", f"{x} != {y}", f"{x} < {y}", f"{x} >= {y}",
                          f"{x} % 2 == 0", f"not {x}", f"{x} is None", f"{x} in {self.pair()[1]}",
                          f"len({x}) > {y}"])

    def call(self) -> str:
        """A call with string arguments: the main source of ``("``, ``('``, ``")`` and ``')``."""
        r, s = self.r, self.s
        one, many = self.pair()
        return self.pick([
            f"print({s()})", f"print({s()})", f"print({s()}, {one})", f"{many}.append({s()})",
            f"{one}.split({s(self.pick([',', ' ', ':', ';', '|']))})", f"log({s()})",
            f"{one}.startswith({s(self.pick(['#', '-', 'a', 'x', 'the']))})",
            f"{one}.replace({s(self.pick(['-', ' ', 'a']))}, {s(self.pick(['_', '', 'b']))})",
            f"{self.pick(_VERBS)}_{one}({s()})", f"{many}.count({s(self.pick(_WORDS))})",
            f"print({s()}.upper())", f"show_{one}({one}, {s()})", f"{one}.get({s(self.pick(_WORDS))})",
            f"{one} = input({s(self.pick(_CAPS) + ': ')})" if r.random() < 0.5 else f"print({s()})",
        ])

    # --- blocks: each returns a list of lines at indentation 0 -----------------------------------------
    def blk_calls(self) -> list[str]:
        return [self.call() for _ in range(self.r.randint(1, 4))]

    def blk_list(self) -> list[str]:
        r = self.r
        one, many = self.pair()
        kind = self.pick(["int", "int", "str"])
        style = r.random()
        if style < 0.3:  # flat, sometimes long and wrapped over several lines
            n = r.choice([2, 3, 4, 5, 6, 8, 12, 16, 24])
            elems = [self.elem(kind) for _ in range(n)]
            if n <= 8 or r.random() < 0.4:
                lines = [f"{many} = [{', '.join(elems)}]"]
            else:
                chunks = [", ".join(elems[i:i + 6]) for i in range(0, n, 6)]
                lines = [f"{many} = ["] + [f"    {c}," for c in chunks] + ["]"]
        elif style < 0.85:  # list of lists: rows separated by "],", ending in "]]" (tasks 7, 9)
            name = self.pick(["grid", "matrix", "board", "table", "rows", "data", "pairs", many])
            rows = [[self.elem(kind) for _ in range(r.randint(1, 5))] for _ in range(r.randint(2, 5))]
            rs = ["[" + ", ".join(row) + "]" for row in rows]
            layout = r.random()
            if layout < 0.45:
                lines = [f"{name} = [" + ", ".join(rs) + "]"]
            elif layout < 0.7:
                lines = [f"{name} = ["] + [f"    {x}," for x in rs] + ["]"]
            elif layout < 0.85:
                lines = [f"{name} = ["] + [f"    {x}," for x in rs[:-1]] + [f"    {rs[-1]}]"]
            else:
                pad = " " * (len(name) + 4)
                lines = [f"{name} = [{rs[0]},"] + [f"{pad}{x}," for x in rs[1:-1]] + [f"{pad}{rs[-1]}]"]
            lines.append(self.pick([f"print({name}[0][{r.randint(0, 1)}])", f"{name}.append([{self.num()}])",
                                    f"for row in {name}:\n    print(row)", f"{one} = {name}[-1]", ""]))
        else:  # deeper nesting, empty lists
            name = self.pick(["tree", "nested", "cube", "levels", many])
            lines = [f"{name} = {self.nested(r.randint(2, 4))}"]
        return [ln for x in lines for ln in x.split("\n") if x]

    def nested(self, depth: int) -> str:
        if depth == 0 or self.r.random() < 0.15:
            return self.num()
        n = self.r.randint(0 if self.r.random() < 0.1 else 1, 3)
        return "[" + ", ".join(self.nested(depth - 1) for _ in range(n)) + "]"

    def blk_dict(self) -> list[str]:
        r = self.r
        one, many = self.pair()
        name = self.pick(["config", "counts", "lookup", "mapping", "settings", "info", "options",
                          f"{one}_map", f"{one}_counts", "table"])
        n = r.randint(1, 5)
        keys = r.sample(_WORDS, n)
        vals = [self.pick([self.num(), self.s(), "True", "None", f"[{self.num()}, {self.num()}]",
                           self.pick(_SCALARS)]) for _ in range(n)]
        if r.random() < 0.15:
            items = [f"{self.num()}: {v}" for v in vals]
        else:
            items = [f"{self.s(k)}: {v}" for k, v in zip(keys, vals)]
        if r.random() < 0.6:
            lines = [f"{name} = {{" + ", ".join(items) + "}"]
        else:
            lines = [f"{name} = {{"] + [f"    {x}," for x in items] + ["}"]
        lines += self.pick([[f"for key, value in {name}.items():", "    print(key, value)"],
                            [f"print({name}[{self.s(keys[0])}])"],
                            [f"{name}[{self.s(self.pick(_WORDS))}] = {self.num()}"],
                            [f"{one}_lookup = {{{one}: len({one}) for {one} in {many}}}"],
                            [f"records = [{{{self.s(keys[0])}: {self.num()}}}, {{{self.s(keys[0])}: {self.num()}}}]"],
                            []])
        return lines

    def blk_set_or_string(self) -> list[str]:
        """``x = set()`` ... ``x.add(w)`` vs ``x = ""`` ... ``x += w`` (tasks 3 and 4)."""
        r = self.r
        one, many = self.pair()
        var = "current" if r.random() < 0.3 else self.pick(["seen", "result", "out", "acc", "unique",
                                                             "collected", f"{one}_set", "buf", "text", many + "_seen"])
        kind = self.pick(["set", "set", "str", "str", "list", "int"])
        init = {"set": "set()", "str": self.pick(['""', "''"]), "list": "[]", "int": "0"}[kind]
        use = {"set": f"{var}.add({one})", "str": f"{var} += {one}", "list": f"{var}.append({one})",
               "int": f"{var} += 1"}[kind]
        lines = [f"{var} = {init}"]
        for _ in range(r.choice([0, 0, 1, 2, 3])):  # distractor lines between init and use
            lines.append(self.pick([f"{self.scalar()} = {self.num()}", self.call(), f"{many} = load_{many}()"]))
        if r.random() < 0.7:
            lines.append(f"for {one} in {many}:")
            if r.random() < 0.4:
                lines += [f"    if {self.cond(one)}:", f"        {use}"]
            else:
                lines.append(f"    {use}")
        else:
            lines.append(use)
        lines.append(self.pick([f"print({var})", f"print(len({var}))", f"{many}_out = {var}"]))
        return lines

    def params(self) -> tuple[list[str], str]:
        """Positional params then keyword params (task 2); defaults are mostly ``=None``."""
        r = self.r
        names = r.sample([p[0] for p in _PAIRS] + _SCALARS[:30], 6)
        n_pos, n_kw = r.randint(0, 3), r.choice([0, 0, 1, 2, 3])
        if n_pos + n_kw == 0:
            n_pos = 1
        kw = [f"{x}={self.pick(['None'] * 6 + ['0', 'True', 'False', '[]', self.s()])}"
              for x in names[n_pos:n_pos + n_kw]]
        return names[:n_pos + n_kw], ", ".join(names[:n_pos] + kw)

    def blk_def(self) -> list[str]:
        names, sig = self.params()
        fn = f"{self.pick(_VERBS)}_{self.pair()[self.r.randint(0, 1)]}"
        body = []
        if self.r.random() < 0.3:
            body.append(f'    """{self.pick(_CAPS)} the {self.pick(_WORDS)} [{self.pick(_WORDS)}]."""')
        for x in names[-2:]:
            if self.r.random() < 0.5:
                body += [f"    if {x} is None:", f"        {x} = {self.num()}"]
        ret = self.pick([" + ".join(names), names[0], f"[{names[0]}]", f"({names[0]}, {names[-1]})"])
        body.append(f"    return {ret}")
        call_args = ", ".join(self.num() for _ in names[:max(1, len(names) - 1)])
        return [f"def {fn}({sig}):"] + body + ["", f"{self.scalar()} = {fn}({call_args})"]

    def blk_class(self) -> list[str]:
        r = self.r
        cls = self.pick(_CLASSES)
        names, sig = self.params()
        lines = [f"class {cls}:", f"    def __init__(self, {sig}):"]
        lines += [f"        self.{x} = {x}" for x in names]  # task 5: copy the name after "="
        if r.random() < 0.4:
            attr = self.pick(["items", "count", "history", "seen"])
            lines.append(f"        self.{attr} = {self.pick(['[]', '0', 'set()', '{}'])}")
        if r.random() < 0.5:
            q, fields = self.q(), ", ".join("{self." + x + "}" for x in names)
            lines += ["", "    def __repr__(self):", f"        return f{q}{cls}({fields}){q}"]
        if r.random() < 0.5:
            x = names[0]
            lines += ["", f"    def {self.pick(_VERBS)}(self):", f"        return self.{x}"]
        lines += ["", f"{cls.lower()} = {cls}({', '.join(self.num() for _ in names)})"]
        return lines

    def blk_file(self) -> list[str]:
        """``with open(name, mode) as f`` vs ``f = open(...)``; mode follows the name (tasks 6, 8)."""
        r = self.r
        write = r.random() < 0.5
        base = self.pick(WRITE_FILES if write else READ_FILES)
        if r.random() < 0.85:
            fname = f"{base}.{self.pick(_EXTS)}"
        else:
            fname = f"{self.pick(['out/', 'tmp/'] if write else ['data/', 'in/'])}{base}.txt"
        q = self.q()
        mode = "w" if write else "r"
        fv = self.pick(["f", "f", "fh", "outfile" if write else "infile", "out" if write else "src"])
        enc = f", encoding={q}utf-8{q}" if r.random() < 0.15 else ""
        opener = f"open({q}{fname}{q}, {q}{mode}{q}{enc})"
        one, many = self.pair()
        if write:
            body = self.pick([[f"{fv}.write({self.s()})"], [f"{fv}.write({one})"],
                              [f"for {one} in {many}:", f"    {fv}.write({one} + {q}\\n{q})"],
                              [f"{fv}.write(f{q}{{{self.scalar()}}}\\n{q})"]])
        else:
            body = self.pick([[f"data = {fv}.read()"], [f"{many} = {fv}.readlines()"],
                              [f"for line in {fv}:", f"    {many}.append(line.strip())"],
                              [f"text = {fv}.read().strip()"]])
        if r.random() < 0.65:
            return [f"with {opener} as {fv}:"] + ["    " + b for b in body]
        return [f"{fv} = {opener}"] + body + [f"{fv}.close()"]

    def blk_loop(self) -> list[str]:
        """for / while / enumerate / range (tasks 10, 15, 18)."""
        r = self.r
        one, many = self.pair()
        i = self.pick(["i", "i", "j", "k", "idx", "n"])
        head = self.pick([f"for {one} in {many}:", f"for {i} in range({self.pos_int()}):",
                          f"for {i} in range(len({many})):", f"for {i}, {one} in enumerate({many}):",
                          f"for {i}, {one} in enumerate({many}, 1):",
                          f"for {i} in range({self.pos_int()}, {self.pos_int()}):",
                          f"while {self.pick(_FLAGS)}:", f"while {i} < {self.pos_int()}:", f"while {many}:"])
        lines = [head]
        if head.startswith("while") and " < " in head:
            lines = [f"{i} = 0"] + lines
        body = [self.pick([self.call(), f"{self.scalar()} += {one if 'in ' in head else i}",
                           f"print({i}, {one})" if "enumerate" in head else f"print({one})"])]
        if r.random() < 0.4:  # nested loop: deeper indentation (task 15)
            o2, m2 = self.pair()
            body += [f"for {o2} in {m2}:", f"    {self.call()}"]
        if r.random() < 0.3:
            body += [f"if {self.cond(one)}:", "    " + self.pick(["break", "continue", self.call()])]
        if head.startswith("while") and " < " in head:
            body.append(f"{i} += 1")
        elif head.startswith("while"):
            body.append(self.pick([f"{many}.pop()", f"{head[6:-1]} = False", "break"]))
        return lines + ["    " + b for b in body]

    def blk_predicate(self) -> list[str]:
        """``return True`` / ``return False`` and ``while True:`` (task 20)."""
        r = self.r
        one, many = self.pair()
        fn = self.pick(_PREDICATES)
        if r.random() < 0.5:
            return [f"def {fn}({many}, target):", f"    for {one} in {many}:", f"        if {one} == target:",
                    "            return True", "    return False"]
        return [f"def {fn}({many}):", "    while True:", f"        {one} = {many}.pop()",
                f"        if {one} is None:", "            return False",
                f"        if {self.cond(one)}:", "            return True"]

    def blk_if(self) -> list[str]:
        """if/elif/else, ``==`` vs ``=``, ``flag == True``, ternaries (tasks 11, 13, 17, 19)."""
        r = self.r
        x, y = r.sample(_SCALARS, 2)
        flag = self.pick(_FLAGS)
        choice = r.random()
        if choice < 0.35:
            lines = [f"if {self.cond(x)}:", f"    {y} = {self.s()}"]
            for _ in range(r.choice([0, 1, 1, 2])):
                lines += [f"elif {self.cond(x)}:", f"    {y} = {self.s()}"]
            if r.random() < 0.7:
                lines += ["else:", f"    {y} = {self.s()}"]
            return lines
        if choice < 0.55:
            return [f"{x} = {y}" if r.random() < 0.5 else f"{x} = {self.num()}",
                    f"if {x} == {y}:", f"    {self.call()}"]
        if choice < 0.8:
            val = self.pick(["True", "False"])
            lines = [f"{flag} = {val}"]
            lines += [self.pick([f"if {flag} == True:", f"if {flag} == False:", f"if {flag} == True :",
                                 f"if {flag}:", f"if not {flag}:"]), f"    {self.call()}"]
            if r.random() < 0.3:
                lines += ["else:", f"    {flag} = {self.pick(['True', 'False'])}"]
            return lines
        return [self.pick([f"{y} = {self.s()} if {self.cond(x)} else {self.s()}",
                           f"{y} = {x} if {x} > {self.num()} else {self.num()}",
                           f"print({self.s()} if {flag} else {self.s()})"])]

    def blk_lambda(self) -> list[str]:
        """``f = lambda x: ...`` vs ``def f(x):`` (task 16)."""
        fn = self.pick(["square", "double", "half", "inc", "negate", "area", "key_fn", "score", "norm", "cube"])
        x = self.pick(["x", "n", "v", "item", "value", "a"])
        expr = self.pick([f"{x} * {x}", f"{x} * 2", f"{x} / 2", f"{x} + 1", f"-{x}", f"{x} ** 3", f"abs({x})"])
        one, many = self.pair()
        if self.r.random() < 0.5:
            lines = [f"{fn} = lambda {x}: {expr}"]
        else:
            lines = [f"def {fn}({x}):", f"    return {expr}"]
        lines.append(self.pick([f"print({fn}({self.num()}))", f"{many} = [{fn}({one}) for {one} in {many}]",
                                f"{many}.sort(key=lambda {one}: {one}[{self.r.randint(0, 2)}])"]))
        return lines

    def blk_fstring(self) -> list[str]:
        """``print(f"... {name}")`` vs plain strings (task 12)."""
        q, x = self.q(), self.pick(_SCALARS)
        cap = self.pick(_CAPS)
        return [f"{x} = {self.num()}", self.pick([f"print(f{q}{cap}: {{{x}}}{q})",
                                                   f"print(f{q}{cap} {{{x}}} {self.pick(_WORDS)}{q})",
                                                   f"print({q}{cap}:{q}, {x})",
                                                   f"print({q}{cap} {self.pick(_WORDS)}{q})",
                                                   f"msg = f{q}{{{x}}} {self.pick(_WORDS)}s{q}"])]

    def blk_swap(self) -> list[str]:
        """Tuple swaps (task 14)."""
        a, b = self.r.sample(_SCALARS, 2)
        one, many = self.pair()
        return self.pick([[f"{a}, {b} = {self.num()}, {self.num()}", f"{a}, {b} = {b}, {a}"],
                          [f"{a}, {b} = 0, 1", f"for _ in range({self.pos_int()}):", f"    {a}, {b} = {b}, {a} + {b}"],
                          [f"if {many}[i] > {many}[j]:", f"    {many}[i], {many}[j] = {many}[j], {many}[i]"],
                          [f"{a}, {b} = {b}, {a}"]])

    def comment(self) -> str:
        return self.pick(_COMMENTS).format(w=self.pair()[0], w2=self.pair()[0])

    _BLOCKS = [("blk_calls", 3), ("blk_list", 4), ("blk_dict", 2), ("blk_set_or_string", 2), ("blk_def", 2),
               ("blk_class", 1), ("blk_file", 2), ("blk_loop", 3), ("blk_predicate", 2), ("blk_if", 3),
               ("blk_lambda", 1), ("blk_fstring", 2), ("blk_swap", 1)]

    def program(self) -> str:
        r = self.r
        names, weights = zip(*self._BLOCKS)
        target = r.randint(MIN_LINES, MAX_LINES)
        lines: list[str] = []
        for _ in range(40):
            if len(lines) >= target:
                break
            block = getattr(self, r.choices(names, weights)[0])()
            if r.random() < 0.2:
                block = [self.comment()] + block
            # a blank line before a def/class and after an indented block (style only)
            sep = [""] if lines and (block[0].startswith(("def ", "class ")) or lines[-1].startswith("    ")) else []
            if len(lines) + len(sep) + len(block) > MAX_LINES:
                continue
            lines += sep + block
        while len(lines) < MIN_LINES:
            lines += self.blk_calls()
        if r.random() < 0.1 and len(lines) + 4 <= MAX_LINES:
            lines = ["def main():"] + [("    " + ln) if ln else "" for ln in lines] + \
                    ["", f"if __name__ == {self.s('__main__')}:", "    main()"]
        return "\n".join(ln.rstrip() for ln in lines).strip("\n") + "\n"


def generate_program(rng: random.Random) -> str:
    """One program (5-30 lines, ends with a newline) drawn from ``rng``.

    Args:
        rng: a ``random.Random``; it is advanced.
    Returns:
        The program's source text.
    """
    return _Gen(rng).program()


def generate_programs(n: int, seed: int) -> list[str]:
    """``n`` programs from one ``random.Random(seed)`` stream (same seed -> same list).

    Args:
        n: number of programs.
        seed: the stream's seed.
    Returns:
        A list of ``n`` source texts.

    Example:
        >>> generate_programs(2, seed=1) == generate_programs(2, seed=1)
        True
    """
    rng = random.Random(seed)
    return [generate_program(rng) for _ in range(n)]
