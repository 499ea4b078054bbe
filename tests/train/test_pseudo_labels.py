"""Eq. 9-12 through `label_regions`, checked against a by-hand skimage + numpy labelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label

from kist_train.pseudo_labels import (
    confusion,
    interior,
    label_statistics,
    mask_scores,
    precision_recall,
    trusted_labels,
    upsample_mask,
)
from kistrules.api import loads
from kistrules.compiler import compile_rulebook
from kistrules.pseudo_labels import label_regions, rule_masks
from kistrules.resolve import resolve

DARK_RULES = """\
scale gray = 255
set low = trapezoid(0, 0, 0.2, 0.4)
threshold 0.8
rule dark: IF gray is low THEN anomalous (1.0)
rule never: IF gray is low AND gray is not low THEN anomalous (0.9)
"""


def _scene(rng: np.random.Generator, h: int = 20, w: int = 24):
    """Bright background, a dark and a mid-gray patch; residual ramps inside the patches."""
    image = np.full((h, w), 200.0)
    residual = rng.uniform(0.0, 0.4, (h, w))
    image[3:9, 3:10] = 40.0 + rng.uniform(0, 10, (6, 7))
    residual[3:9, 3:10] = np.linspace(0.5, 3.0, 7)[None, :] + rng.uniform(0, 0.1, (6, 7))
    image[12:18, 14:22] = 120.0
    residual[12:18, 14:22] = np.linspace(3.0, 0.5, 8)[None, :]
    return image, residual


def _by_hand(image: np.ndarray, residual: np.ndarray, thresholds: np.ndarray):
    """Union of the 8-connected regions of residual > t whose mean gray <= 0.24 * 255."""
    mask = np.zeros(image.shape, dtype=bool)
    n_regions = n_fired = 0
    for t in thresholds:
        lab = sk_label(residual > t, connectivity=2)
        for value in range(1, lab.max() + 1):
            region = lab == value
            n_regions += 1
            # trapezoid(0, 0, 0.2, 0.4) >= 0.8  <=>  gray / 255 <= 0.24
            if image[region].mean() / 255.0 <= 0.24 + 1e-12:
                n_fired += 1
                mask |= region
    return mask, n_regions, n_fired


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), mu=st.floats(0.0, 0.5), sigma=st.floats(0.1, 1.0))
def test_label_regions_equals_a_by_hand_labelling(seed, mu, sigma):
    rng = np.random.default_rng(seed)
    scenes = [_scene(rng) for _ in range(2)]
    images = torch.tensor(np.stack([s[0] for s in scenes]), dtype=torch.float32)
    residuals = torch.tensor(np.stack([s[1] for s in scenes]), dtype=torch.float32)
    scorer = compile_rulebook(resolve(loads(DARK_RULES)), device="cpu")
    labels = label_regions(images, residuals, scorer, mu=mu, sigma=sigma, s=0.3)

    expected_t = np.array([mu + n * 0.3 * sigma for n in range(4, 11)])
    np.testing.assert_allclose(labels.thresholds, expected_t, rtol=1e-12)
    total_regions = total_fired = 0
    for b, (image, _) in enumerate(scenes):
        # float32 residuals, as the engine passes them
        mask, n_regions, n_fired = _by_hand(image, residuals[b].double().numpy(), expected_t)
        np.testing.assert_array_equal(labels.mask[b].numpy(), mask)
        total_regions += n_regions
        total_fired += n_fired
    stats = label_statistics(labels, scorer)
    assert stats["regions"] == total_regions
    assert stats["regions_fired"] == total_fired
    assert stats["fired_per_rule"] == {"dark": total_fired, "never": 0}
    assert stats["pixels_labelled"] == int(labels.mask.sum())
    per_rule = rule_masks(labels, scorer)
    assert torch.equal(per_rule[0], labels.mask.cpu()) and not per_rule[1].any()


def test_pixels_property_counts_original_pixels():
    rules = "scale pixels = 100\nthreshold 0.8\nrule big: IF pixels is high THEN anomalous (1)\n"
    scorer = compile_rulebook(resolve(loads(rules)), device="cpu")
    image = torch.full((1, 10, 10), 100.0)
    residual = torch.zeros((1, 10, 10))
    residual[0, 2:6, 2:6] = 5.0  # 16 px on the grid
    # At the grid's own size 16 px is "low"; at 4x the size it is 64 original px... still
    # below 0.8 * 100; at 9x it is 144 px >= 80: "high".
    small = label_regions(image, residual, scorer, mu=0.0, sigma=1.0)
    big = label_regions(image, residual, scorer, mu=0.0, sigma=1.0, original_sizes=[(30, 30)])
    assert not small.mask.any()
    assert int(big.mask.sum()) == 16


def test_label_statistics_precision_recall_by_hand():
    scorer = compile_rulebook(resolve(loads(DARK_RULES)), device="cpu")
    image = torch.full((1, 4, 4), 200.0)
    image[0, :2, :2] = 10.0
    residual = torch.zeros((1, 4, 4))
    residual[0, :2, :2] = 9.0
    labels = label_regions(image, residual, scorer, mu=0.0, sigma=1.0)
    assert int(labels.mask.sum()) == 4
    truth = np.zeros((8, 8), dtype=bool)  # original size 8x8: label covers the 4x4 corner
    truth[:4, :2] = True  # 8 true px, all inside the upsampled label
    stats = label_statistics(labels, scorer, truth_masks=[truth])
    assert stats["precision"] == pytest.approx(8 / 16)
    assert stats["recall"] == pytest.approx(1.0)


def test_confusion_and_upsampling():
    pred = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    truth = np.array([[1, 0, 0], [1, 0, 0]], dtype=bool)
    assert confusion(pred, truth) == (1, 1, 1)
    assert precision_recall(1, 1, 1) == (0.5, 0.5)
    assert precision_recall(0, 0, 3) == (None, 0.0)
    up = upsample_mask(torch.tensor([[True, False], [False, False]]), (4, 6))
    assert up.shape == (4, 6) and up[:2, :3].all() and up.sum() == 6


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    pixels=st.integers(0, 3),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 19), st.integers(1, 19)),
    density=st.floats(0.3, 0.95),
)
def test_interior_is_scipy_erosion_with_the_outside_labelled(seed, pixels, shape, density):
    """--label-erosion: a square erosion in which the image border never erodes."""
    from scipy import ndimage

    mask = np.random.default_rng(seed).random(shape) < density
    square = np.ones((2 * pixels + 1,) * 2, dtype=bool)
    expected = np.stack([ndimage.binary_erosion(m, square, border_value=1) for m in mask])
    got = interior(torch.as_tensor(mask), pixels)
    assert got.dtype == torch.bool
    np.testing.assert_array_equal(got.numpy(), expected if pixels else mask)


def test_interior_keeps_a_region_cut_by_the_border_and_drops_its_inner_rim():
    mask = torch.zeros((1, 6, 6), dtype=bool)
    mask[0, :3, 1:5] = True  # a chip at the top border, 3 rows deep, 4 wide
    inside = interior(mask, 1)[0]
    assert inside[:2, 2:4].all()  # the border row stays; the rows below it lose their rim
    assert int(inside.sum()) == 4


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    pixels=st.integers(0, 2),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
    floor=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_trusted_labels_are_the_interior_above_the_floor(seed, pixels, shape, floor):
    """--label-min-sigmas: of the interior, a pixel stays when its own residual reaches the
    floor (checked pixel by pixel in plain Python)."""
    rng = np.random.default_rng(seed)
    mask = torch.as_tensor(rng.random(shape) < 0.7)
    residuals = torch.as_tensor(rng.random(shape), dtype=torch.float32)
    got = trusted_labels(mask, pixels, residuals if floor is not None else None, floor)
    inside = interior(mask, pixels)
    for index in np.ndindex(*shape):
        expected = bool(inside[index]) and (floor is None or float(residuals[index]) >= floor)
        assert bool(got[index]) == expected


def test_trusted_labels_refuse_a_floor_without_matching_residuals():
    mask = torch.ones((1, 4, 4), dtype=torch.bool)
    with pytest.raises(ValueError, match="residual floor"):
        trusted_labels(mask, 0, None, 0.5)
    with pytest.raises(ValueError, match="residual floor"):
        trusted_labels(mask, 0, torch.zeros((1, 3, 4)), 0.5)


def test_mask_scores_compare_at_the_truths_size():
    labels = torch.zeros((2, 2, 2), dtype=bool)
    labels[0, 0, 0] = True  # covers the top-left 2 x 2 of a 4 x 4 truth
    truth = [np.zeros((4, 4), bool), np.zeros((2, 2), bool)]
    truth[0][0, :] = True  # 4 true px, 2 of them under the label
    truth[1][1, 1] = True  # missed
    assert mask_scores(labels, truth) == (pytest.approx(2 / 4), pytest.approx(2 / 5))
