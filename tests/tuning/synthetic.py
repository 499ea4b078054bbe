"""Synthetic annotated images for the tuning tests: residual regions with known truth.

Each image has dark defects (in the mask, darker than their ring, mid-sized)
and decoys the residual also picks up (bright blobs, specks, one large pale
patch), so that a rulebook's numbers decide how precise its labels are.
Deterministic in `seed`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from kistrules.regions import measure_regions
from kistrules.tuning.evidence import LabelEvidence, concatenate, evidence_from_labels

THRESHOLDS = (0.2, 0.35, 0.5, 0.7)

RULEBOOK = """\
rulebook "synthetic"
scale darkness = 40
scale pixels   = 60
scale gray     = 255
set gray.dark = trapezoid(0, 0, 0.5, 0.6)
threshold 0.8
rule dark_spot: if darkness is high and pixels is not low then anomalous (1)
rule dark_gray: if gray is dark and pixels is mid then anomalous (0.9)
"""


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def images(seed: int, count: int = 6, size: int = 32):
    """(gray, residual, masks): (B, S, S) float64, float64, bool."""
    rng = np.random.default_rng(seed)
    gray = 150.0 + 10.0 * ndimage.gaussian_filter(rng.normal(size=(count, size, size)), (0, 1, 1))
    residual = np.abs(rng.normal(0.0, 0.06, size=(count, size, size)))
    masks = np.zeros((count, size, size), dtype=bool)
    for b in range(count):
        for _ in range(rng.integers(1, 4)):  # defects: dark, in the mask
            cy, cx = rng.uniform(5, size - 5, size=2)
            blob = _disc(size, cy, cx, rng.uniform(1.5, 3.5))
            gray[b][blob] -= rng.uniform(30, 90)
            residual[b][blob] += rng.uniform(0.3, 0.9)
            masks[b] |= blob
        for _ in range(rng.integers(1, 3)):  # decoys: bright blobs
            cy, cx = rng.uniform(4, size - 4, size=2)
            blob = _disc(size, cy, cx, rng.uniform(1.0, 3.0)) & ~masks[b]
            gray[b][blob] += rng.uniform(20, 60)
            residual[b][blob] += rng.uniform(0.3, 0.9)
        specks = rng.random((size, size)) < 0.01
        residual[b][specks & ~masks[b]] += 0.8
        if b % 2:  # a large pale patch, slightly dark
            patch = _disc(size, size / 2, size / 2, 9) & ~masks[b]
            gray[b][patch] -= 15
            residual[b][patch] += 0.25
    return np.clip(gray, 0, 255), residual, masks


def evidence(
    seed: int = 0,
    count: int = 6,
    size: int = 32,
    *,
    properties=("darkness", "pixels", "gray"),
    weights: str = "grid",
) -> tuple[LabelEvidence, dict]:
    """The evidence of `images(seed)`, measured in batches of 4 images, and its raw parts.

    weights "grid": a pixel is one mask or non-mask pixel; "random": each working pixel
    stands for 0-3 original pixels, some in the mask (as after upsampling).
    """
    gray, residual, masks = images(seed, count, size)
    rng = np.random.default_rng(seed + 1000)
    if weights == "grid":
        positive = masks.astype(np.float64)
        negative = (~masks).astype(np.float64)
    else:
        total = rng.integers(0, 4, size=masks.shape)
        positive = np.where(masks, rng.integers(0, total + 1), 0).astype(np.float64)
        negative = (total - positive).astype(np.float64)
    parts, tables = [], []
    for start in range(0, count, 4):
        window = slice(start, start + 4)
        table = measure_regions(
            gray[window], residual[window], np.array(THRESHOLDS), properties=properties
        )
        tables.append(table)
        parts.append(
            evidence_from_labels(
                table.labels,
                table.image,
                table.properties,
                torch.as_tensor(positive[window]),
                torch.as_tensor(negative[window]),
                defect_regions=[
                    ndimage.label(m, structure=np.ones((3, 3)))[1] for m in masks[window]
                ],
                images=[f"img{start + i:02d}.png" for i in range(len(masks[window]))],
                defects=[("dark", "spot")[(start + i) % 2] for i in range(len(masks[window]))],
            )
        )
    raw = {
        "gray": gray,
        "residual": residual,
        "masks": masks,
        "positive": positive,
        "negative": negative,
        "tables": tables,
    }
    return concatenate(parts), raw
