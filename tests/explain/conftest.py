"""Shared fixtures of the explain / plot / demo tests: one fast demo run per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fast_demo(tmp_path_factory: pytest.TempPathFactory):
    """`run_demo(fast=True)` once: its data set, runs and pictures serve several tests."""
    from rich.console import Console

    from kist_train.demo import run_demo
    from kistrules.commands.common import UNWRAPPED

    out: Path = tmp_path_factory.mktemp("demo")
    # What `kistrules demo` prints into a pipe (kistrules.commands.common.stdout_console).
    console = Console(file=open(out / "console.txt", "w"), width=UNWRAPPED)  # noqa: SIM115
    try:
        result = run_demo(out / "run", fast=True, seed=3, console=console, progress=False)
    finally:
        console.file.close()
    return result
