"""Pseudo-labels, eq. (9)-(12): THE one implementation.

Training, `kistrules audit` and `kistrules explain --model/--residual` all call
`label_regions`, so what an expert audits is exactly what the model was trained
on. The measurement is vectorised over images and thresholds (kistrules.regions),
the grading is the compiled rulebook (kistrules.compiler) run once on all regions.
`label_statistics` turns a labelling into the figures logged per iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class PseudoLabels:
    """One labelling of a batch of anomalous images.

    table: every 8-connected region of residual > t, for every t of eq. (9).
    trace: the scorer's ScoreTrace for those regions (grade, rules, winner, fired, ...).
    mask: (B, H, W) bool, eq. (12): union of the regions with grade >= alpha.
    thresholds: (T,) float64, eq. (9).
    """

    table: Any
    trace: Any
    mask: torch.Tensor
    thresholds: np.ndarray


def label_regions(
    images: torch.Tensor,
    residuals: torch.Tensor,
    scorer: Any,
    *,
    mu: float,
    sigma: float,
    s: float = 0.3,
    original_sizes: Sequence[tuple[int, int]] | None = None,
) -> PseudoLabels:
    """Pseudo-label anomalous images from their residual maps.

    Args:
        images: (B, H, W) gray values 0-255 on the grid of the residuals.
        residuals: (B, H, W) e(x) = (G(x) - x)^2.
        scorer: a compiled rulebook (kistrules.compiler.Scorer).
        mu, sigma: residual statistics of the normal training pixels (eq. 9).
        s: threshold step in sigmas (eq. 9).
        original_sizes: (H, W) of each image before resizing, for `pixels`.

    Returns:
        PseudoLabels with the mask on the residuals' device.
    """
    from kistrules.regions import eq9_thresholds, measure_regions, pseudo_label_mask

    if images.shape != residuals.shape or images.dim() != 3:
        raise ValueError(
            f"images {tuple(images.shape)} and residuals {tuple(residuals.shape)} "
            "must both be (B, H, W)"
        )
    thresholds = np.asarray(eq9_thresholds(float(mu), float(sigma), s), dtype=np.float64)
    table = measure_regions(
        images,
        residuals,
        thresholds,
        properties=list(scorer.properties),
        original_sizes=original_sizes,
    )
    trace = scorer(table, trace=True)
    mask = torch.as_tensor(pseudo_label_mask(table, trace.fired)).to(
        device=residuals.device, dtype=torch.bool
    )
    return PseudoLabels(table=table, trace=trace, mask=mask, thresholds=thresholds)


def rule_masks(labels: PseudoLabels, scorer: Any) -> list[torch.Tensor]:
    """Per rule, the (B, H, W) union of regions whose output of that rule reaches alpha.

    The overall mask is the union of these (grade = max over rules).
    """
    from kistrules.regions import pseudo_label_mask

    rules = torch.as_tensor(labels.trace.rules)
    out = []
    for index in range(rules.shape[1] if rules.dim() == 2 else 0):
        fired = (rules[:, index] >= float(scorer.threshold)).cpu()
        out.append(torch.as_tensor(pseudo_label_mask(labels.table, fired)).to(torch.bool))
    return out


def _count(fired: Any) -> int:
    return int(torch.as_tensor(fired).sum().item())


def precision_recall(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    """Pixel precision and recall; None where undefined (nothing predicted / nothing true)."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return precision, recall


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) pixel counts of two bool arrays of one shape."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(truth)) - tp


def upsample_mask(mask: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of one (h, w) bool mask to `shape` (the original size)."""
    import torch.nn.functional as F

    tensor = torch.as_tensor(mask).to(torch.float32).cpu()
    if tuple(tensor.shape) == tuple(shape):
        return tensor.numpy() > 0.5
    resized = F.interpolate(tensor[None, None], size=tuple(shape), mode="nearest")
    return resized[0, 0].numpy() > 0.5


def label_statistics(
    labels: PseudoLabels,
    scorer: Any,
    *,
    truth_masks: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Figures logged per iteration: how much was labelled, by which rules, how well.

    `truth_masks` (original-resolution bool masks, one per image) add pixel
    precision / recall; the labels are upsampled to each mask's size (nearest).
    """
    mask = labels.mask
    per_image = mask.flatten(1).sum(dim=1).cpu()
    rules = torch.as_tensor(labels.trace.rules).cpu()
    alpha = float(scorer.threshold)
    names = list(scorer.rule_names)
    stats: dict[str, Any] = {
        "images": int(mask.shape[0]),
        "images_labelled": int((per_image > 0).sum().item()),
        "pixels_labelled": int(per_image.sum().item()),
        "regions": int(rules.shape[0]),
        "regions_fired": _count(labels.trace.fired),
        "fired_per_rule": {
            name: int((rules[:, i] >= alpha).sum().item()) for i, name in enumerate(names)
        },
        "thresholds": [float(t) for t in labels.thresholds],
    }
    if truth_masks is not None:
        tp = fp = fn = 0
        for index, truth in enumerate(truth_masks):
            pred = upsample_mask(mask[index], truth.shape)
            a, b, c = confusion(pred, truth)
            tp, fp, fn = tp + a, fp + b, fn + c
        precision, recall = precision_recall(tp, fp, fn)
        stats["precision"] = precision
        stats["recall"] = recall
    return stats
