"""The scorer's fast path: chunking, the edge layout and the lazy winner change no number.

The scorer grades regions in chunks (on a CPU), grades trapezoids edge by edge,
and derives `winner` from `rules` and `grade` on first use. Each of these is a
speed choice, so each must give exactly (bit for bit) what the plain
computation gives: one pass over all regions, the contract's piecewise
formula, the first rule reaching the grade.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kistrules.compiler import compile_rulebook
from kistrules.membership import MISSING, grade_set, trapezoid_edges
from kistrules.resolve import resolve
from tests.reference import scorer as reference

from . import paper
from .strategies import (
    GRID,
    and_,
    class_def,
    not_,
    or_,
    rule,
    rulebook,
    rulebooks,
    set_def,
    term,
)

FIELDS = ("grade", "rules", "fired", "winner", "classes", "winner_class")
TRACED = (*FIELDS, "terms", "limiting")


def raw_inputs(scorer, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Raw values over [-0.2, 1.3] x gamma with breakpoints, NaN and +-inf mixed in."""
    rng = np.random.default_rng(seed)
    out = {}
    for prop in scorer.properties:
        gamma = float(scorer.resolved.scales[prop])
        values = rng.uniform(-0.2, 1.3, n) * gamma
        on_grid = rng.random(n) < 0.3
        values[on_grid] = rng.choice(GRID, int(on_grid.sum())) * gamma
        values[rng.random(n) < 0.05] = np.nan
        values[rng.random(n) < 0.02] = np.inf
        values[rng.random(n) < 0.02] = -np.inf
        out[prop] = torch.from_numpy(values)
    return out


def assert_same(whole, part, fields) -> None:
    for field in fields:
        a, b = getattr(whole, field), getattr(part, field)
        assert a.shape == b.shape and a.dtype == b.dtype, field
        assert torch.equal(a, b), field


def chunked_equals_whole(book, n: int, chunk: int, seed: int, traces=(False, True)) -> None:
    for dtype in (torch.float64, torch.float32):
        scorer = compile_rulebook(resolve(book), dtype=dtype)
        values = raw_inputs(scorer, n, seed)
        for trace in traces:
            scorer.chunk_size = max(n, 1)  # one pass over every region
            whole = scorer(values, trace=trace)
            scorer.chunk_size = chunk
            part = scorer(values, trace=trace)
            assert_same(whole, part, TRACED if trace else FIELDS)
            if trace:
                for prop in scorer.properties:
                    a, b = whole.standardised[prop], part.standardised[prop]
                    assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


MIXED = rulebook(
    [
        set_def("step", "trapezoid", (0.3, 0.3, 0.5, 0.7)),  # vertical rising edge inside
        set_def("cap", "trapezoid", (0.1, 0.2, 0.6, 0.6)),  # vertical falling edge inside
        set_def("spot", "gaussian", (0.4, 0.15)),
        class_def("crack", "blowhole", "fray"),  # blowhole: only the `anomalous` rule grades it
        rule(
            and_(term("area", "mid"), term("gray", "low"), term("gray", "low")),
            1.0,
            1,
            None,
            "fray",
        ),
        rule(and_(term("shape", "step"), term("symmetry", "cap", hedges=("very",))), 0.7, 2),
        rule(or_(term("gray", "spot"), not_(term("unevenness", "high"))), 0.9, 3, None, "crack"),
        rule(
            term("area", "low", negated=True, hedges=("somewhat", "somewhat")), 0.6, 4, "c", "crack"
        ),
    ]
)


@pytest.mark.parametrize("n", [0, 1, 5, 64, 203])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_one_pass_for_the_paper_and_a_mixed_rulebook(n, chunk):
    # MTD takes the edges-only path; MIXED needs columns (gaussian, hedges, not, OR, steps).
    for book in (paper.mtd(), MIXED):
        chunked_equals_whole(book, n, chunk, seed=n * 100 + chunk)


def test_default_chunks_span_several_passes_and_equal_one_pass():
    scorer = compile_rulebook(resolve(paper.mtd()))
    step = scorer._chunk_size(10**6)
    assert 1 < step < 10**6
    chunked_equals_whole(paper.mtd(), 2 * step + 5, step, seed=5, traces=(False,))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book=rulebooks(),
    n=st.integers(0, 60),
    chunk=st.integers(1, 30),
    seed=st.integers(0, 1000),
)
def test_chunked_equals_one_pass_for_any_rulebook(book, n, chunk, seed):
    chunked_equals_whole(book, n, chunk, seed)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_winner_is_the_first_rule_reaching_the_grade(data):
    book = data.draw(rulebooks())
    scorer = compile_rulebook(resolve(book), dtype=torch.float64)
    values = raw_inputs(scorer, 40, data.draw(st.integers(0, 1000)))
    trace = scorer(values)
    rules, grade = trace.rules.tolist(), trace.grade.tolist()
    want = [
        next(r for r, v in enumerate(row) if v == g) for row, g in zip(rules, grade, strict=True)
    ]
    assert trace.winner.tolist() == want
    assert trace.winner.dtype == torch.int64
    assert trace.winner is trace.winner  # computed once, then kept


# --- trapezoid edges ---------------------------------------------------------------

BREAKS = st.one_of(
    st.sampled_from([-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]),
    st.floats(-0.3, 1.3, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(points=st.lists(BREAKS, min_size=4, max_size=4), data=st.data())
def test_edges_equal_the_contract_formula_bit_for_bit(points, data):
    a, b, c, d = sorted(points)
    grid = [i / 40 for i in range(41)]
    extra = data.draw(st.lists(st.floats(0.0, 1.0), max_size=20))
    values = sorted({*grid, *extra, *(p for p in (a, b, c, d) if 0.0 <= p <= 1.0)})
    got = grade_set("trapezoid", (a, b, c, d), torch.tensor(values, dtype=torch.float64))
    want = [reference.membership("trapezoid", (a, b, c, d), v) for v in values]
    assert got.tolist() == want  # exact: the same IEEE operations, in the same order
    missing = grade_set("trapezoid", (a, b, c, d), torch.tensor([MISSING], dtype=torch.float64))
    assert missing.tolist() == [0.0]


def test_the_paper_rulebook_runs_on_edges_alone():
    scorer = compile_rulebook(resolve(paper.mtd()))
    # low and high: one edge each, unevenness mid two: 9 edges for 8 distinct terms
    assert "terms=12, columns=8, edges=9" in repr(scorer)
    assert not scorer._needs_columns and len(scorer._flat_edges) == 4
    assert (
        len(compile_rulebook(resolve(MIXED))._flat_edges) == 0
    )  # columns needed: gaussian, hedges


def test_edges_of_the_builtin_sets():
    low, mid, high = (0.0, 0.0, 0.2, 0.4), (0.2, 0.4, 0.6, 0.8), (0.6, 0.8, 1.0, 1.0)
    assert [e.sign for e in trapezoid_edges(*low)] == [-1.0]  # one falling edge
    assert [e.sign for e in trapezoid_edges(*high)] == [1.0]  # one rising edge
    assert [e.sign for e in trapezoid_edges(*mid)] == [1.0, -1.0]
    (everything,) = trapezoid_edges(0.0, 0.0, 1.0, 1.0)  # 1 on [0, 1]: a constant edge
    assert everything.step == -math.inf and everything.left == -1.0
    (step,) = trapezoid_edges(0.3, 0.3, 1.0, 1.0)
    assert step.step == 0.3
