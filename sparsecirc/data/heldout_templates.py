"""Templates of the held-out prompt sets (``heldout``): the three case-study tasks, written independently.

Each template is ``fn(h) -> (prompt_a, prompt_b)`` for a :class:`Hand` ``h`` (a seeded drawer with this
module's own vocabulary -- shop, library, weather, music and lab names that neither task generator nor corpus
generator uses as a list). Variant A's answer is the task's first candidate (``")``, ``]]``, ``.add``), B's the
second. The templates put the decision point in contexts the task generators do not write: string arguments
after keyword arguments and subscripts, docstrings and comments with quotes nearby, strings that contain the
other quote; nested lists opened without a space, of names, constants and strings, inside calls, dict values and
returns; variables bound in methods, ``while`` loops over a stack, ``with`` blocks, after long gaps and decoys.

Example:
    >>> import random
    >>> a, b = QUOTE_TEMPLATES["keyword_help"](Hand(random.Random(0)))
    >>> a.endswith(b[-3:]) and a != b
    True
"""
from __future__ import annotations

import random

IND = "    "
THINGS = [tuple(p.split("/")) for p in """shelf/shelves planet/planets recipe/recipes melody/melodies chord/chords
station/stations voltage/voltages parcel/parcels lantern/lanterns harbour/harbours orbit/orbits
reagent/reagents forecast/forecasts courier/couriers tenant/tenants crate/crates glyph/glyphs""".split()]
WORDS = """aurora harbour violet meadow quartz copper lantern compass harvest saffron glacier tundra cobalt
amber willow falcon ember pebble thunder orchard marble velvet canyon prairie juniper cedar lagoon""".split()
CAPS = [w.capitalize() for w in WORDS[:14]] + ["Shipping", "Archiving", "Restocking", "Forecast", "Inventory"]
HELPERS = "render_label translate gettext_lazy describe announce shout whisper banner caption".split()
FLAGS = "dry-run strict offline fast legacy colour quiet".split()


class Hand:
    """A seeded drawer of held-out fragments (``r``: a ``random.Random``)."""

    def __init__(self, r: random.Random):
        self.r = r

    def pick(self, seq):
        """One element of ``seq``."""
        return self.r.choice(seq)

    def thing(self) -> tuple[str, str]:
        """A (singular, plural) pair of this module's nouns."""
        return self.pick(THINGS)

    def words(self, lo: int = 1, hi: int = 4) -> str:
        """String content, no quotes, ends with a letter."""
        out = [self.pick(WORDS) for _ in range(self.r.randint(lo, hi))]
        if self.r.random() < 0.5:
            out[0] = self.pick(CAPS)
        return " ".join(out)

    def num(self) -> str:
        """A small integer literal."""
        return str(self.r.randint(0, 99))

    def strlit(self) -> str:
        """A one-word string literal in either quote."""
        q = self.pick(['"', "'"])
        return f"{q}{self.pick(WORDS)}{q}"

    def name(self) -> str:
        """A variable name from this module's vocabulary."""
        one, many = self.thing()
        return self.pick([one, many, f"{one}_id", f"n_{many}", f"{self.pick(WORDS)}_{one}"])

    def ctx(self, n: int, indent: str = "") -> list[str]:
        """``n`` plain statements in this module's phrasing (balanced, no strings)."""
        out = []
        for _ in range(n):
            one, many = self.thing()
            out.append(indent + self.pick([
                f"{one}_count = len({many})", f"{many} = sorted({many}, key=lambda t: t.weight)",
                f"{one} = {many}.pop(0)", f"budget = min(budget, {self.num()})", f"{many}.reverse()",
                f"{one}_total += {one}.weight", f"assert {one} is not None", f"{one}.refresh()",
                f"{many} = [t for t in {many} if t.active]", f"stock = {{t.code: t for t in {many}}}",
                f"index = {many}.index({one})", f"{one}.weight *= {self.num()}",
            ]))
        return out


# --- quotes: A closes with `")`, B with `')`; only the last string's opening quote differs ------------------
def _quote_pair(before: list[str], line: str, text: str) -> tuple[str, str]:
    """``line`` ends just before the opening quote; A opens with ``"``, B with ``'``."""
    return "\n".join(before + [f'{line}"{text}']), "\n".join(before + [f"{line}'{text}"])


def _q(h: Hand) -> str:
    return h.pick(['"', "'"])


def q_subscript_key(h, var=None):
    """``labels["key"] = _("...``: an earlier string on the same line, its quote independent of the answer."""
    q = _q(h)
    return _quote_pair(h.ctx(h.r.randint(1, 2)), f"labels[{q}{h.pick(WORDS)}{q}] = _(", h.words())


def q_return_docstring(h, var=None):
    """A method whose docstring has quotes of its own, returning a call on a string."""
    one = h.thing()[0]
    doc = h.pick(['"""Return the {w} label."""', "'''Label for a {w}.'''", '"""Use \'{w}\' or "{w}"."""'])
    before = [f"class {one.capitalize()}View:", f"{IND}def label(self, {one}):",
              IND * 2 + doc.format(w=h.pick(WORDS))] + h.ctx(h.r.randint(0, 1), IND * 2)
    return _quote_pair(before, f"{IND * 2}return self.{h.pick(HELPERS)}(", h.words())


def q_class_attribute(h, var=None):
    """A class body: attributes with calls, the last one a translated string."""
    one = h.thing()[0]
    before = [f"class {one.capitalize()}Form(Form):", f"{IND}{one} = IntegerField(default={h.num()})",
              f"{IND}weight = FloatField(min_value=0)"][: h.r.randint(2, 3)]
    return _quote_pair(before, f"{IND}verbose_name = gettext_lazy(", h.words())


def q_comment_with_quotes(h, var=None):
    """Comments that quote both kinds nearby, then an exception message."""
    w = h.pick(WORDS)
    before = h.ctx(1) + [h.pick([f"# accepts \"{w}\" or '{w}'", f"# don't write \"{w}\" here",
                                 f"# the '{w}' key (\"{w}\" in old files)"])]
    return _quote_pair(before, h.pick(["raise SystemExit(", "sys.exit(", "warnings.warn("]), h.words(2, 5))


def q_keyword_help(h, var=None):
    """``add_argument("--flag", help="...``: the answer follows a keyword argument."""
    q = _q(h)
    before = ["parser = argparse.ArgumentParser()"] + [
        f"parser.add_argument({q}--{f}{q}, action={q}store_true{q})" for f in h.r.sample(FLAGS, h.r.randint(0, 2))]
    return _quote_pair(before, f"parser.add_argument({q}--{h.pick(FLAGS)}{q}, help=", h.words(2, 5))


def q_replace_second(h, var=None):
    """The second argument of ``.replace`` (the first is a string too, its quote independent)."""
    q, one = _q(h), h.thing()[0]
    return _quote_pair(h.ctx(h.r.randint(1, 2)), f"{one}_name = {one}.name.replace({q}{h.pick(WORDS)}{q}, ",
                       h.pick(WORDS))


def q_other_quote_inside(h, var=None):
    """Strings that contain the other quote: ``("don't ...`` vs ``('say "..." ...`` (not a minimal pair)."""
    call = h.pick(["print(", "status.set(", "notify(", "log.warning("])
    before = h.ctx(h.r.randint(1, 2))
    w = h.pick(WORDS)
    a = h.pick([f"don't touch the {w}", f"it's {w} time", f"the {w}'s weight", f"can't find {w}"])
    b = h.pick([f'press "{w}" to continue', f'the "{w}" shelf is full', f'type "{w}" again'])
    return "\n".join(before + [f'{call}"{a}']), "\n".join(before + [f"{call}'{b}"])


def q_deep_block(h, var=None):
    """Three levels deep (``try`` / ``with`` / ``for``), a long message with commas and colons."""
    one, many = h.thing()
    before = ["try:", f"{IND}with lock:", f"{IND * 2}for {one} in {many}:"] + h.ctx(h.r.randint(0, 1), IND * 3)
    text = f"{h.pick(CAPS)}: {h.words(1, 2)}, {h.words(1, 3)} and {h.pick(WORDS)}"
    return _quote_pair(before, f"{IND * 3}log.debug(", text)


QUOTE_TEMPLATES = {f.__name__[2:]: f for f in (q_subscript_key, q_return_docstring, q_class_attribute,
                                              q_comment_with_quotes, q_keyword_help, q_replace_second,
                                              q_other_quote_inside, q_deep_block)}


# --- brackets: A ends inside `[[`, B inside `[`; only that opening differs ---------------------------------
def _elems(h: Hand, kind: str, n: int) -> list[str]:
    make = {"num": h.num, "name": h.name, "const": lambda: h.pick(["True", "False", "None"]),
            "str": h.strlit,
            "float": lambda: f"{h.pick(['', '-'])}{h.r.randint(0, 9)}.{h.r.randint(0, 99)}"}[kind]
    out = [make() for _ in range(n)]
    if out[-1][-1] in "\"'":  # `"]]` is one punctuation run: end on a name
        out[-1] = h.name()
    return out


def _bracket_pair(before: list[str], head: str, elems: list[str], sep: str = ", ") -> tuple[str, str]:
    body = sep.join(elems)
    return "\n".join(before + [f"{head}[[{body}"]), "\n".join(before + [f"{head}[{body}"])


def b_no_space(h, var=None):
    """``x =[[`` (no space before the brackets), numbers."""
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.name()} =", _elems(h, "num", h.r.randint(3, 12)))


def b_names(h, var=None):
    """A list of names."""
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.name()} = ", _elems(h, "name", h.r.randint(2, 8)))


def b_constants(h, var=None):
    """A list of ``True`` / ``False`` / ``None``."""
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.pick(['mask', 'flags', 'seen', 'hits'])} = ",
                         _elems(h, "const", h.r.randint(2, 10)))


def b_strings(h, var=None):
    """Strings, closed by a name (``"]]`` would merge)."""
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.thing()[1]} = ", _elems(h, "str", h.r.randint(2, 6)))


def b_fallback(h, var=None):
    """A conditional default: ``rows = cached if cached else [[``. (Not inside a call such as ``np.array([[``:
    there the tokenizer writes ``]`` then ``])``, so ``]]`` is not the next token.)"""
    other = h.pick(["cached", "loaded", "previous", "given", "override"])
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.name()} = {other} if {other} else ",
                         _elems(h, h.pick(["num", "float"]), h.r.randint(2, 9)))


def b_dict_value(h, var=None):
    """A dict value: ``{"rows": [[``."""
    q = _q(h)
    return _bracket_pair(h.ctx(1), f"payload = {{{q}{h.pick(WORDS)}{q}: {h.num()}, {q}rows{q}: ",
                         _elems(h, "num", h.r.randint(2, 8)))


def b_return(h, var=None):
    """``return [[`` in a function with a docstring."""
    one, many = h.thing()
    before = [f"def {one}_grid({many}):", f'{IND}"""Lay the {many} out in rows."""'] + h.ctx(h.r.randint(0, 2), IND)
    return _bracket_pair(before, f"{IND}return ", _elems(h, h.pick(["name", "num"]), h.r.randint(2, 8)))


def b_float_no_space(h, var=None):
    """``=[[`` without any spaces and negative floats, elements without spaces after commas."""
    return _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.name()}=", _elems(h, "float", h.r.randint(2, 8)), ",")


def b_over_lines(h, var=None):
    """Opened on one line, the elements on the next ones."""
    elems = _elems(h, h.pick(["num", "name", "const"]), h.r.randint(4, 9))
    k = h.r.randint(1, len(elems) - 1)
    a, b = _bracket_pair(h.ctx(h.r.randint(1, 2)), f"{h.name()} = ", [""])
    tail = f"\n{IND}{', '.join(elems[:k])},\n{IND}{', '.join(elems[k:])}"
    return a + tail, b + tail


BRACKET_TEMPLATES = {f.__name__[2:]: f for f in (b_no_space, b_names, b_constants, b_strings, b_fallback,
                                                b_dict_value, b_return, b_float_no_space, b_over_lines)}


# --- variable type: A binds `set()`, B a string; only the initialisation differs -------------------------------
def _type_pair(before: list[str], init_ind: str, var: str, after: list[str], last_ind: str,
               compact: bool = False, q: str = '"') -> tuple[str, str]:
    eq = "=" if compact else " = "
    a = before + [f"{init_ind}{var}{eq}set()"] + after + [last_ind + var]
    b = before + [f"{init_ind}{var}{eq}{q}{q}"] + after + [last_ind + var]
    return "\n".join(a), "\n".join(b)


def v_method(h, var):
    """Bound in a method, used in a loop over an attribute."""
    one, many = h.thing()
    before = [f"class {one.capitalize()}Index:", f"{IND}def build(self):"] + h.ctx(h.r.randint(0, 1), IND * 2)
    after = [f"{IND * 2}for {one} in self.{many}:"] + h.ctx(h.r.randint(0, 1), IND * 3)
    return _type_pair(before, IND * 2, var, after, IND * 3, q=_q(h))


def v_while_stack(h, var):
    """A ``while`` loop popping a stack."""
    one, many = h.thing()
    after = [f"stack = list({many})", "while stack:", f"{IND}{one} = stack.pop()",
             f"{IND}if {one}.weight > {h.num()}:"]
    return _type_pair(h.ctx(h.r.randint(0, 2)), "", var, after, IND * 2, q=_q(h))


def v_with_file(h, var):
    """Lines of an open file, two levels deep."""
    q = _q(h)
    after = [f"with open({q}{h.pick(WORDS)}.txt{q}) as stream:", f"{IND}for raw in stream:",
             f"{IND * 2}word = raw.strip()"]
    return _type_pair(h.ctx(h.r.randint(0, 1)), "", var, after, IND * 2, q=q)


def v_comprehension(h, var):
    """Comprehensions around, the loop over one."""
    one, many = h.thing()
    after = [f"{many} = [t for t in {many} if t.weight > {h.num()}]",
             f"for {one} in [t.code for t in {many}]:"]
    return _type_pair(h.ctx(h.r.randint(0, 1)), "", var, after, IND, q=_q(h))


def v_compact(h, var):
    """No spaces around ``=`` (``var=set()`` / ``var=""``)."""
    one, many = h.thing()
    after = [f"for {one} in {many}:", f"{IND}if {one}:"]
    return _type_pair(h.ctx(h.r.randint(0, 1)), "", var, after, IND * 2, compact=True, q=_q(h))


def v_long_gap(h, var):
    """Four to six lines and a decoy variable between the binding and the use."""
    one, many = h.thing()
    decoy = h.pick(["totals", "names", "marks", "pending"]) + " = " + h.pick(["set()", "[]", "{}", '""'])
    after = [decoy] + h.ctx(h.r.randint(3, 5)) + [f"for {one} in {many}:"]
    return _type_pair([], "", var, after, IND, q=_q(h))


def v_comments(h, var):
    """Comments that name the variable before and after the binding."""
    one, many = h.thing()
    before = [f"# {var} collects what we saw", *h.ctx(1)]
    after = [f"# walk the {many} once", f"for {one} in {many}:"]
    return _type_pair(before, "", var, after, IND, q=_q(h))


def v_if_elif(h, var):
    """An ``if`` / ``elif`` chain inside a function, the use in the ``elif``."""
    one, many = h.thing()
    before = [f"def {h.pick(['tally', 'survey', 'sift', 'census'])}({many}):", f'{IND}"""Tally the {many}."""']
    after = [f"{IND}for {one} in {many}:", f"{IND * 2}if {one} is None:", f"{IND * 3}continue",
             f"{IND * 2}elif {one}.{h.pick(['weight', 'code', 'label'])} {h.pick(['>', '<', '=='])} {h.num()}:"]
    after[1:1] = h.ctx(h.r.randint(0, 1), IND * 2)
    return _type_pair(before, IND, var, after, IND * 3, q=_q(h))


VARTYPE_TEMPLATES = {f.__name__[2:]: f for f in (v_method, v_while_stack, v_with_file, v_comprehension, v_compact,
                                                v_long_gap, v_comments, v_if_elif)}
# held-out variable names for set_or_string (none is in either generator's pool)
VARTYPE_NAMES = """gathered trail picked bag pile accum sink stash harvest_log tally_box batch_text stock_ids
marks_so_far heap_of_words spool""".split()
