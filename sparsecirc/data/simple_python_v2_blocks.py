"""Statement blocks and whole programs of the version-2 simple-Python generator.

:class:`ProgramMaker` extends :class:`~sparsecirc.data.simple_python_v2_exprs.ExprMaker` with one ``blk_*`` method
per group of P1 idioms (digest §6, Table 1). Each returns a list of lines at indentation 0; ``program`` strings
blocks together, sometimes nests one inside a function, loop, ``if`` or method (so every idiom also occurs
indented), adds comments, imports, docstrings and a ``__main__`` guard. Blank lines follow version 1's layout (one
blank line before a ``def`` / ``class`` and after an indented block, never two), so ``return True`` at the end of
a function is followed by the single token ``\\n\\n`` as in the task ``while_return_true``.

The public entry points are in :mod:`sparsecirc.data.simple_python_v2`.
"""
from __future__ import annotations

import re

from sparsecirc.data import simple_python_v2_vocab as V
from sparsecirc.data.simple_python_v2_exprs import ExprMaker

MIN_LINES, MAX_LINES = 6, 60
P_IDIOM_COMPOUND = 0.55  # share of a block's filler statements that are small compound idioms (``if x ==``, ...)
ACC_NAMES = """seen result out acc unique collected buf text visited output found chars joined buffer names keys
letters tags message words parts line summary pending done_set ids vals s res total_str""".split()


def split(lines: list[str]) -> list[str]:
    """``lines`` with any multi-line entries (a literal over several lines) split into single lines."""
    return [ln for x in lines for ln in x.split("\n")]


def indent(lines: list[str], by: str = "    ") -> list[str]:
    """``lines`` (split into single lines) with ``by`` before every non-empty line."""
    return [by + ln if ln else "" for ln in split(lines)]


class ProgramMaker(ExprMaker):
    """Draws blocks and programs (see the module docstring)."""

    def body(self, lo: int = 1, hi: int = 3) -> list[str]:
        """``lo``..``hi`` simple statements, sometimes led by a comment (never only a comment)."""
        out = [self.idiom_compound() if self.chance(P_IDIOM_COMPOUND) else self.stmt()
               for _ in range(self.r.randint(lo, hi))]
        return [self.comment()] + out if out and self.chance(0.05) else out

    def fn_name(self) -> str:
        return f"{self.pick(V.VERBS)}_{self.pick(self.noun())}"

    # --- strings and literals (tasks 1, 7, 9) ---------------------------------------------------------------
    def blk_strings(self) -> list[str]:
        one, many = self.noun()
        out = []
        forms = [  # only the drawn form is built
            self.call_expr, self.call_expr, lambda: self.assign(self.ident(), self.s()),
            lambda: f"raise {self.pick(V.EXCEPTIONS)}({self.s()})",
            lambda: f"assert {self.cond()}, {self.s()}", lambda: f"{self.ident()} = {self.s()} + {self.ident()}",
            lambda: f"print({self.s()} % {self.ident()})",
            lambda: f"print({self.s()}, {self.s()}, sep={self.s(self.pick(V.SEPARATORS))})",
            lambda: f"parser.add_argument({self.s('--' + one)}, help={self.s()})",
            lambda: f"{many} = {self.seq([self.s(self.word()) for _ in range(self.r.randint(1, 6))])}",
            lambda: f"{one}.{self.pick(['lower', 'strip', 'title'])}() == {self.s(self.word())}",
            lambda: f"{self.ident()}[{self.s(self.word())}] = {self.s()}",
            lambda: f"{self.ident()} = {self.s()}.strip()",
        ]
        for _ in range(self.r.randint(1, 4)):
            out.append(self.pick(forms)())
        if self.chance(0.15):  # the first line of a real script often raises outside of any function
            out = [f"if {self.cond()}:", f"    raise {self.pick(V.EXCEPTIONS)}({self.s()})"] + out
        return out

    def blk_list(self) -> list[str]:
        name = self.pick([self.noun()[1], self.ident(), "values", "data", "items"])
        long = self.chance(0.15)  # a long inline list (30-48 elements); rare elsewhere, they cost many tokens
        lines = [self.assign(name, self.seq(self.elems(n=self.r.randint(30, 48)), multiline=False) if long
                             else self.list_literal())]
        lines += self.pick([[], [], [f"{name}.append({self.atom(self.pick(['int', 'str', 'name']))})"],
                            [f"print({name}[{self.r.randint(-1, 3)}])"], [f"for x in {name}:", "    print(x)"],
                            [self.assign(self.ident(), f"{self.pick(['sorted', 'len', 'sum', 'set'])}({name})")]])
        return lines

    def blk_nested(self) -> list[str]:
        """Nested lists: depth 2-4, any element type, any spacing, inline or one row per line."""
        name = self.pick(["grid", "matrix", "board", "table", "rows", "data", "pairs", "values", "nested", "cube",
                          "tree", "layers", "points", "levels", self.ident(), self.noun()[1]])
        depth = self.pick([2, 2, 2, 2, 2, 2, 3, 3, 4])
        lit = self.nested(depth)
        r = self.r.random()
        if r < 0.65:  # odd spacing (`x =[[`, `x=[[`) more often here than in other assignments
            lines = [f"{name}{self.pick(['=', ' =', '= '])}{lit}" if self.chance(0.1) else self.assign(name, lit)]
        elif r < 0.75:
            lines = [f"{name}.append({lit})"]
        elif r < 0.82:
            lines = [f"{self.fn_name()}({lit})"]
        elif r < 0.88:
            lines = [f"{self.ident()}, {name} = {self.value()}, {lit}"]
        elif r < 0.94:
            lines = [self.assign(name, f"[[{self.atom('int')}] * {self.ident()} for _ in range({self.num()})]")]
        else:
            return [f"def {self.fn_name()}():"] + indent([f"return {lit}"])
        lines += self.pick([[], [], [f"print({name}[0][{self.r.randint(-1, 2)}])"], [f"{name}[i][j] = {self.num()}"],
                            [f"for row in {name}:", f"    print({self.pick(['row', 'row[0]', 'len(row)'])})"],
                            [f"{self.ident()} = {name}[-1]"], [f"{name}.append([{self.num()}, {self.num()}])"]])
        return [ln for x in lines for ln in x.split("\n")]

    def blk_dict(self) -> list[str]:
        """Dicts with string keys (``{"a":``) beside lists of strings (``["a",``) (task 7)."""
        name = self.pick(["config", "counts", "lookup", "mapping", "settings", "info", "options", "table", "colors",
                          "defaults", self.ident(), f"{self.noun()[0]}_map", f"{self.noun()[0]}_by_name"])
        if self.chance(0.3):
            lines = [self.assign(name, self.seq([self.s(self.word()) for _ in range(self.r.randint(1, 8))]))]
        else:
            lines = [self.assign(name, self.dict_literal())]
        k = self.s(self.word())
        lines += self.pick([[], [f"for key, value in {name}.items():", "    print(key, value)"],
                            [f"print({name}[{k}])"],
                            [f"{name}[{k}] = {self.value()}"], [f"{self.ident()} = {name}.get({k}, {self.num()})"],
                            [self.assign(self.ident(), f"{{k: v for k, v in {name}.items() if v}}")],
                            [f"if {k} in {name}:", f"    {self.stmt()}"]])
        return [ln for x in lines for ln in x.split("\n")]

    # --- accumulators: set() vs "" (tasks 3, 4) ------------------------------------------------------------
    def blk_accumulate(self) -> list[str]:
        one, many = self.noun()
        var = "current" if self.chance(0.3) else self.pick(ACC_NAMES + [f"{one}_set", f"{many}_seen", f"all_{many}"])
        kind = self.pick(["set", "set", "set", "str", "str", "str", "str", "list", "int", "dict"])
        init = {"set": "set()", "str": self.pick(['""', "''", '""']), "list": "[]", "int": "0", "dict": "{}"}[kind]
        item = self.pick([one, one, f"{one}.lower()", f"str({one})", f"{one}[0]", f"{one}.strip()",
                          f"{one}.{self.pick(['name', 'id', 'key'])}"])
        use = {"set": f".add({item})", "str": self.pick([f" += {item}", f" += {item} + {self.s(' ')}",
                                                           f" += {self.s(self.pick(V.SEPARATORS))}"]),
               "list": f".append({item})", "int": " += 1", "dict": f"[{item}] = {self.num()}"}[kind]
        method = self.chance(0.15)
        v = f"self.{var}" if method else var
        lines = [self.assign(v, init)]
        lines += self.body(0, 3) if self.chance(0.6) else []
        loop = self.pick([f"for {one} in {many}:", f"for {one} in {self.ident()}.{self.pick(['values', 'keys'])}():",
                          f"for {one} in sorted({many}):", f"for i, {one} in enumerate({many}):", ""])
        if loop:
            lines.append(loop)
            inner = [f"if {self.cond(one)}:", f"    {v}{use}"] if self.chance(0.4) else [f"{v}{use}"]
            lines += indent(([self.stmt()] if self.chance(0.3) else []) + inner)
        else:
            lines.append(f"{v}{use}")
        lines.append(self.pick([f"print({v})", f"print(len({v}))", f"return {v}", self.assign(self.ident(), v),
                                f"return sorted({v})"]))
        if method:
            head = [f"class {self.pick(V.CLASSES)}:", f"    def {self.fn_name()}(self, {many}):"]
            return head + indent(lines, "        ")
        if lines[-1].startswith("return") or self.chance(0.3):
            return [f"def {self.fn_name()}({many}):"] + indent(lines)
        return lines

    # --- functions, classes (tasks 2, 5, 16) ---------------------------------------------------------------
    def signature(self, names: list[str]) -> str:
        """Positional parameters, then ones with defaults (mostly ``=None``), sometimes annotated, ``*args``."""
        n_pos = self.r.randint(0, len(names) - 1) if self.chance(0.7) else len(names)  # mostly some defaults
        parts = []
        for i, x in enumerate(names):
            ann = f": {self.pick(['int', 'str', 'float', 'list', 'dict', 'bool'])}" if self.chance(0.12) else ""
            if i < n_pos:
                parts.append(x + ann)
            else:
                d = self.pick(["None"] * 9 + [self.num(), self.s(), "True", "False", "()", "0", self.s(self.word())])
                parts.append(f"{x}{ann} = {d}" if ann else f"{x}={d}")
        free = [x for x in ("args", "rest", "extra", "kwargs", "options", "kw") if x not in names]
        if self.chance(0.1):
            parts.insert(n_pos, "*" + free[0] if self.chance(0.5) else "*")
            if parts[-1] == "*":
                parts.append(f"{free[1]}=None")
        if self.chance(0.08):
            parts.append("**" + free[2])
        return self.comma().join(parts) if self.chance(0.3) else ", ".join(parts)

    def blk_def(self) -> list[str]:
        names = self.idents(self.r.randint(1, 5))
        fn = self.fn_name()
        lines = [f"def {fn}({self.signature(names)}):"]
        if self.chance(0.3):
            lines.append(f'    """{self.pick(V.DOC_LINES).format(w=self.noun()[0], w2=self.noun()[0])}"""')
        for x in names[-2:]:
            if self.chance(0.3):
                lines += [f"    if {x} is None:", f"        {self.assign(x, self.value())}"]
        lines += indent(self.body(0, 3))
        lines.append("    return " + self.pick([" + ".join(names), names[0], f"[{names[0]}]",
                                               f"({names[0]}, {names[-1]})", self.value(),
                                               f"{{{self.s(self.word())}: {names[0]}}}"]))
        call = f"{fn}({', '.join(self.num() for _ in names[:self.r.randint(1, len(names))])})"
        return lines + self.pick([[], ["", self.assign(self.ident(), call)], ["", f"print({call})"]])

    def blk_class(self) -> list[str]:
        """``self.x = x`` lines in varied orders, with extra attributes, methods and instances (task 5)."""
        cls = self.pick(V.CLASSES)
        names = self.idents(self.r.randint(1, 5))
        base = self.pick(["", "", "", "(object)", f"({self.pick(V.CLASSES)})", "(Exception)"])
        lines = [f"class {cls}{base}:"]
        if self.chance(0.3):
            lines += [f'    """A {cls.lower()} with {", ".join(names)}."""', ""]
        if self.chance(0.1):
            lines += [f"    {self.assign(self.ident().upper(), self.num())}", ""]
        lines.append(f"    def __init__(self, {self.signature(names)}):")
        if base not in ("", "(object)") and self.chance(0.4):
            lines.append("        super().__init__()")
        order = list(names)
        if self.chance(0.35):
            self.r.shuffle(order)
        for x in order:
            lines.append("        " + self.pick([f"self.{x} = {x}"] * 8 + [f"self._{x} = {x}", f"self.{x} = {x} or []",
                                                                         f"self.{x} = list({x})"]))
            if self.chance(0.12):
                lines.append(f"        self.{self.ident()} = {self.pick(['[]', '0', 'set()', '{}', 'None', self.s()])}")
        x, q = self.pick(names), self.q()
        for _ in range(self.r.choice([0, 1, 1, 2])):
            lines += [""] + self.pick([
                ["    def __repr__(self):",
                 f"        return f{q}{cls}({', '.join('{self.' + n + '}' for n in names)}){q}"],
                ["    @property", f"    def {x}_value(self):", f"        return self.{x}"],
                [f"    def {self.fn_name()}(self, {self.ident()}_):", f"        self.{x} = {self.ident()}_",
                 f"        return self.{x}"],
                [f"    def {self.pick(V.PREDICATES)}(self):", f"        return self.{x} is not None"]])
        return lines + self.pick([[], ["", self.assign(cls.lower(),
                                                                 f"{cls}({', '.join(self.value() for _ in names)})")]])

    def blk_lambda(self) -> list[str]:
        fn = self.pick(["square", "double", "half", "inc", "negate", "area", "key_fn", "score", "norm", "cube",
                        "to_upper", "is_big", "get_key", "by_len", self.fn_name()])
        ps = self.idents(self.r.randint(1, 3)) if self.chance(0.3) else [self.pick(["x", "n", "v", "s", "item", "p"])]
        x = ps[0]
        expr = self.pick([f"{x} * {x}", f"{x} * 2", f"{x} / 2", f"{x} + 1", f"-{x}", f"{x} ** 3", f"abs({x})",
                          f"{x}[{self.r.randint(0, 2)}]", f"len({x})", f"{x}.upper()", f"{x} > {self.num()}",
                          " + ".join(ps)])
        lines = [self.pick([f"{fn} = lambda {', '.join(ps)}: {expr}",
                            f"def {fn}({', '.join(ps)}):\n    return {expr}"])]
        one, many = self.noun()
        lines.append(self.pick([f"print({fn}({', '.join(self.num() for _ in ps)}))",
                                f"{many}.sort(key=lambda {one}: {one}[{self.r.randint(0, 2)}])",
                                f"{many} = sorted({many}, key=lambda {one}: "
                                f"{self.pick([f'-{one}', f'len({one})', f'{one}.name'])})",
                                f"{many} = list(map(lambda {one}: {one} * 2, {many}))",
                                f"{many} = [{one} for {one} in {many} if {one}]", ""]))
        return [ln for x in lines for ln in x.split("\n") if x]

    # --- files (tasks 6, 8) ---------------------------------------------------------------------------------
    def blk_file(self) -> list[str]:
        kind = self.pick(["r", "r", "r", "w", "w", "w", "a"])
        base = self.pick({"r": V.READ_FILES, "w": V.WRITE_FILES, "a": V.APPEND_FILES}[kind])
        fname = self.pick(["", "", "", self.pick(V.DIRS)]) + base + "." + self.pick(V.EXTS)
        q = self.q()
        path = self.pick([f"{q}{fname}{q}"] * 5 + [
            f"os.path.join({self.s(self.pick(V.DIRS).strip('./') or 'data')}, {q}{fname}{q})",
                                                    f"f{q}{{{self.ident()}}}_{fname}{q}"])
        pre = []
        if self.chance(0.2):
            var = self.pick(["path", "filename", "fname", f"{base}_path", f"{base}_file"])
            pre, path = [self.assign(var, path)], var
        mode = kind + self.pick([""] * 12 + ["b", "t", "+"]) if kind != "r" or self.chance(0.85) else ""
        opts = self.pick(["", "", "", f", encoding={q}utf-8{q}", f", newline={q}{q}"])
        if self.chance(0.15) and mode:
            opener = f"open({path}, mode={q}{mode}{q}{opts})"
        else:
            opener = f"open({path}{f', {q}{mode}{q}' if mode else ''}{opts})"
        fv = self.pick(["f", "f", "f", "fh", "fp", "handle",
                        "out" if kind != "r" else "src", "outfile" if kind != "r" else "infile"])
        one, many = self.noun()
        if kind == "r":
            body = self.pick([[self.assign("data", f"{fv}.read()")], [self.assign(many, f"{fv}.readlines()")],
                              [f"for line in {fv}:", f"    {many}.append(line.strip())"],
                              [self.assign(many, f"json.load({fv})")],
                              [f"reader = csv.reader({fv})", "for row in reader:", "    print(row)"],
                              [self.assign("text", f"{fv}.read().{self.pick(['strip', 'lower', 'splitlines'])}()")]])
        else:
            body = self.pick([[f"{fv}.write({self.s()})"], [f"{fv}.write({one})"],
                              [f"for {one} in {many}:", f"    {fv}.write({one} + {q}\\n{q})"],
                              [f"{fv}.write(f{q}{{{self.ident()}}}\\n{q})"], [f"json.dump({many}, {fv})"],
                              [f"print({self.s()}, file={fv})"], [f"{fv}.writelines({many})"]])
        if self.chance(0.7):
            lines = [f"with {opener} as {fv}:"] + indent(body)
        else:
            lines = [self.assign(fv, opener)] + body + [f"{fv}.close()"]
        return pre + lines

    # --- loops (tasks 10, 15, 18) ---------------------------------------------------------------------------
    def for_head(self) -> str:
        one, many = self.noun()
        i = self.pick(["i", "i", "j", "k", "idx", "n", "pos", "index", "row", "col"])
        stop = self.pick([self.num(), f"len({many})", self.ident(), f"{self.ident()} + 1"])
        return self.pick([
            f"for {one} in {many}:", f"for {one} in {many}:", f"for {i} in range({stop}):",
            f"for {i} in range({self.r.randint(0, 5)}, {stop}):", f"for {i} in range({stop}, -1, -1):",
            f"for {i}, {one} in enumerate({many}):",
            f"for {i}, {one} in enumerate({many}, {self.pick(['1', 'start=1'])}):",
            f"for {one}, {self.ident()} in zip({many}, {self.ident()}):", f"for key, value in {self.ident()}.items():",
            f"for {one} in sorted({many}):", f"for {one} in reversed({many}):", f"for _ in range({stop}):",
            f"for {i}, ({one}, {self.ident()}) in enumerate({self.ident()}):", f"for {one} in {self.fn_name()}():"])

    def blk_for(self) -> list[str]:
        lines = [self.for_head()]
        body = self.body(1, 3)
        if self.chance(0.4):  # nested loop: deeper indentation (task 15)
            body += [self.for_head()] + indent(self.body(1, 2))
        if self.chance(0.25):
            body += [f"if {self.cond()}:", "    " + self.pick(["break", "continue", self.stmt()])]
        lines += indent(body)
        if self.chance(0.06):
            lines += ["else:", "    " + self.stmt()]
        return lines

    def blk_while(self) -> list[str]:
        v = self.pick(["queue", "stack", "pending", "todo", "frontier", "remaining", "nodes", "items", "buffer",
                       self.noun()[1], self.pick(V.FLAGS)])
        i = self.pick(["i", "count", "n", "step", "attempts", "tries"])
        n = self.pick([self.num(), "len(items)", "limit"])
        form = self.pick([0, 0, 0, 1, 2, 3, 3, 3, 4])
        if form == 0:
            return [self.assign(v, self.list_literal(n=self.r.randint(0, 4))), f"while {v}:",
                    f"    {self.ident()} = {v}.pop({self.pick(['', '0', '-1'])})"] + indent(self.body(0, 2))
        if form == 1:
            return [self.assign(i, "0"), f"while {i} < {n}:"] + indent(self.body(1, 2)) + [f"    {i} += 1"]
        if form == 2:
            flag = self.pick(V.FLAGS)
            inner = self.body(0, 2) + [f"if {self.cond()}:", f"    {flag} = True"]
            return [self.assign(flag, "False"), f"while not {flag}:"] + indent(inner)
        if form == 3:
            return ["while True:"] + indent(self.body(1, 2) + [f"if {self.cond()}:", "    break"])
        node = self.pick(["node", "cur", "current", "head", "p"])
        return [f"while {node} is not None:"] + indent(self.body(0, 1) + [f"{node} = {node}.next"])

    # --- conditions (tasks 11, 13, 17, 19, 20) ---------------------------------------------------------------
    def blk_if(self) -> list[str]:
        x = self.ident()
        lines = []
        if self.chance(0.4):
            lines.append(self.assign(x, self.pick([self.value(), self.ident()])))
        lines += [f"if {self.cond(x)}:"] + indent(self.body(1, 2))
        for _ in range(self.r.choice([0, 0, 1, 1, 2, 3])):
            lines += [f"elif {self.cond(x if self.chance(0.8) else None)}:"] + indent(self.body(1, 2))
        if self.chance(0.55):
            lines += ["else:"] + indent(self.body(1, 2))
        return lines

    def blk_ternary(self) -> list[str]:
        x, y = self.idents(2)
        c = self.pick([self.cond(x), self.pick(V.FLAGS)])
        a, b = self.pick([self.s(), x, self.num(), "None"]), self.pick([self.s(), y, self.num(), "None"])
        return self.pick([[self.assign(y, f"{a} if {c} else {b}")], [f"print({a} if {c} else {b})"],
                          [f"def {self.fn_name()}({x}):", f"    return {a} if {c} else {b}"],
                          [self.assign(y, f"[{x} if {x} > 0 else 0 for {x} in {self.noun()[1]}]")],
                          [self.assign(y, f"{self.fn_name()}({a} if {c} else {b})")]])

    def blk_flag(self) -> list[str]:
        flag, val = self.pick(V.FLAGS), self.pick(["True", "False"])
        head = self.pick([f"if {flag} == {val}:", f"if {flag} == True:", f"if {flag} == False:", f"if {flag} == True :",
                          f"if {flag} is {val}:", f"if {flag}:", f"if not {flag}:", f"while {flag} == {val}:"])
        lines = [self.assign(flag, val)] + self.body(0, 2) + [head] + indent(self.body(1, 2))
        if head.startswith("while"):
            lines.append(f"    {flag} = {'False' if val == 'True' else 'True'}")
        elif self.chance(0.3):
            lines += ["else:", f"    {self.assign(flag, self.pick(['True', 'False', f'not {flag}']))}"]
        return lines

    def blk_predicate(self) -> list[str]:
        """``while True:`` loops and ``return True`` at the end of a function (task 20)."""
        one, many = self.noun()
        fn = self.pick(V.PREDICATES)
        arg = self.pick([many, f"{many}, target", f"{one}", f"self, {one}"])
        head = [f"def {fn}({arg}):"]
        if self.chance(0.25):
            head.append(f'    """Return True if the {one} is {self.word()}."""')
        if self.chance(0.5):
            return head + [f"    for {one} in {many}:", f"        if {self.cond(one)}:", "            return "
                           + self.pick(["True", "False"]), "    return " + self.pick(["False", "True"])]
        if self.chance(0.5):
            return head + ["    while True:"] + indent(self.body(0, 1) + [f"if {self.cond()}:", "    return False"],
                                                      "        ") + \
                ["        " + self.stmt(), "    return True"]
        return head + indent(self.body(0, 2) + [f"if {self.cond()}:", "    return False", "return True"])

    def blk_swap(self) -> list[str]:
        """Tuple swaps in both orders after ``a, b = ...`` (task 14)."""
        a, b = self.swap_names()
        init = self.pick([f"{a}, {b} = {self.num()}, {self.num()}", f"{a} = {self.value()}\n{b} = {self.value()}",
                          f"{a}, {b} = {self.ident()}, {self.ident()}"])
        swap = self.pick([f"{a}, {b} = {b}, {a}", f"{b}, {a} = {a}, {b}"])
        lines = [init] + self.body(0, 1)
        form = self.r.randint(0, 5)
        if form <= 2:
            lines.append(swap)
        elif form == 3:
            lines += [f"for _ in range({self.num()}):", f"    {a}, {b} = {b}, {a} + {b}"]
        elif form == 4:
            xs = self.noun()[1]
            lines += [f"if {xs}[{a}] > {xs}[{b}]:", f"    {xs}[{a}], {xs}[{b}] = {xs}[{b}], {xs}[{a}]"]
        else:
            lines += [f"if {a} > {b}:", f"    {swap}"]
        return [ln for x in lines for ln in x.split("\n")]

    def blk_fstring(self) -> list[str]:
        """f-strings with ``{x}``, format specs and attributes, beside plain strings (task 12)."""
        x, q = self.ident(), self.q()
        o = "'" if q == '"' else '"'
        field = self.pick([x, x, f"{x}:.2f", f"{x}!r", f"{x}:>{self.r.randint(2, 12)}", f"len({x})", f"{x}.name",
                           f"{x}[{o}{self.word()}{o}]", f"{x} + 1", f"{x}:,"])
        cap = self.pick(V.CAPS) + self.pick(["", ":", " " + self.word(), " =", " is", " of"])
        text = self.pick([f"{cap} {{{field}}}", f"{{{field}}} {self.word()}s",
                          f"{cap} {{{field}}} and {{{self.ident()}}}",
                          f"[{{{field}}}]", f"{cap}={{{field}}}"])
        call = self.pick(["print(", "print(", "log(", "logger.info(", "lines.append(",
                          "return ", "msg = ", "raise ValueError("])
        end = "" if call in ("return ", "msg = ") else ")"
        lines = [self.assign(x, self.value())]
        lines.append(f"{call}f{q}{text}{q}{end}" if self.chance(0.6) else f"{call}{q}{cap}{q}{end}")
        if call == "return ":
            return [f"def {self.fn_name()}({x}):", f"    {lines[-1]}"]
        return lines

    def blk_try(self) -> list[str]:
        e = self.pick(V.EXCEPTIONS)
        lines = ["try:"] + indent(self.body(1, 2)) + [f"except {e}{self.pick(['', ' as e', ' as err'])}:"]
        lines += indent(self.pick([["pass"], [self.call_expr()], [self.stmt()], ["raise"]]))
        if self.chance(0.2):
            lines += ["else:"] + indent(self.body(1, 1))
        if self.chance(0.2):
            lines += ["finally:"] + indent([self.call_expr()])
        return lines

    def blk_comp(self) -> list[str]:
        one, many = self.noun()
        cond = f" if {self.cond(one)}" if self.chance(0.4) else ""
        expr = self.pick([one, f"{one} * 2", f"{one}.strip()", f"str({one})", f"({one}, {self.ident()})"])
        return [self.assign(self.ident(), self.pick([f"[{expr} for {one} in {many}{cond}]",
                                                     f"{{{expr} for {one} in {many}{cond}}}",
                                                     f"{{{one}: {expr} for {one} in {many}{cond}}}",
                                                     f"sum({one} for {one} in {many}{cond})"]))]

    # relative block frequencies, fitted (version 3) so that every task idiom is at least as dense per token as in
    # version 1's training corpus (see simple_python_v2's docstring)
    BLOCKS = [("blk_strings", 2.2), ("blk_list", 2), ("blk_nested", 4.7), ("blk_dict", 7.5), ("blk_accumulate", 2.6),
              ("blk_def", 4.5), ("blk_class", 1.2), ("blk_lambda", 1.5), ("blk_file", 3.2), ("blk_for", 4.3),
              ("blk_while", 3.9), ("blk_if", 2.6), ("blk_ternary", 1.7), ("blk_flag", 2.7), ("blk_predicate", 2.4),
              ("blk_swap", 4), ("blk_fstring", 2.1), ("blk_try", 0.6), ("blk_comp", 1.2)]

    def wrap(self, block: list[str]) -> list[str]:
        """``block`` nested in a function, loop, ``if``, ``with`` or method (the idiom, indented)."""
        r = self.r.random()
        if r < 0.4:
            return [f"def {self.fn_name()}({', '.join(self.idents(self.r.randint(0, 3)))}):"] + indent(block)
        if r < 0.6:
            return [self.for_head()] + indent(block)
        if r < 0.75:
            return [f"if {self.cond()}:"] + indent(block)
        if r < 0.85:
            return [f"class {self.pick(V.CLASSES)}:", f"    def {self.fn_name()}(self):"] + indent(block, "        ")
        ctx = self.pick(['lock', 'timer()', 'ctx', 'self.lock', 'open(path)'])
        return [f"with {ctx}{self.pick(['', ' as f'])}:"] + indent(block)

    def header(self) -> list[str]:
        lines = []
        if self.chance(0.08):
            lines += [f'"""{self.pick(V.DOC_LINES).format(w=self.noun()[0], w2=self.noun()[0])}"""', ""]
        if self.chance(0.2):
            mods = self.r.sample(V.MODULES, self.r.randint(1, 3))
            lines += [f"import {m}" for m in sorted(mods)]
            lines += ([self.pick(V.FROM_IMPORTS)] if self.chance(0.3) else []) + [""]
        if self.chance(0.06):
            lines += [self.assign(self.ident().upper(), self.pick([self.num(), self.s()]))
                      for _ in range(self.r.randint(1, 3))] + [""]
        return lines

    def program(self) -> str:
        names, weights = zip(*self.BLOCKS)
        target = self.pick([self.r.randint(MIN_LINES, 20), self.r.randint(10, 35), self.r.randint(20, MAX_LINES - 10)])
        lines = self.header()
        n_blocks = 0
        for _ in range(60):
            if len(lines) >= target and n_blocks >= 2:
                break
            block = split(getattr(self, self.r.choices(names, weights)[0])())
            if self.chance(0.15):
                block = self.wrap(block)
            if self.chance(0.06):
                block = [self.comment()] + block
            sep = [""] if lines and lines[-1] and (block[0].startswith(("def ", "class ", "@")) or lines[-1][0] == " "
                                                  or self.chance(0.1)) else []
            if len(lines) + len(sep) + len(block) > MAX_LINES:
                continue
            lines += sep + block
            n_blocks += 1
        while len(lines) < MIN_LINES:
            lines += self.body(1, 2)
        if self.chance(0.08) and len(lines) + 4 <= MAX_LINES:
            lines = ["def main():"] + indent(lines) + ["", f"if __name__ == {self.s('__main__')}:", "    main()"]
        text = "\n".join(ln.rstrip() for ln in lines).strip("\n") + "\n"
        return re.sub(r"\n{3,}", "\n\n", text)  # never two blank lines in a row
