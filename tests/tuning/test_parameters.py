"""The tunable numbers of a rulebook: which ones, and the rulebook with them moved."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kistrules.api import loads
from kistrules.resolve import resolve
from kistrules.tuning.parameters import number_text, structure, tunable_numbers, with_values

ROOT = Path(__file__).resolve().parents[2]

BOOK = """\
rulebook "walk"
scale gray     = 255
scale area     = 0.02   # used
scale symmetry = 1      # no rule reads symmetry
set gray.dark  = trapezoid(0, 0, 0.45, 0.55)
set unused     = triangle(0.1, 0.2, 0.3)
set bell       = gaussian(0.5, 0.1)
threshold 0.8
rule a: if gray is dark and area is bell then anomalous (0.9)
rule b: if gray is very low or not (area is high) then anomalous
"""


def test_tunable_numbers_are_the_used_scales_sets_and_threshold():
    book = loads(BOOK)
    labels = [t.label for t in tunable_numbers(book)]
    assert labels == [
        "scale gray",
        "scale area",
        "set gray.dark a",
        "set gray.dark b",
        "set gray.dark c",
        "set gray.dark d",
        "set bell mean",
        "set bell sigma",
        "threshold",
    ]
    # truth values, the unused scale and the unused set are never tuned
    values = [t.value for t in tunable_numbers(book)]
    assert values == [255.0, 0.02, 0.0, 0.0, 0.45, 0.55, 0.5, 0.1, 0.8]


def test_an_override_shadows_the_file_set_it_replaces():
    book = loads(
        "set dark = trapezoid(0, 0, 0.3, 0.4)\n"
        "set gray.dark = trapezoid(0, 0, 0.5, 0.6)\n"
        "if gray is dark then anomalous\n"
    )
    # gray reads the override only: the file-wide `dark` grades nothing
    assert {t.group for t in tunable_numbers(book)} == {"gray.dark"}


def test_no_threshold_line_means_no_threshold_to_tune():
    book = loads("scale gray = 255\nif gray is low then anomalous\n")
    assert [t.label for t in tunable_numbers(book)] == ["scale gray"]


def test_with_values_moves_exactly_the_numbers_given():
    book = loads(BOOK)
    tunables = tunable_numbers(book)
    values = [t.value for t in tunables]
    values[0], values[4], values[-1] = 230.0, 0.5, 0.65
    moved = with_values(book, tunables, values)
    resolved = resolve(moved)
    assert resolved.scales["gray"] == 230.0 and resolved.threshold == 0.65
    assert resolved.sets[("gray", "dark")].params == (0.0, 0.0, 0.5, 0.55)
    assert structure(moved) == structure(book)
    assert [r.truth_value for r in moved.rules] == [r.truth_value for r in book.rules]
    unchanged = with_values(book, tunables, [t.value for t in tunables])
    assert resolve(unchanged).scales == resolve(book).scales


def test_with_values_needs_one_value_per_number():
    book = loads(BOOK)
    with pytest.raises(ValueError, match="values for"):
        with_values(book, tunable_numbers(book), [1.0])


@pytest.mark.parametrize(
    "name", ["mtd.rules", "mtd_tuned.rules", "mtd_expert.rules", "kolektor_mvtec.rules"]
)
def test_shipped_rulebooks_have_numbers_to_tune(name):
    book = loads((ROOT / "rulebooks" / name).read_text(encoding="utf-8"))
    tunables = tunable_numbers(book)
    assert sum(t.kind == "threshold" for t in tunables) == 1
    assert {t.group for t in tunables if t.kind == "scale"} <= set(resolve(book).scales)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300))
def test_number_text_reads_back_exactly_in_a_rulebook(value):
    text = number_text(value)
    assert float(text) == value
    assert not text.endswith(".0")
    if 0.0 <= value <= 1.0:
        book = loads(f"threshold {text}\nif gray is low then anomalous\n")
        assert book.threshold == value
