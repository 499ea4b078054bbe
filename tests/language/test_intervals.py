"""Exact level sets against dense sampling, the independent reference.

Grades for the reference come from pyfuzzylite (an independent fuzzy-logic
library whose Trapezoid, Triangle and Gaussian have the contract's semantics,
shoulders included), so a misreading of the trapezoid convention in
`kistrules.intervals` would not cancel out.
"""

from __future__ import annotations

import math

import fuzzylite as fl
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kistrules.intervals import (
    Interval,
    IntervalSet,
    level_set,
    membership,
    support,
    term_truth,
    term_truth_range,
)
from kistrules.resolve import MembershipFunction

GRID = np.linspace(0.0, 1.0, 2001)
# Breakpoints drawn from a coarse grid make shoulders (a == b), points
# (a == b == c == d) and edges exactly at 0 or 1 common.
BREAK = st.one_of(
    st.sampled_from([-0.25, 0.0, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25]),
    st.floats(-0.5, 1.5, allow_nan=False, allow_subnormal=False),
)
HEDGE_CHAINS = st.lists(st.sampled_from(["very", "somewhat"]), max_size=3)
LEVELS = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.64, 0.8, 1.0]), st.floats(0.0, 1.0, allow_nan=False)
)


@st.composite
def membership_functions(draw) -> MembershipFunction:
    kind = draw(st.sampled_from(["trapezoid", "triangle", "gaussian"]))
    if kind == "gaussian":
        mean = draw(BREAK)
        sigma = draw(st.floats(0.01, 1.0))
        return MembershipFunction("gaussian", (mean, sigma))
    arity = 4 if kind == "trapezoid" else 3
    params = tuple(sorted(draw(BREAK) for _ in range(arity)))
    return MembershipFunction(kind, params)


def lossy(mf: MembershipFunction, hedges, negated: bool, v: np.ndarray) -> np.ndarray:
    """Where float evaluation of `not` loses the answer: 1 - x for tiny x > 0 is 1.0.

    (`not very very very tri` at a grade of 0.008 is 1 - 3e-17, which a float
    holds as 1.0; the closed form keeps it below 1.) Such points are skipped.
    """
    if not negated:
        return np.zeros(v.shape, dtype=bool)
    hedged = 1.0 - reference_truth(mf, hedges, True, v)
    exact = reference_truth(mf, hedges, False, v)
    # and, for a gaussian, grades up to 2^-24, which `not` near level 1 counts as 0
    tiny = 2.0**-24 if mf.function == "gaussian" else 1e-12
    return (exact > 0) & (exact <= tiny) | (hedged != exact)


def reference_truth(mf: MembershipFunction, hedges, negated: bool, v: np.ndarray) -> np.ndarray:
    """Truth over an array of v' via pyfuzzylite, hedges as literal powers."""
    term = {"trapezoid": fl.Trapezoid, "triangle": fl.Triangle, "gaussian": fl.Gaussian}[
        mf.function
    ]("x", *mf.params)
    grades = np.asarray(term.membership(np.asarray(v, dtype=float)), dtype=float)
    for hedge in reversed(hedges):  # applied from the set outward
        grades = grades**2 if hedge == "very" else np.sqrt(grades)
    return 1.0 - grades if negated else grades


def _ends(s: IntervalSet) -> list[float]:
    return [e for i in s for e in (i.lo, i.hi)]


def _check_against_sampling(
    s: IntervalSet,
    truth: np.ndarray,
    level: float,
    strict: bool,
    smooth: bool = False,
    skip: np.ndarray | None = None,
):
    inside = truth > level if strict else truth >= level
    ends = np.array(_ends(s) or [-10.0])
    # Points within a hair of an end are where float rounding of the reference
    # and the closed form may disagree; the ends are checked separately.
    far = np.min(np.abs(GRID[:, None] - ends[None, :]), axis=1) > 1e-9
    if smooth:
        # A gaussian is positive everywhere, but float64 underflows it to 0 far
        # from the mean (and 1 - tiny rounds to 1): skip grades within rounding
        # of the level. Only for gaussians, so that a trapezoid plateau lying
        # exactly at the level is still checked point by point.
        far &= np.abs(truth - level) > 1e-9
    if skip is not None:
        far &= ~skip
    got = np.array([s.contains(float(v)) for v in GRID])
    bad = np.nonzero((got != inside) & far)[0]
    assert bad.size == 0, f"{s} vs sampling at v={GRID[bad[:5]]}, truth={truth[bad[:5]]}"


@settings(max_examples=300, deadline=None)
@given(membership_functions(), HEDGE_CHAINS, st.booleans(), LEVELS, st.booleans())
def test_level_set_matches_dense_sampling(mf, hedges, negated, level, strict):
    s = level_set(mf, hedges, negated, level, strict=strict)
    truth = reference_truth(mf, hedges, negated, GRID)
    skip = lossy(mf, hedges, negated, GRID)
    _check_against_sampling(s, truth, level, strict, mf.function == "gaussian", skip)
    # The ends themselves: a closed end reaches the level (up to rounding), an
    # open end does not exceed it. A hair inward/outward absorbs the rounding
    # of an end on a very steep edge. `not` of a gaussian near level 1 counts
    # grades up to 2^-24 as 0 (as float32 does): its ends may fall short by that.
    gaussian_gap = mf.function == "gaussian" and negated and not strict
    slack = 2.0**-24 if gaussian_gap and level > 1 - 2.0**-24 else 1e-9
    for interval in s:
        for end, closed, inward in (
            (interval.lo, interval.lo_closed, 1e-12),
            (interval.hi, interval.hi_closed, -1e-12),
        ):
            t = term_truth(mf, hedges, negated, end)
            if closed:
                t = max(t, term_truth(mf, hedges, negated, end + inward))
                assert t >= level - slack
            elif 0.0 < end < 1.0:
                t = min(t, term_truth(mf, hedges, negated, end - inward))
                assert t <= level + 1e-9


@settings(max_examples=200, deadline=None)
@given(membership_functions(), HEDGE_CHAINS, st.booleans())
def test_support_is_where_truth_is_positive(mf, hedges, negated):
    s = support(mf, hedges, negated)
    truth = reference_truth(mf, hedges, negated, GRID)
    skip = lossy(mf, hedges, negated, GRID)
    _check_against_sampling(s, truth, 0.0, True, mf.function == "gaussian", skip)


@settings(max_examples=200, deadline=None)
@given(membership_functions(), HEDGE_CHAINS, st.booleans())
def test_truth_range_matches_sampling(mf, hedges, negated):
    lo, hi = term_truth_range(mf, hedges, negated)
    # The grid plus every breakpoint inside [0, 1]: extremes of these
    # piecewise-monotone functions lie at breakpoints or ends.
    extra = [p for p in mf.params if 0.0 <= p <= 1.0]
    v = np.concatenate([GRID, np.array(extra)])
    truth = reference_truth(mf, hedges, negated, v)
    assert lo == pytest.approx(float(truth.min()), abs=1e-9)
    assert hi == pytest.approx(float(truth.max()), abs=1e-9)


def test_scalar_membership_matches_torch():
    mfs = [
        MembershipFunction("trapezoid", (0.0, 0.0, 0.2, 0.4)),
        MembershipFunction("trapezoid", (0.2, 0.2, 0.5, 0.5)),
        MembershipFunction("triangle", (0.1, 0.3, 0.9)),
        MembershipFunction("gaussian", (0.5, 0.1)),
    ]
    for mf in mfs:
        ours = np.array([membership(mf, float(v)) for v in GRID])
        np.testing.assert_allclose(ours, reference_truth(mf, (), False, GRID), atol=1e-12)


# --- hand-worked cases: open and closed ends ------------------------------------

LOW = MembershipFunction("trapezoid", (0.0, 0.0, 0.2, 0.4))
HIGH = MembershipFunction("trapezoid", (0.6, 0.8, 1.0, 1.0))


def test_worked_examples():
    # str() rounds to 12 digits: 0.2 * 0.6 + 0.8 * 0.8 is 0.76 only up to rounding
    assert str(level_set(HIGH, (), False, 0.8)) == "[0.76, 1]"
    assert level_set(HIGH, (), False, 1.0) == IntervalSet([Interval(0.8, 1.0)])
    # very high >= 0.64 <=> high >= 0.8
    assert str(level_set(HIGH, ("very",), False, 0.64)) == "[0.76, 1]"
    # support of low is [0, 0.4): closed at the shoulder, open at the sloped edge
    assert support(LOW) == IntervalSet([Interval(0.0, 0.4, True, False)])
    # not low > 0 <=> low < 1 <=> v > 0.2
    assert support(LOW, (), True) == IntervalSet([Interval(0.2, 1.0, False, True)])
    # not low >= 1 <=> low <= 0 <=> v >= 0.4
    assert level_set(LOW, (), True, 1.0) == IntervalSet([Interval(0.4, 1.0)])
    # a shoulder inside [0, 1] is a closed jump
    step = MembershipFunction("trapezoid", (0.5, 0.5, 1.0, 1.0))
    assert support(step) == IntervalSet([Interval(0.5, 1.0)])
    assert support(step, (), True) == IntervalSet([Interval(0.0, 0.5, True, False)])
    point = MembershipFunction("trapezoid", (0.3, 0.3, 0.3, 0.3))
    assert level_set(point, (), False, 1.0) == IntervalSet([Interval(0.3, 0.3)])
    assert str(support(point, (), True)) == "[0, 0.3) ∪ (0.3, 1]"
    # a set entirely outside [0, 1]
    beyond = MembershipFunction("trapezoid", (1.2, 1.3, 1.5, 2.0))
    assert support(beyond).is_empty
    assert term_truth_range(beyond, (), False) == (0.0, 0.0)
    g = MembershipFunction("gaussian", (0.5, 0.1))
    r = 0.1 * math.sqrt(-2 * math.log(0.5))
    (half,) = level_set(g, (), False, 0.5)  # ends rounded to 12 decimals
    assert (half.lo, half.hi) == pytest.approx((0.5 - r, 0.5 + r), abs=1e-12)
    assert half.lo_closed and half.hi_closed
    assert support(g) == IntervalSet.unit()


# --- IntervalSet algebra against pointwise truth --------------------------------

ENDS = st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.6, 1.0, -0.1, 1.1])


@st.composite
def interval_sets(draw) -> IntervalSet:
    intervals = []
    for _ in range(draw(st.integers(0, 4))):
        lo, hi = sorted((draw(ENDS), draw(ENDS)))
        intervals.append(Interval(lo, hi, draw(st.booleans()), draw(st.booleans())))
    return IntervalSet(intervals) & IntervalSet.unit()


PROBES = [x / 20 for x in range(21)] + [0.01, 0.19, 0.21, 0.39, 0.41, 0.99]


@settings(max_examples=300, deadline=None)
@given(interval_sets(), interval_sets())
def test_algebra_is_pointwise(a, b):
    for x in PROBES:
        assert (a | b).contains(x) == (a.contains(x) or b.contains(x))
        assert (a & b).contains(x) == (a.contains(x) and b.contains(x))
        assert a.complement().contains(x) == (not a.contains(x))
    assert a.complement().complement() == a
    assert (a | a.complement()) == IntervalSet.unit()
    assert (a & a.complement()).is_empty
    assert a.measure() + a.complement().measure() == pytest.approx(1.0)
    # canonical form: sorted, disjoint, never touching at a member point
    for left, right in zip(a.intervals, a.intervals[1:], strict=False):
        assert left.hi < right.lo or (
            left.hi == right.lo and not left.hi_closed and not right.lo_closed
        )


def test_nearest():
    s = IntervalSet([Interval(0.1, 0.2), Interval(0.4, 1.0, False, True)])
    assert s.nearest(0.0) == 0.1
    assert s.nearest(0.15) == 0.15
    assert s.nearest(0.35) == 0.4  # the open end: the infimum of the distance
    assert s.nearest(0.29) == 0.2
    assert IntervalSet.empty().nearest(0.5) is None
    assert s.measure() == pytest.approx(0.7)
