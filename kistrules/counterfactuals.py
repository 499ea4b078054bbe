"""What change of a region's properties would make a rule that missed fire, exactly.

Answered from the membership functions' level sets (`kistrules.intervals`),
not by searching:

A rule with truth value TV fires when TV * truth(condition) >= alpha, i.e. when
the condition reaches L = alpha / TV. Holding every other property at its
value, the standardised values x of property p at which it does form an
IntervalSet, built bottom-up: a term on p gives its level set, a term on
another property is a constant (all of [0, 1] or nothing), AND intersects,
OR unites, and NOT c >= L is the complement of c > 1 - L (De Morgan). The
point of that set nearest the current v' is the smallest change; raw = v' *
gamma converts it back (v' = 1 means raw >= gamma). Among the rule's
properties the smallest standardised change wins (`counterfactuals`).

When no single property can do it, two may (`pair_counterfactual`). The
smallest change of two properties p and q is the one with the least sum of
standardised changes |dp'| + |dq'| (the L1 distance in v', in which every
property's full scale counts 1). The terms on q cut [0, 1] into pieces (the
ends of their level sets at the levels the condition tree puts them at) on
which each of them is constant; on each piece the set of p is one
`satisfying_set`, so the exact optimum is the best over q's pieces, found in
order of distance with a bound.

A suggestion is plausible when the image shows such values: each change says
whether its value lies outside the range of the property on the image's
other regions (`seen_ranges`), e.g. "area >= 0.019" for a region of an image
whose other regions are all below 0.004.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kistrules.ast import And, Not, Or, Term
from kistrules.intervals import IntervalSet, level_set, term_truth

# How far inside the satisfying set a suggested value is placed: the scorer runs
# in float32, so a point exactly on a level-set boundary may grade a hair below
# alpha. The nudge is capped at half the interval's width (never leaves it).
NUDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)

# (rule, rows of {property: raw value}) -> does the rule reach alpha with each row's
# values (the region's own values elsewhere)? One call scores all the rows at once.
Verify = Callable[[int, Sequence[Mapping[str, float]]], list[bool]]


@dataclass(frozen=True)
class Counterfactual:
    """The smallest change of one property that makes a missed rule reach alpha."""

    rule: str
    property: str
    raw_from: float
    raw_to: float
    standardised_from: float
    standardised_to: float
    change: float  # |standardised_to - standardised_from|
    satisfying: list[list[float]]  # the raw intervals [lo, hi] where the rule fires (hi may be inf)
    text: str
    # [min, max] of the property's raw values on the image's other regions; None without any.
    seen_range: list[float] | None = None
    outside_seen_range: bool | None = None  # raw_to lies outside seen_range (None: no range)


@dataclass(frozen=True)
class PropertyChange:
    """One property's part of a two-property counterfactual."""

    property: str
    raw_from: float
    raw_to: float
    standardised_from: float
    standardised_to: float
    change: float  # |standardised_to - standardised_from|
    satisfying: list[list[float]]  # raw intervals where the rule fires, the other change made
    seen_range: list[float] | None = None
    outside_seen_range: bool | None = None


@dataclass(frozen=True)
class PairCounterfactual:
    """The smallest change of two properties together (sum of standardised changes)."""

    rule: str
    changes: list[PropertyChange]  # two, in the order the rule first names them
    change: float  # the sum of the two standardised changes
    text: str


# --- level sets of a condition ----------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def _term_set(
    mf: Any, hedges: tuple[str, ...], negated: bool, level: float, strict: bool
) -> IntervalSet:
    """`level_set`, kept: every region asks each rule's terms at the same few levels
    (alpha / TV and its complement), and a pair asks them once per piece. Bounded."""
    return level_set(mf, hedges, negated, level, strict)


def satisfying_set(
    condition: Any,
    infos: Sequence[Any],
    prop: str,
    values: Mapping[str, float],
    level: float,
    *,
    strict: bool = False,
) -> IntervalSet:
    """{x in [0, 1] : condition(x) >= level} (> when strict), x the standardised value of `prop`.

    `infos` are the condition's TermInfos in the order its terms are written
    (the scorer's numbering); `values` holds the standardised value of every
    property, of which all but `prop` stay fixed.
    """
    counter = iter(range(len(infos)))

    def walk(node: Any, level: float, strict: bool) -> IntervalSet:
        if isinstance(node, Term):
            info = infos[next(counter)]
            if info.property == prop:
                return _term_set(info.mf, info.hedges, info.negated, level, strict)
            # A term on another property is a constant: all of [0, 1] or nothing.
            truth = term_truth(info.mf, info.hedges, info.negated, values[info.property])
            ok = truth > level if strict else truth >= level
            return IntervalSet.unit() if ok else IntervalSet.empty()
        if isinstance(node, Not):
            # NOT c >= L  <=>  c <= 1 - L  <=>  not (c > 1 - L); strict swaps the strictness.
            return walk(node.operand, 1.0 - level, not strict).complement()
        parts = [walk(operand, level, strict) for operand in node.operands]
        out = parts[0]
        for part in parts[1:]:
            out = out & part if isinstance(node, And) else out | part
        return out

    assert isinstance(condition, (Term, Not, And, Or))
    return walk(condition, level, strict)


def breakpoints(condition: Any, infos: Sequence[Any], prop: str, level: float) -> list[float]:
    """The ends of the level sets of `prop`'s terms, at the levels `satisfying_set` asks.

    Between two consecutive points (and at each point) every term on `prop`
    is on one side of its level, so the condition's truth for the other
    properties does not change: [0, 1] splits into that many pieces.
    """
    counter = iter(range(len(infos)))
    ends = {0.0, 1.0}

    def walk(node: Any, level: float, strict: bool) -> None:
        if isinstance(node, Term):
            info = infos[next(counter)]
            if info.property == prop:
                for interval in _term_set(info.mf, info.hedges, info.negated, level, strict):
                    ends.update((interval.lo, interval.hi))
        elif isinstance(node, Not):
            walk(node.operand, 1.0 - level, not strict)
        else:
            for operand in node.operands:
                walk(operand, level, strict)

    walk(condition, level, False)
    return sorted(e for e in ends if 0.0 <= e <= 1.0)


@dataclass(frozen=True)
class Piece:
    """A point {lo} (lo == hi) or an open interval (lo, hi) of one property's [0, 1]."""

    lo: float
    hi: float

    @property
    def inside(self) -> float:
        """A point of the piece: the point itself, or the middle of the interval."""
        return self.lo if self.lo == self.hi else (self.lo + self.hi) / 2.0

    def nearest(self, x: float) -> float:
        """The point of the piece's closure nearest x."""
        return min(max(x, self.lo), self.hi)

    def nudged(self, target: float, current: float, nudge: float) -> float:
        """`target` moved a little into the piece (an open end is not in it)."""
        if self.lo == self.hi or nudge == 0.0:
            return target
        step = min(nudge, (self.hi - self.lo) / 2.0)
        if target >= current:
            return min(max(target, self.lo + step), self.hi - step)
        return max(min(target, self.hi - step), self.lo + step)


def pieces(points: Sequence[float]) -> Iterator[Piece]:
    """The points and the open intervals between consecutive points, in order."""
    for index, point in enumerate(points):
        yield Piece(point, point)
        if index + 1 < len(points):
            yield Piece(point, points[index + 1])


# --- the range each property takes on the image's other regions ---------------------


def seen_ranges(values: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): min and max of `values` over each region's OTHER regions of its image.

    NaN where a region has no other region with a finite value. Vectorised:
    the two smallest and two largest values of each image give every region's
    range without it, O(N log N) in all.
    """
    values = np.asarray(values, dtype=np.float64)
    images = np.asarray(images, dtype=np.int64)
    lo = np.full(values.shape, np.nan)
    hi = np.full(values.shape, np.nan)
    for image in np.unique(images):
        where = np.flatnonzero(images == image)
        v = values[where]
        finite = np.isfinite(v)
        lo[where] = _without_self(np.where(finite, v, np.inf), np.inf)
        hi[where] = -_without_self(np.where(finite, -v, np.inf), np.inf)
    return lo, hi


def _without_self(v: np.ndarray, empty: float) -> np.ndarray:
    """For each i, min(v[j] for j != i); NaN where that is `empty` (no other value)."""
    if v.size < 2:
        return np.full(v.shape, np.nan)
    order = np.argpartition(v, 1)[:2]
    first, second = v[order[0]], v[order[1]]
    out = np.full(v.shape, first)
    out[order[0]] = second
    out[out == empty] = np.nan
    return out


def _seen(seen: Mapping[str, tuple[float, float]] | None, prop: str, raw_to: float):
    """(seen_range, outside_seen_range) of a suggested raw value."""
    if seen is None or prop not in seen:
        return None, None
    lo, hi = seen[prop]
    return [lo, hi], bool(raw_to < lo or raw_to > hi)


def _outside_note(
    changes: Sequence[tuple[str, list[float] | None, bool | None]], others: int
) -> str:
    """ "; outside the range of the image's 3 other regions (area 0.0001 to 0.004)".

    `changes` are (property, seen_range, outside_seen_range); "" when all are inside.
    """
    outside = [(prop, seen) for prop, seen, out in changes if out and seen is not None]
    if not outside:
        return ""
    ranges = ", ".join(
        f"{prop} {lo:.4g}" if lo == hi else f"{prop} {lo:.4g} to {hi:.4g}"
        for prop, (lo, hi) in outside
    )
    whose = "the image's other region" if others == 1 else f"the image's {others} other regions"
    return f"; outside the range of {whose} ({ranges})"


# --- the text ---------------------------------------------------------------------


def _raw(standardised: float, gamma: float) -> float:
    return standardised * gamma


def _raw_intervals(sat: IntervalSet, gamma: float) -> list[list[float]]:
    return [[_raw(i.lo, gamma), math.inf if i.hi >= 1.0 else _raw(i.hi, gamma)] for i in sat]


def _phrase(prop: str, sat_raw: list[list[float]], to: float, going_up: bool) -> str:
    """ "area >= 0.031" or "area in [0.001, 0.004]", rounded so that the bound still holds."""
    interval = next((i for i in sat_raw if i[0] <= to <= i[1]), None)
    if going_up:
        bound = _round(to, up=True)
        if interval is not None and math.isfinite(interval[1]):
            return f"{prop} in [{bound}, {_round(interval[1], up=False)}]"
        return f"{prop} >= {bound}"
    bound = _round(to, up=False)
    if interval is not None and interval[0] > 0.0:
        return f"{prop} in [{_round(interval[0], up=True)}, {bound}]"
    return f"{prop} <= {bound}"


def _round(value: float, *, up: bool, digits: int = 4) -> str:
    """`value` to `digits` significant digits, rounded up or down (never across the bound)."""
    if value == 0.0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    scale = 10.0**exponent
    q = value / scale
    rounded = (math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)) * scale
    if exponent < 0:
        return f"{rounded:.{-exponent}f}".rstrip("0").rstrip(".")
    return f"{rounded:.0f}"


# --- one property ------------------------------------------------------------------


def _level(scorer: Any, rule_index: int) -> float:
    """The truth the rule's condition must reach: alpha / TV."""
    return float(scorer.threshold) / float(scorer.resolved.rules[rule_index].truth_value)


def can_fire(scorer: Any, rule_index: int) -> bool:
    """False when the rule's TV is below alpha: no change of any property helps."""
    return _level(scorer, rule_index) <= 1.0


def _gammas(infos: Sequence[Any]) -> dict[str, float]:
    """Each property of a rule and its scale, in the order the rule first names them."""
    gammas: dict[str, float] = {}
    for info in infos:
        gammas.setdefault(info.property, float(info.scale))
    return gammas


def counterfactuals(
    scorer: Any,
    rule_index: int,
    standardised: Mapping[str, float],
    raw: Mapping[str, float],
    *,
    verify: Verify | None = None,
    seen: Mapping[str, tuple[float, float]] | None = None,
    others: int = 0,
) -> tuple[list[Counterfactual], str | None]:
    """Every single-property change that makes rule `rule_index` reach alpha, nearest first.

    Args:
        scorer: the compiled rulebook (its terms, scales, threshold, rules).
        rule_index: the rule, in rulebook order.
        standardised: v' of every used property for this region (from the trace).
        raw: the raw values (to report the change from).
        verify: optional check `(rule, [{property: raw value}, ...]) -> [fires?]` with
            the scorer; a suggestion the float32 scorer does not confirm is nudged
            further in. Every property's suggestion is checked in one call.
        seen: property -> (min, max) raw value on the image's other regions, of
            which there are `others`; a suggestion outside it says so.

    Returns:
        (candidates sorted by standardised change, reason when there is none).
    """
    name = scorer.rule_names[rule_index]
    alpha = float(scorer.threshold)
    level = _level(scorer, rule_index)
    if level > 1.0:
        tv = float(scorer.resolved.rules[rule_index].truth_value)
        return [], f"TV {tv:g} is below the threshold {alpha:g}: {name} can never fire"
    condition = scorer.resolved.rules[rule_index].condition
    infos = scorer.rule_terms(rule_index)
    gammas = _gammas(infos)
    targets = []  # (property, its satisfying set, nearest point, the nudged tries)
    for prop in gammas:
        current = float(standardised[prop])
        sat = satisfying_set(condition, infos, prop, standardised, level)
        target = sat.nearest(current) if not math.isnan(current) else None
        if target is not None:
            tries = [_nudged(target, sat, current, nudge) for nudge in NUDGES]
            targets.append((prop, sat, target, tries))
    confirmed = _confirm(
        verify,
        rule_index,
        [[{prop: _raw(x, gammas[prop])} for x in tries] for prop, _, _, tries in targets],
    )
    found: list[Counterfactual] = []
    for (prop, sat, target, tries), which in zip(targets, confirmed, strict=True):
        if which is None:
            continue
        gamma, current, chosen = gammas[prop], float(standardised[prop]), tries[which]
        sat_raw = _raw_intervals(sat, gamma)
        raw_to = _raw(chosen, gamma)
        seen_range, outside = _seen(seen, prop, raw_to)
        # The text states the exact bound of the level set; raw_to is the value the
        # float32 scorer confirmed (a hair inside it).
        phrase = _phrase(prop, sat_raw, _raw(target, gamma), chosen >= current)
        note = _outside_note([(prop, seen_range, outside)], others)
        found.append(
            Counterfactual(
                rule=name,
                property=prop,
                raw_from=float(raw[prop]),
                raw_to=raw_to,
                standardised_from=current,
                standardised_to=chosen,
                change=abs(chosen - current),
                satisfying=sat_raw,
                text=f"{phrase} would make {name} fire{note}",
                seen_range=seen_range,
                outside_seen_range=outside,
            )
        )
    found.sort(key=lambda c: c.change)
    if not found:
        return [], f"no change of one property alone makes {name} reach {alpha:g}"
    return found, None


def _confirm(
    verify: Verify | None, rule_index: int, trials: Sequence[Sequence[Mapping[str, float]]]
) -> list[int | None]:
    """For each trial (a suggestion, then the same nudged further in), the first row the
    scorer confirms, or None. The first rows of all trials go in one call; a trial whose
    first row fails has its other rows in one more."""
    if verify is None or not trials:
        return [0] * len(trials)
    first = verify(rule_index, [rows[0] for rows in trials])
    out: list[int | None] = []
    for rows, ok in zip(trials, first, strict=True):
        if ok:
            out.append(0)
            continue
        rest = verify(rule_index, rows[1:]) if len(rows) > 1 else []
        out.append(next((i + 1 for i, fires in enumerate(rest) if fires), None))
    return out


def _nudged(target: float, sat: IntervalSet, current: float, nudge: float) -> float:
    """Move `target` a little further into the interval of `sat` that holds (or bounds) it."""
    if nudge == 0.0:
        return target
    for interval in sat:
        if interval.lo <= target <= interval.hi:
            room = (interval.hi - interval.lo) / 2.0
            step = min(nudge, room)
            if target >= current:
                return min(target + step, interval.hi)
            return max(target - step, interval.lo)
    return target


# --- two properties ------------------------------------------------------------------


@dataclass(frozen=True)
class _PairCandidate:
    cost: float
    p: str
    q: str
    p_set: IntervalSet  # where p fires with q anywhere in `q_piece`
    p_target: float
    q_piece: Piece
    q_target: float


def _pair_candidates(
    condition: Any,
    infos: Sequence[Any],
    props: Sequence[str],
    standardised: Mapping[str, float],
    level: float,
    *,
    prune: bool = True,
) -> list[_PairCandidate]:
    """For each pair of properties, its exact smallest L1 change (cheapest first).

    q runs over the pieces of its breakpoints nearest first; once a piece is
    farther than the best total found, no later piece of q can beat it. With
    `prune`, "the best found" spans the pairs already done, so a pair that cannot
    beat an earlier one yields no candidate (the overall best is still exact).
    """
    out: list[_PairCandidate] = []
    bound = math.inf
    for i, p in enumerate(props):
        for q in props[i + 1 :]:
            cp, cq = float(standardised[p]), float(standardised[q])
            best: _PairCandidate | None = None
            ordered = sorted(
                pieces(breakpoints(condition, infos, q, level)),
                key=lambda piece: abs(piece.nearest(cq) - cq),
            )
            for piece in ordered:
                q_to = piece.nearest(cq)
                dq = abs(q_to - cq)
                if dq == 0.0:  # q unchanged: a change of p alone, which found none
                    continue
                if dq >= (best.cost if best is not None else bound):
                    break
                values = dict(standardised)
                values[q] = piece.inside
                sat = satisfying_set(condition, infos, p, values, level)
                p_to = sat.nearest(cp)
                if p_to is None or p_to == cp:
                    continue
                cost = dq + abs(p_to - cp)
                if best is None or cost < best.cost:
                    best = _PairCandidate(cost, p, q, sat, p_to, piece, q_to)
                if best is not None and prune:
                    bound = min(bound, best.cost)
            if best is not None:
                out.append(best)
    out.sort(key=lambda c: c.cost)
    return out


def pair_counterfactual(
    scorer: Any,
    rule_index: int,
    standardised: Mapping[str, float],
    raw: Mapping[str, float],
    *,
    verify: Verify | None = None,
    seen: Mapping[str, tuple[float, float]] | None = None,
    others: int = 0,
) -> PairCounterfactual | None:
    """The smallest change of two properties that makes rule `rule_index` reach alpha.

    "Smallest" is the least sum of the two standardised changes (module
    docstring). For a rule no single change fires; None when no pair does
    either (e.g. three terms of an AND are 0). Arguments as `counterfactuals`.
    """
    name = scorer.rule_names[rule_index]
    level = _level(scorer, rule_index)
    if level > 1.0:
        return None
    condition = scorer.resolved.rules[rule_index].condition
    infos = scorer.rule_terms(rule_index)
    gammas = _gammas(infos)
    props = [p for p in gammas if not math.isnan(float(standardised[p]))]
    # The exact best first; should the scorer confirm none of those, every pair's best.
    pruned = _pair_candidates(condition, infos, props, standardised, level)
    for candidate in _chain(
        pruned, lambda: _pair_candidates(condition, infos, props, standardised, level, prune=False)
    ):
        p, q = candidate.p, candidate.q
        cp, cq = float(standardised[p]), float(standardised[q])
        tries = [
            (
                _nudged(candidate.p_target, candidate.p_set, cp, nudge),
                candidate.q_piece.nudged(candidate.q_target, cq, nudge),
            )
            for nudge in NUDGES
        ]
        rows = [{p: _raw(x, gammas[p]), q: _raw(y, gammas[q])} for x, y in tries]
        (which,) = _confirm(verify, rule_index, [rows])
        if which is None:
            continue  # the float32 scorer confirms no nudge of this pair: try the next
        p_to, q_to = tries[which]
        q_set = satisfying_set(condition, infos, q, {**standardised, p: p_to}, level)
        changes = []
        phrases = []
        for prop, to, target, sat in (
            (p, p_to, candidate.p_target, candidate.p_set),
            (q, q_to, candidate.q_target, q_set),
        ):
            current = float(standardised[prop])
            sat_raw = _raw_intervals(sat, gammas[prop])
            seen_range, outside = _seen(seen, prop, _raw(to, gammas[prop]))
            changes.append(
                PropertyChange(
                    property=prop,
                    raw_from=float(raw[prop]),
                    raw_to=_raw(to, gammas[prop]),
                    standardised_from=current,
                    standardised_to=to,
                    change=abs(to - current),
                    satisfying=sat_raw,
                    seen_range=seen_range,
                    outside_seen_range=outside,
                )
            )
            phrases.append(_phrase(prop, sat_raw, _raw(target, gammas[prop]), to >= current))
        note = _outside_note(
            [(c.property, c.seen_range, c.outside_seen_range) for c in changes], others
        )
        text = f"{phrases[0]} and {phrases[1]} together would make {name} fire{note}"
        return PairCounterfactual(name, changes, sum(c.change for c in changes), text)
    return None


def _chain(first: Sequence[Any], then: Callable[[], Sequence[Any]]) -> Iterator[Any]:
    """`first`, then `then()` (computed only if `first` did not end the loop)."""
    yield from first
    yield from (c for c in then() if c not in first)


# --- verification with the scorer ------------------------------------------------------


def verifier(scorer: Any, raw: Mapping[str, float]) -> Verify:
    """Re-score the region with some properties replaced, once per row: does the rule fire?

    Only the rule asked about is re-scored (`Scorer.rule_scorer`, bit-identical to
    its column of the whole scorer): re-scoring every rule once per rule made
    explain quadratic in the number of rules.
    """
    import torch

    def fires(rule: int, rows: Sequence[Mapping[str, float]]) -> list[bool]:
        one = scorer.rule_scorer(rule)
        table = {
            p: torch.tensor([row.get(p, raw[p]) for row in rows], dtype=torch.float64)
            for p in one.properties
        }
        with torch.no_grad():
            out = one(table)
        return (out.rules[:, 0] >= scorer.threshold).tolist()

    return fires
