"""Anomaly-localization metrics: pixel AUROC, AUPRO (MVTec AD definition), image AUROC.

All figures are computed in numpy float64 from ONE sort of the scores; there is
no threshold loop, so a full test set (millions of pixels) costs one argsort.
Maps may be a 3-D array ``(N, H, W)`` or a sequence of 2-D arrays of different
sizes (each test image at its original resolution); masks are nonzero where a
pixel is anomalous. Ties are handled as sklearn does: a threshold only ever lies
between two distinct score values, so tied pixels enter the curves together.

Example:
    >>> import numpy as np
    >>> maps = [np.array([[0.1, 0.9], [0.2, 0.3]])]
    >>> masks = [np.array([[0, 1], [0, 0]])]
    >>> pixel_auroc(maps, masks)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from kistrules.errors import DataError

__all__ = ["aupro", "image_auroc", "pixel_auroc", "pro_curve", "roc_auc"]

# 8-connectivity: MVTec AD labels ground-truth regions with a full 3x3 structure.
_EIGHT = np.ones((3, 3), dtype=bool)


def _as_maps(maps: Any, what: str) -> list[np.ndarray]:
    """Normalise a 3-D array or a sequence of 2-D arrays to a list of 2-D float64 arrays."""
    if isinstance(maps, np.ndarray) or hasattr(maps, "detach"):
        arr = _to_numpy(maps)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise DataError(f"{what} must be 2-D maps; got an array of shape {arr.shape}")
        items = list(arr)
    elif isinstance(maps, Sequence):
        items = [_to_numpy(m) for m in maps]
    else:
        raise DataError(f"{what} must be a 3-D array or a sequence of 2-D arrays")
    out = []
    for i, m in enumerate(items):
        if m.ndim != 2:
            raise DataError(f"{what}[{i}] must be 2-D; got shape {m.shape}")
        out.append(m)
    if not out:
        raise DataError(f"{what} is empty")
    return out


def _to_numpy(x: Any) -> np.ndarray:
    """Accept numpy arrays and (CPU or device) torch tensors without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _paired(maps: Any, masks: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Maps as finite float64, masks as bool, checked pairwise for equal shapes."""
    maps_l = _as_maps(maps, "maps")
    masks_l = _as_maps(masks, "masks")
    if len(maps_l) != len(masks_l):
        raise DataError(f"{len(maps_l)} maps but {len(masks_l)} masks")
    scores, truth = [], []
    for i, (m, g) in enumerate(zip(maps_l, masks_l, strict=True)):
        if m.shape != g.shape:
            raise DataError(f"map {i} has shape {m.shape} but its mask has shape {g.shape}")
        m = m.astype(np.float64, copy=False)
        if not np.all(np.isfinite(m)):
            raise DataError(f"map {i} contains NaN or infinite scores")
        scores.append(m)
        truth.append(g != 0)
    return scores, truth


def roc_auc(scores: Any, labels: Any) -> float:
    """Exact AUROC: the trapezoid over the ROC curve at distinct score thresholds.

    This equals the Mann-Whitney U statistic with ties counted as one half, and
    sklearn's ``roc_auc_score`` (which also places thresholds only between
    distinct scores).

    Args:
        scores: any shape; higher means more anomalous.
        labels: same number of entries; nonzero/True = positive (anomalous).

    Returns:
        The area in [0, 1] as a Python float.
    """
    s = _to_numpy(scores).astype(np.float64, copy=False).ravel()
    y = _to_numpy(labels).ravel() != 0
    if s.shape != y.shape:
        raise DataError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise DataError("scores contain NaN or infinite values")
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"AUROC needs both normal and anomalous samples; got {n_pos} anomalous, {n_neg} normal"
        )
    # Order within a run of tied scores does not matter: only run ends are kept.
    order = np.argsort(s)[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    tps = np.cumsum(y_sorted, dtype=np.int64)
    fps = np.arange(1, y.size + 1, dtype=np.int64) - tps
    # Keep the last index of every run of equal scores: thresholds between distinct values.
    last = np.flatnonzero(np.append(np.diff(s_sorted) != 0, True))
    tpr = np.concatenate(([0.0], tps[last] / n_pos))
    fpr = np.concatenate(([0.0], fps[last] / n_neg))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def pixel_auroc(maps: Any, masks: Any) -> float:
    """AUROC over every pixel of every image (normal images included)."""
    scores, truth = _paired(maps, masks)
    return roc_auc(
        np.concatenate([s.ravel() for s in scores]), np.concatenate([t.ravel() for t in truth])
    )


def image_auroc(maps: Any, labels: Any) -> float:
    """AUROC of image scores, the maximum of each anomaly map (as the paper does)."""
    maps_l = _as_maps(maps, "maps")
    y = _to_numpy(labels).ravel()
    if y.size != len(maps_l):
        raise DataError(f"{len(maps_l)} maps but {y.size} image labels")
    return roc_auc(np.array([float(np.max(m)) for m in maps_l]), y)


def pro_curve(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve: (FPR, PRO) at every distinct threshold, with (0,0), (1,1).

    Each 8-connected ground-truth component counts equally: a pixel of component
    k carries weight 1 / (K * |G_k|), so the cumulative sum of weights in score
    order is the mean overlap over components at each threshold (MVTec AD's
    ``compute_pro``). The FPR is over all pixels outside every component, of all
    images, so the background of defective images counts as normal.
    """
    scores, truth = _paired(maps, masks)
    flat_scores = np.concatenate([s.ravel() for s in scores])
    region_weight = np.zeros(flat_scores.size, dtype=np.float64)
    is_normal = np.zeros(flat_scores.size, dtype=bool)
    n_regions = 0
    start = 0
    for gt in truth:
        labelled, k = ndimage.label(gt, structure=_EIGHT)
        flat = labelled.ravel()
        n = flat.size
        is_normal[start : start + n] = flat == 0
        if k:
            sizes = np.bincount(flat, minlength=k + 1).astype(np.float64)
            inv = np.zeros(k + 1, dtype=np.float64)
            inv[1:] = 1.0 / sizes[1:]
            region_weight[start : start + n] = inv[flat]
        n_regions += k
        start += n
    n_normal = int(np.count_nonzero(is_normal))
    if n_regions == 0:
        raise DataError("AUPRO needs at least one anomalous region in the masks")
    if n_normal == 0:
        raise DataError("AUPRO needs at least one normal pixel")
    order = np.argsort(flat_scores)[::-1]
    s_sorted = flat_scores[order]
    fpr = np.cumsum(is_normal[order], dtype=np.int64) / n_normal
    pro = np.cumsum(region_weight[order]) / n_regions
    last = np.append(np.diff(s_sorted) != 0, True)
    fpr = np.clip(fpr[last], 0.0, 1.0)
    pro = np.clip(pro[last], 0.0, 1.0)
    return np.concatenate(([0.0], fpr, [1.0])), np.concatenate(([0.0], pro, [1.0]))


def _area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) on [0, x_max], interpolating y linearly at x_max."""
    keep = x <= x_max
    area = float(np.sum(np.diff(x[keep]) * (y[keep][1:] + y[keep][:-1]) / 2.0))
    # x is nondecreasing from 0 to 1; interpolate the last partial segment.
    i = int(np.searchsorted(x, x_max, side="right"))
    if 0 < i < x.size and x[i - 1] < x_max:
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += (y0 + y_at) / 2.0 * (x_max - x0)
    return area


def aupro(maps: Any, masks: Any, *, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve up to ``fpr_limit`` FPR, divided by the limit (MVTec AD).

    Args:
        maps: anomaly maps, higher = more anomalous.
        masks: ground truth, nonzero = anomalous; each image may be defect-free.
        fpr_limit: integration limit in (0, 1]; the paper and MVTec AD use 0.3.

    Returns:
        Normalised area in [0, 1] as a Python float.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit!r}")
    fpr, pro = pro_curve(maps, masks)
    return _area_to(fpr, pro, fpr_limit) / fpr_limit
