"""Data sets in the MVTec AD layout plus weakly labelled anomalies (the KIST method).

```
DATASET/
  train/good/*                          normal training images
  train/anomalous/*                     anomalous images, image-level label only (optional)
  test/good/*, test/<defect>/*          test images (optional for training)
  ground_truth/<defect>/<stem>_mask.png masks of test/<defect> (defect where a pixel
                                        reaches half the mask's maximum: read_mask)
  ground_truth/anomalous/<stem>_mask.png  optional masks of train/anomalous, used only
                                        to log pseudo-label precision / recall
```

Images are decoded lazily, once, and cached (`kist_train.decoding` says how each
sample type becomes gray); `working_tensor` resizes a list of them to the square
working size in one stacked tensor, which is what training keeps on the device.
Every user error is a one-line `DataError` naming the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Decoding lives in kist_train.decoding; these names stay importable from here.
from kist_train.config import MASK_THRESHOLD, check_mask_threshold
from kist_train.decoding import MAX_PIXELS as MAX_PIXELS
from kist_train.decoding import check_image_size as check_image_size
from kist_train.decoding import decode_pixels
from kist_train.decoding import read_gray as read_gray
from kistrules.errors import DataError


class MissingDataError(DataError):
    """A data directory that does not exist: a wrong path, exit 2 like every missing input."""

    exit_code = 2


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
MASK_SUFFIX = "_mask.png"


def read_mask(path: str | Path, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Decode a mask file to (H, W) bool: True where it reaches `threshold` x its maximum.

    The one place masks are read (explain, evaluate, audit, report, train).
    Masks drawn with anti-aliasing carry a rim of low values around each
    defect; counting every nonzero pixel made that rim into specks of 1-30 px
    and grew each defect. Relative to the mask's own maximum, the rule holds
    for 0/1, 0-255 and 16-bit masks alike. Colour masks take the largest
    channel; a mask with an alpha channel is first composited over black. An
    all-zero mask stays empty. Decoding (and its refusals: NaN,
    several pages, ...) is `decode_pixels`'.
    """
    check_mask_threshold(threshold)
    return binarise_mask(decode_pixels(path, "mask"), threshold)


def _over_black(values: np.ndarray) -> np.ndarray:
    """(H, W) of a mask with an alpha channel, composited over black.

    The largest colour channel times alpha / its maximum: an opaque black
    background reads 0 (taking the maximum over all channels counted alpha, so
    every opaque pixel was a defect), and so does a transparent one of any colour.
    """
    alpha = values[..., -1].astype(np.float64)
    top = alpha.max() if alpha.size else 0.0
    colour = values[..., :-1].max(axis=-1).astype(np.float64)
    return colour * (alpha / top) if top > 0 else np.zeros(colour.shape)


def binarise_mask(values: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """(H, W) bool of a decoded mask, (H, W) or (H, W, C): value >= threshold x maximum.

    >>> binarise_mask(np.array([[0, 40, 128, 255]], dtype=np.uint8)).tolist()
    [[False, False, True, True]]
    >>> binarise_mask(np.zeros((1, 2))).tolist()
    [[False, False]]
    """
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[-1] in (2, 4):
        values = _over_black(values)
    elif values.ndim == 3:
        values = values.max(axis=-1)
    if values.dtype == np.bool_:
        return values.copy()
    peak = values.max() if values.size else 0
    if peak <= 0:  # all zero: no defect, whatever the threshold
        return np.zeros(values.shape, dtype=bool)
    return values >= threshold * np.float64(peak)


@dataclass(eq=False)
class ImageItem:
    """One image file; `gray()` decodes it on first use and keeps the result."""

    path: Path
    defect: str = "good"
    mask_path: Path | None = None
    mask_threshold: float = MASK_THRESHOLD  # read_mask's, for `mask()`
    _gray: np.ndarray | None = field(default=None, repr=False)

    def gray(self) -> np.ndarray:
        """(H, W) float32 0-255, decoded once."""
        if self._gray is None:
            self._gray = read_gray(self.path)
        return self._gray

    @property
    def shape(self) -> tuple[int, int]:
        """Original (H, W)."""
        height, width = self.gray().shape
        return int(height), int(width)

    def release(self) -> None:
        """Drop the decoded pixels (large test sets keep memory flat)."""
        self._gray = None

    def mask(self) -> np.ndarray:
        """(H, W) bool at the image's size; all False for an image without a mask path.

        Raises DataError when the mask's size differs from the image's.
        """
        if self.mask_path is None:
            return np.zeros(self.shape, dtype=bool)
        mask = read_mask(self.mask_path, self.mask_threshold)
        if mask.shape != self.shape:
            raise DataError(
                f"{self.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{self.path.name} is {self.shape[1]}x{self.shape[0]} (width x height)"
            )
        return mask


@dataclass(eq=False)
class TestItem(ImageItem):
    """A test image: `defect` is "good" or the test/<defect> folder name."""

    __test__ = False  # not a pytest test class, despite the name

    @property
    def is_anomalous(self) -> bool:
        return self.defect != "good"


@dataclass
class Dataset:
    """A loaded data set layout; images are decoded on demand."""

    root: Path
    train_good: list[ImageItem]
    train_anomalous: list[ImageItem]
    test: list[TestItem]

    @property
    def has_anomalous(self) -> bool:
        return bool(self.train_anomalous)

    @property
    def anomalous_have_masks(self) -> bool:
        """True when every train/anomalous image has a mask (precision/recall can be logged)."""
        return bool(self.train_anomalous) and all(
            item.mask_path is not None for item in self.train_anomalous
        )

    def require_test(self) -> list[TestItem]:
        """The test items, or a DataError when the data set has none."""
        if not self.test:
            raise DataError(f"{self.root / 'test'}: folder not found or has no images")
        return self.test


def _images_in(folder: Path, *, recursive: bool = False) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _require_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    images = _images_in(folder, recursive=recursive)
    if not images:
        kinds = "/".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise DataError(f"{folder}: folder has no images ({kinds})")
    return images


def load_dataset(root: str | Path, *, mask_threshold: float = MASK_THRESHOLD) -> Dataset:
    """Index a data set directory; nothing is decoded yet.

    `mask_threshold` is how the items' masks are binarised (`read_mask`).
    Raises DataError for a missing root or train/good, an empty image folder, or
    a test/<defect> image without its ground_truth/<defect>/<stem>_mask.png;
    UsageError for a threshold outside (0, 1].
    """
    check_mask_threshold(mask_threshold)
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"{root}: data directory not found")
    train_good = [ImageItem(p) for p in _require_images(root / "train" / "good")]

    train_anomalous: list[ImageItem] = []
    anomalous_dir = root / "train" / "anomalous"
    if anomalous_dir.exists():
        for path in _require_images(anomalous_dir, recursive=True):
            mask = root / "ground_truth" / "anomalous" / f"{path.stem}{MASK_SUFFIX}"
            train_anomalous.append(
                ImageItem(
                    path,
                    defect="anomalous",
                    mask_path=mask if mask.is_file() else None,
                    mask_threshold=mask_threshold,
                )
            )

    test: list[TestItem] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for path in _require_images(defect_dir):
                if defect == "good":
                    test.append(TestItem(path, defect="good"))
                    continue
                mask = root / "ground_truth" / defect / f"{path.stem}{MASK_SUFFIX}"
                if not mask.is_file():
                    raise DataError(
                        f"{path}: test image has no mask (expected {mask.relative_to(root)})"
                    )
                test.append(
                    TestItem(path, defect=defect, mask_path=mask, mask_threshold=mask_threshold)
                )
    return Dataset(root, train_good, train_anomalous, test)


def working_tensor(
    images: Sequence[np.ndarray] | Sequence[ImageItem],
    size: int,
    *,
    device=None,
    release: bool = False,
):
    """Resize images to (N, 1, size, size) float32 in [0, 1] on `device`.

    Bilinear with antialiasing (a shrink must average, not alias), one image at a
    time because sizes differ, stacked once: training keeps this tensor resident.
    `release=True` drops each ImageItem's decoded pixels once resized, so that the
    originals never all sit in memory together.
    """
    import torch
    import torch.nn.functional as F

    out = torch.empty((len(images), 1, size, size), dtype=torch.float32)
    for index, image in enumerate(images):
        array = image.gray() if isinstance(image, ImageItem) else image
        src = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None] / 255.0
        if src.shape[-2:] == (size, size):
            out[index] = src[0]
        else:
            resized = F.interpolate(
                src, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            out[index] = resized[0].clamp_(0.0, 1.0)
        if release and isinstance(image, ImageItem):
            image.release()
    return out.to(device) if device is not None else out


def original_sizes(items: Sequence[ImageItem]) -> list[tuple[int, int]]:
    """(H, W) of each item at its original resolution."""
    return [item.shape for item in items]
