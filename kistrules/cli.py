"""The `kistrules` command line: the typer app and its one-line error handling.

Each command is a function in a `kistrules/commands/` module; this module
registers them all on `app` (COMMANDS). A command parses its options, calls the
library, renders and picks the exit code (0 clean, 1 errors, 2 usage). Nothing
a test needs lives only in a command. torch is imported inside the commands that
need it, so that `check` and `fmt` start fast.
"""

from __future__ import annotations

import os
import sys

import typer

from kistrules.commands.common import os_error_line, stderr
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


# (command name, module under kistrules.commands, function): registered below, so that
# importing the app gives every command and no command module imports this one.
COMMANDS = (
    ("check", "check", "check_command"),
    ("explain-code", "check", "explain_code_command"),
    ("fmt", "fmt", "fmt_command"),
    ("explain", "explain", "explain_command"),
    ("plot", "explain", "plot_command"),
    ("demo", "explain", "demo_command"),
    ("train", "train", "train_command"),
    ("predict", "train", "predict_command"),
    ("evaluate", "train", "evaluate_command"),
    ("audit", "train", "audit_command"),
    ("tune", "tune", "tune_command"),
    ("suggest", "tune", "suggest_command"),
    ("report", "report", "report_command"),
    ("lsp", "lsp", "lsp_command"),
    ("version", "tools", "version"),
)


def _register(app: typer.Typer) -> None:
    from importlib import import_module

    for name, module, function in COMMANDS:
        app.command(name)(getattr(import_module(f"kistrules.commands.{module}"), function))


_register(app)


def main() -> None:
    """Console-script entry point: user errors are one line, never a traceback.

    typer's standalone mode already turns usage errors into exit 2; what
    reaches us is either a `KistrulesError` (one line, its exit code) or a bug.
    """
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
