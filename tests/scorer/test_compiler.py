"""The compiled scorer against the plain-Python reference, plus the contract's edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kistrules.builtins import PROPERTIES
from kistrules.compiler import Scorer, ScoreTrace, TermInfo, compile_rulebook
from kistrules.errors import DataError, KistrulesError
from kistrules.resolve import resolve
from tests.reference import scorer as reference

from .strategies import (
    and_,
    not_,
    or_,
    raw_values,
    rule,
    rulebook,
    rulebooks,
    scale_def,
    set_def,
    term,
)

ALL = list(PROPERTIES)


def region_values(draw, book, n: int, *, nan: bool = True) -> dict[str, list[float]]:
    """Raw values of every property for n regions (unused ones are ignored by the scorer)."""
    return {
        p: draw(st.lists(raw_values(reference.scale_of(book, p), nan=nan), min_size=n, max_size=n))
        for p in ALL
    }


def score(book, values, dtype):
    scorer = compile_rulebook(resolve(book), dtype=dtype)
    props = {p: torch.tensor(v, dtype=torch.float64) for p, v in values.items()}
    return scorer, scorer(props, trace=True)


def near_step(book, result: reference.RegionResult, tol: float) -> bool:
    """Whether a standardised value lies within `tol` of a set's jump (float32 may cross it)."""
    from kistrules.ast import iter_terms

    for r in book.rules:
        for t in iter_terms(r.condition):
            prop = t.property.name
            v = result.standardised[prop]
            function, params = reference.set_of(book, prop, t.set.name)
            if any(abs(v - s) <= tol for s in reference.steps(function, params)):
                return True
    return False


def assert_matches(book, values, trace: ScoreTrace, scorer: Scorer, *, tol: float, exact: bool):
    n = len(next(iter(values.values())))
    assert trace.grade.shape == (n,)
    assert trace.rules.shape == (n, len(book.rules))
    assert trace.terms.shape[1] == len(scorer.terms)
    assert trace.classes.shape == (n, len(reference.classes_of(book)))
    assert scorer.class_names == tuple(reference.classes_of(book))
    for tensor in (trace.grade, trace.rules, trace.terms, trace.classes):
        assert not torch.isnan(tensor).any()
    if trace.classes.shape[1]:  # the overall grade is the max over the classes, bit for bit
        assert torch.equal(trace.classes.amax(1), trace.grade)
    for i in range(n):
        ref = reference.evaluate(book, {p: values[p][i] for p in ALL})
        if not exact and near_step(book, ref, 1e-5):
            continue
        for p, v in ref.standardised.items():
            got = float(trace.standardised[p][i])
            assert (math.isnan(v) and math.isnan(got)) or got == pytest.approx(v, abs=tol)
        assert trace.terms[i].tolist() == pytest.approx(ref.terms, abs=tol)
        assert trace.rules[i].tolist() == pytest.approx(ref.rules, abs=tol)
        assert float(trace.grade[i]) == pytest.approx(ref.grade, abs=tol)
        if abs(ref.grade - ref.threshold) > tol:
            assert bool(trace.fired[i]) == ref.fired
        assert trace.classes[i].tolist() == pytest.approx(list(ref.classes.values()), abs=tol)
        if exact:
            assert int(trace.winner[i]) in ref.winner
            code = int(trace.winner_class[i])
            assert (scorer.class_names[code] if code >= 0 else "anomalous") in ref.winner_classes
            for r, acceptable in enumerate(ref.limiting):
                assert int(trace.limiting[i, r]) in acceptable, (i, r, acceptable)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=rulebooks(), data=st.data())
def test_float64_equals_reference(book, data):
    n = data.draw(st.integers(1, 6))
    values = region_values(data.draw, book, n)
    scorer, trace = score(book, values, torch.float64)
    assert_matches(book, values, trace, scorer, tol=1e-6, exact=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=rulebooks(), data=st.data())
def test_float32_equals_reference(book, data):
    n = data.draw(st.integers(1, 6))
    values = region_values(data.draw, book, n)
    scorer, trace = score(book, values, torch.float32)
    assert trace.grade.dtype == torch.float32
    assert_matches(book, values, trace, scorer, tol=1e-5, exact=False)


# --- the paper's sets at their breakpoints, by hand --------------------------------


@pytest.mark.parametrize(
    ("set_name", "expected"),
    [
        # v' =        0    0.1  0.2  0.3  0.4  0.5  0.6  0.7  0.8  0.9  1
        ("low", [1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ("mid", [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]),
        ("high", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]),
    ],
)
def test_builtin_sets_at_breakpoints(set_name, expected):
    book = rulebook([rule(term("area", set_name), 1.0, 1)])
    scorer = compile_rulebook(resolve(book), dtype=torch.float64)
    values = torch.tensor([i / 10 for i in range(11)], dtype=torch.float64)  # area's gamma is 1
    grade = scorer({"area": values}).grade
    assert grade.tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("function", "params", "points"),
    [
        # left shoulder: 1 from a (inclusive) to c, 0 just below a
        ("trapezoid", (0.4, 0.4, 0.6, 0.8), {0.39: 0.0, 0.4: 1.0, 0.6: 1.0, 0.7: 0.5, 0.8: 0.0}),
        # right shoulder: 1 up to d (inclusive), 0 just after
        ("trapezoid", (0.1, 0.2, 0.5, 0.5), {0.1: 0.0, 0.15: 0.5, 0.5: 1.0, 0.51: 0.0}),
        ("trapezoid", (0.3, 0.3, 0.3, 0.3), {0.29: 0.0, 0.3: 1.0, 0.31: 0.0}),
        ("triangle", (0.2, 0.2, 0.6), {0.19: 0.0, 0.2: 1.0, 0.4: 0.5, 0.6: 0.0}),
        ("triangle", (0.2, 0.6, 0.6), {0.2: 0.0, 0.4: 0.5, 0.6: 1.0, 0.61: 0.0}),
        ("triangle", (0.0, 0.5, 1.0), {0.0: 0.0, 0.25: 0.5, 0.5: 1.0, 0.75: 0.5, 1.0: 0.0}),
        ("gaussian", (0.5, 0.1), {0.5: 1.0, 0.6: math.exp(-0.5), 0.3: math.exp(-2.0)}),
    ],
)
def test_membership_shapes(function, params, points):
    book = rulebook([set_def("s", function, params), rule(term("symmetry", "s"), 1.0, 1)])
    for dtype in (torch.float64, torch.float32):
        scorer = compile_rulebook(resolve(book), dtype=dtype)
        grade = scorer({"symmetry": torch.tensor(list(points), dtype=torch.float64)}).grade
        assert grade.tolist() == pytest.approx(list(points.values()), abs=1e-6)


def test_hedges_apply_from_the_set_outward_and_not_last():
    # gray' = 0.3 -> low = 0.5; somewhat -> sqrt(0.5); very -> 0.5; not -> 0.5 ...
    cases = {
        (): 0.5,
        ("very",): 0.25,
        ("somewhat",): math.sqrt(0.5),
        ("very", "very"): 0.0625,
        ("very", "somewhat"): 0.5,
    }
    for hedges, expected in cases.items():
        for negated in (False, True):
            book = rulebook([rule(term("gray", "low", negated=negated, hedges=hedges), 1.0, 1)])
            got = compile_rulebook(resolve(book), dtype=torch.float64)({"gray": [0.3 * 255]}).grade
            want = 1 - expected if negated else expected
            assert float(got[0]) == pytest.approx(want, abs=1e-12), (hedges, negated)


def test_and_or_not_truth_value_and_max_over_rules():
    # area' = 0.3: low 0.5, mid 0.5; gray' = 0.7: high 0.5, mid 0.5; shape' = 0.1: low 1
    book = rulebook(
        [
            rule(and_(term("area", "low"), term("shape", "low")), 0.8, 1),  # 0.8 * 0.5
            rule(or_(term("gray", "high"), not_(term("shape", "low"))), 0.9, 2),  # 0.9 * 0.5
            rule(not_(and_(term("area", "mid"), term("gray", "mid"))), 1.0, 3),  # 1 - 0.5
        ]
    )
    values = {"area": [0.3], "gray": [0.7 * 255], "shape": [0.1 * 187.5]}
    trace = compile_rulebook(resolve(book), dtype=torch.float64)(values, trace=True)
    assert trace.rules[0].tolist() == pytest.approx([0.4, 0.45, 0.5])
    assert float(trace.grade[0]) == pytest.approx(0.5)
    assert int(trace.winner[0]) == 2
    assert not bool(trace.fired[0])


def test_ties_go_to_the_first_rule_and_first_term():
    book = rulebook(
        [
            rule(and_(term("area", "high"), term("gray", "high")), 0.5, 1),
            rule(and_(term("gray", "high"), term("area", "high")), 0.5, 2),
            rule(or_(term("area", "high"), term("gray", "high")), 0.5, 3),
        ]
    )
    trace = compile_rulebook(resolve(book))({"area": [1.0, 0.0], "gray": [255.0, 0.0]}, trace=True)
    assert trace.winner.tolist() == [0, 0]
    # rule 1's terms are 0, 1; rule 2's 2, 3; rule 3's 4, 5: each picks its first on ties
    assert trace.limiting.tolist() == [[0, 2, 4], [0, 2, 4]]


def test_limiting_follows_min_at_and_max_at_or_through_not():
    # NOT (area is low OR gray is low): the OR's max is `gray is low` (1 > 0.5)
    book = rulebook(
        [
            rule(
                and_(term("shape", "high"), not_(or_(term("area", "low"), term("gray", "low")))),
                1,
                1,
            )
        ]
    )
    trace = compile_rulebook(resolve(book))(
        {"shape": [187.5], "area": [0.3], "gray": [0.0]}, trace=True
    )
    assert float(trace.rules[0, 0]) == pytest.approx(0.0)
    assert trace.limiting.tolist() == [[2]]


def test_out_of_range_raw_values_clip():
    book = rulebook([rule(term("gray", "low"), 1.0, 1), rule(term("area", "high"), 0.9, 2)])
    scorer = compile_rulebook(resolve(book), dtype=torch.float64)
    inf = float("inf")
    values = {"gray": [-1e6, -inf, 1e30, inf, -0.0], "area": [1e12, inf, -5.0, -inf, 0.0]}
    trace = scorer(values, trace=True)
    assert trace.standardised["gray"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert trace.standardised["area"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert trace.rules.tolist() == [[1.0, 0.9], [1.0, 0.9], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]


def test_nan_belongs_to_no_set_and_never_yields_nan():
    nan = float("nan")
    book = rulebook(
        [
            rule(term("gray", "low"), 1.0, 1),
            rule(term("gray", "low", negated=True, hedges=("very",)), 0.8, 2),
            rule(not_(term("area", "mid")), 0.7, 3),
            rule(and_(term("gray", "low"), term("area", "high")), 0.9, 4),
        ]
    )
    for dtype in (torch.float32, torch.float64):
        trace = compile_rulebook(resolve(book), dtype=dtype)(
            {"gray": [nan], "area": [nan]}, trace=True
        )
        assert trace.terms[0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
        assert trace.rules[0].tolist() == pytest.approx([0.0, 0.8, 0.7, 0.0])
        assert float(trace.grade[0]) == pytest.approx(0.8)
        assert math.isnan(float(trace.standardised["gray"][0]))


def test_zero_regions_gives_empty_tensors():
    book = rulebook(
        [
            rule(and_(term("gray", "low"), term("area", "high")), 1, 1),
            rule(not_(term("shape", "low")), 1, 2),
        ]
    )
    scorer = compile_rulebook(resolve(book))
    trace = scorer({p: torch.zeros(0) for p in scorer.properties}, trace=True)
    assert trace.grade.shape == (0,) and trace.grade.dtype == torch.float32
    assert trace.rules.shape == (0, 2)
    assert trace.winner.shape == (0,) and trace.winner.dtype == torch.int64
    assert trace.fired.shape == (0,) and trace.fired.dtype == torch.bool
    assert trace.terms.shape == (0, 3)
    assert trace.limiting.shape == (0, 2) and trace.limiting.dtype == torch.int64
    assert trace.standardised["gray"].shape == (0,)
    plain = scorer({p: np.zeros(0) for p in scorer.properties})
    assert plain.terms is None and plain.limiting is None and plain.standardised is None


def test_many_regions_in_chunks_equal_small_batches():
    # More regions than one CPU pass holds: the chunked result equals small batches.
    book = rulebook(
        [
            rule(and_(term("area", "high"), term("gray", "low"), term("unevenness", "low")), 1, 1),
            rule(or_(term("shape", "high"), not_(term("symmetry", "mid"))), 0.8, 2),
        ]
    )
    scorer = compile_rulebook(resolve(book), dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    n = 3 * scorer._chunk_size(10**6) + 17
    values = {
        p: torch.rand(n, generator=generator, dtype=torch.float64) * PROPERTIES[p].default_scale
        for p in scorer.properties
    }
    whole = scorer(values, trace=True)
    for start in (0, n // 2, n - 500):
        part = scorer({p: v[start : start + 500] for p, v in values.items()}, trace=True)
        for field in ("grade", "rules", "winner", "fired", "terms", "limiting"):
            assert torch.equal(getattr(whole, field)[start : start + 500], getattr(part, field))
    for i in (0, n // 3, n - 1):
        ref = reference.evaluate(book, {p: float(v[i]) for p, v in values.items()})
        assert float(whole.grade[i]) == pytest.approx(ref.grade, abs=1e-12)


# --- the module's surface ------------------------------------------------------------


def test_public_attributes_and_term_info():
    book = rulebook(
        [
            scale_def("gray", 200.0),
            set_def("low", "trapezoid", (0.0, 0.0, 0.3, 0.5), prop="gray"),
            set_def("spot", "gaussian", (0.2, 0.1)),
            rule(
                and_(term("gray", "low", negated=True, hedges=("very",)), term("area", "spot")),
                0.9,
                1,
                "dark",
            ),
            rule(term("shape", "high"), None, 2),
        ]
    )
    scorer = compile_rulebook(resolve(book), device="cpu")
    assert isinstance(scorer, Scorer) and isinstance(scorer, torch.nn.Module)
    assert scorer.properties == ("gray", "area", "shape")
    assert scorer.rule_names == ("dark", "rule 2")
    assert scorer.threshold == 0.8
    assert scorer.terms[0] == TermInfo(
        rule=0,
        property="gray",
        set="low",
        hedges=("very",),
        negated=True,
        label="gray is not very low",
        mf=resolve(book).sets[("gray", "low")],
        scale=200.0,
    )
    assert scorer.terms[0].mf.params == (0.0, 0.0, 0.3, 0.5)
    assert [t.label for t in scorer.terms] == [
        "gray is not very low",
        "area is spot",
        "shape is high",
    ]
    assert [t.rule for t in scorer.terms] == [0, 0, 1]
    assert scorer.terms[1].mf.function == "gaussian" and scorer.terms[1].scale == 1.0
    assert scorer.terms[2].scale == 187.5


def test_device_dtype_and_input_kinds():
    book = rulebook([rule(and_(term("gray", "low"), term("area", "high")), 1.0, 1)])
    for device in ("cpu", torch.device("cpu")):
        scorer = compile_rulebook(resolve(book), device=device, dtype=torch.float64)
        assert scorer.device == torch.device("cpu")
        trace = scorer({"gray": np.array([0.0, 255.0]), "area": [1.0, 1.0], "unused": "ignored"})
        assert trace.grade.device == torch.device("cpu") and trace.grade.dtype == torch.float64
        assert trace.grade.tolist() == [1.0, 0.0]


def test_region_table_input():
    from kistrules.regions import measure

    image = torch.zeros(16, 16)
    labels = torch.zeros(16, 16, dtype=torch.int64)
    labels[2:12, 2:12] = 1  # a large dark square
    labels[14, 14] = 2
    image[14, 14] = 250.0  # a bright speck
    table = measure(image, labels)
    book = rulebook(
        [scale_def("area", 0.5), rule(and_(term("area", "high"), term("gray", "low")), 1, 1)]
    )
    trace = compile_rulebook(resolve(book), dtype=torch.float64)(table, trace=True)
    area = table["area"].double()
    assert trace.standardised["area"].tolist() == pytest.approx((area / 0.5).clamp(0, 1).tolist())
    assert trace.fired.tolist() == [True, False]


def test_bad_inputs_raise_data_errors_naming_the_problem():
    book = rulebook([rule(and_(term("gray", "low"), term("area", "high")), 1.0, 1)], path="x.rules")
    scorer = compile_rulebook(resolve(book))
    with pytest.raises(DataError, match=r"lack 'area'.*x\.rules"):
        scorer({"gray": torch.zeros(3)})
    with pytest.raises(DataError, match="1-D"):
        scorer({"gray": torch.zeros(3, 1), "area": torch.zeros(3)})
    with pytest.raises(DataError, match="differ in length"):
        scorer({"gray": torch.zeros(3), "area": torch.zeros(2)})
    with pytest.raises(DataError, match="mapping"):
        scorer([1.0, 2.0])


def test_a_rulebook_without_rules_is_a_user_error():
    with pytest.raises(KistrulesError, match=r"empty\.rules.*no rules"):
        compile_rulebook(resolve(rulebook([scale_def("gray", 100.0)], path="empty.rules")))


def test_rules_written_differently_but_equal_give_equal_grades():
    # De Morgan and nesting: NOT (a AND b) == NOT a OR NOT b; (a AND b) AND c == a AND b AND c
    a, b, c = term("area", "mid"), term("gray", "high"), term("shape", "low")
    left = rulebook([rule(not_(and_(a, b)), 1, 1), rule(and_(and_(a, b), c), 1, 2)])
    right = rulebook(
        [
            rule(or_(term("area", "mid", negated=True), term("gray", "high", negated=True)), 1, 1),
            rule(and_(a, b, c), 1, 2),
        ]
    )
    generator = torch.Generator().manual_seed(0)
    values = {
        p: torch.rand(200, generator=generator) * 1.2 * PROPERTIES[p].default_scale for p in ALL
    }
    one = compile_rulebook(resolve(left), dtype=torch.float64)(values, trace=True)
    two = compile_rulebook(resolve(right), dtype=torch.float64)(values, trace=True)
    assert torch.allclose(one.rules, two.rules, atol=1e-12)
    assert torch.equal(one.limiting[:, 1], two.limiting[:, 1])


@pytest.mark.parametrize(
    ("function", "params"),
    [
        ("trapezoid", (0.0, 0.0, 0.2, 0.4)),
        ("trapezoid", (0.35, 0.35, 0.5, 0.85)),
        ("trapezoid", (0.1, 0.3, 0.7, 0.7)),
        ("triangle", (0.2, 0.5, 0.9)),
        ("triangle", (0.4, 0.4, 0.4)),
        ("gaussian", (0.25, 0.2)),
    ],
)
def test_grade_set_equals_reference_on_a_grid(function, params):
    from kistrules.membership import grade_set

    grid = [i / 200 for i in range(201)]
    got = grade_set(function, params, torch.tensor(grid, dtype=torch.float64))
    want = [reference.membership(function, params, v) for v in grid]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_inputs_that_require_grad_are_graded_without_autograd():
    book = rulebook([rule(and_(term("gray", "low"), term("area", "high")), 1.0, 1)])
    gray = torch.tensor([0.0, 255.0], requires_grad=True)
    trace = compile_rulebook(resolve(book))({"gray": gray, "area": torch.ones(2)}, trace=True)
    assert trace.grade.tolist() == [1.0, 0.0] and not trace.grade.requires_grad
