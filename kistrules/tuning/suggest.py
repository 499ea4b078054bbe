"""Propose readable rules from the annotated images, for an expert to keep or drop.

A shallow tree grown greedily over the region properties, one branch per
rule: starting from every residual region, add the cut (`darkness >= 0.35`,
`pixels <= 0.6` in standardised units) that makes the regions left the most
precise (mask pixels over all pixels, each region counted with its own pixels),
as long as they still hold `min_recall` of the mask pixels, up to `depth` cuts;
the regions the rule labels are then set aside and the next rule is grown on
the rest (sequential covering), up to `max_rules` rules.

Each rule is written in the language, its cuts as nearly crisp sets
(`trapezoid(q - 0.05, q, 1, 1)`: 1 from q on, 0.8 from q - 0.01), and
measured exactly as the audit measures a rulebook: alone, and all suggested
rules together, on the annotated images (fitted) and held out by
cross-validation (the rules grown without the fold, scored on it). Nothing is
applied to the expert's rulebook: the suggestions are text to read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from kistrules.api import loads
from kistrules.builtins import PROPERTIES
from kistrules.compiler import compile_rulebook
from kistrules.formatter import format_source
from kistrules.resolve import resolve
from kistrules.tuning.evidence import LabelEvidence, label_counts, region_weights
from kistrules.tuning.parameters import number_text
from kistrules.tuning.protocol import fold_images
from kistrules.tuning.search import Figures

CUTS = tuple(round(0.05 * i, 2) for i in range(1, 20))
EDGE = 0.05  # width of a cut's ramp, standardised units
SCALE_QUANTILE = 0.9  # a data-derived scale: this quantile of the regions' values


@dataclass(frozen=True)
class Cut:
    """`property >= value` (above) or `property <= value`, standardised."""

    property: str
    value: float
    above: bool

    @property
    def set_name(self) -> str:
        return f"{'above' if self.above else 'below'}_{round(100 * self.value):02d}"

    @property
    def set_text(self) -> str:
        q = self.value
        if self.above:
            return f"trapezoid({number_text(round(q - EDGE, 4))}, {number_text(q)}, 1, 1)"
        return f"trapezoid(0, 0, {number_text(q)}, {number_text(round(q + EDGE, 4))})"

    @property
    def term(self) -> str:
        return f"{self.property} is {self.set_name}"


@dataclass(frozen=True)
class Suggestion:
    """One suggested rule and its figures on the annotated images (alone)."""

    name: str
    cuts: tuple[Cut, ...]
    alone: Figures


@dataclass(frozen=True)
class Suggestions:
    rules: tuple[Suggestion, ...]
    scales: dict[str, float]
    together: Figures  # all suggested rules, fitted to the annotated images
    held_out: Figures  # grown without each fold, scored on it (summed over folds)
    folds: int
    text: str  # the suggested rulebook (canonical), empty without rules


def data_scales(
    evidence: LabelEvidence, given: Mapping[str, float] | None = None
) -> dict[str, float]:
    """A scale per property: the expert's where given, else the SCALE_QUANTILE of the
    regions' values rounded to two significant digits (properties without a positive
    value are left out)."""
    out: dict[str, float] = {}
    for prop in PROPERTIES:
        if prop not in evidence.properties:
            continue
        if given and prop in given:
            out[prop] = float(given[prop])
            continue
        values = evidence.properties[prop].double()
        values = values[torch.isfinite(values)]
        if not len(values):
            continue
        gamma = float(torch.quantile(values, SCALE_QUANTILE)) or float(values.max())
        if gamma > 0:
            digits = 1 - math.floor(math.log10(gamma))
            out[prop] = round(gamma, digits) or gamma
    return out


def grow(
    evidence: LabelEvidence,
    scales: Mapping[str, float],
    *,
    max_rules: int = 3,
    depth: int = 2,
    min_recall: float = 0.05,
) -> list[tuple[Cut, ...]]:
    """The suggested rules' cuts, grown greedily on `evidence`."""
    props = [p for p in scales if p in evidence.properties]
    if not props or evidence.regions == 0:
        return []
    standardised = torch.stack(
        [(evidence.properties[p].double() / scales[p]).clamp(0.0, 1.0) for p in props], 1
    )  # (N, P); NaN stays NaN and satisfies no cut
    cuts = torch.tensor(CUTS, dtype=torch.float64)
    above = standardised[:, :, None] >= cuts  # (N, P, Q)
    below = standardised[:, :, None] <= cuts
    conditions = torch.cat([above, below], 2).reshape(evidence.regions, -1)  # (N, P * 2Q)
    names = [
        Cut(p, q, side) for p in props for side in (True, False) for q in CUTS
    ]  # the order of `conditions`' columns
    positive, negative = region_weights(evidence)
    need = min_recall * float(positive.sum())
    remaining = torch.ones(evidence.regions, dtype=torch.bool)
    rules: list[tuple[Cut, ...]] = []
    for _ in range(max_rules):
        chosen: list[Cut] = []
        inside = remaining.clone()
        best_precision = _precision(positive[inside].sum(), negative[inside].sum())
        for _ in range(depth):
            candidate = conditions & inside[:, None]
            pos = positive @ candidate.double()
            neg = negative @ candidate.double()
            precision = torch.where(pos + neg > 0, pos / (pos + neg).clamp(min=1e-300), 0.0)
            precision = torch.where(pos >= max(need, 1e-12), precision, -1.0)
            index = int(torch.argmax(precision + 1e-9 * pos / max(float(positive.sum()), 1.0)))
            if float(precision[index]) <= best_precision + 1e-9:
                break
            chosen.append(names[index])
            inside = candidate[:, index]
            best_precision = float(precision[index])
        if not chosen:
            break
        rules.append(tuple(chosen))
        remaining &= ~inside
    return rules


def _precision(pos: torch.Tensor, neg: torch.Tensor) -> float:
    total = float(pos + neg)
    return float(pos) / total if total > 0 else 0.0


def rulebook_text(
    rules: Sequence[tuple[Cut, ...]],
    scales: Mapping[str, float],
    *,
    notes: Sequence[str] = (),
    header: Sequence[str] = (),
) -> str:
    """The suggested rules as a rulebook: the scales they use, their sets (each with its
    cut in raw units), the rules (each after its line of `notes`, when given)."""
    used = sorted({c.property for cuts in rules for c in cuts})
    cuts_used = sorted({c for cuts in rules for c in cuts}, key=lambda c: (c.property, c.set_name))
    lines = [f"# {line}".rstrip() for line in header]
    lines += [""] if header else []
    lines += ['rulebook "suggested"']
    lines += [f"scale {p} = {number_text(scales[p])}" for p in used]
    for c in cuts_used:
        raw = f"{c.value * scales[c.property]:.3g}"
        sign = ">=" if c.above else "<="
        lines.append(f"set {c.property}.{c.set_name} = {c.set_text}  # {c.property} {sign} {raw}")
    lines.append("threshold 0.8")
    for index, cuts in enumerate(rules, 1):
        if index <= len(notes):
            lines.append(f"# {notes[index - 1]}")
        condition = " and ".join(c.term for c in cuts)
        lines.append(f"rule suggested_{index}: if {condition} then anomalous (1)")
    return "\n".join(lines) + "\n"


def measure(evidence: LabelEvidence, text: str) -> Figures:
    """A rulebook's labels on the evidence, as the audit counts them."""
    resolved = resolve(loads(text))
    grade = compile_rulebook(resolved)(evidence.properties).grade
    tp, fp = label_counts(evidence, grade[None], torch.tensor([resolved.threshold]))
    return Figures(float(tp[0, 0]), float(fp[0, 0]), evidence.total_positive)


def suggest(
    evidence: LabelEvidence,
    *,
    scales: Mapping[str, float] | None = None,
    max_rules: int = 3,
    depth: int = 2,
    min_recall: float = 0.05,
    folds: int = 5,
) -> Suggestions:
    """Grow rules on every annotated image; measure them alone, together, and held out."""
    expert = dict(scales or {})
    scales = data_scales(evidence, expert)
    options = {"max_rules": max_rules, "depth": depth, "min_recall": min_recall}
    rules = grow(evidence, scales, **options)
    if not rules:
        empty = Figures(0.0, 0.0, evidence.total_positive)
        return Suggestions((), scales, empty, empty, 0, "")
    text = rulebook_text(rules, scales)
    suggestions = tuple(
        Suggestion(f"suggested_{i}", cuts, measure(evidence, rulebook_text([cuts], scales)))
        for i, cuts in enumerate(rules, 1)
    )
    held_out = Figures(0.0, 0.0, 0.0)
    groups = fold_images(evidence, folds)
    everything = set(range(len(evidence.images)))
    for held in groups:
        rest = evidence.subset(sorted(everything - set(held)))
        fold_scales = data_scales(rest, expert)  # nothing of the fold, not even a scale
        fold_rules = grow(rest, fold_scales, **options)
        fold = evidence.subset(held)
        if fold_rules:
            held_out = held_out + measure(fold, rulebook_text(fold_rules, fold_scales))
        else:
            held_out = held_out + Figures(0.0, 0.0, fold.total_positive)
    together = measure(evidence, text)
    notes = [
        f"{s.name}: alone {_pct(s.alone.precision)} % precise at {_pct(s.alone.recall)} % recall "
        "on the annotated images (fitted)"
        for s in suggestions
    ]
    header = [
        f"Suggested from {len(evidence.images)} annotated images: read each rule, keep or drop it.",
        f"Together {_pct(together.precision)} % precise at {_pct(together.recall)} % recall "
        f"(fitted); held out ({len(groups)} folds): {_pct(held_out.precision)} % at "
        f"{_pct(held_out.recall)} %.",
    ]
    annotated = rulebook_text(rules, scales, notes=notes, header=header)
    formatted, errors = format_source(annotated)
    if formatted is None:  # a bug: the cuts are on a grid that always checks
        raise ValueError("; ".join(d.one_line() for d in errors))
    return Suggestions(
        rules=suggestions,
        scales=scales,
        together=together,
        held_out=held_out,
        folds=len(groups),
        text=formatted,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
