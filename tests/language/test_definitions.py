"""Named conditions (`define`), raw-unit sets and the warnings of issue 17: what they
mean (scored against the same rulebook written out by hand), what the checker says
about them, and that the walks over names never recurse per name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kistrules.api import check, diagnose, loads
from kistrules.builtins import PROPERTIES
from kistrules.compiler import compile_rulebook
from kistrules.definitions import dependency_order, used_names
from kistrules.formatter import format_rulebook
from kistrules.parser import parse
from kistrules.resolve import resolve
from kistrules.symbols import SymbolIndex

SCALES = "scale darkness = 40\nscale pixels = 100\nscale border = 50\nscale gray = 255\n"


def codes(text: str) -> list[str]:
    return [d.code for d in check(text)]


def only(text: str, code: str):
    found = check(text)
    assert [d.code for d in found] == [code], [d.one_line() for d in found]
    return found[0]


def grades(text: str, values: dict[str, np.ndarray]) -> torch.Tensor:
    scorer = compile_rulebook(resolve(loads(text)), dtype=torch.float64)
    return scorer({p: torch.as_tensor(v) for p, v in values.items()}).grade


def random_values(n: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {p: rng.uniform(0, 1.2, n) * info.default_scale for p, info in PROPERTIES.items()}


# --- define: meaning ------------------------------------------------------------------


def test_a_defined_name_scores_exactly_as_its_condition_written_out():
    named = SCALES + (
        "define dark_spot = darkness is high AND pixels is not low\n"
        "define edge = border is low OR (gray is very low AND NOT dark_spot)\n"
        "rule a: IF dark_spot AND edge THEN anomalous (0.9)\n"
        "rule b: IF NOT edge OR somewhat_dark THEN anomalous\n"
        "define somewhat_dark = darkness is somewhat mid\n"  # used before it is defined
    )
    by_hand = SCALES + (
        "rule a: IF (darkness is high AND pixels is not low) AND (border is low OR "
        "(gray is very low AND NOT (darkness is high AND pixels is not low))) "
        "THEN anomalous (0.9)\n"
        "rule b: IF NOT (border is low OR (gray is very low AND NOT (darkness is high AND "
        "pixels is not low))) OR darkness is somewhat mid THEN anomalous\n"
    )
    values = random_values()
    assert torch.equal(grades(named, values), grades(by_hand, values))
    # explain's terms name the underlying terms, never a defined name
    scorer = compile_rulebook(resolve(loads(named)))
    labels = [t.label for t in scorer.terms if t.rule == 0]
    assert labels == [
        "darkness is high",
        "pixels is not low",
        "border is low",
        "gray is very low",
        "darkness is high",
        "pixels is not low",
    ]


def test_diagnostics_about_a_named_rule_point_into_the_rule_not_the_define():
    text = SCALES + "define never = gray is low AND gray is high\nrule r: IF never THEN anomalous\n"
    d = only(text, "W102")
    assert text[d.span.start : d.span.end] == "never"
    assert d.span.line == 6  # the rule's line: its ignore comment covers it


def test_dependency_order_and_cycles_are_found_without_recursion_per_name():
    n = 5_000  # far beyond Python's recursion limit if each name cost a frame
    text = "\n".join(f"define d{i} = d{i + 1}" for i in range(n))
    text += f"\ndefine d{n} = gray is low\nIF d0 THEN anomalous (0.9)\n"
    rulebook, errors = parse(text)
    assert errors == []
    order, cycles = dependency_order(rulebook.definitions)
    assert cycles == [] and order[0] == f"d{n}" and order[-1] == "d0"
    assert used_names(rulebook) == set(rulebook.definitions)
    assert codes(text) == []
    assert resolve(rulebook).rules[0].condition.kind == "term"
    looped = text.replace(f"define d{n} = gray is low", f"define d{n} = d0")
    d = only(looped, "E021")
    assert d.message.startswith('condition "d0" uses itself: d0 -> d1 -> d2')


# --- define: the checker ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "hint"),
    [
        ("define dark = gray is low\nIF drak THEN anomalous", "E020", 'did you mean "dark"?'),
        ("IF gray THEN anomalous", "E020", "a term reads gray is SET, e.g. gray is high"),
        ("IF low THEN anomalous", "E020", '"low" is a set; a term reads PROPERTY is low'),
        ("IF x THEN anomalous", "E020", "name a condition first: define NAME = CONDITION"),
        ("define a = a\nIF a THEN anomalous", "E021", "never itself"),
        ("define area = area is high\nIF area THEN anomalous", "E022", "area_defect"),
    ],
)
def test_name_errors_and_their_hints(text, code, hint):
    d = only(text, code)
    assert hint in d.hint


def test_a_broken_define_does_not_make_its_uses_unknown():
    text = "define dark = gray is lwo is\nIF dark THEN anomalous\n"
    assert codes(text) == ["E001"]


def test_duplicate_define_is_e010():
    text = "define a = gray is low\ndefine A = area is high\nIF a THEN anomalous\n"
    d = only(text, "E010")
    assert d.span.line == 2 and "line 1" in d.message


def test_expansion_limits_depth_and_size_once_each():
    # each name one NOT deeper: 101 levels once written out
    deep = ["define d0 = gray is low"] + [f"define d{i} = NOT d{i - 1}" for i in range(1, 102)]
    found = check("\n".join(deep) + "\nIF d101 THEN anomalous\n")
    assert [d.code for d in found] == ["E023"]
    assert found[0].message.startswith('condition "d101" is 1 term, 101 levels deep')
    # each name used twice: 2^11 terms, reported where it starts (d10) and not again
    wide = ["define d0 = gray is low"] + [
        f"define d{i} = d{i - 1} OR d{i - 1}" for i in range(1, 12)
    ]
    found = check("\n".join(wide) + "\nIF d11 THEN anomalous\n")
    assert [(d.code, d.span.line) for d in found] == [("E023", 11)]
    assert "1,024 terms" in found[0].message
    # a rule using a name a few times too many
    rule = "IF " + " AND ".join(["d9"] * 3) + " THEN anomalous\n"
    found = check("\n".join(wide[:10]) + "\n" + rule)
    assert [(d.code, d.span.line) for d in found] == [("E023", 11)]
    assert "the condition of rule 1 is 1,536 terms" in found[0].message


# --- define: warnings ---------------------------------------------------------------------


def test_w110_unused_definitions_and_their_sets():
    text = SCALES + (
        "set gray.dim = trapezoid(0, 0, 0.3, 0.5)\n"
        "define used = darkness is high\n"
        "define via = used AND border is low\n"
        "define lonely = gray is dim\n"
        "define lonelier = lonely\n"
        "IF via THEN anomalous\n"
    )
    found = check(text)
    assert [(d.code, text[d.span.start : d.span.end]) for d in found] == [
        ("W110", "lonely"),
        ("W110", "lonelier"),
    ]  # and no W105 for gray.dim: its define is what is unused


# --- raw units --------------------------------------------------------------------------


def test_raw_sets_are_divided_by_the_scale_and_score_like_the_standardised_set():
    raw = SCALES + (
        "set pixels.speck = raw trapezoid(0, 0, 10, 25)\n"
        "set darkness.deep = raw gaussian(30, 4)\n"
        "set gray.dim = raw triangle(0, 51, 102)\n"  # scale given: 255
        "set border.near = raw trapezoid(0, 0, 5, 10)\n"
        "IF pixels is not speck AND (darkness is deep OR gray is dim OR border is near) "
        "THEN anomalous\n"
    )
    standardised = SCALES + (
        "set pixels.speck = trapezoid(0, 0, 0.1, 0.25)\n"
        "set darkness.deep = gaussian(0.75, 0.1)\n"
        "set gray.dim = triangle(0, 0.2, 0.4)\n"
        "set border.near = trapezoid(0, 0, 0.1, 0.2)\n"
        "IF pixels is not speck AND (darkness is deep OR gray is dim OR border is near) "
        "THEN anomalous\n"
    )
    sets = resolve(loads(raw)).sets
    assert sets[("pixels", "speck")].params == (0.0, 0.0, 0.1, 0.25)
    assert sets[("darkness", "deep")].params == (0.75, 0.1)
    values = random_values(seed=1)
    torch.testing.assert_close(grades(raw, values), grades(standardised, values))


def test_raw_uses_the_default_scale_without_a_scale_line():
    text = "set thickness.hair = raw trapezoid(0, 0, 5, 10)\nIF thickness is hair THEN anomalous\n"
    assert resolve(loads(text)).sets[("thickness", "hair")].params == (0.0, 0.0, 0.1, 0.2)


def test_out_of_range_set_parameters_are_errors_naming_the_scale():
    d = only(
        "set pixels.big = trapezoid(30, 60, 1200, 1500)\nIF pixels is big THEN anomalous\n", "E024"
    )
    assert d.message == 'set "pixels.big": a = 30 is outside [0, 1], where sets live'
    assert "clip(pixels / 100, 0, 1)" in d.hint
    assert "raw with a scale of at least 1500: set pixels.big = raw trapezoid(" in d.hint
    d = only(
        "scale pixels = 100\nset pixels.big = raw trapezoid(30, 60, 1200, 1500)\n"
        "IF pixels is big THEN anomalous\n",
        "E024",
    )
    assert "raw c = 1200 (pixels of the original image) reads 12 with the scale pixels = 100" in (
        d.message
    )
    assert "(scale pixels = 1500)" in d.hint
    d = only("set wide = gaussian(1.5, 0.2)\nIF gray is wide THEN anomalous\n", "E024")
    assert "mean = 1.5" in d.message and "set PROPERTY.wide = raw gaussian(...)" in d.hint
    # a gaussian's sigma is a width, not a place: any positive value is fine
    assert codes("set wide = gaussian(0.5, 3)\nIF gray is not wide THEN anomalous\n") == ["W101"]
    d = only("set speck = raw trapezoid(0, 0, 10, 25)\nIF pixels is speck THEN anomalous\n", "E025")
    assert d.span.column == 13 and d.span.end_column == 16


def test_a_raw_set_with_a_broken_scale_reports_only_the_scale():
    text = (
        "scale pixels = 0\nset pixels.s = raw trapezoid(0, 0, 10, 25)\n"
        "IF pixels is s THEN anomalous\n"
    )
    assert codes(text) == ["E006"]


# --- W111 -----------------------------------------------------------------------------------


def test_w111_truth_value_equal_to_the_threshold():
    text = SCALES + "rule r: IF gray is low AND darkness is high THEN anomalous (0.8)\n"
    d = only(text, "W111")
    assert text[d.span.start : d.span.end] == "0.8"
    assert "`gray is low`: gray <= 51" in d.message
    assert "`darkness is high`: darkness >= 32" in d.message
    assert "raise the truth value above 0.8" in d.hint
    # TV 1 fires from a condition of 0.8; a threshold of 1 asks for 1 of every rule
    assert codes(text.replace("(0.8)", "(1)")) == []
    assert codes("threshold 1\n" + text.replace("(0.8)", "")) == []
    # a condition that cannot reach 1 is W101, not W111
    assert codes(SCALES + "IF gray is low AND gray is mid THEN anomalous (0.8)\n") == ["W101"]


def test_w111_only_where_a_region_at_the_plateau_fires_and_just_off_it_does_not():
    text = SCALES + "rule r: IF gray is low AND darkness is high THEN anomalous (0.8)\n"
    scorer = compile_rulebook(resolve(loads(text)), dtype=torch.float64)
    gray = torch.tensor([51.0, 51.0, 52.0])
    darkness = torch.tensor([32.0, 31.9, 40.0])
    fired = scorer({"gray": gray, "darkness": darkness}).fired.tolist()
    assert fired == [True, False, False]


# --- ignore comments, empty rulebooks, fmt, symbols -----------------------------------------


def test_fmt_round_trips_defines_raw_and_not_name():
    text = (
        "SET pixels.speck = RAW trapezoid(0, 0, 10, 25)\n"
        "IF NOT (dark) AND near THEN anomalous\n"
        "DEFINE dark = darkness is high and pixels is not speck\n"
        "define near = border is low or border is somewhat low or border is very low or "
        "border is very very low or darkness is high\n"
    )
    rulebook, errors = parse(text)
    assert errors == []
    formatted = format_rulebook(rulebook)
    assert formatted == (
        "set pixels.speck = raw trapezoid(0, 0, 10, 25)\n"
        "\n"
        "define dark = darkness is high and pixels is not speck\n"
        "define near = border is low\n"
        "    or border is somewhat low\n"
        "    or border is very low\n"
        "    or border is very very low\n"
        "    or darkness is high\n"
        "\n"
        "if not dark and near then anomalous\n"
    )
    again, errors = parse(formatted)
    assert errors == [] and format_rulebook(again) == formatted


def test_defined_names_are_symbols():
    text = "define dark = gray is low\nrule r: IF dark AND NOT dark THEN anomalous\n"
    rulebook, _ = diagnose(text)
    index = SymbolIndex(rulebook)
    use = index.at(text.index("dark", 30))
    assert (use.kind, use.key) == ("condition", "dark")
    assert [d.span.line for d in index.definitions("condition", "dark")] == [1]
    assert len(list(index.references("condition", "dark"))) == 3


def test_a_rulebook_without_rules_is_e026_but_still_formats():
    from kistrules.formatter import format_source

    text = "# drafting\nSCALE gray = 255\n"
    assert codes(text) == ["E026"]
    assert format_source(text) == ("# drafting\nscale gray = 255\n", [])
    # not after a syntax error: the statement lost may be the rule
    assert codes("scale gray = 255\nIF gray is low THN anomalous\n") == ["E001"]
