"""Breaks and frays at the border of real MTD tiles: position and the ring inside the image.

Needs the MTD development split (shared/datasets/mtd beside the repository);
the tests skip with a message when it is absent (it is never copied into the repo).
The expected ring is computed independently: a 7 x 7 binary dilation of the whole
mask component (scipy), restricted to the image, minus the component.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as connected_components
from typer.testing import CliRunner

import kistrules.commands.explain  # noqa: F401 - registers explain
from kistrules.cli import app
from kistrules.regions import measure

ROOT = Path(__file__).resolve().parents[2]
MTD = ROOT.parent / "shared" / "datasets" / "mtd"
TUNED = ROOT / "rulebooks" / "mtd_tuned.rules"

pytestmark = [
    pytest.mark.mtd,
    pytest.mark.skipif(
        not (MTD / "test" / "fray").is_dir(),
        reason=f"MTD development split not found at {MTD} (../shared is absent)",
    ),
]


def _images(kind: str) -> list[Path]:
    return sorted((MTD / "test" / kind).glob("*.jpg"))


def _expected_contrast(gray: np.ndarray, region: np.ndarray) -> float:
    """mean(ring) - mean(region), the ring being the in-image 7 x 7 dilation minus r."""
    ring = ndimage.binary_dilation(region, np.ones((7, 7), bool)) & ~region
    gray = gray.astype(np.float64)
    return float(gray[ring].mean() - gray[region].mean())


@pytest.mark.parametrize("kind", ["fray", "break"])
def test_border_defects_measure_their_contrast_with_the_ring_inside_the_image(kind):
    from kist_train.data import read_gray, read_mask

    at_border = 0
    for image_path in _images(kind):
        gray = read_gray(image_path)
        labels = connected_components(
            read_mask(MTD / "ground_truth" / kind / f"{image_path.stem}_mask.png"),
            connectivity=2,
        )
        table = measure(gray, labels, properties=["border", "darkness", "brightness"])
        for i in range(len(table)):
            region = labels == i + 1
            rows, cols = np.nonzero(region)
            h, w = region.shape
            touches = min(rows.min(), cols.min(), h - 1 - rows.max(), w - 1 - cols.max()) == 0
            assert (table["border"][i].item() == 0.0) == touches
            if not touches:
                continue
            at_border += 1
            contrast = _expected_contrast(gray, region)
            where = f"{image_path.name} region {i + 1}"
            assert table["darkness"][i].item() == pytest.approx(max(contrast, 0.0), abs=1e-6), where
            assert table["brightness"][i].item() == pytest.approx(max(-contrast, 0.0), abs=1e-6)
    assert at_border >= 5  # breaks and frays do sit at the border


def test_explain_shows_a_border_frays_darkness_and_position():
    """The issue's case: a fray touching the tile border, clearly darker than its ring."""
    image = MTD / "test" / "fray" / "exp6_num_77744.jpg"
    mask = MTD / "ground_truth" / "fray" / "exp6_num_77744_mask.png"
    result = CliRunner().invoke(
        app, ["explain", str(image), "-r", str(TUNED), "--mask", str(mask), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    regions = json.loads(result.output)["regions"]
    # The second component (bottom right) is 27.7 gray levels below its ring.
    corner = max(regions, key=lambda r: r["bbox"][1])
    assert corner["bbox"][2] == 240  # it reaches the bottom edge of the 240-row tile
    assert corner["properties"]["darkness"]["raw"] > 20
