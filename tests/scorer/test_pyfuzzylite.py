"""The paper's rulebooks graded by the compiled scorer and by pyfuzzylite agree.

pyfuzzylite is an independent fuzzy-logic engine: an Engine with Minimum
conjunction, AlgebraicProduct implication, rule weights = TV and Maximum
aggregation computes exactly eq. 4-7 of the KIST paper, given the same
standardised inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kistrules.compiler import compile_rulebook
from kistrules.resolve import resolve

from . import paper
from .strategies import GRID, and_, or_, rule, rulebook, scale_def, set_def, term

BOOKS = {"mtd": paper.mtd, "kolektor_mvtec": paper.kolektor}


def raw_inputs(book, n: int, seed: int) -> dict[str, np.ndarray]:
    """Raw values spread over [-0.2, 1.3] x gamma, plus every breakpoint of the grid."""
    rng = np.random.default_rng(seed)
    scales = {s.property.name: s.value.value for s in book.statements if s.kind == "scale"}
    raw = {}
    for prop, gamma in scales.items():
        grid = np.array(GRID) * gamma
        raw[prop] = np.concatenate([grid, rng.uniform(-0.2, 1.3, n) * gamma])
        rng.shuffle(raw[prop])
    return raw


def compare(book, raw: dict[str, np.ndarray]) -> None:
    engine, block, output = paper.fuzzylite_engine(book)
    want_grade, want_rules = paper.fuzzylite_grades(
        engine, block, output, paper.standardise_numpy(book, raw)
    )
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        trace = compile_rulebook(resolve(book), dtype=dtype)(
            {p: torch.from_numpy(v) for p, v in raw.items()}
        )
        np.testing.assert_allclose(trace.rules.double().numpy(), want_rules, atol=tol, rtol=0)
        np.testing.assert_allclose(trace.grade.double().numpy(), want_grade, atol=tol, rtol=0)
        if dtype == torch.float64:
            assert np.array_equal(trace.winner.numpy(), np.argmax(want_rules, axis=1))
            assert np.array_equal(trace.fired.numpy(), want_grade >= 0.8)


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_paper_rulebooks_equal_pyfuzzylite(name):
    book = BOOKS[name]()
    compare(book, raw_inputs(book, 5000, seed=1))


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(BOOKS)),
    gammas=st.lists(st.sampled_from([0.01, 0.05, 1.0, 40.0, 255.0, 1e3]), min_size=5, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_paper_rulebooks_equal_pyfuzzylite_at_any_scale(name, gammas, seed):
    book = BOOKS[name](dict(zip(paper.SCALES, gammas, strict=True)))
    compare(book, raw_inputs(book, 300, seed=seed))


def test_hedges_not_or_and_other_shapes_equal_pyfuzzylite():
    # Beyond Table I: hedges, `not`, OR with parentheses, triangles and gaussians.
    book = rulebook(
        [
            scale_def("darkness", 64.0),
            scale_def("pixels", 100.0),
            set_def("speck", "triangle", (0.0, 0.0, 0.1)),
            set_def("around", "gaussian", (0.5, 0.15), prop="gray"),
            set_def("low", "trapezoid", (0.0, 0.0, 0.25, 0.5), prop="darkness"),
            rule(
                and_(
                    term("darkness", "high", hedges=("very",)),
                    term("pixels", "speck", negated=True),
                ),
                1.0,
                1,
            ),
            rule(
                and_(
                    or_(
                        term("gray", "around"),
                        term("brightness", "high", hedges=("somewhat", "very")),
                    ),
                    term("darkness", "low", negated=True, hedges=("somewhat",)),
                ),
                0.7,
                2,
            ),
            rule(
                or_(term("shape", "mid"), term("symmetry", "low", hedges=("very", "very"))), 0.5, 3
            ),
        ]
    )
    rng = np.random.default_rng(7)
    props = ["darkness", "pixels", "gray", "brightness", "shape", "symmetry"]
    gammas = {
        "darkness": 64.0,
        "pixels": 100.0,
        "gray": 255.0,
        "brightness": 64.0,
        "shape": 187.5,
        "symmetry": 1.0,
    }
    raw = {
        p: np.concatenate([np.array(GRID), rng.uniform(-0.1, 1.2, 3000)]) * gammas[p] for p in props
    }
    for values in raw.values():
        rng.shuffle(values)
    compare(book, raw)


def test_parsed_mtd_text_grades_like_the_built_ast():
    from kistrules.api import loads

    parsed = loads(paper.MTD_TEXT, "mtd.rules")
    raw = raw_inputs(paper.mtd(), 2000, seed=5)
    props = {p: torch.from_numpy(v) for p, v in raw.items()}
    one = compile_rulebook(resolve(parsed), dtype=torch.float64)(props)
    two = compile_rulebook(resolve(paper.mtd()), dtype=torch.float64)(props)
    assert torch.equal(one.rules, two.rules)
    assert compile_rulebook(resolve(parsed)).rule_names == ("rule 1", "rule 2", "rule 3", "rule 4")
