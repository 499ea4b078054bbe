"""Diagnostics -> text (rustc/Elm style), JSON, or GitHub annotations.

Each output format is one function over a list of `Diagnostic`s, snapshot-
tested, so a change to what users see is a visible change to a test. Also
renders the code table of `kistrules.diagnostics` as `docs/diagnostics.md`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from kistrules.diagnostics import CODES, Diagnostic
from kistrules.span import LineIndex

_RESET = "\x1b[0m"
_STYLE = {
    "error": "\x1b[1;31m",
    "warning": "\x1b[1;33m",
    "bold": "\x1b[1m",
    "gutter": "\x1b[1;34m",
    "hint": "\x1b[1;36m",
}


def _paint(text: str, style: str, color: bool) -> str:
    return f"{_STYLE[style]}{text}{_RESET}" if color and text else text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(diagnostics: Sequence[Diagnostic], files: int) -> str:
    """`2 errors, 1 warning in 3 files`: the last line of the text output."""
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {_plural(files, 'file')}"


def _display(line: str) -> str:
    """The source line as shown: one cell per character, so the carets line up."""
    return "".join(" " if ch == "\t" or not ch.isprintable() else ch for ch in line)


def render_text(
    diagnostics: Sequence[Diagnostic],
    sources: Mapping[str, str],
    *,
    color: bool,
    files: int | None = None,
) -> str:
    """Human output: each diagnostic with its source line and carets, then a summary.

    Args:
        diagnostics: what to show, in the order given.
        sources: path -> text, for the source lines (a path missing here,
            e.g. a file that is not UTF-8, is shown without its line).
        color: ANSI colors (for a terminal).
        files: how many files were checked, for the summary (default: len(sources)).

    >>> from kistrules.api import check
    >>> text = "IF grya is low THEN anomalous"
    >>> print(render_text(check(text), {"<string>": text}, color=False), end="")
    error[E002]: unknown property "grya"
     --> <string>:1:4
      |
    1 | IF grya is low THEN anomalous
      |    ^^^^ not a built-in property
      |
      = hint: did you mean "gray"?
    <BLANKLINE>
    1 error, 0 warnings in 1 file
    """
    indexes: dict[str, LineIndex] = {}
    blocks = []
    for d in diagnostics:
        source = sources.get(d.span.path)
        index = None
        if source is not None:
            index = indexes.get(d.span.path) or indexes.setdefault(
                d.span.path, LineIndex(source, d.span.path)
            )
        blocks.append(_render_one(d, index, color))
    out = "".join(block + "\n" for block in blocks)
    count = len(sources) if files is None else files
    return out + _paint(summary(diagnostics, count), "bold", color) + "\n"


def _render_one(d: Diagnostic, index: LineIndex | None, color: bool) -> str:
    span = d.span
    width = len(str(span.line))
    pad = " " * width
    bar = _paint("|", "gutter", color)
    head = _paint(f"{d.severity}[{d.code}]", d.severity, color) + _paint(
        f": {d.message}", "bold", color
    )
    lines = [head, f"{pad}{_paint('-->', 'gutter', color)} {span.path}:{span.line}:{span.column}"]
    if index is not None:
        text = _display(index.line_text(span.line))
        start = span.column - 1
        if span.end_line == span.line:
            length = max(1, span.end_column - span.column)
        else:
            length = max(1, len(text) - start)
        carets = _paint("^" * length, d.severity, color)
        label = f" {_paint(d.label, d.severity, color)}" if d.label else ""
        lines += [
            f"{pad} {bar}",
            f"{_paint(str(span.line), 'gutter', color)} {bar} {text}".rstrip(),
            f"{pad} {bar} {' ' * start}{carets}{label}",
        ]
    if d.hint:
        if index is not None:
            lines.append(f"{pad} {bar}")
        lines.append(
            f"{pad} {_paint('=', 'gutter', color)} {_paint('hint', 'hint', color)}: {d.hint}"
        )
    return "\n".join(lines) + "\n"


def as_dict(d: Diagnostic) -> dict[str, object]:
    """The JSON object of one diagnostic (the fields `--format json` promises)."""
    span = d.span
    return {
        "path": span.path,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
        "code": d.code,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
        "label": d.label,
    }


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """A JSON list with one object per diagnostic (see `as_dict`)."""
    return json.dumps([as_dict(d) for d in diagnostics], indent=2, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands: one `::error ...::message` line per diagnostic."""
    out = []
    for d in diagnostics:
        s = d.span
        props = (
            f"file={_escape_property(s.path)},line={s.line},col={s.column},"
            f"endLine={s.end_line},endColumn={s.end_column},title={_escape_property(d.code)}"
        )
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        out.append(f"::{d.severity} {props}::{_escape_data(message)}\n")
    return "".join(out)


def explain_code(code: str) -> str:
    """The long explanation of one code, as `kistrules explain-code` prints it.

    Raises KeyError for an unknown code.
    """
    info = CODES[code.upper()]
    body = info.explanation or "(no explanation yet)"
    return f"{info.code} ({info.severity}): {info.title}\n\n{body}\n"


def render_code_docs() -> str:
    """`docs/diagnostics.md`, generated from `kistrules.diagnostics.CODES`.

    Regenerate after editing the table:
    `.venv/bin/python -c "from kistrules.render import write_code_docs; write_code_docs()"`.
    """
    parts = [
        "# Diagnostic codes\n",
        "<!-- Generated from kistrules/diagnostics.py (CODES) by "
        "kistrules.render.render_code_docs(); do not edit by hand. -->\n",
        "`kistrules check` reports each problem with a stable code: `E` codes are errors "
        "(exit status 1), `W` codes warnings (exit status 1 only with `--strict`). "
        "`kistrules explain-code CODE` prints the explanation below; "
        "`--select`/`--ignore CODE` filter what is listed (an error hidden this way still "
        "sets exit status 1), and a `# kist: ignore[CODE]` comment on "
        "the line silences a warning (never an error: E027). W107 is off unless `--select` "
        "names it.\n",
        "| code | severity | title |\n|---|---|---|\n"
        + "".join(
            f"| [{c.code}](#{c.code.lower()}) | {c.severity} | {c.title} |\n"
            for c in CODES.values()
        ),
    ]
    for info in CODES.values():
        body = info.explanation or "(no explanation yet)"
        parts.append(f"## {info.code}\n\n**{info.title}** ({info.severity})\n\n{body}\n")
    return "\n".join(parts)


def write_code_docs(path: str = "docs/diagnostics.md") -> None:
    """Write `render_code_docs()` to `path` (kistrules.atomic: temp file, then rename)."""
    from kistrules.atomic import atomic_write_text

    atomic_write_text(path, render_code_docs())
