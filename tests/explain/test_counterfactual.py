"""Counterfactuals: applied, they make their rule reach alpha, and no smaller change does.

The suggestion comes from level sets (kistrules.intervals); the checks here use
only the compiled scorer: re-score the region with the suggested raw value, and
scan each property on a dense grid for a firing point nearer than the suggestion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kistrules.api import loads
from kistrules.compiler import compile_rulebook
from kistrules.counterfactuals import _round, counterfactuals, satisfying_set
from kistrules.explain import explain_trace
from kistrules.resolve import resolve

PROPS = ("area", "gray", "darkness", "pixels")
GAMMA = {"area": 0.05, "gray": 255.0, "darkness": 50.0, "pixels": 40.0}
SETS = ("low", "mid", "high", "peak", "tri")
HEADER = "\n".join(f"scale {p} = {g:g}" for p, g in GAMMA.items()) + (
    "\nset peak = gaussian(0.5, 0.15)\nset tri = triangle(0.1, 0.35, 0.55)\n"
)


def _rescore(scorer, props: dict[str, float]):
    table = {p: torch.tensor([v], dtype=torch.float64) for p, v in props.items()}
    with torch.no_grad():
        return scorer(table).rules[0]


def _fires(rules: torch.Tensor, index: int, scorer) -> bool:
    """The scorer's own test, `output >= alpha` in its dtype (as `ScoreTrace.fired`)."""
    return bool(rules[index] >= scorer.threshold)


def _explain(scorer, props: dict[str, float]):
    table = {p: torch.tensor([v], dtype=torch.float64) for p, v in props.items()}
    trace = scorer(table, trace=True)
    return explain_trace(scorer, trace, table, bbox=torch.zeros(1, 4), pixel_count=torch.ones(1))[0]


def test_the_paper_style_example_reads_naturally():
    scorer = compile_rulebook(
        resolve(
            loads(
                HEADER + "rule large_dark: IF area is high AND gray is low THEN anomalous (1)",
                "t.rules",
            )
        )
    )
    region = _explain(scorer, {"area": 0.01, "gray": 40.0, "darkness": 0.0, "pixels": 0.0})
    rule = region.rules[0]
    cf = rule.counterfactual
    assert not rule.reaches_threshold and cf is not None and cf.property == "area"
    # high reaches 0.8 at v' = 0.6 + 0.8 * 0.2 = 0.76, i.e. area >= 0.76 * 0.05 = 0.038.
    assert cf.raw_to == pytest.approx(0.038, abs=1e-6)
    assert cf.raw_to >= 0.038
    assert cf.text == "area >= 0.038 would make large_dark fire"
    assert cf.satisfying[-1][1] == math.inf  # v' = 1 means area >= gamma and beyond
    after = _rescore(scorer, {"area": cf.raw_to, "gray": 40.0, "darkness": 0.0, "pixels": 0.0})
    assert _fires(after, 0, scorer)


def test_not_and_or_follow_de_morgan():
    text = HEADER + "rule r: IF NOT (gray is high OR darkness is low) THEN anomalous (0.9)\n"
    scorer = compile_rulebook(resolve(loads(text, "t.rules")), dtype=torch.float64)
    infos = [t for t in scorer.terms if t.rule == 0]
    rule = scorer.resolved.rules[0]
    # threshold 0.8, TV 0.9: the condition must reach 0.8 / 0.9 = 0.888...
    level = 0.8 / 0.9
    values = {"gray": 0.2, "darkness": 0.9}
    sat = satisfying_set(rule.condition, infos, "gray", values, level)
    # NOT(high OR low_d) = min(1 - high(g), 1 - low(d)); 1 - low(0.9) = 1, so g needs high <= 1/9.
    assert sat.contains(0.6 + 0.2 / 9 - 1e-9) and not sat.contains(0.6 + 0.2 / 9 + 1e-6)
    assert sat.contains(0.0)
    values = {"gray": 0.2, "darkness": 0.1}  # darkness is low = 1: no gray helps
    assert satisfying_set(rule.condition, infos, "gray", values, level).is_empty


def test_a_truth_value_below_alpha_has_no_counterfactual():
    scorer = compile_rulebook(
        resolve(
            loads(
                HEADER + "threshold 0.9\nrule weak: IF gray is low THEN anomalous (0.5)", "t.rules"
            )
        )
    )
    found, reason = counterfactuals(scorer, 0, {"gray": 0.9}, {"gray": 230.0})
    assert found == [] and "can never fire" in reason


def test_display_rounding_never_crosses_the_bound():
    assert _round(0.0380004, up=True) == "0.03801"
    assert _round(0.0380004, up=False) == "0.038"
    assert _round(51.0, up=False) == "51"
    assert _round(123456.0, up=True) == "123500"


# --- properties over generated rulebooks and regions --------------------------------


@st.composite
def conditions(draw, depth: int = 2) -> str:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        prop = draw(st.sampled_from(PROPS))
        negated = "not " if draw(st.booleans()) else ""
        hedges = " ".join(draw(st.lists(st.sampled_from(["very", "somewhat"]), max_size=2)))
        return f"{prop} is {negated}{hedges + ' ' if hedges else ''}{draw(st.sampled_from(SETS))}"
    kind = draw(st.sampled_from(["AND", "OR", "NOT"]))
    if kind == "NOT":
        return f"NOT ({draw(conditions(depth - 1))})"
    parts = draw(st.lists(conditions(depth - 1), min_size=2, max_size=3))
    return "(" + f" {kind} ".join(parts) + ")"


@st.composite
def cases(draw):
    n_rules = draw(st.integers(1, 3))
    rules = [
        f"rule r{i}: IF {draw(conditions())} THEN anomalous "
        f"({draw(st.sampled_from([0.8, 0.9, 1.0]))})"
        for i in range(n_rules)
    ]
    threshold = draw(st.sampled_from([0.5, 0.7, 0.8]))
    text = HEADER + f"threshold {threshold}\n" + "\n".join(rules)
    grid = st.sampled_from([i / 20 for i in range(21)])
    unit = st.one_of(grid, st.floats(0.0, 1.0, allow_nan=False))
    values = {p: draw(unit) * GAMMA[p] for p in PROPS}
    return text, values


def _grid_fires(scorer, values: dict[str, float], prop: str, rule: int, grid: np.ndarray):
    """Which standardised grid values of `prop` make `rule` reach alpha (the scorer decides)."""
    table = {p: torch.full((grid.size,), v, dtype=torch.float64) for p, v in values.items()}
    table[prop] = torch.as_tensor(grid * GAMMA[prop], dtype=torch.float64)
    with torch.no_grad():
        out = scorer(table).rules[:, rule]
    return (out >= scorer.threshold).numpy()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_counterfactuals_fire_and_are_minimal(case):
    text, values = case
    rulebook = loads(text, "gen.rules")
    scorer = compile_rulebook(resolve(rulebook))
    # Minimality is judged on the exact (float64) semantics: at a level of exactly 1
    # (TV = alpha) float32 rounds 1 - 1e-8 up to 1 and "fires" where the maths does not.
    exact = compile_rulebook(resolve(rulebook), dtype=torch.float64)
    region = _explain(scorer, values)
    grid = np.linspace(0.0, 1.0, 2001)
    for index, rule in enumerate(region.rules):
        if rule.reaches_threshold:
            continue
        props = sorted({t.property for t in scorer.terms if t.rule == index})
        cf = rule.counterfactual
        if cf is not None:
            # Applied, the counterfactual makes its rule reach alpha.
            changed = dict(values, **{cf.property: cf.raw_to})
            assert _fires(_rescore(scorer, changed), index, scorer), cf.text
            assert cf.rule == rule.name and cf.text.endswith(f"would make {rule.name} fire")
        # No property has a firing grid point nearer than the suggestion (grid step 5e-4;
        # the float32 nudge is below 1e-3).
        for prop in props:
            fires = _grid_fires(exact, values, prop, index, grid)
            current = region.properties[prop]["standardised"]
            if fires.any():
                nearest = float(np.min(np.abs(grid[fires] - current)))
                assert cf is not None, f"{prop} at {grid[fires][0]} fires {rule.name}"
                assert cf.change <= nearest + 2e-3
        if cf is None:
            assert rule.no_counterfactual_reason


@settings(max_examples=40, deadline=None)
@given(cases())
def test_exact_level_sets_fire_in_float64_without_nudging(case):
    text, values = case
    scorer = compile_rulebook(resolve(loads(text, "gen.rules")), dtype=torch.float64)
    std = {p: min(max(v / GAMMA[p], 0.0), 1.0) for p, v in values.items()}
    rules = _rescore(scorer, values)
    for index in range(len(scorer.rule_names)):
        if float(rules[index]) >= scorer.threshold:
            continue
        found, _ = counterfactuals(scorer, index, std, values)  # pure maths: no verification
        for cf in found:
            changed = dict(values, **{cf.property: cf.raw_to})
            # Exact up to float64 rounding at the level-set boundary.
            assert float(_rescore(scorer, changed)[index]) >= scorer.threshold - 1e-9
        assert [c.change for c in found] == sorted(c.change for c in found)
