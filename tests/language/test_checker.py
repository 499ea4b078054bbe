"""The checker and the api: one failing file per E code with its exact span, hints,
duplicates, ignore comments, loads/load/check, and the generated code docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import kistrules
from kistrules.api import check, check_file, load, loads, select_codes
from kistrules.checker import check_names, did_you_mean, edit_distance
from kistrules.diagnostics import CODES
from kistrules.errors import RulebookError, UsageError
from kistrules.parser import parse
from kistrules.render import render_code_docs

FIXTURES = Path(__file__).parent / "fixtures"
CODE_FILES = sorted((FIXTURES / "codes").glob("E*.rules"))
EXPECT = re.compile(rb"# expect (E\d{3}) at (\d+):(\d+)-(\d+):(\d+)")


def test_there_is_one_failing_file_per_error_code():
    error_codes = sorted(c for c, info in CODES.items() if info.severity == "error")
    assert [p.stem for p in CODE_FILES] == error_codes


@pytest.mark.parametrize("path", CODE_FILES, ids=lambda p: p.stem)
def test_each_error_code_fires_alone_with_its_exact_span(path: Path):
    code, *where = EXPECT.match(path.read_bytes()).groups()
    diagnostics = check(path)
    assert [d.code for d in diagnostics] == [code.decode()]
    span = diagnostics[0].span
    assert (span.line, span.column, span.end_line, span.end_column) == tuple(map(int, where))
    assert span.path == str(path)
    assert diagnostics[0].severity == "error"


def names(text: str) -> list[tuple[str, str, str | None]]:
    rulebook, syntax = parse(text, "t.rules")
    assert syntax == []
    return [(d.code, d.message, d.hint) for d in check_names(rulebook)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "IF grya is low THEN anomalous",
            ("E002", 'unknown property "grya"', 'did you mean "gray"?'),
        ),
        (
            "IF colour is low THEN anomalous",
            (
                "E002",
                'unknown property "colour"',
                "known properties: area, pixels, gray, darkness, brightness, shape, "
                "unevenness, symmetry, border, elongation, thickness, orientation",
            ),
        ),
        ("scale graey = 2", ("E002", 'unknown property "graey"', 'did you mean "gray"?')),
        (
            "set shap.low = trapezoid(0, 0, 0.1, 0.2)",
            ("E002", 'unknown property "shap"', 'did you mean "shape"?'),
        ),
        (
            "IF gray is hihg THEN anomalous",
            ("E003", 'unknown set "hihg" for property "gray"', 'did you mean "high"?'),
        ),
        (
            "IF gray is very THEN anomalous",
            (
                "E003",
                'unknown set "very" for property "gray"',
                '"very" is a hedge; a set name must follow it: gray is very low',
            ),
        ),
        (
            "IF gray is somewaht low THEN anomalous",
            ("E013", 'unknown hedge "somewaht"', 'did you mean "somewhat"?'),
        ),
        (
            "set low = triangel(0, 0.1, 0.2)",
            ("E012", 'unknown membership function "triangel"', 'did you mean "triangle"?'),
        ),
        (
            "set low = triangle(0.3, 0.2, 0.1)",
            (
                "E008",
                "triangle parameters must satisfy a <= b <= c, but b = 0.2 < a = 0.3",
                "in order: triangle(0.1, 0.2, 0.3)",
            ),
        ),
        (
            "set low = gaussian(0.5)",
            (
                "E007",
                "gaussian takes 2 parameters (mean, sigma), got 1",
                "write gaussian(mean, sigma)",
            ),
        ),
        (
            "set low = trapezoid()",
            (
                "E007",
                "trapezoid takes 4 parameters (a, b, c, d), got 0",
                "write trapezoid(a, b, c, d)",
            ),
        ),
        (
            "IF gray is low THEN anomalous (0)",
            (
                "E004",
                "truth value must be in (0, 1], got 0",
                "1 = certain; 0.8 = fairly sure; leave it out for 1",
            ),
        ),
        (
            "threshold -0.1",
            (
                "E005",
                "threshold must be in [0, 1], got -0.1",
                "anomaly grades lie in [0, 1]; the paper uses 0.8",
            ),
        ),
    ],
)
def test_messages_and_hints(text, expected):
    assert names(text) == [expected]


def test_boundaries_that_are_allowed():
    ok = (
        "threshold 0\nthreshold 1\n"  # both ends of [0, 1] (E010 aside)
        "set a = trapezoid(0.2, 0.2, 0.2, 0.2)\nset b = triangle(0, 0, 1)\n"
        "set c = gaussian(0, 1e-9)\nscale gray = 1e-9\n"
        "IF gray is a THEN anomalous (1)\nIF gray is b THEN anomalous (1e-9)\n"
    )
    assert [code for code, *_ in names(ok)] == ["E010"]


def test_an_override_is_usable_only_with_its_property():
    text = "set gray.dark = trapezoid(0, 0, 0.1, 0.2)\nIF area is dark THEN anomalous"
    assert names(text) == [
        ("E003", 'unknown set "dark" for property "area"', "known sets: high, low, mid")
    ]
    assert names("set gray.dark = trapezoid(0, 0, 0.1, 0.2)\nIF gray is dark THEN anomalous") == []


def test_unknown_property_still_checks_its_set_against_every_set():
    assert [c for c, *_ in names("IF grya is lwo THEN anomalous")] == ["E002", "E003"]
    assert [c for c, *_ in names("IF grya is low THEN anomalous")] == ["E002"]


def test_duplicates_point_at_the_second_and_name_the_first_line():
    text = (
        'rulebook "a"\nrulebook "b"\nset low = triangle(0, 0, 1)\n\nset LOW = triangle(0, 0, 1)\n'
        "set gray.low = triangle(0, 0, 1)\nthreshold 0.5\nthreshold 0.6\n"
        "rule x: IF gray is low THEN anomalous\nrule X: IF gray is low THEN anomalous\n"
    )
    rulebook, _ = parse(text)
    found = [(d.code, d.span.line, d.message) for d in check_names(rulebook)]
    assert found == [
        ("E010", 2, "rulebook name is already defined at line 1"),
        ("E010", 5, 'set "low" is already defined at line 3'),
        ("E010", 8, "threshold is already defined at line 7"),
        ("E011", 10, 'rule name "x" is already used at line 9'),
    ]


def test_every_problem_of_a_file_is_reported_in_position_order():
    text = "IF grya is lwo THEN anomalous (2)\nscale gray = 0\nthreshold 3"
    assert [d.code for d in check(text)] == ["E002", "E003", "E004", "E006", "E005"]


# --- did-you-mean ----------------------------------------------------------------


def _reference_osa(a: str, b: str) -> int:
    """Textbook recursive definition (memoised), as an independent reference."""
    from functools import cache

    @cache
    def d(i: int, j: int) -> int:
        if min(i, j) == 0:
            return max(i, j)
        best = min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            best = min(best, d(i - 2, j - 2) + 1)
        return best

    return d(len(a), len(b))


def test_edit_distance_matches_the_recursive_definition():
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.text("abcr", max_size=7), st.text("abcr", max_size=7))
    def prop(a, b):
        assert edit_distance(a, b) == _reference_osa(a, b)

    prop()
    assert edit_distance("grya", "gray") == 1
    assert edit_distance("", "abc") == 3


def test_did_you_mean_threshold():
    assert did_you_mean("GRYA", ["area", "gray"]) == "gray"
    assert did_you_mean("unevness", ["unevenness"]) == "unevenness"  # 2 edits, long word
    assert did_you_mean("xyz", ["area", "gray"]) is None
    assert did_you_mean("gray", ["gray"]) is None  # an exact match is no suggestion


# --- ignore comments, select/ignore -------------------------------------------------


def test_ignore_comments_silence_warnings_on_their_line_only():
    text = (
        "set odd = triangle(0, 0.5, 1)          # kist: ignore[W105]\n"
        "IF gray is low THEN anomalous (0.5)    # kist: ignore[W105]\n"
        "IF area is low THEN anomalous (0.5)    # kist: ignore\n"
        "IF shape is low THEN anomalous (0.6)   # KIST: ignore[w105, W101]\n"
        "IF pixels is low THEN anomalous (0.5)\n"
    )
    assert [(d.code, d.span.line) for d in check(text)] == [("W101", 2), ("W101", 5)]


def test_errors_are_never_silenced_and_an_ignored_error_code_is_reported():
    text = (
        "IF grya is low THEN anomalous (2)   # kist: ignore[E002, W101]\n"
        "IF grya is low THEN anomalous       # kist: ignore\n"
    )
    found = check(text)
    assert [(d.code, d.span.line) for d in found] == [
        ("E002", 1),
        ("E004", 1),
        ("E027", 1),
        ("E002", 2),
    ]
    refused = found[2]
    line = text.splitlines()[0]
    assert line[refused.span.column - 1 : refused.span.end_column - 1] == "E002"
    assert refused.message == "E002 is an error code: only warnings may be ignored"
    with pytest.raises(RulebookError, match="E002"):
        loads(text)


def test_an_ignore_comment_on_any_line_of_a_long_rule_counts():
    text = "IF gray is low\n   AND area is low  # kist: ignore[W101]\nTHEN anomalous (0.5)\n"
    assert check(text) == []
    assert [d.code for d in check(text.replace("  # kist: ignore[W101]", ""))] == ["W101"]


def test_select_and_ignore_by_code_or_prefix():
    diagnostics = check("IF grya is low THEN anomalous (2)\nscale gray = 0")
    assert [d.code for d in select_codes(diagnostics, select=["E002,E006"])] == ["E002", "E006"]
    assert [d.code for d in select_codes(diagnostics, ignore=["e00"])] == []
    assert [d.code for d in select_codes(diagnostics, select=["E"], ignore=["E004"])] == [
        "E002",
        "E006",
    ]
    with pytest.raises(UsageError, match="unknown diagnostic code 'X9'"):
        select_codes(diagnostics, select=["X9"])


# --- api ---------------------------------------------------------------------------


def test_loads_returns_the_rulebook_and_raises_once_with_every_error():
    assert loads("IF gray is low THEN anomalous").rule_names == ("rule 1",)
    with pytest.raises(RulebookError) as info:
        loads("IF grya is low THEN anomalous (2)", "x.rules")
    assert [d.code for d in info.value.diagnostics] == ["E002", "E004"]
    assert str(info.value) == (
        'x.rules:1:4: error[E002]: unknown property "grya" (did you mean "gray"?) (and 1 more)'
    )
    assert isinstance(info.value, kistrules.KistrulesError)


def test_warnings_alone_do_not_raise():
    text = "IF gray is low THEN anomalous (0.5)"  # can never reach alpha = 0.8 (W101)
    assert "W101" in [d.code for d in check(text)]
    assert loads(text).rules[0].truth_value == 0.5


def test_load_and_check_read_files(tmp_path: Path):
    good = tmp_path / "good.rules"
    good.write_text("scale gray = 255\nIF gray is low THEN anomalous\n")
    assert load(good).scales == {"gray": 255.0}
    assert load(str(good)).scales == {"gray": 255.0}
    assert check(str(good)) == check(good) == []
    with pytest.raises(UsageError, match=r"missing\.rules: no such file"):
        load(tmp_path / "missing.rules")
    with pytest.raises(UsageError, match="no such file"):
        check(tmp_path / "missing.rules")
    binary = tmp_path / "bin.rules"
    binary.write_bytes(b"\xff\xd8\xff\xe0")
    with pytest.raises(RulebookError, match="E014"):
        load(binary)
    assert check_file(binary) == (None, check(binary))
    # A str that is not an existing .rules file is text.
    assert [d.code for d in check("missing.rules")] == ["E001"]


def test_public_api_is_reexported():
    assert kistrules.loads is loads and kistrules.load is load and kistrules.check is check


# --- docs ---------------------------------------------------------------------------


def test_every_error_code_has_an_explanation():
    for code, info in CODES.items():
        if info.severity == "error":
            assert len(info.explanation) > 40, code


def test_docs_diagnostics_md_is_generated_from_the_code_table():
    docs = Path(__file__).parents[2] / "docs" / "diagnostics.md"
    assert docs.read_text(encoding="utf-8") == render_code_docs(), (
        "docs/diagnostics.md is stale; regenerate it with: .venv/bin/python -c "
        '"from kistrules.render import write_code_docs; write_code_docs()"'
    )


def test_docstring_examples_run():
    import doctest

    import kistrules.api
    import kistrules.parser
    import kistrules.render

    for module in (kistrules.parser, kistrules.api, kistrules.render):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
