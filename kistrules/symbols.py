"""Names declared and used in a rulebook, found from the AST alone.

Every identifier of the AST plays a role fixed by where it sits: `Term.set`
names a set, `SetDef.name` declares one, `Rule.label` names a rule,
`Define.name` declares a named condition and `ConditionRef.name` uses one. `ROLES`
maps (node kind, field) to that role, and one generic walk over the AST finds
every identifier with its role: an `Occurrence`. Statements that declare
something are listed in `DECLARATIONS`, so that a statement without a name of
its own (an unnamed rule, `rule 3`) is still a symbol. An occurrence and a
declaration with the same (kind, key) are the same symbol; go-to-definition,
references, hover and completion in the language server all follow from that.

A set's key is its qualified name (`low`, `gray.low`), and a term's set is
keyed by the definition it resolves to (`kistrules.resolve.find_set_def`), so
`gray is low` refers to `set gray.low` where there is one, else to `set low`,
else to the built-in `low` (which has no declaration in the file).

Adding a declaration to the language takes one line in `DECLARATIONS` and
one line in `ROLES` per AST field that holds a name; a test fails for an
AST field holding an `Identifier` that has no role. A `class` line declares
one symbol per name (`class blowhole, crack`), and a rule's conclusion
(`THEN crack`) refers to it.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kistrules.ast import ClassDef, Define, Identifier, Node, Rule, Rulebook, SetDef, Term
from kistrules.resolve import find_set_def
from kistrules.span import Span


@dataclass(frozen=True)
class Occurrence:
    """One identifier in the text, with what it names."""

    # "property", "set", "hedge", "function", "rule", "class" or "condition"
    kind: str
    key: str  # the symbol it names: a set's qualified name, else the name itself
    identifier: Identifier
    node: Node  # the node holding the identifier (a Term, a SetDef, ...)


@dataclass(frozen=True)
class Declaration:
    """A statement that defines a symbol of the file."""

    kind: str
    key: str
    name: str  # as shown to the expert: `gray.low`, `large_dark`, `rule 3`
    span: Span  # the name, or the whole statement when it has no name
    statement: Node


class _Context:
    """What the key functions may look at, computed once per walk."""

    def __init__(self, rulebook: Rulebook) -> None:
        self.rulebook = rulebook
        self.defined = rulebook.sets


KeyFunction = Callable[[Node, Identifier, _Context], str]


@dataclass(frozen=True)
class Role:
    kind: str
    key: KeyFunction | None = None  # None: the identifier's (lower-case) name


def _set_definition_key(node: Node, ident: Identifier, ctx: _Context) -> str:
    assert isinstance(node, SetDef)
    return node.qualified_name


def _term_set_key(node: Node, ident: Identifier, ctx: _Context) -> str:
    assert isinstance(node, Term)
    definition = find_set_def(ctx.rulebook, node.property.name, ident.name, defined=ctx.defined)
    return definition.qualified_name if definition is not None else ident.name


# (node kind, field) -> the role of the identifiers in that field.
ROLES: dict[tuple[str, str], Role] = {
    ("scale", "property"): Role("property"),
    ("set", "property"): Role("property"),
    ("set", "name"): Role("set", _set_definition_key),
    ("membership", "function"): Role("function"),
    ("rule", "label"): Role("rule"),
    ("term", "property"): Role("property"),
    ("term", "hedges"): Role("hedge"),
    ("term", "set"): Role("set", _term_set_key),
    ("class", "names"): Role("class"),
    ("rule", "conclusion"): Role("class"),
    ("define", "name"): Role("condition"),
    ("reference", "name"): Role("condition"),
}


def _declare_set(statement: Node) -> tuple[Declaration, ...]:
    assert isinstance(statement, SetDef)
    name = statement.qualified_name
    return (Declaration("set", name, name, statement.name.span, statement),)


def _declare_rule(statement: Node) -> tuple[Declaration, ...]:
    assert isinstance(statement, Rule)
    span = statement.label.span if statement.label is not None else statement.span
    return (Declaration("rule", statement.name, statement.name, span, statement),)


def _declare_classes(statement: Node) -> tuple[Declaration, ...]:
    assert isinstance(statement, ClassDef)
    return tuple(Declaration("class", n.name, n.name, n.span, statement) for n in statement.names)


def _declare_condition(statement: Node) -> tuple[Declaration, ...]:
    assert isinstance(statement, Define)
    name = statement.name.name
    return (Declaration("condition", name, name, statement.name.span, statement),)


# Statement kind -> its declarations (one per name it declares).
DECLARATIONS: dict[str, Callable[[Node], tuple[Declaration, ...]]] = {
    "set": _declare_set,
    "rule": _declare_rule,
    "class": _declare_classes,
    "define": _declare_condition,
}


@functools.cache
def _child_fields(cls: type[Node]) -> tuple[str, ...]:
    return tuple(name for name in cls.model_fields if name != "span")


def _walk(node: Node, ctx: _Context, out: list[Occurrence]) -> None:
    kind = getattr(node, "kind", "")
    for field in _child_fields(type(node)):
        value = getattr(node, field)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Identifier):
                role = ROLES.get((kind, field))
                if role is not None:
                    key = role.key(node, item, ctx) if role.key is not None else item.name
                    out.append(Occurrence(role.kind, key, item, node))
            elif isinstance(item, Node):
                _walk(item, ctx, out)


def occurrences(rulebook: Rulebook) -> list[Occurrence]:
    """Every identifier of the rulebook with its role, in file order."""
    ctx = _Context(rulebook)
    out: list[Occurrence] = []
    for statement in rulebook.statements:
        _walk(statement, ctx, out)
    out.sort(key=lambda o: o.identifier.span.start)
    return out


def declarations(rulebook: Rulebook) -> list[Declaration]:
    """Every declaring statement, in file order."""
    out = []
    for statement in rulebook.statements:
        declare = DECLARATIONS.get(statement.kind)
        if declare is not None:
            out.extend(declare(statement))
    return out


class SymbolIndex:
    """The occurrences and declarations of one rulebook, searchable by position and key."""

    def __init__(self, rulebook: Rulebook) -> None:
        self.rulebook = rulebook
        self.occurrences = occurrences(rulebook)
        self.declarations = declarations(rulebook)
        self._starts = [o.identifier.span.start for o in self.occurrences]

    def at(self, offset: int) -> Occurrence | None:
        """The identifier under a character offset (its end counts: the cursor just after it)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset <= self.occurrences[i].identifier.span.end:
            return self.occurrences[i]
        return None

    def definitions(self, kind: str, key: str) -> list[Declaration]:
        """The file's declarations of a symbol (none for a built-in; several when duplicated)."""
        return [d for d in self.declarations if d.kind == kind and d.key == key]

    def references(self, kind: str, key: str) -> Iterator[Occurrence]:
        """Every occurrence of a symbol, its declaring names included, in file order."""
        return (o for o in self.occurrences if o.kind == kind and o.key == key)

    def declared(self, kind: str) -> list[Declaration]:
        """The file's declarations of one kind (for completion)."""
        return [d for d in self.declarations if d.kind == kind]
