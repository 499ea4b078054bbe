"""Hover and names on broken rulebooks, as functions (no server): every answer, no crash."""

from __future__ import annotations

import pytest
from lsprotocol import types

from kistrules.lsp.document import analyse
from kistrules.lsp.features import definition, document_symbols, hover, references
from kistrules.render import explain_code


def _hover(text: str, needle: str, nth: int = 0) -> str | None:
    offset = -1
    for _ in range(nth + 1):
        offset = text.index(needle, offset + 1)
    result = hover(analyse("file:///t.rules", 1, text, "t.rules"), offset + 1, "utf-16")
    return None if result is None else result.contents.value


def test_a_set_defined_twice_shows_each_line_and_the_duplicate_error():
    text = (
        "set low = triangle(0, 0.1, 0.2)\nset low = triangle(0, 0.2, 0.4)\n"
        "scale gray = 100\nIF gray is low THEN anomalous\n"
    )
    first = _hover(text, "low")
    assert "line 1" in first and "| 0 | 10 | 20 |" in first
    second = _hover(text, "low", 1)
    assert "line 2" in second and "| 0 | 20 | 40 |" in second and explain_code("E010") in second


def test_wrong_arity_and_unknown_names_still_hover():
    text = "set odd = trapezoid(0, 0.5, 1)\nIF grya is odd THEN anomalous\n"
    assert "trapezoid(0, 0.5, 1)" in _hover(text, "odd")
    assert explain_code("E002") in _hover(text, "grya")
    assert _hover("IF gray is lwo THEN anomalous", "lwo") == explain_code("E003")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "IF",
        "rule : IF gray is THEN",
        "set gray. = trapezoid(",
        'rulebook "unterminated',
        "((((((((",
        "IF gray is low THEN anomalous (0.9) # kist: ignore[",
    ],
)
def test_broken_text_gets_answers_at_every_offset(text):
    snapshot = analyse("file:///t.rules", 1, text, "t.rules")
    for offset in range(len(text) + 1):
        hover(snapshot, offset, "utf-16")
        definition(snapshot, offset, "utf-16")
        references(snapshot, offset, "utf-16", include_declaration=True)
    assert isinstance(document_symbols(snapshot, "utf-16"), list)


CLASSES = (
    "class blowhole, crack, fray\nscale gray = 255\n"
    "rule hole: IF gray is low THEN blowhole\nIF gray is high THEN anomalous\n"
    "rule thin: IF gray is mid THEN crack\nrule line: IF gray is very mid THEN crack\n"
)


def test_hover_on_a_class_names_its_line_and_the_rules_that_conclude_it():
    crack = _hover(CLASSES, "crack", 1)  # in `THEN crack`
    assert crack == _hover(CLASSES, "crack")  # the same at its declaration
    assert crack.startswith("**crack** (class, declared line 1)")
    assert "concluded by thin, line" in crack
    assert "the 1 rule(s) concluding anomalous" in crack
    fray = _hover(CLASSES, "fray")
    assert "concluded by no rule (W108)" in fray and explain_code("W108") in fray
    unknown = "class crack\nIF gray is low THEN crak\n"
    assert "not declared (E016)" in _hover(unknown, "crak")


def test_go_to_a_class_and_its_references_and_symbols():
    snapshot = analyse("file:///t.rules", 1, CLASSES, "t.rules")
    at_then = CLASSES.index("THEN crack") + 6
    (where,) = definition(snapshot, at_then, "utf-16")
    assert (where.range.start.line, where.range.start.character) == (0, 16)
    found = references(snapshot, at_then, "utf-16", include_declaration=True)
    assert [r.range.start.line for r in found] == [0, 4, 5]
    names = [(s.name, s.kind) for s in document_symbols(snapshot, "utf-16")]
    assert names[:3] == [(c, types.SymbolKind.EnumMember) for c in ("blowhole", "crack", "fray")]
