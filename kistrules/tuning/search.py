"""Search a rulebook's numbers for the most precise labels at a minimum recall.

The objective is the audit's: pixel precision of the pseudo-labels against the
expert's masks, among settings whose recall reaches `min_recall` (by default
half the original rulebook's recall: precision alone is best served by one
lucky region; below the floor, recall itself counts, so that a rulebook that
labels too little first learns to label more). The precision is shrunk toward
the original rulebook's, as if the original's labelled pixels were added to
every candidate's at the original's precision (a Beta prior): a precision
measured on a few pixels moves the objective little, so the search prefers
changes that hold over many pixels, which is what carries over to images it
has not seen (docs/results.md, "Tuning", measured the alternatives). The threshold alpha is not
searched but swept: every candidate is scored at every alpha of a 0.01 grid at
once (`label_counts`), up to the smallest truth value (above it a rule could
never fire).

The search is coordinate ascent on grids of readable numbers, relative to the
current values: each round grades every single move (one scale by 1/8 to 1
octave, rounded to two significant digits; one set breakpoint, or a whole set
shifted, by 0.025 to 0.4 in standardised units) as one batch of candidates,
and takes the best move whose rulebook raises no warning the original did not
have (`check` stays clean). It stops when no move gains. Deterministic.

With a handful of images any search finds numbers that fit them better than
they fit the next image; `cross_validate` measures that: it tunes on all
images but one fold and scores the held-out fold, for every fold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kistrules.analysis import analyse
from kistrules.api import apply_ignore_comments
from kistrules.ast import Rulebook
from kistrules.checker import check_names
from kistrules.resolve import resolve
from kistrules.tuning.candidates import CandidateScorer
from kistrules.tuning.evidence import LabelEvidence, label_counts
from kistrules.tuning.parameters import Tunable, tunable_numbers, with_values

ALPHA_STEP = 0.01
SCALE_OCTAVES = (1 / 8, 2 / 8, 3 / 8, 4 / 8, 6 / 8, 1.0)
SET_STEPS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4)
MAX_ROUNDS = 60
RELATIVE_RECALL = 0.5  # without --min-recall: keep half the original rulebook's recall
PRIOR_WEIGHT = 1.0  # the prior's weight: this many times the original's labelled pixels
MIN_GAIN = 1e-6  # a move must raise the objective by more than this (rounding noise)


@dataclass(frozen=True)
class Figures:
    """Pixel counts of one labelling against the masks, and what they make."""

    tp: float
    fp: float
    positive: float  # all mask pixels

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.positive if self.positive else None

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.tp + other.tp, self.fp + other.fp, self.positive + other.positive)


@dataclass(frozen=True)
class Goal:
    """What the search maximises: precision shrunk toward the original's,
    (tp + weight x prior) / (tp + fp + weight), among settings whose recall reaches
    `min_recall`. `weight` in pixels; 0 is the plain precision."""

    min_recall: float
    weight: float = 0.0
    prior: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    """The tuned numbers (one per tunable, threshold included) and their figures."""

    values: tuple[float, ...]
    threshold: float
    before: Figures
    after: Figures
    rounds: int
    candidates: int  # parameter vectors graded
    min_recall: float  # the recall the tuned labels had to keep


@dataclass
class Search:
    """Coordinate ascent over the tunable numbers of one rulebook on one evidence."""

    rulebook: Rulebook
    min_recall: float | None = None  # None: RELATIVE_RECALL x the original's recall
    tunables: tuple[Tunable, ...] = field(init=False)
    scorer: CandidateScorer = field(init=False)

    def __post_init__(self) -> None:
        if self.min_recall is not None and not 0.0 <= self.min_recall <= 1.0:
            raise ValueError(f"min_recall must be in [0, 1], got {self.min_recall!r}")
        self.tunables = tunable_numbers(self.rulebook)
        self.scorer = CandidateScorer(self.rulebook, self.tunables)
        self._threshold = next(
            (k for k, t in enumerate(self.tunables) if t.kind == "threshold"), None
        )
        self._baseline = _warning_keys(self.rulebook)
        self._scales = resolve(self.rulebook).scales
        self._scale_index = {t.group: k for k, t in enumerate(self.tunables) if t.kind == "scale"}
        self.alphas = self._alpha_grid()

    @property
    def original(self) -> tuple[float, ...]:
        return tuple(t.value for t in self.tunables)

    def _alpha_grid(self) -> torch.Tensor:
        """Thresholds to sweep: the written one, and when tunable a 0.01 grid up to min TV."""
        current = self.scorer.threshold
        if self._threshold is None:
            return torch.tensor([current], dtype=torch.float64)
        top = min(rule.truth_value for rule in self.rulebook.rules)
        grid = {round(ALPHA_STEP * i, 2) for i in range(1, round(1 / ALPHA_STEP) + 1)}
        return torch.tensor(sorted({a for a in grid if a <= top} | {current}), dtype=torch.float64)

    # --- scoring ------------------------------------------------------------------------

    def score(
        self, evidence: LabelEvidence, candidates: torch.Tensor, goal: Goal
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per candidate row: objective, best alpha index, tp and fp at that alpha."""
        grades = self.scorer.grades(evidence.properties, candidates)
        tp, fp = label_counts(evidence, grades, self.alphas)
        key = objective(tp, fp, evidence.total_positive, goal)
        best = torch.argmax(key, dim=1)  # first maximum: the lowest alpha, the most recall
        pick = best[:, None]
        return key.gather(1, pick)[:, 0], best, tp.gather(1, pick)[:, 0], fp.gather(1, pick)[:, 0]

    def figures(self, evidence: LabelEvidence, values: Sequence[float]) -> Figures:
        """The labels of one setting (threshold included) on the evidence."""
        candidate = torch.tensor([list(values)], dtype=torch.float64)
        grades = self.scorer.grades(evidence.properties, candidate)
        alpha = self.threshold_of(values)
        tp, fp = label_counts(evidence, grades, torch.tensor([alpha], dtype=torch.float64))
        return Figures(float(tp[0, 0]), float(fp[0, 0]), evidence.total_positive)

    def goal(self, before: Figures) -> Goal:
        """The minimum recall (as given, or RELATIVE_RECALL x the original's) and the
        prior: the original's precision, weighing PRIOR_WEIGHT x its labelled pixels."""
        floor = self.min_recall
        if floor is None:
            floor = RELATIVE_RECALL * (before.recall or 0.0)
        return Goal(floor, PRIOR_WEIGHT * (before.tp + before.fp), before.precision or 0.0)

    def threshold_of(self, values: Sequence[float]) -> float:
        if self._threshold is None:
            return self.scorer.threshold
        return float(values[self._threshold])

    # --- the search ---------------------------------------------------------------------

    def run(
        self,
        evidence: LabelEvidence,
        *,
        progress: Callable[[int, float], None] | None = None,
    ) -> SearchResult:
        """Tune on `evidence`, starting from the rulebook's own numbers."""
        current = list(self.original)
        before = self.figures(evidence, current)
        goal = self.goal(before)
        current_key = _objective_of(before, goal)
        graded, rounds = 0, 0
        while rounds < MAX_ROUNDS:
            # The current numbers themselves are a candidate too: a move of alpha alone.
            moves = [list(current), *self.moves(current)]
            candidates = torch.tensor(moves, dtype=torch.float64)
            keys, best, _, _ = self.score(evidence, candidates, goal)
            graded += len(moves)
            accepted = False
            for index in torch.argsort(keys, descending=True, stable=True).tolist():
                if float(keys[index]) <= current_key + MIN_GAIN:
                    break
                move = list(moves[index])
                if self._threshold is not None:
                    move[self._threshold] = float(self.alphas[int(best[index])])
                if self.clean(move):
                    current, current_key, accepted = move, float(keys[index]), True
                    break
            rounds += 1
            if progress is not None:
                progress(rounds, current_key)
            if not accepted:
                break
        after = self.figures(evidence, current)
        return SearchResult(
            values=tuple(current),
            threshold=self.threshold_of(current),
            before=before,
            after=after,
            rounds=rounds,
            candidates=graded,
            min_recall=goal.min_recall,
        )

    def moves(self, current: Sequence[float]) -> list[list[float]]:
        """Every single move from `current`: one number, or one set shifted as a whole."""
        out: list[list[float]] = []
        seen = {tuple(current)}

        def add(candidate: list[float]) -> None:
            if tuple(candidate) not in seen:
                seen.add(tuple(candidate))
                out.append(candidate)

        sets: dict[str, list[int]] = {}
        for k, tunable in enumerate(self.tunables):
            if tunable.kind == "threshold":
                continue
            if tunable.kind == "set":
                sets.setdefault(tunable.group, []).append(k)
            for value in _grid(tunable, current[k], self._unit(tunable, current)):
                candidate = list(current)
                candidate[k] = value
                if _ordered(self.tunables, candidate, tunable.group):
                    add(candidate)
        for group, members in sets.items():
            shiftable = [k for k in members if not _is_width(self.tunables[k])]
            unit = self._unit(self.tunables[members[0]], current)
            for step in SET_STEPS:
                for sign in (-1.0, 1.0):
                    candidate = list(current)
                    for k in shiftable:
                        candidate[k] = _moved(self.tunables[k], current[k], sign * step * unit)
                    if _ordered(self.tunables, candidate, group):
                        add(candidate)
        return out

    def _unit(self, tunable: Tunable, current: Sequence[float]) -> float:
        """One standardised unit in the tunable's own units: the property's current scale
        for a `raw` set's number, else 1."""
        if not tunable.raw:
            return 1.0
        k = self._scale_index.get(tunable.raw)
        return float(current[k]) if k is not None else self._scales[tunable.raw]

    def clean(self, values: Sequence[float]) -> bool:
        """No error, and no warning the original rulebook did not have."""
        tuned = with_values(self.rulebook, self.tunables, values)
        errors = check_names(tuned)
        if errors:
            return False
        return _warning_keys(tuned) <= self._baseline


def objective(tp: torch.Tensor, fp: torch.Tensor, positive: float, goal: Goal) -> torch.Tensor:
    """1 + shrunk precision (+ a hair of recall, for ties) where recall reaches the goal's
    minimum; else recall (< 1): a feasible setting always beats an infeasible one."""
    labelled = tp + fp
    shrunk = (tp + goal.weight * goal.prior) / (labelled + goal.weight).clamp(min=1e-300)
    precision = torch.where(labelled > 0, shrunk, 0.0)
    recall = tp / positive if positive > 0 else torch.zeros_like(tp)
    feasible = (labelled > 0) & (recall >= goal.min_recall)
    return torch.where(feasible, 1.0 + precision + 1e-6 * recall, recall * 0.999)


def _objective_of(figures: Figures, goal: Goal) -> float:
    tp = torch.tensor([[figures.tp]], dtype=torch.float64)
    fp = torch.tensor([[figures.fp]], dtype=torch.float64)
    return float(objective(tp, fp, figures.positive, goal)[0, 0])


def _warning_keys(rulebook: Rulebook) -> set[tuple[str, int]]:
    """(code, statement index) of every warning: what `clean` compares, positions aside."""
    diagnostics = apply_ignore_comments(rulebook, check_names(rulebook) + analyse(rulebook))
    starts = [s.span.start for s in rulebook.statements]
    keys = set()
    for d in diagnostics:
        index = max((i for i, start in enumerate(starts) if start <= d.span.start), default=-1)
        keys.add((d.code, index))
    return keys


def _is_width(tunable: Tunable) -> bool:
    return tunable.kind == "set" and tunable.function == "gaussian" and tunable.argument == 1


def _grid(tunable: Tunable, value: float, unit: float = 1.0) -> list[float]:
    """Readable values near `value`: scales and gaussian widths by octaves, rounded to two
    significant digits; breakpoints by steps of standardised units (`unit` of the
    tunable's own: a raw set's are the property's), rounded (`_moved`)."""
    if tunable.kind == "scale" or _is_width(tunable):
        out = []
        for octave in SCALE_OCTAVES:
            for sign in (-1.0, 1.0):
                candidate = _round_significant(value * 2.0 ** (sign * octave), 2)
                if candidate > 0 and math.isfinite(candidate):
                    out.append(candidate)
        return out
    return [
        _moved(tunable, value, sign * step * unit) for step in SET_STEPS for sign in (-1.0, 1.0)
    ]


def _moved(tunable: Tunable, value: float, delta: float) -> float:
    """value + delta, rounded: to 4 decimals in standardised units, to three significant
    digits in a raw set's units (`42 + 1.6` -> `43.6`, `1500 + 50` -> `1550`)."""
    if tunable.raw:
        return _round_significant(value + delta, 3)
    return round(value + delta, 4)


def _round_significant(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _ordered(tunables: Sequence[Tunable], values: Sequence[float], group: str) -> bool:
    """A set's breakpoints stay in order (a <= b <= c <= d), as `check` requires."""
    members = [
        (t.argument, v)
        for t, v in zip(tunables, values, strict=True)
        if t.kind == "set" and t.group == group and t.function != "gaussian"
    ]
    members.sort()
    return all(x[1] <= y[1] for x, y in itertools.pairwise(members))
