"""`kistrules plot` and the overlay: the curves are the scorer's, the pictures are sane PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import kistrules.commands.explain  # noqa: F401 - registers explain, plot, demo
from kistrules.api import loads
from kistrules.cli import app
from kistrules.compiler import compile_rulebook
from kistrules.overlay import NONE_COLOUR, TINT_COLOUR, RegionMark, draw_overlay, rule_colours
from kistrules.plot import GRID, curves, render_sets
from kistrules.resolve import resolve

RULES = """rulebook "plot test"
scale area = 0.05
set gray.low = trapezoid(0, 0, 0.3, 0.5)
set bump = gaussian(0.5, 0.1)
set tri = triangle(0.2, 0.5, 0.8)
threshold 0.7
rule a: IF area is high AND gray is very low THEN anomalous (0.9)
rule b: IF gray is tri OR unevenness is bump THEN anomalous
"""


def test_curves_equal_the_scorers_term_truths():
    rulebook = loads(RULES, "p.rules")
    resolved = resolve(rulebook)
    scorer = compile_rulebook(resolve(rulebook), dtype=torch.float64)
    by_property = curves(resolved)
    assert list(by_property) == ["area", "gray", "unevenness"]
    grid = np.linspace(0.0, 1.0, GRID)
    # Feed the grid as raw values (v' * gamma) and read the un-hedged terms' truths.
    table = {p: torch.as_tensor(grid * resolved.scales[p]) for p in scorer.properties}
    trace = scorer(table, trace=True)
    checked = 0
    for k, info in enumerate(scorer.terms):
        if info.hedges or info.negated:
            continue
        curve = next(c for c in by_property[info.property] if c.name == info.set)
        np.testing.assert_allclose(curve.values, trace.terms[:, k].numpy(), atol=1e-12)
        checked += 1
    assert checked == 3  # area high, gray tri, unevenness bump
    gray = {c.name: c for c in by_property["gray"]}
    assert gray["low"].mf.origin == "override" and gray["low"].used_as == ("very low",)
    assert gray["low"].values[int(0.3 * (GRID - 1))] == pytest.approx(1.0)


def test_render_sets_has_one_panel_per_property():
    one = render_sets(resolve(loads("IF gray is low THEN anomalous", "a.rules")))
    three = render_sets(resolve(loads(RULES, "p.rules")))
    assert one.size[0] < three.size[0] and one.size[1] < three.size[1]
    assert 500 <= three.size[0] <= 1400 and 300 <= three.size[1] <= 1400


def test_plot_command_writes_a_png(tmp_path: Path):
    rules = tmp_path / "p.rules"
    rules.write_text(RULES)
    out = tmp_path / "sub" / "sets.png"
    result = CliRunner().invoke(app, ["plot", str(rules), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        assert 800 <= picture.size[0] <= 1400 and 300 <= picture.size[1] <= 1400
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas
    assert not list(out.parent.glob(".*"))  # no temp file left behind
    again = CliRunner().invoke(app, ["plot", str(rules), "--out", str(out)])
    assert again.exit_code == 0, again.output  # its own earlier plot is replaced


def test_plot_of_a_bad_rulebook_is_one_line(tmp_path: Path):
    rules = tmp_path / "bad.rules"
    rules.write_text("IF grey is low THEN anomalous\n")
    result = CliRunner().invoke(app, ["plot", str(rules), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2  # a rulebook with errors is refused like any unusable input
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope.rules")])
    assert missing.exit_code == 2 and "no such" in missing.output


def test_overlay_outlines_in_rule_colours_and_tints_the_pseudo_label():
    image = np.full((32, 32), 100.0)
    fired = np.zeros((32, 32), bool)
    fired[4:12, 4:12] = True
    missed = np.zeros((32, 32), bool)
    missed[20:26, 18:30] = True
    regions = [RegionMark(1, fired, "a", 0.9), RegionMark(2, missed, None, 0.2)]
    picture = draw_overlay(image, regions, rule_names=["a", "b"], pseudo_label=fired, alpha=0.8)
    array = np.asarray(picture)
    factor = 14  # ceil(448 / 32)
    assert picture.size[1] == 32 * factor and picture.size[0] > 32 * factor  # plus the key
    colour = rule_colours(["a", "b"])["a"]
    # Inner boundary of the fired region, in rule a's colour; of the missed one, grey.
    assert tuple(array[4 * factor + 20, 4 * factor]) == colour
    assert tuple(array[20 * factor + 30, 18 * factor]) == NONE_COLOUR
    # Inside the fired region: tinted towards red; the background stays grey.
    inside = array[8 * factor, 8 * factor].astype(int)
    assert inside[0] > inside[1] + 30 and inside[0] > 100
    assert tuple(array[16 * factor, 2 * factor]) == (100, 100, 100)
    # The key panel lists the rules and the regions: it is not blank.
    assert np.asarray(picture)[:, 32 * factor :].std() > 5
    assert TINT_COLOUR in {tuple(p) for p in array[:, 32 * factor :].reshape(-1, 3)}
