"""Robustness: any text or bytes gives diagnostics with sane spans, never another exception;
and statement-by-statement parsing accepts exactly what lark's whole-file parse accepts."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from lark.exceptions import UnexpectedInput

from kistrules.api import check, diagnose
from kistrules.diagnostics import CODES
from kistrules.parser import _lark, parse, parse_bytes
from kistrules.span import LineIndex

VOCABULARY = [
    "rulebook",
    "class",
    "crack",
    "scale",
    "set",
    "threshold",
    "rule",
    "define",
    "raw",
    "dark_spot",
    "IF",
    "if",
    "THEN",
    "then",
    "anomalous",
    "AND",
    "OR",
    "NOT",
    "is",
    "not",
    "very",
    "somewhat",
    "gray",
    "area",
    "shape",
    "grya",
    "low",
    "mid",
    "high",
    "dark",
    "trapezoid",
    "triangle",
    "gaussian",
    "x",
    "0",
    "0.5",
    "1",
    "1.5",
    "-1",
    "1e999",
    ".2",
    '"name"',
    '"open',
    "(",
    ")",
    ",",
    ".",
    ":",
    "=",
    "#c\n",
    "\n",
    "$",
    "é",
    "\x00",
    "\t",
]


def assert_sane(text: str, diagnostics) -> None:
    """Every diagnostic has a known code and a span inside the text that agrees with LineIndex."""
    index = LineIndex(text, "f.rules")
    for d in diagnostics:
        assert d.code in CODES and d.severity == CODES[d.code].severity
        s = d.span
        assert 0 <= s.start <= s.end <= len(text) + 1
        assert (s.line, s.column) == index.position(s.start)
        assert s.line >= 1 and s.column >= 1 and s.end_line >= s.line
        assert d.message and "\n" not in d.message


@given(st.text(max_size=300))
@example("")
@example("IF")
@example("rule")
@example("set gray. = trapezoid(")
@example("IF ((((((((((gray is low")
@example("define a = b\ndefine b = a\nIF a THEN anomalous")
@example("define a = a OR a\nIF a AND a THEN anomalous")
@example("set gray.x = raw trapezoid(0, 0, 300, 400)\nIF gray is x THEN anomalous")
def test_any_text_gives_diagnostics_never_an_exception(text):
    rulebook, diagnostics = diagnose(text, "f.rules")
    assert rulebook is not None
    assert_sane(text, diagnostics)
    assert check(text) == [
        d.model_copy(update={"span": d.span.model_copy(update={"path": "<string>"})})
        for d in diagnostics
    ]


@given(st.binary(max_size=300))
@example(b"\xff")
@example(b"\x89PNG\r\n\x1a\n\x00")
@example(b"\xef\xbb\xbfIF gray is low THEN anomalous")
def test_any_bytes_give_diagnostics_never_an_exception(data):
    rulebook, diagnostics = diagnose(data, "f.rules")
    if rulebook is None:
        assert [d.code for d in diagnostics] == ["E014"]
        assert diagnostics[0].span.line >= 1
    else:
        assert_sane(rulebook.source, diagnostics)
    same, _ = parse_bytes(data, "f.rules")
    assert same == rulebook


token_soups = st.lists(st.sampled_from(VOCABULARY), max_size=40).map(" ".join)


@given(token_soups)
def test_token_soups_give_diagnostics_never_an_exception(text):
    _, diagnostics = diagnose(text, "f.rules")
    assert_sane(text, diagnostics)


def _lark_accepts(text: str) -> bool:
    try:
        _lark().parse(text)
    except UnexpectedInput:
        return False
    return True


@given(token_soups)
@example("IF gray is low THEN anomalous rule x: IF area is high THEN anomalous (1)")
@example("rule x: rule y: IF gray is low THEN anomalous")
def test_syntax_errors_exactly_when_lark_rejects_the_whole_text(text):
    rulebook, diagnostics = parse(text, "f.rules")
    has_syntax_error = any(d.code == "E001" for d in diagnostics)
    assert has_syntax_error == (not _lark_accepts(text))
    if not has_syntax_error:
        # The recovered statements are then the whole file, in order.
        tree = _lark().parse(text)
        assert len(rulebook.statements) == len(tree.children)


RULE_TEXT = st.builds(
    "{}IF {} is {}{} THEN anomalous{}".format,
    st.sampled_from(["", "rule a: ", "RULE b:\n"]),
    st.sampled_from(["gray", "Area", "shape"]),
    st.sampled_from(["", "not ", "very ", "not somewhat very "]),
    st.sampled_from(["low", "MID", "high"]),
    st.sampled_from(["", " (0.5)", "(1)", " ( .25 )"]),
)


@given(st.lists(RULE_TEXT, min_size=1, max_size=6), st.integers(0, 5))
def test_one_broken_statement_costs_only_itself(rules, broken):
    """Break one rule of a valid file: exactly one E001, and every other rule survives."""
    broken %= len(rules)
    damaged = [r.replace("THEN", "THN", 1) if i == broken else r for i, r in enumerate(rules)]
    text = "\n".join(damaged)
    rulebook, diagnostics = parse(text, "f.rules")
    assert [d.code for d in diagnostics] == ["E001"]
    span = diagnostics[0].span
    assert text[span.start : span.end] == "THN"
    assert span.start == len("\n".join(damaged[:broken])) + damaged[broken].index("THN") + (
        1 if broken else 0
    )
    assert [r.position for r in rulebook.rules] == [i + 1 for i in range(len(rules)) if i != broken]
