"""Hypothesis strategies for valid rulebooks: ASTs, clean texts and noisy texts.

Reusable by any test (load this file by path, as `tests/property/test_roundtrip.py`
does, so that it cannot collide with another `strategies` module):

- `rulebooks()`: a valid `Rulebook` AST (it checks without errors): an optional
  name, scales, file-wide sets and per-property overrides (trapezoid, triangle,
  gaussian; some overrides `raw`, in the property's units), an optional
  threshold, 0-3 defect classes in one or two `class` lines, 0-3 named
  conditions (`define`, each may use the ones before it) and 1-6 rules
  concluding `anomalous` or a class, whose conditions nest AND, OR and NOT (up
  to depth 3) over terms with hedges and `not` and defined names, the rules
  interleaved with the other statements. Breakpoints lie on a 0.05 grid, as
  experts write them; numbers come in several spellings (`0.5`, `0.50`, `.5`).
  Every span is a dummy (`SPAN`). The details come from one drawn seed through
  `random_rulebook(rnd, rules)`, which benchmarks can call directly.
- `noisy_texts()`: `(rulebook, text)`: the same rulebook written by an
  independent renderer (not `kistrules.formatter`) with random keyword/name
  case, whitespace, line breaks, redundant parentheses and, optionally,
  comments, so that `fmt` can be checked to make them all alike.
- `same_structure(a, b)` / `strip_spans(dump)`: compare ASTs ignoring spans,
  verbatim spellings (`text`), comments, source and path.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from kistrules.ast import (
    And,
    ClassDef,
    ConditionRef,
    Define,
    Identifier,
    MembershipCall,
    Not,
    Number,
    Or,
    Rule,
    Rulebook,
    RulebookName,
    ScaleDef,
    SetDef,
    Term,
    ThresholdDef,
)
from kistrules.builtins import BUILTIN_SETS, HEDGES, PROPERTIES
from kistrules.definitions import condition_size, definition_sizes, dependency_order, too_large
from kistrules.span import Span

SPAN = Span(path="gen.rules", start=0, end=0, line=1, column=1, end_line=1, end_column=1)
PROPERTY_NAMES = sorted(PROPERTIES)
NEW_SET_NAMES = ["tiny", "dark", "odd", "wide", "spot"]
RULE_NAMES = ["large_dark", "dark_slender", "r1", "flat", "speck", "x_2", "edge"]
CLASS_NAMES = ["blowhole", "Crack", "fray", "break_2", "low", "dark_slender"]
# Condition names may repeat rule and set names: they live apart.
DEFINE_NAMES = ["dark_spot", "flat", "near_edge", "c_1", "dark"]
GRID = [i / 20 for i in range(21)]


# --- comparison ------------------------------------------------------------------


_DROP = {"span", "text", "source", "path", "comments"}


def strip_spans(dump: Any) -> Any:
    """A `model_dump()` without spans, verbatim spellings, comments, source or path."""
    if isinstance(dump, dict):
        return {k: strip_spans(v) for k, v in dump.items() if k not in _DROP}
    if isinstance(dump, (list, tuple)):
        return [strip_spans(v) for v in dump]
    return dump


def same_structure(a: Any, b: Any) -> bool:
    """Whether two AST nodes are equal up to spans, spellings and comments."""
    return strip_spans(a.model_dump()) == strip_spans(b.model_dump())


# --- building blocks ----------------------------------------------------------------


def ident(name: str) -> Identifier:
    return Identifier(span=SPAN, name=name.lower(), text=name)


def number(text: str) -> Number:
    return Number(span=SPAN, value=float(text), text=text)


def number_text(rnd: random.Random, values: list[float]) -> str:
    """One of `values` in one of the spellings an expert might use."""
    value = rnd.choice(values)
    spellings = [repr(value), f"{value:g}"]
    if value < 1 and value != 0:
        spellings += [f"{value:g}".replace("0.", ".", 1), f"{value:.3f}"]
    if value == int(value):
        spellings += [str(int(value)), f"{int(value)}.0"]
    return rnd.choice(spellings)


def membership_call(rnd: random.Random, gamma: float | None = None) -> MembershipCall:
    """A call over standardised values; with `gamma`, `raw` in the property's units."""
    kind = rnd.choice(["trapezoid", "triangle", "gaussian"])
    if kind == "gaussian":
        params = [rnd.choice(GRID), rnd.choice(GRID[1:])]
    else:
        params = sorted(rnd.choice(GRID) for _ in range(4 if kind == "trapezoid" else 3))
    if gamma is None:
        args = tuple(number(number_text(rnd, [p])) for p in params)
    else:  # spelt exactly: 0 and gamma stay exact, so no breakpoint leaves [0, 1]
        raw = [round(p * gamma, 6) for p in params]
        args = tuple(number(f"{p:g}" if float(f"{p:g}") == p else repr(p)) for p in raw)
    return MembershipCall(span=SPAN, function=ident(kind), args=args, raw=gamma is not None)


def term(rnd: random.Random, usable: dict[str, list[str]]) -> Term:
    prop = rnd.choice(sorted(usable))
    hedges = [rnd.choice(sorted(HEDGES)) for _ in range(rnd.choice([0, 0, 1, 2]))]
    return Term(
        span=SPAN,
        property=ident(prop),
        negated=rnd.random() < 0.3,
        hedges=tuple(ident(h) for h in hedges),
        set=ident(rnd.choice(usable[prop])),
    )


def condition(
    rnd: random.Random,
    usable: dict[str, list[str]],
    depth: int = 0,
    names: tuple[str, ...] = (),
    max_depth: int = 3,
):
    """A random condition over `usable` (property -> set names), nested up to `max_depth`;
    a leaf is sometimes one of the defined `names`."""
    if depth >= max_depth or rnd.randrange(3) == 0:
        if names and rnd.random() < 0.25:
            return ConditionRef(span=SPAN, name=ident(rnd.choice(names)))
        return term(rnd, usable)
    kind = rnd.choice(["and", "or", "not"])
    if kind == "not":
        return Not(span=SPAN, operand=condition(rnd, usable, depth + 1, names, max_depth))
    operands = tuple(
        condition(rnd, usable, depth + 1, names, max_depth) for _ in range(rnd.choice([2, 2, 3]))
    )
    return (And if kind == "and" else Or)(span=SPAN, operands=operands)


def _small_enough(cond, sizes) -> bool:
    """Whether a condition stays below E023's limits once its names are written out."""
    return not too_large(condition_size(cond, sizes))


def random_rulebook(rnd: random.Random, rules: int) -> Rulebook:
    """A valid rulebook AST with `rules` rules (see the module docstring)."""
    statements: list = []
    if rnd.random() < 0.5:
        name = rnd.choice(["magnetic tile", "Kolektor", "wood & leather", ""])
        statements.append(RulebookName(span=SPAN, name=name))
    props = rnd.sample(PROPERTY_NAMES, rnd.randint(1, 4))
    gammas = {p: PROPERTIES[p].default_scale for p in props}
    for prop in rnd.sample(props, rnd.randint(0, len(props))):
        value = number_text(rnd, [0.05, 1.0, 40.0, 100.0, 187.5, 255.0, 0.5])
        statements.append(ScaleDef(span=SPAN, property=ident(prop), value=number(value)))
        gammas[prop] = float(value)
    names = NEW_SET_NAMES + sorted(BUILTIN_SETS)
    shared = rnd.sample(names, rnd.randint(0, 3))
    for name in shared:
        statements.append(
            SetDef(span=SPAN, property=None, name=ident(name), function=membership_call(rnd))
        )
    pairs = [(p, n) for p in props for n in [*NEW_SET_NAMES, "low", "high"]]
    overrides = rnd.sample(pairs, rnd.randint(0, 3))
    for prop, name in overrides:
        gamma = gammas[prop] if rnd.random() < 0.3 else None
        call = membership_call(rnd, gamma)
        statements.append(SetDef(span=SPAN, property=ident(prop), name=ident(name), function=call))
    if rnd.random() < 0.5:
        threshold = number_text(rnd, [0.0, 0.5, 0.8, 0.9, 1.0])
        statements.append(ThresholdDef(span=SPAN, value=number(threshold)))
    classes = rnd.sample(CLASS_NAMES, rnd.choice([0, 0, 1, 2, 3]))
    cut = rnd.randint(0, len(classes))
    for part in (classes[:cut], classes[cut:]):
        if part:
            statements.append(ClassDef(span=SPAN, names=tuple(ident(c) for c in part)))
    usable = {
        p: sorted(set(BUILTIN_SETS) | set(shared) | {n for q, n in overrides if q == p})
        for p in props
    }
    defines: list[Define] = []
    for name in rnd.sample(DEFINE_NAMES, rnd.choice([0, 0, 1, 2, 3])):
        earlier = tuple(d.name.name for d in defines)
        body = condition(rnd, usable, names=earlier, max_depth=2)
        defines.append(Define(span=SPAN, name=ident(name), condition=body))
    statements += defines
    definitions = {d.name.name: d for d in defines}
    sizes = definition_sizes(definitions, dependency_order(definitions)[0])
    names = tuple(definitions) if all(not too_large(z) for z in sizes.values()) else ()
    labels = rnd.sample(RULE_NAMES, min(rules, len(RULE_NAMES)))
    made = []
    for position in range(1, rules + 1):
        label = labels[position - 1] if position - 1 < len(labels) and rnd.random() < 0.6 else None
        truth = number_text(rnd, [0.5, 0.8, 0.9, 1.0, 0.25]) if rnd.random() < 0.7 else None
        cond = condition(rnd, usable, names=names)
        if not _small_enough(cond, sizes):
            cond = condition(rnd, usable)
        made.append(
            Rule(
                span=SPAN,
                label=ident(label) if label else None,
                condition=cond,
                conclusion=ident(rnd.choice(classes)) if classes and rnd.random() < 0.7 else None,
                truth=number(truth) if truth is not None else None,
                position=position,
            )
        )
    # rules are interleaved with the other statements: fmt must sort them out
    slots = list(range(len(statements) + len(made)))
    rnd.shuffle(slots)
    rule_slots, other_slots = sorted(slots[: len(made)]), sorted(slots[len(made) :])
    merged: list = [None] * len(slots)
    for slot, r in zip(rule_slots, made, strict=True):
        merged[slot] = r
    for slot, s in zip(other_slots, statements, strict=True):
        merged[slot] = s
    return Rulebook(span=SPAN, path="gen.rules", statements=tuple(merged))


SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def rulebooks(draw, max_rules: int = 6) -> Rulebook:
    """A valid rulebook AST with 1..max_rules rules.

    The details come from one drawn seed (drawing each choice from hypothesis
    made this strategy the slowest part of the tests); the rule count is
    drawn on its own so that shrinking still makes failures small.
    """
    count = draw(st.integers(1, max_rules))
    return random_rulebook(random.Random(draw(SEEDS)), count)


# --- an independent, noisy renderer -----------------------------------------------------


class _Writer:
    """Renders an AST with random case, spacing, line breaks, parens and comments.

    All the noise comes from one drawn `random.Random`: drawing every choice
    from hypothesis separately made the strategy the slowest part of the tests.
    """

    def __init__(self, rnd, comments: bool) -> None:
        self.rnd = rnd
        self.comments = comments
        self.count = 0

    def gap(self) -> str:
        """Whitespace between two tokens: spaces, tabs, line breaks, maybe a comment."""
        rnd = self.rnd
        out = rnd.choice([" ", "  ", "\t", " \n  ", "\n", " \r\n "])
        if self.comments and rnd.randrange(10) == 0:
            self.count += 1
            out = f" # Note {self.count}: keep me\n" + rnd.choice(["", "  ", "\n"])
        return out

    def word(self, w: str) -> str:
        rnd = self.rnd
        style = rnd.randrange(4)
        if style == 0:
            return w.lower()
        if style == 1:
            return w.upper()
        if style == 2:
            return w.title()
        return "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in w)

    def join(self, *tokens: str) -> str:
        out = tokens[0]
        for tok in tokens[1:]:
            out += self.gap() + tok
        return out

    def condition(self, c, top: bool = False) -> str:
        if isinstance(c, ConditionRef):
            text = self.word(c.name.text)
            return f"({text})" if self.rnd.randrange(5) == 0 else text
        if isinstance(c, Term):
            words = [self.word(c.property.text), self.word("is")]
            if c.negated:
                words.append(self.word("not"))
            words += [self.word(h.text) for h in c.hedges] + [self.word(c.set.text)]
            text = self.join(*words)
            return f"({text})" if self.rnd.randrange(5) == 0 else text
        if isinstance(c, Not):
            return self.join(self.word("not"), "(" + self.condition(c.operand, True) + ")")
        word = self.word(c.kind)
        parts = []
        for op in c.operands:
            text = self.condition(op)
            # parenthesise whatever the precedence or the structure needs, and sometimes more
            needs = isinstance(op, Or) or (isinstance(op, And) and c.kind == "and")
            if needs or (isinstance(op, And) and self.rnd.random() < 0.5):
                text = f"({text})"
            parts.append(text)
        tokens = [parts[0]]
        for p in parts[1:]:
            tokens += [word, p]
        return self.join(*tokens)

    def statement(self, s) -> str:
        if isinstance(s, RulebookName):
            return self.join(self.word("rulebook"), f'"{s.name}"')
        if isinstance(s, ScaleDef):
            return self.join(self.word("scale"), self.word(s.property.text), "=", s.value.text)
        if isinstance(s, SetDef):
            name = self.word(s.name.text)
            if s.property is not None:
                name = self.word(s.property.text) + "." + name
            args = ("," + self.gap()).join(a.text for a in s.function.args)
            call = f"{self.word(s.function.function.text)}({args})"
            if s.function.raw:
                call = self.join(self.word("raw"), call)
            return self.join(self.word("set"), name, "=", call)
        if isinstance(s, Define):
            condition = self.condition(s.condition, True)
            return self.join(self.word("define"), self.word(s.name.text), "=", condition)
        if isinstance(s, ThresholdDef):
            return self.join(self.word("threshold"), s.value.text)
        if isinstance(s, ClassDef):
            names = ("," + self.gap()).join(self.word(n.text) for n in s.names)
            return self.join(self.word("class"), names)
        head = []
        if s.label is not None:
            head = [self.word("rule"), self.word(s.label.text) + ":"]
        conclusion = s.conclusion.text if s.conclusion is not None else "anomalous"
        tail = [self.word("then"), self.word(conclusion)]
        if s.truth is not None:
            tail.append(f"({s.truth.text})")
        return self.join(*head, self.word("if"), self.condition(s.condition, True), *tail)


@st.composite
def noisy_texts(draw, comments: bool = False) -> tuple[Rulebook, str]:
    """(rulebook, text): the rulebook written with random case, spacing and line breaks."""
    rulebook = draw(rulebooks())
    writer = _Writer(random.Random(draw(SEEDS)), comments)
    out = ""
    for statement in rulebook.statements:
        out += writer.statement(statement) + writer.gap() + writer.rnd.choice(["", "\n\n"])
    return rulebook, out
