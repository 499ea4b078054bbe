"""The bundled rulebooks: the paper's Table I rule by rule, clean under `check
--strict`, already in `fmt` layout, and every scale justified by a comment."""

from __future__ import annotations

from pathlib import Path

import pytest

from kistrules.api import check, load
from kistrules.ast import And, Term, iter_terms
from kistrules.formatter import format_rulebook
from kistrules.resolve import resolve

RULEBOOKS = Path(__file__).resolve().parents[2] / "rulebooks"
ALL = sorted(RULEBOOKS.rglob("*.rules"))

# KIST paper, Table I: (property, set) per term in the published order, and tv.
TABLE_I_KOLEKTOR_MVTEC = [
    ([("area", "high"), ("gray", "low")], 1.0),
    ([("gray", "low"), ("shape", "high")], 0.8),
    ([("shape", "low"), ("unevenness", "low")], 0.8),
    ([("unevenness", "low"), ("gray", "low")], 0.8),
    ([("symmetry", "low"), ("gray", "low")], 1.0),
]
TABLE_I_MTD = [
    ([("area", "high"), ("gray", "low"), ("unevenness", "low")], 1.0),
    ([("gray", "low"), ("shape", "high"), ("symmetry", "high")], 0.8),
    ([("shape", "low"), ("gray", "low"), ("unevenness", "low")], 0.8),
    ([("unevenness", "mid"), ("gray", "high"), ("shape", "high")], 1.0),
]
PAPER_TRAPEZOIDS = {
    "low": (0.0, 0.0, 0.2, 0.4),
    "mid": (0.2, 0.4, 0.6, 0.8),
    "high": (0.6, 0.8, 1.0, 1.0),
}


def _as_table(rulebook) -> list[tuple[list[tuple[str, str]], float]]:
    rows = []
    for rule in rulebook.rules:
        condition = rule.condition
        assert isinstance(condition, And), f"{rule.name}: Table I rules are plain conjunctions"
        terms = []
        for term in condition.operands:
            assert isinstance(term, Term)
            assert not term.negated and term.hedges == ()
            terms.append((term.property.name, term.set.name))
        rows.append((terms, rule.truth_value))
    return rows


@pytest.mark.parametrize(
    ("name", "table"),
    [("kolektor_mvtec.rules", TABLE_I_KOLEKTOR_MVTEC), ("mtd.rules", TABLE_I_MTD)],
)
def test_paper_rulebooks_are_table_one(name, table):
    rulebook = load(RULEBOOKS / name)
    assert _as_table(rulebook) == table
    assert rulebook.threshold == 0.8  # the paper's alpha
    # the sets are the paper's Fig. 5 trapezoids: none is redefined
    assert rulebook.sets == {}
    resolved = resolve(rulebook)
    for (_, set_name), mf in resolved.sets.items():
        assert (mf.function, mf.params) == ("trapezoid", PAPER_TRAPEZOIDS[set_name])
    # every rule is named, descriptively and uniquely
    assert all(rule.label is not None for rule in rulebook.rules)
    assert len(set(rulebook.rule_names)) == len(rulebook.rules)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_bundled_rulebooks_check_clean_with_strict(path):
    assert [d.one_line() for d in check(path)] == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_bundled_rulebooks_are_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert format_rulebook(load(path)) == text


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_scale_is_explicit_and_commented(path):
    rulebook = load(path)
    used = {t.property.name for r in rulebook.rules for t in iter_terms(r.condition)}
    assert used <= set(rulebook.scales), "strict check needs an explicit scale per property"
    lines = path.read_text(encoding="utf-8").splitlines()
    for statement in rulebook.statements:
        if statement.kind != "scale":
            continue
        line = statement.span.line
        # a comment on the line itself or on the line just above
        assert "#" in lines[line - 1] or lines[line - 2].lstrip().startswith("#"), (
            f"{path.name}:{line}: scale {statement.property.name} is not justified"
        )


def test_examples_use_the_operators_and_new_properties():
    texts = {p.name: p.read_text(encoding="utf-8") for p in ALL if p.parent.name == "examples"}
    assert len(texts) >= 2
    joined = " ".join(texts.values())
    for needle in ("very", "somewhat", "not (", "is not", " or ", "set gray.", "pixels",
                   "darkness", "brightness", "define ", "= raw "):  # fmt: skip
        assert needle in joined, needle
