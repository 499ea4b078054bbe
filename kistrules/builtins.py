"""The language's built-in vocabulary, in one table each.

Properties, their default scales (gamma) and units; the built-in sets (the
paper's Fig. 5 trapezoids); hedges; membership-function arities. The parser,
checker, compiler, measurement and docs all read these tables, so adding a
property starts here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PropertyInfo:
    """A region property: `meaning` in a few words, `definition` exactly (docs/measurement.md,
    in short; the language server shows both on hover). r is the region, x the image."""

    name: str
    default_scale: float
    unit: str
    meaning: str
    definition: str


PROPERTIES: dict[str, PropertyInfo] = {
    p.name: p
    for p in (
        PropertyInfo(
            "area",
            1.0,
            "fraction of the image",
            "pixels of r / pixels of x",
            "count(r) / (H W), H x W the measured grid",
        ),
        PropertyInfo(
            "pixels",
            100.0,
            "pixels of the original image",
            "size of r in original-image pixels",
            "count(r) * (H0 W0) / (H W), with H0 x W0 the original image size",
        ),
        PropertyInfo(
            "gray",
            255.0,
            "gray level 0-255",
            "mean gray value of x over r",
            "mean of the image over r, on the 0-255 scale (uint8 or float input)",
        ),
        PropertyInfo(
            "darkness",
            64.0,
            "gray levels 0-255",
            "max(0, mean gray of the 3 px ring around r - mean gray of r)",
            "max(0, mean(ring) - mean(r)); the ring is the pixels within Chebyshev "
            "distance 3 of r, inside the image, not in r (0 when the ring is empty)",
        ),
        PropertyInfo(
            "brightness",
            64.0,
            "gray levels 0-255",
            "max(0, mean gray of r - mean gray of the 3 px ring around r)",
            "max(0, mean(r) - mean(ring)); the ring is the pixels within Chebyshev "
            "distance 3 of r, inside the image, not in r (0 when the ring is empty)",
        ),
        PropertyInfo(
            "shape",
            187.5,
            "Boyce-Clark index 0-187.5",
            "Boyce-Clark shape index, 16 rays",
            "sum over 16 rays from the centroid of |100 r_i / sum_j r_j - 100 / 16|, r_i the "
            "distance to where ray i leaves r: about 0 for a disc, 187.5 when the centroid "
            "is outside r",
        ),
        PropertyInfo(
            "unevenness",
            128.0,
            "gray levels 0-255",
            "standard deviation of x over r",
            "population standard deviation (ddof = 0) of the image over r",
        ),
        PropertyInfo(
            "symmetry",
            1.0,
            "IoU 0-1",
            "IoU of the left half and the mirrored right half",
            "IoU of the bounding box's left half and its mirrored right half (an odd "
            "width's middle column in neither); 1 for a region one pixel wide",
        ),
        PropertyInfo(
            "border",
            50.0,
            "pixels of the original image",
            "distance from r to the nearest image border (0 when r touches it)",
            "min(row0 * H0 / H, (H - row1) * H0 / H, col0 * W0 / W, (W - col1) * W0 / W) with "
            "r's bounding box rows row0..row1 - 1, columns col0..col1 - 1: the pixels between r "
            "and the nearest edge, in original-image pixels",
        ),
        PropertyInfo(
            "elongation",
            10.0,
            "ratio >= 1",
            "length / width of the ellipse with r's second moments",
            "sqrt(l1 / l2), l1 >= l2 the eigenvalues of the covariance of r as a union of "
            "pixel squares (centres' covariance + 1/12 per axis), in original-image pixels: "
            "a / b for an a x b rectangle, 1 for a single pixel, never infinite",
        ),
        PropertyInfo(
            "thickness",
            50.0,
            "pixels of the original image",
            "mean width of r: the short side of the rectangle with r's area and perimeter",
            "A / (P / 4 + sqrt((P / 4)^2 - A)), A and P the area and perimeter of r's pixel "
            "squares in original-image pixels: the width of a strip, b for an a x b rectangle "
            "(b <= a), 1 px for a one-pixel line",
        ),
        PropertyInfo(
            "orientation",
            90.0,
            "degrees 0-90",
            "tilt of r's major axis from horizontal: 0 horizontal, 90 vertical",
            "|theta| in degrees, theta = atan2(2 Cxy, Cxx - Cyy) / 2 from the covariance "
            "of elongation (x = column, y = row, original-image pixels); 0 when r has no major "
            "axis (l1 = l2 within 1e-9)",
        ),
    )
}

PAPER_PROPERTIES = ("area", "gray", "shape", "unevenness", "symmetry")

# Membership function name -> parameter names (the arity is their count).
MEMBERSHIP_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "trapezoid": ("a", "b", "c", "d"),
    "triangle": ("a", "b", "c"),
    "gaussian": ("mean", "sigma"),
}

# What each membership function's parameters mean (docs/language.md; shown on hover).
MEMBERSHIP_SHAPES: dict[str, str] = {
    "trapezoid": "0 below a, rising to 1 at b, 1 until c, 0 from d",
    "triangle": "0 at a, rising to 1 at b, 0 at c",
    "gaussian": "exp(-(x - mean)^2 / (2 sigma^2))",
}

# Built-in sets, usable with every property (paper Fig. 5): name -> (function, params).
BUILTIN_SETS: dict[str, tuple[str, tuple[float, ...]]] = {
    "low": ("trapezoid", (0.0, 0.0, 0.2, 0.4)),
    "mid": ("trapezoid", (0.2, 0.4, 0.6, 0.8)),
    "high": ("trapezoid", (0.6, 0.8, 1.0, 1.0)),
}

# Hedges: very = x^2, somewhat = sqrt(x) (Zadeh's concentration and dilation).
HEDGES: dict[str, float] = {"very": 2.0, "somewhat": 0.5}

KEYWORDS = (
    "rulebook", "class", "scale", "set", "threshold", "rule", "if", "then", "anomalous",
    "and", "or", "not", "is", "define", "raw",
)  # fmt: skip
