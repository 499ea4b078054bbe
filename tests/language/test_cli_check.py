"""`kistrules check` and `kistrules explain-code` through the CLI: exit codes, formats,
filters, ignore comments, and the mistakes a new user makes (never a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kistrules.cli import app

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = FIXTURES / "cli" / "magnetic_tile.rules"
KISTRULES = Path(sys.executable).with_name("kistrules")


def run(*args: str | Path):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# The mistakes a new user makes, each with the place the message must name and the exit code.
NEW_USER_MISTAKES = [
    ("keyword typo", "IF gray is low THN anomalous\n", "bad.rules:1:16", 1),
    ("unknown property", "IF grya is low THEN anomalous\n", "bad.rules:1:4", 1),
    ("missing THEN", "IF gray is low anomalous (0.8)\n", "bad.rules:1:16", 1),
    (
        "unclosed parenthesis",
        "IF (gray is low AND area is high THEN anomalous\n",
        "bad.rules:1:34",
        1,
    ),
    (
        "reversed trapezoid",
        "set mid = trapezoid(0.4, 0.2, 0.6, 0.8)\nIF gray is mid THEN anomalous\n",
        "bad.rules:1:26",
        1,
    ),
    ("truth value 1.5", "IF gray is low THEN anomalous (1.5)\n", "bad.rules:1:32", 1),
    ("missing file", None, "bad.rules: no such file", 2),
    ("binary file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.rules:1:1", 1),
]


@pytest.mark.parametrize(
    ("content", "where", "exit_code"),
    [m[1:] for m in NEW_USER_MISTAKES],
    ids=[m[0] for m in NEW_USER_MISTAKES],
)
def test_new_user_mistakes_name_the_place_and_exit_right(tmp_path, content, where, exit_code):
    path = tmp_path / "bad.rules"
    if content is not None:
        write(tmp_path, "bad.rules", content)
    result = run("check", "--no-color", path)
    assert result.exit_code == exit_code
    assert where in result.output
    # The one-line form (for scripts) names file:line:column too.
    lines = run("check", "--format", "github", path).output
    if content is not None:
        line, col = where.split(":")[1:]
        assert f"line={line},col={col}" in lines


def test_new_user_mistakes_in_a_real_process(tmp_path):
    """The installed console script: one line on stderr, never a traceback."""
    missing = subprocess.run(
        [KISTRULES, "check", tmp_path / "nope.rules"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.rules'}: no such file or directory"
    ]
    binary = write(tmp_path, "bin.rules", bytes(range(256)))
    proc = subprocess.run([KISTRULES, "check", binary], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert f"{binary}:1:1" in proc.stdout and "E014" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr + missing.stdout + missing.stderr


def test_clean_file_exits_0_with_a_summary():
    result = run("check", EXAMPLE)
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1].endswith("in 1 file")
    assert " 0 errors" in " " + result.output.strip().splitlines()[-1]


def test_directories_are_searched_for_rules_files_in_sorted_order(tmp_path):
    write(tmp_path, "b.rules", "IF grya is low THEN anomalous\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "a.rules", "IF gray is low THEN anomalous (2)\n")
    write(tmp_path, "notes.txt", "IF nonsense")
    result = run("check", "--format", "json", tmp_path)
    assert result.exit_code == 1
    found = json.loads(result.output)
    assert [(Path(d["path"]).name, d["code"]) for d in found] == [
        ("b.rules", "E002"),
        ("a.rules", "E004"),
    ]
    text = run("check", "--no-color", tmp_path).output
    assert text.strip().splitlines()[-1] == "2 errors, 0 warnings in 2 files"


def test_json_fields(tmp_path):
    path = write(tmp_path, "x.rules", "IF grya is low THEN anomalous\n")
    (d,) = json.loads(run("check", "--format", "json", path).output)
    assert d == {
        "path": str(path),
        "line": 1,
        "column": 4,
        "end_line": 1,
        "end_column": 8,
        "code": "E002",
        "severity": "error",
        "message": 'unknown property "grya"',
        "hint": 'did you mean "gray"?',
        "label": "not a built-in property",
    }


def test_warnings_exit_0_unless_strict(tmp_path):
    path = write(tmp_path, "w.rules", "IF gray is low THEN anomalous (0.5)\n")  # W101 (and W107)
    result = run("check", "--format", "json", path)
    codes = {d["code"] for d in json.loads(result.output)}
    assert "W101" in codes and all(c.startswith("W") for c in codes)
    assert result.exit_code == 0
    assert run("check", "--strict", path).exit_code == 1
    assert run("check", "--strict", "--ignore", "W", path).exit_code == 0


def test_select_and_ignore(tmp_path):
    path = write(tmp_path, "s.rules", "IF grya is low THEN anomalous (2)\nscale gray = 0\n")

    def codes(*flags):
        result = run("check", "--format", "json", *flags, path)
        return result.exit_code, [d["code"] for d in json.loads(result.stdout)]

    assert codes() == (1, ["E002", "E004", "E006"])
    assert codes("--select", "E002") == (1, ["E002"])
    assert codes("--select", "E002,E006") == (1, ["E002", "E006"])
    assert codes("--ignore", "E002", "--ignore", "E004") == (1, ["E006"])
    # Filters choose what is listed, never the verdict: hidden errors still fail the check.
    assert codes("--ignore", "E") == (1, [])
    assert codes("--select", "W") == (1, [])
    hidden = run("check", "--ignore", "E", path)
    assert "3 errors not shown" in hidden.stderr and "0 errors" in hidden.stdout


def test_ignore_comment_in_a_file(tmp_path):
    path = write(tmp_path, "i.rules", "IF gray is low THEN anomalous (0.5)  # kist: ignore[W101]\n")
    result = run("check", "--format", "json", "--strict", path)
    assert (result.exit_code, json.loads(result.output)) == (0, [])
    path = write(tmp_path, "e.rules", "IF grya is low THEN anomalous  # kist: ignore[E002]\n")
    result = run("check", "--format", "json", "--select", "E", path)
    assert result.exit_code == 1
    assert [d["code"] for d in json.loads(result.output)] == ["E002", "E027"]


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--select", "X123", "{path}"],
        ["check", "--ignore", "E9", "{path}"],
        ["check", "--format", "xml", "{path}"],
        ["check", "--bogus", "{path}"],
        ["check"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    path = write(tmp_path, "u.rules", "IF gray is low THEN anomalous\n")
    result = run(*[a.format(path=path) for a in args])
    assert result.exit_code == 2


def test_explain_code():
    result = run("explain-code", "E002")
    assert result.exit_code == 0
    assert result.output.startswith("E002 (error): unknown property\n")
    assert "did you mean" in result.output
    unknown = run("explain-code", "E999")
    assert unknown.exit_code == 2
    assert len(unknown.output.strip().splitlines()) == 1
    assert "unknown code 'E999'" in unknown.output


def test_color_only_when_asked_for_a_terminal(tmp_path):
    path = write(tmp_path, "c.rules", "IF grya is low THEN anomalous\n")
    assert "\x1b[" not in run("check", path).output  # CliRunner's stdout is not a tty
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [KISTRULES, "check", path], capture_output=True, text=True, env=env, check=False
    )
    assert "\x1b[" not in proc.stdout and proc.returncode == 1


def test_python_dash_m_runs_the_same_cli(tmp_path):
    """`python -m kistrules` is the console script: same output, same exit codes."""
    ok = subprocess.run(
        [sys.executable, "-m", "kistrules", "check", EXAMPLE], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "0 errors" in ok.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "kistrules", "check", tmp_path / "nope.rules"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


# --- rulebooks that check passes no more: later commands refuse them alike ----------------

UNUSABLE = {
    "no rules": 'rulebook "empty"\nscale gray = 255\n',
    "ignored error": "IF gray is lowx THEN anomalous   # kist: ignore[E003]\n",
}


@pytest.mark.parametrize("content", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_a_rulebook_with_errors_is_refused_by_every_command_in_one_line(tmp_path, content):
    from PIL import Image

    path = write(tmp_path, "u.rules", content)
    assert run("check", path).exit_code == 1
    image, mask = tmp_path / "tile.png", tmp_path / "tile_mask.png"
    Image.new("L", (16, 16), 90).save(image)
    Image.new("L", (16, 16), 0).save(mask)
    (tmp_path / "data" / "train" / "good").mkdir(parents=True)
    Image.new("L", (16, 16), 90).save(tmp_path / "data" / "train" / "good" / "a.png")
    commands = [
        ["plot", path, "--out", tmp_path / "sets.png"],
        ["explain", image, "--rulebook", path, "--mask", mask],
        ["train", "--data", tmp_path / "data", "--rulebook", path, "--out", tmp_path / "run"],
    ]
    for command in commands:
        proc = subprocess.run(
            [str(KISTRULES), *map(str, command)], capture_output=True, text=True, timeout=300
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (command[0], proc.stderr)
        assert len(lines) == 1 and "u.rules:1:" in lines[0] and "error[E0" in lines[0]
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "sets.png").exists() and not (tmp_path / "run").exists()
