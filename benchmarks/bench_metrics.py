"""Metrics and guided filter throughput on a test set of realistic size.

Run from the repository root:  .venv/bin/python benchmarks/bench_metrics.py
(options: --images 181 --size 256 --repeats 3 --seed 0)

Data: seeded synthetic anomaly maps (smooth noise, float32, scores rounded to
1e-4 so that ties occur as in a quantised map) and masks with a few elliptic
defects on a third of the images, as in the MTD test split (120 normal, 61
anomalous). Checks first that pixel AUROC equals sklearn's roc_auc_score, then
times kist_train.metrics against sklearn and a 100-threshold AUPRO loop (the
common, approximate implementation), and the guided filter at several radii
(cumulative sums: the cost must not grow with the radius).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy import ndimage
from skimage.draw import ellipse
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kist_train.guided_filter import guided_filter  # noqa: E402
from kist_train.metrics import aupro, pixel_auroc  # noqa: E402


def make_set(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3)
        mask = np.zeros((size, size), dtype=bool)
        if i % 3 == 0:
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(10, size - 10, 2)
                rr, cc = ellipse(r, c, rng.integers(2, 12), rng.integers(2, 12), (size, size))
                mask[rr, cc] = True
        score = noise**2 + 0.05 * mask * rng.random((size, size))
        maps.append(np.round(score, 4).astype(np.float32))
        masks.append(mask)
    return maps, masks


def threshold_loop_aupro(maps, masks, steps: int = 100, limit: float = 0.3) -> float:
    """The usual approximate implementation: label once, loop over `steps` thresholds."""
    comps = [ndimage.label(m, structure=np.ones((3, 3)))[0] for m in masks]
    normal = np.concatenate([(c == 0).ravel() for c in comps])
    flat = np.concatenate([m.ravel() for m in maps])
    xs, ys = [], []
    for t in np.linspace(flat.max(), flat.min(), steps):
        fpr = np.count_nonzero((flat >= t) & normal) / normal.sum()
        overlaps = []
        for m, c in zip(maps, comps, strict=True):
            for k in range(1, c.max() + 1):
                region = c == k
                overlaps.append(np.count_nonzero(m[region] >= t) / region.sum())
        xs.append(fpr)
        ys.append(np.mean(overlaps))
    xs, ys = np.array(xs), np.array(ys)
    keep = xs <= limit
    x, y = xs[keep], ys[keep]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / limit)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=181)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    maps, masks = make_set(args.images, args.size, args.seed)
    flat_m = np.concatenate([m.ravel() for m in maps])
    flat_g = np.concatenate([g.ravel() for g in masks])
    ours = pixel_auroc(maps, masks)
    ref = roc_auc_score(flat_g, flat_m)
    assert abs(ours - ref) < 1e-9, (ours, ref)

    table = Table(title=f"{args.images} maps of {args.size}x{args.size} ({flat_m.size:,} px)")
    table.add_column("computation")
    table.add_column("seconds", justify="right")
    table.add_column("value", justify="right")
    t, v = best_of(lambda: pixel_auroc(maps, masks), args.repeats)
    table.add_row("pixel_auroc (kist_train)", f"{t:.2f}", f"{v:.6f}")
    t, v = best_of(lambda: roc_auc_score(flat_g, flat_m), args.repeats)
    table.add_row("roc_auc_score (sklearn)", f"{t:.2f}", f"{v:.6f}")
    t, v = best_of(lambda: aupro(maps, masks), args.repeats)
    table.add_row("aupro (kist_train, exact)", f"{t:.2f}", f"{v:.6f}")
    t, v = best_of(lambda: threshold_loop_aupro(maps, masks), 1)
    table.add_row("aupro, 100-threshold loop (approx.)", f"{t:.2f}", f"{v:.6f}")

    torch.manual_seed(args.seed)
    guide = torch.rand(32, 1, args.size, args.size)
    src = torch.rand(32, 1, args.size, args.size)
    for radius in (2, 16, 64):
        t, _ = best_of(lambda r=radius: guided_filter(guide, src, r), args.repeats)
        table.add_row(f"guided_filter batch 32, radius {radius}", f"{t:.3f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
