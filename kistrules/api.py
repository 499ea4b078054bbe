"""The public entry points for rulebook text: `loads`, `load`, `check`.

`check` collects every diagnostic and never raises on bad rulebook text;
`loads`/`load` raise one `RulebookError` holding all of them (collect, then
raise once). The CLI's `check` command is a thin layer over `check_file`.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

from kistrules.analysis import analyse
from kistrules.ast import Comment, Rulebook
from kistrules.checker import check_has_rules, check_names
from kistrules.diagnostics import CODES, Diagnostic, make
from kistrules.errors import RulebookError, UsageError
from kistrules.files import open_regular
from kistrules.parser import decode, parse_detailed

# `# kist: ignore[E002]`, `# kist: ignore[W101, W105]`; a bare `# kist: ignore` ignores all.
_IGNORE = re.compile(r"#\s*kist:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)


def loads(text: str, path: str = "<string>") -> Rulebook:
    """Parse and check rulebook text.

    Raises:
        RulebookError: holding every diagnostic, if there is any error
            (warnings alone do not raise).

    >>> loads("IF gray is low THEN anomalous (0.9)").rules[0].truth_value
    0.9
    """
    rulebook, diagnostics = diagnose(text, path)
    if rulebook is None or any(d.severity == "error" for d in diagnostics):
        raise RulebookError(diagnostics)
    return rulebook


def load(path: str | os.PathLike[str]) -> Rulebook:
    """Read, parse and check a rulebook file.

    Raises:
        UsageError: the file is missing or unreadable.
        RulebookError: the file is not UTF-8 text (E014) or has errors.
    """
    rulebook, diagnostics = diagnose(read_rulebook(path), str(path))
    if rulebook is None or any(d.severity == "error" for d in diagnostics):
        raise RulebookError(diagnostics)
    return rulebook


def check(text_or_path: str | os.PathLike[str]) -> list[Diagnostic]:
    """Every error and warning of a rulebook, sorted by position; never raises on bad text.

    A `Path` (any os.PathLike), or a str naming an existing `.rules` file, is
    read as a file; any other str is rulebook text. Warnings (interval
    analysis) are computed only when there are no errors.

    Raises:
        UsageError: a path that is missing or unreadable.

    >>> [d.code for d in check("IF grya is low THEN anomalous")]
    ['E002']
    """
    if _is_path(text_or_path):
        return check_file(text_or_path)[1]
    _, diagnostics = diagnose(str(text_or_path), "<string>")
    return diagnostics


def check_file(
    path: str | os.PathLike[str], *, enable: Iterable[str] = ()
) -> tuple[str | None, list[Diagnostic]]:
    """A file's text (None if not UTF-8) and its diagnostics; the CLI renders both.

    `enable` names opt-in codes to report too (see `diagnose`).
    """
    data = read_rulebook(path)
    text, problem = decode(data, str(path))
    if text is None:
        return None, [problem] if problem else []
    return text, diagnose(text, str(path), enable=enable)[1]


# Real rulebooks are a few kB; 1 MiB holds ~15,000 rules and checks in a few seconds.
# Larger files are refused unread (a 100 MB file would take minutes and gigabytes).
MAX_RULEBOOK_BYTES = 1 << 20


def read_rulebook(path: str | os.PathLike[str]) -> bytes:
    """A rulebook file's bytes; a missing, unreadable, special or too large file is a UsageError.

    Only a regular file is read: a FIFO, socket or device is refused without
    blocking (`kistrules.files.open_regular`). Reads at most
    MAX_RULEBOOK_BYTES + 1 bytes, so a huge file is refused without being loaded.
    """
    try:
        with open_regular(path, "rulebook") as handle:
            data = handle.read(MAX_RULEBOOK_BYTES + 1)
        if len(data) > MAX_RULEBOOK_BYTES:
            raise UsageError(
                f"{os.fspath(path)}: rulebook larger than the limit of "
                f"{MAX_RULEBOOK_BYTES:,} bytes (1 MiB); is this really a .rules file?"
            )
        return data
    except FileNotFoundError:
        raise UsageError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{os.fspath(path)}: is a directory, not a rulebook file") from None
    except OSError as err:
        raise UsageError(f"{os.fspath(path)}: cannot read ({err.strerror or err})") from None


def diagnose(
    text: str | bytes, path: str = "<string>", *, enable: Iterable[str] = ()
) -> tuple[Rulebook | None, list[Diagnostic]]:
    """The rulebook (partial after syntax errors, None if not decodable) and all diagnostics.

    Order of passes: syntax (E001), names and ranges (E002-E027), then, only
    when there is no error, the interval warnings (W1xx); then the file's
    `# kist: ignore[...]` comments apply, and the result is sorted. Opt-in
    codes (`CodeInfo.opt_in`, W107) are reported only when `enable` names them.
    """
    if isinstance(text, bytes):
        decoded, problem = decode(text, path)
        if decoded is None:
            return None, [problem] if problem else []
        text = decoded
    result = parse_detailed(text, path)
    rulebook = result.rulebook
    diagnostics = list(result.diagnostics)
    diagnostics += check_names(
        rulebook,
        assume_sets=result.damaged_sets,
        assume_conditions=result.damaged_conditions,
    )
    if not result.diagnostics:  # a statement lost to a syntax error may be the rule
        diagnostics += check_has_rules(rulebook)
    if not any(d.severity == "error" for d in diagnostics):
        enabled = {code.upper() for code in enable}
        diagnostics += [
            d for d in analyse(rulebook) if not CODES[d.code].opt_in or d.code in enabled
        ]
    diagnostics = apply_ignore_comments(rulebook, diagnostics)
    diagnostics.sort(key=Diagnostic.sort_key)
    return rulebook, diagnostics


def apply_ignore_comments(rulebook: Rulebook, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Drop the warnings silenced by a `# kist: ignore[CODE, ...]` comment on one of their lines.

    A statement may span several lines; a comment on any line of the
    diagnostic's span, or of the statement that holds it, counts. Errors are
    never dropped: a rulebook with one cannot be used, and a silenced error
    only crashed a later command. A comment naming an error code is itself
    reported (E027), once per code, at the code.
    """
    ignored: dict[int, set[str] | None] = {}  # line -> codes (None = every warning)
    refused: list[Diagnostic] = []
    for comment in rulebook.comments:
        match = _IGNORE.search(comment.text)
        if match is None:
            continue
        line = comment.span.line
        if match.group(1) is None:
            ignored[line] = None
            continue
        codes = set()
        for code in re.finditer(r"[^,\s]+", match.group(1)):
            name = code.group().upper()
            codes.add(name)
            if name.startswith("E"):
                refused.append(_unignorable(comment, match.start(1) + code.start(), name))
        if ignored.get(line, set()) is not None:
            ignored[line] = ignored.get(line, set()) | codes
    if not ignored:
        return diagnostics + refused
    spans = [s.span for s in rulebook.statements]  # in file order
    starts = [span.start for span in spans]
    kept = []
    for d in diagnostics:
        first, last = d.span.line, d.span.end_line
        i = bisect_right(starts, d.span.start) - 1
        if i >= 0 and d.span.start < spans[i].end:  # the enclosing statement's lines count too
            first, last = min(first, spans[i].line), max(last, spans[i].end_line)
        lines = range(first, last + 1)
        if d.severity == "warning" and any(
            line in ignored and (ignored[line] is None or d.code in ignored[line]) for line in lines
        ):
            continue
        kept.append(d)
    return kept + refused


def _unignorable(comment: Comment, offset: int, code: str) -> Diagnostic:
    """E027 at `code`, written `offset` characters into a (one-line) comment."""
    start = comment.span.start + offset
    column = comment.span.column + offset
    span = comment.span.model_copy(
        update={
            "start": start,
            "end": start + len(code),
            "column": column,
            "end_line": comment.span.line,
            "end_column": column + len(code),
        }
    )
    return make(
        "E027",
        f"{code} is an error code: only warnings may be ignored",
        span,
        label="cannot be ignored",
        hint="fix the error instead; later commands refuse a rulebook with errors",
    )


def select_codes(
    diagnostics: list[Diagnostic],
    *,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
) -> list[Diagnostic]:
    """Keep the diagnostics whose code starts with a `select` prefix and no `ignore` prefix.

    Prefixes as ruff takes them: `E002`, `W1`, `W`. Raises UsageError for a
    prefix that matches no known code.
    """
    select = validate_codes(select or [])
    ignore = validate_codes(ignore or [])
    return [
        d
        for d in diagnostics
        if (not select or d.code.startswith(tuple(select))) and not d.code.startswith(tuple(ignore))
    ]


def opt_in_codes(select: list[str] | None) -> set[str]:
    """The opt-in codes (W107) that `select` names in full: only those turn them on."""
    return {p for p in validate_codes(select or []) if p in CODES and CODES[p].opt_in}


def validate_codes(prefixes: list[str]) -> list[str]:
    """Upper-cased prefixes, split at commas; UsageError for one that matches no code."""
    out = []
    for item in prefixes:
        for prefix in item.split(","):
            prefix = prefix.strip().upper()
            if not prefix:
                continue
            if not any(code.startswith(prefix) for code in CODES):
                known = ", ".join(CODES)
                raise UsageError(f"unknown diagnostic code {prefix!r} (known: {known})")
            out.append(prefix)
    return out


def _is_path(value: str | os.PathLike[str]) -> bool:
    if isinstance(value, os.PathLike):
        return True
    if "\n" in value or not value.endswith(".rules") or len(value) > 4096:
        return False
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # a name the OS cannot even look up is text
        return False
