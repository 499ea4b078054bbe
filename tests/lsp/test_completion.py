"""Completion as a function of text and cursor (the end-to-end test covers the protocol)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kistrules import symbols
from kistrules.api import diagnose
from kistrules.builtins import BUILTIN_SETS, HEDGES, PROPERTIES
from kistrules.lsp import completion
from kistrules.lsp.completion import complete
from kistrules.parser import lex_statements
from kistrules.symbols import SymbolIndex

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("rulebooks/*.rules"), *ROOT.glob("rulebooks/examples/*")])


def labels(text: str, offset: int | None = None, names: str | None = None) -> list[str]:
    offset = len(text) if offset is None else offset
    rulebook, _ = diagnose(names if names is not None else text)
    return [item.label for item in complete(text, offset, rulebook, SymbolIndex(rulebook))]


def test_a_statement_spread_over_lines_is_read_from_its_start():
    text = "scale gray = 9\nrule r1:\n  IF area is high AND\n   gray is "
    found = labels(text)
    assert {"not", *HEDGES, *BUILTIN_SETS} <= set(found)
    assert not set(found) & set(PROPERTIES)
    assert set(PROPERTIES) <= set(labels("rule r1: IF area is high\n    AND "))


def test_nothing_in_comments_and_strings():
    assert labels("IF gray is low THEN anomalous  # IF ") == []
    assert labels('rulebook "an open string IF ') == []


def test_sets_come_from_the_file_even_while_it_does_not_parse():
    names = "set gray.dark = trapezoid(0, 0, 0.1, 0.3)\nset wide = triangle(0, 0.5, 1)\n"
    text = names + "IF gray is low THN anomalous\nIF gray is "
    found = labels(text)
    assert {"dark", "wide"} <= set(found)
    # At a set name after `set PROPERTY.`: the names that an override may replace.
    assert {"wide", *BUILTIN_SETS} <= set(labels(names + "set gray.", names=names))


def test_a_word_being_typed_is_replaced_not_followed():
    # The cursor right after `gr`: what may stand there, not what may follow `gr`.
    assert set(PROPERTIES) <= set(labels("IF gr"))
    assert "is" in labels("IF gray i")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_reading_from_a_line_start_is_the_same_as_reading_the_whole_prefix(path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    rulebook, _ = diagnose(text)
    index = SymbolIndex(rulebook)
    chunks, _, _ = lex_statements(text)
    offsets = sorted({p for c in chunks for t in c.tokens for p in (t.start_pos, t.end_pos)})
    fast = [[i.label for i in complete(text, o, rulebook, index)] for o in offsets]
    monkeypatch.setattr(completion, "_statement_before", lambda text, offset: text[:offset])
    slow = [[i.label for i in complete(text, o, rulebook, index)] for o in offsets]
    assert fast == slow
    assert any(fast)


def test_no_existing_name_is_offered_for_a_new_rule():
    assert labels("rule taken: IF gray is low THEN anomalous\nrule ") == []


def test_a_role_naming_a_declared_kind_completes_with_the_files_declarations(monkeypatch):
    """The mechanism `class` uses, on another kind: a name role equal to a declaration
    kind offers the file's declarations of that kind."""
    monkeypatch.setitem(
        symbols.DECLARATIONS,
        "set",
        lambda s: (symbols.Declaration("widget", s.name.name, s.name.name, s.name.span, s),),
    )
    rulebook, _ = diagnose("set knob = triangle(0, 0.5, 1)\nset dial = triangle(0, 0.5, 1)\n")
    items = completion._names("widget", [], rulebook, SymbolIndex(rulebook))
    assert [i.label for i in items] == ["knob", "dial"]


def test_after_then_the_declared_classes_and_anomalous_are_offered():
    head = "class blowhole, crack\nscale gray = 255\n"
    found = labels(head + "IF gray is low THEN ")
    assert set(found) == {"anomalous", "blowhole", "crack"}
    assert set(labels(head + "IF gray is low THEN cr")) == {"anomalous", "blowhole", "crack"}
    assert labels("IF gray is low THEN ") == ["anomalous"]  # no class declared
    assert labels("class blowhole, ") == []  # a new class's name: nothing to offer
