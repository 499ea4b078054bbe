"""Defect classes in the language: `class` lines, rules that conclude a class, their
diagnostics (E016, E010, W108, W103/W104 per conclusion), `fmt` and the names."""

from __future__ import annotations

import pytest

from kistrules.api import check, diagnose
from kistrules.formatter import format_rulebook, format_source
from kistrules.parser import parse
from kistrules.resolve import resolve
from kistrules.symbols import SymbolIndex

BOOK = """\
class blowhole, Crack
class fray
scale gray = 255
scale area = 1
rule hole: IF gray is low THEN blowhole (0.9)
IF area is high THEN anomalous
rule thin: IF gray is mid THEN crack
IF area is low THEN Fray (0.85)
"""


def codes(text: str) -> list[tuple[str, str, str | None]]:
    return [(d.code, d.message, d.hint) for d in check(text)]


def test_classes_parse_in_declaration_order_and_rules_keep_their_conclusion():
    rulebook, errors = parse(BOOK)
    assert errors == []
    assert rulebook.classes == ("blowhole", "crack", "fray")
    assert [r.concludes for r in rulebook.rules] == ["blowhole", "anomalous", "crack", "fray"]
    assert rulebook.rules[3].conclusion.text == "Fray"  # the spelling, for messages
    assert resolve(rulebook).classes == ("blowhole", "crack", "fray")


def test_a_rulebook_with_classes_checks_clean():
    assert check(BOOK) == []


def test_a_rulebook_without_classes_has_none_and_concludes_anomalous():
    rulebook, _ = parse("IF gray is low THEN anomalous")
    assert rulebook.classes == ()
    assert rulebook.rules[0].conclusion is None
    assert rulebook.rules[0].concludes == "anomalous"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "class blowhole, crack\nIF gray is low THEN crak",
            ("E016", 'unknown class "crak"', 'did you mean "crack"?'),
        ),
        (
            "class blowhole, crack\nIF gray is low THEN anomalos",
            ("E016", 'unknown class "anomalos"', 'did you mean "anomalous"?'),
        ),
        (
            "class blowhole, crack\nIF gray is low THEN scratch",
            (
                "E016",
                'unknown class "scratch"',
                "declared classes: blowhole, crack, or anomalous (any)",
            ),
        ),
        (
            "IF gray is low THEN crack",
            ("E016", 'unknown class "crack"', "declare it first: class crack"),
        ),
        (
            "class crack\nclass fray, CRACK\nIF gray is low THEN crack\nIF gray is high THEN fray",
            ("E010", 'class "crack" is already defined at line 1', "declare each class once"),
        ),
    ],
)
def test_class_errors_and_their_hints(text, expected):
    found = [c for c in codes(text) if c[0].startswith("E")]
    assert found == [expected]


def test_an_unknown_class_is_spanned_at_its_name_and_offers_the_fix():
    (d,) = check("class crack\nIF gray is low THEN Crak (0.9)")
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 21, 25)
    assert d.replacement == "crack"


def test_class_anomalous_is_refused_by_the_grammar():
    _, errors = parse("class crack, anomalous")
    assert [(e.code, e.message) for e in errors] == [
        ("E001", 'expected a class name, found "anomalous"')
    ]
    assert "built in" in errors[0].hint


def test_a_class_no_rule_concludes_is_w108_once():
    text = "scale gray = 255\nclass crack, fray\nclass fray2\nIF gray is low THEN crack"
    found = [(d.code, d.span.line, d.message) for d in check(text)]
    assert found == [
        ("W108", 2, 'no rule concludes class "fray"'),
        ("W108", 3, 'no rule concludes class "fray2"'),
    ]
    # `anomalous` rules grade every class, but they do not conclude one
    text = "scale gray = 255\nclass crack\nIF gray is low THEN anomalous"
    assert [d.code for d in check(text)] == ["W108"]


def test_duplicate_and_subsumed_rules_compare_only_the_same_conclusion():
    head = "scale gray = 255\nscale area = 1\nclass crack, fray\n"
    same_condition = head + "IF gray is low THEN crack (0.9)\nIF gray is low THEN fray (0.9)\n"
    assert [d.code for d in check(same_condition)] == []
    twice = head + "IF gray is low THEN crack\nIF gray is low THEN crack\nIF area is low THEN fray"
    assert [d.code for d in check(twice)] == ["W103"]
    narrower = head + (
        "IF gray is low THEN crack\nIF gray is low AND area is high THEN fray\n"
        "IF gray is low AND area is low THEN crack (0.9)\n"
    )
    assert [(d.code, d.span.line) for d in check(narrower)] == [("W104", 6)]
    lower = head + "IF gray is low THEN crack (0.9)\nIF gray is low THEN anomalous (0.85)\n"
    lower += "IF gray is high THEN fray"
    assert [d.code for d in check(lower)] == []


def test_fmt_puts_classes_after_the_name_and_keeps_each_line():
    text = (
        "IF GRAY is low THEN CRACK (0.90)  # thin\n"
        'rulebook "tiles"\n'
        "CLASS Crack ,fray   # what we know\n"
        "class blowhole\n"
        "IF area is high then Blowhole\n"
        "IF area is low then fray\n"
        "scale gray = 255\nscale area = 1\n"
    )
    formatted, errors = format_source(text)
    assert errors == []
    assert formatted == (
        'rulebook "tiles"\n'
        "\n"
        "class crack, fray  # what we know\n"
        "class blowhole\n"
        "\n"
        "scale gray = 255\n"
        "scale area = 1\n"
        "\n"
        "if gray is low then crack (0.90)  # thin\n"
        "if area is high then blowhole\n"
        "if area is low then fray\n"
    )
    again, _ = parse(formatted)
    assert format_rulebook(again) == formatted


def test_a_long_rule_wraps_with_its_class_on_the_last_line():
    condition = " AND ".join(f"{p} is low" for p in ("gray", "area", "shape", "symmetry", "border"))
    formatted, _ = format_source(f"class crack\nIF {condition} THEN crack (0.9)")
    assert formatted.splitlines()[-1] == "    then crack (0.9)"


def test_symbols_declare_each_class_and_refer_to_it_from_conclusions():
    rulebook, _ = diagnose(BOOK)
    index = SymbolIndex(rulebook)
    assert [(d.name, d.span.line) for d in index.declared("class")] == [
        ("blowhole", 1),
        ("crack", 1),
        ("fray", 2),
    ]
    uses = [(o.identifier.text, o.identifier.span.line) for o in index.references("class", "crack")]
    assert uses == [("Crack", 1), ("crack", 7)]
    at_then = BOOK.index("Fray (0.85)") + 1
    assert index.at(at_then).kind == "class"
    assert index.at(at_then).key == "fray"
