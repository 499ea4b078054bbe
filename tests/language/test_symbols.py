"""The symbol table (`kistrules.symbols`): every name of the AST found, with its role."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from kistrules import ast
from kistrules.api import diagnose
from kistrules.parser import lex_statements, parse
from kistrules.symbols import ROLES, SymbolIndex

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [
        *ROOT.glob("rulebooks/*.rules"),
        *ROOT.glob("rulebooks/examples/*"),
        ROOT / "kist_train" / "demo.rules",
    ]
)


def _node_classes() -> list[type[ast.Node]]:
    found, todo = [], [ast.Node]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def _mentions(annotation, target: type) -> bool:
    if annotation is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(annotation))


def test_every_identifier_field_of_the_ast_has_a_role():
    """A new AST field holding a name (a class, a named condition) needs a line in ROLES."""
    classes = _node_classes()
    assert {ast.Term, ast.SetDef, ast.Rule, ast.MembershipCall} <= set(classes)
    missing = []
    for cls in classes:
        kind = cls.model_fields["kind"].default
        for name, field in cls.model_fields.items():
            if _mentions(field.annotation, ast.Identifier) and (kind, name) not in ROLES:
                missing.append(f"{cls.__name__}.{name}")
    assert missing == []
    assert {kind for kind, _ in ROLES} <= {c.model_fields["kind"].default for c in _node_classes()}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_name_token_of_the_shipped_rulebooks_is_an_occurrence(path):
    """Independent reference: the lexer's NAME tokens are exactly the identifiers found."""
    text = path.read_text(encoding="utf-8")
    rulebook, diagnostics = parse(text, str(path))
    assert not diagnostics
    chunks, _, _ = lex_statements(text)
    names = {(t.start_pos, t.end_pos) for c in chunks for t in c.tokens if t.type == "NAME"}
    index = SymbolIndex(rulebook)
    found = [(o.identifier.span.start, o.identifier.span.end) for o in index.occurrences]
    assert len(found) == len(set(found)) and set(found) == names
    assert found == sorted(found)


TEXT = """\
set gray.low = trapezoid(0, 0, 0.3, 0.5)
set low = trapezoid(0, 0, 0.1, 0.2)
set big = triangle(0.5, 0.8, 1)
rule dim: IF gray is low AND area is low THEN anomalous
IF shape is very high OR NOT (area is big) THEN anomalous (0.8)
"""


def _occurrence(index: SymbolIndex, text: str, needle: str, nth: int = 0):
    offset = -1
    for _ in range(nth + 1):
        offset = text.index(needle, offset + 1)
    return index.at(offset)


def test_terms_refer_to_the_set_they_resolve_to():
    rulebook, _ = diagnose(TEXT)
    index = SymbolIndex(rulebook)
    gray_low = _occurrence(index, TEXT, "low", 2)  # `gray is low`: the override
    area_low = _occurrence(index, TEXT, "low", 3)  # `area is low`: the file-wide set
    high = _occurrence(index, TEXT, "high")  # the built-in
    assert (gray_low.kind, gray_low.key) == ("set", "gray.low")
    assert (area_low.kind, area_low.key) == ("set", "low")
    assert (high.kind, high.key) == ("set", "high")
    assert [d.span.line for d in index.definitions("set", "gray.low")] == [1]
    assert [d.span.line for d in index.definitions("set", "low")] == [2]
    assert index.definitions("set", "high") == []
    assert [o.identifier.span.line for o in index.references("set", "big")] == [3, 5]
    kinds = {o.identifier.name: o.kind for o in index.occurrences}
    assert kinds["gray"] == kinds["area"] == "property"
    assert kinds["trapezoid"] == "function" and kinds["very"] == "hedge" and kinds["dim"] == "rule"


def test_declarations_name_unnamed_rules_by_position():
    rulebook, _ = diagnose(TEXT)
    index = SymbolIndex(rulebook)
    assert [(d.kind, d.name) for d in index.declarations] == [
        ("set", "gray.low"),
        ("set", "low"),
        ("set", "big"),
        ("rule", "dim"),
        ("rule", "rule 2"),
    ]
    unnamed = index.declarations[-1]
    assert unnamed.span == unnamed.statement.span


def test_at_finds_the_name_under_the_cursor_and_just_after_it():
    rulebook, _ = diagnose(TEXT)
    index = SymbolIndex(rulebook)
    start = TEXT.index("dim")
    assert index.at(start).identifier.name == "dim"
    assert index.at(start + 3).identifier.name == "dim"  # the cursor right after the word
    assert index.at(start + 4) is None  # the colon and the blank after it
    assert index.at(TEXT.index("gray.low") + 4).identifier.name == "gray"
    assert index.at(TEXT.index("gray.low") + 5).identifier.name == "low"
