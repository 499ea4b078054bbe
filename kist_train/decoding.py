"""Decoding image files: the one path every command reads pixels through.

`decode_pixels` turns a file into a numpy array; `read_gray` turns that into the
(H, W) float32 0-255 gray image that training, predict, evaluate, audit and
explain measure, `read_float_map` into a residual map (values as stored), and
`kist_train.data.read_mask` into a mask. Every refusal is a one-line
`DataError` naming the file.

Decoders
- TIFF files whose samples need no colour conversion (photometric min-is-black
  or RGB) are read by tifffile, which keeps the exact sample type (int16,
  uint32, float64, 16-bit RGB; Pillow narrows these or cannot read them),
  unless their compression needs the optional imagecodecs package (LZW, JPEG).
- Every other file (PNG, JPEG, BMP, and palette, CMYK, min-is-white, YCbCr,
  LZW- or JPEG-compressed TIFFs) is read by Pillow, whose mode conversion turns colour
  models into RGB: CMYK -> RGB, palette -> RGB (RGBA when the palette has
  transparency), YCbCr -> RGB. Gray, gray + alpha, RGB(A), 16-bit ("I;16"),
  32-bit integer ("I") and 32-bit float ("F") images are kept as they are.
- Refused before or while decoding: a header claiming more than `MAX_PIXELS`
  pixels, a file holding more than one image (multi-page TIFF, animated PNG;
  a JPEG's extra MPO pictures, a camera's previews, are ignored), and any NaN
  or infinite sample (in an image, a mask or a residual map).

Gray values (`read_gray`), by sample type; the result is on a 0-255 scale:
- 1-bit / bool: 0 or 255.
- unsigned integers: scaled from the type's full range, v * 255 / max: uint8
  as is, uint16 / 257, uint32 / 16,843,009 (skimage's `img_as_float` x 255).
- signed integers (int8, int16, int32, Pillow's "I" mode): refused when a value
  is negative; otherwise scaled by the type's positive maximum, v * 255 / max
  (int16: 32767, int32: 2**31 - 1), as skimage's `img_as_float` does. An int32
  image holding 12-bit data therefore comes out nearly black: save 8- or 16-bit.
- floats: refused outside [0, 255]; when every value lies in [0, 1] they are
  scaled by 255 (an image saved as 0-1 floats), otherwise taken as 0-255 gray.
- colour: each channel is scaled as above, then the ITU-R 709 luma
  0.2125 R + 0.7154 G + 0.0721 B (skimage's `rgb2gray`); alpha is dropped,
  not composited. Gray + alpha keeps the gray channel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kistrules.errors import DataError

# Largest image (or residual map) decoded: 8192 x 8192. At this size `predict` peaks at
# 1.2 GiB, `explain --mask` at 1.7 GiB and `explain --residual` at 3.9 GiB (measured:
# docs/performance.md, "Memory"). A file whose header claims more is refused before any
# pixel is decoded (a 20,000 x 20,000 PNG is 50 kB).
MAX_PIXELS = 8192 * 8192
LUMA_709 = np.array([0.2125, 0.7154, 0.0721])
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Pillow modes kept as they are; every other mode is converted to RGB (palette: below).
_PIL_KEPT = frozenset({"1", "L", "LA", "RGB", "RGBA", "F"})
_PIL_16_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def check_image_size(path: str | Path, what: str = "image") -> None:
    """Refuse a file whose header claims more than MAX_PIXELS pixels, before decoding it.

    Reads only the header (PNG IHDR, TIFF IFDs, else PIL's lazy open). A header
    that cannot be read is left to the decoder, which reports it as unreadable.
    A FIFO, socket or device is refused unopened (opening a FIFO would block).
    """
    from kistrules.files import require_regular_file

    path = require_regular_file(path, what)
    size = _header_size(path)
    if size is None:
        return
    width, height, pages = size
    if width * height * pages > MAX_PIXELS:
        layers = f" x {pages} pages" if pages > 1 else ""
        raise DataError(
            f"{path}: {what} is {width}x{height}{layers} pixels, above the limit of "
            f"{MAX_PIXELS:,} pixels (8192 x 8192); crop or tile it first"
        )


def _header_size(path: Path) -> tuple[int, int, int] | None:
    """(width, height, pages) from the file header, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), 1
        if head[:4] in _TIFF_MAGIC:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                return int(page.imagewidth), int(page.imagelength), max(1, len(tif.pages))
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:  # lazy: reads the header only
                width, height = image.size
        return int(width), int(height), 1
    except (
        Exception
    ) as err:  # unreadable header: the decoder will say so; PIL's bomb guard: too large
        if type(err).__name__ == "DecompressionBombError":
            raise DataError(f"{path}: image too large to decode ({_first_line(err)})") from err
        return None


def _first_line(err: Exception) -> str:
    """Decoders write paragraphs; a one-line error keeps the first line."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def decode_pixels(path: str | Path, what: str = "image") -> np.ndarray:
    """The samples of an image file: (H, W) or (H, W, C) with C in 2..4, finite.

    C is 2 (gray + alpha), 3 (RGB) or 4 (RGBA); the dtype is the stored sample
    type (bool, an integer type, float32 or float64). `what` names the file's
    role in errors ("image", "mask", "residual map").
    """
    path = Path(path)
    check_image_size(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = _decode_tiff(path, what)
            if pixels is None:
                pixels = _decode_with_pillow(path, what)
    except DataError:
        raise
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise DataError(f"{path}: cannot read {what} ({_first_line(err)})") from err
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (2, 3, 4))):
        raise DataError(f"{path}: {what} is not a 2-D gray or RGB image (shape {pixels.shape})")
    if pixels.size == 0:
        raise DataError(f"{path}: {what} has no pixels (shape {pixels.shape})")
    if np.issubdtype(pixels.dtype, np.floating):
        _require_finite(pixels, path, what)
    return pixels


def _decode_tiff(path: Path, what: str) -> np.ndarray | None:
    """A min-is-black or RGB TIFF's samples as stored; None for Pillow to decode the file.

    Pillow also gets the TIFFs whose compression tifffile cannot decode without the
    optional imagecodecs package (LZW, JPEG, ...) and those tifffile cannot parse.
    """
    with open(path, "rb") as handle:
        if handle.read(4) not in _TIFF_MAGIC:
            return None
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return None  # Pillow reports the unreadable file
    as_stored = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
    with tif:
        page = tif.pages.first
        if page.photometric not in as_stored or page.compression not in tifffile.TIFF.DECOMPRESSORS:
            return None
        if len(tif.pages) > 1:
            raise DataError(
                f"{path}: {what} holds {len(tif.pages)} images (pages); give one image per file"
            )
        pixels = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            pixels = np.moveaxis(pixels, 0, -1)
    return pixels


def _decode_with_pillow(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        frames = getattr(image, "n_frames", 1)
        if frames > 1 and image.format != "MPO":  # a camera JPEG's extra pictures: previews
            raise DataError(
                f"{path}: {what} holds {frames} images (frames); give one image per file"
            )
        image.load()
        mode = image.mode
        if mode in _PIL_16_BIT:
            return np.asarray(image).astype(np.uint16)
        if mode == "I":
            return np.asarray(image).astype(_stored_integer_type(image))
        if mode == "P":
            converted = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode == "PA":
            converted = image.convert("RGBA")
        elif mode in _PIL_KEPT:
            converted = image
        else:  # CMYK, YCbCr, ...: Pillow's own conversion
            converted = image.convert("RGB")
        return np.asarray(converted)


def _stored_integer_type(image) -> type[np.integer]:
    """The sample type behind Pillow's 32-bit "I" mode, which holds int16 to uint32 alike.

    A TIFF says it in its tags; a PNG in "I" mode is 16-bit (Pillow before "I;16").
    """
    if image.format == "PNG":
        return np.uint16
    if image.format == "TIFF":
        bits, kind = image.tag_v2.get(258, 32), image.tag_v2.get(339, 1)
        bits, kind = (v[0] if isinstance(v, tuple) else v for v in (bits, kind))
        signed = kind == 2  # SampleFormat: 1 unsigned, 2 signed integer
        types = {8: (np.uint8, np.int8), 16: (np.uint16, np.int16), 32: (np.uint32, np.int32)}
        if bits in types:
            return types[bits][signed]
    return np.int32


def _require_finite(pixels: np.ndarray, path: Path, what: str) -> None:
    finite = np.isfinite(pixels)
    if finite.all():
        return
    bad = ~finite if finite.ndim == 2 else ~finite.all(axis=-1)
    count = int(np.count_nonzero(bad))
    row, column = (int(i) for i in np.argwhere(bad)[0])
    values = "value" if count == 1 else "values"
    raise DataError(
        f"{path}: {what} holds {count:,} NaN or infinite pixel {values} "
        f"(first at row {row}, column {column})"
    )


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image file to gray values, (H, W) float32 on a 0-255 scale.

    The rule for each sample type is in the module docstring.
    """
    path = Path(path)
    return to_gray(decode_pixels(path), path)


def to_gray(pixels: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) float32 0-255 from `decode_pixels`' samples (rules: module docstring)."""
    if pixels.ndim == 3:
        pixels = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., 0]  # drop alpha
    scaled = _to_0_255(pixels, path)
    if scaled.ndim == 3:
        scaled = scaled @ LUMA_709
    return np.clip(scaled, 0.0, 255.0).astype(np.float32)


def _to_0_255(pixels: np.ndarray, path: Path) -> np.ndarray:
    """Samples as float64 on the 0-255 scale, by their type."""
    dtype = pixels.dtype
    if dtype == np.bool_:
        return pixels.astype(np.float64) * 255.0
    if np.issubdtype(dtype, np.integer):
        if np.issubdtype(dtype, np.signedinteger):
            _refuse_outside(pixels, path, 0, None, f"{dtype} image")
        return pixels.astype(np.float64) * (255.0 / np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        _refuse_outside(pixels, path, 0, 255, f"{dtype} image")
        values = pixels.astype(np.float64)
        return values * 255.0 if values.max() <= 1.0 else values
    raise DataError(f"{path}: image samples of type {dtype} are not supported")


def _refuse_outside(
    pixels: np.ndarray, path: Path, low: float, high: float | None, what: str
) -> None:
    smallest, largest = pixels.min(), pixels.max()
    if smallest >= low and (high is None or largest <= high):
        return
    allowed = f"{low} to {high}" if high is not None else f"{low} or more"
    raise DataError(
        f"{path}: {what} has values from {smallest} to {largest}; gray values must be "
        f"{allowed} (see 'Image decoding' in docs/measurement.md)"
    )


def read_float_map(path: str | Path) -> np.ndarray:
    """A residual map as (H, W) floats, values as stored (no 0-255 rescaling).

    float32 maps (what `predict` writes) stay float32: the regions are measured
    in float32 anyway, and a float64 copy would cost 8 bytes a pixel. Other
    types become float64.
    """
    path = Path(path)
    pixels = decode_pixels(path, "residual map")
    if pixels.ndim != 2:
        raise DataError(f"{path}: a residual map must be one channel, got shape {pixels.shape}")
    return pixels if pixels.dtype == np.float32 else pixels.astype(np.float64)
