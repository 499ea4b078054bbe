"""What every command shares: stderr, the one-line error, and turning user errors into it.

A command parses its options, calls the library, renders and picks the exit
code (0 clean, 1 errors, 2 usage); `one_line_errors` makes sure a bad file, a
read-only --out folder or a full disk is one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kist_train.config import MASK_THRESHOLD_HELP, check_mask_threshold
from kistrules.errors import KistrulesError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

# Width of text written to a pipe or a file: no line is ever cut or wrapped there.
UNWRAPPED = 1_000_000


def stdout_console() -> Console:
    """rich on stdout: fitted to a terminal's width, never cut when stdout is not a terminal.

    rich takes 80 columns for a pipe and cuts what does not fit with "...": rule
    names, table cells and suggestions lost their ends in `explain | less` or a
    file. Piped, a table is as wide as its widest cell and a line as long as it is.
    For tables and lines of text only: a rule or an expanding panel would span
    the whole UNWRAPPED width.
    """
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(width=UNWRAPPED, highlight=False)


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


def _mask_threshold(value: float) -> float:
    with one_line_errors():
        return check_mask_threshold(value)


# --mask-threshold, one definition for every command that reads masks (explain, evaluate,
# audit, report; train's comes from TrainConfig with the same help and default). The
# callback refuses a value outside (0, 1] in one line before any work.
MaskThreshold = Annotated[
    float,
    typer.Option(
        "--mask-threshold",
        help=MASK_THRESHOLD_HELP,
        callback=_mask_threshold,
    ),
]
