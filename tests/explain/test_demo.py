"""The demo: its data set (layout, exact masks, no leak, determinism) and a fast end-to-end run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kist_train.demo import (
    DEFECT_KINDS,
    DEPTH,
    DemoSizes,
    demo_rules_text,
    paint_defect,
    synthesize,
)

TINY = DemoSizes(train_good=6, train_anomalous=4, test_good=3, test_anomalous=8)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_loads_and_withholds_training_masks(tmp_path: Path):
    from kist_train.data import load_dataset

    root = synthesize(tmp_path / "d", seed=5, sizes=TINY)
    dataset = load_dataset(root)
    assert len(dataset.train_good) == 6 and len(dataset.train_anomalous) == 4
    assert len(dataset.require_test()) == 3 + 8
    assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(DEFECT_KINDS)
    assert not (root / "ground_truth" / "anomalous").exists()
    masks = list((root / "ground_truth").rglob("*_mask.png"))
    assert len(masks) == 8  # test anomalies only
    for mask in masks:
        image = root / "test" / mask.parent.name / mask.name.replace("_mask", "")
        assert image.exists()
        assert np.asarray(Image.open(mask)).any()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path):
    a = _digest(synthesize(tmp_path / "a", seed=1, sizes=TINY))
    b = _digest(synthesize(tmp_path / "b", seed=1, sizes=TINY))
    c = _digest(synthesize(tmp_path / "c", seed=2, sizes=TINY))
    assert a == b != c


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_masks_are_exactly_the_changed_pixels(kind: str):
    rng = np.random.default_rng(7)
    for _ in range(5):
        crop = rng.uniform(60, 200, (64, 64)).round()
        image, mask = paint_defect(crop, kind, rng)
        changed = image != crop.astype(np.uint8)
        np.testing.assert_array_equal(mask, changed)
        assert 1 <= mask.sum() < 64 * 64 // 8
        delta = image.astype(float) - crop
        # At its deepest a defect changes its pixels by a contrast drawn from DEPTH
        # (rounded to whole gray levels; a bright spot may clip at 255).
        if kind == "bright_spot":
            assert DEPTH[0] - 1 <= delta[mask].max() <= DEPTH[1] + 0.5 and (delta >= 0).all()
        else:
            assert -DEPTH[1] - 0.5 <= delta[mask].min() <= -DEPTH[0] + 0.5
            assert (delta <= 0).all()
    if kind == "edge_chip":  # a chip touches the border
        assert mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()


def test_demo_rulebook_is_clean():
    from kistrules.api import check, loads

    assert check(demo_rules_text()) == []
    rulebook = loads(demo_rules_text(), "demo.rules")
    assert set(rulebook.rule_names) == {"dark_blob", "bright_spot", "dark_patch"}


@pytest.mark.slow
def test_fast_demo_runs_end_to_end(fast_demo):
    result = fast_demo
    for path in (result.overlay, result.model_overlay, result.plot, result.out / "results.json"):
        assert path.exists() and path.stat().st_size > 1000, path
    for arm in (result.baseline, result.kist):
        for post in ("raw", "filtered"):
            assert set(arm[post]) >= {"pixel_auroc", "aupro", "image_auroc"}
            assert all(0.0 <= v <= 100.0 for v in arm[post].values())
    assert result.baseline["baseline"] is True and result.kist["baseline"] is False
    console = (result.out.parent / "console.txt").read_text()
    assert "KIST - control" in console and "explain overlay" in console
    # Piped, no line is cut or wrapped (rich's 80 columns broke the table's headers and
    # the labelling line), and the title is a line, not a rule a million columns wide.
    lines = console.splitlines()
    assert lines[0] == "== kistrules demo (fast smoke run, seed 3) =="
    assert any(line.startswith("│ KIST - control │") for line in lines)
    assert any("labelled" in line and "regions fired" in line for line in lines)
    assert max(map(len, lines)) < 400
    with Image.open(result.overlay) as overlay:
        assert overlay.size[1] >= 448


@pytest.mark.slow
def test_fast_demo_writes_its_run_report_beside_its_outputs(fast_demo):
    """report.html: KIST with the baseline as its control, the table's figures, all listed."""
    import json

    from kist_train.demo import DEMO_MANIFEST
    from kistrules.outputs import html_written_by

    report = fast_demo.report
    assert report == fast_demo.out / "report.html" and html_written_by("report")(report)
    assert "report.html" in json.loads((fast_demo.out / DEMO_MANIFEST).read_text())["files"]
    text = report.read_text(encoding="utf-8")
    assert f"KIST run {fast_demo.out / 'kist'}" in text
    assert f"control {fast_demo.out / 'baseline'}" in text
    for arm in (fast_demo.baseline, fast_demo.kist):
        for post in ("raw", "filtered"):
            for value in arm[post].values():
                assert f"{value:.2f}" in text
    assert "Label audit per rule" in text and "dark_blob" in text
    assert f"Test set: {12 + 12} images sorted by error" in text


@pytest.mark.slow
def test_demo_folder_is_all_the_demos_own(fast_demo, tmp_path: Path):
    """Every file a demo run leaves is in its manifest, unchanged; a changed or added one
    makes the folder the user's again, and the next demo run refuses it (issue 16)."""
    import shutil

    from kist_train.demo import DEMO_MANIFEST, claim_out
    from kistrules.errors import UsageError

    manifest = claim_out(fast_demo.out)  # raises if any file is unlisted or changed
    on_disk = {
        p.relative_to(fast_demo.out).as_posix()
        for p in fast_demo.out.rglob("*")
        if p.is_file() and p.name != DEMO_MANIFEST
    }
    assert set(manifest.files) == on_disk
    for change in ("edit", "add", "link"):
        copy = tmp_path / change
        shutil.copytree(fast_demo.out, copy, symlinks=True)
        if change == "edit":  # an expert tries their own rules in the demo's rulebook
            with open(copy / "demo.rules", "a") as handle:
                handle.write("# my change\n")
            culprit = "demo.rules"
        elif change == "add":
            (copy / "baseline" / "notes.txt").write_text("mine")
            culprit = "notes.txt"
        else:
            (copy / "data" / "mine").symlink_to(tmp_path, target_is_directory=True)
            culprit = "mine"
        with pytest.raises(UsageError, match=culprit):
            claim_out(copy)


@pytest.mark.slow
def test_demo_runs_again_in_its_own_folder(fast_demo, tmp_path: Path):
    """A second run replaces the first run's files, and leaves a folder it can claim again."""
    import shutil

    from rich.console import Console

    from kist_train.demo import claim_out, run_demo

    again = tmp_path / "again"
    shutil.copytree(fast_demo.out, again, symlinks=True)
    console = Console(file=open(tmp_path / "console.txt", "w"), width=120)  # noqa: SIM115
    sizes = DemoSizes(
        train_good=8, train_anomalous=4, test_good=4, test_anomalous=4, epochs=1,
        iterations=1, update_epochs=1,
    )  # fmt: skip
    try:
        result = run_demo(again, seed=4, console=console, progress=False, sizes=sizes)
    finally:
        console.file.close()
    assert len(list((result.data / "train" / "good").glob("*.png"))) == 8
    claim_out(again)


def test_demo_command_is_one_line_on_a_bad_out(tmp_path: Path):
    from typer.testing import CliRunner

    import kistrules.commands.explain  # noqa: F401
    from kistrules.cli import app

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(blocker / "x")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "cannot create" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("difference", "text"), [(0.6, "+0.6"), (0.048, "+0.05"), (-0.02, "-0.02"), (-1.25, "-1.2")]
)
def test_differences_never_print_a_real_change_as_zero(difference, text):
    from kist_train.demo import _signed

    assert _signed(difference) == text
