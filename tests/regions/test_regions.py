"""Region measurement cross-checked against skimage and a plain-Python reference.

`area`, `pixels`, `gray`, `unevenness` against `skimage.measure.regionprops`; `shape`,
`symmetry`, `darkness`, `brightness` against tests/reference/regions.py (same
definitions, computed one region at a time in plain Python); region counts against
`skimage.measure.label(connectivity=2)`; a few values worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from kistrules.builtins import PROPERTIES
from kistrules.errors import DataError, UsageError
from kistrules.regions import (
    RegionTable,
    eq9_thresholds,
    measure,
    measure_regions,
    pseudo_label_mask,
)
from tests.reference import regions as ref

TOL = 1e-6


@st.composite
def image_and_labels(draw, max_side: int = 14):
    """A gray image and a label map with few, non-consecutive, possibly disconnected labels."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    image = draw(hnp.arrays(np.uint8, (h, w)))
    values = draw(st.lists(st.integers(1, 40), min_size=1, max_size=4, unique=True))
    density = draw(st.floats(0.05, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((h, w)) < density, rng.choice(values, (h, w)), 0)
    return image, labels


@st.composite
def batch(draw, max_side: int = 12):
    b = draw(st.integers(1, 3))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (b, h, w))
    residuals = rng.random((b, h, w))
    thresholds = np.sort(rng.uniform(0, 1, draw(st.integers(1, 3))))
    return images, residuals, thresholds


def _rows_by_label(labels: np.ndarray) -> list[int]:
    return sorted(int(v) for v in np.unique(labels) if v)


# ------------------------------------------------------------------ cross-checks: measure


@settings(max_examples=120, deadline=None)
@given(image_and_labels(), st.tuples(st.integers(1, 300), st.integers(1, 300)))
def test_measure_matches_skimage_regionprops(data, original):
    image, labels = data
    table = measure(image, labels, original_size=original)
    h, w = image.shape
    props = regionprops(labels, intensity_image=image)
    assert len(table) == len(props)
    for i, rp in enumerate(props):  # regionprops is ordered by label value, like the table
        assert table.label[i] == i + 1
        assert table.pixel_count[i] == rp.area
        assert table["area"][i].item() == pytest.approx(rp.area / (h * w), abs=TOL)
        pixels = rp.area * original[0] * original[1] / (h * w)
        assert table["pixels"][i].item() == pytest.approx(pixels, rel=TOL, abs=TOL)
        assert table["gray"][i].item() == pytest.approx(rp.intensity_mean, abs=TOL)
        assert table["unevenness"][i].item() == pytest.approx(rp.intensity_std, abs=TOL)
        assert table.bbox[i].tolist() == list(rp.bbox)


@settings(max_examples=120, deadline=None)
@given(image_and_labels())
def test_measure_matches_plain_python_reference(data):
    image, labels = data
    table = measure(image, labels)
    regions = ref.regions_of(labels)
    rows = image.tolist()
    for i, value in enumerate(_rows_by_label(labels)):
        pixels = regions[value]
        dark, bright = ref.darkness_brightness(pixels, rows)
        assert table["shape"][i].item() == pytest.approx(ref.shape(pixels), abs=TOL)
        assert table["symmetry"][i].item() == pytest.approx(ref.symmetry(pixels), abs=TOL)
        assert table["darkness"][i].item() == pytest.approx(dark, abs=TOL)
        assert table["brightness"][i].item() == pytest.approx(bright, abs=TOL)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_shape_on_larger_connected_blobs(seed):
    """Bigger, realistic regions (many walk steps, long rays) against the reference."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(40, 40)), 2.5)
    labels = sk_label(field > np.quantile(field, 0.6), connectivity=2)
    image = rng.integers(0, 256, (40, 40))
    table = measure(image, labels, properties=["shape", "symmetry", "darkness"])
    regions = ref.regions_of(labels)
    for i, value in enumerate(_rows_by_label(labels)):
        pixels = regions[value]
        assert table["shape"][i].item() == pytest.approx(ref.shape(pixels), abs=TOL)
        assert table["symmetry"][i].item() == pytest.approx(ref.symmetry(pixels), abs=TOL)
        dark, _ = ref.darkness_brightness(pixels, image.tolist())
        assert table["darkness"][i].item() == pytest.approx(dark, abs=TOL)


# ----------------------------------------------------------- cross-checks: measure_regions


@settings(max_examples=60, deadline=None)
@given(batch())
def test_region_counts_and_label_maps_match_skimage(data):
    images, residuals, thresholds = data
    table = measure_regions(images, residuals, thresholds)
    labels = table.labels.numpy()
    for b in range(images.shape[0]):
        for t, thr in enumerate(thresholds):
            expected = sk_label(residuals[b] > thr, connectivity=2)
            rows = (table.image == b) & (table.threshold == t)
            assert int(rows.sum()) == expected.max()
            # Same partition: each of our regions is exactly one skimage region.
            ours = labels[b, t]
            assert ((ours > 0) == (expected > 0)).all()
            pairs = {
                (int(a), int(e)) for a, e in zip(ours.ravel(), expected.ravel(), strict=True) if a
            }
            assert len(pairs) == len({a for a, _ in pairs}) == len({e for _, e in pairs})
            # and the table row of each region is its label - 1
            assert sorted(a for a, _ in pairs) == (torch.nonzero(rows)[:, 0] + 1).tolist()


@settings(max_examples=60, deadline=None)
@given(batch(), st.lists(st.sampled_from(sorted(PROPERTIES)), min_size=1, unique=True))
def test_batch_equals_per_image_and_threshold_measurement(data, names):
    images, residuals, thresholds = data
    b, h, w = images.shape
    sizes = [(h * (i + 2), w * (i + 1)) for i in range(b)]
    table = measure_regions(images, residuals, thresholds, properties=names, original_sizes=sizes)
    assert set(table.properties) == set(names)
    start = 0
    for i in range(b):
        for t, thr in enumerate(thresholds):
            single = measure(
                images[i],
                sk_label(residuals[i] > thr, connectivity=2),
                properties=names,
                original_size=sizes[i],
            )
            rows = torch.arange(start, start + len(single))
            start += len(single)
            part = table.select(rows)
            assert (part.image == i).all() and (part.threshold == t).all()
            assert torch.equal(part.pixel_count, single.pixel_count)
            assert torch.equal(part.bbox, single.bbox)
            for name in names:
                torch.testing.assert_close(part[name], single[name], atol=TOL, rtol=0)
    assert start == len(table)


@settings(max_examples=60, deadline=None)
@given(batch(), st.integers(0, 2**32 - 1))
def test_pseudo_label_mask_equals_naive_loop(data, seed):
    images, residuals, thresholds = data
    table = measure_regions(images, residuals, thresholds, properties=["area"])
    fired = torch.from_numpy(np.random.default_rng(seed).random(len(table)) < 0.5)
    mask = pseudo_label_mask(table, fired)
    expected = np.zeros(images.shape, bool)
    for row in range(len(table)):  # eq. 11-12, one region at a time
        if fired[row]:
            b, t = int(table.image[row]), int(table.threshold[row])
            expected[b] |= residuals_region(table, b, t, row)
    assert mask.dtype == torch.bool and mask.shape == images.shape
    assert (mask.numpy() == expected).all()


def residuals_region(table: RegionTable, b: int, t: int, row: int) -> np.ndarray:
    return table.labels[b, t].numpy() == row + 1


# ------------------------------------------------------------------ values by hand


def _si(radii: list[float]) -> float:
    total = sum(radii)
    return sum(abs(100 * r / total - 100 / 16) for r in radii)


def _radii_of_thin_line(half_length: float) -> list[float]:
    # A 1-pixel-thick horizontal line seen from its middle pixel's centre: a ray at angle a
    # leaves through the line's long side (0.5 / sin a) or its end (half_length / cos a).
    out = []
    for i in range(16):
        a = 2 * math.pi * i / 16
        s, c = abs(math.sin(a)), abs(math.cos(a))
        out.append(
            min(0.5 / s if s > 1e-12 else math.inf, half_length / c if c > 1e-12 else math.inf)
        )
    return out


def test_shape_of_a_single_pixel_and_a_horizontal_line_by_hand():
    image = np.zeros((5, 30))
    dot = np.zeros((5, 30), int)
    dot[2, 4] = 1
    single = [0.5 / max(abs(math.sin(2 * math.pi * i / 16)), abs(math.cos(2 * math.pi * i / 16)))
              for i in range(16)]  # fmt: skip
    assert measure(image, dot)["shape"].item() == pytest.approx(_si(single), abs=1e-9)
    bar = np.zeros((5, 30), int)
    bar[2, 3:24] = 1  # 21 pixels, centroid at column 13
    expected = _si(_radii_of_thin_line(10.5))
    assert measure(image, bar)["shape"].item() == pytest.approx(expected, abs=1e-9)
    assert expected > 100  # a line reads as slender ...
    yy, xx = np.mgrid[:15, :15]
    disc = ((yy - 7) ** 2 + (xx - 7) ** 2 <= 36).astype(int)
    assert measure(np.zeros((15, 15)), disc)["shape"].item() < 10  # ... a disc as compact


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 2), (2, 6), (3, 8), (4, 5), (7, 7)])
def test_shape_of_rectangles_by_hand(rows, cols):
    """From a rectangle's centre, r = min(half height / |sin|, half width / |cos|).

    Even sides put the centroid on a grid line or a pixel corner, so the axis rays run
    along grid lines and the diagonal rays start at a corner.
    """
    labels = np.zeros((rows + 4, cols + 4), int)
    labels[2 : 2 + rows, 2 : 2 + cols] = 1
    radii = []
    for i in range(16):
        a = 2 * math.pi * i / 16
        s, c = abs(math.sin(a)), abs(math.cos(a))
        radii.append(
            min(rows / 2 / s if s > 1e-12 else math.inf, cols / 2 / c if c > 1e-12 else math.inf)
        )
    assert measure(np.zeros(labels.shape), labels)["shape"].item() == pytest.approx(
        _si(radii), abs=1e-9
    )


def test_diagonal_line_passes_through_pixel_corners():
    """8-connected diagonal pixels touch at corners; the 45-degree rays run through them."""
    labels = np.eye(11, dtype=int)
    table = measure(np.zeros((11, 11)), labels)
    # From the centroid (5, 5): rays at 45 and 225 degrees reach the far corners
    # (5.5 * sqrt 2); the others leave the centre pixel's square.
    radii = []
    for i in range(16):
        a = 2 * math.pi * i / 16
        s, c = abs(math.sin(a)), abs(math.cos(a))
        radii.append(5.5 * math.sqrt(2) if i in (2, 10) else 0.5 / max(s, c))
    assert table["shape"].item() == pytest.approx(_si(radii), abs=1e-9)


def test_shape_is_187_5_when_the_centroid_is_outside():
    ring = np.ones((7, 7), int)
    ring[1:-1, 1:-1] = 0
    assert measure(np.zeros((7, 7)), ring)["shape"].item() == 187.5


def test_symmetry_by_hand():
    labels = np.array(
        [
            [1, 1, 0, 2, 0, 0],
            [1, 0, 0, 2, 0, 3],
            [1, 1, 1, 0, 0, 3],
        ]
    )
    table = measure(np.zeros(labels.shape), labels, properties=["symmetry"])
    # label 1: width 3 -> left column {r0, r1, r2}, mirrored right column {r2}: IoU 1/3.
    # label 2 and 3: width 1 -> 1 by definition.
    assert table["symmetry"].tolist() == pytest.approx([1 / 3, 1.0, 1.0])


def test_darkness_and_brightness_by_hand():
    image = np.full((9, 9), 100.0)
    image[4, 4] = 40.0
    labels = np.zeros((9, 9), int)
    labels[4, 4] = 5
    table = measure(image, labels)
    assert table["darkness"].item() == pytest.approx(60.0)
    assert table["brightness"].item() == 0.0
    # A region covering the whole image has no ring: both are 0.
    whole = measure(image, np.ones((9, 9), int))
    assert whole["darkness"].item() == 0.0 and whole["brightness"].item() == 0.0


def test_ring_is_geometric_and_ignores_other_regions():
    image = np.zeros((1, 9))
    image[0, 4] = 90.0  # the middle pixel is region 2, inside region 1's ring
    labels = np.array([[1, 0, 0, 0, 2, 0, 0, 0, 0]])
    table = measure(image, labels)
    # Region 1 at column 0: ring = columns 1..3 (gray 0) -> 0, so no darkness or brightness.
    assert table["darkness"][0].item() == 0.0 and table["brightness"][0].item() == 0.0
    # Region 2: ring = columns 1..3 and 5..7 (all 0) -> brightness 90.
    assert table["brightness"][1].item() == pytest.approx(90.0)


def test_non_consecutive_and_disconnected_labels():
    image = np.arange(20, dtype=np.uint8).reshape(4, 5)
    labels = np.array(
        [
            [7, 0, 0, 0, 7],
            [0, 0, 30, 0, 0],
            [0, 0, 30, 0, 0],
            [0, 0, 0, 0, 0],
        ]
    )
    table = measure(image, labels)
    assert len(table) == 2
    assert table.pixel_count.tolist() == [2, 2]
    assert table["gray"].tolist() == pytest.approx([(0 + 4) / 2, (7 + 12) / 2])
    assert table["unevenness"].tolist() == pytest.approx([2.0, 2.5])
    assert table.bbox.tolist() == [[0, 0, 1, 5], [1, 2, 3, 3]]
    assert table["symmetry"][0].item() == 1.0  # the two pixels mirror each other
    assert table.labels[0, 0].tolist() == [
        [1, 0, 0, 0, 1],
        [0, 0, 2, 0, 0],
        [0, 0, 2, 0, 0],
        [0, 0, 0, 0, 0],
    ]


# ------------------------------------------------------------------ eq. 9


def test_eq9_thresholds_follow_the_formula():
    t = eq9_thresholds(2.0, 0.5, 0.3)
    assert t.dtype == torch.float64
    assert t.tolist() == pytest.approx([2.0 + n * 0.3 * 0.5 for n in range(4, 11)])
    assert len(eq9_thresholds(0.0, 1.0, 0.5)) == 5  # n = 2..6
    assert eq9_thresholds(1.0, 2.0, 1.0).tolist() == pytest.approx([3.0, 5.0, 7.0])
    assert eq9_thresholds(0.0, 1.0, 0.1).tolist()[-1] == pytest.approx(3.0)  # 3 / 0.1 -> 30


@pytest.mark.parametrize("args", [(0.0, 1.0, 0.0), (0.0, -1.0, 0.3), (math.nan, 1.0, 0.3)])
def test_eq9_thresholds_reject_bad_parameters(args):
    with pytest.raises(DataError):
        eq9_thresholds(*args)


# ------------------------------------------------------------------ inputs and the table


def test_numpy_torch_uint8_and_float_inputs_agree():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 16, 16)).astype(np.uint8)
    residuals = rng.random((2, 16, 16)).astype(np.float32)
    thresholds = np.array([0.5, 0.8])
    base = measure_regions(images, residuals, thresholds)
    variants = [
        measure_regions(torch.from_numpy(images), torch.from_numpy(residuals), thresholds),
        measure_regions(images.astype(np.float64), residuals, torch.from_numpy(thresholds)),
        measure_regions(torch.from_numpy(images).float(), residuals, list(thresholds)),
    ]
    half = measure_regions(images, torch.from_numpy(residuals).bfloat16(), thresholds)
    expected = measure_regions(images, torch.from_numpy(residuals).bfloat16().float(), thresholds)
    assert torch.equal(half.labels, expected.labels)
    for other in variants:
        assert torch.equal(other.labels, base.labels)
        for name in PROPERTIES:
            torch.testing.assert_close(other[name], base[name], atol=1e-9, rtol=0)
    assert all(base[name].dtype == torch.float64 for name in PROPERTIES)
    assert base.labels.shape == (2, 2, 16, 16) and base.labels.dtype == torch.int32


def test_table_methods():
    rng = np.random.default_rng(4)
    table = measure_regions(rng.random((2, 10, 10)) * 255, rng.random((2, 10, 10)), [0.6])
    n = len(table)
    assert n == int(table.labels.max())
    keep = table["area"] > table["area"].median()
    part = table.select(keep)
    assert len(part) == int(keep.sum())
    assert torch.equal(part.label, table.label[keep])
    assert torch.equal(part["gray"], table["gray"][keep])
    assert part.labels is table.labels
    moved = table.to("cpu")
    assert torch.equal(moved["shape"], table["shape"])
    with pytest.raises(KeyError, match="not measured"):
        measure_regions(rng.random((1, 4, 4)), rng.random((1, 4, 4)), [0.5], properties=["gray"])[
            "area"
        ]


def test_only_requested_properties_are_measured():
    rng = np.random.default_rng(5)
    table = measure_regions(
        rng.random((1, 8, 8)), rng.random((1, 8, 8)), [0.5], properties=["gray"]
    )
    assert list(table.properties) == ["gray"]


def test_no_regions_gives_an_empty_table():
    table = measure_regions(np.zeros((2, 5, 5)), np.zeros((2, 5, 5)), [0.5, 0.7])
    assert len(table) == 0
    assert table["shape"].shape == (0,) and table.bbox.shape == (0, 4)
    assert table.labels.shape == (2, 2, 5, 5) and not table.labels.any()
    assert not pseudo_label_mask(table, torch.zeros(0, dtype=torch.bool)).any()


def test_outputs_follow_the_input_device():
    images = torch.rand(1, 6, 6) * 255
    residuals = torch.rand(1, 6, 6)
    table = measure_regions(images, residuals, torch.tensor([0.5]))
    assert table.label.device == residuals.device
    if torch.cuda.is_available():
        gpu = measure_regions(images.cuda(), residuals.cuda(), torch.tensor([0.5]))
        assert gpu["gray"].is_cuda and gpu.labels.is_cuda
        torch.testing.assert_close(gpu["gray"].cpu(), table["gray"])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: measure_regions(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), [0.1]), DataError),
        (lambda: measure_regions(np.zeros((4, 4)), np.zeros((4, 4)), [0.1]), DataError),
        (lambda: measure_regions(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), [math.nan]), DataError),
        (
            lambda: measure_regions(
                np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), [0.1], properties=["grey"]
            ),
            UsageError,
        ),
        (
            lambda: measure_regions(
                np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), [0.1], original_sizes=[(4, 4)]
            ),
            DataError,
        ),
        (lambda: measure(np.zeros((4, 4)), -np.ones((4, 4), int)), DataError),
        (lambda: measure(np.zeros((4, 4)), np.full((4, 4), 0.5)), DataError),
        (lambda: measure(np.zeros((4, 4)), np.zeros((3, 4), int)), DataError),
    ],
)
def test_bad_input_raises_a_kistrules_error(call, error):
    with pytest.raises(error):
        call()
