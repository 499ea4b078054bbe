"""CLI commands (being written)."""

from kistrules.cli import app


@app.command("version")
def version() -> None:
    """Print the kistrules version."""
    from kistrules import __version__

    print(__version__)
