"""kist_train.decoding: every colour mode and sample type, from real files, against
an independent expectation (a hand-computed value, skimage's `img_as_float`, or
Pillow's own conversion), and the one-line refusals (issue 16, items 6 and 7)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.util
import tifffile
from PIL import Image, PngImagePlugin

from kist_train import decoding
from kist_train.data import read_mask
from kist_train.decoding import LUMA_709, decode_pixels, read_float_map, read_gray
from kistrules.errors import DataError

RAMP = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (6, 1))  # 6 x 64, gray 0..252


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 709 luma, written out (not the code under test's matrix product)."""
    rgb = rgb.astype(np.float64)
    return 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]


def _one_line_refusal(path, fragment: str, read=read_gray) -> str:
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message, message
    return message


# ---------------------------------------------------------------- colour models (Pillow)


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk_is_converted_not_inverted(tmp_path, ext):
    """Issue 16.7: a CMYK file is gray as it looks, not its ink amounts read as RGB."""
    path = tmp_path / f"ramp.{ext}"
    Image.fromarray(RAMP).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    gray = read_gray(path)
    tolerance = 4 if ext == "jpg" else 0
    assert np.abs(gray - RAMP).max() <= tolerance  # R = G = B = v, so any luma is v
    pillow = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert np.abs(gray - pillow).max() <= 1.0  # Pillow's own CMYK -> L agrees on gray


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk_black_ink_alone(tmp_path, ext):
    """C = M = Y = 0 and K = k print the gray 255 - k."""
    ink = np.stack([np.zeros_like(RAMP)] * 3 + [RAMP], axis=-1)
    Image.frombytes("CMYK", RAMP.shape[::-1], ink.tobytes()).save(tmp_path / f"k.{ext}", quality=95)
    gray = read_gray(tmp_path / f"k.{ext}")
    assert np.abs(gray - (255.0 - RAMP)).max() <= (4 if ext == "jpg" else 0)


@pytest.mark.parametrize("ext", ["png", "tif", "bmp"])
def test_palette_image_is_gray_of_its_colours(tmp_path, ext):
    """A palette image's gray is the luma of each pixel's palette colour, not its index."""
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.tobytes())
    image.save(tmp_path / f"p.{ext}")
    assert Image.open(tmp_path / f"p.{ext}").mode == "P"
    np.testing.assert_allclose(
        read_gray(tmp_path / f"p.{ext}"), _luma(palette[indices]), rtol=1e-6, atol=1e-4
    )


def test_palette_with_transparency_ignores_alpha(tmp_path):
    palette = np.array([[200, 10, 30], [0, 250, 90]], dtype=np.uint8)
    indices = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.tobytes())
    image.save(tmp_path / "t.png", transparency=0)
    assert "transparency" in Image.open(tmp_path / "t.png").info
    np.testing.assert_allclose(read_gray(tmp_path / "t.png"), _luma(palette[indices]), rtol=1e-6)


def test_gray_with_alpha_keeps_the_gray(tmp_path):
    alpha = np.full_like(RAMP, 7)
    Image.fromarray(np.stack([RAMP, alpha], axis=-1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "la.png"), RAMP)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.random.default_rng(4).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    np.testing.assert_allclose(read_gray(tmp_path / "c.png"), _luma(rgba[..., :3]), rtol=1e-6)


def test_one_bit_image(tmp_path):
    bits = np.arange(20).reshape(4, 5) % 3 == 0
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    np.testing.assert_array_equal(read_gray(tmp_path / "b.png"), np.where(bits, 255.0, 0.0))


def test_min_is_white_tiff_is_not_inverted(tmp_path):
    """A min-is-white TIFF stores 0 for white; Pillow's conversion reads it as it looks."""
    tifffile.imwrite(tmp_path / "w.tif", RAMP, photometric="miniswhite")
    np.testing.assert_array_equal(read_gray(tmp_path / "w.tif"), 255.0 - RAMP)


# ---------------------------------------------------------------- integer depths


def _expected(array: np.ndarray) -> np.ndarray:
    """skimage's convention: an integer type's full range onto [0, 1]; times 255."""
    return skimage.util.img_as_float(array) * 255.0


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_gray(tmp_path, ext):
    data = RAMP.astype(np.uint16) * 257 + 100  # not only multiples of 257
    Image.fromarray(data).save(tmp_path / f"x.{ext}")
    assert Image.open(tmp_path / f"x.{ext}").mode.startswith("I;16")
    gray = read_gray(tmp_path / f"x.{ext}")
    np.testing.assert_allclose(gray, data / 257.0, rtol=1e-6)
    np.testing.assert_allclose(gray, _expected(data), rtol=1e-6)


def test_16_bit_png_read_as_pillow_i_mode(tmp_path, monkeypatch):
    """Pillow versions that open a 16-bit PNG in "I" mode give the same gray."""
    data = RAMP.astype(np.uint16) * 257
    Image.fromarray(data).save(tmp_path / "x.png")
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))
    assert Image.open(tmp_path / "x.png").mode == "I"
    np.testing.assert_allclose(read_gray(tmp_path / "x.png"), data / 257.0, rtol=1e-6)


def test_16_bit_rgb_tiff_does_not_saturate(tmp_path):
    """16-bit RGB: each channel / 257, then luma (it used to be luma, then clipped at 255)."""
    rgb = np.random.default_rng(5).integers(0, 65536, (7, 5, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(read_gray(tmp_path / "c.tif"), _luma(rgb) / 257.0, rtol=1e-5)


def test_int32_tiff_is_scaled_by_its_range_not_clipped(tmp_path):
    """Issue 16.7: an int32 ("I" mode) TIFF used to saturate at 255."""
    data = (RAMP.astype(np.int64) * (2**31 - 1) // 255).astype(np.int32)
    Image.fromarray(data).save(tmp_path / "i.tif")  # written by Pillow, mode I
    assert Image.open(tmp_path / "i.tif").mode == "I"
    gray = read_gray(tmp_path / "i.tif")
    np.testing.assert_allclose(gray, _expected(data), rtol=1e-5, atol=1e-4)
    assert np.abs(gray - RAMP).max() < 0.01


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32])
def test_every_integer_type_follows_one_rule(tmp_path, dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(6)
    data = rng.integers(0, int(info.max), (8, 9), endpoint=True).astype(dtype)
    data[0, 0], data[0, 1] = 0, info.max  # both ends of the range
    tifffile.imwrite(tmp_path / "x.tif", data)
    gray = read_gray(tmp_path / "x.tif")
    assert gray.dtype == np.float32 and gray[0, 0] == 0.0 and gray[0, 1] == pytest.approx(255.0)
    np.testing.assert_allclose(gray, _expected(data), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int32])
def test_pillow_reads_integer_tiffs_by_the_same_rule(tmp_path, monkeypatch, dtype):
    """Pillow holds int16 to uint32 in its 32-bit "I" mode; the TIFF tags restore the type,
    so a TIFF Pillow decodes (e.g. LZW without imagecodecs) gets tifffile's gray."""
    info = np.iinfo(dtype)
    data = np.random.default_rng(9).integers(0, int(info.max), (6, 7), endpoint=True)
    data = data.astype(dtype)
    data[0, 0] = info.max
    tifffile.imwrite(tmp_path / "x.tif", data)
    by_tifffile = read_gray(tmp_path / "x.tif")
    monkeypatch.setattr(decoding, "_decode_tiff", lambda path, what: None)
    np.testing.assert_allclose(read_gray(tmp_path / "x.tif"), by_tifffile, rtol=1e-6)
    np.testing.assert_allclose(by_tifffile, _expected(data), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (RAMP, "L"),
        (RAMP.astype(np.uint16) * 257, "I;16"),
        ((RAMP.astype(np.int64) * (2**31 - 1) // 255).astype(np.int32), "I"),
        ((RAMP / 255.0).astype(np.float32), "F"),
    ],
    ids=["uint8", "uint16", "int32", "float32"],
)
def test_lzw_tiff_reads_like_its_uncompressed_twin(tmp_path, array, mode):
    """LZW is common in TIFFs; tifffile needs imagecodecs for it, Pillow does not."""
    Image.fromarray(array).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    with Image.open(tmp_path / "lzw.tif") as image:
        assert (image.mode, image.info.get("compression")) == (mode, "tiff_lzw")
    np.testing.assert_allclose(read_gray(tmp_path / "lzw.tif"), RAMP, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_negative_integer_image_is_refused(tmp_path, dtype):
    data = np.full((4, 4), 10, dtype=dtype)
    data[2, 3] = -1
    tifffile.imwrite(tmp_path / "neg.tif", data)
    _one_line_refusal(tmp_path / "neg.tif", "values from -1 to 10")


# ---------------------------------------------------------------- floats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_image_in_0_1_is_scaled_and_in_0_255_kept(tmp_path, dtype):
    unit = (RAMP / 255.0).astype(dtype)
    tifffile.imwrite(tmp_path / "unit.tif", unit)
    tifffile.imwrite(tmp_path / "gray.tif", RAMP.astype(dtype))
    np.testing.assert_allclose(read_gray(tmp_path / "unit.tif"), RAMP, atol=1e-4)
    np.testing.assert_allclose(read_gray(tmp_path / "gray.tif"), RAMP, atol=1e-4)


def test_pillow_float_mode(tmp_path):
    Image.fromarray((RAMP / 255.0).astype(np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_allclose(read_gray(tmp_path / "f.tif"), RAMP, atol=1e-4)


@pytest.mark.parametrize("bad", [-0.5, 300.0])
def test_float_image_outside_0_255_is_refused(tmp_path, bad):
    data = RAMP.astype(np.float32)
    data[1, 2] = bad
    tifffile.imwrite(tmp_path / "f.tif", data)
    _one_line_refusal(tmp_path / "f.tif", "gray values must be 0 to 255")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_image_is_refused_naming_the_pixel(tmp_path, bad, dtype):
    """Issue 16.6: one NaN made max() NaN, so a 0-1 image was not scaled (darkness 0.31)."""
    data = (RAMP / 255.0).astype(dtype)
    data[3, 5] = bad
    tifffile.imwrite(tmp_path / "nan.tif", data)
    message = _one_line_refusal(tmp_path / "nan.tif", "1 NaN or infinite pixel value")
    assert "row 3, column 5" in message


def test_non_finite_colour_image_counts_pixels(tmp_path):
    rgb = np.ones((4, 5, 3), np.float32) * 0.5
    rgb[1, 2, :] = np.nan  # one pixel, three samples
    rgb[3, 0, 1] = np.inf
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    message = _one_line_refusal(tmp_path / "c.tif", "2 NaN or infinite pixel values")
    assert "row 1, column 2" in message


def test_non_finite_mask_and_residual_map_are_refused(tmp_path):
    data = np.zeros((5, 5), np.float32)
    data[4, 1] = np.nan
    tifffile.imwrite(tmp_path / "m_mask.tif", data)
    message = _one_line_refusal(tmp_path / "m_mask.tif", "mask holds 1 NaN", read=read_mask)
    assert "row 4, column 1" in message
    _one_line_refusal(tmp_path / "m_mask.tif", "residual map holds 1 NaN", read=read_float_map)


def test_residual_map_keeps_values_and_any_float_type(tmp_path):
    data = np.random.default_rng(7).normal(0.0, 3.0, (1, 9))  # one row, negative values
    tifffile.imwrite(tmp_path / "r.tif", data)
    np.testing.assert_array_equal(read_float_map(tmp_path / "r.tif"), data)


# ---------------------------------------------------------------- one image per file


def test_multi_page_tiff_is_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "pages.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack"
    )
    _one_line_refusal(tmp_path / "pages.tif", "holds 3 images")


def test_animated_png_is_refused(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 128)]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    _one_line_refusal(tmp_path / "a.png", "holds 2 images")


def test_jpeg_with_extra_mpo_pictures_reads_the_primary(tmp_path):
    """Cameras append previews to a JPEG (MPO): the first picture is the image."""
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (200, 30)]
    frames[0].save(tmp_path / "cam.jpg", format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / "cam.jpg").n_frames == 2
    assert np.abs(read_gray(tmp_path / "cam.jpg") - 200.0).max() <= 2.0


def test_planar_rgb_tiff(tmp_path):
    rgb = np.random.default_rng(8).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    planes = np.moveaxis(rgb, -1, 0)  # (3, H, W): one plane per colour
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(read_gray(tmp_path / "planar.tif"), _luma(rgb), rtol=1e-6)


def test_decode_pixels_shapes(tmp_path):
    """The contract the three readers rely on: 2-D, or colour last with 2-4 channels."""
    Image.fromarray(RAMP).convert("CMYK").save(tmp_path / "c.jpg")
    Image.fromarray(RAMP).save(tmp_path / "g.png")
    assert decode_pixels(tmp_path / "c.jpg").shape == (*RAMP.shape, 3)
    assert decode_pixels(tmp_path / "g.png").shape == RAMP.shape
    assert LUMA_709.sum() == pytest.approx(1.0)
