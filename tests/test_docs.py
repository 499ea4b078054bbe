"""The docs cite what exists: every test docs/reliability.md names is a real test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELIABILITY = ROOT / "docs" / "reliability.md"
# `tests/x.py::test_a`, then `::test_b` for another test of the same file.
_CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")
_HOSTILE_ROW = re.compile(r"`hostile\[(\w+)\]`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_cited_in_reliability_exists():
    text = RELIABILITY.read_text(encoding="utf-8")
    cited, current = [], None
    for match in _CITED_TEST.finditer(text):
        file, name = match.groups()
        if file:
            current = file
            assert (ROOT / file).is_file(), f"docs/reliability.md cites a missing file {file}"
        if name:
            assert current, f"`::{name}` before any test file"
            cited.append((current, name))
    assert len(cited) > 30
    missing = [f"{f}::{n}" for f, n in cited if n not in _test_names(ROOT / f)]
    assert not missing, f"docs/reliability.md cites tests that do not exist: {missing}"


def test_every_hostile_row_cited_in_reliability_exists():
    from tests.hostile.test_hostile_inputs import CASES

    rows = _HOSTILE_ROW.findall(RELIABILITY.read_text(encoding="utf-8"))
    assert len(rows) > 30
    missing = sorted(set(rows) - {case.name for case in CASES})
    assert not missing, f"docs/reliability.md cites hostile rows that do not exist: {missing}"
