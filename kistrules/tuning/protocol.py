"""Tuning with its honest figure: cross-validation over the annotated images.

The search (`kistrules.tuning.search`) fits the numbers to the annotated images,
so its own figure is optimistic. `tune` runs it on all images (the numbers it
writes) and once per fold on the images outside the fold, scoring each fold's
numbers on the fold it never saw; the held-out figures add up over folds. That
is the precision to expect on the next image, and the one to report.

Too few annotated defect regions cannot tell a better rulebook from a luckier
one: below MIN_DEFECT_REGIONS (or MIN_IMAGES images) tuning refuses, below
FEW_DEFECT_REGIONS it warns. It also warns when the held-out figures say the
tuned numbers do worse than the original's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from kistrules.ast import Rulebook
from kistrules.errors import DataError
from kistrules.tuning.evidence import LabelEvidence
from kistrules.tuning.parameters import Tunable, tunable_numbers
from kistrules.tuning.search import Figures, Search, SearchResult

MIN_IMAGES = 3
MIN_DEFECT_REGIONS = 5
FEW_DEFECT_REGIONS = 20
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Fold:
    """One fold: its images were held out of a search on the others, then scored."""

    held_out: tuple[str, ...]
    search: SearchResult  # tuned on the other images
    before: Figures  # the original numbers on the held-out images
    after: Figures  # the fold's tuned numbers on the held-out images


@dataclass(frozen=True)
class Tuning:
    """The numbers tuned on every annotated image, and how well tuning carries over."""

    tunables: tuple[Tunable, ...]
    result: SearchResult
    folds: tuple[Fold, ...]
    images: int
    defect_regions: int
    min_recall: float
    warnings: tuple[str, ...]

    @property
    def held_out_before(self) -> Figures:
        return _total(f.before for f in self.folds)

    @property
    def held_out_after(self) -> Figures:
        return _total(f.after for f in self.folds)


def _total(figures) -> Figures:
    total = Figures(0.0, 0.0, 0.0)
    for f in figures:
        total = total + f
    return total


def require_tunables(rulebook: Rulebook) -> tuple[Tunable, ...]:
    """The rulebook's tunable numbers; DataError when it has no rule or nothing to tune."""
    if not rulebook.rules:
        raise DataError(f"{rulebook.path}: the rulebook has no rules to tune")
    tunables = tunable_numbers(rulebook)
    if not tunables:
        raise DataError(
            f"{rulebook.path}: nothing to tune: no `scale` of a property the rules use, no "
            "`set` a rule uses and no `threshold` line (tune moves only numbers written in "
            "the file; write `scale gray = 255` to let it move gray's scale)"
        )
    return tunables


def require_enough(images: int, regions: int) -> list[str]:
    """Refuse (DataError) too few annotated images or defect regions to tell; a warning
    for few."""
    if images < MIN_IMAGES or regions < MIN_DEFECT_REGIONS:
        raise DataError(
            f"{images} annotated image(s) with {regions} defect region(s): too few to tell a "
            f"better rulebook from a luckier one (tune needs at least {MIN_IMAGES} images and "
            f"{MIN_DEFECT_REGIONS} defect regions; {FEW_DEFECT_REGIONS} or more to trust it)"
        )
    if regions < FEW_DEFECT_REGIONS:
        return [
            f"only {regions} annotated defect regions: the held-out figures move a lot with "
            f"each image; annotate more ({FEW_DEFECT_REGIONS}+) before trusting a change"
        ]
    return []


def fold_images(evidence: LabelEvidence, folds: int) -> list[list[int]]:
    """Images dealt to `folds` folds in turn, sorted by defect type then name, so that
    each fold gets its share of every defect type. At most one fold per image."""
    order = sorted(
        range(len(evidence.images)), key=lambda i: (evidence.defects[i], evidence.images[i])
    )
    count = max(2, min(folds, len(order)))
    return [order[f::count] for f in range(count)]


def tune(
    rulebook: Rulebook,
    evidence: LabelEvidence,
    *,
    min_recall: float | None = None,
    folds: int = DEFAULT_FOLDS,
    progress: Callable[[str], None] | None = None,
) -> Tuning:
    """Tune on all annotated images, and cross-validate the tuning over `folds` folds.

    `min_recall` None keeps half the original's recall, on each search's own images."""
    require_tunables(rulebook)
    warnings = require_enough(len(evidence.images), int(evidence.defect_regions.sum()))
    search = Search(rulebook, min_recall=min_recall)
    say = progress or (lambda message: None)
    say(f"searching {len(search.tunables)} numbers on {len(evidence.images)} images")
    result = search.run(evidence)
    done: list[Fold] = []
    groups = fold_images(evidence, folds)
    everything = set(range(len(evidence.images)))
    for number, held in enumerate(groups, 1):
        say(f"fold {number} of {len(groups)}: searching without {len(held)} image(s)")
        rest = evidence.subset(sorted(everything - set(held)))
        held_out = evidence.subset(held)
        fold_result = search.run(rest)
        done.append(
            Fold(
                held_out=held_out.images,
                search=fold_result,
                before=search.figures(held_out, search.original),
                after=search.figures(held_out, fold_result.values),
            )
        )
    tuning = Tuning(
        tunables=search.tunables,
        result=result,
        folds=tuple(done),
        images=len(evidence.images),
        defect_regions=int(evidence.defect_regions.sum()),
        min_recall=result.min_recall,
        warnings=(),
    )
    return _with_warnings(tuning, warnings)


def _with_warnings(tuning: Tuning, warnings: list[str]) -> Tuning:
    before, after = tuning.held_out_before, tuning.held_out_after
    if tuning.result.before.tp + tuning.result.before.fp == 0:
        warnings.append(
            "the original rulebook labels nothing on these images, so there is no precision "
            "to improve, only labels to invent: annotate images its rules fire on"
        )
    if (after.precision or 0.0) <= (before.precision or 0.0) and tuning.result.values != tuple(
        t.value for t in tuning.tunables
    ):
        warnings.append(
            f"held out from the search, tuned numbers label no more precisely than the "
            f"original ({_pct(after.precision)} % against {_pct(before.precision)} %): they "
            "fit the annotated images, not the defects; keep the original numbers, or "
            "annotate more images"
        )
    if (after.recall or 0.0) < tuning.min_recall:
        warnings.append(
            f"held out from the search, recall is {_pct(after.recall)} %, below the minimum "
            f"recall of {_pct(tuning.min_recall)} %"
        )
    return replace(tuning, warnings=tuple(warnings))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
