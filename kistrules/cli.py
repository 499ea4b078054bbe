"""The `kistrules` command line: the typer app and its one-line error handling.

Each command lives in a `kistrules/commands/` module that registers itself on
`app`; a command parses its options, calls the library, renders and picks the
exit code (0 clean, 1 errors, 2 usage). Nothing a test needs lives only in a
command. torch is imported inside the commands that need it, so that `check`
and `fmt` start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from kistrules.errors import KistrulesError

app = typer.Typer(
    name="kistrules",
    help="Fuzzy-rule knowledge for anomaly localization: check, format, explain, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    """Fuzzy-rule knowledge for anomaly localization: check, format, explain, train."""


stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    stderr.print(f"[bold red]error[/]: {message}", markup=True, highlight=False)
    return typer.Exit(code)


def os_error_line(err: OSError) -> str:
    """One line for a file-system error: the file, then why (read-only, disk full, ...)."""
    name = os.fspath(err.filename) if err.filename is not None else "file system"
    return f"{name}: {err.strerror or err}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Inside a command: a user error becomes one line on stderr and its exit code.

    Commands use it so that typer never shows a traceback for a bad file, a
    read-only --out folder or a full disk.
    """
    try:
        yield
    except KistrulesError as err:
        raise fail(escape(str(err)), code=err.exit_code) from None
    except OSError as err:
        raise fail(escape(os_error_line(err))) from None


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`.
    from kistrules.commands import check, explain, fmt, lsp, report, tools, train  # noqa: F401


def main() -> None:
    """Console-script entry point: user errors are one line, never a traceback.

    typer's standalone mode already turns usage errors into exit 2; what
    reaches us is either a `KistrulesError` (one line, its exit code) or a bug.
    """
    _register_commands()
    try:
        app()
    except KistrulesError as err:
        stderr.print(f"error: {err}", markup=False, highlight=False)
        sys.exit(err.exit_code)
    except OSError as err:  # read-only folder, full disk: the user's to fix, not a bug
        stderr.print(f"error: {os_error_line(err)}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as err:
        if os.environ.get("KISTRULES_DEBUG"):
            raise
        stderr.print(
            f"internal error: {type(err).__name__}: {err} "
            "(please report it; set KISTRULES_DEBUG=1 for a traceback)",
            markup=False,
        )
        sys.exit(3)
