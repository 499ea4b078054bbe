"""Drawing for `explain --out`: region outlines, id tags, a legend and the pseudo-label tint.

Pure PIL and `skimage.segmentation.find_boundaries` (no matplotlib): the
picture is a view of an explanation, so it takes the numbers as given and
computes nothing about the rules. Small images are enlarged with nearest
neighbour first, so that a 64 px crop still gets readable one-pixel outlines
and tags; the legend and a per-region key sit in a panel to the right, so the
image itself stays uncluttered when the thresholds of eq. 9 give many nested
regions.

Readable on any gray: every outline is drawn in its colour between two black
lines (a halo), and a region no rule fired for is white, not gray, so that it
stands out on dark and light tiles alike. Id tags are white on black, framed
in the region's colour, and sit beside their region, never on it: the first
free place left, right, above or below its box, further out when those are
taken, with a leader line when it had to move away.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from skimage.segmentation import find_boundaries

from kistrules.atomic import atomic_path
from kistrules.explain import grade_text

# Colour-blind-safe (Okabe-Ito), for drawings on white (`kistrules plot`).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)
# Outline colours on an image: Okabe-Ito's hues, the darker ones lightened, so that each
# has a luminance of at least 0.4. With the black halo, every outline is then at least
# 3:1 (WCAG, graphics) against any gray: a dark tile sees the colour, a light one the halo.
# Rules take them in rulebook order.
OUTLINE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 200, 150),
    (240, 228, 66),
    (160, 170, 255),
    (255, 145, 80),
    (240, 150, 200),
)
NONE_COLOUR = (255, 255, 255)  # white: not a gray of the tile, with the black halo
HALO = (0, 0, 0)
# Crowded grade-0 specks: blended towards a mid gray, meant to recede, not to be read.
FAINT_COLOUR = (170, 170, 170)
TAG_TEXT = (255, 255, 255)
TAG_FILL = (0, 0, 0)
TAG_GAP = 3  # px between a tag and its region's box
MAX_TAGS = 30  # above this many regions, grade-0 regions get no tag
MAX_KEY_LINES = 24
TINT_COLOUR = (220, 30, 60)
PANEL_BG = (250, 250, 250)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class RegionMark:
    """One region to draw: its pixels, id and the rule that fired (None: no rule reached alpha).

    `mask` is the region's bool pixels, full size or any window of the image
    placed at `origin`; or, with `label` set, a window of a label image in
    which the region is the pixels equal to `label` (a view: drawing many
    regions then holds no per-region copy, `explain` passes its label images).
    """

    id: int
    mask: np.ndarray  # (h, w) bool window of the image grid, or labels when `label` is set
    rule: str | None
    grade: float
    threshold: float | None = None  # the eq. 9 residual threshold that produced it, if any
    origin: tuple[int, int] = (0, 0)  # (row, col) of mask[0, 0] on the image grid
    label: int | None = None

    def pixels(self) -> np.ndarray:
        """The region's bool pixels over the window `mask` covers."""
        if self.label is not None:
            return np.asarray(self.mask) == self.label
        return np.asarray(self.mask, bool)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font: the same look on every machine, no system fonts."""
    return ImageFont.load_default(size=size)


def rule_colours(rule_names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A stable colour per rule, by its place in the rulebook."""
    return {name: OUTLINE_PALETTE[i % len(OUTLINE_PALETTE)] for i, name in enumerate(rule_names)}


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) gray levels 0-255 -> (H, W, 3) uint8.

    A gray image is rounded once and then repeated as uint8: 3 bytes a pixel,
    not three float64 channels (24 bytes a pixel, several times over).
    """
    array = np.asarray(image)
    if array.ndim == 2:
        gray = np.clip(np.rint(array, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.clip(np.rint(array[..., :3], dtype=np.float64), 0, 255).astype(np.uint8)


def _enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def draw_overlay(
    image: np.ndarray,
    regions: Sequence[RegionMark],
    *,
    rule_names: Sequence[str],
    pseudo_label: np.ndarray | None = None,
    alpha: float | None = None,
    title: str | None = None,
    min_side: int = 448,
) -> Image.Image:
    """The image with every region outlined in its rule's colour and tagged with its id.

    Args:
        image: (H, W) gray levels 0-255 (the grid the regions were measured on).
        regions: what to draw, in id order.
        rule_names: every rule of the rulebook, for stable colours and the legend.
        pseudo_label: (H, W) bool, the union of regions that reach alpha, tinted red.
        alpha: the rulebook's threshold, stated in the key.
        title: a line above the key (e.g. the image's file name).
        min_side: the image is enlarged by an integer factor to at least this size.
    """
    canvas = _to_rgb(image)
    height, width = canvas.shape[:2]
    if pseudo_label is not None:
        tint = np.asarray(pseudo_label, bool)
        tinted = 0.55 * canvas[tint] + 0.45 * np.array(TINT_COLOUR)
        canvas[tint] = np.clip(tinted, 0, 255).astype(np.uint8)
    factor = max(1, int(np.ceil(min_side / max(height, width))))
    if factor > 1:
        canvas = _enlarge(canvas, factor)
    colours = rule_colours(rule_names)
    # Each region is drawn inside its own window (its mask's extent plus a
    # one-pixel margin), so drawing costs the regions' boxes, not regions x image;
    # one pass first reads each region's size and box.
    places = [_place(region) for region in regions]
    # Outlines: the inner boundary of each enlarged region, drawn widest first so
    # that a nested region's outline stays visible inside its parent's.
    # Regions that grade 0 (noise specks, often hundreds at the lowest threshold)
    # get a faint one-pixel outline and no tag when there are many; the key and
    # `--format json` still list them.
    crowded = len(regions) > MAX_TAGS
    thickness = max(2, factor // 3)
    order = sorted(range(len(regions)), key=lambda i: (regions[i].grade > 0, -places[i][0]))
    for index in order:
        region = regions[index]
        faint = crowded and region.grade <= 0.0
        _outline(canvas, region, factor, (height, width), 1 if faint else thickness, colours, faint)
    picture = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(picture)
    tag_font = font(max(13, min(18, factor * 3)))
    tagged = [
        (region, box)
        for region, (count, box) in zip(regions, places, strict=True)
        if count and not (crowded and region.grade <= 0.0)
    ]
    for tag in layout_tags(tagged, colours, factor, picture.size, draw, tag_font):
        x0, y0, x1, y1 = tag.box
        if tag.leader is not None:
            draw.line(tag.leader, fill=tag.colour, width=1)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=TAG_FILL, outline=tag.colour, width=2)
        left, top, _, _ = draw.textbbox((0, 0), tag.text, font=tag_font)
        draw.text((x0 + 4 - left, y0 + 3 - top), tag.text, fill=TAG_TEXT, font=tag_font)
    return _with_key(picture, regions, rule_names, colours, pseudo_label is not None, alpha, title)


def explain_picture(scorer, result, *, title: str, min_side: int = 448) -> Image.Image:
    """The overlay of an explanation (`kistrules.explain.ExplainResult`): every region
    outlined in the colour of the rule that fired, the pseudo-label tinted."""
    marks = []
    for index, region in enumerate(result.regions):
        # A view of the region's box in its label image: no per-region pixel copy.
        window, label, origin = result.masks.window(index)
        marks.append(
            RegionMark(
                region.id, window, region.winner, region.grade, region.threshold, origin, label
            )
        )
    return draw_overlay(
        result.image,
        marks,
        rule_names=scorer.rule_names,
        pseudo_label=result.pseudo_label,
        alpha=scorer.threshold,
        title=title,
        min_side=min_side,
    )


def _place(region: RegionMark) -> tuple[int, tuple[int, int, int, int]]:
    """(pixel count, (row0, col0, row1, col1) half-open box) of a region on the image grid."""
    rows, cols = np.nonzero(region.pixels())
    if not rows.size:
        return 0, (0, 0, 0, 0)
    r, c = region.origin
    box = (
        int(rows.min()) + r,
        int(cols.min()) + c,
        int(rows.max()) + r + 1,
        int(cols.max()) + c + 1,
    )
    return int(rows.size), box


def _outline(canvas, region, factor, shape, thickness, colours, faint) -> None:
    """Draw one region's inner boundary, `thickness` pixels wide, into `canvas` in place.

    Only the window around the region's mask is enlarged and searched: with a
    one-pixel margin every pixel of the region sees the same neighbours as in
    the whole image (the window is cut only at the image's own border), so the
    outline is the one `find_boundaries` gives on the full-size mask.
    """
    pixels = region.pixels()
    (r0, c0), (h, w) = region.origin, pixels.shape
    top, left = max(r0 - 1, 0), max(c0 - 1, 0)
    bottom, right = min(r0 + h + 1, shape[0]), min(c0 + w + 1, shape[1])
    window = np.zeros((bottom - top, right - left), bool)
    window[r0 - top : r0 - top + h, c0 - left : c0 - left + w] = pixels[: bottom - r0, : right - c0]
    big = _enlarge(window, factor)
    edge = find_boundaries(big, mode="inner")
    for _ in range(thickness - 1):
        edge |= find_boundaries(big & ~edge, mode="inner")
    view = canvas[top * factor : bottom * factor, left * factor : right * factor]
    if faint:
        view[edge] = (0.6 * view[edge] + 0.4 * np.array(FAINT_COLOUR)).astype(np.uint8)
        return
    # A black line on each side of the colour: one pixel out of the region, one in.
    halo = ndimage.binary_dilation(edge, structure=np.ones((3, 3), bool)) & ~edge
    view[halo] = HALO
    view[edge] = colours.get(region.rule, NONE_COLOUR) if region.rule else NONE_COLOUR


@dataclass(frozen=True)
class Tag:
    """One id tag on the enlarged picture: boxes are half-open (x0, y0, x1, y1)."""

    text: str
    colour: tuple[int, int, int]
    box: tuple[int, int, int, int]
    region_box: tuple[int, int, int, int]  # its regions' outline, halo included
    leader: tuple[int, int, int, int] | None  # a line to the region when the tag moved away


def layout_tags(
    tagged: Sequence[tuple[RegionMark, tuple[int, int, int, int]]],
    colours: dict[str, tuple[int, int, int]],
    factor: int,
    size: tuple[int, int],
    draw: ImageDraw.ImageDraw,
    tag_font,
) -> list[Tag]:
    """Place one tag per group of regions beside the group, on no region and no other tag.

    Regions sharing a top-left pixel (the nested regions of eq. 9's thresholds)
    share one tag "1,4,7". Each tag tries the places around its group's box,
    nearest first; it takes the first that covers no tagged region's box and no
    tag, else the first that covers only other regions' boxes, never its own
    region (unless the region fills the picture). Occupied boxes sit in a grid
    of cells, so placing n tags costs about n, not n squared.
    """
    groups: dict[tuple[int, int], list[tuple[RegionMark, tuple[int, int, int, int]]]] = {}
    for region, box in tagged:
        groups.setdefault(box[:2], []).append((region, box))
    outlines = _Occupied()
    shapes = {}
    for corner, members in groups.items():
        r0 = min(b[0] for _, b in members)
        c0 = min(b[1] for _, b in members)
        r1 = max(b[2] for _, b in members)
        c1 = max(b[3] for _, b in members)
        shape = (c0 * factor - 1, r0 * factor - 1, c1 * factor + 1, r1 * factor + 1)
        shapes[corner] = shape
        outlines.add(shape)
    tags = _Occupied()
    out = []
    for corner, members in groups.items():
        regions = [r for r, _ in members]
        ids = [str(r.id) for r in regions]
        text = ",".join(ids) if len(ids) <= 4 else ",".join(ids[:3]) + f",+{len(ids) - 3}"
        lead = next((r for r in regions if r.rule), regions[0])
        colour = colours.get(lead.rule, NONE_COLOUR) if lead.rule else NONE_COLOUR
        left, top, right, bottom = draw.textbbox((0, 0), text, font=tag_font)
        w, h = right - left + 8, bottom - top + 6
        own = shapes[corner]
        box = _free_place(own, w, h, size, outlines, tags)
        tags.add(box)
        out.append(Tag(text, colour, box, own, _leader(box, own)))
    return out


def _candidates(own, w: int, h: int, size: tuple[int, int]):
    """Places for a w x h tag around the box `own`, nearest first, inside the picture."""
    x0, y0, x1, y1 = own
    gap = TAG_GAP
    for ring in range(0, 12):
        step = ring * (h + 2)
        for x, y in (
            (x0 - gap - w - ring * (w + 2), y0),  # left
            (x1 + gap + ring * (w + 2), y0),  # right
            (x0, y0 - gap - h - step),  # above
            (x0, y1 + gap + step),  # below
            (x0 - gap - w, y0 + step),  # left, lower down
            (x1 + gap, y0 + step),  # right, lower down
            (x1 - w, y0 - gap - h - step),  # above, right-aligned
            (x1 - w, y1 + gap + step),  # below, right-aligned
        ):
            x = min(max(0, x), size[0] - w)
            y = min(max(0, y), size[1] - h)
            yield (x, y, x + w, y + h)


def _free_place(own, w, h, size, outlines: _Occupied, tags: _Occupied):
    """The first candidate clear of everything, else clear of its region and the tags."""
    fallback = None
    for box in _candidates(own, w, h, size):
        if _overlap(box, own) or tags.hits(box):
            continue
        if not outlines.hits(box):
            return box
        fallback = fallback or box
    if fallback is not None:
        return fallback
    return next(b for b in _candidates(own, w, h, size))  # a region filling the picture


def _leader(box, own) -> tuple[int, int, int, int] | None:
    """A line from the tag to the nearest point of its region's box, when not adjacent."""
    tx = min(max((box[0] + box[2]) // 2, own[0]), own[2])
    ty = min(max((box[1] + box[3]) // 2, own[1]), own[3])
    bx = min(max(tx, box[0]), box[2] - 1)
    by = min(max(ty, box[1]), box[3] - 1)
    if abs(bx - tx) + abs(by - ty) <= 2 * TAG_GAP + 2:
        return None
    return (bx, by, tx, ty)


class _Occupied:
    """Boxes in a grid of 64 px cells: does a new box overlap any of them?"""

    CELL = 64

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}

    def _keys(self, box):
        c = self.CELL
        for i in range(box[0] // c, (box[2] - 1) // c + 1):
            for j in range(box[1] // c, (box[3] - 1) // c + 1):
                yield i, j

    def add(self, box) -> None:
        for key in self._keys(box):
            self._cells.setdefault(key, []).append(box)

    def hits(self, box) -> bool:
        return any(
            _overlap(box, other) for key in self._keys(box) for other in self._cells.get(key, ())
        )


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _with_key(picture, regions, rule_names, colours, tinted, alpha, title) -> Image.Image:
    """Add a panel to the right: the legend (colour per rule), then one line per region."""
    head = font(15)
    body = font(13)
    lines: list[tuple[str, tuple[int, int, int] | None, ImageFont.ImageFont]] = []
    if title:
        lines.append((title, None, head))
    lines.append(("rule that fired (outline colour):", None, head))
    for name in rule_names:
        lines.append((name, colours[name], body))
    lines.append(("none (no rule reached alpha)", NONE_COLOUR, body))
    if tinted:
        lines.append(("pseudo-label it would produce", TINT_COLOUR, body))
    lines.append(("", None, body))
    heading = "regions" + (f" (alpha = {alpha:g})" if alpha is not None else "") + ":"
    lines.append((heading, None, head))
    # Fired regions first, then by grade: the ones worth a look lead the key.
    ranked = sorted(regions, key=lambda r: (not r.rule, -r.grade, r.id))
    shown = ranked[:MAX_KEY_LINES]
    for region in shown:
        rule = region.rule or "none"
        at = f" t={region.threshold:.4g}" if region.threshold is not None else ""
        text = f"#{region.id}{at}  grade {grade_text(region.grade, alpha, 2)}  {rule}"
        lines.append((text, colours.get(region.rule, NONE_COLOUR), body))
    if len(regions) > len(shown):
        rest = ranked[len(shown) :]
        zeros = sum(r.grade <= 0.0 for r in rest)
        lines.append((f"... and {len(rest)} more, {zeros} of them grade 0", None, body))
        lines.append(("(all are in --format json)", None, body))
    scratch = ImageDraw.Draw(picture)
    widths = [scratch.textbbox((0, 0), text, font=f)[2] for text, _, f in lines]
    panel_w = max(240, max(widths) + 44)
    line_h = 20
    height = max(picture.size[1], 16 + line_h * len(lines))
    out = Image.new("RGB", (picture.size[0] + panel_w, height), PANEL_BG)
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    x0, y = picture.size[0] + 12, 10
    for text, colour, f in lines:
        if colour is not None:
            draw.rectangle((x0, y + 3, x0 + 14, y + 15), fill=colour, outline=(60, 60, 60))
            draw.text((x0 + 22, y), text, fill=TEXT, font=f)
        else:
            draw.text((x0, y), text, fill=TEXT, font=f)
        y += line_h
    return out


def write_overlay(scorer, result, path: str | os.PathLike[str], *, title: str) -> Path:
    """The image with each region outlined in the colour of the rule that fired."""
    return save_png(explain_picture(scorer, result, title=title), path, command="explain")


def save_png(picture: Image.Image, path: str | os.PathLike[str], *, command: str) -> Path:
    """Write a PNG to a temp file beside `path`, then rename it into place.

    The PNG carries `Software: kistrules COMMAND`; an existing file at `path`
    is replaced only if it carries the same mark (an earlier output of this
    command), never a user's picture or an input (`kistrules.outputs`).
    """
    from PIL.PngImagePlugin import PngInfo

    from kistrules.outputs import png_software, png_written_by, require_replaceable

    path = Path(path)
    require_replaceable(path, command=command, ours=png_written_by(command))
    info = PngInfo()
    info.add_text("Software", png_software(command))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a full disk or read-only folder names `path`
        picture.save(tmp, format="PNG", pnginfo=info)
    return path
