"""Propose readable rules from the annotated images, for an expert to keep or drop.

A shallow tree grown greedily over the region properties, one branch per
rule: starting from every residual region, add the cut (`darkness >= 0.35`,
`pixels <= 0.6` in standardised units; one cut per property and rule) whose
labels are the most precise
(counted as the audit counts them: the union of the fired regions' pixels
against the masks), as long as they still hold `min_recall` of the mask
pixels, up to `depth` cuts; the pixels the rule labels are then set aside and
the next rule is grown on the rest (sequential covering), up to `max_rules`
rules.

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
from kistrules.tuning.evidence import (
    LabelEvidence,
    label_counts,
    labelled_groups,
    union_counts,
)
from kistrules.tuning.parameters import number_text
from kistrules.tuning.protocol import fold_images
from kistrules.tuning.search import Figures

CUTS = tuple(round(0.05 * i, 2) for i in range(1, 20))
EDGE = 0.05  # width of a cut's ramp, standardised units
FIRES_WITHIN = 0.2 * EDGE  # a cut's set reaches 0.8 (alpha) this far before its value
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
    """The suggested rules' cuts, grown greedily on `evidence`.

    Every candidate is counted as the audit counts labels: the union over thresholds
    of the regions it fires on (a cut fires where its set reaches 0.8), against the
    mask pixels; a later rule counts only the pixels earlier rules left unlabelled.
    """
    props = [p for p in scales if p in evidence.properties]
    if not props or evidence.regions == 0:
        return []
    standardised = torch.stack(
        [(evidence.properties[p].double() / scales[p]).clamp(0.0, 1.0) for p in props], 1
    )  # (N, P); NaN stays NaN and satisfies no cut
    cuts = torch.tensor(CUTS, dtype=torch.float64)
    above = standardised[:, :, None] >= cuts - FIRES_WITHIN  # (N, P, Q)
    below = standardised[:, :, None] <= cuts + FIRES_WITHIN
    conditions = torch.cat([above, below], 2).reshape(evidence.regions, -1)  # (N, P * 2Q)
    names = [Cut(p, q, side) for p in props for side in (True, False) for q in CUTS]
    need = max(min_recall * evidence.total_positive, 1e-12)
    done = torch.zeros(evidence.chains.shape[0], dtype=torch.bool)  # labelled by earlier rules
    rules: list[tuple[Cut, ...]] = []
    fires: list[torch.Tensor] = []  # (N,) the regions each rule fires on
    for _ in range(max_rules):
        chosen: list[Cut] = []
        inside = torch.ones((evidence.regions, 1), dtype=torch.bool)
        pos, neg = union_counts(evidence, inside, skip=done)
        best = _precision(pos, neg)[0]
        for _ in range(depth):
            candidates = conditions & inside
            pos, neg = union_counts(evidence, candidates, skip=done)
            precision = torch.where(pos >= need, _precision(pos, neg), -1.0)
            used = {c.property for c in chosen}  # one cut a property: no narrow bands
            precision[[k for k, c in enumerate(names) if c.property in used]] = -1.0
            index = int(torch.argmax(precision + 1e-9 * pos / max(evidence.total_positive, 1.0)))
            if float(precision[index]) <= float(best) + 1e-9:
                break
            chosen.append(names[index])
            inside = candidates[:, index : index + 1]
            best = precision[index]
        if not chosen:
            break
        rules.append(tuple(chosen))
        done |= labelled_groups(evidence, inside)[:, 0]
        fires.append(inside[:, 0])
    return _without_redundant(evidence, rules, fires)


def _without_redundant(
    evidence: LabelEvidence, rules: list[tuple[Cut, ...]], fires: list[torch.Tensor]
) -> list[tuple[Cut, ...]]:
    """The rules, less each one whose labels the others already give (a later, wider
    rule can cover an earlier one): a rule must add a pixel to be read."""
    if not rules:
        return rules
    groups = labelled_groups(evidence, torch.stack(fires, 1))  # (G, R)
    keep = list(range(len(rules)))
    for index in range(len(rules)):
        others = [k for k in keep if k != index]
        if others and not (groups[:, index] & ~groups[:, others].any(1)).any():
            keep.remove(index)
    return [rules[k] for k in keep]


def _precision(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    return torch.where(pos + neg > 0, pos / (pos + neg).clamp(min=1e-300), 0.0)


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
