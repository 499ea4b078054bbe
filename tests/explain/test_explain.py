"""Explanations read the scorer's own trace: grades, winners, limiting terms, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kistrules.api import loads
from kistrules.compiler import compile_rulebook
from kistrules.explain import explain_mask, explain_residual, explain_trace, to_jsonable
from kistrules.regions import measure
from kistrules.resolve import resolve

RULES = """
scale pixels = 40
scale darkness = 50
scale brightness = 50
rule dark: IF darkness is high AND pixels is not low THEN anomalous (1.0)
rule bright: IF brightness is high AND pixels is not low THEN anomalous (0.9)
rule either: IF (darkness is mid OR brightness is mid) AND NOT (pixels is very low)
             THEN anomalous (0.85)
"""


def _scene():
    """A flat 120 background with a dark blob, a bright blob and a faint speck."""
    rng = np.random.default_rng(0)
    image = np.full((48, 48), 120.0) + rng.normal(0, 2, (48, 48))
    mask = np.zeros((48, 48), bool)
    yy, xx = np.mgrid[0:48, 0:48]
    dark = (yy - 12) ** 2 + (xx - 12) ** 2 <= 16
    bright = (yy - 30) ** 2 + (xx - 34) ** 2 <= 9
    speck = (yy == 40) & (xx == 8)
    image[dark] -= 45
    image[bright] += 45
    image[speck] -= 20
    mask |= dark | bright | speck
    return image, mask


@pytest.fixture(scope="module")
def scorer():
    return compile_rulebook(resolve(loads(RULES, "t.rules")))


def test_mask_regions_grade_equals_scorer_on_the_measured_table(scorer):
    image, mask = _scene()
    result = explain_mask(scorer, image, mask)
    # The same regions measured independently of explain: 8-connected components.
    from skimage.measure import label

    table = measure(image, label(mask, connectivity=2), properties=list(scorer.properties))
    trace = scorer(table, trace=True)
    assert len(result.regions) == 3 == len(table)
    doc = to_jsonable(result.regions)
    for n, region in enumerate(doc):
        assert region["grade"] == pytest.approx(float(trace.grade[n]), abs=0)
        outputs = [r["output"] for r in region["rules"]]
        assert outputs == pytest.approx(trace.rules[n].tolist(), abs=0)
        # The fired rule is the argmax of the rule outputs, and only when it reaches alpha.
        best = scorer.rule_names[int(np.argmax(outputs))]
        assert region["best_rule"] == best
        assert region["winner"] == (best if max(outputs) >= scorer.threshold else None)
        assert region["fired"] == (region["grade"] >= scorer.threshold)
        for name, value in region["properties"].items():
            assert value["raw"] == pytest.approx(float(table.properties[name][n]))
    winners = sorted(r.winner or "none" for r in result.regions)
    assert winners == ["bright", "dark", "none"]


def test_masks_tint_and_bboxes_follow_the_regions(scorer):
    image, mask = _scene()
    result = explain_mask(scorer, image, mask)
    union = np.zeros_like(mask)
    for region, pixels in zip(result.regions, result.masks, strict=True):
        rows, cols = np.nonzero(pixels)
        assert region.bbox == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        assert region.pixel_count == pixels.sum()
        if region.fired:
            union |= pixels
    np.testing.assert_array_equal(result.pseudo_label, union)
    assert not result.pseudo_label[40, 8]  # the speck is too small for any rule


def test_limiting_term_is_the_smallest_term_of_an_and_rule(scorer):
    image, mask = _scene()
    result = explain_mask(scorer, image, mask)
    for region in result.regions:
        rule = next(r for r in region.rules if r.name == "dark")
        terms = [t for t in region.terms if t.rule == "dark"]
        smallest = min(terms, key=lambda t: t.truth)
        assert next(t.truth for t in terms if t.term == rule.limiting_term) == smallest.truth
        assert rule.output == pytest.approx(smallest.truth * 1.0)


def test_residual_source_uses_eq9_thresholds_and_nested_regions(scorer):
    image, mask = _scene()
    residual = np.where(mask, 0.05, 0.001).astype(np.float32)
    result = explain_residual(scorer, image, residual, mu=0.001, sigma=0.01)
    # eq. 9 with s = 0.3: n = 4..10, t = mu + n s sigma.
    expected = [0.001 + n * 0.3 * 0.01 for n in range(4, 11)]
    assert result.thresholds == pytest.approx(expected)
    assert {r.threshold for r in result.regions} <= set(result.thresholds)
    # Every threshold below 0.05 cuts the same three blobs.
    assert len(result.regions) == 3 * len(expected)
    assert result.pseudo_label.sum() == sum(
        m.sum() for m, r in zip(result.masks[:3], result.regions[:3], strict=True) if r.fired
    )


def test_explain_trace_without_counterfactuals_is_complete(scorer):
    props = {
        "darkness": torch.tensor([60.0, 5.0]),
        "pixels": torch.tensor([80.0, 80.0]),
        "brightness": torch.tensor([0.0, 45.0]),
    }
    trace = scorer(props, trace=True)
    rows = explain_trace(
        scorer,
        trace,
        props,
        bbox=torch.zeros(2, 4),
        pixel_count=torch.ones(2),
        counterfactual=False,
    )
    assert [r.winner for r in rows] == ["dark", "bright"]
    assert all(rule.counterfactual is None for r in rows for rule in r.rules)
    assert rows[0].properties["darkness"] == {"raw": 60.0, "standardised": 1.0}


@pytest.mark.parametrize(
    ("value", "alpha", "digits", "text"),
    [
        (0.7996, 0.8, 3, "0.799"),  # plain rounding would print 0.800 beside "not fired"
        (0.7996, 0.8, 2, "0.79"),
        (0.8, 0.8, 2, "0.80"),
        (0.80004, 0.8, 3, "0.800"),
        (0.2996, 0.3, 3, "0.299"),
        (0.5, 0.8, 3, "0.500"),
        (0.7996, None, 3, "0.800"),  # no threshold, nothing to be on the wrong side of
    ],
)
def test_grade_text_never_crosses_alpha(value, alpha, digits, text):
    from kistrules.explain import grade_text

    assert grade_text(value, alpha, digits) == text


@given(
    value=st.floats(0, 1, allow_nan=False),
    alpha=st.floats(0.01, 1, allow_nan=False),
    digits=st.integers(1, 4),
)
def test_grade_text_is_on_the_side_of_alpha_of_its_value(value, alpha, digits):
    from kistrules.explain import grade_text

    shown = float(grade_text(value, alpha, digits))
    assert (shown >= alpha) == (value >= alpha)
    assert abs(shown - value) <= 10**-digits + 1e-12
