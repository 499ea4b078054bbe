"""Completion: what the grammar accepts at the cursor, and the names in scope there.

The statement around the cursor is lexed with the parser's own lexer and fed
to the grammar's LALR parser, which says which terminals may come next
(`kistrules.parser.expected_terminals`): every keyword among them is offered,
so a keyword added to `grammar/kist.lark` is completed without a change here.
Where a name may come, `kistrules.parser.name_role` says which kind (the same
judgement that words the syntax errors), and the names come from the tables
of `kistrules.builtins` and from the file's declarations (`kistrules.symbols`):
a role that names a kind of declaration (`class`, after THEN) completes with
the file's declarations of that kind; `anomalous`, a keyword, is offered there too.
"""

from __future__ import annotations

from lsprotocol import types

from kistrules.ast import Rulebook
from kistrules.builtins import (
    BUILTIN_SETS,
    HEDGES,
    MEMBERSHIP_FUNCTIONS,
    MEMBERSHIP_SHAPES,
    PROPERTIES,
)
from kistrules.parser import (
    STATEMENT_KEYWORDS,
    expected_terminals,
    keyword_spellings,
    lex_statements,
    name_role,
)
from kistrules.resolve import sets_for_property
from kistrules.symbols import SymbolIndex

_WORD_TERMINALS = frozenset({"NAME"}) | frozenset(keyword_spellings())
_STATEMENT_STARTS = STATEMENT_KEYWORDS | {"IF"}
_Item = types.CompletionItem
_Kind = types.CompletionItemKind


def _keyword(word: str) -> _Item:
    return _Item(label=word, kind=_Kind.Keyword)


def _properties() -> list[_Item]:
    return [
        _Item(label=p.name, kind=_Kind.Property, detail=p.unit, documentation=p.meaning)
        for p in PROPERTIES.values()
    ]


def _hedges() -> list[_Item]:
    return [
        _Item(label=name, kind=_Kind.Operator, detail=f"hedge: x^{exponent:g}")
        for name, exponent in HEDGES.items()
    ]


def _functions() -> list[_Item]:
    return [
        _Item(
            label=name,
            kind=_Kind.Function,
            detail=f"{name}({', '.join(params)})",
            documentation=MEMBERSHIP_SHAPES.get(name),
        )
        for name, params in MEMBERSHIP_FUNCTIONS.items()
    ]


def _sets(rulebook: Rulebook | None, prop: str | None) -> list[_Item]:
    """The sets a term on `prop` may use (built-ins, the file's sets and prop's overrides)."""
    if rulebook is None:
        found = {name: f"{fn}{params}" for name, (fn, params) in BUILTIN_SETS.items()}
    elif prop in PROPERTIES:
        found = {
            name: f"{mf.function}{mf.params} ({mf.origin})"
            for name, mf in sets_for_property(rulebook, prop).items()
        }
    else:  # an unknown property: every set name of the file
        names = set(BUILTIN_SETS) | {s.name.name for s in rulebook.sets.values()}
        found = dict.fromkeys(sorted(names), "set")
    return [
        _Item(label=name, kind=_Kind.EnumMember, detail=detail) for name, detail in found.items()
    ]


def _property_before(tokens: list, types_: tuple[str, ...]) -> str | None:
    """The name just before the last token of one of `types_` (`gray` in `gray is ...`)."""
    for i in range(len(tokens) - 1, 0, -1):
        if tokens[i].type in types_:
            return tokens[i - 1].value.lower() if tokens[i - 1].type == "NAME" else None
    return None


def _names(
    role: str | None, tokens: list, rulebook: Rulebook | None, index: SymbolIndex | None
) -> list[_Item]:
    if role == "property":  # where a condition starts, a defined condition's name fits too
        previous = tokens[-1].type if tokens else None
        if previous == "SCALE" or index is None:
            return _properties()
        return _properties() + [
            _Item(label=d.name, kind=_Kind.Reference, detail=f"condition, line {d.span.line}")
            for d in index.declared("condition")
        ]
    if role == "function":
        return _functions()
    if role == "new_set":  # `set NAME = ...` or `set PROPERTY.NAME = ...`
        return _properties() + _sets(rulebook, None)
    if role == "set":
        previous = tokens[-1]
        if previous.type == "DOT":  # the name of an override: `set gray.low`
            return _sets(rulebook, _property_before(tokens, ("DOT",)))
        if previous.type == "NAME" and previous.value.lower() not in HEDGES:
            return []  # after a set name: more names would be hedges, rarely meant
        return _hedges() + _sets(rulebook, _property_before(tokens, ("IS",)))
    if role in ("rule", "new_class", "new_condition"):  # a new name: nothing to offer
        return []
    if role is not None and index is not None:  # a kind the file declares
        return [
            _Item(label=d.name, kind=_Kind.Reference, detail=d.kind) for d in index.declared(role)
        ]
    return []


def _in_comment_or_string(text: str, comments: list, problems: list) -> bool:
    """Whether the end of `text` is inside a comment or an unterminated string
    (neither spans lines)."""
    starts = [c.span.start for c in comments[-1:]]
    starts += [d.span.start for d in problems if text[d.span.start] == '"']
    return any("\n" not in text[start:] for start in starts)


def _statement_before(text: str, offset: int) -> str:
    """The text from the start of a line at or before the statement holding `offset`.

    No token spans lines, so lexing may start at any line start; going back
    line by line until one starts with a statement keyword keeps completion
    fast at the end of a long file (lexing it all takes ~0.1 s per 1,000 rules).
    """
    start = text.rfind("\n", 0, offset) + 1
    while start > 0:
        chunks, _, _ = lex_statements(text[start:offset])
        first = chunks[0].tokens[0] if chunks and chunks[0].tokens else None
        if first is not None and first.type in _STATEMENT_STARTS:
            break
        start = text.rfind("\n", 0, start - 1) + 1
    return text[start:offset]


def complete(
    text: str, offset: int, rulebook: Rulebook | None, index: SymbolIndex | None
) -> list[types.CompletionItem]:
    """Completion items at a character offset of `text`.

    `rulebook` and `index` (the file's names) may be from a slightly older
    version of the text: completion does not wait for the analysis.
    """
    before = _statement_before(text, offset)
    chunks, comments, problems = lex_statements(before)
    if _in_comment_or_string(before, comments, problems):
        return []
    offset = len(before)
    chunk = chunks[-1] if chunks else None
    if chunk is not None and chunk.damaged:
        return []  # an unterminated string or a stray character: nothing sensible to offer
    tokens = list(chunk.tokens) if chunk is not None else []
    if tokens and tokens[-1].end_pos == offset and tokens[-1].type in _WORD_TERMINALS:
        tokens.pop()  # the word being typed: the client filters by it
    expected = expected_terminals(tokens)
    spellings = keyword_spellings()
    if expected is None:  # a syntax error earlier in the statement: offer every word
        items = [_keyword(w) for w in spellings.values()]
        return items + _properties() + _hedges() + _sets(rulebook, None) + _functions()
    items = [_keyword(spellings[t]) for t in sorted(expected) if t in spellings]
    if "NAME" in expected:
        items += _names(name_role(tokens, len(tokens)), tokens, rulebook, index)
    return items
