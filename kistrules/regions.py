"""Residual maps -> a table of 8-connected regions and their measured properties.

This is the hot path of pseudo-labelling (KIST eq. 9-12): every weakly labelled
image's residual map is cut at every threshold of eq. 9, and every region of every
cut is measured. Labelling runs once per (image, threshold) on the CPU
(`scipy.ndimage.label`, 3 x 3 structure); every property is then aggregated over
all regions of the whole batch at once (`kistrules.region_props`). The definitions
are the language's (docs/language.md), made precise in docs/measurement.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from kistrules import region_props
from kistrules.builtins import PROPERTIES
from kistrules.errors import DataError, UsageError

__all__ = ["RegionTable", "eq9_thresholds", "measure", "measure_regions", "pseudo_label_mask"]

_EIGHT = np.ones((3, 3), dtype=bool)
_ROW_FIELDS = ("image", "threshold", "label", "bbox", "pixel_count")


@dataclass(frozen=True)
class RegionTable:
    """One row per region: where it is, how big, and its raw property values.

    `labels` maps pixels back to rows (value = row index + 1), so a pseudo-label is
    one gather over it (`pseudo_label_mask`). Properties are raw (not standardised
    by gamma): the scorer standardises.
    """

    image: torch.Tensor  # (N,) int64, index into the batch
    threshold: torch.Tensor  # (N,) int64, index into thresholds
    label: torch.Tensor  # (N,) int64, region's value in `labels` (= row index + 1)
    bbox: torch.Tensor  # (N, 4) int64: row0, col0, row1, col1 (half-open)
    pixel_count: torch.Tensor  # (N,) int64, pixels on the measured grid
    properties: dict[str, torch.Tensor]  # name -> (N,) float64 raw values
    labels: torch.Tensor  # (B, T, H, W) int32: 0 background, else row index + 1 (may be strided)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.properties[name]
        except KeyError:
            have = ", ".join(self.properties) or "none"
            raise KeyError(f"property {name!r} was not measured (measured: {have})") from None

    def to(self, device: torch.device | str) -> RegionTable:
        """The same table with every tensor on `device`."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in (*_ROW_FIELDS, "labels"):
            moved[name] = moved[name].to(device)
        moved["properties"] = {k: v.to(device) for k, v in self.properties.items()}
        return RegionTable(**moved)

    def select(self, rows: torch.Tensor) -> RegionTable:
        """A subset of rows (index or boolean mask); `labels` is left as is."""
        rows = torch.as_tensor(rows, device=self.label.device)
        picked = {name: getattr(self, name)[rows] for name in _ROW_FIELDS}
        props = {k: v[rows] for k, v in self.properties.items()}
        return RegionTable(**picked, properties=props, labels=self.labels)


def eq9_thresholds(mu: float, sigma: float, s: float = 0.3) -> torch.Tensor:
    """Residual thresholds of KIST eq. 9: t = mu + n s sigma, ceil(1/s) <= n <= floor(3/s).

    The bounds get a tolerance of 1e-9 so that 3 / 0.3 (= 9.999999999999998 in floats)
    gives 10. With the paper's s = 0.3 this is n = 4..10, i.e. 7 thresholds from
    mu + 1.2 sigma to mu + 3 sigma, although the paper's text says "the total number of
    steps is 10": we implement the formula (see docs/measurement.md).

    >>> [round(t, 9) for t in eq9_thresholds(0.0, 1.0).tolist()]
    [1.2, 1.5, 1.8, 2.1, 2.4, 2.7, 3.0]
    """
    for name, v in (("mu", mu), ("sigma", sigma), ("s", s)):
        if not math.isfinite(float(v)):
            raise DataError(f"eq. 9 thresholds: {name} must be finite, got {v!r}")
    if s <= 0 or sigma < 0:
        raise DataError(f"eq. 9 thresholds need s > 0 and sigma >= 0, got s={s!r}, sigma={sigma!r}")
    tol = 1e-9
    lo, hi = math.ceil(1.0 / s - tol), math.floor(3.0 / s + tol)
    n = torch.arange(lo, hi + 1, dtype=torch.float64)
    return float(mu) + n * float(s) * float(sigma)


def measure_regions(
    images: Any,
    residuals: Any,
    thresholds: Any,
    *,
    properties: Iterable[str] | None = None,
    original_sizes: Sequence[tuple[int, int]] | None = None,
) -> RegionTable:
    """Measure every 8-connected region of `residuals > t` for every image and threshold.

    Args:
        images: (B, H, W) gray values on a 0-255 scale (float or uint8; torch or numpy).
        residuals: (B, H, W) residual maps, same grid.
        thresholds: (T,) residual thresholds (e.g. `eq9_thresholds`).
        properties: names to measure (default: every built-in); only these are computed.
        original_sizes: per image (H0, W0) so that `pixels` counts original-image pixels.

    Returns:
        A `RegionTable`, rows ordered by image, then threshold, then label. Tensors are on
        the residuals' device (or the images', or the CPU for numpy inputs).
    """
    device = _device_of(residuals, images)
    gray = _as_array(images, "images")
    res = _as_array(residuals, "residuals")
    thr = _as_array(thresholds, "thresholds").astype(np.float64).reshape(-1)
    if gray.ndim != 3 or res.shape != gray.shape:
        raise DataError(
            f"images and residuals must both be (B, H, W) of one shape, got "
            f"{tuple(gray.shape)} and {tuple(res.shape)}"
        )
    if not np.isfinite(thr).all():
        raise DataError(f"thresholds must be finite, got {thr.tolist()!r}")
    if np.isnan(res).any():
        raise DataError("residual maps contain NaN")
    b, h, w = gray.shape
    names = _property_names(properties)
    sizes = _original_sizes(original_sizes, b, (h, w))
    t = thr.shape[0]
    # The cut at every threshold, written straight into a zero-framed (B, T, H+2, W+2) stack.
    mask = np.zeros((b, t, h + 2, w + 2), dtype=bool)
    np.greater(res[:, None, :, :], thr[None, :, None, None], out=mask[:, :, 1:-1, 1:-1])
    padded, fg = _label_stack(mask.reshape(b * t, h + 2, w + 2))
    del mask  # 1 byte x T per pixel, not needed to measure
    slice_image = np.repeat(np.arange(b), t)
    table = _measure_stack(padded, gray, slice_image, names, sizes, fg=fg)
    table["threshold"] = table["slice"] % max(t, 1)
    # A strided view into the framed stack: copying 4 bytes x B x T x H x W to make it
    # contiguous would add ~8 % to the whole measurement in the benchmark.
    return _build(table, padded[:, 1:-1, 1:-1].reshape(b, t, h, w), names, device)


def measure(
    image: Any,
    labels: Any,
    *,
    properties: Iterable[str] | None = None,
    original_size: tuple[int, int] | None = None,
) -> RegionTable:
    """Measure the regions of one label map (0 = background) over one image.

    Each positive value is ONE region, even if its pixels are not connected, and
    values need not be consecutive: row i is the (i+1)-th smallest value. The
    table's `labels` is (1, 1, H, W) with values renumbered to row index + 1.
    Used by `explain --mask` with expert-drawn masks.
    """
    device = _device_of(labels, image)
    gray = _as_array(image, "image")
    lab = _as_array(labels, "labels")
    if gray.ndim != 2 or lab.shape != gray.shape:
        raise DataError(
            f"image and label map must both be (H, W) of one shape, got "
            f"{tuple(gray.shape)} and {tuple(lab.shape)}"
        )
    if lab.dtype.kind not in "iub" and not np.array_equal(lab, np.round(lab)):
        raise DataError("a label map must hold integers (0 = background)")
    if lab.dtype.kind not in "iu" or lab.dtype == np.uint64:  # bool, float, huge unsigned
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise DataError("a label map must not hold negative values (0 = background)")
    h, w = gray.shape
    names = _property_names(properties)
    sizes = _original_sizes(None if original_size is None else [original_size], 1, (h, w))
    padded = np.zeros((1, h + 2, w + 2), np.int32)
    padded[0, 1:-1, 1:-1] = _rank_among_positives(lab)
    table = _measure_stack(padded, gray[None], np.zeros(1, np.int64), names, sizes, fg=None)
    table["threshold"] = np.zeros_like(table["slice"])
    return _build(table, padded[:, 1:-1, 1:-1].reshape(1, 1, h, w), names, device)


def pseudo_label_mask(table: RegionTable, fired: torch.Tensor) -> torch.Tensor:
    """Eq. 11-12: the union over thresholds of the fired regions' pixels, (B, H, W) bool.

    `fired` is (N,) bool (e.g. `grade >= alpha`, eq. 10) on the table's device.
    """
    fired = torch.as_tensor(fired, device=table.labels.device).reshape(-1).bool()
    if fired.shape[0] != len(table):
        raise DataError(f"fired has {fired.shape[0]} entries for a table of {len(table)} regions")
    lookup = torch.cat([fired.new_zeros(1), fired])
    labels = table.labels
    if labels.shape[1] == 0:
        return torch.zeros(
            (labels.shape[0], *labels.shape[2:]), dtype=torch.bool, device=labels.device
        )
    # One threshold at a time: torch indexes with an int64 copy of the indices, which
    # for all T thresholds at once was 8 bytes x T per pixel (~1 GB at 4096 x 4096).
    mask = lookup[labels[:, 0]]
    for t in range(1, labels.shape[1]):
        mask |= lookup[labels[:, t]]
    return mask


# ----------------------------------------------------------------------------- helpers


def _device_of(*candidates: Any) -> torch.device:
    for c in candidates:
        if isinstance(c, torch.Tensor):
            return c.device
    return torch.device("cpu")


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} cannot be read as an array: {err}") from err
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _property_names(properties: Iterable[str] | None) -> tuple[str, ...]:
    if properties is None:
        return tuple(PROPERTIES)
    names = tuple(dict.fromkeys(properties))
    unknown = [p for p in names if p not in PROPERTIES]
    if unknown:
        raise UsageError(f"unknown region property {unknown[0]!r}; valid: {', '.join(PROPERTIES)}")
    return names


def _original_sizes(
    sizes: Sequence[tuple[int, int]] | None, b: int, grid: tuple[int, int]
) -> np.ndarray:
    if sizes is None:
        return np.tile(np.array(grid, np.float64), (b, 1))
    arr = np.asarray(sizes, dtype=np.float64)
    if arr.shape != (b, 2) or not (arr > 0).all():
        raise DataError(f"original_sizes must be {b} positive (H0, W0) pairs, got {sizes!r}")
    return arr


def _rank_among_positives(lab: np.ndarray) -> np.ndarray:
    """Each value's rank among the positive values present (1, 2, ...); 0 stays 0; int32.

    A lookup table over the values when they are at most a few times the pixel
    count (connected-component labels always are): no sort of the whole map,
    whose argsort and copies took ~40 bytes a pixel. Larger values: `np.unique`.
    """
    top = int(lab.max()) if lab.size else 0
    if top > 4 * lab.size + 1024:
        values, inverse = np.unique(lab, return_inverse=True)
        shift = 0 if values[0] == 0 else 1
        return (inverse.reshape(lab.shape) + shift).astype(np.int32)
    present = np.zeros(top + 1, bool)
    present[lab.ravel()] = True
    present[0] = False
    rank = np.cumsum(present, dtype=np.int32)  # rank[0] = 0: background stays 0
    return rank[lab]


def _label_stack(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels of each zero-framed slice of `mask` (S, H+2, W+2), numbered 1..N.

    One `ndimage.label` call per slice (~3x faster here than one 3-D call with a
    slice-local structure) into a contiguous output; the per-slice labels are then made
    global by adding each slice's offset to its foreground pixels only. Returns the
    labels and the flat indices of the foreground (ascending), reused by the kernels.
    """
    out = np.zeros(mask.shape, dtype=np.int32)
    found = np.zeros(mask.shape[0], dtype=np.int64)
    for s in range(mask.shape[0]):
        found[s] = ndimage.label(mask[s], structure=_EIGHT, output=out[s])
    flat = out.reshape(-1)
    fg = np.flatnonzero(mask)  # the bool mask: 4x fewer bytes to scan than the labels
    if mask.shape[0] > 1 and found[:-1].any():
        offset = np.concatenate([[0], np.cumsum(found[:-1])]).astype(np.int32)
        flat[fg] += offset[fg // (mask.shape[1] * mask.shape[2])]
    return out, fg


def _measure_stack(
    padded: np.ndarray,
    gray: np.ndarray,
    slice_image: np.ndarray,
    names: tuple[str, ...],
    sizes: np.ndarray,
    *,
    fg: np.ndarray | None,
) -> dict[str, Any]:
    """Measure every region of a globally labelled, zero-framed stack; numpy arrays."""
    px = region_props.gather_pixels(padded, gray, slice_image, fg)
    n = int(px.region.max()) + 1 if px.region.size else 0
    h, w = padded.shape[1] - 2, padded.shape[2] - 2
    stats = region_props.basic_stats(px, n)
    image = slice_image[stats["slice"]]
    count = stats["count"]
    # Original-image pixels per measured pixel, along rows and columns, per region.
    sy, sx = (sizes[:, 0] / h)[image], (sizes[:, 1] / w)[image]
    props: dict[str, np.ndarray] = {}
    if "area" in names:
        props["area"] = count / float(h * w)
    if "pixels" in names:
        scale = sizes[:, 0] * sizes[:, 1] / float(h * w)
        props["pixels"] = count * scale[image]
    if "gray" in names:
        props["gray"] = stats["mean"]
    if "unevenness" in names:
        props["unevenness"] = stats["std"]
    if "darkness" in names or "brightness" in names:
        ring_mean, ring_count = region_props.ring_means(px, gray, slice_image, stats)
        diff = np.where(ring_count > 0, ring_mean - stats["mean"], 0.0)
        if "darkness" in names:
            props["darkness"] = np.maximum(diff, 0.0)
        if "brightness" in names:
            props["brightness"] = np.maximum(-diff, 0.0)
    if "shape" in names:
        props["shape"] = region_props.shape_index(padded, px, stats, n)
    if "symmetry" in names:
        props["symmetry"] = region_props.symmetry(px, padded, stats["bbox"], n)
    if "border" in names:
        props["border"] = region_props.border_distance(stats["bbox"], (h, w), sy, sx)
    if "elongation" in names or "orientation" in names:
        props["elongation"], props["orientation"] = region_props.principal_axes(
            px, stats, n, sy, sx
        )
    if "thickness" in names:
        props["thickness"] = region_props.thickness(px, padded, stats, n, sy, sx)
    return {
        "image": image,
        "slice": stats["slice"],
        "label": np.arange(1, n + 1, dtype=np.int64),
        "bbox": stats["bbox"],
        "pixel_count": count,
        "properties": {p: props[p] for p in names},
    }


def _build(
    table: dict[str, Any], labels: np.ndarray, names: tuple[str, ...], device: torch.device
) -> RegionTable:
    def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return RegionTable(
        image=tensor(table["image"], torch.int64),
        threshold=tensor(table["threshold"], torch.int64),
        label=tensor(table["label"], torch.int64),
        bbox=tensor(table["bbox"].reshape(-1, 4), torch.int64),
        pixel_count=tensor(table["pixel_count"], torch.int64),
        properties={p: tensor(table["properties"][p], torch.float64) for p in names},
        labels=torch.as_tensor(labels).to(device=device, dtype=torch.int32),
    )
