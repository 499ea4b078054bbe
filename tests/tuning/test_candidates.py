"""The batched candidate scorer against the compiled scorer, bit for bit.

For any valid rulebook (the scorer tests' strategy), any moved numbers and any
region values (NaN, infinities, values on breakpoints), the grades of
`CandidateScorer` for a candidate equal those of
`compile_rulebook(resolve(with_values(...)))`, in float32 and float64.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kistrules.analysis import analyse
from kistrules.api import loads
from kistrules.builtins import PROPERTIES
from kistrules.checker import check_names
from kistrules.compiler import compile_rulebook
from kistrules.resolve import resolve
from kistrules.tuning.candidates import CandidateScorer
from kistrules.tuning.parameters import tunable_numbers, with_values
from tests.scorer import strategies as gen

GRID = [i / 20 for i in range(-4, 25)]


@st.composite
def moved_values(draw, tunables):
    """Values for the tunables as a search might try them: positive scales and widths,
    ordered breakpoints, on a grid that hits the region values' grid."""
    values = [t.value for t in tunables]
    groups: dict[str, list[int]] = {}
    for k, t in enumerate(tunables):
        if t.kind == "scale":
            values[k] = t.value * draw(st.sampled_from([0.25, 0.5, 0.9, 1.0, 1.3, 2.0]))
        elif t.kind == "threshold":
            values[k] = draw(st.sampled_from(GRID))
        elif t.function == "gaussian":
            values[k] = (
                draw(st.sampled_from([0.05, 0.1, 0.3]))
                if t.argument
                else draw(st.sampled_from(GRID))
            )
        else:
            groups.setdefault(t.group, []).append(k)
    for members in groups.values():
        points = sorted(
            draw(st.lists(st.sampled_from(GRID), min_size=len(members), max_size=len(members)))
        )
        for k, v in zip(members, points, strict=True):
            values[k] = v
    return values


@st.composite
def cases(draw):
    book = draw(gen.rulebooks(max_rules=4))
    tunables = tunable_numbers(book)
    candidates = draw(st.lists(moved_values(tunables), min_size=1, max_size=4))
    n = draw(st.integers(1, 12))
    props = {
        p: torch.tensor(
            draw(
                st.lists(gen.raw_values(resolve(book).scales.get(p, 1.0)), min_size=n, max_size=n)
            ),
            dtype=torch.float64,
        )
        for p in PROPERTIES
    }
    return book, tunables, candidates, props


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(case=cases())
def test_candidate_grades_equal_the_compiled_scorer(case, dtype):
    book, tunables, candidates, props = case
    scorer = CandidateScorer(book, tunables, dtype=dtype)
    grades = scorer.grades(
        props, torch.tensor(candidates, dtype=torch.float64).reshape(len(candidates), -1)
    )
    assert grades.shape == (len(candidates), len(props["gray"]))
    for row, values in enumerate(candidates):
        moved = with_values(book, tunables, values)
        expected = compile_rulebook(resolve(moved), dtype=dtype)(props).grade
        torch.testing.assert_close(grades[row], expected, rtol=0, atol=0)


def test_a_moved_scale_and_breakpoint_change_the_grade_as_written():
    book = loads(
        "scale darkness = 40\nset darkness.clear = trapezoid(0.2, 0.4, 1, 1)\n"
        "threshold 0.8\nrule r: if darkness is clear then anomalous\n"
    )
    tunables = tunable_numbers(book)  # scale, a, b, c, d, threshold
    scorer = CandidateScorer(book, tunables)
    darkness = {"darkness": torch.tensor([12.0, 20.0], dtype=torch.float64)}
    grades = scorer.grades(
        darkness,
        torch.tensor(
            [[40, 0.2, 0.4, 1, 1, 0.8], [20, 0.2, 0.4, 1, 1, 0.8], [40, 0.0, 0.6, 1, 1, 0.8]],
            dtype=torch.float64,
        ),
    )
    # 12/40 = 0.3 -> 0.5, 20/40 = 0.5 -> 1; 12/20 = 0.6 -> 1; on (0, 0.6): 0.3/0.6 = 0.5, 0.5/0.6
    torch.testing.assert_close(
        grades, torch.tensor([[0.5, 1.0], [1.0, 1.0], [0.5, 0.5 / 0.6]]), rtol=1e-6, atol=1e-6
    )


def test_float32_candidates_are_refused():
    book = loads("scale gray = 255\nif gray is low then anomalous\n")
    scorer = CandidateScorer(book, tunable_numbers(book))
    with pytest.raises(ValueError, match="float64"):
        scorer.grades({"gray": torch.zeros(3)}, torch.tensor([[255.0]]))


def test_strategy_rulebooks_are_valid():
    """The comparison above is only meaningful on rulebooks that check."""

    @given(gen.rulebooks(max_rules=4))
    def check(book):
        assert not [d for d in check_names(book) if d.severity == "error"]
        analyse(book)

    check()


NEW_SYNTAX = """\
class blowhole, crack
scale darkness = 64
scale pixels   = 2000
set darkness.deep = raw trapezoid(32, 42, 64, 64)
set pixels.pit    = raw trapezoid(15, 34, 1500, 2000)
set bell          = gaussian(0.5, 0.2)
set pixels.odd    = raw gaussian(300, 100)
threshold 0.8
define deep_pit = darkness is deep and pixels is pit
rule round_pore: if deep_pit and not (gray is bell) then blowhole (1)
rule odd_crack: if darkness is very deep or pixels is odd then crack (0.9)
rule any: if deep_pit and gray is low then anomalous (0.85)
"""


@st.composite
def new_syntax_values(draw, tunables):
    """Raw breakpoints on a raw grid, scales moved, gaussians' widths positive."""
    values = [t.value for t in tunables]
    by_group: dict[str, list[int]] = {}
    for k, t in enumerate(tunables):
        if t.kind == "scale":
            values[k] = t.value * draw(st.sampled_from([0.5, 0.8, 1.0, 1.25, 2.0]))
        elif t.kind == "set" and t.function == "gaussian":
            width = draw(st.sampled_from([0.5, 1.0, 2.0]))
            values[k] = t.value * width if t.argument else t.value + draw(st.integers(-5, 5))
        elif t.kind == "set":
            by_group.setdefault(t.group, []).append(k)
    for members in by_group.values():
        scale = 64.0 if "darkness" in tunables[members[0]].group else 2000.0
        grid = [scale * i / 20 for i in range(0, 25)]
        points = sorted(draw(st.lists(st.sampled_from(grid), min_size=4, max_size=4)))
        for k, v in zip(members, points, strict=True):
            values[k] = v
    return values


@given(data=st.data())
def test_raw_sets_definitions_and_classes_grade_as_compiled(data):
    book = loads(NEW_SYNTAX)
    tunables = tunable_numbers(book)
    assert {t.raw for t in tunables if t.kind == "set"} == {"darkness", "pixels", ""}
    candidates = data.draw(st.lists(new_syntax_values(tunables), min_size=1, max_size=3))
    n = 10
    props = {
        "darkness": torch.tensor(data.draw(st.lists(gen.raw_values(64.0), min_size=n, max_size=n))),
        "pixels": torch.tensor(data.draw(st.lists(gen.raw_values(2000.0), min_size=n, max_size=n))),
        "gray": torch.tensor(data.draw(st.lists(gen.raw_values(255.0), min_size=n, max_size=n))),
    }
    props = {k: v.double() for k, v in props.items()}
    grades = CandidateScorer(book, tunables).grades(
        props, torch.tensor(candidates, dtype=torch.float64)
    )
    for row, values in enumerate(candidates):
        moved = with_values(book, tunables, values)
        expected = compile_rulebook(resolve(moved))(props).grade
        torch.testing.assert_close(grades[row], expected, rtol=0, atol=0)
