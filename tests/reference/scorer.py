"""A slow, obvious evaluator of a rulebook AST, written straight from the contract.

Scalar `math` on one region at a time, no torch, and its own name binding
(override > file set > built-in; explicit scale > default) rather than
`kistrules.resolve`, so that the compiled scorer is checked against an
independent reading of `docs/language.md` and the paper's eq. 4-7, 16.

Classes, from the contract too: a class's grade is the max output of the
rules concluding it or `anomalous` (0 when there are none), and a region's
class is its winning rule's conclusion.

Besides values, it reports which limiting term and winning rule are
acceptable: a tie is decided "first" when the tied values are exactly equal,
and either candidate is accepted when they differ by less than `NEAR`
(rounding, e.g. `very somewhat x` = sqrt(x)^2 against x, must not fail a test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kistrules.ast import And, ClassDef, Not, Or, Rulebook, ScaleDef, SetDef, Term, ThresholdDef
from kistrules.builtins import BUILTIN_SETS, PROPERTIES

NEAR = 1e-9


def scale_of(rulebook: Rulebook, prop: str) -> float:
    """gamma: the last `scale` line for the property, else the built-in default."""
    gamma = PROPERTIES[prop].default_scale
    for statement in rulebook.statements:
        if isinstance(statement, ScaleDef) and statement.property.name == prop:
            gamma = statement.value.value
    return gamma


def threshold_of(rulebook: Rulebook) -> float:
    alpha = 0.8
    for statement in rulebook.statements:
        if isinstance(statement, ThresholdDef):
            alpha = statement.value.value
    return alpha


def set_of(rulebook: Rulebook, prop: str, name: str) -> tuple[str, tuple[float, ...]]:
    """The set a term uses: `set prop.name`, else `set name`, else the built-in."""
    override = shared = None
    for statement in rulebook.statements:
        if isinstance(statement, SetDef) and statement.name.name == name:
            found = (
                statement.function.function.name,
                tuple(a.value for a in statement.function.args),
            )
            if statement.property is None:
                shared = found
            elif statement.property.name == prop:
                override = found
    if override is not None:
        return override
    if shared is not None:
        return shared
    return BUILTIN_SETS[name]


def standardise(value: float, gamma: float) -> float:
    """v' = clip(v / gamma, 0, 1); NaN stays NaN."""
    if math.isnan(value):
        return value
    return min(max(value / gamma, 0.0), 1.0)


def membership(function: str, params: tuple[float, ...], x: float) -> float:
    """The contract's membership functions, piece by piece; a NaN value is in no set."""
    if math.isnan(x):
        return 0.0
    if function == "trapezoid":
        a, b, c, d = params
        if x < a or x > d:
            return 0.0
        if b <= x <= c:
            return 1.0
        if x < b:
            return (x - a) / (b - a)
        return (d - x) / (d - c)
    if function == "triangle":
        a, b, c = params
        if x < a or x > c:
            return 0.0
        if x == b:
            return 1.0
        if x < b:
            return (x - a) / (b - a)
        return (c - x) / (c - b)
    if function == "gaussian":
        mean, sigma = params
        return math.exp(-((x - mean) ** 2) / (2.0 * sigma**2))
    raise ValueError(function)


def steps(function: str, params: tuple[float, ...]) -> list[float]:
    """Where a membership function jumps (a shoulder's edge): rounding may cross these."""
    if function == "trapezoid":
        a, b, c, d = params
        return [p for p, edge in ((a, a == b), (d, c == d)) if edge]
    if function == "triangle":
        a, b, c = params
        return [p for p, edge in ((a, a == b), (c, b == c)) if edge]
    return []


def hedge(name: str, x: float) -> float:
    return x * x if name == "very" else math.sqrt(x)


@dataclass
class Truth:
    value: float
    limiting: set[int]  # acceptable indices of the term that decides `value`


@dataclass
class RegionResult:
    standardised: dict[str, float]
    terms: list[float]  # every term of every rule, rule order then left to right
    rules: list[float]  # TV * truth
    limiting: list[set[int]]
    grade: float
    winner: set[int]
    fired: bool
    threshold: float
    classes: dict[str, float]  # declared class -> its grade
    winner_classes: set[str]  # the conclusions of the acceptable winners


def _pick(candidates: list[Truth], extreme: float) -> set[int]:
    """Ties go to the first; near-ties (rounding) may go to any of them."""
    close = [c for c in candidates if abs(c.value - extreme) <= NEAR]
    if all(c.value == close[0].value for c in close):
        return close[0].limiting
    return set().union(*(c.limiting for c in close))


class _Evaluator:
    def __init__(self, rulebook: Rulebook, values: dict[str, float]) -> None:
        self.rulebook = rulebook
        self.values = values
        self.standardised: dict[str, float] = {}
        self.terms: list[float] = []

    def truth(self, condition) -> Truth:
        if isinstance(condition, Term):
            prop = condition.property.name
            v = standardise(self.values[prop], scale_of(self.rulebook, prop))
            self.standardised.setdefault(prop, v)
            function, params = set_of(self.rulebook, prop, condition.set.name)
            x = membership(function, params, v)
            for h in reversed(condition.hedges):  # from the set outward
                x = hedge(h.name, x)
            if condition.negated:  # `not` last
                x = 1.0 - x
            self.terms.append(x)
            return Truth(x, {len(self.terms) - 1})
        if isinstance(condition, Not):
            inner = self.truth(condition.operand)
            return Truth(1.0 - inner.value, inner.limiting)
        operands = [self.truth(o) for o in condition.operands]
        if isinstance(condition, And):
            value = min(o.value for o in operands)
        else:
            assert isinstance(condition, Or)
            value = max(o.value for o in operands)
        return Truth(value, _pick(operands, value))


def classes_of(rulebook: Rulebook) -> list[str]:
    """The declared classes in declaration order (each once)."""
    out: list[str] = []
    for statement in rulebook.statements:
        if isinstance(statement, ClassDef):
            out += [n.name for n in statement.names if n.name not in out]
    return out


def conclusion_of(rule) -> str:
    return rule.conclusion.name if rule.conclusion is not None else "anomalous"


def evaluate(rulebook: Rulebook, values: dict[str, float]) -> RegionResult:
    """Grade one region given its raw property values."""
    evaluator = _Evaluator(rulebook, values)
    outputs: list[Truth] = []
    limiting = []
    for index, rule in enumerate(rulebook.rules):
        truth = evaluator.truth(rule.condition)
        limiting.append(truth.limiting)
        outputs.append(Truth(rule.truth_value * truth.value, {index}))  # eq. 4
    grade = max(o.value for o in outputs)  # eq. 7
    alpha = threshold_of(rulebook)
    conclusions = [conclusion_of(rule) for rule in rulebook.rules]
    classes = {}
    for name in classes_of(rulebook):
        pairs = zip(outputs, conclusions, strict=True)
        mine = [o.value for o, c in pairs if c in (name, "anomalous")]
        classes[name] = max(mine, default=0.0)
    winner = _pick(outputs, grade)
    return RegionResult(
        standardised=evaluator.standardised,
        terms=evaluator.terms,
        rules=[o.value for o in outputs],
        limiting=limiting,
        grade=grade,
        winner=winner,
        fired=grade >= alpha,
        threshold=alpha,
        classes=classes,
        winner_classes={conclusions[w] for w in winner},
    )
