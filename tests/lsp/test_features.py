"""Hover and names on broken rulebooks, as functions (no server): every answer, no crash."""

from __future__ import annotations

import pytest

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
