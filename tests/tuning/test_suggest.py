"""Suggested rules: readable, clean, measured honestly, never better than they are."""

from __future__ import annotations

import pytest
import torch

from kistrules.api import diagnose, loads
from kistrules.compiler import compile_rulebook
from kistrules.resolve import resolve
from kistrules.tuning.evidence import label_counts, labelled_groups, union_counts
from kistrules.tuning.suggest import Cut, data_scales, grow, rulebook_text, suggest
from tests.tuning import synthetic as syn


@pytest.fixture(scope="module")
def evidence():
    return syn.evidence(seed=21, count=10, size=32, properties=None)[0]


def test_suggestions_are_a_clean_rulebook_with_held_out_figures(evidence):
    found = suggest(evidence, max_rules=3, depth=2, folds=3)
    assert 1 <= len(found.rules) <= 3
    assert all(1 <= len(rule.cuts) <= 2 for rule in found.rules)
    book, diagnostics = diagnose(found.text)
    assert not diagnostics, [d.one_line() for d in diagnostics]
    assert [r.name for r in book.rules] == [s.name for s in found.rules]
    assert found.folds == 3 and found.held_out.positive == pytest.approx(evidence.total_positive)
    # every figure is the compiled rulebook's, as the audit would count it
    resolved = resolve(book)
    grade = compile_rulebook(resolved)(evidence.properties).grade
    tp, fp = label_counts(evidence, grade[None], torch.tensor([0.8]))
    assert (tp.item(), fp.item()) == (found.together.tp, found.together.fp)


def test_suggested_rules_beat_labelling_every_region(evidence):
    found = suggest(evidence, folds=3)
    everything = label_counts(evidence, torch.ones((1, evidence.regions)), torch.tensor([0.5]))
    precision_of_all = everything[0].item() / (everything[0].item() + everything[1].item())
    assert found.together.precision > precision_of_all
    for rule in found.rules:
        assert rule.alone.recall > 0


def test_a_cut_is_nearly_crisp_at_its_value():
    cut = Cut("darkness", 0.35, above=True)
    text = rulebook_text([(cut,)], {"darkness": 40.0})
    scorer = compile_rulebook(resolve(loads(text)))
    darkness = torch.tensor([0.35, 0.341, 0.339, 0.3]) * 40.0
    fired = scorer({"darkness": darkness.double()}).fired.tolist()
    assert fired == [True, True, False, False]  # 0.8 from q - 0.01 on
    below = rulebook_text([(Cut("pixels", 0.6, above=False),)], {"pixels": 100.0})
    assert "set pixels.below_60 = trapezoid(0, 0, 0.6, 0.65)" in below


def test_scales_are_the_experts_where_given(evidence):
    scales = data_scales(evidence, {"darkness": 40.0})
    assert scales["darkness"] == 40.0
    assert all(value > 0 for value in scales.values())
    values = evidence.properties["pixels"]
    share = float((values <= scales["pixels"]).double().mean())
    assert 0.85 <= share <= 0.95  # the 90th percentile, rounded to two digits


def test_no_rule_when_nothing_is_annotated(evidence):
    nothing = evidence.subset([0])
    empty = type(nothing)(**{**nothing.__dict__, "positive": torch.zeros_like(nothing.positive)})
    assert grow(empty, data_scales(empty), min_recall=0.05) == []


def test_every_suggested_rule_adds_labels_of_its_own(evidence):
    found = suggest(evidence, max_rules=3, folds=2)
    book = loads(found.text)
    scorer = compile_rulebook(resolve(book))
    rules = scorer(evidence.properties).rules >= 0.8  # (N, R): where each rule fires
    groups = labelled_groups(evidence, rules)
    for r in range(rules.shape[1]):
        others = [k for k in range(rules.shape[1]) if k != r]
        assert (groups[:, r] & ~groups[:, others].any(1)).any() or not others


def test_union_counts_are_label_counts_of_a_zero_one_grade(evidence):
    fired = torch.rand((evidence.regions, 3), generator=torch.Generator().manual_seed(2)) < 0.3
    pos, neg = union_counts(evidence, fired)
    tp, fp = label_counts(evidence, fired.T.float(), torch.tensor([0.5]))
    assert torch.equal(pos, tp[:, 0]) and torch.equal(neg, fp[:, 0])
    skip = torch.zeros(evidence.chains.shape[0], dtype=torch.bool)
    skip[::2] = True
    pos_skip, _ = union_counts(evidence, fired, skip=skip)
    assert (pos_skip <= pos).all()


def test_a_rule_cuts_each_property_once(evidence):
    for cuts in grow(evidence, data_scales(evidence), max_rules=3, depth=3, min_recall=0.01):
        assert len({c.property for c in cuts}) == len(cuts)
