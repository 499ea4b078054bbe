"""The tuned rulebook as text: the expert's file with new numbers, each change commented.

The numbers are replaced where they stand in the source (by their spans), and
every changed statement gets a comment line just above it naming each old and
new value (`# tuned: scale 255 -> 230`), which the formatter keeps with the
statement; a `# tuned:` line left by an earlier tune is replaced. The text then
goes through `format_source`, so the result is in canonical form, checks
without errors and parses back to the same structure (`fmt` refuses anything
else), and a header says where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kistrules.ast import Rulebook
from kistrules.builtins import MEMBERSHIP_FUNCTIONS
from kistrules.errors import KistrulesError
from kistrules.formatter import format_source
from kistrules.tuning.parameters import Tunable, number_text

COMMENT_PREFIX = "# tuned:"


def changes(tunables: Sequence[Tunable], values: Sequence[float]) -> list[tuple[Tunable, float]]:
    """The tunables whose value changed, with their new value."""
    return [(t, float(v)) for t, v in zip(tunables, values, strict=True) if float(v) != t.value]


def change_comment(changed: Sequence[tuple[Tunable, float]]) -> str:
    """`# tuned: c 0.45 -> 0.5, d 0.55 -> 0.6` for the changes of one statement."""
    parts = []
    for tunable, value in changed:
        if tunable.kind == "set":
            name = MEMBERSHIP_FUNCTIONS[tunable.function][tunable.argument]
        else:
            name = tunable.kind
        parts.append(f"{name} {tunable.number.text} -> {number_text(value)}")
    return f"{COMMENT_PREFIX} {', '.join(parts)}"


def tuned_text(
    rulebook: Rulebook,
    tunables: Sequence[Tunable],
    values: Sequence[float],
    *,
    header: Sequence[str] = (),
) -> str:
    """The rulebook's source with `values` written in, commented, canonically formatted.

    `header` lines (without `# `) go first, as a block of their own. A header of
    an earlier tune (`strip_header`) is dropped first.
    """
    source = rulebook.source
    by_statement: dict[int, list[tuple[Tunable, float]]] = {}
    for tunable, value in changes(tunables, values):
        by_statement.setdefault(tunable.statement, []).append((tunable, value))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), applied last first
    for index, changed in by_statement.items():
        for tunable, value in changed:
            span = tunable.number.span
            edits.append((span.start, span.end, number_text(value)))
        edits.append(_comment_edit(source, rulebook.statements[index].span.start, changed))
    text = source
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    text = strip_header(text)
    if header:
        text = "\n".join(f"# {line}".rstrip() for line in header) + "\n\n" + text
    formatted, errors = format_source(text, rulebook.path)
    if formatted is None:  # a bug: the search only keeps numbers that check
        detail = "; ".join(d.one_line() for d in errors)
        raise KistrulesError(f"{rulebook.path}: the tuned rulebook does not check: {detail}")
    return formatted


def _comment_edit(
    source: str, start: int, changed: Sequence[tuple[Tunable, float]]
) -> tuple[int, int, str]:
    """Insert the comment on its own line above the statement at `start`, or replace an
    earlier tune's comment line there."""
    comment = change_comment(changed)
    line_start = source.rfind("\n", 0, start) + 1
    if source[line_start:start].strip():  # another statement before it on the line
        return (start, start, f"\n{comment}\n")
    previous_start = source.rfind("\n", 0, max(line_start - 1, 0)) + 1
    previous = source[previous_start : max(line_start - 1, previous_start)]
    if line_start > 0 and previous.strip().startswith(COMMENT_PREFIX):
        return (previous_start, line_start - 1, comment)
    return (line_start, line_start, f"{comment}\n")


_EARLIER_HEADER = re.compile(r"# kistrules [a-z]+ wrote this file")


def strip_header(text: str) -> str:
    """The text without the header block that kistrules tune or suggest put first (up to
    its blank line: the mark of `kistrules.outputs.sign_rules` and what follows it)."""
    if not _EARLIER_HEADER.match(text):
        return text
    end = text.find("\n\n")
    return text[end + 2 :] if end >= 0 else ""
