"""Prediction, evaluation and the label audit, on a trained tiny run and a hand-made one."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from rich.console import Console
from sklearn.metrics import roc_auc_score

from kist_train.audit import ALL, OVERALL, audit_rows, audit_rulebook
from kist_train.checkpoints import save_checkpoint
from kist_train.config import TrainConfig
from kist_train.data import load_dataset, read_gray
from kist_train.engine import train
from kist_train.evaluate import EVALUATE_FIELDS, evaluate_run, format_table
from kist_train.guided_filter import guided_filter, radius_for_size
from kist_train.models import ModelConfig, build_model
from kist_train.predict import (
    anomaly_maps,
    heat_overlay,
    load_run,
    maps_both,
    residual_maps,
    write_predictions,
)
from kistrules.commands.train import AUDIT_FIELDS
from kistrules.errors import CheckpointError, UsageError
from tests.train import synthetic as syn


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred")
    data = syn.make_dataset(root / "d", n_good=10, n_anomalous=2)
    rules = syn.write_rulebook(root / "b.rules")
    config = syn.tiny_config((data, rules), root / "run", iterations=1)
    run_dir = train(config, console=Console(quiet=True), progress=False)
    return run_dir, data, rules


def test_maps_at_original_size(trained):
    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    items = load_dataset(data).test
    images = [item.gray() for item in items]
    raw, filtered = maps_both(run, images)
    for image, r, f in zip(images, raw, filtered, strict=True):
        assert r.shape == image.shape and f.shape == image.shape
        assert r.dtype == np.float32 and (r >= 0).all()
    assert any(not np.allclose(r, f) for r, f in zip(raw, filtered, strict=True))


def test_maps_at_working_size_are_the_residual_and_its_filter(trained):
    run_dir, _, _ = trained
    run = load_run(run_dir, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (run.size, run.size)).astype(np.float32)
    x = torch.from_numpy(image)[None, None] / 255.0
    with torch.no_grad():
        expected = ((run.model(x) - x) ** 2)[0, 0]
    torch.testing.assert_close(residual_maps(run, [image])[0], expected)
    raw = anomaly_maps(run, [image], filter=False)[0]
    np.testing.assert_allclose(raw, expected.numpy(), rtol=1e-6, atol=1e-9)
    filtered = anomaly_maps(run, [image])[0]
    ref = guided_filter(x, expected[None, None], radius_for_size(run.size), eps=1e-3)[0, 0]
    np.testing.assert_allclose(filtered, ref.numpy(), rtol=1e-5, atol=1e-9)


def test_write_predictions_mirrors_the_tree(trained, tmp_path):
    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    written = write_predictions(run, [data / "test"], tmp_path / "maps")
    sources = sorted(p for p in (data / "test").rglob("*.png"))
    assert len(written) == len(sources)
    vmax = run.meta["overlay_vmax"]
    assert vmax == pytest.approx(run.mu_e + 6 * run.sigma_e)
    for src in sources:
        rel = src.relative_to(data / "test").with_suffix("")
        tiff = tmp_path / "maps" / rel.with_suffix(".tiff")
        amap = tifffile.imread(tiff)
        image = read_gray(src)
        assert amap.dtype == np.float32 and amap.shape == image.shape
        # (batch composition changes conv summation order: float32 noise only)
        np.testing.assert_allclose(amap, anomaly_maps(run, [image])[0], rtol=1e-4, atol=1e-9)
        # One fixed normalisation for the run: the PNG is the overlay at the run's vmax.
        png = iio.imread(tiff.with_suffix(".png"))
        np.testing.assert_array_equal(png, heat_overlay(image, amap, vmax))
    summary = json.loads((tmp_path / "maps" / "predict.json").read_text())
    assert summary["maps"] == len(sources) and summary["filter"] is True


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_predict_json_lists_every_file_written_with_its_hash(trained, tmp_path):
    """The manifest is what lets a later run replace these files and nothing else."""
    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    out = tmp_path / "maps"
    write_predictions(run, [data / "test"], out, batch_size=3)
    files = json.loads((out / "predict.json").read_text())["files"]
    on_disk = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "predict.json")
    assert sorted(files) == [p.relative_to(out).as_posix() for p in on_disk]
    assert all(files[p.relative_to(out).as_posix()] == _sha256(p) for p in on_disk)
    # A second run replaces its own files (the manifest still matches afterwards) ...
    write_predictions(run, [data / "test"], out, overlays=False)
    again = json.loads((out / "predict.json").read_text())["files"]
    assert sorted(again) == sorted(files)
    assert all(again[key] == _sha256(out / key) for key in again)
    # ... but not one edited since.
    edited = on_disk[0]
    edited.write_bytes(edited.read_bytes() + b"edited")
    with pytest.raises(UsageError, match="not an earlier output of kistrules predict"):
        write_predictions(run, [data / "test"], out)
    assert edited.read_bytes().endswith(b"edited")


def test_interrupted_predict_lists_what_it_wrote(trained, tmp_path, monkeypatch):
    """Ctrl-C in the second batch: the first batch's files are listed, so a rerun may go on."""
    import kist_train.data

    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    images = sorted((data / "test" / "good").iterdir())[:2]
    real_read_gray = kist_train.data.read_gray

    def interrupted_at_second(path):
        if Path(path) == images[1]:
            raise KeyboardInterrupt
        return real_read_gray(path)

    monkeypatch.setattr(kist_train.data, "read_gray", interrupted_at_second)
    with pytest.raises(KeyboardInterrupt):
        write_predictions(run, images, tmp_path / "m", batch_size=1)
    files = json.loads((tmp_path / "m" / "predict.json").read_text())["files"]
    assert sorted(files) == [f"{images[0].stem}.png", f"{images[0].stem}.tiff"]
    monkeypatch.undo()
    assert len(write_predictions(run, images, tmp_path / "m", batch_size=1)) == 2


def test_predict_json_before_manifests_is_replaced_but_lists_nothing(trained, tmp_path):
    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    one = next((data / "test" / "good").iterdir())
    out = tmp_path / "m"
    out.mkdir()
    (out / "predict.json").write_text('{"run": "r", "filter": true, "maps": 1}\n')
    assert write_predictions(run, [one], out) == [out / f"{one.stem}.tiff"]
    (out / "old").mkdir()
    (out / "old" / "predict.json").write_text('{"run": "r", "filter": true, "maps": 1}\n')
    (out / "old" / f"{one.stem}.tiff").write_bytes(b"an unlisted map")
    with pytest.raises(UsageError, match="not an earlier output"):
        write_predictions(run, [one], out / "old")


def test_heat_overlay_is_not_normalised_per_image():
    image = np.full((2, 2), 100.0)
    small = heat_overlay(image, np.array([[0.1, 0.0], [0.0, 0.0]]), vmax=1.0)
    large = heat_overlay(image, np.array([[0.1, 5.0], [0.0, 0.0]]), vmax=1.0)
    np.testing.assert_array_equal(small[0, 0], large[0, 0])
    # t = 1 -> white heat at opacity 0.75 over gray 100: 0.25 * 100 + 0.75 * 255 = 216.25
    np.testing.assert_array_equal(large[0, 1], [216, 216, 216])


def test_write_predictions_single_files_and_errors(trained, tmp_path):
    run_dir, data, _ = trained
    run = load_run(run_dir, device="cpu")
    one = next((data / "test" / "good").iterdir())
    written = write_predictions(run, [one], tmp_path / "m", overlays=False)
    assert written == [tmp_path / "m" / f"{one.stem}.tiff"]
    assert not (tmp_path / "m" / f"{one.stem}.png").exists()
    with pytest.raises(UsageError, match="input not found"):
        write_predictions(run, [tmp_path / "missing.png"], tmp_path / "m")
    with pytest.raises(UsageError, match="same name"):
        write_predictions(run, [one, one], tmp_path / "m")


def test_evaluate_matches_sklearn(trained):
    run_dir, data, _ = trained
    result = evaluate_run(run_dir, data, device="cpu")
    items = load_dataset(data).test
    run = load_run(run_dir, device="cpu")
    raw, filtered = maps_both(run, [item.gray() for item in items])
    truth = np.concatenate([item.mask().ravel() for item in items])
    for key, maps in (("raw", raw), ("filtered", filtered)):
        scores = np.concatenate([m.ravel() for m in maps])
        assert result[key]["pixel_auroc"] == pytest.approx(100 * roc_auc_score(truth, scores))
        image_scores = [m.max() for m in maps]
        labels = [item.is_anomalous for item in items]
        assert result[key]["image_auroc"] == pytest.approx(
            100 * roc_auc_score(labels, image_scores)
        )
        assert 0 <= result[key]["aupro"] <= 100
    assert result["images"] == len(items) and result["anomalous_images"] == 4
    assert set(EVALUATE_FIELDS) <= result.keys()  # how `evaluate --json` knows its own file
    table = format_table(result)
    assert "guided filter" in table and f"{result['raw']['aupro']:.1f}" in table


def test_load_run_errors(tmp_path):
    with pytest.raises(CheckpointError):
        load_run(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a kistrules run directory"):
        load_run(tmp_path / "empty", device="cpu")


# ---------------------------------------------------------------- audit


def test_audit_rows_by_hand():
    t = np.array([[1, 1, 0, 0]], dtype=bool)
    p_all = np.array([[1, 0, 1, 0]], dtype=bool)
    p_r0 = np.array([[1, 0, 0, 0]], dtype=bool)
    p_r1 = np.array([[0, 0, 1, 0]], dtype=bool)
    empty = np.zeros((1, 4), dtype=bool)
    rows = audit_rows(
        groups=["crack", "hole"],
        truth=[t, t],
        overall=[p_all, empty],
        per_rule=[[p_r0, empty], [p_r1, empty]],
        regions_overall=[2, 0],
        regions_per_rule=np.array([[1, 1], [0, 0]]),
        rule_names=["r0", "r1"],
    )
    by = {(r.group, r.rule): r for r in rows}
    crack = by[("crack", OVERALL)]
    assert (crack.tp, crack.fp, crack.fn, crack.regions_fired) == (1, 1, 1, 2)
    assert crack.precision == 0.5 and crack.recall == 0.5
    assert by[("crack", "r0")].precision == 1.0 and by[("crack", "r1")].precision == 0.0
    hole = by[("hole", OVERALL)]
    assert hole.precision is None and hole.recall == 0.0 and hole.images_labelled == 0
    total = by[(ALL, OVERALL)]
    assert (total.tp, total.fp, total.fn, total.images, total.images_labelled) == (1, 1, 3, 2, 1)


def _constant_run(
    run_dir: Path,
    size: int,
    *,
    phase: str = "update_1",
    sigma_e: float = 0.05,
    label_erosion: int = 0,
    label_min_sigmas: float = 0.0,
    rulebook_text: str | None = None,
) -> None:
    """A run whose model outputs 0.5 everywhere: e(x) = (0.5 - x)^2 exactly
    (`rulebook_text`: the rulebook it records as trained with)."""
    torch.manual_seed(0)
    config = ModelConfig(kind="cae", width=4, depth=2)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    train_config = TrainConfig(
        data="d",
        out=str(run_dir),
        size=size,
        width=4,
        depth=2,
        label_erosion=label_erosion,
        label_min_sigmas=label_min_sigmas,
    )
    meta = {
        "config": train_config.to_dict(),
        "model": config.to_dict(),
        "size": size,
        "mu_e": 0.0,
        "sigma_e": sigma_e,
    }
    if rulebook_text is not None:
        meta["rulebook_text"] = rulebook_text
    save_checkpoint(run_dir, phase, model.eval(), meta)


def _blob_case(tmp_path: Path, size: int = 16) -> tuple[Path, np.ndarray]:
    """A data set of one gray-128 test image with a dark 4x5 blob (gray 10) at rows 4-7,
    columns 5-9, and a mask of the blob plus the 2x5 strip below it; returns (data, image)."""
    data = tmp_path / "d"
    image = np.full((size, size), 128, dtype=np.uint8)
    image[4:8, 5:10] = 10
    truth = np.zeros((size, size), dtype=np.uint8)
    truth[4:10, 5:10] = 255
    for folder, name, array in (
        ("train/good", "g.png", np.full((size, size), 128, dtype=np.uint8)),
        ("test/hole", "h.png", image),
        ("ground_truth/hole", "h_mask.png", truth),
    ):
        (data / folder).mkdir(parents=True, exist_ok=True)
        iio.imwrite(data / folder / name, array)
    return data, image


def test_audit_rulebook_hand_case(tmp_path):
    """Gray 128 background (e = 0.0000...), a dark 4x5 blob (gray 10, e = 0.21); truth = blob
    plus a 2x5 strip next to it. Thresholds 1.2..3 sigma = 0.06..0.15 cut exactly the blob,
    at each of the 7 thresholds; the dark rule fires, the bright one does not."""
    size = 16
    data, image = _blob_case(tmp_path, size)
    rules = tmp_path / "r.rules"
    rules.write_text(
        "threshold 0.8\n"
        "rule dark: IF gray is low THEN anomalous (1.0)\n"
        "rule bright: IF gray is high THEN anomalous (1.0)\n"
    )
    _constant_run(tmp_path / "run", size)
    report = audit_rulebook(tmp_path / "run", rules, data, device="cpu")
    assert report.thresholds == pytest.approx([0.05 * 0.3 * n for n in range(4, 11)])
    overall = report.row("hole")
    assert (overall.tp, overall.fp, overall.fn) == (20, 0, 10)
    assert overall.precision == 1.0 and overall.recall == pytest.approx(20 / 30)
    assert overall.regions_fired == 7 and overall.images_labelled == 1
    assert report.row("hole", "dark").regions_fired == 7
    assert report.row("hole", "bright").regions_fired == 0
    assert report.row(ALL).tp == 20
    text = report.format_text()
    assert "66.7" in text and "100.0" in text
    (image,) = report.images
    assert (image.image, image.defect, image.regions_fired) == ("test/hole/h.png", "hole", 7)
    assert (image.tp, image.fp, image.fn, image.precision) == (20, 0, 10, 1.0)
    assert report.format_images().splitlines()[-1].split() == [
        "test/hole/h.png",
        "7",
        "20",
        "0",
        "100.0",
    ]
    # An earlier phase with sigma_e = 1: thresholds 1.2..3 exceed the blob's e = 0.21.
    _constant_run(tmp_path / "run", size, phase="initial", sigma_e=1.0)
    early = audit_rulebook(tmp_path / "run", rules, data, device="cpu", phase="initial")
    assert early.thresholds == pytest.approx([0.3 * n for n in range(4, 11)])
    assert early.row("hole").regions_fired == 0 and early.row("hole").tp == 0
    later = audit_rulebook(tmp_path / "run", rules, data, device="cpu", phase="update_1")
    assert later.row("hole").tp == 20
    assert json.loads(json.dumps(report.to_dict()))["rows"][0]["precision"] == 1.0
    assert json.loads(json.dumps(report.to_dict()))["images"][0]["tp"] == 20
    assert set(AUDIT_FIELDS) <= report.to_dict().keys()  # how `audit --json` knows its own file


def test_audit_label_erosion_counts_the_interior(tmp_path):
    """The hand case's 4x5 blob label, cut to its interior as training with
    --label-erosion pushes it: 1 px in leaves 2x3 pixels (scipy's erosion agrees),
    2 px in leaves none; regions fired are counted as before; the run's own setting
    is the default."""
    from scipy import ndimage

    size = 16
    data, image = _blob_case(tmp_path, size)
    rules = tmp_path / "r.rules"
    rules.write_text("threshold 0.8\nrule dark: IF gray is low THEN anomalous (1.0)\n")
    _constant_run(tmp_path / "run", size, label_erosion=1)
    expected = int(ndimage.binary_erosion(image == 10, np.ones((3, 3)), border_value=1).sum())
    assert expected == 6
    trained_setting = audit_rulebook(tmp_path / "run", rules, data, device="cpu")
    overall = trained_setting.row("hole")
    assert (overall.tp, overall.fp, overall.fn) == (expected, 0, 30 - expected)
    assert overall.regions_fired == 7 and trained_setting.row("hole", "dark").tp == expected
    assert trained_setting.label_erosion == 1
    assert "interior, 1 px in" in trained_setting.format_text()
    whole = audit_rulebook(tmp_path / "run", rules, data, device="cpu", label_erosion=0)
    assert (whole.row("hole").tp, whole.row("hole").fp) == (20, 0)
    assert "interior" not in whole.format_text()
    none_left = audit_rulebook(tmp_path / "run", rules, data, device="cpu", label_erosion=2)
    assert none_left.row("hole").tp == 0 and none_left.row("hole").images_labelled == 0
    assert none_left.row("hole").regions_fired == 7
    with pytest.raises(UsageError, match="--label-erosion"):
        audit_rulebook(tmp_path / "run", rules, data, device="cpu", label_erosion=-1)


def test_audit_on_the_working_grid(tmp_path):
    """A 32 px image on a 16 px grid: the dark 8x10 blob is 4x5 cells; the truth (11 rows,
    plus one lone pixel) covers 6x5 cells by area > 1/4 (the lone pixel's cell is only
    1/4 covered). Original resolution: 80 of 111 truth pixels; grid: 20 of 30 cells."""
    data = tmp_path / "d"
    image = np.full((32, 32), 128, dtype=np.uint8)
    image[8:16, 10:20] = 10
    truth = np.zeros((32, 32), dtype=np.uint8)
    truth[8:19, 10:20] = 255
    truth[20, 10] = 255
    for folder, name, array in (
        ("train/good", "g.png", np.full((32, 32), 128, dtype=np.uint8)),
        ("test/hole", "h.png", image),
        ("ground_truth/hole", "h_mask.png", truth),
    ):
        (data / folder).mkdir(parents=True, exist_ok=True)
        iio.imwrite(data / folder / name, array)
    rules = tmp_path / "r.rules"
    rules.write_text("threshold 0.8\nrule dark: IF gray is low THEN anomalous (1.0)\n")
    _constant_run(tmp_path / "run", 16)
    original = audit_rulebook(tmp_path / "run", rules, data, device="cpu").row("hole")
    assert (original.tp, original.fp, original.fn) == (80, 0, 31)
    report = audit_rulebook(tmp_path / "run", rules, data, device="cpu", grid=True)
    on_grid = report.row("hole")
    assert (on_grid.tp, on_grid.fp, on_grid.fn) == (20, 0, 10)
    assert report.row("hole", "dark").tp == 20
    assert report.resolution == "16 px working grid"
    assert "at the 16 px working grid" in report.format_text()


def test_the_report_audits_what_the_run_pushed(tmp_path):
    """A run trained with --label-erosion 1: `kistrules report` audits the interior
    of its labels (the 6 px the hand case's blob keeps), as `audit` does by default,
    and its page says so."""
    from kist_train.report import build_report
    from kist_train.report_page import render_html

    size = 16
    data, _ = _blob_case(tmp_path, size)
    (data / "test" / "good").mkdir()  # image AUROC needs a normal test image
    iio.imwrite(data / "test" / "good" / "n.png", np.full((size, size), 128, dtype=np.uint8))
    text = "threshold 0.8\nrule dark: IF gray is low THEN anomalous (1.0)\n"
    _constant_run(tmp_path / "run", size, label_erosion=1, rulebook_text=text)
    report = build_report(tmp_path / "run", data, device="cpu", phases="last", progress=False)
    assert report.audit.label_erosion == 1
    overall = report.audit.row("hole")
    assert (overall.tp, overall.fp, overall.fn) == (6, 0, 24)
    assert "labels cut to their interior, 1 px in (--label-erosion), as the run trained" in (
        render_html(report)
    )
    # With --label-min-sigmas the report keeps only pixels past the run's floor: the blob's
    # e = (0.5 - 10/255)^2 = 0.212 stays above mu_e + 4 sigma_e = 0.2, not above 5 sigma_e.
    for k, kept in ((4.0, 6), (5.0, 0)):
        run = tmp_path / f"run{k:g}"
        _constant_run(run, size, label_erosion=1, label_min_sigmas=k, rulebook_text=text)
        report = build_report(run, data, device="cpu", phases="last", progress=False)
        assert report.audit.label_min_sigmas == k
        assert report.audit.row("hole").tp + report.audit.row("hole").fp == kept
        assert f"e &gt;= mu_e + {k:g} sigma_e (--label-min-sigmas)" in render_html(report)
