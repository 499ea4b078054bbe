"""`kistrules check PATH...` and `kistrules explain-code CODE`.

Arguments in, library calls, a renderer, an exit code: 0 no errors, 1 errors
(or warnings with --strict), 2 usage. Everything testable lives in
`kistrules.api` and `kistrules.render`.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kistrules.commands.common import fail, stderr
from kistrules.errors import UsageError
from kistrules.files import collect_rulebooks


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    github = "github"


def check_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Rulebook files, or directories to search for *.rules.")
    ],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output: text, json or github annotations.")
    ] = OutputFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            help="Only these codes or prefixes (E002, W1); repeatable. Off-by-default "
            "codes (W107) are reported only when named in full.",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", help="Skip these codes or prefixes; repeatable."),
    ] = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False,
) -> None:
    """Check rulebooks like code: syntax, names, ranges, and logic warnings."""
    from kistrules.api import check_file, opt_in_codes, select_codes, validate_codes
    from kistrules.render import render_github, render_json, render_text

    try:
        validate_codes((select or []) + (ignore or []))
        enable = opt_in_codes(select)
        files = collect_rulebooks(paths)
        sources: dict[str, str] = {}
        diagnostics = []
        hidden_errors = 0
        for path in files:
            text, found = check_file(path, enable=enable)
            if text is not None:
                sources[str(path)] = text
            shown = select_codes(found, select=select, ignore=ignore)
            diagnostics += shown
            hidden_errors += sum(d.severity == "error" for d in found) - sum(
                d.severity == "error" for d in shown
            )
    except UsageError as err:
        raise fail(escape(str(err)), code=2) from None

    if output_format is OutputFormat.json:
        sys.stdout.write(render_json(diagnostics))
    elif output_format is OutputFormat.github:
        sys.stdout.write(render_github(diagnostics))
    else:
        color = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
        sys.stdout.write(render_text(diagnostics, sources, color=color, files=len(files)))
    sys.stdout.flush()
    if hidden_errors:
        # A filter hides errors from the listing, never from the verdict: every other
        # command refuses such a rulebook, so check must not pass it.
        plural = "" if hidden_errors == 1 else "s"
        stderr.print(
            f"note: {hidden_errors} error{plural} not shown (--select/--ignore); "
            "the exit status counts them",
            markup=False,
        )
    errors = hidden_errors or any(d.severity == "error" for d in diagnostics)
    if errors or (strict and diagnostics):
        raise typer.Exit(1)


def explain_code_command(
    code: Annotated[str, typer.Argument(help="A diagnostic code, e.g. E002.")],
) -> None:
    """Print the long explanation of a diagnostic code."""
    from kistrules.diagnostics import CODES
    from kistrules.render import explain_code

    if code.upper() not in CODES:
        raise fail(escape(f"unknown code {code!r}; known codes: {', '.join(CODES)}"), code=2)
    sys.stdout.write(explain_code(code))
