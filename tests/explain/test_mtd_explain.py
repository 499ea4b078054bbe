"""`kistrules explain` on a real MTD test image: mask and model sources agree with the scorer.

Needs the MTD development split (shared/datasets/mtd beside the repository);
the test skips with a message when it is absent (it is never copied into the repo).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.measure import label as connected_components
from typer.testing import CliRunner

import kistrules.commands.explain  # noqa: F401 - registers explain
from kistrules.api import load
from kistrules.cli import app
from kistrules.compiler import compile_rulebook
from kistrules.regions import measure
from kistrules.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
MTD = ROOT.parent / "shared" / "datasets" / "mtd"
TUNED = ROOT / "rulebooks" / "mtd_tuned.rules"

pytestmark = [
    pytest.mark.mtd,
    pytest.mark.skipif(
        not (MTD / "test" / "blowhole").is_dir(),
        reason=f"MTD development split not found at {MTD} (the shared data set is absent)",
    ),
]


def _blowhole() -> tuple[Path, Path]:
    image = sorted((MTD / "test" / "blowhole").glob("*.jpg"))[0]
    return image, MTD / "ground_truth" / "blowhole" / f"{image.stem}_mask.png"


def _explain(*args) -> dict:
    result = CliRunner().invoke(app, ["explain", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _regrade(doc: dict) -> np.ndarray:
    scorer = compile_rulebook(resolve(load(TUNED)))
    raw = {
        name: torch.tensor([r["properties"][name]["raw"] for r in doc["regions"]])
        for name in doc["scales"]
    }
    return scorer(raw).grade.numpy()


def test_mask_regions_equal_measure_and_the_scorer():
    from kist_train.data import read_gray, read_mask

    image_path, mask_path = _blowhole()
    doc = _explain(image_path, "-r", TUNED, "--mask", mask_path)
    labels = connected_components(read_mask(mask_path), connectivity=2)
    assert len(doc["regions"]) == labels.max() >= 1
    table = measure(read_gray(image_path), labels, properties=list(doc["scales"]))
    for name in doc["scales"]:
        raw = [r["properties"][name]["raw"] for r in doc["regions"]]
        np.testing.assert_allclose(raw, table[name].numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["grade"] for r in doc["regions"]], _regrade(doc), atol=1e-6)


@pytest.mark.slow
def test_model_regions_equal_pseudo_labelling(fast_demo):
    """A trained (demo) model on the real tile: explain's regions are label_regions' regions."""
    from kist_train.data import read_gray, working_tensor
    from kist_train.predict import load_run, residual_maps
    from kistrules.pseudo_labels import label_regions

    image_path, _ = _blowhole()
    kist = fast_demo.out / "kist"
    doc = _explain(image_path, "-r", TUNED, "--model", kist)
    run = load_run(kist, device="cpu")
    image = read_gray(image_path)
    labels = label_regions(
        working_tensor([image], run.size)[:, 0] * 255.0,
        residual_maps(run, [image]),
        compile_rulebook(resolve(load(TUNED))),
        mu=run.mu_e,
        sigma=run.sigma_e,
        s=run.config.s,
        original_sizes=[image.shape],
    )
    assert len(doc["regions"]) == len(labels.table) > 0
    assert [r["grade"] for r in doc["regions"]] == labels.trace.grade.tolist()
    np.testing.assert_allclose([r["grade"] for r in doc["regions"]], _regrade(doc), atol=1e-6)
    assert doc["pseudo_label_pixels"] == int(labels.mask.sum())
