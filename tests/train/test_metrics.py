"""Metrics against independent references: sklearn for AUROC, a threshold sweep for AUPRO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from kist_train.metrics import aupro, image_auroc, pixel_auroc, pro_curve, roc_auc
from kistrules.errors import DataError
from tests.reference import train as ref


@st.composite
def scored_labels(draw, max_size=60):
    n = draw(st.integers(2, max_size))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if all(labels) or not any(labels):
        labels[0] = not labels[0]
    # Few distinct values so that ties are frequent.
    scores = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    return np.array(scores, dtype=np.float64) / 5.0, np.array(labels)


@settings(max_examples=200, deadline=None)
@given(scored_labels())
def test_roc_auc_equals_sklearn_with_ties(case):
    scores, labels = case
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_known_values():
    assert roc_auc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # All scores tied: the ROC curve is the diagonal.
    assert roc_auc([0.5] * 6, [0, 1, 0, 1, 1, 0]) == 0.5
    # One positive above one of two negatives: U = 1 of 2 pairs.
    assert roc_auc([0.1, 0.3, 0.2], [0, 0, 1]) == 0.5


def test_roc_auc_needs_both_classes():
    with pytest.raises(DataError, match="both"):
        roc_auc([0.1, 0.2], [1, 1])


@st.composite
def map_sets(draw, max_images=4, max_side=7):
    """Images of different sizes, integer-valued scores (ties), masks with blobs or none."""
    n = draw(st.integers(1, max_images))
    maps, masks = [], []
    for _ in range(n):
        h = draw(st.integers(1, max_side))
        w = draw(st.integers(2, max_side))
        cells = h * w
        scores = draw(st.lists(st.integers(0, 6), min_size=cells, max_size=cells))
        mask = draw(st.lists(st.booleans(), min_size=cells, max_size=cells))
        maps.append(np.array(scores, dtype=np.float64).reshape(h, w) / 6.0)
        masks.append(np.array(mask).reshape(h, w))
    flat = np.concatenate([m.ravel() for m in masks])
    if flat.all() or not flat.any():
        masks[0].flat[0] = not masks[0].flat[0]
    return maps, masks


@settings(max_examples=100, deadline=None)
@given(map_sets())
def test_pixel_auroc_equals_sklearn(case):
    maps, masks = case
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([s.ravel() for s in maps])
    )
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(map_sets(), st.sampled_from([0.3, 0.05, 0.5, 1.0]))
def test_aupro_equals_threshold_sweep(case, limit):
    maps, masks = case
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        ref.slow_aupro(maps, masks, limit), abs=1e-9
    )


def test_aupro_hand_built_case():
    """Two images of different sizes, several components, one defect-free image, ties."""
    rng = np.random.default_rng(3)
    m1 = np.zeros((12, 9), dtype=np.uint8)
    m1[1:4, 1:3] = 255  # component 1
    m1[6:9, 5:8] = 255  # component 2
    m1[9, 8] = 255  # touches component 2 diagonally only -> same 8-connected component
    m2 = np.zeros((7, 15), dtype=np.uint8)
    m2[2, 2:12] = 1  # a thin line
    m3 = np.zeros((5, 5), dtype=np.uint8)  # defect-free image
    masks = [m1, m2, m3]
    maps = [np.round(rng.random(m.shape) + 0.6 * (m > 0), 1) for m in masks]
    for limit in (0.3, 0.1):
        expected = ref.slow_aupro(maps, masks, limit)
        assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)
    # Perfect separation gives 1, whatever the limit.
    perfect = [m.astype(float) for m in masks]
    assert aupro(perfect, masks) == pytest.approx(1.0, abs=1e-12)


def test_aupro_regions_count_equally():
    """A small region missed entirely costs as much as a large one: PRO averages regions."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[0:6, 0:6] = True  # 36 px, detected
    mask[9, 9] = True  # 1 px, missed (scored like background)
    score = np.where(mask, 1.0, 0.0)
    score[9, 9] = 0.0
    # At the only threshold below FPR 1, PRO = (1 + 0) / 2.
    fpr, pro = pro_curve([score], [mask])
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.5)
    # The next threshold jumps to (1, 1); interpolated at 0.3 the PRO is 0.65, so the
    # area is 0.3 * (0.5 + 0.65) / 2 and AUPRO = 0.575.
    assert aupro([score], [mask]) == pytest.approx(0.575, abs=1e-12)
    # Pixel AUROC weighs pixels instead: 36 of 37 anomalous pixels ranked first.
    assert pixel_auroc([score], [mask]) == pytest.approx(roc_auc_score(mask.ravel(), score.ravel()))


def test_aupro_3d_array_and_tensor_inputs_match_lists():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 2:5, 2:5] = True
    masks[2, 6:, 6:] = True
    from_list = aupro(list(maps), list(masks))
    assert aupro(maps, masks) == from_list
    assert aupro(torch.from_numpy(maps), torch.from_numpy(masks)) == from_list
    assert from_list == pytest.approx(ref.slow_aupro(list(maps), list(masks)), abs=1e-12)


def test_image_auroc_uses_map_maximum():
    maps = [np.array([[0.1, 0.9]]), np.array([[0.5, 0.5]]), np.array([[0.2, 0.95, 0.0]])]
    labels = [1, 0, 1]
    assert image_auroc(maps, labels) == pytest.approx(roc_auc_score(labels, [0.9, 0.5, 0.95]))
    # A mean-based score would rank differently here; the max ranks both defects first.
    assert image_auroc(maps, labels) == 1.0


@settings(max_examples=60, deadline=None)
@given(map_sets(max_images=6))
def test_image_auroc_equals_sklearn(case):
    maps, masks = case
    labels = np.array([m.any() for m in masks])
    if labels.all() or not labels.any():
        return
    expected = roc_auc_score(labels, [m.max() for m in maps])
    assert image_auroc(maps, labels) == pytest.approx(expected, abs=1e-12)


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="shape"):
        pixel_auroc([np.zeros((3, 3))], [np.zeros((3, 4))])
    with pytest.raises(DataError, match="at least one anomalous region"):
        aupro([np.zeros((3, 3))], [np.zeros((3, 3))])
    with pytest.raises(DataError, match="NaN"):
        pixel_auroc([np.full((2, 2), np.nan)], [np.eye(2)])
    with pytest.raises(DataError, match="2 maps but 1 masks"):
        aupro([np.zeros((2, 2))] * 2, [np.eye(2)])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([np.eye(2)], [np.eye(2)], fpr_limit=0.0)
