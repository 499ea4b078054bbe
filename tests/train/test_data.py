"""Data layout, decoding and the one-line errors of kist_train.data."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kist_train.config import TrainConfig
from kist_train.data import load_dataset, read_gray, working_tensor
from kistrules.errors import DataError, UsageError
from tests.train.synthetic import make_dataset


def test_layout_is_indexed(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=6, n_anomalous=2, n_test_good=2, n_test_defect=3)
    ds = load_dataset(root)
    assert len(ds.train_good) == 6
    assert len(ds.train_anomalous) == 2
    assert [t.defect for t in ds.test].count("blob") == 3
    assert [t.defect for t in ds.test].count("good") == 2
    assert ds.has_anomalous and not ds.anomalous_have_masks
    defect = next(t for t in ds.test if t.is_anomalous)
    mask = defect.mask()
    assert mask.dtype == bool and mask.shape == defect.shape and mask.any()
    good = next(t for t in ds.test if not t.is_anomalous)
    assert not good.mask().any() and good.mask().shape == good.shape


def test_plain_mvtec_category_loads_without_anomalous(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=4, n_anomalous=0)
    ds = load_dataset(root)
    assert not ds.has_anomalous and ds.train_anomalous == []


def test_anomalous_masks_are_found(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=3, n_anomalous=2, anomalous_masks=True)
    ds = load_dataset(root)
    assert ds.anomalous_have_masks
    assert all(item.mask().any() for item in ds.train_anomalous)


def test_read_gray_rgb_uses_luma_weights(tmp_path):
    rgb = np.zeros((5, 7, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    iio.imwrite(tmp_path / "c.png", rgb)
    gray = read_gray(tmp_path / "c.png")
    assert gray.shape == (5, 7) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, 0.2125 * 200 + 0.7154 * 100 + 0.0721 * 50, rtol=1e-6)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "jpg"])
def test_read_gray_formats(tmp_path, ext):
    data = (np.arange(12 * 9).reshape(12, 9) % 200).astype(np.uint8)
    iio.imwrite(tmp_path / f"x.{ext}", data)
    gray = read_gray(tmp_path / f"x.{ext}")
    assert gray.shape == (12, 9)
    tol = 40 if ext == "jpg" else 0
    assert np.abs(gray - data).max() <= tol


def test_read_gray_16_bit(tmp_path):
    data = np.full((4, 4), 65535, dtype=np.uint16)
    iio.imwrite(tmp_path / "x.tif", data)
    assert read_gray(tmp_path / "x.tif").max() == pytest.approx(255.0)


def test_gray_is_decoded_once(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0)
    item = load_dataset(root).train_good[0]
    first = item.gray()
    (item.path).write_bytes(b"broken now")
    assert item.gray() is first


def test_working_tensor_matches_interpolate(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 255, (30, 20)).astype(np.float32), np.full((16, 16), 51.0)]
    x = working_tensor(images, 16)
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    ref = F.interpolate(
        torch.from_numpy(images[0])[None, None] / 255,
        size=(16, 16),
        mode="bilinear",
        antialias=True,
    )
    torch.testing.assert_close(x[0:1], ref.clamp(0, 1))
    torch.testing.assert_close(x[1], torch.full((1, 16, 16), 0.2))


# ---------------------------------------------------------------- errors


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        load_dataset(tmp_path / "nope")


def test_missing_train_good(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/good: folder not found"):
        load_dataset(tmp_path / "d")


def test_empty_folder(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0)
    (root / "train" / "anomalous").mkdir()
    with pytest.raises(DataError, match=r"anomalous: folder has no images"):
        load_dataset(root)


def test_unreadable_image(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0)
    (root / "train" / "good" / "bad.png").write_bytes(b"not a png")
    item = next(i for i in load_dataset(root).train_good if i.path.name == "bad.png")
    with pytest.raises(DataError, match=r"bad.png: cannot read image") as info:
        item.gray()
    assert "\n" not in str(info.value)


def test_mask_size_mismatch(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0, n_test_defect=1)
    mask_path = next((root / "ground_truth" / "blob").iterdir())
    iio.imwrite(mask_path, np.zeros((3, 3), dtype=np.uint8))
    item = next(t for t in load_dataset(root).test if t.is_anomalous)
    with pytest.raises(DataError, match=r"mask is 3x3 but its image"):
        item.mask()


def test_test_image_without_mask(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0, n_test_defect=1)
    next((root / "ground_truth" / "blob").iterdir()).unlink()
    with pytest.raises(DataError, match=r"test image has no mask"):
        load_dataset(root)


def test_require_test(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=2, n_anomalous=0, n_test_good=0, n_test_defect=0)
    with pytest.raises(DataError, match="test"):
        load_dataset(root).require_test()


# ---------------------------------------------------------------- config


def test_config_round_trip_and_validation():
    config = TrainConfig(data="d", out="o", rulebook="r.rules", epochs=3, push="paper")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.validate() is config
    with pytest.raises(UsageError, match="unknown training option"):
        TrainConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(UsageError, match="--model 'vae'"):
        TrainConfig(data="d", out="o", model="vae").validate()
    with pytest.raises(UsageError, match="--push"):
        TrainConfig(data="d", out="o", push="hard").validate()
    with pytest.raises(UsageError, match="anomalous-per-batch"):
        TrainConfig(data="d", out="o", batch_size=8, anomalous_per_batch=8).validate()
    assert TrainConfig(baseline=True).effective_lam == 0.0
    runtime = {**config.to_dict(), "device": "cpu", "threads": 1, "workers": 2, "out": "x"}
    assert config.differences(TrainConfig.from_dict(runtime)) == []
    assert config.differences(TrainConfig.from_dict({**config.to_dict(), "lr": 0.5})) == ["lr"]


def test_working_tensor_can_release_decoded_pixels(tmp_path):
    root = make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    items = load_dataset(root).train_good
    kept = working_tensor(items, 16)
    assert all(item._gray is not None for item in items)
    released = working_tensor(items, 16, release=True)
    assert all(item._gray is None for item in items)
    torch.testing.assert_close(kept, released)


MTD = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mtd"


@pytest.mark.mtd
@pytest.mark.skipif(not MTD.is_dir(), reason=f"MTD development split not found at {MTD}")
def test_mtd_layout_loads():
    ds = load_dataset(MTD)
    assert (len(ds.train_good), len(ds.train_anomalous), len(ds.test)) == (560, 28, 181)
    assert not ds.anomalous_have_masks
    defects = {t.defect for t in ds.test}
    assert defects == {"good", "blowhole", "break", "crack", "fray"}
