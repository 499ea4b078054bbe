"""`kistrules fmt PATH... [--check] [--diff]`: rewrite rulebooks in canonical layout.

Like `ruff format`: files are rewritten in place (atomically: a temporary
file in the same directory, then `os.replace`; symlinks, hard links, owner and
mode are kept, see `kistrules.atomic.rewrite_file`); `--check` only lists the files that
would change and exits 1 if there are any; `--diff` prints a unified diff and
writes nothing (exit 1 if there is a difference). A file with errors is left
alone: its errors are printed one per line and the exit status is 1; so is a
file whose formatted text would exceed the rulebook size limit that `check`
enforces (fmt never writes a file that check refuses). A missing path, a
directory without rulebooks, or a FIFO or device is a usage error (exit 2).
The layout itself lives in `kistrules.formatter`.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kistrules.atomic import rewrite_file
from kistrules.commands.common import fail, stderr
from kistrules.errors import UsageError


def unified_diff(path: Path, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path} (original)",
            tofile=f"{path} (formatted)",
        )
    )


def fmt_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Rulebook files, or directories to search for *.rules.")
    ],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Print a unified diff instead of writing.")
    ] = False,
) -> None:
    """Format rulebooks: lower-case keywords, aligned blocks, one rule per statement."""
    from kistrules.api import MAX_RULEBOOK_BYTES, read_rulebook
    from kistrules.files import collect_rulebooks
    from kistrules.formatter import format_source
    from kistrules.parser import decode

    try:
        files = collect_rulebooks(paths)
        contents = [(path, read_rulebook(path)) for path in files]
    except UsageError as err:
        raise fail(escape(str(err)), code=2) from None

    changed: list[Path] = []
    failed = 0
    for path, data in contents:
        text, problem = decode(data, str(path))
        formatted, errors = (None, [problem]) if text is None else format_source(text, str(path))
        if formatted is None:
            failed += 1
            for d in errors:
                stderr.print(d.one_line(), markup=False, highlight=False)
            continue
        encoded = formatted.encode("utf-8")
        if encoded == data:
            continue
        if len(encoded) > MAX_RULEBOOK_BYTES:  # `check` would refuse what we wrote
            failed += 1
            stderr.print(
                f"error: {path}: formatted text would be {len(encoded):,} bytes, above the "
                f"rulebook limit of {MAX_RULEBOOK_BYTES:,} bytes; not formatted",
                markup=False,
                highlight=False,
            )
            continue
        changed.append(path)
        if diff:
            sys.stdout.write(unified_diff(path, text, formatted))
        elif check:
            sys.stdout.write(f"would reformat {path}\n")
        else:
            if not os.access(path, os.W_OK):  # os.replace would swap a read-only file anyway
                raise fail(escape(f"{path}: cannot write (read-only file); not formatted"))
            try:
                rewrite_file(path, data, encoded)
            except OSError as err:  # read-only file or folder, full disk: the file is unchanged
                raise fail(escape(f"{path}: cannot write ({err.strerror or err})")) from None
    sys.stdout.flush()

    verb = "would be reformatted" if check or diff else "reformatted"
    unchanged = len(contents) - len(changed) - failed
    summary = f"{len(changed)} file{'s' * (len(changed) != 1)} {verb}, {unchanged} unchanged"
    if failed:
        summary += f", {failed} with errors (not formatted)"
    stderr.print(summary, markup=False, highlight=False)
    if failed or ((check or diff) and changed):
        raise typer.Exit(1)
