"""Why a region got its grade: explanations and counterfactuals over one ScoreTrace.

Every number here is read from the compiled scorer's trace (term truths,
limiting terms, rule outputs, grade, winner) and the measured region table;
nothing re-implements the semantics. The one computation of its own is the
counterfactual, which answers "what single change of one property would make
this rule fire?" exactly, from the membership functions' level sets
(`kistrules.intervals`), not by searching:

A rule with truth value TV fires when TV * truth(condition) >= alpha, i.e. when
the condition reaches L = alpha / TV. Holding every other property at its
value, the standardised values x of property p at which it does form an
IntervalSet, built bottom-up: a term on p gives its level set, a term on
another property is a constant (all of [0, 1] or nothing), AND intersects,
OR unites, and NOT c >= L is the complement of c > 1 - L (De Morgan). The
point of that set nearest the current v' is the smallest change; raw = v' *
gamma converts it back (v' = 1 means raw >= gamma). Among the rule's
properties the smallest standardised change wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kistrules.ast import And, Not, Or, Term
from kistrules.intervals import IntervalSet, level_set

# How far inside the satisfying set a suggested value is placed: the scorer runs
# in float32, so a point exactly on a level-set boundary may grade a hair below
# alpha. The nudge is capped at half the interval's width (never leaves it).
NUDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)


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


@dataclass(frozen=True)
class RuleExplanation:
    name: str
    truth_value: float
    output: float  # TV * truth of the condition, from the scorer
    reaches_threshold: bool
    limiting_term: str  # the term that set the condition's min (or max, under OR)
    counterfactual: Counterfactual | None = None
    no_counterfactual_reason: str | None = None
    concludes: str = "anomalous"  # the class after THEN (`anomalous`: any class)


@dataclass(frozen=True)
class TermExplanation:
    rule: str
    term: str  # e.g. "darkness is not low"
    property: str
    truth: float


@dataclass(frozen=True)
class RegionExplanation:
    id: int
    image: int  # index of the image in the batch (0 for one image)
    threshold: float | None  # residual threshold of eq. 9 (None for a mask)
    bbox: list[int]  # row0, col0, row1, col1 (half-open)
    pixel_count: int
    properties: dict[str, dict[str, float]]  # name -> {"raw": v, "standardised": v'}
    terms: list[TermExplanation]
    rules: list[RuleExplanation]
    grade: float
    fired: bool  # grade >= alpha
    winner: str | None  # the rule that set the grade when it reaches alpha, else None
    best_rule: str  # the argmax rule even when nothing fired
    region_label: int = field(default=0)  # label value of the region in its label map
    defect_class: str | None = None  # the winner's conclusion when fired, else None
    class_grades: dict[str, float] = field(default_factory=dict)  # declared class -> its grade


# --- counterfactual maths (pure) --------------------------------------------------


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
                return level_set(info.mf, info.hedges, info.negated, level, strict)
            # A term on another property is a constant: all of [0, 1] or nothing.
            truth = _constant_truth(info, values[info.property])
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


def _constant_truth(info: Any, standardised: float) -> float:
    from kistrules.intervals import term_truth

    return term_truth(info.mf, info.hedges, info.negated, standardised)


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


def _raw(standardised: float, gamma: float) -> float:
    return standardised * gamma


def _describe(prop: str, rule: str, sat_raw: list[list[float]], to: float, going_up: bool) -> str:
    """ "area >= 0.031 would make large_dark fire", rounded so that the bound still holds."""
    interval = next((i for i in sat_raw if i[0] <= to <= i[1]), None)
    if going_up:
        bound = _round(to, up=True)
        if interval is not None and math.isfinite(interval[1]):
            change = f"{prop} in [{bound}, {_round(interval[1], up=False)}]"
        else:
            change = f"{prop} >= {bound}"
    else:
        bound = _round(to, up=False)
        if interval is not None and interval[0] > 0.0:
            change = f"{prop} in [{_round(interval[0], up=True)}, {bound}]"
        else:
            change = f"{prop} <= {bound}"
    return f"{change} would make {rule} fire"


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


def counterfactuals(
    scorer: Any,
    rule_index: int,
    standardised: Mapping[str, float],
    raw: Mapping[str, float],
    *,
    verify: Callable[[int, str, float], bool] | None = None,
) -> tuple[list[Counterfactual], str | None]:
    """Every single-property change that makes rule `rule_index` reach alpha, nearest first.

    Args:
        scorer: the compiled rulebook (its terms, scales, threshold, rules).
        rule_index: the rule, in rulebook order.
        standardised: v' of every used property for this region (from the trace).
        raw: the raw values (to report the change from).
        verify: optional check `(rule, property, raw value) -> fires?` with the scorer;
            a suggestion the float32 scorer does not confirm is nudged further in.

    Returns:
        (candidates sorted by standardised change, reason when there is none).
    """
    rule = scorer.resolved.rules[rule_index]
    name = scorer.rule_names[rule_index]
    tv = float(rule.truth_value)
    alpha = float(scorer.threshold)
    level = alpha / tv
    if level > 1.0:
        return [], f"TV {tv:g} is below the threshold {alpha:g}: {name} can never fire"
    infos = scorer.rule_terms(rule_index)
    props = list(dict.fromkeys(info.property for info in infos))
    found: list[Counterfactual] = []
    for prop in props:
        gamma = float(infos[[i.property for i in infos].index(prop)].scale)
        current = float(standardised[prop])
        sat = satisfying_set(rule.condition, infos, prop, standardised, level)
        target = sat.nearest(current) if not math.isnan(current) else None
        if target is None:
            continue
        chosen = None
        for nudge in NUDGES:
            candidate = _nudged(target, sat, current, nudge)
            if verify is None or verify(rule_index, prop, _raw(candidate, gamma)):
                chosen = candidate
                break
        if chosen is None:
            continue
        sat_raw = [[_raw(i.lo, gamma), math.inf if i.hi >= 1.0 else _raw(i.hi, gamma)] for i in sat]
        raw_to = _raw(chosen, gamma)
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
                # The text states the exact bound of the level set; raw_to is the
                # value the float32 scorer confirmed (a hair inside it).
                text=_describe(prop, name, sat_raw, _raw(target, gamma), chosen >= current),
            )
        )
    found.sort(key=lambda c: c.change)
    if not found:
        return [], f"no change of one property alone makes {name} reach {alpha:g}"
    return found, None


# --- explanations ------------------------------------------------------------------


def grade_text(value: float, alpha: float | None, digits: int = 3) -> str:
    """A grade or rule output for display, never on the wrong side of alpha.

    Plain rounding prints 0.7996 as "0.800" beside "not fired" at alpha 0.8;
    near alpha the value is rounded towards its side of the threshold instead.
    """
    text = f"{value:.{digits}f}"
    if alpha is None or (value >= alpha) == (float(text) >= alpha):
        return text
    scale = 10**digits
    step = math.floor if value < alpha else math.ceil
    return f"{step(value * scale) / scale:.{digits}f}"


def _cpu(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def explain_trace(
    scorer: Any,
    trace: Any,
    raw: Mapping[str, Any],
    *,
    bbox: Any,
    pixel_count: Any,
    thresholds: Sequence[float | None] | None = None,
    images: Sequence[int] | None = None,
    labels: Sequence[int] | None = None,
    counterfactual: bool = True,
) -> list[RegionExplanation]:
    """One RegionExplanation per region of a ScoreTrace (computed with `trace=True`).

    Args:
        scorer: the Scorer that produced `trace`.
        trace: its ScoreTrace for N regions.
        raw: property -> (N,) raw values the scorer was given.
        bbox: (N, 4) row0, col0, row1, col1; pixel_count: (N,).
        thresholds: the eq. 9 threshold of each region, or None for mask regions.
        images, labels: the image index and label value of each region.
        counterfactual: compute counterfactuals for the rules that missed.
    """
    grade = _cpu(trace.grade).astype(float)
    rules = _cpu(trace.rules).astype(float)
    winner = _cpu(trace.winner).astype(int)
    fired = _cpu(trace.fired).astype(bool)
    terms = _cpu(trace.terms).astype(float)
    limiting = _cpu(trace.limiting).astype(int)
    class_grades = _cpu(trace.classes).astype(float)
    std = {p: _cpu(v).astype(float) for p, v in trace.standardised.items()}
    raw_np = {p: _cpu(raw[p]).astype(float) for p in scorer.properties}
    bbox_np = _cpu(bbox).astype(int).reshape(-1, 4)
    count_np = _cpu(pixel_count).astype(int)
    names = scorer.rule_names
    out: list[RegionExplanation] = []
    for n in range(grade.shape[0]):
        standardised = {p: float(std[p][n]) for p in scorer.properties}
        raw_n = {p: float(raw_np[p][n]) for p in scorer.properties}
        verify = _verifier(scorer, raw_n) if counterfactual else None
        rule_rows = []
        for r, name in enumerate(names):
            output = float(rules[n, r])
            reaches = output >= scorer.threshold
            cf, reason = None, None
            if counterfactual and not reaches:
                found, reason = counterfactuals(scorer, r, standardised, raw_n, verify=verify)
                cf = found[0] if found else None
            rule_rows.append(
                RuleExplanation(
                    name=name,
                    truth_value=float(scorer.resolved.rules[r].truth_value),
                    output=output,
                    reaches_threshold=bool(reaches),
                    limiting_term=scorer.terms[int(limiting[n, r])].label,
                    counterfactual=cf,
                    no_counterfactual_reason=reason,
                    concludes=scorer.rule_classes[r],
                )
            )
        term_rows = [
            TermExplanation(
                rule=names[info.rule],
                term=info.label,
                property=info.property,
                truth=float(terms[n, k]),
            )
            for k, info in enumerate(scorer.terms)
        ]
        out.append(
            RegionExplanation(
                id=n + 1,
                image=int(images[n]) if images is not None else 0,
                threshold=(
                    None if thresholds is None or thresholds[n] is None else float(thresholds[n])
                ),
                bbox=[int(v) for v in bbox_np[n]],
                pixel_count=int(count_np[n]),
                properties={
                    p: {"raw": raw_n[p], "standardised": standardised[p]} for p in scorer.properties
                },
                terms=term_rows,
                rules=rule_rows,
                grade=float(grade[n]),
                fired=bool(fired[n]),
                winner=names[int(winner[n])] if fired[n] else None,
                best_rule=names[int(winner[n])],
                region_label=int(labels[n]) if labels is not None else n + 1,
                defect_class=scorer.rule_classes[int(winner[n])] if fired[n] else None,
                class_grades={
                    c: float(class_grades[n, k]) for k, c in enumerate(scorer.class_names)
                },
            )
        )
    return out


def _verifier(scorer: Any, raw: Mapping[str, float]) -> Callable[[int, str, float], bool]:
    """Re-score the region with one property replaced: does that rule reach alpha?

    Only the rule asked about is re-scored (`Scorer.rule_scorer`, bit-identical to
    its column of the whole scorer): re-scoring every rule once per rule made
    explain quadratic in the number of rules.
    """
    import torch

    def fires(rule: int, prop: str, value: float) -> bool:
        one = scorer.rule_scorer(rule)
        table = {
            p: torch.tensor([value if p == prop else raw[p]], dtype=torch.float64)
            for p in one.properties
        }
        with torch.no_grad():
            out = one(table)
        return bool(out.rules[0, 0] >= scorer.threshold)

    return fires


def to_jsonable(explanations: Sequence[RegionExplanation]) -> list[dict[str, Any]]:
    """Plain dicts with the documented field names (docs/explain-json.md); inf -> None."""
    return [_clean(asdict(e)) for e in explanations]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- region sources: mask, residual map, trained model -----------------------------


class RegionMasks(Sequence[np.ndarray]):
    """Each region's pixels, read from the region table's label images.

    The regions of one image at one threshold are disjoint, so one label image
    per (image, threshold) holds them all, and a region is the pixels of its
    label image equal to its label: memory is linear in pixels, never one
    (H, W) array per region (that grew with pixels x regions: 3.7 GB for a
    512 x 512 mask of 12,000 specks). `masks[i]` builds region i's full-size
    bool mask on demand (O(H W) each: use it for a few regions, not all);
    `window(i)` is the cheap form, a view of its bounding box.
    """

    def __init__(self, table: Any) -> None:
        labels = _cpu(table.labels)  # (B, T, H, W) int32, possibly a strided view
        self._labels = labels.reshape(-1, *labels.shape[-2:])  # a view: no copy
        count = labels.shape[1]
        self._slice = _cpu(table.image).astype(np.int64) * count + _cpu(table.threshold)
        self._label = _cpu(table.label).astype(np.int64)
        self._bbox = _cpu(table.bbox).astype(np.int64).reshape(-1, 4)

    def __len__(self) -> int:
        return int(self._label.shape[0])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # negative indices, IndexError
        return self._labels[self._slice[index]] == self._label[index]

    def window(self, index: int) -> tuple[np.ndarray, int, tuple[int, int]]:
        """(label-image view of the bounding box, the region's label, (row0, col0))."""
        r0, c0, r1, c1 = (int(v) for v in self._bbox[index])
        view = self._labels[self._slice[index], r0:r1, c0:c1]
        return view, int(self._label[index]), (r0, c0)


@dataclass
class ExplainResult:
    """Regions of one image, measured and scored, with what the overlay needs."""

    source: str  # "mask", "residual" or "model"
    image: np.ndarray  # (H, W) gray 0-255 on the measured grid
    regions: list[RegionExplanation]
    masks: RegionMasks  # each region's pixels, same order (label images, not (H, W) each)
    pseudo_label: np.ndarray  # (H, W) bool: the union of regions that reach alpha (eq. 12)
    thresholds: list[float] = field(default_factory=list)  # eq. 9 thresholds (empty for a mask)
    mu: float | None = None
    sigma: float | None = None
    s: float | None = None


def _float_image(image: Any) -> np.ndarray:
    """The gray image as floats; float32 stays float32 (a float64 copy is 8 bytes a pixel)."""
    array = np.asarray(image)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def _result(
    source: str,
    scorer: Any,
    image: np.ndarray,
    table: Any,
    trace: Any,
    pseudo: Any,
    *,
    thresholds: Sequence[float] = (),
    counterfactual: bool = True,
    **stats: float | None,
) -> ExplainResult:
    thresholds = [float(t) for t in thresholds]
    per_region = [thresholds[int(i)] for i in _cpu(table.threshold)] if thresholds else None
    regions = explain_trace(
        scorer,
        trace,
        table.properties,
        bbox=table.bbox,
        pixel_count=table.pixel_count,
        thresholds=per_region,
        images=[int(i) for i in _cpu(table.image)],
        labels=[int(i) for i in _cpu(table.label)],
        counterfactual=counterfactual,
    )
    return ExplainResult(
        source=source,
        image=_float_image(image),
        regions=regions,
        masks=RegionMasks(table),
        pseudo_label=_cpu(pseudo).astype(bool).reshape(image.shape),
        thresholds=thresholds,
        **stats,
    )


def explain_mask(
    scorer: Any, image: np.ndarray, mask: np.ndarray, *, counterfactual: bool = True
) -> ExplainResult:
    """Each 8-connected component of the mask's nonzero pixels is a region (expert masks).

    Measured with `kistrules.regions.measure` on the mask's own grid, so the
    image must have the mask's size.
    """
    from skimage.measure import label as connected

    from kistrules.errors import DataError
    from kistrules.regions import measure, pseudo_label_mask

    if image.shape != mask.shape:
        raise DataError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]} (width x height): they must match"
        )
    labels = connected(np.asarray(mask) != 0, connectivity=2)
    table = measure(image, labels, properties=list(scorer.properties))
    trace = scorer(table, trace=True)
    pseudo = pseudo_label_mask(table, trace.fired)[0]
    return _result("mask", scorer, image, table, trace, pseudo, counterfactual=counterfactual)


def explain_residual(
    scorer: Any,
    image: np.ndarray,
    residual: np.ndarray,
    *,
    mu: float,
    sigma: float,
    s: float = 0.3,
    original_size: tuple[int, int] | None = None,
    counterfactual: bool = True,
    source: str = "residual",
) -> ExplainResult:
    """Regions of a residual map at every threshold of eq. 9, via THE pseudo-labelling code."""
    import torch

    from kistrules.errors import DataError
    from kistrules.pseudo_labels import label_regions

    if image.shape != residual.shape:
        raise DataError(
            f"the residual map is {residual.shape[1]}x{residual.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]} (width x height): they must match"
        )
    images = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]
    residuals = torch.as_tensor(np.asarray(residual, dtype=np.float32))[None]
    labels = label_regions(
        images.to(scorer.device),
        residuals.to(scorer.device),
        scorer,
        mu=mu,
        sigma=sigma,
        s=s,
        original_sizes=[original_size] if original_size is not None else None,
    )
    return explain_labels(
        source, scorer, image, labels, counterfactual=counterfactual, mu=mu, sigma=sigma, s=s
    )


def explain_labels(
    source: str,
    scorer: Any,
    image: np.ndarray,
    labels: Any,
    *,
    mu: float,
    sigma: float,
    s: float,
    counterfactual: bool = True,
) -> ExplainResult:
    """Explain one image's labelling (kistrules.pseudo_labels.PseudoLabels of a batch of one).

    `image` is the gray image (0-255) on the grid of the residual map that was labelled.
    """
    return _result(
        source,
        scorer,
        image,
        labels.table,
        labels.trace,
        labels.mask[0],
        thresholds=[float(t) for t in labels.thresholds],
        counterfactual=counterfactual,
        mu=mu,
        sigma=sigma,
        s=s,
    )


def explain_document(
    scorer: Any, result: ExplainResult, *, image: Any, rulebook: Any, why_not: str | None
) -> dict[str, Any]:
    """The JSON document of `explain --format json` (fields in docs/explain-json.md);
    `why_not` keeps only that rule's rows."""
    regions = to_jsonable(result.regions)
    if why_not is not None:
        for region in regions:
            region["rules"] = [r for r in region["rules"] if r["name"] == why_not]
            region["terms"] = [t for t in region["terms"] if t["rule"] == why_not]
    resolved = scorer.resolved
    return {
        "version": 1,
        "image": str(image),
        "rulebook": str(rulebook),
        "source": result.source,
        "grid": list(result.image.shape),
        "threshold": scorer.threshold,
        "rules": list(scorer.rule_names),
        "classes": list(scorer.class_names),
        "scales": {p: resolved.scales[p] for p in scorer.properties},
        "residual": (
            None
            if result.source == "mask"
            else {
                "mu": result.mu,
                "sigma": result.sigma,
                "s": result.s,
                "thresholds": result.thresholds,
            }
        ),
        "why_not": why_not,
        "pseudo_label_pixels": int(result.pseudo_label.sum()),
        "regions": regions,
    }
