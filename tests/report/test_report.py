"""The run report's content: what `build_report` gathers, what the page shows, and escaping."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from kist_train.html import Markup, escape, line_chart, tag
from kist_train.report import build_report, map_error, training_phases
from kist_train.report_page import render_html
from kistrules.errors import UsageError
from tests.report.conftest import HOSTILE_IMAGE, HOSTILE_RULEBOOK, HOSTILE_RUN


class Page(HTMLParser):
    """The elements, attributes and text of a page, as the standard library's parser reads it."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.pre: list[str] = []
        self._in_pre = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, name, attrs):
        self.elements.append((name, dict(attrs)))
        self._in_pre += name == "pre"

    def handle_startendtag(self, name, attrs):
        self.elements.append((name, dict(attrs)))

    def handle_endtag(self, name):
        self._in_pre -= name == "pre"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_pre:
            self.pre.append(data)

    def names(self) -> list[str]:
        return [name for name, _ in self.elements]

    def images(self) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == "img"]


@pytest.fixture(scope="module")
def full(tiny_runs):
    """The report of the KIST run with its control and data, every phase evaluated."""
    report = build_report(
        tiny_runs.kist, tiny_runs.data, control=tiny_runs.control, device="cpu", progress=False
    )
    return report, render_html(report)


# --- the HTML builder ---------------------------------------------------------------------------


@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00")))
def test_any_text_stays_text_in_an_element_and_an_attribute(text: str):
    page = Page(tag("p", text, title=text))
    assert page.elements == [("p", {"title": text})]
    assert "".join(page.text) == text


def test_markup_is_kept_and_everything_else_escaped_once():
    inner = tag("b", "a < b")
    assert tag("p", inner, "&") == "<p><b>a &lt; b</b>&amp;</p>"
    assert escape(inner) is inner and isinstance(escape("<"), Markup)
    assert tag("img", src="x", alt='"q"') == '<img src="x" alt="&quot;q&quot;"/>'
    assert tag("td", "", class_=None, hidden=True) == "<td hidden></td>"
    with pytest.raises(ValueError, match="no children"):
        tag("img", "child")


def test_line_chart_draws_every_value_and_escapes_names():
    svg = line_chart("t<", ["a", "b", "c"], {"s<1>": [1.0, None, 3.0], "s2": [2.0, 2.0, 2.0]})
    page = Page(svg)
    assert page.names().count("circle") == 5  # one dot per value, None leaves a gap
    assert page.names().count("polyline") == 1  # s<1> is broken into single points
    assert "s<1>" in page.text and "t<" in page.text
    assert "no values" in line_chart("empty", ["a"], {"s": [None]})


# --- map_error ----------------------------------------------------------------------------------


def _map_error_reference(amap, mask, vmax) -> float:
    """Pixel by pixel in plain Python."""
    normal, defect = [], []
    for value, truth in zip(np.ravel(amap), np.ravel(mask), strict=True):
        t = min(max(float(value) / vmax, 0.0), 1.0)
        (defect if truth else normal).append(1.0 - t if truth else t)
    parts = [sum(p) / len(p) for p in (normal, defect) if p]
    return sum(parts) / len(parts)


def test_map_error_against_a_plain_python_reference():
    rng = np.random.default_rng(4)
    for _ in range(20):
        shape = tuple(rng.integers(1, 9, size=2))
        amap = rng.normal(0.5, 0.6, size=shape)
        mask = rng.random(shape) < rng.random()
        vmax = float(rng.uniform(0.1, 2.0))
        assert map_error(amap, mask, vmax) == pytest.approx(_map_error_reference(amap, mask, vmax))


def test_map_error_is_zero_when_right_and_one_when_wrong_everywhere():
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    assert map_error(np.where(mask, 5.0, 0.0), mask, 2.0) == 0.0
    assert map_error(np.where(mask, 0.0, 2.0), mask, 2.0) == 1.0
    assert map_error(np.zeros((4, 4)), np.zeros((4, 4), bool), 1.0) == 0.0  # a normal image


# --- what the report gathers --------------------------------------------------------------------


def test_every_training_phase_of_both_arms_is_evaluated_as_evaluate_does(full, tiny_runs):
    from kist_train.evaluate import evaluate_run

    report, _ = full
    assert training_phases(report.run) == ["initial", "update_1", "update_2"]
    for arm, run_dir in ((report.run, tiny_runs.kist), (report.control, tiny_runs.control)):
        assert list(arm.evaluations) == training_phases(arm)
        for phase in ("initial", "update_2"):
            expected = evaluate_run(run_dir, tiny_runs.data, device="cpu", phase=phase)
            assert arm.evaluations[phase] == expected


def test_the_audit_is_that_of_the_rulebook_the_run_trained_with(full, tiny_runs):
    from kist_train.audit import audit_rulebook

    report, _ = full
    expected = audit_rulebook(tiny_runs.kist, tiny_runs.rulebook, tiny_runs.data, device="cpu")
    assert report.audit.rows == expected.rows
    assert report.audit.images == expected.images
    assert report.audit.rulebook_sha256 == expected.rulebook_sha256
    assert report.rule_names == ("dark_blob", "dark_gray")
    for pictures, key in ((report.worst_labelled, "fp"), (report.worst_missed, "fn")):
        counts = [getattr(entry, key) for entry, _ in pictures]
        assert counts == sorted(counts, reverse=True) and all(counts)
        assert len(pictures) == min(3, sum(getattr(i, key) > 0 for i in expected.images))


def test_every_test_image_is_drawn_worst_first(full, tiny_runs):
    report, _ = full
    names = sorted(
        p.relative_to(tiny_runs.data).as_posix() for p in (tiny_runs.data / "test").rglob("*.png")
    )
    assert sorted(s.image for s in report.test_images) == names
    errors = [s.error for s in report.test_images]
    assert errors == sorted(errors, reverse=True) and all(0.0 <= e <= 1.0 for e in errors)
    for scored in report.test_images:
        assert max(scored.picture.width, scored.picture.height) <= 128


def test_the_page_shows_every_section_and_figure(full):
    report, page_text = full
    page = Page(page_text)
    text = "".join(page.text)
    for heading in ("Configuration", "Rulebook", "Training", "Label audit per rule",
                    "Evaluation per phase", "Test set: 7 images sorted by error"):  # fmt: skip
        assert heading in text, heading
    for arm in (report.run, report.control):
        for phase, result in arm.evaluations.items():
            assert f"{result['filtered']['pixel_auroc']:.2f}" in text, (arm.name, phase)
        for entry in arm.log:
            assert entry["phase"] in text
    last = training_phases(report.run)[-1]
    diff = (
        report.run.evaluations[last]["raw"]["aupro"]
        - report.control.evaluations[last]["raw"]["aupro"]
    )
    assert f"{diff:+.2f}" in text
    for row in report.audit.rows:
        assert row.rule in text
    assert page.names().count("svg") == 6  # 3 training charts, 3 metrics


def test_every_image_is_an_inline_png_of_its_stated_size(full):
    _, page_text = full
    images = Page(page_text).images()
    assert len(images) == 1 + 7 + 6  # membership plot, test set, audit overlays (3 + 3)
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as picture:
            assert picture.format == "PNG"
            assert picture.size == (int(attrs["width"]), int(attrs["height"]))
        assert attrs["alt"]


def test_the_page_loads_nothing_and_runs_nothing(full):
    _, page_text = full
    page = Page(page_text)
    assert "script" not in page.names()
    for _, attrs in page.elements:
        assert not any(name.startswith("on") for name in attrs), attrs
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:image/png;base64,", "#")), value
    csp = [a for n, a in page.elements if n == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")


def test_hostile_names_arrive_as_text(full, tiny_runs):
    _, page_text = full
    page = Page(page_text)
    assert "".join(page.pre) == HOSTILE_RULEBOOK  # the rulebook verbatim, comment and all
    text = "".join(page.text)
    assert HOSTILE_RUN in text and f"{HOSTILE_IMAGE}.png" in text
    assert str(tiny_runs.kist) in text


# --- options and partial runs -------------------------------------------------------------------


def test_without_data_the_page_holds_the_log_only(tiny_runs):
    report = build_report(tiny_runs.kist, device="cpu", progress=False)
    assert report.run.evaluations == {} and report.audit is None and not report.test_images
    text = "".join(Page(render_html(report)).text)
    assert "Not computed: no --data given" in text and "update_2" in text


def test_phases_last_evaluates_the_last_training_phase_of_each_arm(tiny_runs):
    report = build_report(
        tiny_runs.kist, tiny_runs.data, control=tiny_runs.control, phases="last",
        device="cpu", progress=False,
    )  # fmt: skip
    assert list(report.run.evaluations) == ["update_2"]
    assert list(report.control.evaluations) == ["update_2"]
    assert "--phases last" in "".join(Page(render_html(report)).text)


def test_a_run_stopped_early_reports_the_phases_it_has(tiny_runs, tmp_path: Path):
    from kist_train.engine import train
    from tests.train import synthetic as syn

    config = syn.tiny_config((tiny_runs.data, tiny_runs.rulebook), tmp_path / "early")
    train(config, stop_after="labels_2", progress=False)
    report = build_report(tmp_path / "early", tiny_runs.data, device="cpu", progress=False)
    assert report.run.phases == ["initial", "labels_1", "update_1", "labels_2"]
    assert list(report.run.evaluations) == ["initial", "update_1"]
    assert report.run.meta["phase"] == "labels_2"


def test_a_run_without_a_rulebook_has_no_rulebook_section_or_audit(tiny_runs, tmp_path: Path):
    from kist_train.engine import train
    from tests.train import synthetic as syn

    config = syn.tiny_config(
        (tiny_runs.data, tiny_runs.rulebook), tmp_path / "plain", rulebook=None, baseline=True
    )
    train(config, stop_after="initial", progress=False)
    report = build_report(tmp_path / "plain", tiny_runs.data, device="cpu", progress=False)
    assert report.rulebook_text is None and report.audit is None
    text = "".join(Page(render_html(report)).text)
    assert "No rulebook" in text and "the run has no rulebook" in text
    assert list(report.run.evaluations) == ["initial"] and len(report.test_images) == 7


def test_a_bad_phases_value_is_a_usage_error(tiny_runs):
    with pytest.raises(UsageError, match="--phases must be one of all, last"):
        build_report(tiny_runs.kist, phases="every", progress=False)


def test_threads_are_set_for_the_report_and_restored_after(tiny_runs, monkeypatch):
    import torch

    import kist_train.report as report_module

    seen = []
    real = report_module._build
    monkeypatch.setattr(
        report_module, "_build", lambda *a: seen.append(torch.get_num_threads()) or real(*a)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        build_report(tiny_runs.kist, threads=1, progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
