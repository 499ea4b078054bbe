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
from kistrules.intervals import term_truth
from kistrules.overlay import (
    NONE_COLOUR,
    PALETTE,
    TINT_COLOUR,
    RegionMark,
    draw_overlay,
    rule_colours,
)
from kistrules.plot import (
    GRID,
    LEFT,
    PANEL_W,
    PLOT_H,
    RIGHT,
    THRESHOLD_COLOUR,
    TOP,
    curves,
    render_sets,
    term_curves,
)
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


def test_term_curves_are_the_terms_as_the_rules_write_them():
    """Hedged and negated terms: equal to the scorer's term truths and to the scalar maths."""
    resolved = resolve(loads(RULES + HEDGED, "p.rules"))
    scorer = compile_rulebook(resolved, dtype=torch.float64)
    by_property = term_curves(resolved)
    assert [t.phrase for t in by_property["gray"]] == ["very low", "tri", "not very low"]
    assert [t.phrase for t in by_property["area"]] == ["high", "not somewhat high"]
    grid = np.linspace(0.0, 1.0, GRID)
    table = {p: torch.as_tensor(grid * resolved.scales[p]) for p in scorer.properties}
    trace = scorer(table, trace=True)
    checked = 0
    for k, info in enumerate(scorer.terms):
        term = next(t for t in by_property[info.property] if t.phrase == _phrase(info))
        np.testing.assert_allclose(term.values, trace.terms[:, k].numpy(), atol=1e-12)
        # An independent scalar evaluation (kistrules.intervals), point by point.
        sampled = [term_truth(term.mf, term.hedges, term.negated, v) for v in grid[::25]]
        np.testing.assert_allclose(term.values[::25], sampled, atol=1e-12)
        checked += bool(info.hedges or info.negated)
    assert checked == 3  # very low, not somewhat high, not very low
    # very low = low^2 and not somewhat high = 1 - sqrt(high), at a point on a slope.
    very_low = by_property["gray"][0]
    assert very_low.values[int(0.4 * (GRID - 1))] == pytest.approx(0.5**2)
    not_somewhat = by_property["area"][1]
    assert not_somewhat.values[int(0.7 * (GRID - 1))] == pytest.approx(1 - 0.5**0.5)


HEDGED = "rule c: IF area is not somewhat high AND gray is not very low THEN anomalous (0.8)\n"


def _phrase(info) -> str:
    return " ".join(["not"] * info.negated + list(info.hedges) + [info.set])


def _y(value: float) -> int:
    return round(TOP + PLOT_H - value * PLOT_H)


def test_the_picture_draws_each_term_where_its_values_are_and_alpha_as_a_line():
    text = (
        "set gray.low = trapezoid(0, 0, 0.3, 0.5)\nthreshold 0.7\n"
        "rule r: IF gray is very low THEN anomalous\n"
    )
    resolved = resolve(loads(text, "v.rules"))
    picture = np.asarray(render_sets(resolved)).astype(int)
    header = 44  # the figure's title band above the panels
    colour = np.array(PALETTE[0])
    term = term_curves(resolved)["gray"][0]
    x0, x1 = LEFT, PANEL_W - RIGHT
    hits = 0
    for index in range(0, GRID, 20):
        x = round(x0 + index / (GRID - 1) * (x1 - x0))
        column = picture[header + TOP - 2 : header + TOP + PLOT_H + 3, x]
        rows = np.flatnonzero(np.abs(column - colour).sum(axis=1) < 60) + header + TOP - 2
        assert rows.size, f"no curve pixel at x={x}"
        # The term (low^2) is drawn there, within the line's width; the set itself (the thin
        # line, same colour) may be too, so the nearest coloured pixel is the term's.
        target = header + _y(float(term.values[index]))
        assert np.min(np.abs(rows - target)) <= 3, (index, rows, target)
        hits += 1
    assert hits >= 20
    # alpha: a dotted red line at membership 0.7 across the axes.
    row = picture[header + _y(0.7), x0 : x1 + 1]
    red = np.abs(row - np.array(THRESHOLD_COLOUR)).sum(axis=1) < 30
    assert red.sum() > (x1 - x0) / 4


def test_plot_of_a_rulebook_without_rules_is_an_error_not_a_blank_png(tmp_path: Path):
    rules = tmp_path / "empty.rules"
    rules.write_text('rulebook "nothing yet"\nscale gray = 200\n')
    out = tmp_path / "sets.png"
    result = CliRunner().invoke(app, ["plot", str(rules), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "has no rules" in lines[0] and "empty.rules" in lines[0]
    assert not out.exists()


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
