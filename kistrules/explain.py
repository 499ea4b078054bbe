"""Why a region got its grade: explanations over one ScoreTrace.

Every number here is read from the compiled scorer's trace (term truths,
limiting terms, rule outputs, grade, winner) and the measured region table;
nothing re-implements the semantics. The one computation of its own is the
counterfactual of a rule that missed, exact from the membership functions'
level sets (`kistrules.counterfactuals`): the smallest change of one
property that makes it fire, else of two, each said to lie inside or outside
the range of the image's other regions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kistrules import counterfactuals as cf
from kistrules.counterfactuals import (  # noqa: F401 - re-exported: explain's JSON types
    Counterfactual,
    PairCounterfactual,
    PropertyChange,
    counterfactuals,
    satisfying_set,
)


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
    # Terms of the rule whose truth is 0: when several are, changing one cannot help.
    zero_terms: list[str] = field(default_factory=list)
    # When no single change fires the rule: the smallest change of two properties.
    pair_counterfactual: PairCounterfactual | None = None


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
    image_of = np.asarray(images if images is not None else [0] * len(grade), dtype=np.int64)
    # What each property measures on the image's other regions: is a suggestion plausible?
    seen = {p: cf.seen_ranges(raw_np[p], image_of) for p in scorer.properties}
    others = np.bincount(image_of)[image_of] - 1 if len(image_of) else image_of
    # Each rule's terms are a slice of the scorer's: where each slice starts.
    starts = np.cumsum([0] + [len(scorer.rule_terms(r)) for r in range(len(names))]).tolist()
    out: list[RegionExplanation] = []
    for n in range(grade.shape[0]):
        standardised = {p: float(std[p][n]) for p in scorer.properties}
        raw_n = {p: float(raw_np[p][n]) for p in scorer.properties}
        context = _RuleContext(
            scorer,
            standardised,
            raw_n,
            cf.verifier(scorer, raw_n) if counterfactual else None,
            {p: (lo[n], hi[n]) for p, (lo, hi) in seen.items() if not math.isnan(lo[n])},
            int(others[n]),
            starts,
        )
        rule_rows = [
            context.explain(
                r, float(rules[n, r]), int(limiting[n, r]), terms[n], counterfactual=counterfactual
            )
            for r in range(len(names))
        ]
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


@dataclass(frozen=True)
class _RuleContext:
    """What explaining each rule of one region needs: its values, the scorer to verify
    with, and the raw range of each property on the image's other regions."""

    scorer: Any
    standardised: Mapping[str, float]
    raw: Mapping[str, float]
    verify: cf.Verify | None
    seen: Mapping[str, tuple[float, float]]
    others: int
    starts: Sequence[int]  # index in scorer.terms of each rule's first term

    def explain(
        self, r: int, output: float, limiting: int, truths: np.ndarray, *, counterfactual: bool
    ) -> RuleExplanation:
        """Rule r of the region: its output and terms from the trace; for a rule that missed,
        the smallest change of one property, else of two, else why there is none."""
        scorer = self.scorer
        name = scorer.rule_names[r]
        reaches = output >= scorer.threshold
        first = self.starts[r]
        zeros = [
            info.label for k, info in enumerate(scorer.rule_terms(r), first) if truths[k] == 0.0
        ]
        single, pair, reason = None, None, None
        if counterfactual and not reaches:
            found, reason = counterfactuals(
                scorer,
                r,
                self.standardised,
                self.raw,
                verify=self.verify,
                seen=self.seen,
                others=self.others,
            )
            single = found[0] if found else None
            if single is None and cf.can_fire(scorer, r):
                pair = cf.pair_counterfactual(
                    scorer,
                    r,
                    self.standardised,
                    self.raw,
                    verify=self.verify,
                    seen=self.seen,
                    others=self.others,
                )
                if pair is None:
                    reason = f"no change of one or two properties makes {name} reach " + (
                        f"{float(scorer.threshold):g}"
                    )
            if reason is not None and len(zeros) > 1:
                reason += f" ({len(zeros)} terms are 0: {', '.join(zeros)})"
        return RuleExplanation(
            name=name,
            truth_value=float(scorer.resolved.rules[r].truth_value),
            output=output,
            reaches_threshold=bool(reaches),
            limiting_term=scorer.terms[limiting].label,
            counterfactual=single,
            no_counterfactual_reason=reason,
            zero_terms=zeros,
            pair_counterfactual=pair,
            concludes=scorer.rule_classes[r],
        )


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
