"""A slow, obvious reading of how tuning scores a labelling: pixel by pixel.

A pixel is labelled when some region containing it, at some threshold, has a
grade reaching alpha (eq. 11-12); tp and fp add up the labelled pixels'
mask and non-mask weights. Plain Python loops over every pixel and threshold,
with no grouping of pixels and no sorting, so that
`kistrules.tuning.evidence.label_counts` is checked against the definition.
"""

from __future__ import annotations

import numpy as np


def label_counts(
    labels: np.ndarray,
    grades: np.ndarray,
    alpha: float,
    positive: np.ndarray,
    negative: np.ndarray,
) -> tuple[float, float]:
    """(tp, fp) of one grade vector at one alpha.

    labels: (B, T, H, W), 0 or region row + 1; grades: (N,) float32; positive, negative:
    (B, H, W) weights. alpha is compared in float32, as the scorer compares.
    """
    threshold = np.float32(alpha)
    b, t, h, w = labels.shape
    tp = fp = 0.0
    for image in range(b):
        for y in range(h):
            for x in range(w):
                fired = False
                for k in range(t):
                    region = int(labels[image, k, y, x])
                    if region and np.float32(grades[region - 1]) >= threshold:
                        fired = True
                if fired:
                    tp += float(positive[image, y, x])
                    fp += float(negative[image, y, x])
    return tp, fp
