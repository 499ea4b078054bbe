"""From a run directory to anomaly maps: the one post-processing path.

`anomaly_maps` is what `predict`, `evaluate` and the demo all use: e(x) at the
working size, optionally the guided filter (eq. 14-15, guide = the resized input,
radius scaled with the size, epsilon 0.001), then a bilinear resize to each
image's original resolution. `write_predictions` stores float32 TIFFs mirroring
the input tree and PNG heat-map overlays normalised once per run (0 to the run's
`overlay_vmax` = mu_e + 6 sigma_e of the final model), never per image, so that
colours mean the same residual in every picture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kist_train.config import TrainConfig
from kistrules.errors import CheckpointError, UsageError

GUIDED_EPS = 1e-3


@dataclass
class Run:
    """A trained model and everything needed to reproduce its predictions."""

    run_dir: Path
    model: torch.nn.Module
    config: TrainConfig
    meta: dict[str, Any]
    device: torch.device

    @property
    def size(self) -> int:
        return int(self.meta.get("size", self.config.size))

    @property
    def mu_e(self) -> float:
        return float(self.meta["mu_e"])

    @property
    def sigma_e(self) -> float:
        return float(self.meta["sigma_e"])


def load_run(run_dir: str | Path, *, device: str = "auto", phase: str | None = None) -> Run:
    """Load the last complete phase (or `phase`) of a run directory in eval mode."""
    from kist_train.checkpoints import load_model_from_run
    from kist_train.device import resolve_device

    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    model, meta = load_model_from_run(run_dir, phase, device=torch_device)
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, UsageError) as err:
        raise CheckpointError(
            f"{run_dir}: checkpoint has no valid training config ({err})"
        ) from err
    if meta.get("mu_e") is None or meta.get("sigma_e") is None:
        raise CheckpointError(f"{run_dir}: checkpoint has no residual statistics yet")
    return Run(run_dir, model, config, meta, torch_device)


def _working(run: Run, images: Sequence[np.ndarray]) -> torch.Tensor:
    from kist_train.data import working_tensor

    return working_tensor(images, run.size, device=run.device)


@torch.no_grad()
def residual_maps(run: Run, images: Sequence[np.ndarray], *, batch_size: int = 32) -> torch.Tensor:
    """e(x) = (G(x) - x)^2 at the working size, (B, size, size) on the run's device.

    `images` are (H, W) gray arrays on a 0-255 scale, of any sizes.
    """
    x = _working(run, images)
    return _residuals(run, x, batch_size=batch_size)


def _residuals(run: Run, x: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    # The same e(x) the training labels use: one implementation.
    from kist_train.engine import residuals_of

    return residuals_of(run.model, x, batch_size=batch_size)


@torch.no_grad()
def maps_both(
    run: Run, images: Sequence[np.ndarray], *, batch_size: int = 32
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(raw maps, guided-filtered maps), each at its image's original resolution.

    One forward pass serves both, so `evaluate` compares exactly the same residuals.
    """
    raw, filtered = _maps(run, images, batch_size=batch_size, raw=True, filtered=True)
    return raw, filtered


def _maps(
    run: Run, images: Sequence[np.ndarray], *, batch_size: int, raw: bool, filtered: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The raw and / or guided-filtered maps at original resolution (empty list if not asked).

    Each kind costs 4 bytes per original pixel, so `anomaly_maps` makes only the
    one it returns.
    """
    from kist_train.guided_filter import guided_filter, radius_for_size

    radius = radius_for_size(run.size)
    raw_maps: list[np.ndarray] = []
    filtered_maps: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = _working(run, chunk)
        e = _residuals(run, x, batch_size=batch_size)[:, None]
        if raw:
            raw_maps += _to_original(e, chunk)
        if filtered:
            filtered_maps += _to_original(guided_filter(x, e, radius, eps=GUIDED_EPS), chunk)
    return raw_maps, filtered_maps


def _to_original(maps: torch.Tensor, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for index, image in enumerate(images):
        shape = tuple(int(v) for v in np.shape(image)[:2])
        resized = F.interpolate(maps[index : index + 1], size=shape, mode="bilinear")
        # asarray, not astype: no second full-size copy of a float32 map.
        out.append(np.asarray(resized[0, 0].float().cpu().numpy(), dtype=np.float32))
    return out


@torch.no_grad()
def anomaly_maps(
    run: Run, images: Sequence[np.ndarray], *, filter: bool = True, batch_size: int = 32
) -> list[np.ndarray]:
    """Anomaly maps (float32) at each image's original resolution; guided filter by default."""
    raw, filtered = _maps(run, images, batch_size=batch_size, raw=not filter, filtered=filter)
    return filtered if filter else raw


# ----------------------------------------------------------------- files


def _collect_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(image path, output path relative to MAPS without suffix) for every input."""
    from kist_train.data import IMAGE_SUFFIXES

    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise UsageError(f"{item}: no images (png/jpg/jpeg/bmp/tif/tiff) in the folder")
            pairs += [(p, p.relative_to(item).with_suffix("")) for p in found]
        elif item.is_file():
            pairs.append((item, Path(item.stem)))
        else:
            raise UsageError(f"{item}: input not found")
    seen: dict[Path, Path] = {}
    for path, rel in pairs:
        if rel in seen:
            raise UsageError(f"{path}: would overwrite the map of {seen[rel]} (same name)")
        seen[rel] = path
    return pairs


HEAT_ROWS_PIXELS = 1 << 16  # pixels per block of rows in `heat_overlay` (a few MB)


def heat_overlay(image: np.ndarray, amap: np.ndarray, vmax: float) -> np.ndarray:
    """(H, W, 3) uint8: the gray image with a black-red-yellow-white heat map blended in.

    t = clip(map / vmax, 0, 1) with the run's fixed vmax; opacity grows with t so
    that low residuals leave the image visible. Computed in blocks of rows: the
    blend's dozen full-size temporaries (about 60 bytes a pixel for float32
    input, twice that for float64) stay a few MB whatever the image size, and
    each pixel's arithmetic is unchanged.
    """
    image, amap = np.asarray(image), np.asarray(amap)
    out = np.empty((*amap.shape, 3), np.uint8)
    step = max(1, HEAT_ROWS_PIXELS // max(1, amap.shape[-1]))
    for start in range(0, amap.shape[0], step):
        rows = slice(start, start + step)
        out[rows] = _heat_rows(image[rows], amap[rows], vmax)
    return out


def _heat_rows(image: np.ndarray, amap: np.ndarray, vmax: float) -> np.ndarray:
    t = np.clip(amap / max(vmax, 1e-12), 0.0, 1.0)[..., None]
    heat = np.concatenate(
        [np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1
    )
    gray = (np.clip(image, 0, 255) / 255.0)[..., None]
    alpha = 0.75 * t
    rgb = (1 - alpha) * gray + alpha * heat
    return np.round(rgb * 255).astype(np.uint8)


def write_predictions(
    run: Run,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    filter: bool = True,
    overlays: bool = True,
    batch_size: int = 16,
    progress=None,
) -> list[Path]:
    """Write MAPS/<rel>.tiff (float32, original size) and MAPS/<rel>.png overlays.

    Returns the TIFF paths. Files are written to a temporary name and renamed.
    """
    import imageio.v3 as iio
    import tifffile

    from kist_train.atomic import atomic_path, atomic_write_text
    from kist_train.data import read_gray

    pairs = _collect_inputs(inputs)
    out_dir = Path(out_dir)
    vmax = float(run.meta.get("overlay_vmax") or (run.mu_e + 6 * run.sigma_e))
    written: list[Path] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = [read_gray(path) for path, _ in chunk]
        maps = anomaly_maps(run, images, filter=filter, batch_size=batch_size)
        for (_, rel), image, amap in zip(chunk, images, maps, strict=True):
            target = out_dir / rel.with_suffix(".tiff")
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tifffile.imwrite(tmp, np.asarray(amap, dtype=np.float32))
            if overlays:
                with atomic_path(target.with_suffix(".png")) as tmp:
                    iio.imwrite(tmp, heat_overlay(image, amap, vmax), extension=".png")
            written.append(target)
        if progress is not None:
            progress(len(chunk))
    summary = {
        "run": str(run.run_dir),
        "filter": filter,
        "overlay_vmax": vmax,
        "maps": len(written),
    }
    atomic_write_text(out_dir / "predict.json", json.dumps(summary, indent=2) + "\n")
    return written
