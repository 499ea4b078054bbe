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


# --- nothing in the repository points outside it ---------------------------------

# A path out of the repository (the shared data and docs beside it, a machine's /work).
_OUTSIDE = re.compile(r"\.\./shared|/work/|shared/docs")
_DOC_NAME = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")
_SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules", ".pytest_cache", ".ruff_cache"}
_TEXT = {".py", ".md", ".rules", ".lark", ".toml", ".sh", ".json", ".yml", ".yaml", ".txt"}


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of what a reader reads: a Python file's comments and docstrings, a
    shell script's comments, any other text file whole."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".sh" or path.name == "dev":
        lines = enumerate(text.splitlines(), 1)
        return [(n, line) for n, line in lines if line.lstrip().startswith("#")]
    if path.suffix != ".py":
        return list(enumerate(text.splitlines(), 1))
    import io
    import tokenize

    lines = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            lines.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                start = node.body[0].lineno
                lines += [(start + i, line) for i, line in enumerate(doc.splitlines())]
    return lines


def _repository_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*"))
        if path.is_file()
        and not _SKIP_DIRS.intersection(path.relative_to(ROOT).parts)
        and (path.suffix in _TEXT or path.name == "dev")
    ]


def test_no_doc_docstring_or_comment_points_outside_the_repository():
    files = _repository_files()
    assert len(files) > 100
    docs_here = {path.name for path in files if path.suffix == ".md"}
    found = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        where = path.relative_to(ROOT).as_posix()
        for number, line in _prose(path):
            outside = _OUTSIDE.findall(line)
            outside += [name for name in _DOC_NAME.findall(line) if name not in docs_here]
            if "demo-notes" in line:
                outside.append("demo-notes")
            found += [f"{where}:{number}: {hit}" for hit in outside]
    assert found == []
