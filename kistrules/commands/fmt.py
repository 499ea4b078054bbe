"""`kistrules fmt PATH... [--check] [--diff]`: rewrite rulebooks in canonical layout.

Like `ruff format`: files are rewritten in place (atomically: a temporary
file in the same directory, then `os.replace`); `--check` only lists the files
that would change and exits 1 if there are any; `--diff` prints a unified diff
and writes nothing (exit 1 if there is a difference). A file with errors is
left alone: its errors are printed one per line and the exit status is 1.
A missing path is a usage error (exit 2). The layout itself lives in
`kistrules.formatter`.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kistrules.cli import app, fail, stderr
from kistrules.errors import UsageError


def write_atomically(path: Path, text: str) -> None:
    """Replace a file's contents so that a reader sees the old file or the new, never half.

    The temporary file lives in the same directory (os.replace cannot cross
    file systems) and takes the original's permission bits.
    """
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unified_diff(path: Path, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path} (original)",
            tofile=f"{path} (formatted)",
        )
    )


@app.command("fmt")
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
    from kistrules.api import read_rulebook
    from kistrules.commands.check import collect_files
    from kistrules.formatter import format_source
    from kistrules.parser import decode

    try:
        files = collect_files(paths)
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
        if formatted.encode("utf-8") == data:
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
                write_atomically(path, formatted)
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
