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
    "rulebook", "scale", "set", "threshold", "rule", "if", "then", "anomalous",
    "and", "or", "not", "is",
)  # fmt: skip
