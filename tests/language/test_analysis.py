"""The logic warnings W101-W107, W110 and W111: one example per code (code + span), exactness at
breakpoints moved by 1e-9, and a cross-check of the exact reachability against
dense sampling of random conditions."""

from __future__ import annotations

import fuzzylite as fl
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kistrules.analysis import analyse, best_truth, reaches
from kistrules.checker import check_names
from kistrules.parser import parse
from kistrules.resolve import resolve
from tests.property import strategies as STRATEGIES

SCALES = "scale gray = 255\nscale area = 0.05\nscale shape = 187.5\n"


def diagnose(text: str):
    rulebook, errors = parse(text, "t.rules")
    assert errors == [], errors
    assert [d for d in check_names(rulebook) if d.severity == "error"] == []
    return rulebook, analyse(rulebook)


def codes(text: str) -> list[str]:
    return [d.code for d in diagnose(text)[1]]


def at(text: str, fragment: str, nth: int = 0) -> tuple[int, int]:
    """(start, end) offsets of the nth occurrence of fragment."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(fragment, start + 1)
    return start, start + len(fragment)


def label(text: str, name: str) -> tuple[int, int]:
    """(start, end) of a rule's name in `rule NAME:`."""
    start = text.index(f"rule {name}:") + len("rule ")
    return start, start + len(name)


def only(text: str, code: str):
    _, found = diagnose(text)
    assert [d.code for d in found] == [code], [d.one_line() for d in found]
    return found[0]


def span_of(d) -> tuple[int, int]:
    return d.span.start, d.span.end


# --- one example per code ------------------------------------------------------------


def test_w101_truth_value_below_threshold():
    text = SCALES + "rule weak: IF gray is low THEN anomalous (0.7)\n"
    d = only(text, "W101")
    assert span_of(d) == at(text, "0.7")
    assert "0.7" in d.message and "0.8" in d.message
    assert d.severity == "warning" and d.hint


def test_w101_condition_limited_by_coupled_terms():
    text = SCALES + "rule both: IF gray is low AND gray is mid THEN anomalous\n"
    d = only(text, "W101")
    assert span_of(d) == label(text, "both")
    # low and mid cross at 0.3 with grade 0.5: the condition is at most 0.5
    assert "at most 0.5," in d.message
    assert "gray" in d.hint


def test_w101_single_term_limited_by_its_set():
    # a bell this wide is above 0.5 all over [0, 1], so `not` it stays below 0.5
    text = SCALES + "set gray.wide = gaussian(0.5, 1)\nIF gray is not wide THEN anomalous\n"
    d = only(text, "W101")
    assert span_of(d) == at(text, "gray is not wide")  # an unnamed rule: its condition
    most = 1 - np.exp(-(0.5**2) / 2)  # at v' = 0 and 1
    assert f"at most {most:.10g}," in d.message
    assert f"`gray is not wide` is at most {most:.10g}" in d.hint


def test_w102_condition_always_zero():
    text = SCALES + "rule never: IF gray is low AND gray is high THEN anomalous\n"
    d = only(text, "W102")
    assert span_of(d) == at(text, "gray is low AND gray is high")
    assert "[0, 0.4)" in d.hint and "(0.6, 1]" in d.hint


def test_w103_duplicate_up_to_operand_order():
    text = SCALES + (
        "rule a: IF gray is low AND (area is high OR shape is low) THEN anomalous (0.9)\n"
        "rule b: IF (shape is low OR area is high) AND gray is low THEN anomalous (0.9)\n"
    )
    d = only(text, "W103")
    assert span_of(d) == label(text, "b")
    assert "'a'" in d.message and "line 4" in d.message


def test_w103_nested_chains_are_the_same_rule():
    text = SCALES + (
        "IF gray is low AND (area is high AND shape is low) THEN anomalous\n"
        "IF (gray is low AND area is high) AND shape is low THEN anomalous\n"
    )
    assert codes(text) == ["W103"]


def test_w104_subsumed_by_fewer_terms_and_higher_tv():
    text = SCALES + (
        "rule dark: IF gray is low THEN anomalous (0.9)\n"
        "rule dark_large: IF gray is low AND area is high THEN anomalous (0.9)\n"
    )
    d = only(text, "W104")
    assert span_of(d) == label(text, "dark_large")
    assert "'dark'" in d.message


def test_w104_not_when_the_narrower_rule_has_higher_tv():
    text = SCALES + (
        "rule dark: IF gray is low THEN anomalous (0.85)\n"
        "rule dark_large: IF gray is low AND area is high THEN anomalous (0.9)\n"
    )
    assert codes(text) == []


def test_w104_same_condition_lower_tv():
    text = SCALES + (
        "rule a: IF gray is low AND area is high THEN anomalous (0.85)\n"
        "rule b: IF area is high AND gray is low THEN anomalous (1)\n"
    )
    d = only(text, "W104")
    assert span_of(d) == label(text, "a")


def test_w105_set_never_used():
    text = SCALES + "set dark = trapezoid(0, 0, 0.1, 0.3)\nIF gray is low THEN anomalous\n"
    d = only(text, "W105")
    assert span_of(d) == at(text, "dark")


def test_w105_override_counts_as_used_and_shadowed_shared_set_does_not():
    used = SCALES + "set gray.low = trapezoid(0, 0, 0.3, 0.5)\nIF gray is low THEN anomalous\n"
    assert codes(used) == []
    text = SCALES + (
        "set low = trapezoid(0, 0, 0.25, 0.45)\n"
        "set gray.low = trapezoid(0, 0, 0.3, 0.5)\n"
        "IF gray is low THEN anomalous\n"
    )
    d = only(text, "W105")
    assert span_of(d) == at(text, "low", 0)
    assert "gray.low" in d.hint
    # an override of one property
    text = SCALES + "set area.low = trapezoid(0, 0, 0.3, 0.5)\nIF gray is low THEN anomalous\n"
    d = only(text, "W105")
    assert span_of(d) == at(text, "area.low")


def test_w106_gap_between_sets():
    text = SCALES + "set gray.low = trapezoid(0, 0, 0.1, 0.15)\nIF gray is low THEN anomalous\n"
    d = only(text, "W106")
    assert span_of(d) == at(text, "gray.low")
    assert "[0.15, 0.2]" in d.message


def test_w106_builtins_cover_and_a_point_is_not_a_gap():
    assert codes(SCALES + "IF gray is high THEN anomalous\n") == []
    # low ends at 0.2 (grade 0 there), mid starts at 0.2: one point, not reported
    text = SCALES + "set gray.low = trapezoid(0, 0, 0.1, 0.2)\nIF gray is low THEN anomalous\n"
    assert codes(text) == []


def test_w107_properties_without_scale_once_per_rulebook():
    text = (
        "scale gray = 255\nIF gray is low AND unevenness is low THEN anomalous\n"
        "IF shape is high AND unevenness is mid THEN anomalous\n"
    )
    d = only(text, "W107")
    assert span_of(d) == at(text, "unevenness")
    assert "unevenness 128" in d.message and "shape 187.5" in d.message
    assert "`scale unevenness = 128`; `scale shape = 187.5`" in d.hint


def test_w107_is_off_unless_asked_for_by_its_code():
    from kistrules.api import diagnose as full

    text = "IF gray is low THEN anomalous\n"
    assert full(text)[1] == []
    assert [d.code for d in full(text, enable={"w107"})[1]] == ["W107"]


def test_contract_example_only_warns_about_missing_scales():
    text = (
        'rulebook "magnetic tile"\nscale area = 0.05\nscale gray = 255\nscale unevenness = 40\n'
        "set low  = trapezoid(0, 0, 0.2, 0.4)\nset mid  = trapezoid(0.2, 0.4, 0.6, 0.8)\n"
        "set high = trapezoid(0.6, 0.8, 1, 1)\nset gray.low = trapezoid(0, 0, 0.3, 0.5)\n"
        "threshold 0.8\n"
        "rule large_dark_flat: IF area is high AND gray is low AND unevenness is low "
        "THEN anomalous (1.0)\n"
        "rule dark_slender:    IF gray is low AND shape is high AND symmetry is high "
        "THEN anomalous (0.9)\n"
        "IF unevenness is mid AND gray is high AND shape is high THEN anomalous (1)\n"
        "IF gray is very low AND NOT (area is low) THEN anomalous (0.9)\n"
    )
    _, found = diagnose(text)
    assert [(d.code, text[d.span.start : d.span.end]) for d in found] == [("W107", "shape")]
    assert "shape 187.5" in found[0].message and "symmetry 1 " in found[0].message


# --- exactness at the breakpoints ---------------------------------------------------


@pytest.mark.parametrize(
    ("b", "warns"),
    [(0.85, False), (0.85 + 1e-9, True), (0.85 - 1e-9, False)],
)
def test_w101_exact_at_a_sloped_edge(b, warns):
    # `a` falls from 1 at 0.6 to 0 at 1, `edge` rises from 0 to 1 at b: they cross at
    # v' = 0.68 with grade 0.8 exactly when b = 0.85 (0.68 / 0.85 = (1 - 0.68) / 0.4)
    text = SCALES + (
        f"set gray.a = trapezoid(0, 0, 0.6, 1)\nset gray.edge = trapezoid(0, {b!r}, 1, 1)\n"
        "IF gray is a AND gray is edge THEN anomalous\n"
    )
    assert codes(text) == (["W101"] if warns else [])


@pytest.mark.parametrize(
    ("start", "warns"),
    [(0.5, False), (0.5 + 1e-9, True)],
)
def test_w101_exact_for_coupled_plateaus(start, warns):
    # a is 1 up to 0.5 and b from `start`: both reach 1 together only if start <= 0.5
    text = (
        "scale gray = 255\nthreshold 1\n"
        "set gray.a = trapezoid(0, 0, 0.5, 0.6)\n"
        f"set gray.b = trapezoid({start!r}, {start!r}, 1, 1)\n"
        "IF gray is a AND gray is b THEN anomalous\n"
    )
    assert codes(text) == (["W101"] if warns else [])


@pytest.mark.parametrize(
    ("b_set", "expected"),
    [
        ("trapezoid(0.4, 0.5, 1, 1)", ["W102"]),  # supports [0, 0.4) and (0.4, 1]
        ("trapezoid(0.4, 0.4, 1, 1)", ["W102"]),  # [0, 0.4) and the closed [0.4, 1]
        ("trapezoid(0.399999999, 0.5, 1, 1)", ["W101"]),  # overlap of 1e-9: > 0, tiny
    ],
)
def test_w102_open_and_closed_ends(b_set, expected):
    text = (
        "scale gray = 255\n"
        "set gray.a = trapezoid(0, 0, 0.3, 0.4)\n"
        f"set gray.b = {b_set}\n"
        "IF gray is a AND gray is b THEN anomalous\n"
    )
    assert codes(text) == expected


def test_closed_shoulders_meeting_at_a_point_reach_one():
    text = (
        "scale gray = 255\nthreshold 1\n"
        "set gray.a = trapezoid(0, 0, 0.4, 0.4)\n"
        "set gray.b = trapezoid(0.4, 0.4, 1, 1)\n"
        "IF gray is a AND gray is b THEN anomalous\n"
    )
    assert codes(text) == []


def test_not_is_pushed_down_exactly():
    # NOT(low OR not low) = min(1 - low, low): at most 0.5
    rb, found = diagnose(SCALES + "IF NOT (gray is low OR gray is not low) THEN anomalous\n")
    assert [d.code for d in found] == ["W101"]
    # ends are rounded to 1e-12, on edges of slope 5: the supremum is good to ~1e-11
    assert best_truth(resolve(rb), rb.rules[0].condition) == pytest.approx(0.5, abs=1e-10)
    # NOT(low AND high) = max(1 - low, 1 - high): 1
    assert codes(SCALES + "IF NOT (gray is low AND gray is high) THEN anomalous\n") == []
    # NOT NOT low = low
    assert codes(SCALES + "IF NOT NOT gray is low THEN anomalous\n") == []


def test_different_properties_are_independent():
    assert codes(SCALES + "IF gray is low AND area is high AND shape is mid THEN anomalous\n") == []


def test_threshold_zero_never_warns_w101():
    assert codes(SCALES + "threshold 0\nIF gray is low AND gray is mid THEN anomalous\n") == []


def test_too_complex_conditions_are_skipped_not_guessed(monkeypatch):
    import kistrules.analysis as analysis

    monkeypatch.setattr(analysis, "MAX_BOXES", 2)
    # (gray low OR area low OR shape low) AND (... high ...): 9 boxes > 2
    never = (
        "IF (gray is low OR area is low OR shape is low) AND "
        "(gray is high AND gray is low OR area is high AND area is low) THEN anomalous (0.9)\n"
    )
    assert codes(SCALES + never) == []  # undecided: no warning rather than a wrong one
    weak = never.replace("(0.9)", "(0.5)")
    assert codes(SCALES + weak) == ["W101"]  # a TV below alpha needs no boxes
    monkeypatch.setattr(analysis, "MAX_BOXES", 20_000)
    assert codes(SCALES + never) == ["W102"]


# --- cross-check against dense sampling ---------------------------------------------

BREAKS = [i / 20 for i in range(21)]


@st.composite
def trapezoids(draw) -> str:
    a, b, c, d = sorted(draw(st.sampled_from(BREAKS)) for _ in range(4))
    return f"trapezoid({a}, {b}, {c}, {d})"


@st.composite
def conditions(draw, depth: int = 0) -> str:
    if depth >= 2 or draw(st.booleans()):
        prop = draw(st.sampled_from(["gray", "area"]))
        neg = draw(st.sampled_from(["", "not "]))
        return f"{prop} is {neg}s{draw(st.integers(0, 2))}"
    op = draw(st.sampled_from(["AND", "OR", "NOT"]))
    if op == "NOT":
        return f"NOT ({draw(conditions(depth + 1))})"
    parts = [draw(conditions(depth + 1)) for _ in range(draw(st.integers(2, 3)))]
    return "(" + f" {op} ".join(parts) + ")"


def _evaluate(condition, mfs, values):
    """Reference semantics on a grid: pyfuzzylite grades, min / max / 1 - x."""
    kind = condition.kind
    if kind == "term":
        grades = mfs[(condition.property.name, condition.set.name)][condition.property.name]
        return 1.0 - grades if condition.negated else grades
    if kind == "not":
        return 1.0 - _evaluate(condition.operand, mfs, values)
    parts = [_evaluate(op, mfs, values) for op in condition.operands]
    fold = np.minimum if kind == "and" else np.maximum
    out = parts[0]
    for p in parts[1:]:
        out = fold(out, p)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(trapezoids(), min_size=3, max_size=3), conditions())
def test_reachability_matches_dense_sampling(sets, condition):
    text = "scale gray = 255\nscale area = 1\n"
    text += "".join(f"set s{i} = {s}\n" for i, s in enumerate(sets))
    text += f"IF {condition} THEN anomalous\n"
    rb, errors = parse(text)
    assert errors == []
    resolved = resolve(rb)
    # step 0.0025, plus the breakpoints exactly (linspace's 0.95 is 0.9500000000000001,
    # which misses the one-point peak of trapezoid(0.9, 0.95, 0.95, 0.95))
    axis = np.union1d(np.linspace(0.0, 1.0, 401), BREAKS)
    gray, area = np.meshgrid(axis, axis, indexing="ij")
    grades = {}
    for (prop, name), mf in resolved.sets.items():
        term = fl.Trapezoid("x", *mf.params)
        grades[(prop, name)] = {
            "gray": np.asarray(term.membership(gray.ravel())).reshape(gray.shape),
            "area": np.asarray(term.membership(area.ravel())).reshape(area.shape),
        }
    truth = _evaluate(rb.rules[0].condition, grades, None)
    sampled = float(truth.max())
    best = best_truth(resolved, rb.rules[0].condition)
    # sampling never exceeds the exact supremum, and with slopes at most 20 on a
    # 0.0025 grid it comes within 20 * 0.00125 of it
    assert sampled <= best + 1e-9
    assert best - sampled <= 0.025 + 1e-9
    assert reaches(resolved, rb.rules[0].condition, sampled)
    always_zero = not reaches(resolved, rb.rules[0].condition, 0.0, strict=True)
    if sampled > 0:
        assert not always_zero


# --- soundness on generated rulebooks: no warning contradicts a sampled point --------


def _truth(resolved, condition, point) -> float:
    from kistrules.intervals import term_truth

    kind = condition.kind
    if kind == "term":
        prop = condition.property.name
        mf = resolved.sets[(prop, condition.set.name)]
        hedges = [h.name for h in condition.hedges]
        return term_truth(mf, hedges, condition.negated, point[prop])
    if kind == "not":
        return 1.0 - _truth(resolved, condition.operand, point)
    parts = [_truth(resolved, op, point) for op in condition.operands]
    return min(parts) if kind == "and" else max(parts)


@settings(max_examples=60, deadline=None)
@given(STRATEGIES.rulebooks(), st.randoms(use_true_random=True))
def test_warnings_are_sound_at_sampled_points(generated, rnd):
    from kistrules.formatter import format_rulebook

    rulebook, errors = parse(format_rulebook(generated), "gen.rules")
    assert errors == []
    resolved = resolve(rulebook)
    # the truth of a rule is that of its condition with defined names written out
    by_line = {r.span.line: r for r in resolved.rules}
    anchored = {}
    for written, r in zip(rulebook.rules, resolved.rules, strict=True):
        for node in (written.label, written.condition, written.truth):  # where warnings point
            if node is not None:
                anchored[node.span.start] = r
    grid = [0.0, 1.0, 0.2, 0.4, 0.6, 0.8]
    points = [
        {p: rnd.choice(grid) if rnd.random() < 0.3 else rnd.random() for p in resolved.properties}
        for _ in range(200)
    ]
    alpha = resolved.threshold
    for d in analyse(rulebook):
        if d.code not in ("W101", "W102", "W103", "W104"):
            continue
        rule = anchored[d.span.start]
        out = [rule.truth_value * _truth(resolved, rule.condition, p) for p in points]
        if d.code == "W101":
            assert max(out) < alpha, d.one_line()
        elif d.code == "W102":
            assert max(out) == 0.0, d.one_line()
        else:
            other = by_line[int(d.message.split("(line ")[1].split(")")[0])]
            theirs = [other.truth_value * _truth(resolved, other.condition, p) for p in points]
            assert all(a <= b + 1e-12 for a, b in zip(out, theirs, strict=True)), d.one_line()
