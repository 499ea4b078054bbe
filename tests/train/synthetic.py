"""A tiny synthetic data set in the documented layout, written to a temp directory.

Smooth gray textures of a few sizes (so resizing and original-resolution maps
are exercised), dark soft blobs as defects with exact masks. Deterministic in
`seed`. Small enough that a CAE at 16-32 px trains in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage

SIZES = ((32, 32), (36, 40), (40, 32))

BLOB_RULEBOOK = """\
scale pixels = 40
scale darkness = 40
threshold 0.5
rule dark_blob: IF darkness is high AND NOT (pixels is low) THEN anomalous (1.0)
rule dark_gray: IF gray is low THEN anomalous (0.6)
"""


def texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth noise around mid gray, float64 0-255."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=2.0, mode="wrap")
    noise /= noise.std() + 1e-9
    return np.clip(150.0 + 18.0 * noise, 0, 255)


def blob(
    rng: np.random.Generator, image: np.ndarray, *, depth: float = 90.0
) -> tuple[np.ndarray, np.ndarray]:
    """Darken an elliptic blob; returns (image, mask)."""
    height, width = image.shape
    cy = rng.uniform(0.3, 0.7) * height
    cx = rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(3.0, 6.0, size=2)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    soft = ndimage.gaussian_filter(inside.astype(float), 0.7)
    return np.clip(image - depth * soft, 0, 255), inside


def _save(path: Path, array: np.ndarray, *, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.round(array).astype(np.uint8)
    if rgb:
        data = np.stack([data] * 3, axis=-1)
    iio.imwrite(path, data)


def make_dataset(
    root: Path,
    *,
    seed: int = 0,
    n_good: int = 24,
    n_anomalous: int = 4,
    n_test_good: int = 3,
    n_test_defect: int = 4,
    anomalous_masks: bool = False,
) -> Path:
    """Write the data set under `root` and return `root`."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for index in range(n_good):
        shape = SIZES[index % len(SIZES)]
        ext = "png" if index % 4 else "jpg"
        _save(root / "train" / "good" / f"g{index:03d}.{ext}", texture(rng, shape), rgb=index == 1)
    for index in range(n_anomalous):
        image, mask = blob(rng, texture(rng, SIZES[index % len(SIZES)]))
        _save(root / "train" / "anomalous" / f"a{index:03d}.png", image)
        if anomalous_masks:
            _save(root / "ground_truth" / "anomalous" / f"a{index:03d}_mask.png", mask * 255.0)
    for index in range(n_test_good):
        _save(root / "test" / "good" / f"t{index:03d}.png", texture(rng, SIZES[index % 3]))
    for index in range(n_test_defect):
        image, mask = blob(rng, texture(rng, SIZES[(index + 1) % 3]))
        _save(root / "test" / "blob" / f"d{index:03d}.png", image)
        _save(root / "ground_truth" / "blob" / f"d{index:03d}_mask.png", mask * 255.0)
    return root


def write_rulebook(path: Path, text: str = BLOB_RULEBOOK) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# The training tests' run: a 24 px, width-4 CAE that trains in seconds.
TINY_RUN = dict(
    size=24,
    width=4,
    depth=2,
    epochs=3,
    iterations=2,
    update_epochs=1,
    batch_size=6,
    anomalous_per_batch=2,
    device="cpu",
)


def tiny_config(dataset: tuple[Path, Path], out: Path, **changes):
    """The training tests' TrainConfig: `TINY_RUN` on `dataset`, with `changes`."""
    from kist_train.config import TrainConfig

    data, rulebook = dataset
    settings = dict(data=str(data), out=str(out), rulebook=str(rulebook), **TINY_RUN)
    settings.update(changes)
    return TrainConfig(**settings)


def tiny_cli_args(**changes) -> list[str]:
    """`TINY_RUN` with `changes` as `kistrules train` options (subprocess tests)."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_RUN, **changes}.items()]
