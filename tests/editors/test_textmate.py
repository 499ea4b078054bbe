"""The TextMate grammar (editors/textmate) scopes every token of every shipped rulebook.

A small tokenizer applies the grammar as TextMate does for `match` patterns:
at each column, the pattern whose match starts first wins (ties: the earlier
pattern), its `name` scopes the match and its `captures` the groups. Python's
`re` reads the grammar's regexes as Oniguruma does, because the grammar keeps
to their common subset. The expected scopes come from the project's own lexer
(`kistrules.parser.lex_statements`) and the builtins tables, not from the
grammar.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from kistrules.builtins import HEDGES, KEYWORDS, MEMBERSHIP_FUNCTIONS, PROPERTIES
from kistrules.parser import keyword_spellings, lex_statements

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_PATH = ROOT / "editors" / "textmate" / "kistrules.tmLanguage.json"
GRAMMAR = json.loads(GRAMMAR_PATH.read_text(encoding="utf-8"))
ROOT_SCOPE = GRAMMAR["scopeName"]
SHIPPED = sorted(
    [
        *ROOT.glob("rulebooks/*.rules"),
        *ROOT.glob("rulebooks/examples/*"),
        ROOT / "kist_train" / "demo.rules",
    ]
)
KEYWORD_SCOPES = ("keyword.", "storage.type.", "constant.language.")


def _flatten(patterns: list[dict]) -> list[dict]:
    out = []
    for pattern in patterns:
        if "include" in pattern:
            out += _flatten([GRAMMAR["repository"][pattern["include"].lstrip("#")]])
        elif "patterns" in pattern:
            out += _flatten(pattern["patterns"])
        else:
            assert set(pattern) <= {"match", "name", "captures", "comment"}, pattern
            out.append(pattern)
    return out


PATTERNS = [(re.compile(p["match"]), p) for p in _flatten(GRAMMAR["patterns"])]


def scopes_of(text: str) -> list[list[str]]:
    """The scope stack of every character of `text`, line by line as an editor reads it."""
    scopes = [[ROOT_SCOPE] for _ in text]
    offset = 0
    for line in text.split("\n"):
        pos = 0
        while pos < len(line):
            best = None
            for rx, pattern in PATTERNS:
                m = rx.search(line, pos)
                empty = m is None or m.end() == m.start()
                if not empty and (best is None or m.start() < best[0].start()):
                    best = (m, pattern)
            if best is None:
                break
            m, pattern = best
            if "name" in pattern:
                for i in range(m.start(), m.end()):
                    scopes[offset + i].append(pattern["name"])
            for group, capture in pattern.get("captures", {}).items():
                start, end = m.span(int(group))
                for i in range(max(start, 0), end):
                    scopes[offset + i].append(capture["name"])
            pos = m.end()
        offset += len(line) + 1
    return scopes


def test_the_committed_grammar_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location(
        "generate_textmate", ROOT / "editors" / "textmate" / "generate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert GRAMMAR_PATH.read_text(encoding="utf-8") == module.render(), (
        "run: .venv/bin/python editors/textmate/generate.py"
    )
    assert GRAMMAR["scopeName"] == "source.kistrules" and GRAMMAR["fileTypes"] == ["rules"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_token_of_a_shipped_rulebook_is_scoped_as_the_lexer_reads_it(path):
    text = path.read_text(encoding="utf-8")
    scopes = scopes_of(text)
    unscoped = [
        (i, ch) for i, ch in enumerate(text) if not ch.isspace() and scopes[i] == [ROOT_SCOPE]
    ]
    assert unscoped == []
    chunks, comments, _ = lex_statements(text)
    assert not any(c.damaged for c in chunks)
    keywords = keyword_spellings()

    def innermost(start: int, end: int) -> str:
        found = {scopes[i][-1] for i in range(start, end)}
        assert len(found) == 1, (text[start:end], found)
        return found.pop()

    for comment in comments:
        for i in range(comment.span.start, comment.span.end):
            assert any(s.startswith("comment.line.") for s in scopes[i])
    for tok in (t for c in chunks for t in c.tokens):
        scope = innermost(tok.start_pos, tok.end_pos)
        word = tok.value.lower()
        if tok.type in keywords:
            # `set` and `rule` in declarations are captured by the declaration pattern.
            assert scope.startswith(KEYWORD_SCOPES), (tok, scope)
        elif tok.type == "NUMBER":
            assert scope.startswith("constant.numeric."), (tok, scope)
        elif tok.type == "STRING":
            assert scope.startswith("string.quoted.double."), (tok, scope)
        elif word in PROPERTIES:
            assert scope.startswith("support.variable.property."), (tok, scope)
        elif word in HEDGES:
            assert scope.startswith("storage.modifier.hedge."), (tok, scope)
        elif word in MEMBERSHIP_FUNCTIONS:
            assert scope.startswith("support.function.membership."), (tok, scope)
        elif tok.type == "NAME":
            assert scope.startswith(("entity.name.", "support.constant.set.", "variable.other.")), (
                tok,
                scope,
            )
        else:
            assert scope.startswith(("punctuation.", "keyword.operator.assignment.")), (tok, scope)


def test_declarations_and_ignore_comments():
    text = (
        "set gray.dark = trapezoid(0, 0, 0.1, 0.2)\n"
        "SET Wide = gaussian(.5, 1e-1)\n"
        "rule r1: IF gray is very dark THEN anomalous (-0.5)  # kist: ignore[E004, W101]\n"
    )
    scopes = scopes_of(text)

    def scope_at(needle: str, nth: int = 0) -> str:
        offset = -1
        for _ in range(nth + 1):
            offset = text.index(needle, offset + 1)
        return scopes[offset][-1]

    assert scope_at("gray") == "support.variable.property.kistrules"
    assert scope_at("dark") == "entity.name.type.set.kistrules"
    assert scope_at("dark", 1) == "variable.other.kistrules"
    assert scope_at("Wide") == "entity.name.type.set.kistrules"
    assert scope_at("SET") == "storage.type.kistrules"
    assert scope_at("r1") == "entity.name.function.rule.kistrules"
    assert scope_at(".5") == scope_at("1e-1") == scope_at("-0.5") == "constant.numeric.kistrules"
    assert scope_at("kist: ignore") == "keyword.other.directive.kistrules"
    assert scope_at("E004") == "constant.other.diagnostic-code.kistrules"
    assert scope_at("# kist")[: len("punctuation.definition.comment")] == (
        "punctuation.definition.comment"
    )


def test_class_names_where_declared_and_concluded():
    text = "CLASS hole,scratch , stain\nIF gray is low THEN Hole (0.9)\n"
    text += "IF gray is mid THEN anomalous\n"
    scopes = scopes_of(text)

    def scope_at(needle: str) -> str:
        return scopes[text.index(needle)][-1]

    for name in ("hole", "scratch", "stain", "Hole"):
        assert scope_at(name) == "entity.name.type.class.kistrules", name
    assert scope_at("CLASS") == "storage.type.kistrules"
    assert scope_at("anomalous") == "constant.language.kistrules"
    assert scope_at("THEN") == "keyword.control.kistrules"
    # a name after a comma is a class only on a class line: arguments are numbers
    call = "set a = triangle(0, 0.5, 1)"
    assert scopes_of(call)[call.index("0.5")][-1] == "constant.numeric.kistrules"


def test_every_keyword_of_the_language_is_scoped_as_a_keyword():
    for word in KEYWORDS:
        for spelling in (word, word.upper()):
            assert scopes_of(spelling)[0][-1].startswith(KEYWORD_SCOPES), spelling
