"""Slow, obvious references for the engine's building blocks (tests only).

Each function follows its definition literally, pixel by pixel or threshold by
threshold, so that the fast vectorised code in `kist_train` is checked against
something written differently.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label


def naive_box_mean(img: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the clipped (2r+1)^2 window of each pixel of a 2-D array, by loops."""
    h, w = img.shape
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(h):
        for j in range(w):
            win = img[max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1]
            out[i, j] = win.mean()
    return out


def naive_guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter on 2-D arrays: fit (a_k, b_k) per window, average per pixel."""
    h, w = guide.shape
    a = np.zeros((h, w))
    b = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            sl = (
                slice(max(0, i - radius), i + radius + 1),
                slice(max(0, j - radius), j + radius + 1),
            )
            gi = guide[sl].astype(np.float64).ravel()
            ei = src[sl].astype(np.float64).ravel()
            mu = gi.mean()
            var = gi.var()  # population variance, as in eq. 15's solution
            e_bar = ei.mean()
            a[i, j] = ((gi * ei).mean() - mu * e_bar) / (var + eps)
            b[i, j] = e_bar - a[i, j] * mu
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            # The windows containing pixel i are those centred within its own clipped window.
            sl = (
                slice(max(0, i - radius), i + radius + 1),
                slice(max(0, j - radius), j + radius + 1),
            )
            out[i, j] = a[sl].mean() * guide[i, j] + b[sl].mean()
    return out


def slow_aupro(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """AUPRO by sweeping every distinct threshold (score >= t is anomalous)."""
    normal = []
    comps_per_image = []
    for m in masks:
        lab = label(np.asarray(m) != 0, connectivity=2)
        normal.append(lab == 0)
        comps_per_image.append([lab == k for k in range(1, lab.max() + 1)])
    n_normal = sum(int(n.sum()) for n in normal)
    n_comp = sum(len(c) for c in comps_per_image)
    thresholds = np.unique(np.concatenate([np.ravel(s) for s in maps]))[::-1]
    xs, ys = [0.0], [0.0]
    for t in thresholds:
        fp = 0
        overlap = 0.0
        for s, nm, cs in zip(maps, normal, comps_per_image, strict=True):
            pred = np.asarray(s) >= t
            fp += int((pred & nm).sum())
            for c in cs:
                overlap += (pred & c).sum() / c.sum()
        xs.append(fp / n_normal)
        ys.append(overlap / n_comp)
    xs.append(1.0)
    ys.append(1.0)
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:], strict=True):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        elif x0 < fpr_limit:
            y_at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_at) / 2
            break
        else:
            break
    return area / fpr_limit
