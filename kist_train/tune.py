"""`kistrules tune` and `suggest`: a run's residual regions on the images an expert annotated.

The residuals are computed once, exactly as the audit computes them (the same
working images, batches, eq. 9 thresholds and measurement: `residuals_of` and
`residual_regions`), and reduced to `LabelEvidence`: region properties, and per
group of pixels how many mask and non-mask pixels it stands for where labels
meet masks (at the masks' original resolution, nearest upsampling as the audit
does, or on the working grid). Everything after that is the language's
(kistrules.tuning), which never runs a model.

Annotations are masks named like the data set's: `<stem>_mask.png`, anywhere
under the masks folder, for an image of DATA/train/anomalous or
DATA/test/<defect> with that stem (a mask in a folder named like a defect type
picks that type's image; `anomalous` picks the training anomalies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from kist_train.audit import AuditReport, audit_scorer, grid_mask
from kist_train.data import MASK_SUFFIX, Dataset, ImageItem, load_dataset, working_tensor
from kist_train.predict import Run, load_run
from kist_train.residuals import residuals_of
from kistrules.errors import DataError
from kistrules.pseudo_labels import residual_regions
from kistrules.tuning.evidence import LabelEvidence, concatenate, evidence_from_labels
from kistrules.tuning.protocol import require_enough

_EIGHT = np.ones((3, 3), dtype=bool)


def defect_regions(mask: np.ndarray) -> int:
    """Connected (8-neighbour) defect regions of a mask: what tells whether enough is
    annotated."""
    return int(ndimage.label(mask, structure=_EIGHT)[1])


def annotated_items(dataset: Dataset, masks: Path, *, limit: int | None = None) -> list[ImageItem]:
    """The data set's anomalous images that have a mask under `masks`, each with that mask.

    `limit` keeps that many, dealt in turn from each defect type (sorted), so
    that a few images still cover every type. Raises DataError naming a mask
    that matches no image, or several.
    """
    masks = Path(masks)
    if not masks.is_dir():
        raise DataError(f"{masks}: masks folder not found")
    files = sorted(p for p in masks.rglob(f"*{MASK_SUFFIX}") if p.is_file())
    if not files:
        raise DataError(f"{masks}: no *{MASK_SUFFIX} files (masks are named <image stem>_mask.png)")
    images = list(dataset.train_anomalous) + [t for t in dataset.test if t.is_anomalous]
    by_stem: dict[str, list[ImageItem]] = {}
    for item in images:
        by_stem.setdefault(item.path.stem, []).append(item)
    found: list[ImageItem] = []
    for mask in files:
        stem = mask.name[: -len(MASK_SUFFIX)]
        candidates = by_stem.get(stem, [])
        folder = mask.parent.name if mask.parent != masks else None
        if folder is not None and len(candidates) > 1:
            candidates = [c for c in candidates if c.defect == folder]
        if len(candidates) != 1:
            how = "no image" if not candidates else f"{len(candidates)} images"
            raise DataError(
                f"{mask}: matches {how} named {stem}.* in {dataset.root}/train/anomalous or "
                f"{dataset.root}/test/<defect> (put the mask in a folder named like the defect)"
            )
        found.append(ImageItem(candidates[0].path, defect=candidates[0].defect, mask_path=mask))
    if len({item.path for item in found}) != len(found):
        raise DataError(f"{masks}: two masks for one image")
    return _deal(found, limit)


def _deal(items: list[ImageItem], limit: int | None) -> list[ImageItem]:
    if limit is None or limit >= len(items):
        return items
    if limit < 1:
        raise DataError(f"--images must be at least 1, got {limit}")
    by_defect: dict[str, list[ImageItem]] = {}
    for item in sorted(items, key=lambda i: (i.defect, i.path.name)):
        by_defect.setdefault(item.defect, []).append(item)
    queues = [list(group) for _, group in sorted(by_defect.items())]
    out: list[ImageItem] = []
    while len(out) < limit:
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def pixel_weights(mask: np.ndarray, size: int, *, grid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per working pixel, the mask and non-mask pixels it stands for where labels meet masks.

    At the original resolution a label pixel becomes every mask pixel that nearest
    upsampling (the audit's `upsample_mask`) maps to it, so its weights count those;
    on the grid (`grid_mask`) each working pixel is one pixel.
    """
    if grid:
        cells = grid_mask(mask, size)
        return cells.astype(np.float64), (~cells).astype(np.float64)
    import torch.nn.functional as F

    index = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    if tuple(mask.shape) == (size, size):
        mapped = index[0, 0].long().numpy()
    else:
        mapped = F.interpolate(index, size=tuple(mask.shape), mode="nearest")[0, 0].long().numpy()
    total = np.bincount(mapped.ravel(), minlength=size * size)
    positive = np.bincount(mapped[mask], minlength=size * size)
    shape = (size, size)
    return positive.reshape(shape).astype(np.float64), (total - positive).reshape(shape).astype(
        np.float64
    )


def measure_evidence(
    run: Run,
    items: Sequence[ImageItem],
    *,
    root: Path,
    properties: Sequence[str] | None,
    grid: bool = False,
    batch_size: int = 16,
) -> LabelEvidence:
    """The run's residual regions on `items` (measured once) and their pixels against the
    masks. `properties`: what to measure (None: every property, for `suggest`)."""
    parts = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start : start + batch_size])
        masks = [item.mask() for item in chunk]
        x = working_tensor(chunk, run.size, device=run.device)
        residuals = residuals_of(run.model, x, batch_size=batch_size)
        table, _ = residual_regions(
            x[:, 0] * 255.0,
            residuals,
            mu=run.mu_e,
            sigma=run.sigma_e,
            s=run.config.s,
            properties=properties,
            original_sizes=[item.shape for item in chunk],
        )
        weights = [pixel_weights(mask, run.size, grid=grid) for mask in masks]
        parts.append(
            evidence_from_labels(
                table.labels.cpu(),
                table.image.cpu(),
                table.properties,
                torch.as_tensor(np.stack([w[0] for w in weights])),
                torch.as_tensor(np.stack([w[1] for w in weights])),
                defect_regions=[defect_regions(m) for m in masks],
                images=[item.path.relative_to(root).as_posix() for item in chunk],
                defects=[item.defect for item in chunk],
            )
        )
        for item in chunk:
            item.release()
    return concatenate(parts)


@dataclass(frozen=True)
class AnnotatedImages:
    """A loaded run, the annotated images and their evidence: what tune and suggest share."""

    run: Run
    dataset: Dataset
    items: list[ImageItem]
    evidence: LabelEvidence
    grid: bool

    def audit(self, scorer, *, rulebook: str, text: str) -> AuditReport:
        """The label audit of a compiled rulebook on the annotated images."""
        return audit_scorer(
            self.run,
            scorer,
            self.dataset,
            rulebook=rulebook,
            text=text,
            grid=self.grid,
            items=self.items,
        )


def load_annotated(
    run_dir: str | Path,
    data_dir: str | Path,
    masks: str | Path,
    *,
    properties: Sequence[str] | None,
    images: int | None = None,
    grid: bool = False,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> AnnotatedImages:
    """Load the run and data set, find the annotated images, measure their regions."""
    dataset = load_dataset(data_dir)
    items = annotated_items(dataset, Path(masks), limit=images)
    regions = sum(defect_regions(item.mask()) for item in items)
    require_enough(len(items), regions)  # before the model is even loaded
    run = load_run(run_dir, device=device)
    if progress is not None:
        progress(f"measuring the residual regions of {len(items)} annotated images")
    evidence = measure_evidence(run, items, root=dataset.root, properties=properties, grid=grid)
    return AnnotatedImages(run, dataset, items, evidence, grid)
