"""Defect classes in explanations and pseudo-labels: each rule's conclusion, each
labelled region's class and class grades, and the per-class label masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kistrules.api import loads
from kistrules.compiler import compile_rulebook
from kistrules.explain import RegionMasks, explain_document, explain_mask, to_jsonable
from kistrules.pseudo_labels import class_masks, label_regions, region_classes
from kistrules.resolve import resolve
from tests.explain.test_explain import _scene

RULES = """
class dark_spot, bright_spot, speck
scale pixels = 40
scale darkness = 50
scale brightness = 50
rule dark: IF darkness is high AND pixels is not low THEN dark_spot (1.0)
rule bright: IF brightness is high AND pixels is not low THEN bright_spot (0.9)
rule either: IF (darkness is mid OR brightness is mid) AND NOT (pixels is very low)
             THEN anomalous (0.85)
rule faint: IF darkness is low AND pixels is low THEN speck (0.5)
"""


@pytest.fixture(scope="module")
def scorer():
    return compile_rulebook(resolve(loads(RULES, "t.rules")))


def _expected_class_grades(rules: list[dict], classes: list[str]) -> dict[str, float]:
    """From the rule rows alone: a class's grade is the max over its rules and `anomalous`."""
    return {
        c: max((r["output"] for r in rules if r["concludes"] in (c, "anomalous")), default=0.0)
        for c in classes
    }


def test_regions_report_their_class_and_class_grades(scorer):
    image, mask = _scene()
    result = explain_mask(scorer, image, mask)
    doc = explain_document(scorer, result, image="i.png", rulebook="t.rules", why_not=None)
    assert doc["classes"] == ["dark_spot", "bright_spot", "speck"]
    for region in doc["regions"]:
        assert [r["concludes"] for r in region["rules"]] == [
            "dark_spot",
            "bright_spot",
            "anomalous",
            "speck",
        ]
        assert region["class_grades"] == _expected_class_grades(region["rules"], doc["classes"])
        assert max(region["class_grades"].values()) == region["grade"]
        winner = next((r for r in region["rules"] if r["name"] == region["winner"]), None)
        assert region["defect_class"] == (winner["concludes"] if region["fired"] else None)
    assert sorted(r["defect_class"] or "none" for r in doc["regions"]) == [
        "bright_spot",
        "dark_spot",
        "none",
    ]


def test_a_rulebook_without_classes_reports_none(scorer):
    plain = compile_rulebook(resolve(loads("IF darkness is high THEN anomalous", "p.rules")))
    image, mask = _scene()
    (first, *_) = to_jsonable(explain_mask(plain, image, mask).regions)
    assert first["class_grades"] == {}
    assert first["rules"][0]["concludes"] == "anomalous"
    assert first["defect_class"] in (None, "anomalous")


def test_class_masks_are_the_labelled_regions_of_each_class(scorer):
    """Against a slow reference: each region's pixels, read one by one from its label map."""
    image, mask = _scene()
    residual = np.where(mask, 9.0, 0.0) + np.where(np.roll(mask, 1, axis=0), 4.0, 0.0)
    labels = label_regions(
        torch.as_tensor(image, dtype=torch.float32)[None],
        torch.as_tensor(residual, dtype=torch.float32)[None],
        scorer,
        mu=0.0,
        sigma=2.0,
    )
    masks = class_masks(labels, scorer)
    assert list(masks) == ["dark_spot", "bright_spot", "speck", "anomalous"]
    pixels = RegionMasks(labels.table)
    classes = region_classes(labels, scorer)
    rules = labels.trace.rules
    alpha = scorer.threshold
    want = {name: np.zeros(mask.shape, bool) for name in masks}
    for i, cls in enumerate(classes):
        outputs = rules[i].tolist()
        if max(outputs) < alpha:
            assert cls is None
            continue
        first = next(r for r, v in enumerate(outputs) if v == max(outputs))
        assert cls == scorer.rule_classes[first]
        want[cls] |= pixels[i]
    assert any(c is not None for c in classes)
    union = np.zeros(mask.shape, bool)
    for name, got in masks.items():
        assert np.array_equal(got[0].numpy(), want[name]), name
        union |= want[name]
    assert np.array_equal(union, labels.mask[0].numpy())


def test_the_cli_shows_each_regions_class(tmp_path):
    from skimage.io import imsave
    from typer.testing import CliRunner

    import kistrules.commands.explain  # noqa: F401 - registers explain
    from kistrules.cli import app

    image, mask = _scene()
    imsave(tmp_path / "i.png", np.clip(image, 0, 255).astype(np.uint8), check_contrast=False)
    imsave(tmp_path / "m.png", (mask * 255).astype(np.uint8), check_contrast=False)
    (tmp_path / "r.rules").write_text(RULES)
    args = ["explain", str(tmp_path / "i.png"), "--rulebook", str(tmp_path / "r.rules")]
    args += ["--mask", str(tmp_path / "m.png")]
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "class" in text.output and "dark_spot" in text.output
    doc = json.loads(CliRunner().invoke(app, [*args, "--format", "json"]).output)
    assert doc["classes"] == ["dark_spot", "bright_spot", "speck"]
    shown = sorted(r["defect_class"] or "-" for r in doc["regions"])
    assert shown == ["-", "bright_spot", "dark_spot"]
