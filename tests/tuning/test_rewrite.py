"""The tuned rulebook as text: canonical, clean, same structure, every change commented."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kistrules.api import diagnose, loads
from kistrules.formatter import format_source
from kistrules.outputs import sign_rules
from kistrules.tuning.parameters import number_text, structure, tunable_numbers
from kistrules.tuning.rewrite import COMMENT_PREFIX, strip_header, tuned_text

SOURCE = """\
# Dark specks: the expert's header.

rulebook "specks"
SCALE darkness = 40   # 40 gray levels
scale pixels = 60
set gray.dark = trapezoid(0, 0, 0.50, 0.6) scale gray = 255
threshold 0.80
rule dark_spot: if darkness is high and pixels is not low then anomalous (1)
rule dark_gray: if gray is dark
    and pixels is mid then anomalous (0.9)  # second rule
"""


def _tuned(source: str, changes: dict[str, float], header=("kistrules tune wrote this file",)):
    book = loads(source, "specks.rules")
    tunables = tunable_numbers(book)
    values = [changes.get(t.label, t.value) for t in tunables]
    return book, tunables, values, tuned_text(book, tunables, values, header=header)


def _values(book) -> dict[str, float]:
    """Tunable numbers by name: formatting moves statements into sections."""
    return {t.label: t.value for t in tunable_numbers(book)}


def test_the_tuned_text_is_canonical_clean_and_of_the_same_structure():
    changes = {"scale darkness": 52.0, "set gray.dark c": 0.475, "threshold": 0.65}
    book, tunables, values, text = _tuned(SOURCE, changes)
    assert format_source(text, "t.rules")[0] == text  # fmt leaves it as it is
    tuned, diagnostics = diagnose(text, "t.rules")
    assert not diagnostics
    formatted_original = loads(format_source(book.source)[0])  # fmt orders the sections
    assert structure(tuned) == structure(formatted_original)
    assert _values(tuned) == dict(zip([t.label for t in tunables], values, strict=True))
    assert [r.truth_value for r in tuned.rules] == [r.truth_value for r in book.rules]


def test_each_changed_statement_gets_a_comment_with_old_and_new_values():
    changes = {"scale darkness": 52.0, "set gray.dark c": 0.475, "set gray.dark d": 0.7}
    _, _, _, text = _tuned(SOURCE, changes)
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith(COMMENT_PREFIX)]
    assert comments == [
        "# tuned: scale 40 -> 52",
        "# tuned: c 0.50 -> 0.475, d 0.6 -> 0.7",
    ]
    # each comment sits right above its statement
    assert lines[lines.index(comments[0]) + 1].startswith("scale darkness = 52")
    assert lines[lines.index(comments[1]) + 1].startswith("set gray.dark")
    # untouched numbers keep the expert's spelling, and the expert's comments stay
    assert "threshold 0.80" in text and "# 40 gray levels" in text and "# second rule" in text
    assert text.index("# kistrules tune wrote this file") < text.index("# Dark specks")


def test_nothing_changed_writes_no_comment():
    _, _, _, text = _tuned(SOURCE, {})
    assert COMMENT_PREFIX not in text


def test_tuning_a_tuned_file_replaces_the_header_and_the_comments():
    _, _, _, first = _tuned(SOURCE, {"scale darkness": 52.0})
    signed = sign_rules("tune", first)
    _, _, _, second = _tuned(signed, {"scale darkness": 60.0})
    assert second.count("kistrules tune wrote this file") == 1
    assert [line for line in second.splitlines() if line.startswith(COMMENT_PREFIX)] == [
        "# tuned: scale 52 -> 60"
    ]
    assert strip_header(signed).startswith("# Dark specks")


@given(st.floats(min_value=0.01, max_value=1.0), st.floats(min_value=1e-3, max_value=1e4))
def test_any_valid_numbers_round_trip_exactly(threshold, scale):
    changes = {"threshold": threshold, "scale pixels": scale}
    _, tunables, values, text = _tuned(SOURCE, changes)
    assert _values(loads(text)) == dict(zip([t.label for t in tunables], values, strict=True))
    assert f"-> {number_text(scale)}" in text or scale == 60.0
    assert re.search(r"^threshold ", text, re.MULTILINE)


def test_a_raw_set_keeps_raw_and_its_units():
    source = (
        "scale darkness = 64\nset darkness.deep = raw trapezoid(32, 42, 64, 64)\n"
        "threshold 0.8\nrule r: if darkness is deep then anomalous (1)\n"
    )
    _, _, _, text = _tuned(source, {"set darkness.deep a": 33.6, "scale darkness": 70.0})
    assert "set darkness.deep = raw trapezoid(33.6, 42, 64, 64)" in text
    assert "# tuned: a 32 -> 33.6" in text and "# tuned: scale 64 -> 70" in text
