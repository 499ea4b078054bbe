"""Drawing for `explain --out`: region outlines, id tags, a legend and the pseudo-label tint.

Pure PIL and `skimage.segmentation.find_boundaries` (no matplotlib): the
picture is a view of an explanation, so it takes the numbers as given and
computes nothing about the rules. Small images are enlarged with nearest
neighbour first, so that a 64 px crop still gets readable one-pixel outlines
and tags; the legend and a per-region key sit in a panel to the right, so the
image itself stays uncluttered when the thresholds of eq. 9 give many nested
regions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

from kistrules.atomic import atomic_path
from kistrules.explain import grade_text

# Colour-blind-safe (Okabe-Ito); rules take them in rulebook order.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)
NONE_COLOUR = (170, 170, 170)
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
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(rule_names)}


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
    # one pass first reads each region's size and top-left pixel.
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
    tag_font = font(max(11, min(16, factor * 3)))
    # One tag per place: the nested regions of successive eq. 9 thresholds often
    # share a corner, and one tag "1,4,7" reads better than a column of tags.
    groups: dict[tuple[int, int], list[RegionMark]] = {}
    for region, (count, corner) in zip(regions, places, strict=True):
        if count and not (crowded and region.grade <= 0.0):
            groups.setdefault(corner, []).append(region)
    placed: list[tuple[int, int, int, int]] = []
    for (row, col), members in groups.items():
        ids = [str(r.id) for r in members]
        text = ",".join(ids) if len(ids) <= 4 else ",".join(ids[:3]) + f",+{len(ids) - 3}"
        lead = next((r for r in members if r.rule), members[0])
        colour = colours.get(lead.rule, NONE_COLOUR) if lead.rule else NONE_COLOUR
        box = _tag_box(draw, text, tag_font, row, col, factor, picture.size, placed)
        placed.append(box)
        draw.rectangle(box, fill=(0, 0, 0), outline=colour)
        draw.text((box[0] + 3, box[1] + 1), text, fill=colour, font=tag_font)
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


def _place(region: RegionMark) -> tuple[int, tuple[int, int]]:
    """(pixel count, (top row, leftmost column)) of a region on the image grid."""
    rows, cols = np.nonzero(region.pixels())
    if not rows.size:
        return 0, (0, 0)
    return int(rows.size), (int(rows.min()) + region.origin[0], int(cols.min()) + region.origin[1])


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
        view[edge] = (0.6 * view[edge] + 0.4 * np.array(NONE_COLOUR)).astype(np.uint8)
    else:
        view[edge] = colours.get(region.rule, NONE_COLOUR) if region.rule else NONE_COLOUR


def _tag_box(draw, text, tag_font, row, col, factor, size, placed):
    """A tag just above-left of the region, nudged down until it overlaps no earlier tag."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=tag_font)
    w, h = right - left + 6, bottom - top + 6
    x = col * factor - w
    y = row * factor - h
    x = min(max(0, x), size[0] - w)
    y = min(max(0, y), size[1] - h)
    for _ in range(40):
        box = (x, y, x + w, y + h)
        if not any(_overlap(box, other) for other in placed):
            return box
        y = y + h + 1 if y + 2 * h + 1 <= size[1] else 0
        if y == 0:
            x = min(x + w + 1, size[0] - w)
    return (x, y, x + w, y + h)


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
