"""The label audit of a class-aware rulebook: per (defect type, class), the labelled regions
of that class against the masks, by hand and on a hand-made run."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from kist_train.audit import ALL, audit_class_rows, audit_rulebook
from kist_train.pseudo_labels import label_statistics
from tests.train.test_predict import _constant_run


def test_audit_class_rows_by_hand():
    t = np.array([[1, 1, 0, 0]], dtype=bool)
    hole = np.array([[1, 0, 1, 0]], dtype=bool)
    crack = np.array([[0, 1, 0, 0]], dtype=bool)
    empty = np.zeros((1, 4), dtype=bool)
    rows = audit_class_rows(
        groups=["hole", "crack"],
        truth=[t, t],
        per_class=[[hole, empty], [crack, crack]],
        regions_per_class=np.array([[2, 1], [0, 1]]),
        class_names=["hole", "crack"],
    )
    by = {(r.group, r.defect_class): r for r in rows}
    assert [(r.group, r.defect_class) for r in rows][:2] == [("crack", "hole"), ("crack", "crack")]
    cell = by[("hole", "hole")]
    assert (cell.tp, cell.fp, cell.fn, cell.regions_fired) == (1, 1, 1, 2)
    assert cell.precision == 0.5 and cell.recall == 0.5
    assert by[("crack", "hole")].precision is None and by[("crack", "hole")].recall == 0.0
    total = by[(ALL, "crack")]
    assert (total.tp, total.fp, total.fn, total.regions_fired, total.images_labelled) == (
        2,
        0,
        2,
        2,
        2,
    )


def _write(data, folder: str, name: str, array: np.ndarray) -> None:
    (data / folder).mkdir(parents=True, exist_ok=True)
    iio.imwrite(data / folder / name, array)


def test_audit_of_a_class_aware_rulebook_reports_each_class(tmp_path):
    """On a gray 128 background (e ~ 0), a dark 4x5 blob in test/hole (truth: the blob and
    a 2x5 strip) and a bright 4x5 blob in test/crack (truth: the blob); the model outputs
    0.5, so e = 0.21 and 0.23 and each of the 7 thresholds (0.06..0.15) cuts exactly the
    blob. `dark` concludes hole, `bright` crack; nothing concludes stain."""
    size = 16
    data = tmp_path / "d"
    _write(data, "train/good", "g.png", np.full((size, size), 128, dtype=np.uint8))
    for defect, gray, rows in (("hole", 10, 10), ("crack", 250, 8)):
        image = np.full((size, size), 128, dtype=np.uint8)
        image[4:8, 5:10] = gray
        truth = np.zeros((size, size), dtype=np.uint8)
        truth[4:rows, 5:10] = 255
        _write(data, f"test/{defect}", "x.png", image)
        _write(data, f"ground_truth/{defect}", "x_mask.png", truth)
    rules = tmp_path / "r.rules"
    rules.write_text(
        "class hole, crack, stain\nthreshold 0.8\nscale gray = 255\n"
        "rule dark: IF gray is low THEN hole (1.0)\n"
        "rule bright: IF gray is high THEN crack (1.0)\n"
    )
    _constant_run(tmp_path / "run", size)
    report = audit_rulebook(tmp_path / "run", rules, data, device="cpu")
    by = {(r.group, r.defect_class): r for r in report.class_rows}
    assert [c for g, c in by if g == ALL] == ["hole", "crack", "stain"]
    hole = by[("hole", "hole")]
    assert (hole.tp, hole.fp, hole.fn, hole.regions_fired) == (20, 0, 10, 7)
    assert hole.precision == 1.0 and hole.recall == pytest.approx(20 / 30)
    crack = by[("crack", "crack")]
    assert (crack.tp, crack.fp, crack.fn, crack.regions_fired) == (20, 0, 0, 7)
    confused = by[("hole", "crack")]
    assert (confused.tp, confused.fp, confused.regions_fired) == (0, 0, 0)
    assert confused.precision is None and confused.recall == 0.0
    stain = by[(ALL, "stain")]
    assert (stain.tp, stain.fp, stain.regions_fired, stain.images_labelled) == (0, 0, 0, 0)
    everything = by[(ALL, "hole")]
    assert (everything.tp, everything.fn, everything.images, everything.images_labelled) == (
        20,
        30,  # 10 of the hole image, 20 of the crack image (labelled crack, not hole)
        2,
        1,
    )
    # The per-class rows add up to the rulebook's labels here: no region has two classes.
    assert report.row(ALL).tp == by[(ALL, "hole")].tp + by[(ALL, "crack")].tp
    text = report.format_text()
    assert "labels per class" in text and "stain" in text
    doc = json.loads(json.dumps(report.to_dict()))
    assert {r["defect_class"] for r in doc["class_rows"]} == {"hole", "crack", "stain"}


def test_label_statistics_count_labelled_regions_per_class():
    import torch

    from kistrules.api import loads
    from kistrules.compiler import compile_rulebook
    from kistrules.pseudo_labels import label_regions
    from kistrules.resolve import resolve

    book = "class hole, crack\nscale gray = 255\nIF gray is low THEN hole\n"
    book += "IF gray is mid THEN anomalous"
    scorer = compile_rulebook(resolve(loads(book)))
    image = torch.full((1, 12, 12), 128.0)
    image[0, 2:5, 2:5] = 10.0  # dark: hole
    residual = torch.zeros((1, 12, 12))
    residual[0, 2:5, 2:5] = 1.0
    residual[0, 8:10, 8:10] = 1.0  # gray 128 = mid: anomalous
    labels = label_regions(image, residual, scorer, mu=0.0, sigma=0.1)
    stats = label_statistics(labels, scorer)
    count = len(labels.thresholds)  # each threshold cuts both squares
    assert stats["fired_per_class"] == {"anomalous": count, "hole": count, "crack": 0}
    assert stats["regions_fired"] == sum(stats["fired_per_class"].values())


def test_shards_statistics_add_up_per_class():
    from kist_train.distributed import _merge_statistics

    def part(hole: int, crack: int) -> dict:
        counts = {"images": 1, "images_labelled": 1, "pixels_labelled": 5, "regions": 9}
        fired = {"anomalous": 0, "hole": hole, "crack": crack}
        return {
            **counts,
            "regions_fired": hole + crack,
            "fired_per_rule": {"r": hole + crack},
            "fired_per_class": fired,
        }

    merged = _merge_statistics([part(2, 1), part(0, 4)])
    assert merged["fired_per_class"] == {"anomalous": 0, "hole": 2, "crack": 5}
    assert merged["regions_fired"] == 7 and merged["fired_per_rule"] == {"r": 7}


def test_the_report_page_shows_the_class_table_only_for_a_class_aware_audit():
    from types import SimpleNamespace

    from kist_train.audit import AuditClassRow, AuditReport
    from kist_train.report_page import _audit

    row = AuditClassRow(
        group="hole", defect_class="crack", images=2, images_labelled=1, regions_fired=3,
        tp=6, fp=2, fn=6,
    )  # fmt: skip
    audit = AuditReport(
        run_dir="r", rulebook="b.rules", rulebook_sha256="0", mu_e=0.0, sigma_e=1.0,
        thresholds=(0.5,), rule_names=("a",), rows=(), class_rows=(row,),
    )  # fmt: skip
    report = SimpleNamespace(audit=audit, worst_labelled=[], worst_missed=[], data_dir="d")
    html = str(_audit(report))
    assert "Per class" in html and "<td>crack</td>" in html and "75.0" in html
    plain = SimpleNamespace(
        **{**vars(report), "audit": AuditReport(**{**vars(audit), "class_rows": ()})}
    )
    assert "Per class" not in str(_audit(plain))
