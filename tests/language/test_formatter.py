"""The formatter against input/expected fixtures, its pieces, and `kistrules fmt`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kistrules.commands.check  # registers `check`; fmt shares its file walk
import kistrules.commands.fmt  # noqa: F401 - registers `fmt` on the app
from kistrules.api import check
from kistrules.ast import Number, Rule, Rulebook, Term
from kistrules.cli import app
from kistrules.formatter import (
    ALIGN_MAX_NAME,
    WRAP_WIDTH,
    canonical_number,
    format_number,
    format_rulebook,
    format_source,
)
from kistrules.parser import parse
from kistrules.span import Span

FIXTURES = Path(__file__).parent / "fixtures" / "format"
CASES = sorted(FIXTURES.glob("*.input"))
SECTIONS = ["rulebook", "scale", "set", "threshold", "define", "rule"]


def _parse(text: str, path: str = "t.rules") -> Rulebook:
    rulebook, errors = parse(text, path)
    assert errors == [], errors
    return rulebook


def _structure(rulebook: Rulebook) -> list:
    """Span- and spelling-free statements in fmt's section order."""

    def strip(dump):
        if isinstance(dump, dict):
            return {k: strip(v) for k, v in dump.items() if k not in ("span", "text")}
        if isinstance(dump, list | tuple):
            return [strip(v) for v in dump]
        return dump

    ordered = sorted(rulebook.statements, key=lambda s: SECTIONS.index(s.kind))
    return [strip(s.model_dump()) for s in ordered]


def test_there_are_fixtures():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_fixture(case: Path):
    source = case.read_text(encoding="utf-8")
    expected = case.with_suffix(".expected").read_text(encoding="utf-8")
    formatted = format_rulebook(_parse(source))
    assert formatted == expected
    again = _parse(formatted)
    assert _structure(again) == _structure(_parse(source))
    assert format_rulebook(again) == formatted
    # every comment survives, verbatim up to trailing spaces
    original = [c.text.rstrip() for c in _parse(source).comments]
    assert sorted(c.text for c in again.comments) == sorted(original)
    # and says the same: an ignore comment silences the same warnings after a wrap
    assert sorted(d.code for d in check(formatted)) == sorted(d.code for d in check(source))


def test_fixture_lines_fit_unless_they_cannot():
    # a wrapped rule's lines fit, with or without an ignore comment; a single term
    # too long to fit is the one exception
    for case in CASES:
        for line in case.with_suffix(".expected").read_text().splitlines():
            code = line.split("  #")[0]
            if len(code) > WRAP_WIDTH:
                assert " and " not in code and " or " not in code, line


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.8", "0.8"),
        ("0.80", "0.80"),  # the expert's spelling is kept
        ("1e-3", "1e-3"),
        ("+1", "1"),
        ("1.", "1"),
        (".5", "0.5"),
        ("-.5", "-0.5"),
        ("007", "7"),
        ("00.25", "0.25"),
        ("1E+03", "1e03"),
        ("2.E-1", "2e-1"),
        ("0", "0"),
    ],
)
def test_canonical_number(text, canonical):
    assert canonical_number(text) == canonical
    assert float(canonical) == float(text)
    assert canonical_number(canonical) == canonical  # idempotent


def test_number_with_a_foreign_spelling_falls_back_to_its_value():
    span = Span(path="x", start=0, end=0, line=1, column=1, end_line=1, end_column=1)
    assert format_number(Number(span=span, value=0.5, text="half")) == "0.5"
    assert format_number(Number(span=span, value=0.5, text="0.4")) == "0.5"
    assert canonical_number("abc") is None and canonical_number(".") is None


def test_hand_built_ast_without_source():
    span = Span(path="x", start=0, end=0, line=1, column=1, end_line=1, end_column=1)

    def ident(name):
        from kistrules.ast import Identifier

        return Identifier(span=span, name=name, text=name.upper())

    term = Term(span=span, property=ident("gray"), set=ident("low"), negated=True)
    rule = Rule(span=span, condition=term, position=1)
    rulebook = Rulebook(span=span, path="x", statements=(rule,))
    assert format_rulebook(rulebook) == "if gray is not low then anomalous\n"


def test_format_source_refuses_a_file_with_errors():
    formatted, errors = format_source("IF grya is low THEN anomalous", "bad.rules")
    assert formatted is None
    assert [d.code for d in errors] == ["E002"]
    formatted, errors = format_source("IF gray is low THEN anomalous (0.5)", "w.rules")
    assert errors == [] and formatted == "if gray is low then anomalous (0.5)\n"  # warnings ok


def test_format_source_refuses_output_that_changes_the_meaning(monkeypatch):
    import kistrules.formatter as formatter

    monkeypatch.setattr(formatter, "format_rulebook", lambda rb: "if gray is low then anomalous\n")
    with pytest.raises(RuntimeError, match="change the meaning"):
        formatter.format_source("scale gray = 255\nIF gray is high THEN anomalous", "x.rules")


def test_a_name_too_long_to_align_does_not_push_the_block_right():
    """Issue 16: one 10,000-character set name padded all 150 other lines to its width
    (14.6 kB -> 1.5 MB). Names longer than ALIGN_MAX_NAME no longer set the `=` column."""
    long = "gray." + "n" * 200
    source = (
        f"set {long} = triangle(0, 0.5, 1)\n"
        "set gray.dim = triangle(0, 0.2, 0.4)  # dark\n"
        "set area.large = triangle(0.1, 0.2, 0.3)\n"
        "IF gray is dim THEN anomalous (0.9)\n"
    )
    formatted, errors = format_source(source, "long.rules")
    assert errors == [] and formatted is not None
    lines = formatted.splitlines()
    assert lines[0] == f"set {long} = triangle(0, 0.5, 1)"
    # the short names align on `=` among themselves, and their comment sits after them
    short = [line for line in lines if line.startswith("set") and long not in line]
    assert len({line.index("=") for line in short}) == 1
    assert short[0].index("=") == len("set area.large ")
    assert max(len(line) for line in short) <= WRAP_WIDTH
    assert len(formatted) < len(source) + 3 * ALIGN_MAX_NAME
    assert format_rulebook(_parse(formatted)) == formatted  # still idempotent


# --- kistrules fmt -------------------------------------------------------------------

UGLY = "SCALE gray=255\nIF Gray IS Low THEN ANOMALOUS (.9)\n"
PRETTY = "scale gray = 255\n\nif gray is low then anomalous (0.9)\n"


def run(*args: str):
    return CliRunner().invoke(app, ["fmt", *args])


def test_fmt_rewrites_in_place_atomically(tmp_path: Path):
    path = tmp_path / "a.rules"
    path.write_text(UGLY)
    os.chmod(path, 0o640)
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert path.read_text() == PRETTY
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.rules"]  # no temp file left
    assert run(str(path)).exit_code == 0 and path.read_text() == PRETTY


def test_fmt_check_lists_files_and_writes_nothing(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    ugly, pretty = tmp_path / "sub" / "ugly.rules", tmp_path / "pretty.rules"
    ugly.write_text(UGLY)
    pretty.write_text(PRETTY)
    (tmp_path / "notes.txt").write_text("IF not a rulebook")  # not *.rules: skipped
    result = run("--check", str(tmp_path))
    assert result.exit_code == 1
    assert "ugly.rules" in result.output and "pretty.rules" not in result.stdout
    assert ugly.read_text() == UGLY
    assert run("--check", str(pretty)).exit_code == 0


def test_fmt_diff_prints_and_writes_nothing(tmp_path: Path):
    path = tmp_path / "a.rules"
    path.write_text(UGLY)
    result = run("--diff", str(path))
    assert result.exit_code == 1
    assert "-IF Gray IS Low THEN ANOMALOUS (.9)" in result.stdout
    assert "+if gray is low then anomalous (0.9)" in result.stdout
    assert path.read_text() == UGLY


def test_fmt_normalises_line_endings(tmp_path: Path):
    path = tmp_path / "a.rules"
    path.write_bytes(PRETTY.replace("\n", "\r\n").encode())
    assert run("--check", str(path)).exit_code == 1
    assert run(str(path)).exit_code == 0
    assert path.read_bytes() == PRETTY.encode()


def test_fmt_leaves_a_file_with_errors_alone(tmp_path: Path):
    bad, good = tmp_path / "bad.rules", tmp_path / "good.rules"
    bad.write_text("IF grya is low THEN anomalous\nIF gray is lwo THEN anomalous\n")
    good.write_text(UGLY)
    result = run(str(tmp_path))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "bad.rules:" in line]
    assert len(lines) == 2 and "E002" in lines[0] and "E003" in lines[1]
    assert "Traceback" not in result.output
    assert bad.read_text().startswith("IF grya")
    assert good.read_text() == PRETTY  # the good file is still formatted


def test_fmt_binary_file_is_an_error_not_a_crash(tmp_path: Path):
    path = tmp_path / "b.rules"
    path.write_bytes(b"\xff\xfe\x00binary")
    result = run(str(path))
    assert result.exit_code == 1
    assert "E014" in result.output and "Traceback" not in result.output


def test_fmt_missing_path_is_a_usage_error(tmp_path: Path):
    result = run(str(tmp_path / "missing.rules"))
    assert result.exit_code == 2
    assert "missing.rules" in result.output
