"""`kistrules version`."""


def version() -> None:
    """Print the kistrules version."""
    from kistrules import __version__

    print(__version__)
