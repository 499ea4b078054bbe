"""The search and its protocol on synthetic annotated images: what tuning promises."""

from __future__ import annotations

import pytest
import torch

from kistrules.api import diagnose, loads
from kistrules.compiler import compile_rulebook
from kistrules.errors import DataError
from kistrules.parser import parse
from kistrules.resolve import resolve
from kistrules.tuning.evidence import label_counts
from kistrules.tuning.parameters import structure, with_values
from kistrules.tuning.protocol import (
    FEW_DEFECT_REGIONS,
    fold_images,
    require_enough,
    require_tunables,
    tune,
)
from kistrules.tuning.search import Goal, Search, objective
from tests.tuning import synthetic as syn


@pytest.fixture(scope="module")
def evidence():
    return syn.evidence(seed=11, count=10, size=32)[0]


@pytest.fixture(scope="module")
def book():
    return loads(syn.RULEBOOK, "synthetic.rules")


def _figures_by_compiled_scorer(book, evidence, values, tunables):
    """The same figure through the compiled scorer: no CandidateScorer involved."""
    moved = with_values(book, tunables, values)
    grade = compile_rulebook(resolve(moved))(evidence.properties).grade
    tp, fp = label_counts(evidence, grade[None], torch.tensor([resolve(moved).threshold]))
    return tp.item(), fp.item()


@pytest.mark.parametrize("min_recall", [None, 0.0, 0.5])
def test_tuned_precision_is_at_least_the_original_at_the_minimum_recall(book, evidence, min_recall):
    search = Search(book, min_recall=min_recall)
    result = search.run(evidence)
    assert result.after.precision >= result.before.precision
    floor = result.min_recall
    if min_recall is None:
        assert floor == pytest.approx(0.5 * result.before.recall)
    if result.before.recall >= floor:
        assert result.after.recall >= floor
    # the figures are those of the compiled tuned rulebook
    tp, fp = _figures_by_compiled_scorer(book, evidence, result.values, search.tunables)
    assert (tp, fp) == (result.after.tp, result.after.fp)


def test_the_tuned_rulebook_keeps_its_structure_and_checks_clean(book, evidence):
    search = Search(book)
    result = search.run(evidence)
    tuned = with_values(book, search.tunables, result.values)
    assert structure(tuned) == structure(book)
    _, diagnostics = diagnose(book.source)
    assert not diagnostics  # the original is clean, so the tuned one must be too
    assert search.clean(result.values)


def test_a_search_from_the_tuned_numbers_never_loses_precision(book, evidence):
    """The prior is the starting rulebook's precision, and the shrunk precision can only
    rise above it if the plain one does: tuning a tuned rulebook again never does worse."""
    search = Search(book, min_recall=0.3)
    first = search.run(evidence)
    again = Search(with_values(book, search.tunables, first.values), min_recall=0.3).run(evidence)
    assert again.before == first.after
    assert again.after.precision >= first.after.precision


def test_the_search_is_deterministic(book, evidence):
    assert Search(book).run(evidence) == Search(book).run(evidence)


def test_moves_keep_breakpoints_ordered_and_scales_positive(book):
    search = Search(book)
    for move in search.moves(list(search.original)):
        values = dict(zip([t.label for t in search.tunables], move, strict=True))
        dark = [values[f"set gray.dark {p}"] for p in "abcd"]
        assert dark == sorted(dark)
        assert all(values[f"scale {p}"] > 0 for p in ("darkness", "pixels", "gray"))


def test_the_threshold_never_rises_above_the_smallest_truth_value(book):
    # rule dark_gray has TV 0.9: a threshold above it would switch the rule off (W101)
    assert float(Search(book).alphas.max()) <= 0.9


def test_objective_puts_feasible_settings_first():
    tp = torch.tensor([[10.0, 50.0, 0.0]])
    fp = torch.tensor([[0.0, 50.0, 0.0]])
    key = objective(tp, fp, positive=100.0, goal=Goal(min_recall=0.3))
    # 100 % precise at 10 % recall is infeasible; 50 % at 50 % is feasible; nothing labelled last
    assert key[0, 1] > key[0, 0] > key[0, 2]


def test_the_prior_weighs_a_precision_by_its_pixels():
    """Without the prior 9 of 10 pixels beats 80 of 100; with the original's 100 pixels at
    50 % added to each, (9 + 50) / 110 < (80 + 50) / 200."""
    tp = torch.tensor([[9.0, 80.0]])
    fp = torch.tensor([[1.0, 20.0]])
    plain = objective(tp, fp, positive=1000.0, goal=Goal(min_recall=0.0))
    shrunk = objective(tp, fp, positive=1000.0, goal=Goal(0.0, weight=100.0, prior=0.5))
    assert plain[0, 0] > plain[0, 1] and shrunk[0, 1] > shrunk[0, 0]
    assert shrunk[0, 1] - 1.0 == pytest.approx((80 + 50) / 200, abs=1e-5)


def test_tune_reports_held_out_folds_that_cover_every_image(book, evidence):
    tuning = tune(book, evidence, folds=3)
    held = [name for fold in tuning.folds for name in fold.held_out]
    assert sorted(held) == sorted(evidence.images)
    assert len(tuning.folds) == 3
    assert tuning.held_out_before.tp + tuning.held_out_before.fp == pytest.approx(
        tuning.result.before.tp + tuning.result.before.fp
    )  # the original is not fitted: held out it labels what it labels on all images
    for fold in tuning.folds:
        assert fold.search.after.precision >= fold.search.before.precision
    assert tuning.result.after.precision >= tuning.result.before.precision


def test_fold_images_deal_every_defect_type_to_each_fold(evidence):
    folds = fold_images(evidence, 2)
    for fold in folds:
        assert {evidence.defects[i] for i in fold} == {"dark", "spot"}
    assert sorted(i for fold in folds for i in fold) == list(range(len(evidence.images)))


def test_too_few_annotations_are_refused_and_few_are_warned(evidence):
    with pytest.raises(DataError, match="too few"):
        require_enough(2, 30)
    with pytest.raises(DataError, match="too few"):
        require_enough(10, 4)
    (warning,) = require_enough(4, FEW_DEFECT_REGIONS - 1)
    assert "annotate more" in warning
    assert require_enough(4, FEW_DEFECT_REGIONS) == []
    few = evidence.subset([0, 1, 2, 3])
    with pytest.raises(DataError, match="too few"):
        tune(loads(syn.RULEBOOK), few.subset([0, 1]))


def test_nothing_to_tune_is_refused():
    with pytest.raises(DataError, match="nothing to tune"):
        require_tunables(loads("if gray is low then anomalous\n"))
    # `loads` refuses a rulebook without rules (E026); an API caller's parsed AST may have none
    with pytest.raises(DataError, match="no rules"):
        require_tunables(parse("scale gray = 255\n")[0])


RAW_BOOK = """\
class pit
scale darkness = 40
scale pixels   = 60
set darkness.clear = raw trapezoid(10, 16, 40, 40)
set pixels.spot    = raw trapezoid(3, 6, 60, 60)
threshold 0.8
define dark_spot = darkness is clear and pixels is spot
rule r: if dark_spot then pit (1)
"""


def test_raw_sets_move_in_their_own_units_and_keep_the_structure(evidence):
    book = loads(RAW_BOOK, "raw.rules")
    search = Search(book)
    labels = [t.label for t in search.tunables]
    a = labels.index("set darkness.clear a")
    scale = labels.index("scale darkness")
    steps = {
        round(move[a] - 10.0, 6)
        for move in search.moves(list(search.original))
        if move[scale] == 40.0 and move[a] != 10.0
    }
    # a standardised step of 0.025 .. 0.4 is 1 .. 16 gray levels at a scale of 40
    assert {1.0, -1.0, 2.0, 16.0} <= steps and all(abs(s) >= 1.0 for s in steps)
    result = search.run(evidence)
    assert result.after.precision >= result.before.precision
    tuned = with_values(book, search.tunables, result.values)
    assert structure(tuned) == structure(book) and search.clean(result.values)
    tp, fp = _figures_by_compiled_scorer(book, evidence, result.values, search.tunables)
    assert (tp, fp) == (result.after.tp, result.after.fp)


def test_tune_warns_when_the_original_labels_nothing(evidence):
    never = loads(
        "scale darkness = 40\nthreshold 0.8\nrule r: if darkness is high then anomalous (1)\n"
    )
    quiet = Search(never).figures(evidence, [1e6, 0.8])  # a scale no region reaches
    assert quiet.tp + quiet.fp == 0
    tuning = tune(with_values(never, Search(never).tunables, [1e6, 0.8]), evidence, folds=2)
    assert any("labels nothing" in w for w in tuning.warnings)
