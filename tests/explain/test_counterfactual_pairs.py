"""Counterfactuals that are plausible: two properties when one cannot do it, every term at 0
named, and each change compared with what the image's other regions measure.

Checked with the compiled scorer only: a suggested pair, applied, makes its rule
reach alpha, and no point of a dense 2-D grid of the two properties fires at a
smaller sum of standardised changes; the ranges equal a plain loop over the
other regions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import kistrules.commands.explain  # noqa: F401 - registers explain
from kistrules.api import loads
from kistrules.cli import app
from kistrules.compiler import compile_rulebook
from kistrules.counterfactuals import pair_counterfactual, seen_ranges
from kistrules.explain import explain_trace
from kistrules.resolve import resolve
from tests.explain.test_counterfactual import GAMMA, HEADER, cases

TWO = HEADER + "rule both: IF darkness is high AND pixels is high THEN anomalous (1)\n"


def _explain(scorer, rows: list[dict[str, float]], images: list[int] | None = None):
    table = {p: torch.tensor([r[p] for r in rows], dtype=torch.float64) for p in rows[0]}
    trace = scorer(table, trace=True)
    n = len(rows)
    return explain_trace(
        scorer, trace, table, bbox=torch.zeros(n, 4), pixel_count=torch.ones(n), images=images
    )


def _rescore(scorer, props: dict[str, float]) -> torch.Tensor:
    table = {p: torch.tensor([v], dtype=torch.float64) for p, v in props.items()}
    with torch.no_grad():
        return scorer(table).rules[0]


def _values(**changes: float) -> dict[str, float]:
    return {"area": 0.0, "gray": 128.0, "darkness": 0.0, "pixels": 0.0, **changes}


def test_two_terms_at_zero_give_the_pair_in_closed_form():
    scorer = compile_rulebook(resolve(loads(TWO, "t.rules")))
    rule = _explain(scorer, [_values(darkness=10.0, pixels=8.0)])[0].rules[0]
    assert rule.counterfactual is None and rule.zero_terms == ["darkness is high", "pixels is high"]
    assert "2 terms are 0: darkness is high, pixels is high" in rule.no_counterfactual_reason
    pair = rule.pair_counterfactual
    assert pair is not None and [c.property for c in pair.changes] == ["darkness", "pixels"]
    # high reaches 0.8 at v' = 0.76: darkness 38, pixels 30.4.
    darkness, pixels = pair.changes
    assert darkness.raw_to == pytest.approx(38.0, abs=1e-3) and darkness.raw_to >= 38.0
    assert pixels.raw_to == pytest.approx(30.4, abs=1e-3) and pixels.raw_to >= 30.4
    assert pair.change == pytest.approx((0.76 - 0.2) + (0.76 - 0.2), abs=1e-4)
    assert pair.text == "darkness >= 38 and pixels >= 30.4 together would make both fire"
    moved = _values(darkness=darkness.raw_to, pixels=pixels.raw_to)
    assert float(_rescore(scorer, moved)[0]) >= scorer.threshold


def test_three_terms_at_zero_have_no_pair_and_are_all_named():
    text = (
        HEADER
        + "rule three: IF darkness is high AND pixels is high AND area is high THEN anomalous (1)\n"
    )
    scorer = compile_rulebook(resolve(loads(text, "t.rules")))
    rule = _explain(scorer, [_values(darkness=1.0, pixels=1.0, area=0.001)])[0].rules[0]
    assert rule.counterfactual is None and rule.pair_counterfactual is None
    assert rule.zero_terms == ["darkness is high", "pixels is high", "area is high"]
    assert rule.no_counterfactual_reason == (
        "no change of one or two properties makes three reach 0.8 "
        "(3 terms are 0: darkness is high, pixels is high, area is high)"
    )


def test_a_pair_is_only_offered_when_no_single_change_does_it():
    scorer = compile_rulebook(resolve(loads(TWO, "t.rules")))
    rule = _explain(scorer, [_values(darkness=45.0, pixels=8.0)])[0].rules[0]
    assert rule.counterfactual is not None and rule.counterfactual.property == "pixels"
    assert rule.pair_counterfactual is None and rule.zero_terms == ["pixels is high"]


def _pair_grid(exact, values, rule: int, p: str, q: str, grid: np.ndarray) -> float:
    """The least |dp'| + |dq'| over the grid points (both changed) where the rule fires."""
    gp, gq = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
    table = {k: torch.full((gp.size,), v, dtype=torch.float64) for k, v in values.items()}
    table[p] = torch.as_tensor(gp * GAMMA[p])
    table[q] = torch.as_tensor(gq * GAMMA[q])
    with torch.no_grad():
        fires = (exact(table).rules[:, rule] >= exact.threshold).numpy()
    cp = min(max(values[p] / GAMMA[p], 0.0), 1.0)
    cq = min(max(values[q] / GAMMA[q], 0.0), 1.0)
    both = fires & (gp != cp) & (gq != cq)
    return float(np.min(np.abs(gp[both] - cp) + np.abs(gq[both] - cq))) if both.any() else math.inf


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_pairs_fire_and_no_grid_pair_is_smaller(case):
    text, values = case
    rulebook = loads(text, "gen.rules")
    scorer = compile_rulebook(resolve(rulebook))
    exact = compile_rulebook(resolve(rulebook), dtype=torch.float64)  # minimality: exact maths
    region = _explain(scorer, [values])[0]
    grid = np.linspace(0.0, 1.0, 201)
    for index, rule in enumerate(region.rules):
        if rule.reaches_threshold or rule.counterfactual is not None:
            assert rule.pair_counterfactual is None  # one change does it: no pair offered
            continue
        pair = rule.pair_counterfactual
        if pair is not None:
            a, b = pair.changes
            assert a.property != b.property and a.change > 0 and b.change > 0
            assert pair.change == pytest.approx(a.change + b.change)
            moved = dict(values, **{a.property: a.raw_to, b.property: b.raw_to})
            assert float(_rescore(scorer, moved)[index]) >= scorer.threshold, pair.text
            assert pair.text.startswith(f"{a.property} ") and " together would make " in pair.text
        props = sorted({t.property for t in scorer.terms if t.rule == index})
        for p, q in itertools.combinations(props, 2):
            best = _pair_grid(exact, values, index, p, q, grid)
            if math.isfinite(best):
                assert pair is not None, f"{p}, {q} fire {rule.name} at cost {best}"
                assert pair.change <= best + 2e-3, (pair.text, best)


# --- what the image's other regions measure ------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.floats(-5, 5) | st.just(math.nan) | st.just(math.inf)),
        min_size=0,
        max_size=12,
    )
)
def test_seen_ranges_equal_a_loop_over_the_other_regions(rows):
    images = np.array([i for i, _ in rows], dtype=np.int64)
    values = np.array([v for _, v in rows], dtype=np.float64)
    lo, hi = seen_ranges(values, images)
    for n, (image, _) in enumerate(rows):
        others = [v for m, (i, v) in enumerate(rows) if m != n and i == image and math.isfinite(v)]
        if others:
            assert (lo[n], hi[n]) == (min(others), max(others))
        else:
            assert math.isnan(lo[n]) and math.isnan(hi[n])


def test_a_change_beyond_what_the_other_regions_measure_says_so():
    text = HEADER + "rule big: IF pixels is high THEN anomalous (1)\n"
    scorer = compile_rulebook(resolve(loads(text, "t.rules")))
    rows = [_values(pixels=v) for v in (2.0, 5.0, 9.0, 36.0)]
    regions = _explain(scorer, rows)
    # pixels is high reaches 0.8 at 30.4: beyond 2 to 9 for the small ones, but region 4
    # (36, fired) is another region of the image, so the range holds 30.4 for them all.
    for region in regions[:3]:
        cf = region.rules[0].counterfactual
        assert cf.outside_seen_range is False and "outside" not in cf.text
        others = [r["pixels"] for r in rows if r is not rows[region.id - 1]]
        assert cf.seen_range == [min(others), max(others)]
    small = _explain(scorer, rows[:3])  # without the large region: 30.4 is beyond 9
    cf = small[0].rules[0].counterfactual
    assert cf.outside_seen_range is True and cf.seen_range == [5.0, 9.0]
    assert cf.text == (
        "pixels >= 30.4 would make big fire; outside the range of the image's 2 other regions "
        "(pixels 5 to 9)"
    )
    # Regions of another image do not count; alone on its image, a region has no range.
    split = _explain(scorer, rows, images=[0, 0, 0, 1])
    assert split[0].rules[0].counterfactual.outside_seen_range is True
    assert split[3].rules[0].reaches_threshold
    alone = _explain(scorer, rows[:1])[0].rules[0].counterfactual
    assert alone.seen_range is None and alone.outside_seen_range is None


def test_pair_changes_are_compared_with_the_other_regions_too():
    scorer = compile_rulebook(resolve(loads(TWO, "t.rules")))
    rows = [_values(darkness=10.0, pixels=8.0), _values(darkness=20.0, pixels=40.0)]
    pair = _explain(scorer, rows)[0].rules[0].pair_counterfactual
    darkness, pixels = pair.changes
    assert darkness.seen_range == [20.0, 20.0] and darkness.outside_seen_range is True
    assert pixels.seen_range == [40.0, 40.0] and pixels.outside_seen_range is True
    assert pair.text.endswith(
        "; outside the range of the image's other region (darkness 20, pixels 40)"
    )


def test_pair_counterfactual_without_a_scorer_check_is_the_exact_optimum():
    scorer = compile_rulebook(resolve(loads(TWO, "t.rules")), dtype=torch.float64)
    standardised = {"darkness": 0.2, "pixels": 0.2}
    pair = pair_counterfactual(scorer, 0, standardised, {"darkness": 10.0, "pixels": 8.0})
    assert [c.standardised_to for c in pair.changes] == pytest.approx([0.76, 0.76], abs=1e-12)


# --- the command ------------------------------------------------------------------------


def test_the_text_names_every_term_at_zero_and_the_pair(tmp_path):
    from skimage.io import imsave

    image = np.full((30, 30), 120, np.uint8)
    mask = np.zeros((30, 30), np.uint8)
    mask[10:12, 10:12] = 255  # 4 px, as bright as its ring: darkness 0, pixels 4
    imsave(tmp_path / "i.png", image, check_contrast=False)
    imsave(tmp_path / "m.png", mask, check_contrast=False)
    (tmp_path / "r.rules").write_text(TWO)
    args = ["explain", str(tmp_path / "i.png"), "-r", str(tmp_path / "r.rules")]
    result = CliRunner().invoke(
        app, [*args, "--mask", str(tmp_path / "m.png"), "-v", "--why-not", "both"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # whatever the wrapping
    assert "darkness is high, pixels is high (all 0)" in text
    assert "<- also 0" in text and "<- limiting" in text
    assert "darkness >= 38 and pixels >= 30.4 together would make both fire" in text
