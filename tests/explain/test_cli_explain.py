"""`kistrules explain` end to end: JSON equals the scorer, misuse is one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.io import imsave
from typer.testing import CliRunner

import kistrules.commands.explain  # noqa: F401 - registers explain, plot, demo
from kistrules.api import loads
from kistrules.cli import app
from kistrules.compiler import compile_rulebook
from kistrules.regions import measure
from kistrules.resolve import resolve

RULES = """scale pixels = 40
scale darkness = 50
rule dark_blob: IF darkness is high AND pixels is not low THEN anomalous (1.0)
rule faint: IF darkness is mid AND pixels is not low THEN anomalous (0.9)
"""


@pytest.fixture
def files(tmp_path: Path):
    rng = np.random.default_rng(1)
    image = np.clip(120 + rng.normal(0, 3, (40, 40)), 0, 255)
    mask = np.zeros((40, 40), np.uint8)
    mask[5:12, 5:13] = 255  # dark: 45 levels below the ring
    mask[25:31, 20:28] = 255  # faint: 22 levels
    mask[35, 35] = 255  # a speck
    image[5:12, 5:13] -= 45
    image[25:31, 20:28] -= 22
    paths = {
        "image": tmp_path / "img.png",
        "mask": tmp_path / "img_mask.png",
        "rules": tmp_path / "r.rules",
        "small": tmp_path / "small_mask.png",
        "residual": tmp_path / "res.tiff",
    }
    imsave(paths["image"], image.astype(np.uint8), check_contrast=False)
    imsave(paths["mask"], mask, check_contrast=False)
    imsave(paths["small"], mask[:20, :20], check_contrast=False)
    residual = np.where(mask > 0, 0.04, 0.0005).astype(np.float32)
    imsave(paths["residual"], residual, check_contrast=False)
    paths["rules"].write_text(RULES)
    return paths


def run(*args: str):
    return CliRunner().invoke(app, ["explain", *map(str, args)])


def _one_line_error(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert needle in lines[0], lines[0]


def test_json_grades_equal_the_scorer(files):
    result = run(files["image"], "-r", files["rules"], "--mask", files["mask"], "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["source"] == "mask" and doc["rules"] == ["dark_blob", "faint"]
    assert doc["threshold"] == 0.8 and doc["scales"] == {"darkness": 50.0, "pixels": 40.0}
    # Independently: measure the three components and score them.
    from skimage.measure import label

    image = np.asarray(Image.open(files["image"]), dtype=np.float64)
    mask = np.asarray(Image.open(files["mask"])) > 0
    scorer = compile_rulebook(resolve(loads(RULES, "r.rules")))
    table = measure(image, label(mask, connectivity=2), properties=list(scorer.properties))
    trace = scorer(table, trace=True)
    assert [r["grade"] for r in doc["regions"]] == trace.grade.tolist()
    for region, winner, fired in zip(doc["regions"], trace.winner, trace.fired, strict=True):
        outputs = [r["output"] for r in region["rules"]]
        assert region["best_rule"] == doc["rules"][int(np.argmax(outputs))]
        assert region["winner"] == (doc["rules"][int(winner)] if fired else None)
    assert [r["winner"] for r in doc["regions"]] == ["dark_blob", "faint", None]
    faint = doc["regions"][1]["rules"][0]  # dark_blob missed on the faint region
    assert not faint["reaches_threshold"] and faint["counterfactual"]["property"] == "darkness"
    assert faint["counterfactual"]["text"] == "darkness >= 38 would make dark_blob fire"
    assert doc["pseudo_label_pixels"] == 7 * 8 + 6 * 8


def test_text_output_why_not_and_overlay(files, tmp_path: Path):
    out = tmp_path / "overlay.png"
    result = run(
        files["image"],
        "-r",
        files["rules"],
        "--mask",
        files["mask"],
        "--why-not",
        "DARK_BLOB",
        "--out",
        out,
        "-v",
    )
    assert result.exit_code == 0, result.output
    assert "why not dark_blob" in result.output and "darkness >= 38" in result.output
    assert "<- limiting" in result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size[1] >= 448
        assert picture.info["Software"] == "kistrules explain"
    # the overlay is explain's own: a second run replaces it; a plot there is not explain's
    again = run(files["image"], "-r", files["rules"], "--mask", files["mask"], "--out", out)
    assert again.exit_code == 0, again.output
    plot = CliRunner().invoke(app, ["plot", str(files["rules"]), "--out", str(out)])
    assert plot.exit_code == 2 and "not an earlier output of kistrules plot" in plot.output


def test_residual_source_with_mu_sigma(files):
    result = run(
        files["image"],
        "-r",
        files["rules"],
        "--residual",
        files["residual"],
        "--mu",
        "0.0005",
        "--sigma",
        "0.01",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    thresholds = doc["residual"]["thresholds"]
    assert len(thresholds) == 7 and thresholds[0] == pytest.approx(0.0005 + 4 * 0.3 * 0.01)
    assert len(doc["regions"]) == 3 * 7  # the same three regions at every threshold below 0.04
    assert {r["threshold"] for r in doc["regions"]} == set(thresholds)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["missing.png", "-r", "{rules}", "--mask", "{mask}"], 2, "no such image file"),
        (["{image}", "-r", "{rules}", "--mask", "{small}"], 1, "must match"),
        (["{image}", "-r", "{rules}"], 2, "give a region source"),
        (
            ["{image}", "-r", "{rules}", "--mask", "{mask}", "--residual", "{residual}"],
            2,
            "give one region source",
        ),
        (["{image}", "-r", "{rules}", "--residual", "{residual}"], 2, "needs mu_e and sigma_e"),
        (
            ["{image}", "-r", "{rules}", "--mask", "{mask}", "--why-not", "dark_blb"],
            2,
            "did you mean 'dark_blob'",
        ),
        (["{image}", "-r", "{rules}", "--model", "{tmp}/no_run"], 2, "no such run directory"),
        (["{image}", "-r", "{image}", "--mask", "{mask}"], 2, "img.png"),
        (
            ["{image}", "-r", "{rules}", "--residual", "{residual}", "--mask-threshold", "0.3"],
            2,
            "--mask-threshold applies to --mask only",
        ),
        (
            ["{image}", "-r", "{rules}", "--mask", "{mask}", "--mask-threshold", "0"],
            2,
            "--mask-threshold must be in (0, 1]",
        ),
    ],
)
def test_misuse_is_one_line(files, tmp_path, args, code, needle):
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    result = run(*[a.format(**names) for a in args])
    _one_line_error(result, code, needle)


def test_a_faint_rim_makes_no_regions_unless_the_threshold_says(files, tmp_path: Path):
    """An anti-aliased export of the same mask: its rim at 20 of 255 is not defect."""
    from scipy import ndimage

    mask = np.asarray(Image.open(files["mask"])) > 0
    rim = ndimage.binary_dilation(mask) & ~mask
    soft = np.where(mask, 255, np.where(rim, 20, 0)).astype(np.uint8)
    soft[0, 39] = 20  # and a stray faint pixel
    imsave(tmp_path / "soft_mask.png", soft, check_contrast=False)

    def regions(*extra: str) -> list[dict]:
        result = run(files["image"], "-r", files["rules"], "--format", "json", *extra)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["regions"]

    exact = regions("--mask", str(files["mask"]))
    assert regions("--mask", str(tmp_path / "soft_mask.png")) == exact
    loose = regions("--mask", str(tmp_path / "soft_mask.png"), "--mask-threshold", "0.05")
    assert len(loose) == len(exact) + 1
    assert sum(r["pixel_count"] for r in loose) == int(mask.sum() + rim.sum()) + 1


LONG = "dark_blob_" + "with_a_name_an_inspector_wrote_out_in_full_" * 3  # 138 characters


def test_piped_text_is_never_cut(files, tmp_path: Path):
    """Not a terminal (CliRunner, like `| less` or `> file`): every name and suggestion whole."""
    rules = tmp_path / "long.rules"
    rules.write_text(RULES.replace("dark_blob", LONG))
    assert len(LONG) > 120
    result = run(files["image"], "-r", rules, "--mask", files["mask"], "-v", "--why-not", LONG)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "..." not in result.output
    lines = result.output.splitlines()
    assert any(f"why not {LONG}" in line for line in lines)  # the column header, whole
    assert any(line.strip().startswith(LONG) for line in lines)  # the --verbose rule row
    assert f"darkness >= 38 would make {LONG} fire" in result.output  # on one line
    # Wider than any terminal default, yet no line runs on to the unbounded width.
    assert 200 < max(len(line) for line in lines) < 1000


def test_a_narrow_terminal_wraps_long_names_instead_of_cutting_them(files, tmp_path: Path):
    from rich.console import Console

    from kistrules.commands.explain import print_explanation, run_explain

    rules = tmp_path / "long.rules"
    rules.write_text(RULES.replace("dark_blob", LONG))
    scorer, result = run_explain(files["image"], rules, mask=files["mask"], device="cpu")
    console = Console(width=60, force_terminal=True, color_system=None, record=True)
    print_explanation(console, scorer, result, verbose=True, why_not=LONG, title="t")
    text = console.export_text()
    assert "…" not in text
    # Folded at the cell edge, the name's characters are all there, in order.
    letters = "".join(ch for ch in text if ch.isalnum() or ch == "_")
    assert LONG in letters


@pytest.mark.slow
def test_model_source_agrees_with_pseudo_labelling(fast_demo):
    """`--model` on a test image of the demo: the JSON equals label_regions on the same input."""
    from kist_train.data import read_gray, working_tensor
    from kist_train.demo import example_image
    from kist_train.predict import load_run, residual_maps
    from kistrules.pseudo_labels import label_regions

    image_path, _ = example_image(fast_demo.data)
    kist = fast_demo.out / "kist"
    result = run(image_path, "-r", fast_demo.rulebook, "--model", kist, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    run_ = load_run(kist, device="cpu")
    scorer = compile_rulebook(resolve(loads(fast_demo.rulebook.read_text(), "demo.rules")))
    image = read_gray(image_path)
    residual = residual_maps(run_, [image])
    working = working_tensor([image], run_.size)[:, 0] * 255.0
    labels = label_regions(
        working,
        residual,
        scorer,
        mu=run_.mu_e,
        sigma=run_.sigma_e,
        s=run_.config.s,
        original_sizes=[image.shape],
    )
    assert doc["source"] == "model" and doc["grid"] == [run_.size, run_.size]
    assert [r["grade"] for r in doc["regions"]] == labels.trace.grade.tolist()
    assert doc["pseudo_label_pixels"] == int(labels.mask.sum())
    assert doc["residual"]["mu"] == run_.mu_e and doc["residual"]["s"] == run_.config.s
    assert torch.equal(
        torch.tensor([r["fired"] for r in doc["regions"]], dtype=torch.bool), labels.trace.fired
    )
