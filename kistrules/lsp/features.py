"""What the server answers, as functions of one analysed document.

Each function takes a `Snapshot` (and character offsets, already converted
from the client's positions) and returns lsprotocol objects; `server.py`
only wires them to the protocol. Names come from `kistrules.symbols`, words
from `kistrules.builtins` and `kistrules.render.explain_code`, so a new
property, set or diagnostic code shows up here without a change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lsprotocol import types

from kistrules import definitions as named
from kistrules.ast import ANY_CLASS, Define, Rule, SetDef, Term
from kistrules.builtins import (
    BUILTIN_SETS,
    HEDGES,
    KEYWORDS,
    MEMBERSHIP_FUNCTIONS,
    MEMBERSHIP_SHAPES,
    PROPERTIES,
)
from kistrules.diagnostics import CODES, Diagnostic
from kistrules.formatter import (
    format_condition,
    format_define,
    format_membership,
    format_rule,
    format_source,
)
from kistrules.lsp.document import Snapshot
from kistrules.lsp.positions import PositionMap
from kistrules.render import explain_code
from kistrules.resolve import MembershipFunction, find_set_def, lookup_set, set_function
from kistrules.span import Span
from kistrules.symbols import Declaration, Occurrence

SOURCE = "kistrules"
_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}
# Codes whose span is code that does nothing: editors fade it.
_UNNECESSARY = frozenset({"W105", "W110"})
SYMBOL_KINDS = {
    "set": types.SymbolKind.Constant,
    "rule": types.SymbolKind.Function,
    "class": types.SymbolKind.EnumMember,
    "condition": types.SymbolKind.Boolean,
}
# A written-out condition is shown on hover up to this many terms.
HOVER_EXPANSION_TERMS = 40


def lsp_range(positions: PositionMap, span: Span) -> types.Range:
    start = positions.position(span.start)
    end = positions.position(span.end)
    return types.Range(types.Position(*start), types.Position(*end))


def _location(uri: str, positions: PositionMap, span: Span) -> types.Location:
    return types.Location(uri=uri, range=lsp_range(positions, span))


# --- diagnostics --------------------------------------------------------------------


def lsp_diagnostic(d: Diagnostic, positions: PositionMap) -> types.Diagnostic:
    """`check`'s diagnostic for the editor: same code, message and hint; `data`
    carries the did-you-mean's replacement for the code action."""
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    return types.Diagnostic(
        range=lsp_range(positions, d.span),
        message=message,
        severity=_SEVERITY[d.severity],
        code=d.code,
        source=SOURCE,
        tags=[types.DiagnosticTag.Unnecessary] if d.code in _UNNECESSARY else None,
        data={"replacement": d.replacement} if d.replacement is not None else None,
    )


def lsp_diagnostics(snapshot: Snapshot, encoding: str) -> list[types.Diagnostic]:
    positions = snapshot.positions(encoding)
    return [lsp_diagnostic(d, positions) for d in snapshot.diagnostics]


# --- hover ----------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.6g}"


def _line(span: Span) -> str:
    return f"line {span.line}"


def _property_hover(snapshot: Snapshot, name: str) -> str | None:
    info = PROPERTIES.get(name)
    if info is None:
        return None
    rulebook = snapshot.rulebook
    explicit = [s for s in rulebook.statements if s.kind == "scale" and s.property.name == name]
    if explicit:
        gamma = explicit[-1].value.value
        where = f"`scale {name} = {explicit[-1].value.text}` ({_line(explicit[-1].span)})"
    else:
        gamma = info.default_scale
        where = "the default (no `scale` line)"
    return (
        f"**{name}** (property): {info.meaning}\n\n"
        f"{info.definition}\n\n"
        f"unit: {info.unit}; scale gamma = {_number(gamma)}, {where}; "
        f"standardised v' = clip(v / {_number(gamma)}, 0, 1)"
    )


def _gamma(snapshot: Snapshot, prop: str) -> float:
    return snapshot.rulebook.scales.get(prop, PROPERTIES[prop].default_scale)


def _set_table(snapshot: Snapshot, mf: MembershipFunction, properties: Iterable[str]) -> str:
    params = MEMBERSHIP_FUNCTIONS.get(mf.function, ())
    if len(params) != len(mf.params):  # E007: the hover shows what was written
        return f"`{mf.function}({', '.join(_number(v) for v in mf.params)})`"
    rows = [
        "| | " + " | ".join(params) + " |",
        "|---|" + "---:|" * len(params),
        "| standardised | " + " | ".join(_number(v) for v in mf.params) + " |",
    ]
    for prop in properties:
        if prop not in PROPERTIES:
            continue
        gamma = _gamma(snapshot, prop)
        raw = " | ".join(_number(v * gamma) for v in mf.params)
        rows.append(f"| {prop} ({PROPERTIES[prop].unit}, gamma {_number(gamma)}) | {raw} |")
    return "\n".join(rows)


def _set_hover(snapshot: Snapshot, occurrence: Occurrence) -> str | None:
    rulebook = snapshot.rulebook
    node, name = occurrence.node, occurrence.identifier.name
    if isinstance(node, Term):
        prop = node.property.name
        mf = lookup_set(rulebook, prop, name)
        definition = find_set_def(rulebook, prop, name)
        properties = [prop]
    elif isinstance(node, SetDef):
        definition = node  # this very line, even where a duplicate (E010) takes effect
        if node.property is None or node.property.name in PROPERTIES:
            mf = set_function(rulebook, node)  # standardised: a raw set divided by its scale
        else:
            args = tuple(a.value for a in node.function.args)
            mf = MembershipFunction(node.function.function.name, args, "override")
        if node.property is not None:
            properties = [node.property.name]
        else:  # the properties whose terms use this very definition
            uses = snapshot.index.references("set", occurrence.key)
            terms = [o.node for o in uses if isinstance(o.node, Term)]
            properties = list(dict.fromkeys(t.property.name for t in terms))
    else:
        return None
    if mf is None:
        return None
    if definition is None:
        origin = "built-in set"
    elif definition.property is not None:
        origin = f"set for {definition.property.name} only, {_line(definition.span)}"
    else:
        origin = f"set, {_line(definition.span)}"
    shown = definition.qualified_name if definition is not None else name
    shape = MEMBERSHIP_SHAPES.get(mf.function, "")
    call = f"{mf.function}({', '.join(_number(v) for v in mf.params)})"
    text = f"**{shown}** ({origin}): `{call}`"
    if definition is not None and definition.function.raw and definition.property is not None:
        prop = definition.property.name
        if prop in PROPERTIES:
            gamma = _number(_gamma(snapshot, prop))
            text += (
                f", written `{format_membership(definition.function)}` in "
                f"{PROPERTIES[prop].unit} and divided by the scale {gamma}"
            )
    text += f"\n\n{mf.function}: {shape}\n\n"
    text += _set_table(snapshot, mf, properties)
    if not properties:
        text += "\n\nraw value = standardised value x the property's gamma"
    return text


def _rule_hover(occurrence: Occurrence) -> str | None:
    rule = occurrence.node
    if not isinstance(rule, Rule):
        return None
    body = "\n".join(format_rule(rule))
    head = f"**{rule.name}** (rule {rule.position}, TV {_number(rule.truth_value)})"
    return f"{head}\n\n```\n{body}\n```"


def _class_hover(snapshot: Snapshot, name: str) -> str:
    """A class: where it is declared and which rules conclude it."""
    declared = snapshot.index.definitions("class", name)
    where = f"declared {_line(declared[0].span)}" if declared else "not declared (E016)"
    rules = [r.name for r in snapshot.rulebook.rules if r.concludes == name]
    general = sum(r.concludes == ANY_CLASS for r in snapshot.rulebook.rules)
    text = f"**{name}** (class, {where})\n\n"
    text += "concluded by " + (", ".join(rules) if rules else "no rule (W108)")
    if general:
        text += f"; its grade also counts the {general} rule(s) concluding {ANY_CLASS} (any class)"
    return text


def _condition_hover(snapshot: Snapshot, occurrence: Occurrence) -> str | None:
    """A named condition: its `define` line and, when it uses other names, written out."""
    node = occurrence.node
    if not isinstance(node, Define):
        found = snapshot.index.definitions("condition", occurrence.key)
        if not found:
            return None  # unknown (E020): the hover shows the code's explanation
        node = found[-1].statement
    assert isinstance(node, Define)
    body = "\n".join(format_define(node))
    text = f"**{node.name.name}** (condition, {_line(node.span)})\n\n```\n{body}\n```"
    if any(True for _ in named.references(node.condition)):
        written = _written_out(snapshot, node)
        text += f"\n\nwritten out: `{written}`" if written else ""
    return text


def _written_out(snapshot: Snapshot, define: Define) -> str | None:
    """The condition with every name written out, if it is valid and short enough to show."""
    definitions = snapshot.rulebook.definitions
    order, cycles = named.dependency_order(definitions)
    sizes = named.definition_sizes(definitions, order)
    name = define.name.name
    if cycles or name not in sizes or sizes[name].terms > HOVER_EXPANSION_TERMS:
        return None
    expansions: dict = {}
    try:
        for each in order:
            expansions[each] = named.expand(definitions[each].condition, expansions)
    except KeyError:  # an unknown name (E020)
        return None
    return format_condition(expansions[name])


def _symbol_hover(snapshot: Snapshot, occurrence: Occurrence) -> str | None:
    kind, name = occurrence.kind, occurrence.identifier.name
    if kind == "property":
        return _property_hover(snapshot, name)
    if kind == "set":
        return _set_hover(snapshot, occurrence)
    if kind == "hedge" and name in HEDGES:
        return f"**{name}** (hedge): the grade x becomes x^{_number(HEDGES[name])}"
    if kind == "function" and name in MEMBERSHIP_FUNCTIONS:
        params = ", ".join(MEMBERSHIP_FUNCTIONS[name])
        return f"**{name}**({params}) (membership function): {MEMBERSHIP_SHAPES.get(name, '')}"
    if kind == "rule":
        return _rule_hover(occurrence)
    if kind == "class":
        return _class_hover(snapshot, name)
    if kind == "condition":
        return _condition_hover(snapshot, occurrence)
    return None


def _code_in_comment(snapshot: Snapshot, offset: int) -> str | None:
    """A diagnostic code under the cursor in a comment (`# kist: ignore[W105]`)."""
    for comment in snapshot.rulebook.comments:
        if comment.span.start <= offset <= comment.span.end:
            text, at = comment.text, offset - comment.span.start
            start = at
            while start > 0 and text[start - 1].isalnum():
                start -= 1
            end = at
            while end < len(text) and text[end].isalnum():
                end += 1
            word = text[start:end].upper()
            return word if word in CODES else None
    return None


def hover(snapshot: Snapshot, offset: int, encoding: str) -> types.Hover | None:
    """The symbol under the cursor, and `explain-code` for each diagnostic there."""
    if snapshot.rulebook is None:
        return None
    parts: list[str] = []
    span: Span | None = None
    occurrence = snapshot.index.at(offset)
    if occurrence is not None:
        text = _symbol_hover(snapshot, occurrence)
        if text:
            parts.append(text)
            span = occurrence.identifier.span
    codes = [d.code for d in snapshot.diagnostics if d.span.start <= offset <= d.span.end]
    in_comment = _code_in_comment(snapshot, offset)
    if in_comment is not None:
        codes.append(in_comment)
    parts += [explain_code(code) for code in dict.fromkeys(codes)]
    if not parts:
        return None
    return types.Hover(
        contents=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)
        ),
        range=lsp_range(snapshot.positions(encoding), span) if span is not None else None,
    )


# --- names ----------------------------------------------------------------------------


def definition(snapshot: Snapshot, offset: int, encoding: str) -> list[types.Location] | None:
    """Where the symbol under the cursor is declared in the file (None for a built-in)."""
    if snapshot.index is None or (occurrence := snapshot.index.at(offset)) is None:
        return None
    found = snapshot.index.definitions(occurrence.kind, occurrence.key)
    if not found:
        return None
    positions = snapshot.positions(encoding)
    return [_location(snapshot.uri, positions, d.span) for d in found]


def references(
    snapshot: Snapshot, offset: int, encoding: str, *, include_declaration: bool
) -> list[types.Location] | None:
    """Every use of the symbol under the cursor; its declarations too if asked."""
    if snapshot.index is None or (occurrence := snapshot.index.at(offset)) is None:
        return None
    index = snapshot.index
    declared = {d.span.start for d in index.definitions(occurrence.kind, occurrence.key)}
    positions = snapshot.positions(encoding)
    return [
        _location(snapshot.uri, positions, o.identifier.span)
        for o in index.references(occurrence.kind, occurrence.key)
        if include_declaration or o.identifier.span.start not in declared
    ]


def _symbol_detail(declaration: Declaration) -> str | None:
    statement = declaration.statement
    if isinstance(statement, SetDef):
        return format_membership(statement.function)
    if isinstance(statement, Rule):
        return f"if {format_condition(statement.condition)} (TV {_number(statement.truth_value)})"
    if isinstance(statement, Define):
        return format_condition(statement.condition)
    return None


def document_symbols(snapshot: Snapshot, encoding: str) -> list[types.DocumentSymbol]:
    """The file's declarations (rules, sets), in file order."""
    if snapshot.index is None:
        return []
    positions = snapshot.positions(encoding)
    return [
        types.DocumentSymbol(
            name=d.name,
            kind=SYMBOL_KINDS.get(d.kind, types.SymbolKind.Variable),
            range=lsp_range(positions, d.statement.span),
            selection_range=lsp_range(positions, d.span),
            detail=_symbol_detail(d),
        )
        for d in snapshot.index.declarations
    ]


# --- rename ---------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Kinds a rename may change: names the file declares. Properties, hedges, functions and
# built-in sets belong to the language.
RENAMABLE = frozenset({"condition", "rule", "set"})


def _renamable(snapshot: Snapshot, offset: int) -> Occurrence | None:
    if snapshot.index is None or (occurrence := snapshot.index.at(offset)) is None:
        return None
    if occurrence.kind not in RENAMABLE:
        return None
    if not snapshot.index.definitions(occurrence.kind, occurrence.key):
        return None  # a built-in set, an unknown name, an unnamed rule
    return occurrence


def prepare_rename(snapshot: Snapshot, offset: int, encoding: str) -> types.Range | None:
    """The name under the cursor, if the file declares it (so a rename can change it)."""
    occurrence = _renamable(snapshot, offset)
    if occurrence is None:
        return None
    return lsp_range(snapshot.positions(encoding), occurrence.identifier.span)


def rename(
    snapshot: Snapshot, offset: int, new_name: str, encoding: str
) -> tuple[types.WorkspaceEdit | None, str | None]:
    """Every occurrence of the symbol under the cursor renamed, or why not.

    Refused when the new name is not a name, is a keyword, or is already taken
    where it would change what some term or rule means: by a declaration of
    the same kind, a property (for a condition) or a built-in set (for a set).
    """
    occurrence = _renamable(snapshot, offset)
    if occurrence is None:
        return None, "only a set, rule or condition defined in this file can be renamed"
    name = new_name.strip()
    if not _NAME.fullmatch(name):
        return None, f"{new_name!r} is not a name: letters, digits and _, not starting with a digit"
    lower = name.lower()
    if lower in KEYWORDS:
        return None, f"{name!r} is a keyword"
    kind = occurrence.kind
    if kind == "condition" and lower in PROPERTIES:
        return None, f"{name!r} is a property"
    if kind == "set" and lower in BUILTIN_SETS:
        return None, f"{name!r} is a built-in set"
    taken = {d.key.rsplit(".", 1)[-1] for d in snapshot.index.declared(kind)}
    if lower in taken and lower != occurrence.identifier.name:
        return None, f"{name!r} is already a {kind} name here"
    positions = snapshot.positions(encoding)
    spans = {o.identifier.span.start: o.identifier.span for o in
             snapshot.index.references(kind, occurrence.key)}  # fmt: skip
    edits = [types.TextEdit(range=lsp_range(positions, span), new_text=name) for span in
             sorted(spans.values(), key=lambda s: s.start)]  # fmt: skip
    return types.WorkspaceEdit(changes={snapshot.uri: edits}), None


# --- edits ----------------------------------------------------------------------------


def code_actions(snapshot: Snapshot, start: int, end: int, encoding: str) -> list[types.CodeAction]:
    """A quick fix for each did-you-mean diagnostic touching [start, end]."""
    positions = snapshot.positions(encoding)
    actions = []
    for d in snapshot.diagnostics:
        if d.replacement is None or d.span.end < start or d.span.start > end:
            continue
        edit = types.TextEdit(range=lsp_range(positions, d.span), new_text=d.replacement)
        actions.append(
            types.CodeAction(
                title=f'Replace with "{d.replacement}"',
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[lsp_diagnostic(d, positions)],
                is_preferred=True,
                edit=types.WorkspaceEdit(changes={snapshot.uri: [edit]}),
            )
        )
    return actions


def formatting(
    snapshot: Snapshot, path: str, encoding: str
) -> tuple[list[types.TextEdit], list[Diagnostic]]:
    """`kistrules fmt`'s layout as one edit of the whole text, or the errors that stop it."""
    formatted, errors = format_source(snapshot.text, path)
    if formatted is None:
        return [], errors
    if formatted == snapshot.text:
        return [], []
    positions = snapshot.positions(encoding)
    whole = types.Range(types.Position(0, 0), types.Position(*positions.end()))
    return [types.TextEdit(range=whole, new_text=formatted)], []
