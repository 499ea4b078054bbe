"""`kistrules report`: the page is written, and never over an input or a file it did not write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kist_train.rundir import MARKER
from kistrules.cli import app

runner = CliRunner()


def _report(*args) -> object:
    return runner.invoke(app, ["report", *map(str, args), "--device", "cpu", "--no-progress"])


def _one_line_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and fragment in lines[0], lines


@pytest.fixture(scope="module")
def written(tiny_runs, tmp_path_factory):
    """A report written by the command, with data and control."""
    out = tmp_path_factory.mktemp("cli") / "report.html"
    result = _report(tiny_runs.kist, "--data", tiny_runs.data, "--control", tiny_runs.control,
                     "--phases", "last", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result


def test_the_command_writes_a_page_it_recognises_as_its_own(written):
    from kistrules.outputs import html_written_by

    out, result = written
    assert html_written_by("report")(out)
    assert not html_written_by("other")(out)
    assert f"report written to {out}" in result.stderr.replace("\n", "")
    text = out.read_text(encoding="utf-8")
    assert "Evaluation per phase" in text and "--phases last" in text


def test_an_earlier_report_is_replaced(written, tiny_runs):
    out, _ = written
    before = out.stat().st_mtime_ns
    result = _report(tiny_runs.kist, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mtime_ns != before and "no --data given" in out.read_text()


def _run_files(run: Path) -> list[Path]:
    return [run / MARKER, run / "log.jsonl", *sorted((run / "checkpoints").iterdir())]


@pytest.mark.parametrize("which", ["run", "control", "data"])
def test_no_file_of_an_input_is_ever_written(tiny_runs, which):
    """--out on any file the report reads, also through a symlink: refused, the file unchanged."""
    files = {
        "run": _run_files(tiny_runs.kist)[:3],
        "control": _run_files(tiny_runs.control)[:3],
        "data": [next((tiny_runs.data / "test" / "blob").iterdir())],
    }[which]
    for target in files:
        before = target.read_bytes()
        result = _report(tiny_runs.kist, "--data", tiny_runs.data, "--control", tiny_runs.control,
                         "--out", target)  # fmt: skip
        _one_line_error(result, 2, "is the input")
        assert target.read_bytes() == before


def test_a_link_or_other_spelling_of_a_run_file_is_refused(tiny_runs, tmp_path: Path):
    log = tiny_runs.kist / "log.jsonl"
    before = log.read_bytes()
    link = tmp_path / "link.html"
    link.symlink_to(log)
    for out in (link, tiny_runs.kist / "checkpoints" / ".." / "log.jsonl"):
        _one_line_error(_report(tiny_runs.kist, "--out", out), 2, "is the input")
    assert log.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        "<!DOCTYPE html><html><body>my notes</body></html>",  # an HTML page of someone else's
        '<!DOCTYPE html>\n<meta name="generator" content="kistrules explain">',  # another command
        "x" * 5000 + '<meta name="generator" content="kistrules report">',  # mark not at the top
        "",
    ],
)
def test_a_file_the_report_did_not_write_is_never_replaced(tiny_runs, tmp_path: Path, content):
    out = tmp_path / "report.html"
    out.write_text(content)
    _one_line_error(_report(tiny_runs.kist, "--out", out), 2, "not an earlier output")
    assert out.read_text() == content


def test_a_folder_or_a_link_to_an_earlier_report_is_refused(written, tiny_runs, tmp_path: Path):
    earlier, _ = written
    _one_line_error(_report(tiny_runs.kist, "--out", tmp_path), 2, "is a directory")
    link = tmp_path / "link.html"
    link.symlink_to(earlier)
    _one_line_error(_report(tiny_runs.kist, "--out", link), 2, "is a symbolic link")


def test_out_is_checked_before_any_work(tiny_runs, tmp_path: Path):
    """A refused --out fails at once: the missing data set is never looked at."""
    out = tmp_path / "mine.html"
    out.write_text("mine")
    result = _report(tiny_runs.kist, "--data", tmp_path / "missing", "--out", out)
    _one_line_error(result, 2, "mine.html")


def test_a_report_in_a_new_folder_inside_the_run_is_allowed(tiny_runs):
    out = tiny_runs.kist / "reports" / "r.html"
    try:
        assert _report(tiny_runs.kist, "--out", out).exit_code == 0
        assert out.is_file()
    finally:
        out.unlink(missing_ok=True)
        os.rmdir(out.parent)


def test_bad_inputs_are_one_line(tiny_runs, tmp_path: Path):
    out = tmp_path / "r.html"
    _one_line_error(_report(tmp_path / "nope", "--out", out), 2, "does not exist")
    _one_line_error(_report(tiny_runs.kist, "--out", out, "--phases", "some"), 2, "--phases")
    _one_line_error(_report(tiny_runs.kist, "--out", out, "--threads", "-1"), 2, "--threads")
    (tmp_path / "notarun").mkdir()
    _one_line_error(
        _report(tiny_runs.kist, "--control", tmp_path / "notarun", "--out", out), 1, "notarun"
    )
    result = _report(tiny_runs.kist, "--data", tmp_path / "nodata", "--out", out)
    _one_line_error(result, 2, "data directory not found")  # as train and evaluate say it
    assert not out.exists()
