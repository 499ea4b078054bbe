"""`kistrules lsp` as a command: a one-line error without pygls, and no pygls for `check`."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# `None` in sys.modules makes an import fail as if the package were not installed.
_RUN_WITHOUT = """
import sys
sys.modules[{name!r}] = None
sys.argv = ["kistrules", "lsp"]
from kistrules.cli import main
main()
"""


@pytest.mark.parametrize("name", ["pygls", "lsprotocol"])
def test_lsp_without_pygls_is_a_one_line_usage_error(name):
    result = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT.format(name=name)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install kistrules[lsp]" in lines[0] and name in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_check_and_fmt_do_not_import_the_language_server():
    code = (
        "import sys\n"
        "import kistrules.cli\n"
        "names = ('pygls', 'lsprotocol', 'kistrules.lsp.server')\n"
        "print(sorted(m for m in names if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_lsp_is_listed_by_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "kistrules", "lsp", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "language server" in result.stdout.lower()
