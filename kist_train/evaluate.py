"""The paper-style evaluation: pixel AUROC, AUPRO, image AUROC, with and without the filter.

Maps come from `kist_train.predict.maps_both` (one forward pass for both columns)
at each test image's original resolution and are compared with the original
masks; normal test images count as all-negative. Figures are percentages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kist_train.config import MASK_THRESHOLD

if TYPE_CHECKING:
    from kist_train.data import Dataset, TestItem
    from kist_train.predict import Run

METRIC_NAMES = ("pixel_auroc", "aupro", "image_auroc")


def _scores(maps: list[np.ndarray], masks: list[np.ndarray], labels: np.ndarray) -> dict:
    from kist_train.metrics import aupro, image_auroc, pixel_auroc

    return {
        "pixel_auroc": 100.0 * float(pixel_auroc(maps, masks)),
        "aupro": 100.0 * float(aupro(maps, masks)),
        "image_auroc": 100.0 * float(image_auroc(maps, labels)),
    }


# The fields every evaluation document holds: how `evaluate` and `train --force` tell an
# earlier evaluation of kistrules from a user's file of the same name.
EVALUATE_FIELDS = ("run", "data", "raw", "filtered")


@dataclass
class EvaluationMaps:
    """The anomaly maps of a test set, at each image's original resolution, with its masks."""

    items: list[TestItem]
    raw: list[np.ndarray]
    filtered: list[np.ndarray]
    masks: list[np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        """Image labels: True for an anomalous test image."""
        return np.array([item.is_anomalous for item in self.items], dtype=bool)


def evaluation_maps(run: Run, dataset: Dataset, *, batch_size: int = 16) -> EvaluationMaps:
    """Both maps of every test image (one forward pass each), decoded images released."""
    from kist_train.predict import maps_both

    items = dataset.require_test()
    raw: list[np.ndarray] = []
    filtered: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        # Masks first: a size mismatch is a DataError before any compute.
        masks += [item.mask() for item in chunk]
        r, f = maps_both(run, [item.gray() for item in chunk], batch_size=batch_size)
        raw += r
        filtered += f
        for item in chunk:
            item.release()
    return EvaluationMaps(items, raw, filtered, masks)


def score_maps(run: Run, dataset: Dataset, maps: EvaluationMaps) -> dict[str, Any]:
    """The evaluation document of `evaluate_run` for maps already computed."""
    labels = maps.labels
    return {
        "run": str(run.run_dir),
        "data": str(dataset.root),
        "phase": run.meta.get("phase"),
        "baseline": run.config.baseline,
        "images": len(maps.items),
        "anomalous_images": int(labels.sum()),
        "raw": _scores(maps.raw, maps.masks, labels),
        "filtered": _scores(maps.filtered, maps.masks, labels),
    }


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 16,
    phase: str | None = None,
    mask_threshold: float = MASK_THRESHOLD,
) -> dict[str, Any]:
    """Evaluate the run's final model (or the checkpoint of `phase`) on DATA/test.

    Evaluating every phase shows when KIST pulls ahead of, or falls behind, its control.
    `mask_threshold` binarises the masks (`kist_train.data.read_mask`).

    Returns:
        {"raw": {metric: %}, "filtered": {metric: %}, "run": ..., "data": ...,
         "images": n, "anomalous_images": n_anomalous, "phase": ...}
    """
    from kist_train.data import load_dataset
    from kist_train.predict import load_run

    run = load_run(run_dir, device=device, phase=phase)
    dataset = load_dataset(data_dir, mask_threshold=mask_threshold)
    return score_maps(run, dataset, evaluation_maps(run, dataset, batch_size=batch_size))


def format_table(result: dict[str, Any]) -> str:
    """The paper-style table, one decimal, as plain text."""
    head = f"{'':<18}{'pixel AUROC':>12}{'AUPRO':>9}{'image AUROC':>13}"
    lines = [head]
    for key, label in (("raw", "without filter"), ("filtered", "guided filter")):
        row = result[key]
        lines.append(
            f"{label:<18}{row['pixel_auroc']:>12.1f}{row['aupro']:>9.1f}{row['image_auroc']:>13.1f}"
        )
    return "\n".join(lines)
