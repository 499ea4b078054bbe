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
    name: str
    default_scale: float
    unit: str
    meaning: str


PROPERTIES: dict[str, PropertyInfo] = {
    p.name: p
    for p in (
        PropertyInfo("area", 1.0, "fraction of the image", "pixels of r / pixels of x"),
        PropertyInfo(
            "pixels", 100.0, "pixels of the original image", "size of r in original-image pixels"
        ),
        PropertyInfo("gray", 255.0, "gray level 0-255", "mean gray value of x over r"),
        PropertyInfo(
            "darkness",
            64.0,
            "gray levels 0-255",
            "max(0, mean gray of the 3 px ring around r - mean gray of r)",
        ),
        PropertyInfo(
            "brightness",
            64.0,
            "gray levels 0-255",
            "max(0, mean gray of r - mean gray of the 3 px ring around r)",
        ),
        PropertyInfo(
            "shape", 187.5, "Boyce-Clark index 0-187.5", "Boyce-Clark shape index, 16 rays"
        ),
        PropertyInfo("unevenness", 128.0, "gray levels 0-255", "standard deviation of x over r"),
        PropertyInfo(
            "symmetry", 1.0, "IoU 0-1", "IoU of the left half and the mirrored right half"
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
