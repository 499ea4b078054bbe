"""The parser: AST shape, precedence, defaults, spans, comments, syntax errors and recovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kistrules.ast import And, Not, Rule, ScaleDef, SetDef, Term, ThresholdDef
from kistrules.parser import _lark, _scanner, decode, parse, parse_bytes

LANGUAGE_DOC = Path(__file__).parents[2] / "docs" / "language.md"
EXAMPLE = Path(__file__).parent / "fixtures" / "cli" / "magnetic_tile.rules"


def parse_ok(text: str):
    rulebook, diagnostics = parse(text, "t.rules")
    assert diagnostics == [], [d.one_line() for d in diagnostics]
    return rulebook


def shape(condition) -> object:
    """A span-free picture of a condition: ("and", [...]), ("not", x) or "prop is set"."""
    if isinstance(condition, Term):
        words = [condition.property.name, "is"] + (["not"] if condition.negated else [])
        return " ".join(words + [h.name for h in condition.hedges] + [condition.set.name])
    if isinstance(condition, Not):
        return ("not", shape(condition.operand))
    kind = "and" if isinstance(condition, And) else "or"
    return (kind, [shape(c) for c in condition.operands])


def condition_of(text: str):
    return shape(parse_ok(text).rules[0].condition)


# --- the contract's complete example -------------------------------------------


def test_contract_example_parses_to_the_documented_rules():
    rulebook = parse_ok(EXAMPLE.read_text())
    assert rulebook.display_name == "magnetic tile"
    assert rulebook.rule_names == ("large_dark_flat", "dark_slender", "rule 3", "rule 4")
    assert [r.truth_value for r in rulebook.rules] == [1.0, 0.9, 1.0, 0.9]
    assert rulebook.scales == {"area": 0.05, "gray": 255.0, "unevenness": 40.0}
    assert set(rulebook.sets) == {"low", "mid", "high", "gray.low", "unevenness.flat"}
    assert rulebook.sets["unevenness.flat"].function.raw
    assert shape(rulebook.definitions["dark_flat"].condition) == (
        "and",
        ["gray is low", "unevenness is flat"],
    )
    assert rulebook.sets["gray.low"].function.function.name == "trapezoid"
    assert [a.value for a in rulebook.sets["gray.low"].function.args] == [0, 0, 0.3, 0.5]
    assert rulebook.threshold == 0.8
    assert shape(rulebook.rules[3].condition) == (
        "and",
        ["gray is very low", ("not", "area is low")],
    )
    assert len(rulebook.comments) == 8
    assert rulebook.source == EXAMPLE.read_text()


def test_fixture_is_the_language_docs_example_verbatim():
    blocks = LANGUAGE_DOC.read_text(encoding="utf-8").split("```")[1::2]
    assert EXAMPLE.read_text().strip() in [block.strip() for block in blocks]


# --- structure -----------------------------------------------------------------


def test_precedence_not_over_and_over_or():
    assert condition_of("IF gray is low OR area is high AND NOT shape is mid THEN anomalous") == (
        "or",
        ["gray is low", ("and", ["area is high", ("not", "shape is mid")])],
    )


def test_chains_are_one_node_and_parentheses_nest():
    assert condition_of("IF gray is low AND area is high AND shape is mid THEN anomalous") == (
        "and",
        ["gray is low", "area is high", "shape is mid"],
    )
    assert condition_of("IF (gray is low OR area is high) AND shape is mid THEN anomalous") == (
        "and",
        [("or", ["gray is low", "area is high"]), "shape is mid"],
    )
    assert condition_of("IF NOT NOT (gray is low) THEN anomalous") == (
        "not",
        ("not", "gray is low"),
    )


def test_hedges_keep_written_order_and_negation_is_separate():
    term = parse_ok("IF gray is not very somewhat low THEN anomalous").rules[0].condition
    assert isinstance(term, Term)
    assert term.negated is True
    assert [h.name for h in term.hedges] == ["very", "somewhat"]
    assert term.set.name == "low"


def test_case_insensitive_keywords_and_names():
    upper = parse_ok("RULE Dark: if GRAY IS Not VERY Low tHeN ANOMALOUS (0.5)\nSCALE Gray = 2")
    lower = parse_ok("rule dark: if gray is not very low then anomalous (0.5)\nscale gray = 2")
    assert shape(upper.rules[0].condition) == shape(lower.rules[0].condition)
    assert upper.rule_names == ("dark",)
    assert upper.rules[0].label.text == "Dark"  # the spelling is kept for messages
    assert upper.scales == {"gray": 2.0}


def test_a_name_that_starts_with_a_keyword_is_one_name():
    term = parse_ok("IF iffy is isle THEN anomalous").rules[0].condition
    assert (term.property.name, term.set.name) == ("iffy", "isle")


def test_unnamed_rules_are_named_by_position_and_default_tv_is_1():
    rulebook = parse_ok(
        "IF gray is low THEN anomalous\n"
        "rule second: IF area is high THEN anomalous (0.7)\n"
        "IF shape is mid THEN anomalous"
    )
    assert [r.position for r in rulebook.rules] == [1, 2, 3]
    assert rulebook.rule_names == ("rule 1", "second", "rule 3")
    assert [r.truth_value for r in rulebook.rules] == [1.0, 0.7, 1.0]
    assert rulebook.rules[0].truth is None


def test_default_threshold_is_the_papers_0_8_and_the_last_one_counts():
    assert parse_ok("IF gray is low THEN anomalous").threshold == 0.8
    assert parse_ok("threshold 0.5\nIF gray is low THEN anomalous").threshold == 0.5


def test_statements_and_line_breaks_are_free():
    rulebook = parse_ok(
        'rulebook "x"\nscale\n area\n =\n 0.05\nset gray . dark = triangle ( 0 , .1 , 2e-1 )\n'
        "threshold\n0.75\nrule r:\nIF gray is dark\n THEN\n anomalous\n (0.9)"
    )
    kinds = [type(s).__name__ for s in rulebook.statements]
    assert kinds == ["RulebookName", "ScaleDef", "SetDef", "ThresholdDef", "Rule"]
    set_def = rulebook.statements[2]
    assert isinstance(set_def, SetDef) and set_def.qualified_name == "gray.dark"
    assert [a.value for a in set_def.function.args] == [0, 0.1, 0.2]
    assert [a.text for a in set_def.function.args] == ["0", ".1", "2e-1"]


def test_empty_text_is_an_empty_rulebook():
    rulebook = parse_ok("  # only a comment\n")
    assert rulebook.statements == () and len(rulebook.comments) == 1


def test_spans_are_exact():
    text = "scale gray = 255\nrule dark: IF gray is low THEN anomalous (0.8)\n"
    rulebook = parse_ok(text)
    scale, rule = rulebook.statements
    assert isinstance(scale, ScaleDef) and isinstance(rule, Rule)
    assert text[scale.span.start : scale.span.end] == "scale gray = 255"
    assert (rule.span.line, rule.span.column, rule.span.end_line, rule.span.end_column) == (
        2,
        1,
        2,
        47,
    )
    term = rule.condition
    assert text[term.span.start : term.span.end] == "gray is low"
    assert (term.set.span.line, term.set.span.column) == (2, 23)
    assert text[rule.truth.span.start : rule.truth.span.end] == "0.8"


def test_comments_are_collected_with_spans_and_strings_may_hold_hashes():
    text = 'rulebook "a # b"  # the name\r\nthreshold 0.5 # alpha\n'
    rulebook = parse_ok(text)
    assert rulebook.display_name == "a # b"
    assert [c.text for c in rulebook.comments] == ["# the name", "# alpha"]
    assert [(c.span.line, c.span.column) for c in rulebook.comments] == [(1, 19), (2, 15)]


def test_threshold_and_numbers_keep_their_spelling():
    statement = parse_ok("threshold 0.80").statements[0]
    assert isinstance(statement, ThresholdDef)
    assert (statement.value.value, statement.value.text) == (0.8, "0.80")


# --- syntax errors -------------------------------------------------------------


def errors(text: str) -> list[tuple[str, str, str | None]]:
    """(line:col, message, hint) of each diagnostic."""
    _, diagnostics = parse(text, "t.rules")
    return [(f"{d.span.line}:{d.span.column}", d.message, d.hint) for d in diagnostics]


@pytest.mark.parametrize(
    ("text", "where", "message", "hint"),
    [
        (
            "IF gray is low THN anomalous",
            "1:16",
            'expected THEN, AND or OR, found "THN"',
            'did you mean "then"?',
        ),
        (
            "IF gray is low anomalous",
            "1:16",
            'expected THEN, AND or OR, found "anomalous"',
            'missing THEN before "anomalous"',
        ),
        (
            "IF (gray is low AND area is high THEN anomalous",
            "1:34",
            'expected ")", found "THEN"',
            'the "(" at 1:4 is never closed',
        ),
        (
            "scale gray 255",
            "1:12",
            'expected "=", found "255"',
            'missing "=": write it as scale gray = 255',
        ),
        (
            "set low trapezoid(0, 0, 1, 1)",
            "1:9",
            'expected "=" or ".", found "trapezoid"',
            'missing "=": write it as set low = trapezoid(0, 0, 0.2, 0.4)',
        ),
        ("IF gray si low THEN anomalous", "1:9", 'expected IS, found "si"', 'did you mean "is"?'),
        (
            "rul x: IF gray is low THEN anomalous",
            "1:1",
            "expected a statement (rulebook, class, scale, set, threshold, define, rule or IF), "
            'found "rul"',
            'did you mean "rule"?',
        ),
        (
            "IF gray is low ADN area is high THEN anomalous",
            "1:16",
            'expected THEN, AND or OR, found "ADN"',
            'did you mean "and"?',
        ),
        (
            "IF gray is low THEN anomalous 0.8",
            "1:31",
            'expected "(" or the end of the statement, found "0.8"',
            "write the truth value in parentheses: anomalous (0.8)",
        ),
        (
            "IF gray is low THEN anomalous (0,8)",
            "1:33",
            'expected ")", found ","',
            "use a decimal point, not a comma: 0.8",
        ),
        (
            "IF gray is low) THEN anomalous",
            "1:15",
            'expected THEN, found ")"',
            'this ")" has no matching "("',
        ),
        (
            "IF is low THEN anomalous",
            "1:4",
            'expected a property name, NOT or "(", found "is"',
            "for example: IF gray is low THEN anomalous (0.9)",
        ),
        (
            "scale gray = high",
            "1:14",
            'expected a number, found "high"',
            "for example: scale gray = 255",
        ),
        (
            "gray is low THEN anomalous",
            "1:1",
            "expected a statement (rulebook, class, scale, set, threshold, define, rule or IF), "
            'found "gray"',
            "a rule starts with IF: IF gray is low THEN anomalous",
        ),
        (
            "IF gray == low THEN anomalous",
            "1:9",
            'expected IS, found "="',
            'a term reads PROPERTY is SET, e.g. "gray is low"',
        ),
        (
            "rule dark IF gray is low THEN anomalous",
            "1:11",
            'expected ":", found "IF"',
            "for example: rule dark: IF gray is low THEN anomalous (0.9)",
        ),
        (
            "IF gray is low THEN",
            "1:20",
            'expected "anomalous" or a class name, found end of file',
            'a rule concludes "THEN anomalous" or "THEN CLASS", a class declared by "class"',
        ),
        (
            "IF gray is low THEN crack 0.9",
            "1:27",
            'expected "(" or the end of the statement, found "0.9"',
            "write the truth value in parentheses: crack (0.9)",
        ),
        (
            "class blowhole, anomalous",
            "1:17",
            'expected a class name, found "anomalous"',
            '"anomalous" is built in (any class): declare the kinds of defect',
        ),
        (
            "class",
            "1:6",
            "expected a class name, found end of file",
            "for example: class blowhole, crack",
        ),
        (
            "clas crack",
            "1:1",
            "expected a statement (rulebook, class, scale, set, threshold, define, rule or IF), "
            'found "clas"',
            'did you mean "class"?',
        ),
    ],
)
def test_syntax_errors_say_what_was_expected_and_name_the_slip(text, where, message, hint):
    assert errors(text) == [(where, message, hint)]


def test_end_of_file_gets_a_real_span_just_after_the_last_token():
    text = "IF gray is low\n\n# trailing comment\n"
    rulebook, diagnostics = parse(text, "t.rules")
    (d,) = diagnostics
    assert d.code == "E001"
    assert d.message == "expected THEN, AND or OR, found end of file"
    assert (d.span.start, d.span.end, d.span.line, d.span.column) == (14, 14, 1, 15)
    assert d.label == "expected THEN, AND or OR here"
    assert rulebook is not None and rulebook.statements == ()


def test_several_errors_are_reported_without_cascades_and_good_statements_survive():
    text = (
        "scale gray 255\n"  # error 1
        "IF gray is low THN anomalous\n"  # error 2
        "rule ok: IF area is high THEN anomalous (0.9)\n"
        "set mid = trapezoid(0.2 0.4, 0.6, 0.8)\n"  # error 3
        "IF (gray is mid THEN anomalous\n"  # error 4
        "threshold 0.7\n"
        "IF shape is high THEN anomalous\n"
    )
    rulebook, diagnostics = parse(text, "t.rules")
    assert [(d.code, d.span.line) for d in diagnostics] == [
        ("E001", 1),
        ("E001", 2),
        ("E001", 4),
        ("E001", 5),
    ]
    assert rulebook.rule_names == ("ok", "rule 4")  # positions count every rule in the file
    assert rulebook.threshold == 0.7


def test_a_broken_set_line_does_not_cascade_into_unknown_set_errors():
    from kistrules.api import check

    diagnostics = check("set dark = trapezoid(0, 0, 0.1 0.2)\nIF gray is dark THEN anomalous\n")
    assert [d.code for d in diagnostics] == ["E001"]


def test_bad_characters_are_one_error_per_run_and_lexing_resumes():
    rulebook, diagnostics = parse(
        "IF gray is low THEN anomalous $$$\nIF area ≥ high\nscale gray = 3"
    )
    assert [(d.span.line, d.span.column, d.span.end_column) for d in diagnostics] == [
        (1, 31, 34),
        (2, 9, 10),
    ]
    assert diagnostics[0].message == 'unexpected character "$$$"'
    assert rulebook.scales == {"gray": 3.0}


def test_unterminated_string():
    (d,) = parse('rulebook "magnetic tile\nIF gray is low THEN anomalous')[1]
    assert d.message.startswith("unterminated string") and (d.span.line, d.span.column) == (1, 10)


def test_too_many_errors_stop_early():
    _, diagnostics = parse("$ a " * 500)
    assert 1 <= len(diagnostics) <= 50


# --- bytes ---------------------------------------------------------------------


def test_non_utf8_bytes_give_e014_at_the_first_bad_byte():
    rulebook, diagnostics = parse_bytes("IF grày\n is \xff".encode("latin-1"), "b.rules")
    assert rulebook is None
    (d,) = diagnostics
    assert d.code == "E014" and (d.span.line, d.span.column) == (1, 6)
    assert "0xe0" in d.message


def test_nul_bytes_mean_a_binary_file_and_a_bom_is_dropped():
    assert parse_bytes(b"\x89PNG\r\n\x1a\n\x00\x00", "p.rules")[1][0].code == "E014"
    text, problem = decode("\ufeffIF gray is low THEN anomalous".encode(), "x.rules")
    assert problem is None and text.startswith("IF")
    assert parse_bytes(b"IF gray is low THEN anomalous", "x.rules")[0].rules[0].name == "rule 1"


# --- the fast tokenizer agrees with lark's own lexer --------------------------------

_VOCAB = [
    "IF",
    "if",
    "then",
    "And",
    "OR",
    "not",
    "is",
    "rule",
    "set",
    "scale",
    "threshold",
    "rulebook",
    "anomalous",
    "gray",
    "ifx",
    "isle",
    "very",
    "low",
    "_x1",
    "0.5",
    ".5",
    "1.",
    "1e3",
    "-2",
    "+.5e-2",
    '"a b"',
    "(",
    ")",
    ",",
    ":",
    "=",
    ".",
    "# c\n",
    " ",
    "\n",
    "\t",
    "ı",
    "K",
]


def _lark_tokens(text: str) -> list[tuple[str, str, int]]:
    return [(t.type, t.value, t.start_pos) for t in _lark().lex(text)]


def _our_tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    scanner = _scanner()
    pos = 0
    while pos < len(text):
        m = scanner.pattern.match(text, pos)
        kind = m.lastgroup
        if kind == "NAME":
            kind = scanner.keywords.get(m.group().lower(), "NAME")
            if kind == "NAME" and not m.group().isascii():
                kind = next(
                    (k for rx, k in scanner.keyword_patterns if rx.fullmatch(m.group())), kind
                )
        if kind not in ("WS", "COMMENT"):
            out.append((kind, m.group(), pos))
        pos = m.end()
    return out


@given(st.lists(st.sampled_from(_VOCAB), max_size=30).map(" ".join))
def test_scanner_matches_lark_lexer_on_token_soup(text):
    assert _our_tokens(text) == _lark_tokens(text)


@given(st.lists(st.sampled_from(_VOCAB), max_size=30).map("".join))
def test_scanner_matches_lark_lexer_on_glued_tokens(text):
    assert _our_tokens(text) == _lark_tokens(text)


def test_grammar_is_loaded_once_from_the_grammar_file_as_lalr_with_positions():
    from kistrules.parser import _grammar_text

    repo_grammar = Path(__file__).parents[2] / "grammar" / "kist.lark"
    assert _grammar_text() == repo_grammar.read_text(encoding="utf-8")
    lark = _lark()
    assert lark is _lark()  # cached: built once per process
    assert lark.options.parser == "lalr"
    assert lark.options.propagate_positions is True
    assert lark.options.maybe_placeholders is True


@pytest.mark.parametrize(
    "make_text",
    [
        lambda n: "IF " + "NOT " * n + "gray is low THEN anomalous",
        lambda n: "IF " + "gray is low AND (" * n + "gray is low" + ")" * n + " THEN anomalous",
    ],
)
def test_nesting_depth_is_limited_with_a_diagnostic_not_a_crash(make_text):
    from kistrules.parser import MAX_NESTING

    assert parse(make_text(MAX_NESTING))[1] == []
    rulebook, diagnostics = parse(make_text(3000) + "\nIF area is high THEN anomalous")
    assert [(d.code, d.message) for d in diagnostics] == [
        ("E001", f"condition nested more than {MAX_NESTING} levels deep")
    ]
    assert rulebook.rule_names == ("rule 2",)
    # Redundant parentheses do not nest.
    assert parse("IF " + "(" * 3000 + "gray is low" + ")" * 3000 + " THEN anomalous")[1] == []
