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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from kist_train.config import TrainConfig
from kistrules.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from kistrules.outputs import Manifest

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

    @property
    def overlay_vmax(self) -> float:
        """The residual shown as full heat in every overlay of this run (mu_e + 6 sigma_e)."""
        return float(self.meta.get("overlay_vmax") or (self.mu_e + 6 * self.sigma_e))


def load_run(run_dir: str | Path, *, device: str = "auto", phase: str | None = None) -> Run:
    """Load the last complete phase (or `phase`) of a run directory in eval mode.

    The checkpoint is verified (kist_train.checkpoints) and every field used here is
    validated, so that an edited or damaged run is a one-line CheckpointError naming
    its record, never a crash, an absurd allocation or silently different maps.
    """
    from kist_train.checkpoints import model_of, read_checkpoint
    from kist_train.device import resolve_device

    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    checkpoint = read_checkpoint(run_dir, phase)
    meta, where = checkpoint.meta, checkpoint.path
    try:
        config = TrainConfig.from_dict(meta["config"]).validate()
    except (KeyError, UsageError) as err:
        raise CheckpointError(f"{where}: checkpoint has no valid training config ({err})") from err
    model = model_of(checkpoint)
    built = (model.config.kind, model.config.width, model.config.depth)
    if built != (config.model, config.width, config.depth):
        raise CheckpointError(f"{where}: model config does not match the training config")
    if meta.get("mu_e") is None or meta.get("sigma_e") is None:
        raise CheckpointError(f"{where}: checkpoint has no residual statistics yet")
    size = meta.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size != config.size:
        raise CheckpointError(f"{where}: size {size!r} is not the run's --size {config.size}")
    for key in ("mu_e", "sigma_e", "overlay_vmax"):
        value = meta.get(key)
        if value is None and key == "overlay_vmax":
            continue
        if not _non_negative(value):
            raise CheckpointError(f"{where}: {key} must be a finite number >= 0, not {value!r}")
    return Run(run_dir, model.to(torch_device).eval(), config, meta, torch_device)


def _non_negative(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


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
    from kist_train.residuals import residuals_of

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


PREDICT_MANIFEST = "predict.json"


def _collect_inputs(
    inputs: Sequence[str | Path], *, skip: frozenset[tuple[int, int]] = frozenset()
) -> list[tuple[Path, Path]]:
    """(image path, output path relative to MAPS without suffix) for every input.

    Folder walks leave out the files in `skip` (device, inode): predict's own
    earlier outputs, when --out is or lies inside an input folder.
    """
    from kist_train.data import IMAGE_SUFFIXES
    from kistrules.files import require_regular_file
    from kistrules.outputs import file_identity

    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and file_identity(p) not in skip
            )
            if not found:
                raise UsageError(f"{item}: no images (png/jpg/jpeg/bmp/tif/tiff) in the folder")
            pairs += [(p, p.relative_to(item).with_suffix("")) for p in found]
        elif item.exists():
            pairs.append((require_regular_file(item, "image file"), Path(item.stem)))
        else:
            raise UsageError(f"{item}: input not found")
    seen: dict[Path, Path] = {}
    for path, rel in pairs:
        if rel in seen:
            raise UsageError(f"{path}: would overwrite the map of {seen[rel]} (same name)")
        seen[rel] = path
    return pairs


def read_manifest(out_dir: Path) -> Manifest:
    """What earlier predict runs wrote into `out_dir` (OUT/predict.json), empty if none.

    A predict.json from before the manifest (no "files") counts as predict's
    own but lists nothing. Any other file of that name is refused.
    """
    from kistrules.outputs import Manifest, read_json_object, require_replaceable

    path = out_dir / PREDICT_MANIFEST
    document: dict[str, Any] | None = None

    def ours(candidate: Path) -> bool:
        nonlocal document
        document = read_json_object(candidate)
        return document is not None and (
            Manifest.from_json(out_dir, document.get("files")) is not None
            or ("files" not in document and {"run", "maps"} <= document.keys())
        )

    require_replaceable(path, command="predict", ours=ours)
    if document is None:
        return Manifest(out_dir)
    return Manifest.from_json(out_dir, document.get("files", {})) or Manifest(out_dir)


def plan_outputs(
    inputs: Sequence[str | Path], out_dir: Path, *, overlays: bool
) -> tuple[list[tuple[Path, Path, Path | None]], Manifest]:
    """(image, map path, overlay path or None) per input, and the manifest to extend.

    Refuses, before anything is written, when a planned output is an input
    file (any spelling or link) or an existing file that predict.json does not
    list unchanged. Earlier outputs in an input folder are not taken as inputs.
    """
    from kistrules.outputs import file_identity, refuse_inputs, require_replaceable

    manifest = read_manifest(out_dir)
    owned = {out_dir / key for key in manifest.files if manifest.owns(out_dir / key)}  # hashed once
    identities = frozenset(i for i in map(file_identity, owned) if i is not None)
    pairs = _collect_inputs(inputs, skip=identities)
    plan = [
        (
            image,
            out_dir / rel.with_suffix(".tiff"),
            out_dir / rel.with_suffix(".png") if overlays else None,
        )
        for image, rel in pairs
    ]
    targets = [t for _, tiff, png in plan for t in (tiff, png) if t is not None]
    images = [image for image, _, _ in plan]
    refuse_inputs([*targets, out_dir / PREDICT_MANIFEST], images, command="predict")
    for target in targets:
        require_replaceable(target, command="predict", ours=owned.__contains__)
    return plan, manifest


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
    """Write MAPS/<rel>.tiff (float32, original size), MAPS/<rel>.png overlays, predict.json.

    predict.json lists every file predict wrote into MAPS with its SHA-256: a
    later run replaces an existing file only if it is listed there unchanged,
    and never an input (`plan_outputs` checks all of it before the first
    write). Files are written to a temporary name and renamed; predict.json is
    updated after every batch and when a run stops early, so that an
    interrupted run can be repeated. Returns the TIFF paths.
    """
    import imageio.v3 as iio
    import tifffile

    from kist_train.data import read_gray
    from kistrules.atomic import atomic_path
    from kistrules.outputs import sha256_of

    out_dir = Path(out_dir)
    plan, manifest = plan_outputs(inputs, out_dir, overlays=overlays)
    vmax = run.overlay_vmax
    written: list[Path] = []

    def save(target: Path, write) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            write(tmp)
            digest = sha256_of(tmp)
        manifest.record(target, digest)

    saved = dict(manifest.files)

    def save_manifest() -> None:
        nonlocal saved
        _save_manifest(run, out_dir, manifest, filter=filter, vmax=vmax, maps=len(written))
        saved = dict(manifest.files)

    try:
        for start in range(0, len(plan), batch_size):
            chunk = plan[start : start + batch_size]
            images = [read_gray(path) for path, _, _ in chunk]
            maps = anomaly_maps(run, images, filter=filter, batch_size=batch_size)
            for (_, tiff, png), image, amap in zip(chunk, images, maps, strict=True):
                as_float32 = np.asarray(amap, dtype=np.float32)  # no copy of a float32 map
                save(tiff, lambda tmp, a=as_float32: tifffile.imwrite(tmp, a))
                if png is not None:
                    picture = heat_overlay(image, amap, vmax)
                    save(png, lambda tmp, p=picture: iio.imwrite(tmp, p, extension=".png"))
                written.append(tiff)
            save_manifest()
            if progress is not None:
                progress(len(chunk))
    finally:  # an error or Ctrl-C: still list what was written, so that a rerun may replace it
        if manifest.files != saved:
            save_manifest()
    return written


def _save_manifest(
    run: Run, out_dir: Path, manifest: Manifest, *, filter: bool, vmax: float, maps: int
) -> None:
    from kistrules.atomic import atomic_write_text

    summary = {
        "run": str(run.run_dir),
        "filter": filter,
        "overlay_vmax": vmax,
        "maps": maps,
        "files": manifest.listed_and_present(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / PREDICT_MANIFEST, json.dumps(summary, indent=2) + "\n")
