"""AST + comments -> canonical rulebook text (what `kistrules fmt` writes).

The layout, decided once so that every rulebook reads alike:

- sections in a fixed order, one blank line between them: the `rulebook`
  line, the `class` lines, the `scale` block, the `set` block, `threshold`,
  the `define`s, the rules. Statements
  keep their relative order inside a section (the rules' order names unnamed
  rules, `rule 3`); a blank line the expert left between two statements of a
  section is kept (one, however many there were);
- keywords and names in lower case; `scale` and `set` blocks aligned on `=`,
  their end-of-line comments aligned too. Only names up to `ALIGN_MAX_NAME`
  characters and lines up to `WRAP_WIDTH` set the columns: a longer one keeps
  one space before its `=` (two before its comment). Padding every line to
  one 10,000-character name once grew a 15 kB file a hundredfold, past the
  size limit at which `check` refuses a rulebook;
- one rule per statement; a rule longer than `WRAP_WIDTH` characters is wrapped
  before each top-level `and` / `or`, continuation lines indented 4 spaces,
  `then anomalous (TV)` (or `then CLASS (TV)`) on its own line; a long
  `define` is wrapped alike;
- parentheses only where the structure needs them: an OR inside an AND, and a
  nested AND inside AND (or OR inside OR), which the expert wrote on purpose and
  which must parse back to the same tree; `not (...)` parenthesises its
  operand, which reads better than `not gray is low`, except a defined name
  (`not dark_spot`);
- `raw` before a membership function stays (`raw trapezoid(...)`);
- numbers keep the expert's spelling (`0.80`, `1e-3`) except for
  non-canonical forms, rewritten without changing the value: a leading `+` is
  dropped, `.5` -> `0.5`, `1.` -> `1`, `1E+03` -> `1e03`, `007` -> `7`;
- comments are kept where they belong: an end-of-line comment stays at the end
  of its statement's (last) line; comments on lines of their own stay before
  the statement they precede (a comment inside a multi-line statement moves
  just before it, except a `# kist: ignore[...]` directive, which moves to
  the end of its statement's last line, where it still covers the statement's
  diagnostics: it counts on any of the statement's lines); comments before the
  first statement and separated from it by a blank line stay at the top of
  the file; comments after the last statement stay at the end.

`format_rulebook(parse(format_rulebook(x)))` == `format_rulebook(x)`
(idempotence), and the output parses to a tree of the same structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kistrules.ast import (
    And,
    ClassDef,
    Comment,
    ConditionRef,
    Define,
    MembershipCall,
    Not,
    Number,
    Or,
    Rule,
    Rulebook,
    RulebookName,
    ScaleDef,
    SetDef,
    Term,
    ThresholdDef,
)
from kistrules.diagnostics import Diagnostic

WRAP_WIDTH = 88
ALIGN_MAX_NAME = 40  # longer names do not set the `=` column of their block
INDENT = "    "

Condition = Term | ConditionRef | Not | And | Or
Statement = RulebookName | ClassDef | ScaleDef | SetDef | ThresholdDef | Define | Rule

_SECTIONS = (RulebookName, ClassDef, ScaleDef, SetDef, ThresholdDef, Define, Rule)
_IGNORE = re.compile(r"#\s*kist:\s*ignore", re.IGNORECASE)
_NUMBER = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?$")


# --- pieces -----------------------------------------------------------------------


def canonical_number(text: str) -> str | None:
    """The canonical spelling of a numeric literal, or None if `text` is not one."""
    m = _NUMBER.match(text.strip())
    if m is None or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp_sign, exp = m.groups()
    whole = whole.lstrip("0") or "0"
    out = ("-" if sign == "-" else "") + whole
    if frac:
        out += "." + frac
    if exp is not None:
        out += "e" + ("-" if exp_sign == "-" else "") + exp
    return out


def format_number(number: Number) -> str:
    """The expert's spelling when canonical, else a canonical one of the same value."""
    text = canonical_number(number.text)
    if text is not None and float(text) == number.value:
        return text
    return repr(float(number.value))  # shortest text that round-trips the float


def format_term(term: Term) -> str:
    """`property is [not] [hedges] set`, lower-case."""
    words = [term.property.name, "is"]
    if term.negated:
        words.append("not")
    words.extend(h.name for h in term.hedges)
    words.append(term.set.name)
    return " ".join(words)


def _operand(condition: Condition, parent: str) -> str:
    text = format_condition(condition)
    if isinstance(condition, Or) or (isinstance(condition, And) and parent == "and"):
        return f"({text})"
    return text


def format_condition(condition: Condition) -> str:
    """A condition on one line, with only the parentheses its structure needs."""
    if isinstance(condition, Term):
        return format_term(condition)
    if isinstance(condition, ConditionRef):
        return condition.name.name
    if isinstance(condition, Not):
        inner = format_condition(condition.operand)
        bare = isinstance(condition.operand, (Not, ConditionRef))
        return f"not {inner}" if bare else f"not ({inner})"
    joiner = f" {condition.kind} "
    return joiner.join(_operand(op, condition.kind) for op in condition.operands)


def format_membership(call: MembershipCall) -> str:
    raw = "raw " if call.raw else ""
    return f"{raw}{call.function.name}({', '.join(format_number(a) for a in call.args)})"


def _rule_head(rule: Rule) -> str:
    return f"rule {rule.label.name}: " if rule.label is not None else ""


def _rule_tail(rule: Rule) -> str:
    truth = rule.truth
    return f"then {rule.concludes}" + (f" ({format_number(truth)})" if truth is not None else "")


def format_rule(rule: Rule) -> list[str]:
    """A rule as one line, or wrapped before its top-level `and`/`or` when too long.

    Also when a `# kist: ignore[...]` comment follows it: the comment covers every
    line of its statement, so it still does at the end of the wrapped rule's last line.
    """
    return _wrapped(f"{_rule_head(rule)}if ", rule.condition, _rule_tail(rule))


def format_define(define: Define) -> list[str]:
    """`define NAME = CONDITION`, wrapped like a rule when too long."""
    return _wrapped(f"define {define.name.name} = ", define.condition, "")


def _wrapped(head: str, condition: Condition, tail: str) -> list[str]:
    one_line = f"{head}{format_condition(condition)}" + (f" {tail}" if tail else "")
    if len(one_line) <= WRAP_WIDTH or not isinstance(condition, (And, Or)):
        return [one_line]
    kind = condition.kind
    parts = [_operand(op, kind) for op in condition.operands]
    lines = [f"{head}{parts[0]}"]
    lines += [f"{INDENT}{kind} {part}" for part in parts[1:]]
    if tail:
        lines.append(f"{INDENT}{tail}")
    return lines


def format_statement(statement: Statement, *, pad: int = 0) -> list[str]:
    """One statement's lines; `pad` aligns the `=` of scale and set blocks."""
    if isinstance(statement, RulebookName):
        return [f'rulebook "{statement.name}"']
    if isinstance(statement, ClassDef):
        return ["class " + ", ".join(name.name for name in statement.names)]
    if isinstance(statement, ScaleDef):
        name = statement.property.name.ljust(pad)
        return [f"scale {name} = {format_number(statement.value)}"]
    if isinstance(statement, SetDef):
        name = _set_name(statement).ljust(pad)
        return [f"set {name} = {format_membership(statement.function)}"]
    if isinstance(statement, ThresholdDef):
        return [f"threshold {format_number(statement.value)}"]
    if isinstance(statement, Define):
        return format_define(statement)
    return format_rule(statement)


def _set_name(statement: SetDef) -> str:
    prop = statement.property
    return f"{prop.name}.{statement.name.name}" if prop is not None else statement.name.name


# --- comments -----------------------------------------------------------------------

BLANK = None  # a blank line inside a comment group


@dataclass
class _Placed:
    """A statement with the comments that travel with it."""

    statement: Statement
    blank_before: bool = False
    leading: list[str | None] = field(default_factory=list)  # comment text or BLANK
    trailing: str | None = None


@dataclass
class _Layout:
    header: list[str | None]
    placed: list[_Placed]
    footer: list[str | None]
    blank_before_footer: bool


def _comment_text(comment: Comment) -> str:
    return comment.text.rstrip()


def _attach(rulebook: Rulebook) -> _Layout:
    """Give every comment a home: header, a statement (leading/trailing) or footer."""
    statements = list(rulebook.statements)
    placed = [_Placed(s) for s in statements]
    interior: dict[int, list[str]] = {}
    pending: list[tuple[str | None, int]] = []  # (text or BLANK, line) awaiting a statement
    items: list[tuple[int, int, object]] = [(s.span.start, 0, i) for i, s in enumerate(statements)]
    items += [(c.span.start, 1, c) for c in rulebook.comments]
    items.sort(key=lambda item: (item[0], item[1]))
    last_line: int | None = None  # the last line holding something already placed
    last_statement: int | None = None
    header: list[str | None] = []
    blank_before_group = False

    def gap(line: int) -> bool:
        return last_line is not None and line - last_line >= 2

    for _, is_comment, payload in items:
        if is_comment:
            comment: Comment = payload  # type: ignore[assignment]
            text = _comment_text(comment)
            if last_statement is not None:
                owner = statements[last_statement]
                if comment.span.start < owner.span.end:  # inside a multi-line statement
                    interior.setdefault(last_statement, []).append(text)
                    continue
                if (
                    comment.span.line == owner.span.end_line
                    and placed[last_statement].trailing is None
                    and not pending
                ):
                    placed[last_statement].trailing = text
                    last_line = comment.span.line
                    continue
            if not pending:
                blank_before_group = gap(comment.span.line)
            elif gap(comment.span.line):
                pending.append((BLANK, 0))
            pending.append((text, comment.span.line))
            last_line = comment.span.line
            continue
        index: int = payload  # type: ignore[assignment]
        statement = statements[index]
        here = placed[index]
        if pending:
            here.blank_before = blank_before_group
            if gap(statement.span.line):
                pending.append((BLANK, 0))
            here.leading = [text for text, _ in pending]
            if last_statement is None:
                header, here.leading = _split_header(here.leading)
        else:
            here.blank_before = gap(statement.span.line)
        pending = []
        last_statement = index
        last_line = statement.span.end_line
    for index, texts in interior.items():
        here = placed[index]
        found = next((i for i, t in enumerate(texts) if _IGNORE.search(t)), None)
        if found is not None and here.trailing is None:
            # `# kist: ignore[...]` applies to the lines of its statement: keep it
            # on the statement's (then unwrapped) line rather than above it
            here.trailing = texts[found]
            texts = texts[:found] + texts[found + 1 :]
        here.leading.extend(texts)
    if not statements:  # a file of comments only: it is all header
        return _Layout([text for text, _ in pending], [], [], False)
    footer = [text for text, _ in pending]
    return _Layout(header, placed, footer, blank_before_group if footer else False)


def _split_header(group: list[str | None]) -> tuple[list[str | None], list[str | None]]:
    """Comments before the first statement up to its last blank line are the file's header."""
    if BLANK not in group:
        return [], group
    cut = len(group) - 1 - group[::-1].index(BLANK)
    return group[:cut], group[cut + 1 :]


# --- the whole file ------------------------------------------------------------------


def _emit_group(out: list[str], group: list[str | None]) -> None:
    for text in group:
        if text is BLANK:
            if out and out[-1] != "":
                out.append("")
        else:
            out.append(text)


def _section(placed: list[_Placed], kind: type) -> list[_Placed]:
    return [p for p in placed if isinstance(p.statement, kind)]


def _render_section(out: list[str], items: list[_Placed]) -> None:
    aligned = items and isinstance(items[0].statement, (ScaleDef, SetDef))
    pad = 0
    if aligned:
        names = [
            p.statement.property.name
            if isinstance(p.statement, ScaleDef)
            else _set_name(p.statement)
            for p in items
        ]
        pad = max((len(n) for n in names if len(n) <= ALIGN_MAX_NAME), default=0)
    bodies = [format_statement(p.statement, pad=pad) for p in items]
    widths = [len(b[-1]) for b in bodies if len(b[-1]) <= WRAP_WIDTH]
    comment_column = max(widths, default=0) + 2 if aligned else 0
    for i, (p, lines) in enumerate(zip(items, bodies, strict=True)):
        if i > 0 and p.blank_before and out[-1] != "":
            out.append("")
        _emit_group(out, p.leading)
        lines = list(lines)
        if p.trailing is not None:
            last = lines[-1]
            width = max(comment_column, len(last) + 2)
            lines[-1] = f"{last.ljust(width)}{p.trailing}"
        out.extend(lines)


def format_rulebook(rulebook: Rulebook) -> str:
    """The rulebook in canonical layout (see the module docstring), ending in a newline.

    >>> from kistrules.parser import parse
    >>> rb, _ = parse("IF Gray IS Low AND area is HIGH then ANOMALOUS (.8)   # dark")
    >>> print(format_rulebook(rb), end="")
    if gray is low and area is high then anomalous (0.8)  # dark
    """
    layout = _attach(rulebook)
    out: list[str] = []
    _emit_group(out, layout.header)
    for kind in _SECTIONS:
        items = _section(layout.placed, kind)
        if not items:
            continue
        if out and out[-1] != "":
            out.append("")
        _render_section(out, items)
    if layout.footer:
        if layout.blank_before_footer and out and out[-1] != "":
            out.append("")
        _emit_group(out, layout.footer)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def format_source(text: str, path: str = "<string>") -> tuple[str | None, list[Diagnostic]]:
    """Rulebook text in canonical layout, or None and its errors.

    A file with errors (syntax, names, ranges) is not formatted: the layout of
    a statement that did not parse is unknown, and rewriting around it could
    lose text. Warnings do not stop formatting, nor does a file without rules
    yet (E026): its statements all parsed, so its layout is known.
    """
    from kistrules.api import diagnose  # the api's warnings import this module

    rulebook, diagnostics = diagnose(text, path)
    errors = [d for d in diagnostics if d.severity == "error" and d.code != "E026"]
    if rulebook is None or errors:
        return None, errors
    formatted = format_rulebook(rulebook)
    _verify(rulebook, formatted, path)
    return formatted, []


def _verify(rulebook: Rulebook, formatted: str, path: str) -> None:
    """Refuse output that does not parse back to the same rulebook (as black does).

    A formatter bug must never cost an expert a rule or a comment; the check
    costs one more parse.
    """
    from kistrules.parser import parse

    again, errors = parse(formatted, path)
    if errors or again is None or _meaning(again) != _meaning(rulebook):
        raise RuntimeError(
            f"fmt would change the meaning of {path}; the file is left unchanged "
            "(a formatter bug: please report it with the file)"
        )


def _meaning(rulebook: Rulebook) -> tuple:
    """Statements by section without spans or spellings, and the comments' texts."""

    def strip(dump: object) -> object:
        if isinstance(dump, dict):
            return {k: strip(v) for k, v in dump.items() if k not in ("span", "text")}
        if isinstance(dump, (list, tuple)):
            return [strip(v) for v in dump]
        return dump

    sections = tuple(
        [strip(s.model_dump()) for s in rulebook.statements if isinstance(s, kind)]
        for kind in _SECTIONS
    )
    return sections, sorted(_comment_text(c) for c in rulebook.comments)


__all__ = [
    "ALIGN_MAX_NAME",
    "WRAP_WIDTH",
    "canonical_number",
    "format_condition",
    "format_define",
    "format_number",
    "format_rule",
    "format_rulebook",
    "format_source",
    "format_statement",
    "format_term",
]
