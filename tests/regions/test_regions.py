"""Region measurement cross-checked against skimage and a plain-Python reference.

`area`, `pixels`, `gray`, `unevenness`, and `elongation`, `orientation` (through the
inertia tensor, with pixel spacing) against `skimage.measure.regionprops`; `shape`,
`symmetry`, `darkness`, `brightness`, `border`, `thickness` against
tests/reference/regions.py (same definitions, computed one region at a time in plain
Python); region counts against `skimage.measure.label(connectivity=2)`; a few values
worked out by hand.
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


def _skimage_axes(rp, sy: float, sx: float) -> tuple[float, float, float]:
    """(elongation, orientation in degrees from horizontal, relative eigenvalue gap).

    skimage's inertia tensor (with `spacing`) is [[Cxx, -Cxy], [-Cxy, Cyy]] of the pixel
    centres; a pixel square adds its own variance sy^2 / 12, sx^2 / 12 (docs/measurement.md).
    The angle is read off numpy's eigenvector, not a closed formula.
    """
    t = rp.inertia_tensor
    cov = np.array([[t[1, 1] + sy * sy / 12, -t[0, 1]], [-t[0, 1], t[0, 0] + sx * sx / 12]])
    values, vectors = np.linalg.eigh(cov)  # ascending; columns are (y, x) eigenvectors
    vy, vx = vectors[:, 1]
    angle = math.degrees(math.atan2(abs(vy), abs(vx)))
    gap = (values[1] - values[0]) / (values[1] + values[0])
    return math.sqrt(values[1] / values[0]), angle, gap


@settings(max_examples=120, deadline=None)
@given(image_and_labels(), st.tuples(st.integers(1, 300), st.integers(1, 300)))
def test_new_properties_match_skimage_and_the_reference(data, original):
    """border, elongation, orientation, thickness in original-image pixels (anisotropic)."""
    image, labels = data
    h, w = image.shape
    sy, sx = original[0] / h, original[1] / w
    table = measure(image, labels, original_size=original)
    regions = ref.regions_of(labels)
    props = regionprops(labels, spacing=(sy, sx))
    for i, (value, rp) in enumerate(zip(_rows_by_label(labels), props, strict=True)):
        pixels = regions[value]
        got = {name: table[name][i].item() for name in PROPERTIES}
        assert got["border"] == pytest.approx(ref.border(pixels, h, w, sy, sx), rel=TOL, abs=TOL)
        assert got["thickness"] == pytest.approx(ref.thickness(pixels, sy, sx), rel=TOL, abs=TOL)
        elongation, angle, gap = _skimage_axes(rp, sy, sx)
        assert got["elongation"] >= 1.0
        assert got["elongation"] == pytest.approx(elongation, rel=TOL)
        assert 0.0 <= got["orientation"] <= 90.0
        if gap > 1e-6:  # else there is no major axis, and orientation is 0 by definition
            assert got["orientation"] == pytest.approx(angle, abs=1e-5)


@settings(max_examples=120, deadline=None)
@given(image_and_labels())
def test_elongation_and_orientation_are_skimages_axes_on_pixel_squares(data):
    """On a square grid: skimage's axis lengths with 1/12 added to each eigenvalue.

    skimage's `axis_major_length` is 4 sqrt(l1) of the pixel centres; its `orientation`
    is the major axis' angle from the row axis, in [-pi/2, pi/2].
    """
    image, labels = data
    table = measure(image, labels)
    for i, rp in enumerate(regionprops(labels)):
        l1 = (rp.axis_major_length / 4) ** 2 + 1 / 12
        l2 = (rp.axis_minor_length / 4) ** 2 + 1 / 12
        assert table["elongation"][i].item() == pytest.approx(math.sqrt(l1 / l2), rel=TOL)
        if (l1 - l2) / (l1 + l2) > 1e-6:
            tilt = 90.0 - abs(math.degrees(rp.orientation))
            assert table["orientation"][i].item() == pytest.approx(tilt, abs=1e-5)
        else:
            assert table["orientation"][i].item() == 0.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_new_properties_on_larger_connected_blobs(seed):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(60, 40)), 2.5)
    labels = sk_label(field > np.quantile(field, 0.6), connectivity=2)
    image = rng.integers(0, 256, (60, 40))
    original = (150, 400)
    sy, sx = 150 / 60, 400 / 40
    table = measure(image, labels, original_size=original)
    regions = ref.regions_of(labels)
    props = regionprops(labels, spacing=(sy, sx))
    for i, (value, rp) in enumerate(zip(_rows_by_label(labels), props, strict=True)):
        pixels = regions[value]
        assert table["border"][i].item() == pytest.approx(ref.border(pixels, 60, 40, sy, sx))
        assert table["thickness"][i].item() == pytest.approx(ref.thickness(pixels, sy, sx), rel=TOL)
        elongation, angle, gap = _skimage_axes(rp, sy, sx)
        assert table["elongation"][i].item() == pytest.approx(elongation, rel=TOL)
        if gap > 1e-6:
            assert table["orientation"][i].item() == pytest.approx(angle, abs=1e-5)


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


@pytest.mark.parametrize(
    ("rows", "cols", "where"),
    [
        (slice(0, 3), slice(0, 3), "top-left corner"),
        (slice(0, 2), slice(5, 9), "top edge"),
        (slice(7, 12), slice(13, 16), "right edge"),
        (slice(13, 16), slice(4, 9), "bottom edge"),
        (slice(0, 16), slice(0, 2), "left edge, full height"),
    ],
)
def test_ring_at_the_image_border_uses_only_pixels_inside(rows, cols, where):
    """A region touching the border is compared with the ring pixels inside the image.

    Out-of-image positions neither count nor read as gray 0: a frame of zeros around a
    bright tile would make every border region look brighter than its surroundings.
    """
    image = np.full((16, 16), 120.0)
    image[rows, cols] = 94.0  # 26 gray levels darker than the tile around it
    labels = np.zeros((16, 16), int)
    labels[rows, cols] = 1
    table = measure(image, labels)
    assert table["darkness"].item() == pytest.approx(26.0), where
    assert table["brightness"].item() == 0.0
    assert table["border"].item() == 0.0
    residual = (labels > 0).astype(float)[None]
    batch = measure_regions(image[None], residual, [0.5], properties=["darkness", "brightness"])
    assert batch["darkness"].item() == pytest.approx(26.0) and batch["brightness"].item() == 0.0
    image[rows, cols] = 150.0
    assert measure(image, labels)["brightness"].item() == pytest.approx(30.0), where


def test_a_region_without_a_ring_has_darkness_and_brightness_0():
    """Covering the whole image: no surroundings to compare with, so no contrast (0, finite)."""
    image = np.random.default_rng(0).uniform(0, 255, (5, 7))
    for labels in (np.ones((5, 7), int), np.full((5, 7), 3)):
        table = measure(image, labels)
        assert table["darkness"].item() == 0.0 and table["brightness"].item() == 0.0
    table = measure_regions(image[None], np.ones((1, 5, 7)), [0.5])
    values = torch.stack([table[name] for name in PROPERTIES])
    assert torch.isfinite(values).all()
    assert table["darkness"].item() == 0.0 and table["brightness"].item() == 0.0


def test_border_by_hand_in_original_pixels():
    labels = np.zeros((10, 20), int)
    labels[3:5, 8:12] = 1  # 3 rows above, 5 below, 8 columns left, 8 right
    labels[9, 0] = 2  # a corner pixel
    labels[2, 17:19] = 3  # 1 column to the right edge
    table = measure(np.zeros((10, 20)), labels)
    assert table["border"].tolist() == [3.0, 0.0, 1.0]
    # Working 10 x 20 of an original 40 x 20: a row is 4 original pixels, a column 1.
    table = measure(np.zeros((10, 20)), labels, original_size=(40, 20))
    assert table["border"].tolist() == [8.0, 0.0, 1.0]


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 9), (9, 1), (2, 6), (5, 3), (4, 4)])
@pytest.mark.parametrize("original", [None, (24, 24), (36, 12)])
def test_elongation_thickness_orientation_of_rectangles_by_hand(rows, cols, original):
    """An a x b rectangle (original pixels): elongation max / min, thickness min, 0 or 90 deg."""
    labels = np.zeros((12, 12), int)
    labels[2 : 2 + rows, 3 : 3 + cols] = 1
    sy, sx = (1.0, 1.0) if original is None else (original[0] / 12, original[1] / 12)
    tall, wide = rows * sy, cols * sx
    table = measure(np.zeros((12, 12)), labels, original_size=original)
    assert table["elongation"].item() == pytest.approx(max(tall, wide) / min(tall, wide))
    assert table["thickness"].item() == pytest.approx(min(tall, wide))
    expected = 0.0 if wide >= tall else 90.0  # a square has no major axis: 0
    assert table["orientation"].item() == pytest.approx(expected, abs=1e-9)


def test_lines_have_finite_elongation_where_skimages_minor_axis_is_0():
    labels = np.zeros((15, 15), int)
    labels[7, 2:13] = 1  # horizontal, 11 px
    diagonal = np.eye(15, dtype=int)[:11, :11]
    assert regionprops(labels)[0].axis_minor_length == 0.0  # skimage: an infinite ratio
    table = measure(np.zeros((15, 15)), labels)
    assert table["elongation"].item() == pytest.approx(11.0)  # 11 x 1 pixel squares
    assert table["thickness"].item() == pytest.approx(1.0)
    assert table["orientation"].item() == 0.0
    n = 11
    table = measure(np.zeros((11, 11)), diagonal)
    # Centres' variance along the diagonal 2 (n^2 - 1) / 12, across it 0; squares add 1/12.
    assert table["elongation"].item() == pytest.approx(math.sqrt(2 * n * n - 1))
    assert table["orientation"].item() == pytest.approx(45.0)
    # Staircase perimeter 4n, area n: t = n - sqrt(n^2 - n), about 1/2 (documented).
    assert table["thickness"].item() == pytest.approx(n - math.sqrt(n * n - n))
    anti = measure(np.zeros((11, 11)), diagonal[:, ::-1])
    assert anti["orientation"].item() == pytest.approx(45.0)  # tilt, not direction


def test_thickness_of_a_ring_is_its_band_width():
    labels = np.zeros((44, 44), int)
    labels[2:42, 2:42] = 1
    labels[4:40, 4:40] = 0  # a 40 x 40 square frame, 2 px wide
    value = measure(np.zeros((44, 44)), labels)["thickness"].item()
    assert 2.0 <= value <= 2.2  # corners make the equivalent strip a little wider


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
