"""`kistrules lsp`: the language server for `.rules` files, over stdin/stdout.

pygls is an optional dependency (`pip install kistrules[lsp]`), imported only
here and only when the command runs, so that `check` and `fmt` start fast.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from kistrules.commands.common import fail

_SERVER_PACKAGES = frozenset({"pygls", "lsprotocol", "cattrs", "attrs"})


def lsp_command(
    stdio: Annotated[
        bool,
        typer.Option(
            "--stdio",
            help="Talk over stdin/stdout: the only transport, so this changes nothing "
            "(accepted because some clients pass it).",
        ),
    ] = False,
) -> None:
    """Run the language server for editors (diagnostics, hover, completion, ...) over stdio."""
    try:
        from kistrules.lsp.server import serve
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in _SERVER_PACKAGES:
            raise
        raise fail(
            escape(
                f"the language server needs {missing}, not installed: pip install kistrules[lsp]"
            ),
            code=2,
        ) from None
    serve()
