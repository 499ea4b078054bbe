"""Vectorised kernels behind `kistrules.regions`: one function per property family.

Every kernel works on a stack of label maps (S, H, W), stored with a 1-pixel zero
frame as `padded` (S, H + 2, W + 2), whose positive values are *global* region labels
1..N (a label lives in one slice only), and on the foreground pixels of that stack,
gathered once into `Pixels`. The frame spares every neighbour lookup a bounds check.
Kernels aggregate with `np.bincount` / `np.minimum.at` over pixels, runs or rays, and
never loop over regions. Sizes in original-image pixels use sy, sx: original pixels per
measured pixel along rows and columns, one value per region. The definitions are those
of docs/measurement.md; the slow plain-Python versions that the tests compare against
are in tests/reference/regions.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kistrules.errors import DataError

# Pixel-index coordinates (skimage's): pixel (i, j) is the closed square
# [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]; its centre is (i, j).

RING_RADIUS = 3  # Chebyshev radius of the darkness / brightness ring (a 7 x 7 dilation)
CORNER_EPS = 1e-9  # two grid crossings closer than this along a ray are one (a pixel corner)
SHAPE_OUTSIDE = 187.5  # Boyce-Clark index when the centroid is outside the region
N_RAYS = 16


def _ray_directions() -> tuple[np.ndarray, np.ndarray]:
    """The 16 unit directions (dy, dx) at angles 2 pi i / 16, with exact symmetries.

    Built from three constants so that axis rays have an exact 0 component and
    diagonal rays have |dy| == |dx| bit for bit: `np.sin(np.pi / 4)` and
    `np.cos(np.pi / 4)` differ by one ulp, which would make a diagonal ray miss the
    pixel corners it passes through exactly (and cut 8-connected diagonal lines).
    """
    c, s, h = math.cos(math.pi / 8), math.sin(math.pi / 8), math.sqrt(0.5)
    dx = [1.0, c, h, s, 0.0, -s, -h, -c, -1.0, -c, -h, -s, 0.0, s, h, c]
    dy = [0.0, s, h, c, 1.0, c, h, s, 0.0, -s, -h, -c, -1.0, -c, -h, -s]
    return np.array(dy), np.array(dx)


RAY_DY, RAY_DX = _ray_directions()


@dataclass(frozen=True)
class Pixels:
    """The foreground pixels of a label stack, in ascending flat-index order."""

    flat: np.ndarray  # (n,) int64 flat index into the padded stack
    region: np.ndarray  # (n,) int64 region index = label - 1
    slice_: np.ndarray  # (n,) int64 slice of the stack
    row: np.ndarray  # (n,) int64
    col: np.ndarray  # (n,) int64
    value: np.ndarray  # (n,) float64 gray value of the slice's image at the pixel


def gather_pixels(
    padded: np.ndarray, gray: np.ndarray, slice_image: np.ndarray, flat: np.ndarray | None = None
) -> Pixels:
    """Collect the foreground of `padded` with gray values from `gray` (G, H, W).

    `flat` may pass the foreground's flat indices (ascending) when they are known.
    """
    _, h2, w2 = padded.shape
    if flat is None:
        flat = np.flatnonzero(padded)
    region = padded.ravel()[flat].astype(np.int64) - 1
    slice_, within = np.divmod(flat, h2 * w2)
    row, col = np.divmod(within, w2)
    row -= 1
    col -= 1
    w = w2 - 2
    image = gray.reshape(gray.shape[0], -1)
    value = image[slice_image[slice_], row * w + col].astype(np.float64)
    return Pixels(flat, region, slice_, row, col, value)


def basic_stats(px: Pixels, n: int) -> dict[str, np.ndarray]:
    """Pixel count, slice, bounding box, centroid, gray mean and std (ddof 0) per region.

    The std uses the two-pass form sum((v - mean)^2) / count, which is what
    `np.std` (and so skimage's `intensity_std`) computes, not E[v^2] - E[v]^2.
    """
    count = np.bincount(px.region, minlength=n)
    safe = np.maximum(count, 1)
    slice_ = np.zeros(n, np.int64)
    slice_[px.region] = px.slice_  # every pixel of a region is in the same slice
    big = np.iinfo(np.int64).max
    row0, col0 = np.full(n, big), np.full(n, big)
    row1, col1 = np.full(n, -1), np.full(n, -1)
    np.minimum.at(row0, px.region, px.row)
    np.minimum.at(col0, px.region, px.col)
    np.maximum.at(row1, px.region, px.row)
    np.maximum.at(col1, px.region, px.col)
    total = np.bincount(px.region, px.value, minlength=n)
    mean = total / safe
    dev = px.value - mean[px.region]
    std = np.sqrt(np.bincount(px.region, dev * dev, minlength=n) / safe)
    cy = np.bincount(px.region, px.row.astype(np.float64), minlength=n) / safe
    cx = np.bincount(px.region, px.col.astype(np.float64), minlength=n) / safe
    return {
        "count": count,
        "slice": slice_,
        "bbox": np.stack([row0, col0, row1 + 1, col1 + 1], axis=1),
        "sum": total,
        "mean": mean,
        "std": std,
        "cy": cy,
        "cx": cx,
    }


def symmetry(px: Pixels, padded: np.ndarray, bbox: np.ndarray, n: int) -> np.ndarray:
    """IoU of each region's left bounding-box half and its mirrored right half.

    With width w, the left half is the first w // 2 columns and the right half the
    last w // 2 (an odd width's middle column belongs to neither). For w >= 2 both
    halves hold pixels (the bbox touches both outer columns), so the union is never
    empty; w == 1 gives 1 by definition.
    """
    c0, c1 = bbox[:, 1], bbox[:, 3]
    half = ((c1 - c0) // 2)[px.region]
    c0, span = c0[px.region], (c0 + c1 - 1)[px.region]  # mirror of column c: span - c
    left = px.col - c0 < half
    right = span - c0 - px.col < half  # (c1 - 1) - col < half
    reg_left = px.region[left]
    n_left = np.bincount(reg_left, minlength=n)
    n_right = np.bincount(px.region[right], minlength=n)
    # The mirrored pixel is (span - 2c) further along the same row of the flat stack.
    mirror = px.flat[left] + (span - 2 * px.col)[left]
    hit = padded.ravel()[mirror] == (reg_left + 1)
    inter = np.bincount(reg_left[hit], minlength=n)
    union = n_left + n_right - inter
    out = np.ones(n)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def ring_means(
    px: Pixels, gray: np.ndarray, slice_image: np.ndarray, stats: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Mean gray value and pixel count of each region's ring (7 x 7 dilation minus r).

    The dilation is separable: each horizontal run [a, b) of a region widens to
    [a - 3, b + 3) and spreads to rows y - 3 .. y + 3; per (region, row) the union of
    these intervals is summed with row prefix sums of the image. Overlapping rings of
    different regions are handled because intervals are merged per region only.
    Returns (ring_mean, ring_count); ring_mean is 0 where the ring is empty.
    """
    n = stats["count"].shape[0]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    _, h, w = gray.shape
    k = RING_RADIUS
    region, row, col = px.region, px.row, px.col
    # Horizontal runs: a pixel starts a run unless its left neighbour has the same label.
    prev_same = np.zeros(region.shape, bool)
    # (the zero frame keeps runs from wrapping around to the next row)
    prev_same[1:] = (px.flat[1:] == px.flat[:-1] + 1) & (region[1:] == region[:-1])
    starts = np.flatnonzero(~prev_same)
    ends = np.append(starts[1:], region.shape[0]) - 1  # last pixel of each run
    r_reg, r_row = region[starts], row[starts]
    a = np.maximum(col[starts] - k, 0)
    b = np.minimum(col[ends] + 1 + k, w)
    # Spread every widened run to the 2k + 1 rows around it, as one int64 key per
    # interval with bit fields (region, row, a, b). Sorting the keys themselves (not an
    # argsort plus gathers) is several times faster, the sort order is the one the union
    # needs (by region and row, then by start), and shifts decode it cheaply.
    w1 = w + 1
    bw, bh = int(w1).bit_length(), int(h).bit_length()
    if int(n).bit_length() + bh + 2 * bw > 62:
        raise DataError(
            f"too many regions ({n}) on a {h} x {w} grid to measure darkness / brightness"
        )
    dr = np.arange(-k, k + 1)[:, None]
    rows = r_row[None, :] + dr
    ok = (rows >= 0) & (rows < h)
    head = ((r_reg << bh)[None, :] | rows) << (2 * bw)
    keys = np.sort((head | (a << bw)[None, :] | b[None, :])[ok])
    # Decode; then the union of the intervals per (region, row) by a running max of the
    # ends, offset by group so that it never carries over from the previous group.
    mask = (1 << bw) - 1
    b = keys & mask
    a = (keys >> bw) & mask
    group = keys >> (2 * bw)
    offset = group << bw
    covered = np.maximum.accumulate(offset | b)
    prev_end = np.empty_like(covered)
    prev_end[0] = -1
    prev_end[1:] = covered[:-1] - offset[1:]
    start = np.minimum(np.maximum(a, prev_end), b)
    reg, rows = group >> bh, group & ((1 << bh) - 1)
    prefix = np.zeros((gray.shape[0], h, w1))
    # Summed in float64 straight from the image's dtype: no float64 copy of the image.
    np.cumsum(gray, axis=2, dtype=np.float64, out=prefix[:, :, 1:])
    line = (slice_image[stats["slice"]][reg] * h + rows) * w1  # flat start of the prefix row
    prefix = prefix.reshape(-1)
    summed = prefix.take(line + b) - prefix.take(line + start)
    dil_sum = np.bincount(reg, summed, minlength=n)
    dil_count = np.bincount(reg, (b - start).astype(np.float64), minlength=n)
    ring_count = dil_count - stats["count"]
    ring_sum = dil_sum - stats["sum"]
    ring_mean = np.zeros(n)
    np.divide(ring_sum, ring_count, out=ring_mean, where=ring_count > 0)
    return ring_mean, ring_count


def border_distance(
    bbox: np.ndarray, grid: tuple[int, int], sy: np.ndarray, sx: np.ndarray
) -> np.ndarray:
    """Pixels between each region and the nearest image edge, in original-image pixels.

    A gap of k rows counts k * sy, a gap of k columns k * sx (sy, sx: original pixels per
    measured pixel along each axis, per region), so a region touching an edge gets 0.
    """
    h, w = grid
    rows = np.minimum(bbox[:, 0], h - bbox[:, 2]) * sy
    cols = np.minimum(bbox[:, 1], w - bbox[:, 3]) * sx
    return np.minimum(rows, cols).astype(np.float64)


ISOTROPIC = 1e-9  # l1 - l2 <= this * (l1 + l2): the region has no major axis (orientation 0)


def principal_axes(
    px: Pixels, stats: dict[str, np.ndarray], n: int, sy: np.ndarray, sx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Elongation sqrt(l1 / l2) and orientation (degrees from horizontal, 0-90) per region.

    The covariance is that of the region as a union of pixel squares, in original-image
    pixels: the pixel centres' central second moments (two-pass, like `basic_stats`' std)
    plus a square's own 1/12 per axis, with rows scaled by sy and columns by sx. The
    square term makes the matrix positive definite, so l2 > 0 and the ratio is finite
    even for a straight line (where the centres' moments alone give l2 = 0), and an
    a x b rectangle gets exactly a / b.
    """
    safe = np.maximum(stats["count"], 1)
    dr = px.row - stats["cy"][px.region]
    dc = px.col - stats["cx"][px.region]
    vrr = np.bincount(px.region, dr * dr, minlength=n) / safe
    vcc = np.bincount(px.region, dc * dc, minlength=n) / safe
    vrc = np.bincount(px.region, dr * dc, minlength=n) / safe
    cyy = sy * sy * (vrr + 1.0 / 12.0)
    cxx = sx * sx * (vcc + 1.0 / 12.0)
    cxy = sy * sx * vrc
    mean = (cxx + cyy) / 2.0
    spread = np.hypot((cxx - cyy) / 2.0, cxy)
    major = mean + spread
    minor = (cxx * cyy - cxy * cxy) / major  # l1 l2 = det
    elongation = np.sqrt(major / minor)
    angle = np.degrees(np.abs(0.5 * np.arctan2(2.0 * cxy, cxx - cyy)))
    angle[2.0 * spread <= ISOTROPIC * (cxx + cyy)] = 0.0
    return np.maximum(elongation, 1.0), angle


def thickness(
    px: Pixels,
    padded: np.ndarray,
    stats: dict[str, np.ndarray],
    n: int,
    sy: np.ndarray,
    sx: np.ndarray,
) -> np.ndarray:
    """Short side of the rectangle with each region's area and perimeter (original pixels).

    The perimeter is that of the union of the region's pixel squares: every pixel side
    whose neighbour across it is not in the region, horizontal sides sx long, vertical
    ones sy. A rectangle with area A and half-perimeter P / 2 has sides t and P / 2 - t,
    so t is the small root of t^2 - (P / 2) t + A = 0, computed as A / (P/4 + root) to
    avoid cancellation for long strips. The root exists: each connected piece's
    perimeter is at least its bounding box's, 2 (a + b) >= 4 sqrt(a b), so P >= 4 sqrt(A).
    """
    # Each pixel has 4 sides; a pair of neighbours in the region hides 2 of them. Pairs
    # are counted once, from their upper (left) pixel. Pixels are in flat-index order, so
    # a right neighbour is the next pixel (the zero frame keeps rows from joining); the
    # one below is one lookup. (bincount with weights is ~4x faster than on a selection.)
    flat = padded.ravel()
    below = flat[px.flat + padded.shape[2]] == (px.region + 1)
    right = np.zeros(px.region.shape, bool)
    right[:-1] = (px.flat[1:] == px.flat[:-1] + 1) & (px.region[1:] == px.region[:-1])
    horizontal = 2.0 * stats["count"] - 2.0 * np.bincount(px.region, below, minlength=n)
    vertical = 2.0 * stats["count"] - 2.0 * np.bincount(px.region, right, minlength=n)
    area = stats["count"] * sy * sx
    quarter = (horizontal * sx + vertical * sy) / 4.0
    root = np.sqrt(np.maximum(quarter * quarter - area, 0.0))
    out = np.zeros(n)
    np.divide(area, quarter + root, out=out, where=quarter > 0)
    return out


SMALL_SIDE = 5  # regions whose bbox fits in 5 x 5 are measured once per distinct pattern


def shape_index(padded: np.ndarray, px: Pixels, stats: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Boyce-Clark index by 16 rays from the centroid for every region of a padded stack.

    Most regions of a thresholded residual map are specks of a few pixels, and the
    index depends only on the region's pattern, so regions whose bounding box fits in
    SMALL_SIDE x SMALL_SIDE are grouped by their bit pattern and each distinct pattern
    is walked once (on a small synthetic stack); larger regions are walked in place.
    """
    out = np.empty(n)
    if n == 0:
        return out
    bbox = stats["bbox"]
    k = SMALL_SIDE
    small = (bbox[:, 2] - bbox[:, 0] <= k) & (bbox[:, 3] - bbox[:, 1] <= k)
    large = np.flatnonzero(~small)
    if large.size:
        out[large] = _boyce_clark(
            padded, stats["slice"][large], large + 1, stats["cy"][large], stats["cx"][large]
        )
    if not small.any():
        return out
    # Pattern code of each small region: bit (row - row0) * k + (col - col0).
    on = small[px.region]
    reg = px.region[on]
    bit = (px.row[on] - bbox[reg, 0]) * k + (px.col[on] - bbox[reg, 1])
    # Bits of one region are distinct, so their sum is their OR (exact in float64).
    code = np.bincount(reg, np.ldexp(1.0, bit), minlength=n).astype(np.int64)
    patterns, inverse = np.unique(code[small], return_inverse=True)
    u = patterns.shape[0]
    bits = (patterns[:, None] >> np.arange(k * k)[None, :]) & 1
    which, where = np.nonzero(bits)
    stack = np.zeros((u, k + 2, k + 2), np.int32)
    stack[which, 1 + where // k, 1 + where % k] = which + 1
    count = bits.sum(axis=1)
    cy = np.bincount(which, (where // k).astype(np.float64), minlength=u) / count
    cx = np.bincount(which, (where % k).astype(np.float64), minlength=u) / count
    values = _boyce_clark(stack, np.arange(u), np.arange(1, u + 1), cy, cx)
    out[np.flatnonzero(small)] = values[inverse.reshape(-1)]
    return out


def _start_cells(c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell where a ray from c along d starts, and whether it also touches the cell before.

    c is (m, 1) and d is (1, 16). On a half-integer c (a grid line) the ray starts in the
    cell it moves into; with d == 0 it runs along the line and touches both cells
    (`first - 1` too).
    """
    tie = c - np.floor(c) == 0.5
    first = np.floor(c + 0.5).astype(np.int64) - (tie & (d < 0))
    return first, tie & (d == 0)


def _boyce_clark(
    padded: np.ndarray, slice_: np.ndarray, want: np.ndarray, cy: np.ndarray, cx: np.ndarray
) -> np.ndarray:
    """Shape index of the regions labelled `want` in `padded` (S, H + 2, W + 2).

    r_i is the distance from the centroid (cy, cx), in unpadded pixel coordinates, along
    ray i to where the ray first leaves the closed union of the region's pixel squares.
    A vectorised grid walk (Amanatides-Woo) advances every live ray to its next grid
    crossing per step and looks up the label only of the cell it enters: the cost is the
    total ray length, not the area. A crossing of both axes within CORNER_EPS is a pass
    through a pixel corner (a diagonal step). The 1-pixel zero frame means a ray never
    needs a bounds check: it stops at the first cell outside its region.
    """
    m = cy.shape[0]
    _, h2, w2 = padded.shape
    flat = padded.ravel()
    base = (slice_ * (h2 * w2) + w2 + 1)[:, None]  # flat index of unpadded (0, 0)
    lab = want.astype(flat.dtype)[:, None]
    out = np.full(m, SHAPE_OUTSIDE)

    # Is the centroid in the region? Test every cell whose closed square contains it.
    ry, ty = _start_cells(cy[:, None], np.zeros((1, 1)))
    rx, tx = _start_cells(cx[:, None], np.zeros((1, 1)))
    pos = base + ry * w2 + rx
    inside = (
        (flat[pos] == lab)
        | (flat[pos - ty * w2] == lab)
        | (flat[pos - tx] == lab)
        | (flat[pos - ty * w2 - tx] == lab)
    )[:, 0]
    keep = np.flatnonzero(inside)
    if keep.size == 0:
        return out
    base, lab, oy, ox = base[keep], lab[keep], cy[keep, None], cx[keep, None]
    dy, dx = RAY_DY[None, :], RAY_DX[None, :]
    row, alt_row = _start_cells(oy, dy)
    col, alt_col = _start_cells(ox, dx)
    shape2 = (keep.size, N_RAYS)
    sgy = np.broadcast_to(np.sign(dy), shape2).ravel()
    sgx = np.broadcast_to(np.sign(dx), shape2).ravel()
    # The next grid line each ray will cross; d == 0 gets o + 1 so that (g - o) / d = inf.
    gy = np.where(dy != 0, row + 0.5 * np.sign(dy), oy + 1.0).ravel()
    gx = np.where(dx != 0, col + 0.5 * np.sign(dx), ox + 1.0).ravel()
    oy, ox = np.broadcast_to(oy, shape2).ravel(), np.broadcast_to(ox, shape2).ravel()
    ddy, ddx = np.broadcast_to(dy, shape2).ravel(), np.broadcast_to(dx, shape2).ravel()
    pos = (base + row * w2 + col).ravel()
    alt = (alt_row * -w2 + alt_col * -1).ravel()  # offset of the second touched cell, or 0
    lab = np.broadcast_to(lab, shape2).ravel()
    step_y, step_x = (sgy * w2).astype(np.int64), sgx.astype(np.int64)
    ray = np.arange(keep.size * N_RAYS)
    dist = np.zeros(keep.size * N_RAYS)

    def hits(pos, alt, lab):
        hit = flat[pos] == lab
        two = np.flatnonzero(alt)
        if two.size:
            hit[two] |= flat[pos[two] + alt[two]] == lab[two]
        return hit

    live = np.flatnonzero(hits(pos, alt, lab))
    state = [ray, pos, alt, lab, gy, gx, oy, ox, ddy, ddx, sgy, sgx, step_y, step_x]
    state = [a[live] for a in state]
    with np.errstate(divide="ignore"):
        while state[0].size:
            ray, pos, alt, lab, gy, gx, oy, ox, ddy, ddx, sgy, sgx, step_y, step_x = state
            # Parameter of the next crossing per axis: (line - o) / d, as in the reference.
            t_y = (gy - oy) / ddy
            t_x = (gx - ox) / ddx
            corner = np.abs(t_x - t_y) <= CORNER_EPS
            move_y = (t_y < t_x) | corner
            move_x = (t_x < t_y) | corner
            pos = pos + step_y * move_y + step_x * move_x
            gy = gy + sgy * move_y
            gx = gx + sgx * move_x
            hit = hits(pos, alt, lab)
            gone = ~hit
            dist[ray[gone]] = np.minimum(t_x, t_y)[gone]
            live = np.flatnonzero(hit)
            state = [
                a[live]
                for a in (ray, pos, alt, lab, gy, gx, oy, ox, ddy, ddx, sgy, sgx, step_y, step_x)
            ]
    radii = dist.reshape(keep.size, N_RAYS)
    total = radii.sum(axis=1, keepdims=True)
    share = np.divide(100.0 * radii, total, out=np.zeros_like(radii), where=total > 0)
    out[keep] = np.abs(share - 100.0 / N_RAYS).sum(axis=1)
    return out
