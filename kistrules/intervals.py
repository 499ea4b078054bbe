"""Exact level sets of membership functions on the standardised domain [0, 1].

The logic warnings (`kistrules.analysis`) and counterfactual explanations need
questions such as "for which v' does `gray is very low` reach 0.8?" answered
exactly, not by sampling a grid that may step over a thin set or land a hair
off a breakpoint. Every membership function of the language is quasi-concave
(its upper level sets are intervals) and the hedges `very` (x^2) and
`somewhat` (sqrt x) are increasing bijections of [0, 1], so each level set is
an interval (or, with `not`, the complement of one) whose ends are found by
inverting the function in closed form.

Open and closed ends matter: the threshold test is `grade >= alpha`, so
`{truth >= L}` of a trapezoid is closed, while `{truth > 0}` (the support) is
open at a sloped edge and closed at a shoulder (`a == b` is 1 at v' == a, the
convention of `kistrules.membership`). `IntervalSet` keeps both kinds of end.

The membership semantics are the language contract's, as in
`kistrules.membership` (which is the torch implementation; this module is
scalar and torch-free so that `check` starts fast):

- `trapezoid(a, b, c, d)`: 0 below a and above d, (v - a) / (b - a) on [a, b),
  1 on [b, c], (d - v) / (d - c) on (c, d]; a shoulder edge is 1 up to and
  including its breakpoint.
- `triangle(a, b, c)` = `trapezoid(a, b, b, c)`.
- `gaussian(mean, sigma)` = exp(-(v - mean)^2 / (2 sigma^2)), taken in exact
  arithmetic (positive everywhere), not as float32 underflow would make it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from kistrules.builtins import HEDGES
from kistrules.resolve import MembershipFunction


@dataclass(frozen=True, order=True)
class Interval:
    """One interval of reals with explicitly closed or open ends; never empty."""

    lo: float
    hi: float
    lo_closed: bool = True
    hi_closed: bool = True

    def contains(self, x: float) -> bool:
        above = x > self.lo or (self.lo_closed and x == self.lo)
        below = x < self.hi or (self.hi_closed and x == self.hi)
        return above and below

    @property
    def is_empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def __str__(self) -> str:
        if self.lo == self.hi:
            return f"{{{_num(self.lo)}}}"
        left = "[" if self.lo_closed else "("
        right = "]" if self.hi_closed else ")"
        return f"{left}{_num(self.lo)}, {_num(self.hi)}{right}"


def _num(x: float) -> str:
    """A short but faithful rendering for messages (12 significant digits)."""
    text = f"{x:.12g}"
    return "0" if text == "-0" else text


_UNIT = (Interval(0.0, 1.0),)


class IntervalSet:
    """A subset of [0, 1]: sorted, disjoint, non-touching intervals.

    Two intervals that touch at a point belonging to either are merged, so
    every set has one canonical form and `==` compares sets, not spellings.
    """

    __slots__ = ("intervals",)

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        self.intervals: tuple[Interval, ...] = _normalise(intervals)

    # --- constructors -----------------------------------------------------

    @classmethod
    def empty(cls) -> IntervalSet:
        return cls()

    @classmethod
    def unit(cls) -> IntervalSet:
        """The whole standardised domain [0, 1]."""
        return cls(_UNIT)

    @classmethod
    def between(
        cls, lo: float, hi: float, *, lo_closed: bool = True, hi_closed: bool = True
    ) -> IntervalSet:
        """The interval from lo to hi, clipped to [0, 1]."""
        return cls([Interval(lo, hi, lo_closed, hi_closed)]) & cls.unit()

    # --- set algebra --------------------------------------------------------

    def __or__(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(self.intervals + other.intervals)

    def __and__(self, other: IntervalSet) -> IntervalSet:
        out = []
        for x in self.intervals:
            for y in other.intervals:
                lo, lo_closed = _max_end(x.lo, x.lo_closed, y.lo, y.lo_closed)
                hi, hi_closed = _min_end(x.hi, x.hi_closed, y.hi, y.hi_closed)
                out.append(Interval(lo, hi, lo_closed, hi_closed))
        return IntervalSet(out)

    def complement(self) -> IntervalSet:
        """[0, 1] minus this set."""
        out = []
        lo, lo_closed = 0.0, True
        for x in self.intervals:
            out.append(Interval(lo, x.lo, lo_closed, not x.lo_closed))
            lo, lo_closed = x.hi, not x.hi_closed
        out.append(Interval(lo, 1.0, lo_closed, True))
        return IntervalSet(out) & IntervalSet.unit()

    def __invert__(self) -> IntervalSet:
        return self.complement()

    # --- queries -------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return not self.intervals

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def measure(self) -> float:
        """Total length (Lebesgue measure); points count 0."""
        return sum(x.hi - x.lo for x in self.intervals)

    def contains(self, x: float) -> bool:
        return any(i.contains(x) for i in self.intervals)

    def __contains__(self, x: float) -> bool:
        return self.contains(x)

    def nearest(self, x: float) -> float | None:
        """The point of the set's closure nearest to x; None for the empty set.

        At an open end the nearest point is the end itself (the infimum of the
        distance): `(0.4, 1]` is nearest to 0.2 at 0.4, which the set only
        approaches. Ties go to the lower point.
        """
        best: float | None = None
        for i in self.intervals:
            candidate = min(max(x, i.lo), i.hi)
            if best is None or abs(candidate - x) < abs(best - x):
                best = candidate
        return best

    def __iter__(self) -> Iterator[Interval]:
        return iter(self.intervals)

    def __len__(self) -> int:
        return len(self.intervals)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntervalSet) and self.intervals == other.intervals

    def __hash__(self) -> int:
        return hash(self.intervals)

    def __repr__(self) -> str:
        return f"IntervalSet({list(self.intervals)!r})"

    def __str__(self) -> str:
        return " ∪ ".join(str(i) for i in self.intervals) if self.intervals else "∅"


def _max_end(a: float, a_closed: bool, b: float, b_closed: bool) -> tuple[float, bool]:
    """The tighter (larger) of two lower ends."""
    if a != b:
        return (a, a_closed) if a > b else (b, b_closed)
    return a, a_closed and b_closed


def _min_end(a: float, a_closed: bool, b: float, b_closed: bool) -> tuple[float, bool]:
    """The tighter (smaller) of two upper ends."""
    if a != b:
        return (a, a_closed) if a < b else (b, b_closed)
    return a, a_closed and b_closed


def _start(i: Interval) -> tuple[float, bool]:
    return (i.lo, not i.lo_closed)


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    items = [i for i in intervals if not i.is_empty]
    if len(items) <= 1:  # the common case, and the analysis's hot path
        return tuple(items)
    items.sort(key=_start)
    out: list[Interval] = []
    for item in items:
        if out:
            last = out[-1]
            touching = item.lo < last.hi or (
                item.lo == last.hi and (item.lo_closed or last.hi_closed)
            )
            if touching:
                hi, hi_closed = (
                    (item.hi, item.hi_closed)
                    if item.hi > last.hi
                    else (last.hi, last.hi_closed or (item.hi == last.hi and item.hi_closed))
                )
                out[-1] = Interval(last.lo, hi, last.lo_closed, hi_closed)
                continue
        out.append(item)
    return tuple(out)


# --- membership functions -----------------------------------------------------


def _names(hedges: Iterable[object]) -> list[str]:
    """Hedge names from strings or `Identifier` nodes."""
    return [h if isinstance(h, str) else h.name for h in hedges]  # type: ignore[attr-defined]


def hedge_exponent(hedges: Iterable[object]) -> float:
    """The power a chain of hedges amounts to (very = 2, somewhat = 1/2)."""
    exponent = 1.0
    for name in _names(hedges):
        exponent *= HEDGES[name]
    return exponent


def as_trapezoid(mf: MembershipFunction) -> tuple[float, float, float, float] | None:
    """(a, b, c, d) of a trapezoid or triangle; None for a gaussian."""
    if mf.function == "trapezoid":
        a, b, c, d = mf.params
        return a, b, c, d
    if mf.function == "triangle":
        a, b, c = mf.params
        return a, b, b, c
    if mf.function == "gaussian":
        return None
    raise ValueError(f"unknown membership function {mf.function!r}")


def membership(mf: MembershipFunction, v: float) -> float:
    """The grade of one standardised value (scalar, the contract's semantics)."""
    trap = as_trapezoid(mf)
    if trap is None:
        mean, sigma = mf.params
        return math.exp(-((v - mean) ** 2) / (2.0 * sigma * sigma))
    a, b, c, d = trap
    if v < a or v > d:
        return 0.0
    if b <= v <= c:
        return 1.0
    if v < b:
        return (v - a) / (b - a)
    return (d - v) / (d - c)


def term_truth(mf: MembershipFunction, hedges: Sequence[object], negated: bool, v: float) -> float:
    """The truth of a term `p is [not] [hedges] set` at standardised value v."""
    grade = membership(mf, v) ** hedge_exponent(hedges)
    return 1.0 - grade if negated else grade


ROUND_DIGITS = 12
# Below this grade, 1 - grade is 1 in float32 (half an ulp of 1 is 2^-25).
ONE_GAP = 2.0**-24


def _lerp(a: float, b: float, u: float) -> float:
    """a + u (b - a), exact at u = 0 and u = 1 (so a level of 1 lands on the plateau).

    Rounded to `ROUND_DIGITS` decimals: two edges that cross exactly at the
    level (low and mid at 0.3 for 0.5) must give the same end, and float
    arithmetic gives 0.3 one way and 0.30000000000000004 the other; the
    intersection would then be empty by one ulp. Ends that agree to 1e-12
    therefore meet; breakpoints 1e-9 apart are still told apart.
    """
    if u == 0.0 or u == 1.0:  # a breakpoint itself: exact, whatever its magnitude
        return a if u == 0.0 else b
    return round((1.0 - u) * a + u * b, ROUND_DIGITS)


def membership_level_set(mf: MembershipFunction, level: float, strict: bool = False) -> IntervalSet:
    """{v in [0, 1] : mf(v) >= level} (or > level when strict), in closed form."""
    if level < 0.0 or (level == 0.0 and not strict):
        return IntervalSet.unit()
    if level > 1.0 or (level == 1.0 and strict):
        return IntervalSet.empty()
    trap = as_trapezoid(mf)
    if trap is None:
        mean, sigma = mf.params
        if level == 0.0:  # strict: a gaussian is positive everywhere
            return IntervalSet.unit()
        radius = sigma * math.sqrt(-2.0 * math.log(level))
        return IntervalSet.between(
            round(mean - radius, ROUND_DIGITS),
            round(mean + radius, ROUND_DIGITS),
            lo_closed=not strict,
            hi_closed=not strict,
        )
    a, b, c, d = trap
    # A sloped edge crosses `level` at the lerp point (open when strict); a
    # shoulder edge is 1 up to and including its breakpoint, so it is closed.
    lo, lo_closed = (_lerp(a, b, level), not strict) if b > a else (a, True)
    hi, hi_closed = (_lerp(d, c, level), not strict) if d > c else (d, True)
    # An open end rounded onto the plateau would drop a point whose grade is 1.
    lo_closed = lo_closed or lo == b
    hi_closed = hi_closed or hi == c
    return IntervalSet.between(lo, hi, lo_closed=lo_closed, hi_closed=hi_closed)


def _hedged_level_set(
    mf: MembershipFunction, exponent: float, level: float, strict: bool
) -> IntervalSet:
    """{mf^exponent >= level} (> when strict): x^p is increasing, so invert the level."""
    if level <= 0.0:
        return membership_level_set(mf, level, strict)  # x^p >= 0 always; > 0 iff x > 0
    inverted = level ** (1.0 / exponent)
    if inverted == 0.0:  # underflow of a positive level: keep "> 0", not "everything"
        return membership_level_set(mf, 0.0, strict=True)
    if inverted >= 1.0 and level < 1.0 and strict:
        # a level just below 1 whose root rounded up to 1: "> almost 1" is the plateau
        return membership_level_set(mf, 1.0, strict=False)
    return membership_level_set(mf, inverted, strict)


def level_set(
    mf: MembershipFunction,
    hedges: Sequence[object],
    negated: bool,
    level: float,
    strict: bool = False,
) -> IntervalSet:
    """{v' in [0, 1] : truth(v') >= level}, or > level when `strict`.

    truth = [1 -] mf(v')^p with p the hedges' exponent. With `not`,
    {1 - x >= L} = {x <= 1 - L}, the complement of {x > 1 - L}, and
    {1 - x > L} is the complement of {x >= 1 - L}. One deliberate deviation
    from real arithmetic: for `not` of a gaussian at a level within 2^-24 of 1,
    grades up to 2^-24 count as 0, as the float32 scorer rounds them.

    >>> low = MembershipFunction("trapezoid", (0.0, 0.0, 0.2, 0.4))
    >>> str(level_set(low, (), False, 0.5))
    '[0, 0.3]'
    >>> str(level_set(low, (), True, 0.5))
    '[0.3, 1]'
    >>> str(support(low, ("very",), False))
    '[0, 0.4)'
    """
    exponent = hedge_exponent(hedges)
    if not negated:
        result = _hedged_level_set(mf, exponent, level, strict)
    elif level > 0.0 and 1.0 - level == 1.0 and not strict:
        # 1 - level rounded to 1: still exclude the points where the grade is 1
        result = _hedged_level_set(mf, exponent, 1.0, False).complement()
    elif not strict and 1.0 - level < ONE_GAP and mf.function == "gaussian":
        # {1 - g >= ~1}: a gaussian is never 0, so `not` never reaches 1 in real
        # arithmetic, but the float32 scorer rounds 1 - g to 1 in its tails. Count
        # grades up to 2^-24 as 0 there, so that no warning claims a rule can
        # never fire when the scorer fires it. (A trapezoid reaches 0 exactly:
        # no such gap, and its ends stay exact.)
        result = _hedged_level_set(mf, exponent, ONE_GAP, True).complement()
    else:
        result = _hedged_level_set(mf, exponent, 1.0 - level, not strict).complement()
    if mf.function == "gaussian":
        return result
    return _settle_domain_ends(result, mf, hedges, negated, level, strict)


def _settle_domain_ends(
    result: IntervalSet,
    mf: MembershipFunction,
    hedges: Sequence[object],
    negated: bool,
    level: float,
    strict: bool,
) -> IntervalSet:
    """Decide v' = 0 and v' = 1 by evaluating the term there.

    Every value below 0 or above gamma is clipped to these two points, so they
    matter more than any other; yet an interval end computed by `_lerp` may
    miss one of them by an ulp (trapezoid(-0.25, -0.25, -0.25, 1) reaches 0.8
    exactly at 0, and the lerp gives -2.8e-17), and clipping would turn that
    ulp into a lost point. Gaussians are left to their closed form: in float
    arithmetic they underflow to 0 where the contract's grade is positive.
    """
    for end in (0.0, 1.0):
        truth = term_truth(mf, hedges, negated, end)
        inside = truth > level if strict else truth >= level
        if inside != result.contains(end):
            point = IntervalSet([Interval(end, end)])
            result = result | point if inside else result & point.complement()
    return result


def support(mf: MembershipFunction, hedges: Sequence[object] = (), negated: bool = False):
    """{v' in [0, 1] : truth(v') > 0}."""
    return level_set(mf, hedges, negated, 0.0, strict=True)


def _membership_range(mf: MembershipFunction) -> tuple[float, float]:
    """(min, max) of mf over [0, 1].

    Quasi-concave functions reach their minimum over an interval at an end of
    it, and their maximum at the point of [0, 1] nearest the peak or plateau.
    """
    low = min(membership(mf, 0.0), membership(mf, 1.0))
    trap = as_trapezoid(mf)
    if trap is None:
        peak = min(max(mf.params[0], 0.0), 1.0)
    else:
        _, b, c, _ = trap
        # The plateau [b, c] if it meets [0, 1], else the end of [0, 1] nearest it.
        peak = 0.0 if c < 0.0 else 1.0 if b > 1.0 else max(b, 0.0)
    return low, membership(mf, peak)


def term_truth_range(
    mf: MembershipFunction, hedges: Sequence[object], negated: bool
) -> tuple[float, float]:
    """(min, max) of a term's truth over v' in [0, 1]; both are attained."""
    low, high = _membership_range(mf)
    exponent = hedge_exponent(hedges)
    low, high = low**exponent, high**exponent
    return (1.0 - high, 1.0 - low) if negated else (low, high)
