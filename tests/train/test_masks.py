"""Masks are binarised at a fraction of their own maximum, the same way by every command.

`read_mask` is checked against a plain-Python reference on any array; an
anti-aliased drawing loses its rim of faint pixels (the specks `explain --mask`
used to report); `--mask-threshold` outside (0, 1] is one line, before any work.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from typer.testing import CliRunner

from kist_train.config import TrainConfig
from kist_train.data import binarise_mask, load_dataset, read_mask
from kistrules.cli import app
from kistrules.errors import UsageError
from tests.train import synthetic as syn


def _reference(values: np.ndarray, threshold: float) -> np.ndarray:
    """Pixel by pixel: the largest colour channel (times alpha / the largest alpha,
    when the last of 2 or 4 channels is alpha) against threshold x the largest value."""
    pixels = values if values.ndim == 3 else values[..., None]
    height, width, channels = pixels.shape
    colours = channels - 1 if channels in (2, 4) else channels
    top = max(float(a) for a in pixels[..., -1].ravel()) if colours < channels else 1.0

    def value(i: int, j: int) -> float:
        colour = max(float(pixels[i, j, c]) for c in range(colours))
        if colours == channels:
            return colour
        return colour * (float(pixels[i, j, -1]) / top) if top > 0 else 0.0

    best = [[value(i, j) for j in range(width)] for i in range(height)]
    peak = max(max(row) for row in best)
    if peak <= 0:
        return np.zeros((height, width), bool)
    return np.array([[v >= threshold * peak for v in row] for row in best], bool)


DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.bool_])
THRESHOLDS = st.floats(min_value=1e-6, max_value=1.0) | st.sampled_from([0.5, 1.0])


@st.composite
def masks(draw):
    dtype = draw(DTYPES)
    shape = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    if draw(st.booleans()):
        shape += (draw(st.sampled_from([2, 3, 4])),)
    if dtype in (np.float32, np.float64):
        elements = st.floats(0.0, 255.0, width=32 if dtype == np.float32 else 64)
    else:
        elements = None
    return draw(arrays(dtype, shape, elements=elements))


@settings(max_examples=200, deadline=None)
@given(masks(), THRESHOLDS)
def test_binarise_equals_the_plain_reference(values, threshold):
    out = binarise_mask(values, threshold)
    assert out.dtype == bool and out.shape == values.shape[:2]
    np.testing.assert_array_equal(out, _reference(values, threshold))


@pytest.mark.parametrize("threshold", [1e-9, 0.5, 1.0])
def test_an_all_zero_mask_stays_empty(tmp_path: Path, threshold: float):
    path = tmp_path / "zero_mask.png"
    iio.imwrite(path, np.zeros((9, 7), np.uint8))
    assert not read_mask(path, threshold).any()


def _drawn_disc(scale: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """A disc drawn with a soft brush: full inside, a rim of faint values around it,
    and faint isolated specks (what an anti-aliased export leaves); returns
    (the mask's values, the disc)."""
    yy, xx = np.mgrid[0:40, 0:40]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 8**2
    soft = ndimage.gaussian_filter(disc.astype(float), 1.0)
    values = np.round(soft * scale)
    for row, col in ((3, 3), (3, 36), (36, 5), (37, 37)):
        values[row, col] = round(0.08 * scale)  # stray specks at 8 % of full scale
    return values, disc


@pytest.mark.parametrize(("dtype", "scale"), [(np.uint8, 255), (np.uint16, 65535)])
def test_an_anti_aliased_rim_and_faint_specks_are_not_defect(tmp_path, dtype, scale):
    values, disc = _drawn_disc(scale)
    path = tmp_path / "disc_mask.png"
    iio.imwrite(path, values.astype(dtype))
    everything = values > 0
    assert ndimage.label(everything, np.ones((3, 3)))[1] == 5  # the disc and 4 specks
    half = read_mask(path)
    assert ndimage.label(half, np.ones((3, 3)))[1] == 1
    # Half the maximum of a blurred disc is its edge: the area stays the drawn disc's.
    assert abs(int(half.sum()) - int(disc.sum())) <= 0.1 * disc.sum() < everything.sum() - 40
    # A threshold below the specks' value keeps them: the option reaches the reader.
    assert ndimage.label(read_mask(path, 0.05), np.ones((3, 3)))[1] == 5


def test_a_colour_mask_takes_its_largest_channel(tmp_path: Path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1, 1] = (255, 0, 0)
    rgb[2, 2] = (0, 0, 200)  # 200 >= 127.5
    rgb[3, 3] = (100, 100, 100)  # below half of 255 in every channel
    iio.imwrite(tmp_path / "c_mask.png", rgb)
    mask = read_mask(tmp_path / "c_mask.png")
    assert sorted(zip(*np.nonzero(mask), strict=True)) == [(1, 1), (2, 2)]


def test_an_alpha_channel_is_transparency_not_a_defect(tmp_path: Path):
    """An opaque black background is no defect (taking the largest of all channels
    counted alpha, so it was all defect), nor is a transparent white one."""
    square = np.zeros((8, 8), bool)
    square[2:5, 3:6] = True
    opaque = np.zeros((8, 8, 4), np.uint8)
    opaque[..., 3] = 255
    opaque[square, :3] = 255
    clear = np.full((8, 8, 4), 255, np.uint8)
    clear[..., 3] = np.where(square, 255, 0)
    gray_alpha = np.stack([np.where(square, 255, 0), np.full((8, 8), 255)], -1).astype(np.uint8)
    for name, values in (("opaque", opaque), ("clear", clear), ("la", gray_alpha)):
        iio.imwrite(tmp_path / f"{name}_mask.png", values)
        np.testing.assert_array_equal(read_mask(tmp_path / f"{name}_mask.png"), square)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.0001, 2.0, math.nan])
def test_a_threshold_outside_zero_one_is_refused(tmp_path: Path, bad: float):
    path = tmp_path / "m_mask.png"
    iio.imwrite(path, np.full((3, 3), 255, np.uint8))
    with pytest.raises(UsageError, match=r"--mask-threshold must be in \(0, 1\]"):
        read_mask(path, bad)
    root = syn.make_dataset(tmp_path / "d", n_good=2, n_anomalous=0, n_test_defect=1)
    with pytest.raises(UsageError, match="--mask-threshold"):
        load_dataset(root, mask_threshold=bad)
    with pytest.raises(UsageError, match="--mask-threshold"):
        TrainConfig(data="d", out="o", baseline=True, mask_threshold=bad).validate()


def test_the_data_set_reads_every_mask_with_its_threshold(tmp_path: Path):
    root = syn.make_dataset(tmp_path / "d", n_good=2, n_anomalous=2, anomalous_masks=True)
    values, _ = _drawn_disc()
    for path in root.glob("ground_truth/*/*_mask.png"):
        shape = iio.imread(path).shape
        iio.imwrite(path, values[: shape[0], : shape[1]].astype(np.uint8))
    for threshold in (0.05, 0.5, 1.0):
        dataset = load_dataset(root, mask_threshold=threshold)
        items = [*dataset.train_anomalous, *(t for t in dataset.test if t.is_anomalous)]
        assert len(items) >= 4
        for item in items:
            np.testing.assert_array_equal(item.mask(), read_mask(item.mask_path, threshold))


# --- the commands: one option, one line --------------------------------------------------


def _refused(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*args, "--mask-threshold", "1.5"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--mask-threshold must be in (0, 1]" in lines[0], lines
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("out*"))  # refused before any work


def test_every_command_that_reads_masks_refuses_a_bad_threshold(tmp_path: Path):
    missing = str(tmp_path / "no-such-run")  # a later check would name it: the option is first
    data = str(tmp_path / "data")
    out = str(tmp_path / "out")
    _refused(["explain", str(tmp_path / "i.png"), "-r", "x.rules", "--mask", "m.png"], tmp_path)
    _refused(["evaluate", "--model", missing, "--data", data], tmp_path)
    _refused(["audit", "--model", missing, "--rulebook", "x.rules", "--data", data], tmp_path)
    _refused(["report", missing, "--out", out + ".html", "--data", data], tmp_path)
    root = syn.make_dataset(tmp_path / "d", n_good=2, n_anomalous=0)
    _refused(["train", "--data", str(root), "--baseline", "--out", out], tmp_path)


def test_the_option_is_the_same_on_every_command():
    import typer.main

    commands = typer.main.get_command(app).commands
    options = {
        name: next(p for p in commands[name].params if p.name == "mask_threshold")
        for name in ("explain", "evaluate", "audit", "report", "train")
    }
    assert {o.opts[0] for o in options.values()} == {"--mask-threshold"}
    assert len({o.help for o in options.values()}) == 1
    assert {o.default for o in options.values()} == {0.5}
