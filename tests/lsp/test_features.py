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


NAMED = """\
scale pixels = 100
set pixels.speck = raw trapezoid(0, 0, 10, 25)
define small = pixels is speck
define dark_small = darkness is high AND small
rule r: IF dark_small AND NOT small THEN anomalous (0.9)
"""


def test_hover_on_a_raw_set_shows_the_standardised_values_and_what_was_written():
    for nth in (0, 1):  # the definition and a use
        text = _hover(NAMED, "speck", nth)
        assert "`trapezoid(0, 0, 0.1, 0.25)`" in text
        assert "written `raw trapezoid(0, 0, 10, 25)` in pixels of the original image" in text
        assert "| standardised | 0 | 0 | 0.1 | 0.25 |" in text
        assert "| pixels (pixels of the original image, gamma 100) | 0 | 0 | 10 | 25 |" in text


def test_hover_on_a_defined_name_shows_its_definition_and_the_terms_it_stands_for():
    at_definition = _hover(NAMED, "dark_small")
    at_use = _hover(NAMED, "dark_small", 1)
    assert at_definition == at_use
    assert "define dark_small = darkness is high and small" in at_use
    assert "written out: `darkness is high and pixels is speck`" in at_use
    assert "written out" not in _hover(NAMED, "small")  # nothing to write out
    # an unknown name shows E020's explanation, a cyclic one its definition only
    assert _hover("IF nope THEN anomalous", "nope") == explain_code("E020")
    cyclic = "define a = b\ndefine b = a\nIF a THEN anomalous\n"
    assert "written out" not in _hover(cyclic, "a THEN", 0).split("---")[0]


def test_rename_changes_every_occurrence_or_says_why_not():
    from kistrules.lsp.features import prepare_rename, rename

    snapshot = analyse("file:///t.rules", 1, NAMED, "t.rules")
    offset = NAMED.index("NOT small") + 5
    where = prepare_rename(snapshot, offset, "utf-16")
    assert (where.start.line, where.start.character) == (4, 30)
    edit, problem = rename(snapshot, offset, "tiny", "utf-16")
    assert problem is None
    edits = edit.changes["file:///t.rules"]
    renamed = _apply(NAMED, [e.range for e in edits], "tiny")
    assert renamed == NAMED.replace(" small", " tiny")
    # the renamed text means the same: the same diagnostics
    again = analyse("file:///t.rules", 2, renamed, "t.rules").diagnostics
    assert [d.message for d in again] == [d.message for d in snapshot.diagnostics]
    for name, why in [
        ("dark_small", "already a condition name"),
        ("gray", "is a property"),
        ("if", "is a keyword"),
        ("2x", "is not a name"),
    ]:
        assert why in rename(snapshot, offset, name, "utf-16")[1]
    speck = NAMED.index("speck")
    assert "is a built-in set" in rename(snapshot, speck, "low", "utf-16")[1]
    assert rename(snapshot, speck, "dot", "utf-16")[1] is None
    # properties, built-in sets and unnamed rules belong to the language or have no name
    assert prepare_rename(snapshot, NAMED.index("pixels"), "utf-16") is None
    assert prepare_rename(snapshot, NAMED.index("darkness is high") + 15, "utf-16") is None


def _apply(text: str, ranges, new: str) -> str:
    lines = text.split("\n")
    for r in sorted(ranges, key=lambda r: (r.start.line, r.start.character), reverse=True):
        line = lines[r.start.line]
        lines[r.start.line] = line[: r.start.character] + new + line[r.end.character :]
    return "\n".join(lines)


def test_completion_offers_defined_conditions_where_a_condition_starts():
    from kistrules.lsp.completion import complete

    snapshot = analyse("file:///t.rules", 1, NAMED, "t.rules")
    for before in ("IF ", "IF small AND ", "define x = ", "IF NOT ("):
        text = NAMED + before
        labels = [i.label for i in complete(text, len(text), snapshot.rulebook, snapshot.index)]
        assert {"small", "dark_small", "gray"} <= set(labels), before
    for before in ("scale ", "define "):
        text = NAMED + before
        labels = [i.label for i in complete(text, len(text), snapshot.rulebook, snapshot.index)]
        assert "small" not in labels, before
