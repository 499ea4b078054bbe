"""The paper's two rulebooks (Table I), built as ASTs, and a pyfuzzylite twin of any rulebook.

The ASTs use the built-in sets (the paper's Fig. 5 trapezoids) and the
default scales; the tests vary the scales themselves.
"""

from __future__ import annotations

import fuzzylite as fl
import numpy as np

from kistrules.ast import Rulebook, Term, iter_terms
from kistrules.resolve import resolve

from .strategies import and_, rule, rulebook, scale_def, term


def _flat(rules: list[tuple[list[tuple[str, str]], float]], scales: dict[str, float], path: str):
    statements = [scale_def(p, g) for p, g in scales.items()]
    for position, (terms, tv) in enumerate(rules, start=1):
        statements.append(rule(and_(*(term(p, s) for p, s in terms)), tv, position))
    return rulebook(statements, path=path)


# Table I, third column (MTD).
MTD_RULES = [
    ([("area", "high"), ("gray", "low"), ("unevenness", "low")], 1.0),
    ([("gray", "low"), ("shape", "high"), ("symmetry", "high")], 0.8),
    ([("shape", "low"), ("gray", "low"), ("unevenness", "low")], 0.8),
    ([("unevenness", "mid"), ("gray", "high"), ("shape", "high")], 1.0),
]
# Table I, second column (Kolektor, MVTec leather and wood).
KOLEKTOR_RULES = [
    ([("area", "high"), ("gray", "low")], 1.0),
    ([("gray", "low"), ("shape", "high")], 0.8),
    ([("shape", "low"), ("unevenness", "low")], 0.8),
    ([("unevenness", "low"), ("gray", "low")], 0.8),
    ([("symmetry", "low"), ("gray", "low")], 1.0),
]
SCALES = {"area": 0.05, "gray": 255.0, "shape": 187.5, "unevenness": 40.0, "symmetry": 1.0}


def mtd(scales: dict[str, float] = SCALES) -> Rulebook:
    return _flat(MTD_RULES, scales, "mtd.rules")


def kolektor(scales: dict[str, float] = SCALES) -> Rulebook:
    return _flat(KOLEKTOR_RULES, scales, "kolektor_mvtec.rules")


MTD_TEXT = """\
rulebook "magnetic tile (KIST paper, Table I)"
scale area = 0.05
scale gray = 255
scale shape = 187.5
scale unevenness = 40
scale symmetry = 1
threshold 0.8
IF area is high AND gray is low AND unevenness is low THEN anomalous (1.0)
IF gray is low AND shape is high AND symmetry is high THEN anomalous (0.8)
IF shape is low AND gray is low AND unevenness is low THEN anomalous (0.8)
IF unevenness is mid AND gray is high AND shape is high THEN anomalous (1.0)
"""


# --- pyfuzzylite ---------------------------------------------------------------------


def _fl_term(name: str, function: str, params: tuple[float, ...]) -> fl.Term:
    kinds = {"trapezoid": fl.Trapezoid, "triangle": fl.Triangle, "gaussian": fl.Gaussian}
    return kinds[function](name, *params)


def _fl_condition(condition) -> str:
    if isinstance(condition, Term):
        words = [condition.property.name, "is"]
        if condition.negated:
            words.append("not")
        words += [h.name for h in condition.hedges]
        words.append(condition.set.name)
        return " ".join(words)
    if condition.kind == "not":
        raise ValueError("fuzzylite has no NOT over a group")
    joined = f" {condition.kind} ".join(_fl_condition(o) for o in condition.operands)
    return f"({joined})"


def fuzzylite_engine(book: Rulebook) -> tuple[fl.Engine, fl.RuleBlock, fl.OutputVariable]:
    """The paper's inference in pyfuzzylite: Minimum conjunction, Maximum disjunction,
    AlgebraicProduct implication, rule weight = TV, Maximum aggregation."""
    resolved = resolve(book)
    inputs = []
    for prop in resolved.properties:
        terms = [
            _fl_term(name, mf.function, mf.params)
            for (p, name), mf in resolved.sets.items()
            if p == prop
        ]
        # Values are standardised beforehand (v' = clip(v / gamma, 0, 1)).
        inputs.append(fl.InputVariable(name=prop, minimum=0.0, maximum=1.0, terms=terms))
    output = fl.OutputVariable(
        name="region",
        minimum=0.0,
        maximum=1.0,
        aggregation=fl.Maximum(),
        defuzzifier=fl.Centroid(),
        terms=[fl.Rectangle("anomalous", 0.0, 1.0)],
    )
    rules = [
        fl.Rule.create(
            f"if {_fl_condition(r.condition)} then region is anomalous with {r.truth_value!r}"
        )
        for r in book.rules
    ]
    block = fl.RuleBlock(
        conjunction=fl.Minimum(),
        disjunction=fl.Maximum(),
        implication=fl.AlgebraicProduct(),
        activation=fl.General(),
        rules=rules,
    )
    engine = fl.Engine(input_variables=inputs, output_variables=[output], rule_blocks=[block])
    return engine, block, output


def fuzzylite_grades(
    engine: fl.Engine, block: fl.RuleBlock, output: fl.OutputVariable, standardised: dict
) -> tuple[np.ndarray, np.ndarray]:
    """(grade (N,), rule activations (N, R)) for standardised numpy inputs, vectorised."""
    for variable in engine.input_variables:
        variable.value = standardised[variable.name]
    output.fuzzy.clear()
    block.activate()
    n = len(next(iter(standardised.values())))
    grade = np.broadcast_to(output.fuzzy.activation_degree(output.terms[0]), (n,))
    rules = np.stack([np.broadcast_to(r.activation_degree, (n,)) for r in block.rules], axis=1)
    return np.asarray(grade, dtype=np.float64), rules


def standardise_numpy(book: Rulebook, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    resolved = resolve(book)
    return {p: np.clip(raw[p] / resolved.scales[p], 0.0, 1.0) for p in resolved.properties}


def used_terms(book: Rulebook) -> list[Term]:
    return [t for r in book.rules for t in iter_terms(r.condition)]
