"""Slow, obvious plain-Python versions of the region properties (docs/measurement.md).

One region at a time, as a set of (row, col) pixels; no numpy in the definitions, so
that a vectorisation slip in `kistrules.region_props` cannot be copied here. The Boyce-
Clark rays are computed differently from the package (all grid crossings of a ray are
listed, sorted and merged, and each segment between crossings is tested at its
midpoint) but by the same definition. `border` and `thickness` take sy, sx, the size
of a measured pixel in original-image pixels (rows, columns). Also used by
benchmarks/bench_regions.py as the naive per-region path.
"""

from __future__ import annotations

import itertools
import math

# Same constants as the package, restated (they are part of the definition).
RING_RADIUS = 3
CORNER_EPS = 1e-9
SHAPE_OUTSIDE = 187.5
_C, _S, _H = math.cos(math.pi / 8), math.sin(math.pi / 8), math.sqrt(0.5)
# (dy, dx) at angles 2 pi i / 16; axis components exactly 0, diagonals |dy| == |dx|.
DIRECTIONS = [
    (0.0, 1.0), (_S, _C), (_H, _H), (_C, _S), (1.0, 0.0), (_C, -_S), (_H, -_H), (_S, -_C),
    (0.0, -1.0), (-_S, -_C), (-_H, -_H), (-_C, -_S), (-1.0, 0.0), (-_C, _S), (-_H, _H),
    (-_S, _C),
]  # fmt: skip


def centroid(pixels: set[tuple[int, int]]) -> tuple[float, float]:
    n = len(pixels)
    return sum(r for r, _ in pixels) / n, sum(c for _, c in pixels) / n


def _containing(coord: float) -> list[int]:
    """Indices of the closed pixel intervals [i - 0.5, i + 0.5] that contain coord."""
    lo = math.floor(coord)
    if coord - lo == 0.5:
        return [lo, lo + 1]
    return [math.floor(coord + 0.5)]


def _in_region(pixels, y: float, x: float) -> bool:
    return any((r, c) in pixels for r in _containing(y) for c in _containing(x))


def _crossings(origin: float, d: float, limit: float) -> list[float]:
    """Ray parameters where the coordinate crosses a grid line g + 0.5, for 0 < t <= limit."""
    if d == 0:
        return []
    out = []
    g = math.floor(origin - 0.5) + 1 if d > 0 else math.ceil(origin - 0.5) - 1
    step = 1 if d > 0 else -1
    while True:
        t = (g + 0.5 - origin) / d
        if t > limit:
            return out
        out.append(t)
        g += step


def ray_length(pixels, cy: float, cx: float, dy: float, dx: float, limit: float) -> float:
    """Distance from (cy, cx) along (dy, dx) to where the ray leaves the closed pixel union.

    Crossings closer than CORNER_EPS merge (the ray passes a pixel corner); every open
    segment between crossings is tested at its midpoint, where a coordinate that lies
    exactly on a grid line (an axis ray along a line) touches both pixels.
    """
    events = sorted(_crossings(cy, dy, limit) + _crossings(cx, dx, limit))
    merged: list[float] = []
    for t in events:
        if merged and t - merged[-1] <= CORNER_EPS:
            continue
        merged.append(t)
    bounds = [0.0, *merged, limit + 2.0]
    for a, b in itertools.pairwise(bounds):
        m = (a + b) / 2
        y = cy if dy == 0 else cy + m * dy
        x = cx if dx == 0 else cx + m * dx
        if not _in_region(pixels, y, x):
            return a
    raise AssertionError("ray did not leave the region within its limit")


def shape(pixels: set[tuple[int, int]]) -> float:
    """Boyce-Clark shape index by 16 rays from the centroid (187.5 if it is outside)."""
    cy, cx = centroid(pixels)
    if not _in_region(pixels, cy, cx):
        return SHAPE_OUTSIDE
    rows = [r for r, _ in pixels]
    cols = [c for _, c in pixels]
    limit = float(max(rows) - min(rows) + max(cols) - min(cols) + 4)
    radii = [ray_length(pixels, cy, cx, dy, dx, limit) for dy, dx in DIRECTIONS]
    total = sum(radii)
    return sum(abs(100.0 * r / total - 100.0 / 16) for r in radii)


def symmetry(pixels: set[tuple[int, int]]) -> float:
    """IoU of the left half of the bbox mask and the mirrored right half."""
    c0 = min(c for _, c in pixels)
    c1 = max(c for _, c in pixels) + 1
    half = (c1 - c0) // 2
    if half == 0:
        return 1.0
    left = {(r, c - c0) for r, c in pixels if c < c0 + half}
    right = {(r, c1 - 1 - c) for r, c in pixels if c >= c1 - half}
    return len(left & right) / len(left | right)


def ring_mean(pixels: set[tuple[int, int]], image) -> float | None:
    """Mean gray value of the pixels within Chebyshev distance 3 of r, outside r (None if none)."""
    h, w = len(image), len(image[0])
    ring = set()
    for r, c in pixels:
        for dr in range(-RING_RADIUS, RING_RADIUS + 1):
            for dc in range(-RING_RADIUS, RING_RADIUS + 1):
                q = (r + dr, c + dc)
                if 0 <= q[0] < h and 0 <= q[1] < w and q not in pixels:
                    ring.add(q)
    if not ring:
        return None
    return sum(float(image[r][c]) for r, c in ring) / len(ring)


def mean_gray(pixels, image) -> float:
    return sum(float(image[r][c]) for r, c in pixels) / len(pixels)


def darkness_brightness(pixels, image) -> tuple[float, float]:
    around = ring_mean(pixels, image)
    if around is None:
        return 0.0, 0.0
    inside = mean_gray(pixels, image)
    return max(0.0, around - inside), max(0.0, inside - around)


def regions_of(label_map) -> dict[int, set[tuple[int, int]]]:
    """Label value -> its pixel set, for a 2-D nested sequence or array."""
    out: dict[int, set[tuple[int, int]]] = {}
    for r, line in enumerate(label_map):
        for c, v in enumerate(line):
            if int(v):
                out.setdefault(int(v), set()).add((r, c))
    return out


def border(pixels, h: int, w: int, sy: float = 1.0, sx: float = 1.0) -> float:
    """Fewest pixels between any pixel of r and an image edge (rows * sy, columns * sx)."""
    return min(min(min(r, h - 1 - r) * sy, min(c, w - 1 - c) * sx) for r, c in pixels)


def perimeter_sides(pixels) -> tuple[int, int]:
    """(horizontal, vertical) pixel sides of r whose neighbour across the side is not in r."""
    horizontal = sum((r + d, c) not in pixels for r, c in pixels for d in (-1, 1))
    vertical = sum((r, c + d) not in pixels for r, c in pixels for d in (-1, 1))
    return horizontal, vertical


def thickness(pixels, sy: float = 1.0, sx: float = 1.0) -> float:
    """Short side of the rectangle with r's area and perimeter (pixels sy tall, sx wide)."""
    horizontal, vertical = perimeter_sides(pixels)
    area = len(pixels) * sy * sx
    half = horizontal * sx / 2 + vertical * sy / 2  # = the rectangle's a + b; area = a b
    return half / 2 - math.sqrt(max(half * half / 4 - area, 0.0))
