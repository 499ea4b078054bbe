"""Label evidence: pixel groups by chain of regions, against a pixel-by-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kistrules.regions import pseudo_label_mask
from kistrules.tuning.evidence import label_counts, region_weights
from tests.reference import tuning as ref
from tests.tuning import synthetic as syn


@pytest.fixture(scope="module")
def measured():
    return syn.evidence(seed=3, count=6, size=24, weights="random")


def _reference(raw, evidence, grades: np.ndarray, alpha: float) -> tuple[float, float]:
    """Sum the reference over the batches (each table numbers its own regions)."""
    tp = fp = 0.0
    offset = 0
    for index, table in enumerate(raw["tables"]):
        window = slice(4 * index, 4 * index + 4)
        n = len(table)
        a, b = ref.label_counts(
            table.labels.numpy(),
            grades[offset : offset + n],
            alpha,
            raw["positive"][window],
            raw["negative"][window],
        )
        tp, fp, offset = tp + a, fp + b, offset + n
    assert offset == evidence.regions
    return tp, fp


@settings(max_examples=6)
@given(
    seed=st.integers(0, 2**31 - 1),
    alphas=st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.8, 1.0]), min_size=1, max_size=4),
)
def test_label_counts_equal_the_pixel_by_pixel_reference(measured, seed, alphas):
    evidence, raw = measured
    rng = np.random.default_rng(seed)
    # grades on a coarse grid, so that many sit exactly on an alpha
    grades = (rng.integers(0, 21, size=(3, evidence.regions)) / 20).astype(np.float32)
    tp, fp = label_counts(evidence, torch.as_tensor(grades), torch.tensor(alphas))
    for c in range(3):
        for a, alpha in enumerate(alphas):
            assert (tp[c, a].item(), fp[c, a].item()) == _reference(raw, evidence, grades[c], alpha)


def test_counts_match_the_pseudo_label_mask(measured):
    """The library's own union (`pseudo_label_mask`) agrees too, with unit weights."""
    evidence, raw = syn.evidence(seed=5, count=4, size=24, weights="grid")
    (table,) = raw["tables"]
    grades = torch.rand(evidence.regions, generator=torch.Generator().manual_seed(0))
    tp, fp = label_counts(evidence, grades[None], torch.tensor([0.5]))
    mask = pseudo_label_mask(table, grades >= 0.5).numpy()
    truth = raw["masks"]
    assert tp.item() == np.count_nonzero(mask & truth)
    assert fp.item() == np.count_nonzero(mask & ~truth)


def test_subset_and_concatenate_keep_the_counts(measured):
    evidence, _ = measured
    grades = torch.rand((2, evidence.regions), generator=torch.Generator().manual_seed(1))
    alphas = torch.tensor([0.3, 0.6])
    tp, fp = label_counts(evidence, grades, alphas)
    odd, even = [1, 3, 5], [0, 2, 4]
    total_tp = torch.zeros_like(tp)
    total_fp = torch.zeros_like(fp)
    for images in (odd, even):
        part = evidence.subset(images)
        keep = torch.isin(evidence.region_image, torch.tensor(images))
        a, b = label_counts(part, grades[:, keep], alphas)
        total_tp, total_fp = total_tp + a, total_fp + b
        assert part.images == tuple(evidence.images[i] for i in images)
        assert part.total_positive == pytest.approx(float(evidence.image_positive[images].sum()))
    assert torch.equal(total_tp, tp) and torch.equal(total_fp, fp)


def test_region_weights_are_each_regions_own_pixels():
    evidence, raw = syn.evidence(seed=7, count=3, size=24, weights="grid")
    (table,) = raw["tables"]
    pos, neg = region_weights(evidence)
    labels = table.labels.numpy()
    for row in range(len(table)):
        b, t = int(table.image[row]), int(table.threshold[row])
        inside = labels[b, t] == row + 1
        assert pos[row] == np.count_nonzero(inside & raw["masks"][b])
        assert neg[row] == np.count_nonzero(inside & ~raw["masks"][b])


def test_every_pixel_group_belongs_to_one_image(measured):
    evidence, _ = measured
    chains = evidence.chains
    for g in range(chains.shape[0]):
        regions = chains[g][chains[g] >= 0]
        assert len(regions) >= 1
        assert set(evidence.region_image[regions].tolist()) == {int(evidence.group_image[g])}
