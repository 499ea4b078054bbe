"""`kistrules train / predict / evaluate / audit`: exit codes, outputs, one-line errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from kist_train.rundir import MARKER
from kistrules.cli import app
from tests.train import synthetic as syn

runner = CliRunner()

TINY = [
    "--size", "24", "--width", "4", "--depth", "2", "--epochs", "2", "--iterations", "1",
    "--update-epochs", "1", "--batch-size", "6", "--anomalous-per-batch", "2",
    "--device", "cpu", "--no-progress",
]  # fmt: skip


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "error" in lines[0] and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = syn.make_dataset(root / "d", n_good=8, n_anomalous=2)
    rules = syn.write_rulebook(root / "b.rules")
    result = _invoke("train", "--data", data, "--rulebook", rules, "--out", root / "run", *TINY)
    assert result.exit_code == 0, result.output
    return root / "run", data, rules


def test_train_writes_a_run(run):
    run_dir, _, _ = run
    assert (run_dir / "log.jsonl").is_file()
    marker = json.loads((run_dir / "kistrules-run.json").read_text())
    assert marker["format"] == "kistrules-run" and marker["config"]["epochs"] == 2
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in log] == ["initial", "labels_1", "update_1"]


def test_train_refuses_to_overwrite_and_resume_finishes(run):
    run_dir, data, rules = run
    result = _invoke("train", "--data", data, "--rulebook", rules, "--out", run_dir, *TINY)
    _one_line_error(result, 1, "already holds a run")
    result = _invoke(
        "train", "--data", data, "--rulebook", rules, "--out", run_dir, *TINY, "--resume"
    )
    assert result.exit_code == 0, result.output


def test_evaluate_prints_table_and_writes_json(run, tmp_path):
    run_dir, data, _ = run
    result = _invoke("evaluate", "--model", run_dir, "--data", data, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert "pixel AUROC" in result.stdout and "guided filter" in result.stdout
    written = json.loads((tmp_path / "e.json").read_text())
    assert set(written["raw"]) == {"pixel_auroc", "aupro", "image_auroc"}
    assert f"{written['filtered']['pixel_auroc']:.1f}" in result.stdout


def test_evaluate_a_phase_writes_beside_the_final_evaluation(run):
    run_dir, data, _ = run
    result = _invoke("evaluate", "--model", run_dir, "--data", data, "--phase", "initial")
    assert result.exit_code == 0, result.output
    written = json.loads((run_dir / "evaluation_initial.json").read_text())
    assert written["phase"] == "initial"
    result = _invoke("evaluate", "--model", run_dir, "--data", data, "--phase", "nope")
    _one_line_error(result, 1, "does not exist")


def test_predict_and_audit(run, tmp_path):
    run_dir, data, rules = run
    result = _invoke("predict", "--model", run_dir, "--input", data / "test", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "blob" / "d000.tiff").is_file() and (
        tmp_path / "good" / "t000.png"
    ).is_file()
    raw_dir = tmp_path / "r"
    result = _invoke("predict", "--model", run_dir, "--input", data / "test", "--out", raw_dir,
                     "--no-filter", "--no-overlays")  # fmt: skip
    assert result.exit_code == 0 and not list(raw_dir.rglob("*.png"))
    result = _invoke(
        "audit", "--model", run_dir, "--rulebook", rules, "--data", data, "--json", tmp_path / "a"
    )
    assert result.exit_code == 0, result.output
    assert "dark_blob" in result.stdout and "(rulebook)" in result.stdout
    assert json.loads((tmp_path / "a").read_text())["rule_names"] == ["dark_blob", "dark_gray"]
    result = _invoke(
        "audit", "--model", run_dir, "--rulebook", rules, "--data", data, "--grid", "--json",
        tmp_path / "g", "--per-image",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "px working grid" in result.stdout
    grid = json.loads((tmp_path / "g").read_text())
    assert grid["resolution"].endswith("working grid")
    # The per-image rows add up to the overall row; --per-image lists the labelled ones.
    overall = next(r for r in grid["rows"] if r["group"] == "all" and r["rule"] == "(rulebook)")
    for key in ("tp", "fp", "fn", "regions_fired"):
        assert sum(i[key] for i in grid["images"]) == overall[key], key
    labelled = [i["image"] for i in grid["images"] if i["tp"] + i["fp"]]
    assert f"{len(labelled)} of {len(grid['images'])} images labelled" in result.stdout
    assert all(name in result.stdout for name in labelled)
    result = _invoke(
        "audit", "--model", run_dir, "--rulebook", rules, "--data", data, "--grid", "--json",
        tmp_path / "e", "--label-erosion", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    eroded = json.loads((tmp_path / "e").read_text())
    assert eroded["label_erosion"] == 1 and grid["label_erosion"] == 0
    cut = next(r for r in eroded["rows"] if r["group"] == "all" and r["rule"] == "(rulebook)")
    assert cut["tp"] + cut["fp"] <= overall["tp"] + overall["fp"]
    assert cut["regions_fired"] == overall["regions_fired"]
    result = _invoke(
        "audit", "--model", run_dir, "--rulebook", rules, "--data", data, "--label-erosion", "-1"
    )
    _one_line_error(result, 2, "--label-erosion")
    # --label-min-sigmas: of the labels, only pixels whose own residual reaches the floor;
    # the higher the floor, the fewer (never more) labelled pixels, regions fired unchanged.
    pushed = []
    for k in ("0", "1", "3"):
        result = _invoke(
            "audit", "--model", run_dir, "--rulebook", rules, "--data", data, "--grid", "--json",
            tmp_path / f"k{k}", "--label-min-sigmas", k,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        floored = json.loads((tmp_path / f"k{k}").read_text())
        assert floored["label_min_sigmas"] == float(k)
        assert ("--label-min-sigmas" in result.stdout) == (k != "0")
        row = next(r for r in floored["rows"] if r["group"] == "all" and r["rule"] == "(rulebook)")
        assert row["regions_fired"] == overall["regions_fired"]
        pushed.append(row["tp"] + row["fp"])
    assert pushed[0] == overall["tp"] + overall["fp"]
    assert pushed[0] >= pushed[1] >= pushed[2]
    result = _invoke(
        "audit", "--model", run_dir, "--rulebook", rules, "--data", data,
        "--label-min-sigmas", "-0.5",
    )  # fmt: skip
    _one_line_error(result, 2, "--label-min-sigmas")


def _with_faint_rims(data, out):
    """A copy of the data set whose masks gain a 2 px rim at 30 of 255 (anti-aliasing)."""
    import shutil

    from scipy import ndimage

    shutil.copytree(data, out)
    added = 0
    for path in sorted(out.glob("ground_truth/*/*_mask.png")):
        mask = iio.imread(path) > 0
        rim = ndimage.binary_dilation(mask, iterations=2) & ~mask
        iio.imwrite(path, np.where(mask, 255, np.where(rim, 30, 0)).astype(np.uint8))
        added += int(rim.sum())
    return out, added


def _all_row(path):
    rows = json.loads(path.read_text())["rows"]
    return next(r for r in rows if r["group"] == "all" and r["rule"] == "(rulebook)")


def test_evaluate_and_audit_read_masks_at_half_their_maximum(run, tmp_path):
    run_dir, data, rules = run
    soft, rim_pixels = _with_faint_rims(data, tmp_path / "soft")
    assert rim_pixels > 0
    figures = {}
    for name, folder, extra in (
        ("exact", data, []),
        ("soft", soft, []),
        ("loose", soft, ["--mask-threshold", "0.1"]),
    ):
        target = tmp_path / f"{name}.json"
        result = _invoke("evaluate", "--model", run_dir, "--data", folder, "--json", target, *extra)
        assert result.exit_code == 0, result.output
        audit = tmp_path / f"{name}_audit.json"
        result = _invoke(
            "audit", "--model", run_dir, "--rulebook", rules, "--data", folder, "--json", audit,
            *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        figures[name] = (json.loads(target.read_text()), _all_row(audit))
    # The faint rim is not defect at the default threshold: the figures of the exact masks.
    assert figures["soft"][0]["raw"] == figures["exact"][0]["raw"]
    assert figures["soft"][1] == figures["exact"][1]
    # At 0.1 it is: every rim pixel joins the ground truth the labels are graded against.
    exact, loose = figures["exact"][1], figures["loose"][1]
    assert loose["tp"] + loose["fn"] == exact["tp"] + exact["fn"] + rim_pixels
    assert figures["loose"][0]["raw"] != figures["exact"][0]["raw"]


# ---------------------------------------------------------------- one-line errors


def _train(data, out, *extra):
    return _invoke("train", "--data", data, "--baseline", "--out", out, *TINY, *extra)


def test_missing_data_dir(tmp_path):
    _one_line_error(_train(tmp_path / "nope", tmp_path / "o"), 2, "data directory not found")


def test_empty_folder(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    (data / "train" / "anomalous").mkdir()
    _one_line_error(_train(data, tmp_path / "o"), 1, "folder has no images")


def test_unreadable_image(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    (data / "train" / "good" / "zz.png").write_bytes(b"garbage")
    _one_line_error(_train(data, tmp_path / "o"), 1, "zz.png: cannot read image")


@pytest.mark.parametrize(("folder", "workers"), [("good", "0"), ("anomalous", "2")])
def test_non_finite_training_image_fails_at_load_and_leaves_no_run(tmp_path, folder, workers):
    """Issue 16.6: a NaN pixel used to train a whole phase on NaN loss, then fail without
    naming the image and leave a run directory that blocked the rerun."""
    data = syn.make_dataset(tmp_path / "d", n_good=8, n_anomalous=2)
    image = data / "train" / folder / "zz_nan.tif"
    pixels = np.full((32, 32), 0.5, np.float32)
    pixels[7, 9] = np.nan
    tifffile.imwrite(image, pixels)
    out = tmp_path / "run"
    result = _train(data, out, "--workers", workers)
    _one_line_error(result, 1, f"{folder}/zz_nan.tif")
    assert "row 7, column 9" in result.stderr
    assert not out.exists(), "a run directory was left behind"
    pixels[7, 9] = 0.5  # fixed: the same command trains, with no --force
    tifffile.imwrite(image, pixels)
    result = _train(data, out, "--workers", workers)
    assert result.exit_code == 0, result.output
    assert (out / MARKER).is_file()


def test_test_image_without_mask(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0, n_test_defect=1)
    next((data / "ground_truth" / "blob").iterdir()).unlink()
    _one_line_error(_train(data, tmp_path / "o"), 1, "test image has no mask")


def test_mask_size_mismatch(run, tmp_path):
    run_dir, _, _ = run
    data = syn.make_dataset(tmp_path / "d", n_good=2, n_anomalous=0, n_test_defect=1)
    iio.imwrite(next((data / "ground_truth" / "blob").iterdir()), np.zeros((5, 4), np.uint8))
    result = _invoke("evaluate", "--model", run_dir, "--data", data, "--device", "cpu")
    _one_line_error(result, 1, "mask is 4x5 but its image")


def test_bad_device(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    result = _invoke("train", "--data", data, "--baseline", "--out", tmp_path / "o",
                     "--device", "tpu")  # fmt: skip
    _one_line_error(result, 2, "--device 'tpu'")


def test_bad_option_values(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    _one_line_error(_train(data, tmp_path / "o", "--model", "vae"), 2, "--model 'vae'")
    result = _invoke("train", "--data", data, "--out", tmp_path / "o", *TINY)
    _one_line_error(result, 2, "--rulebook is required")
    result = _invoke(
        "train", "--data", data, "--out", tmp_path / "o", "--rulebook", tmp_path / "x.rules"
    )
    _one_line_error(result, 2, "x.rules")


def test_unet_skip_from_reaches_the_checkpoint_or_is_refused(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    # TINY has depth 2: the default skip_from 2 would leave the U-Net no skip at all.
    result = _train(data, tmp_path / "o", "--model", "unet")
    _one_line_error(result, 2, "--skip-from 2 leaves a depth-2 U-Net no skip")
    assert not (tmp_path / "o").exists()
    result = _train(data, tmp_path / "u", "--model", "unet", "--skip-from", "1",
                    "--stop-after", "initial")  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "u" / "checkpoints" / "initial.json").read_text())
    assert saved["meta"]["model"] == {
        "kind": "unet", "width": 4, "depth": 2, "in_channels": 1, "skip_from": 1
    }  # fmt: skip


def test_bad_rulebook_is_one_line(tmp_path):
    data = syn.make_dataset(tmp_path / "d", n_good=3, n_anomalous=0)
    rules = tmp_path / "bad.rules"
    rules.write_text("IF grey is low THEN anomalous (0.9)\n")
    result = _invoke("train", "--data", data, "--out", tmp_path / "o", "--rulebook", rules, *TINY)
    _one_line_error(result, 2, "bad.rules")  # refused like any unusable input


def test_predict_and_evaluate_on_a_missing_run(tmp_path):
    result = _invoke("predict", "--model", tmp_path / "none", "--input", tmp_path, "--out",
                     tmp_path / "m", "--device", "cpu")  # fmt: skip
    _one_line_error(result, 2, "does not exist")  # a wrong path: exit 2, as in explain and audit
    result = _invoke("evaluate", "--model", tmp_path / "none", "--data", tmp_path)
    _one_line_error(result, 2, "does not exist")
