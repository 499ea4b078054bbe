"""Snapshot tests of the three output formats (exact expected strings)."""

from __future__ import annotations

import json

from kistrules.api import check
from kistrules.diagnostics import make
from kistrules.render import explain_code, render_github, render_json, render_text, summary
from kistrules.span import LineIndex

TEXT = "scale gray = 0\nIF grya is low THEN anomalous\nIF gray is low\n"


def diagnostics():
    found = [
        d.model_copy(update={"span": d.span.model_copy(update={"path": "a.rules"})})
        for d in check(TEXT)
    ]
    warning = make(
        "W105",
        'set "mid" is defined but never used',
        LineIndex(TEXT, "a.rules").span(0, 5),
        label="unused",
    )
    return [*found, warning]


def test_text_snapshot():
    expected = """\
error[E006]: scale of "gray" must be > 0, got 0
 --> a.rules:1:14
  |
1 | scale gray = 0
  |              ^ not positive
  |
  = hint: gamma divides the measured value: v' = clip(v / gamma, 0, 1)

error[E002]: unknown property "grya"
 --> a.rules:2:4
  |
2 | IF grya is low THEN anomalous
  |    ^^^^ not a built-in property
  |
  = hint: did you mean "gray"?

error[E001]: expected THEN, AND or OR, found end of file
 --> a.rules:3:15
  |
3 | IF gray is low
  |               ^ expected THEN, AND or OR here
  |
  = hint: a rule reads IF condition THEN anomalous

warning[W105]: set "mid" is defined but never used
 --> a.rules:1:1
  |
1 | scale gray = 0
  | ^^^^^ unused

3 errors, 1 warning in 2 files
"""
    assert render_text(diagnostics(), {"a.rules": TEXT}, color=False, files=2) == expected


def test_text_without_source_multiline_span_tabs_and_wide_gutter():
    text = "\n" * 9 + "IF\tgray is\nlow THEN anomalous"
    index = LineIndex(text, "b.rules")
    spanning = make("E003", "two lines", index.span(12, 24), label="here")
    binary = make(
        "E014",
        "file is not UTF-8 text: byte 0xff at offset 0",
        LineIndex("", "c.rules").span(0, 0),
        hint="save the rulebook as UTF-8 text",
    )
    expected = """\
error[E003]: two lines
  --> b.rules:10:4
   |
10 | IF gray is
   |    ^^^^^^^ here

error[E014]: file is not UTF-8 text: byte 0xff at offset 0
 --> c.rules:1:1
  = hint: save the rulebook as UTF-8 text

2 errors, 0 warnings in 1 file
"""
    assert render_text([spanning, binary], {"b.rules": text}, color=False) == expected


def test_text_with_color_wraps_parts_in_ansi_codes():
    (d,) = check("IF grya is low THEN anomalous")
    out = render_text([d], {"<string>": "IF grya is low THEN anomalous"}, color=True)
    assert out.startswith('\x1b[1;31merror[E002]\x1b[0m\x1b[1m: unknown property "grya"\x1b[0m\n')
    assert "\x1b[1;31m^^^^\x1b[0m \x1b[1;31mnot a built-in property\x1b[0m" in out
    assert out.endswith("\x1b[1m1 error, 0 warnings in 1 file\x1b[0m\n")


def test_summary_plurals():
    assert summary([], 1) == "0 errors, 0 warnings in 1 file"
    assert summary(diagnostics(), 3) == "3 errors, 1 warning in 3 files"


def test_json_snapshot():
    out = render_json(diagnostics()[1:2])
    assert (
        out
        == """\
[
  {
    "path": "a.rules",
    "line": 2,
    "column": 4,
    "end_line": 2,
    "end_column": 8,
    "code": "E002",
    "severity": "error",
    "message": "unknown property \\"grya\\"",
    "hint": "did you mean \\"gray\\"?",
    "label": "not a built-in property"
  }
]
"""
    )
    assert [d["code"] for d in json.loads(render_json(diagnostics()))] == [
        "E006",
        "E002",
        "E001",
        "W105",
    ]
    assert render_json([]) == "[]\n"


def test_github_snapshot_and_escaping():
    out = render_github(diagnostics())
    assert out.splitlines() == [
        '::error file=a.rules,line=1,col=14,endLine=1,endColumn=15,title=E006::scale of "gray" '
        "must be > 0, got 0 (hint: gamma divides the measured value: v' = clip(v / gamma, 0, 1))",
        "::error file=a.rules,line=2,col=4,endLine=2,endColumn=8,title=E002::unknown property "
        '"grya" (hint: did you mean "gray"?)',
        "::error file=a.rules,line=3,col=15,endLine=3,endColumn=15,title=E001::expected THEN, "
        "AND or OR, found end of file (hint: a rule reads IF condition THEN anomalous)",
        '::warning file=a.rules,line=1,col=1,endLine=1,endColumn=6,title=W105::set "mid" is '
        "defined but never used",
    ]
    odd = make("E001", "50% done\nnext", LineIndex("x", "d:ir,x.rules").span(0, 1))
    assert render_github([odd]) == (
        "::error file=d%3Air%2Cx.rules,line=1,col=1,endLine=1,endColumn=2,title=E001::"
        "50%25 done%0Anext\n"
    )


def test_explain_code_text():
    out = explain_code("e004")
    assert out.startswith("E004 (error): truth value outside (0, 1]\n\n")
    assert "IF gray is low THEN anomalous (0.9)" in out
