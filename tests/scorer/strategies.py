"""Hypothesis strategies for valid rulebook ASTs and region property values.

Small on purpose: 1-6 rules, conditions nested up to depth 3 (AND, OR, NOT),
declared classes (0-3, in one or two `class` lines) that rules may conclude,
hedges, `not`, file-wide sets and per-property overrides (trapezoid,
triangle, gaussian), every built-in property, random scales, truth values and
threshold. Breakpoints lie on a 0.05 grid, as experts write them, and values
are drawn partly on the same grid so that grades at the breakpoints are hit.
"""

from __future__ import annotations

from hypothesis import strategies as st

from kistrules.ast import (
    And,
    ClassDef,
    Identifier,
    MembershipCall,
    Not,
    Number,
    Or,
    Rule,
    Rulebook,
    ScaleDef,
    SetDef,
    Term,
    ThresholdDef,
)
from kistrules.builtins import BUILTIN_SETS, PROPERTIES
from kistrules.span import Span

SPAN = Span(path="gen.rules", start=0, end=0, line=1, column=1, end_line=1, end_column=1)
GRID = [i / 20 for i in range(21)]
SET_NAMES = ["low", "mid", "high", "tiny", "dark", "odd"]
CLASS_NAMES = ["blowhole", "crack", "fray", "low", "uneven"]  # `low`: namespaces are apart


def ident(name: str) -> Identifier:
    return Identifier(span=SPAN, name=name, text=name)


def number(value: float) -> Number:
    return Number(span=SPAN, value=value, text=repr(value))


def term(prop: str, set_name: str, *, negated: bool = False, hedges: tuple[str, ...] = ()) -> Term:
    return Term(
        span=SPAN,
        property=ident(prop),
        set=ident(set_name),
        negated=negated,
        hedges=tuple(ident(h) for h in hedges),
    )


def rule(
    condition,
    truth: float | None,
    position: int,
    label: str | None = None,
    conclusion: str | None = None,
) -> Rule:
    return Rule(
        span=SPAN,
        label=ident(label) if label else None,
        condition=condition,
        conclusion=ident(conclusion) if conclusion else None,
        truth=number(truth) if truth is not None else None,
        position=position,
    )


def class_def(*names: str) -> ClassDef:
    return ClassDef(span=SPAN, names=tuple(ident(n) for n in names))


def and_(*operands) -> And:
    return And(span=SPAN, operands=tuple(operands))


def or_(*operands) -> Or:
    return Or(span=SPAN, operands=tuple(operands))


def not_(operand) -> Not:
    return Not(span=SPAN, operand=operand)


def set_def(name: str, function: str, params: tuple[float, ...], prop: str | None = None):
    return SetDef(
        span=SPAN,
        property=ident(prop) if prop else None,
        name=ident(name),
        function=MembershipCall(
            span=SPAN, function=ident(function), args=tuple(number(p) for p in params)
        ),
    )


def scale_def(prop: str, value: float) -> ScaleDef:
    return ScaleDef(span=SPAN, property=ident(prop), value=number(value))


def rulebook(statements, path: str = "gen.rules") -> Rulebook:
    return Rulebook(span=SPAN, path=path, statements=tuple(statements))


@st.composite
def membership_calls(draw) -> tuple[str, tuple[float, ...]]:
    function = draw(st.sampled_from(["trapezoid", "triangle", "gaussian"]))
    if function == "gaussian":
        mean = draw(st.sampled_from(GRID))
        sigma = draw(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5]))
        return function, (mean, sigma)
    arity = 4 if function == "trapezoid" else 3
    return function, tuple(
        sorted(draw(st.lists(st.sampled_from(GRID), min_size=arity, max_size=arity)))
    )


@st.composite
def rulebooks(draw, max_rules: int = 6) -> Rulebook:
    props = list(PROPERTIES)
    statements = []
    for prop in draw(st.lists(st.sampled_from(props), unique=True, max_size=4)):
        statements.append(
            scale_def(prop, draw(st.sampled_from([0.05, 0.5, 1.0, 40.0, 255.0, 1e4])))
        )
    shared = draw(st.lists(st.sampled_from(SET_NAMES), unique=True, max_size=3))
    for name in shared:
        statements.append(set_def(name, *draw(membership_calls())))
    overrides = draw(
        st.lists(
            st.tuples(st.sampled_from(props), st.sampled_from(SET_NAMES)), unique=True, max_size=3
        )
    )
    for prop, name in overrides:
        statements.append(set_def(name, *draw(membership_calls()), prop=prop))
    if draw(st.booleans()):
        statements.append(ThresholdDef(span=SPAN, value=number(draw(st.sampled_from(GRID)))))
    classes = draw(st.lists(st.sampled_from(CLASS_NAMES), unique=True, max_size=3))
    cut = draw(st.integers(0, len(classes)))
    statements += [class_def(*part) for part in (classes[:cut], classes[cut:]) if part]

    def usable(prop: str) -> list[str]:
        names = set(BUILTIN_SETS) | set(shared) | {n for p, n in overrides if p == prop}
        return sorted(names)

    @st.composite
    def terms(draw):
        prop = draw(st.sampled_from(props))
        return term(
            prop,
            draw(st.sampled_from(usable(prop))),
            negated=draw(st.booleans()),
            hedges=tuple(draw(st.lists(st.sampled_from(["very", "somewhat"]), max_size=2))),
        )

    def conditions(depth: int):
        if depth == 0:
            return terms()
        inner = conditions(depth - 1)
        return st.one_of(
            terms(),
            st.builds(not_, inner),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: and_(*ops)),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: or_(*ops)),
        )

    statements = draw(st.permutations(statements))
    condition = conditions(3)
    n_rules = draw(st.integers(1, max_rules))
    for position in range(1, n_rules + 1):
        truth = draw(st.one_of(st.none(), st.sampled_from([0.05, 0.3, 0.5, 0.8, 0.9, 1.0])))
        label = f"r{position}" if draw(st.booleans()) else None
        conclusion = draw(st.sampled_from([None, *classes]))
        statements.append(rule(draw(condition), truth, position, label, conclusion))
    return rulebook(statements)


def raw_values(gamma: float, *, nan: bool = True):
    """Raw property values: on the breakpoint grid, generic, negative, huge, inf, NaN."""
    options = [
        st.sampled_from(GRID).map(lambda v: v * gamma),
        st.floats(-2.0 * gamma, 2.0 * gamma, allow_nan=False),
        st.sampled_from([-1e6, 1e30, float("inf"), float("-inf"), 0.0, -0.0]),
    ]
    if nan:
        options.append(st.just(float("nan")))
    return st.one_of(*options)
