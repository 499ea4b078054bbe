"""Round trips: AST -> fmt -> parse gives the same structure; fmt is idempotent;
noisy spellings of one rulebook all format alike; comments survive."""

from __future__ import annotations

import re

from hypothesis import given, settings

from kistrules.api import diagnose
from kistrules.ast import ClassDef, Define, Rule, RulebookName, ScaleDef, SetDef, ThresholdDef
from kistrules.formatter import format_rulebook, format_source
from kistrules.parser import parse
from tests.property import strategies as S

SECTIONS = (RulebookName, ClassDef, ScaleDef, SetDef, ThresholdDef, Define, Rule)


def in_section_order(rulebook):
    """The statements as fmt lays them out: by section, file order inside each."""
    key = {kind: i for i, kind in enumerate(SECTIONS)}
    ordered = sorted(rulebook.statements, key=lambda s: key[type(s)])
    return rulebook.model_copy(update={"statements": tuple(ordered)})


def reparse(text: str):
    rulebook, errors = parse(text, "fmt.rules")
    assert errors == [], (errors, text)
    return rulebook


@settings(max_examples=150, deadline=None)
@given(S.rulebooks())
def test_generated_rulebooks_are_valid(rulebook):
    # the strategy's promise, checked once through the whole pipeline
    text = format_rulebook(rulebook)
    _, diagnostics = diagnose(text, "gen.rules")
    assert [d.one_line() for d in diagnostics if d.severity == "error"] == []


@settings(max_examples=200, deadline=None)
@given(S.rulebooks())
def test_format_parses_back_to_the_same_structure(rulebook):
    text = format_rulebook(rulebook)
    again = reparse(text)
    assert S.strip_spans(again.model_dump()) == S.strip_spans(
        in_section_order(rulebook).model_dump()
    )
    assert format_rulebook(again) == text  # idempotent


@settings(max_examples=150, deadline=None)
@given(S.noisy_texts())
def test_noisy_texts_format_like_the_clean_version(case):
    rulebook, noisy = case
    formatted = format_rulebook(reparse(noisy))
    assert format_rulebook(reparse(formatted)) == formatted
    # blank lines inside sections are the expert's grouping, which fmt keeps
    assert _without_blanks(formatted) == _without_blanks(format_rulebook(rulebook))


_COMMENT = re.compile(r"\s*# Note (\d+): keep me$")


@settings(max_examples=150, deadline=None)
@given(S.noisy_texts(comments=True))
def test_comments_survive_and_stay_put(case):
    rulebook, noisy = case
    expected = sorted(int(n) for n in re.findall(r"# Note (\d+):", noisy))
    formatted = format_rulebook(reparse(noisy))
    assert format_rulebook(reparse(formatted)) == formatted
    found = sorted(int(n) for n in re.findall(r"# Note (\d+):", formatted))
    assert found == expected
    # what `kistrules fmt` runs: check, format, verify the meaning is unchanged
    assert format_source(noisy, "noisy.rules") == (formatted, [])
    stripped = "\n".join(_COMMENT.sub("", line) for line in formatted.splitlines())
    assert _without_blanks(stripped) == _without_blanks(format_rulebook(rulebook))


def _without_blanks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
