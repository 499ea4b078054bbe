"""The explain overlay is readable on gray tiles: contrasting outlines, tags beside regions.

Outlines are checked pixel by pixel against `find_boundaries` of the enlarged
masks (an independent computation of where they must be); tags against those
outlines; colours by their WCAG contrast ratio against every gray a tile can have.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.segmentation import find_boundaries

from kistrules.overlay import (
    HALO,
    NONE_COLOUR,
    OUTLINE_PALETTE,
    TAG_GAP,
    RegionMark,
    draw_overlay,
    font,
    layout_tags,
    rule_colours,
)


def _luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    channels = []
    for value in rgb:
        c = value / 255.0
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)))
    return (lb + 0.05) / (la + 0.05)


@pytest.mark.parametrize("colour", [*OUTLINE_PALETTE, NONE_COLOUR])
def test_every_outline_stands_out_on_every_gray(colour):
    assert _contrast(colour, HALO) >= 3.0  # the colour against its own black halo
    for gray in range(256):
        tile = (gray, gray, gray)
        # Against any tile, the colour or its halo is at least 3:1 (WCAG for graphics).
        assert max(_contrast(colour, tile), _contrast(HALO, tile)) >= 3.0, gray


def test_the_old_gray_for_no_rule_would_vanish_on_a_gray_tile():
    """What the check above guards against: (170, 170, 170) on a tile of 170 is 1:1."""
    assert _contrast((170, 170, 170), (170, 170, 170)) == 1.0
    assert NONE_COLOUR != (170, 170, 170) and len(set(NONE_COLOUR)) == 1  # white: not a tile gray


def _outline_pixels(mask: np.ndarray, factor: int, thickness: int) -> np.ndarray:
    big = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
    edge = find_boundaries(big, mode="inner")
    for _ in range(thickness - 1):
        edge |= find_boundaries(big & ~edge, mode="inner")
    return edge


@pytest.mark.parametrize("gray", [20, 128, 235])
def test_outlines_are_their_colour_between_black_lines(gray: int):
    image = np.full((40, 40), float(gray))
    fired = np.zeros((40, 40), bool)
    fired[6:16, 6:18] = True
    missed = np.zeros((40, 40), bool)
    missed[24:33, 20:34] = True
    regions = [RegionMark(1, fired, "a", 0.9), RegionMark(2, missed, None, 0.1)]
    picture = np.asarray(draw_overlay(image, regions, rule_names=["a"]))
    factor = 12  # ceil(448 / 40)
    thickness = max(2, factor // 3)
    for region, colour in ((regions[0], rule_colours(["a"])["a"]), (regions[1], NONE_COLOUR)):
        edge = _outline_pixels(region.mask, factor, thickness)
        halo = ndimage.binary_dilation(edge, np.ones((3, 3), bool)) & ~edge
        drawn = picture[: 40 * factor, : 40 * factor]
        assert (drawn[edge] == colour).all()
        assert (drawn[halo] == HALO).all()
        assert halo.sum() > edge.sum() / thickness  # a line on both sides of the colour


@st.composite
def scenes(draw):
    """Up to 8 disjoint rectangles on a 24-48 px image, some at its border, some touching."""
    side = draw(st.integers(24, 48))
    taken = np.zeros((side, side), bool)
    regions = []
    for _ in range(draw(st.integers(1, 8))):
        h, w = draw(st.integers(1, side // 3)), draw(st.integers(1, side // 3))
        r, c = draw(st.integers(0, side - h)), draw(st.integers(0, side - w))
        if taken[max(r - 1, 0) : r + h + 1, max(c - 1, 0) : c + w + 1].any():
            continue  # disjoint and not 8-connected: separate regions
        taken[r : r + h, c : c + w] = True
        mask = np.zeros((side, side), bool)
        mask[r : r + h, c : c + w] = True
        rule = draw(st.sampled_from(["a", None]))
        regions.append(RegionMark(len(regions) + 1, mask, rule, 0.9 if rule else 0.2))
    return side, regions


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_tags_sit_beside_their_region_never_on_its_outline(scene):
    side, regions = scene
    factor = int(np.ceil(448 / side))
    size = (side * factor, side * factor)
    scratch = ImageDraw.Draw(Image.new("RGB", size))
    tag_font = font(max(13, min(18, factor * 3)))
    tagged = []
    for region in regions:
        rows, cols = np.nonzero(region.mask)
        box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        tagged.append((region, tuple(int(v) for v in box)))
    tags = layout_tags(tagged, rule_colours(["a"]), factor, size, scratch, tag_font)
    assert sorted(int(t.text) for t in tags) == [r.id for r in regions]  # one tag each
    thickness = max(2, factor // 3)
    for tag in tags:
        region = regions[int(tag.text) - 1]
        edge = _outline_pixels(region.mask, factor, thickness)
        footprint = ndimage.binary_dilation(edge, np.ones((3, 3), bool))  # outline and halo
        x0, y0, x1, y1 = tag.box
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]  # inside the picture
        assert not footprint[y0:y1, x0:x1].any(), (tag, region.id)
    # Where there was room, no two tags overlap.
    boxes = [t.box for t in tags]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
            assert not overlap or len(tags) > 6, (a, b)


def test_a_tag_far_from_its_region_gets_a_leader_line():
    side = 40
    masks = []
    # A region in the corner, hemmed in by neighbours: its tag cannot sit right beside it.
    for r, c in ((0, 0), (0, 4), (4, 0), (4, 4)):
        mask = np.zeros((side, side), bool)
        mask[r : r + 3, c : c + 3] = True
        masks.append(mask)
    regions = [RegionMark(i + 1, m, "a", 0.9) for i, m in enumerate(masks)]
    factor = int(np.ceil(448 / side))
    size = (side * factor, side * factor)
    scratch = ImageDraw.Draw(Image.new("RGB", size))
    tagged = []
    for region in regions:
        rows, cols = np.nonzero(region.mask)
        tagged.append((region, (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)))
    tags = layout_tags(tagged, rule_colours(["a"]), factor, size, scratch, font(13))
    led = [t for t in tags if t.leader is not None]
    assert led, tags  # the corner region's neighbours took every place beside it
    for tag in tags:
        x0, y0, x1, y1 = tag.box
        rx0, ry0, rx1, ry1 = tag.region_box
        apart = max(rx0 - x1, x0 - rx1, ry0 - y1, y0 - ry1)  # px between the two boxes
        if tag.leader is None:
            assert apart <= 2 * TAG_GAP + 2, tag  # right beside its region
        else:
            bx, by, tx, ty = tag.leader
            assert x0 <= bx < x1 and y0 <= by < y1  # from the tag ...
            assert rx0 <= tx <= rx1 and ry0 <= ty <= ry1  # ... to its region's box


@pytest.mark.parametrize("side", [30, 100, 300])  # tag fonts 15, 13 and 13 px
def test_a_tag_holds_its_whole_text(side: int):
    image = np.full((side, side), 128.0)
    mask = np.zeros((side, side), bool)
    mask[side // 2 : side // 2 + 3, side // 2 : side // 2 + 3] = True
    region = RegionMark(70, mask, "a", 0.9)
    picture = np.asarray(draw_overlay(image, [region], rule_names=["a"]))
    factor = int(np.ceil(448 / side))
    scratch = ImageDraw.Draw(Image.new("RGB", (side * factor, side * factor)))
    tag_font = font(max(13, min(18, factor * 3)))
    box = (side // 2, side // 2, side // 2 + 3, side // 2 + 3)
    (tag,) = layout_tags([(region, box)], rule_colours(["a"]), factor, (side * factor,) * 2,
                         scratch, tag_font)  # fmt: skip
    x0, y0, x1, y1 = tag.box
    near = picture[max(y0 - 4, 0) : y1 + 4, max(x0 - 4, 0) : x1 + 4]
    white = (near > 180).all(axis=2)  # the text (rule a's frame is orange, the tile 128)
    rows, cols = np.nonzero(white)
    rows, cols = rows + max(y0 - 4, 0), cols + max(x0 - 4, 0)
    assert rows.size
    assert rows.min() >= y0 + 2 and rows.max() < y1 - 2  # inside the frame, not cut
    assert cols.min() >= x0 + 2 and cols.max() < x1 - 2
    _, top, _, bottom = scratch.textbbox((0, 0), "70", font=tag_font)
    assert rows.max() - rows.min() + 1 >= (bottom - top) - 2  # the glyphs' full height
