"""The report in a real headless Chromium: it loads clean, every image renders, nothing is fetched.

Needs Debian's chromium package (/usr/bin/chromium); skipped where it is absent.
The page is the tiny run's report, whose rulebook, run folder and a test image
carry markup that would call console.error if it ever ran: a console error
fails the test. The full-page screenshot is kept under the test's tmp_path
(its path is printed; `pytest -s` shows it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.cdp import CHROMIUM, load_page

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: install Debian's chromium package to test the report page",
)

# Every <img>: loaded and decoded (complete, natural size > 0) and laid out on the page.
CHECK = """JSON.parse(JSON.stringify({
  images: [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
    shown: i.getBoundingClientRect().width })),
  svgs: document.querySelectorAll("svg").length,
  scripts: document.scripts.length,
  pre: (document.querySelector("pre") || {}).textContent,
  title: document.title,
  pageHeight: document.documentElement.scrollHeight,
}))"""


@pytest.mark.slow
def test_the_report_loads_without_errors_and_renders_every_image(tiny_runs, tmp_path: Path):
    from kist_train.report import build_report, write_report
    from kist_train.report_page import render_html
    from tests.report.conftest import HOSTILE_RULEBOOK, HOSTILE_RUN

    report = build_report(
        tiny_runs.kist, tiny_runs.data, control=tiny_runs.control, device="cpu", progress=False
    )
    page = write_report(render_html(report), tmp_path / "report.html")
    loaded = load_page(page, tmp_path / "chromium-profile", expression=CHECK)

    shot = tmp_path / "report-screenshot.png"
    shot.write_bytes(loaded.screenshot)
    print(f"screenshot of the report page: {shot}")

    assert loaded.errors == []
    found = loaded.value
    assert found["scripts"] == 0 and found["svgs"] == 6
    images = found["images"]
    assert len(images) == 1 + 7 + 6  # membership plot, test set, audit overlays
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["shown"] > 0, image
    assert found["pre"] == HOSTILE_RULEBOOK  # the comment's markup is text, not elements
    assert HOSTILE_RUN in found["title"]
    # Nothing but the page itself and its data: URIs; no network, no other file.
    assert {url for url in loaded.requests if not url.startswith("data:image/png;base64,")} == {
        page.resolve().as_uri()
    }

    from PIL import Image

    with Image.open(shot) as picture:  # the whole page, not one screen of it
        assert picture.width > 1200 and picture.height >= found["pageHeight"] > 2000
