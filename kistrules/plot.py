"""`kistrules plot`: the membership functions a rulebook uses, one panel per property.

Each curve is the compiled scorer's own membership code evaluated on a grid
of standardised values (never a second implementation drawn by hand), so the
picture shows exactly what training will compute. Each panel states the
property's scale gamma and what v' = 1 means in raw units; overrides
(`set PROPERTY.NAME = ...`) are dashed and named as such; the header states
the threshold alpha.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from kistrules.ast import iter_terms
from kistrules.builtins import PROPERTIES
from kistrules.overlay import PALETTE, TEXT, font
from kistrules.resolve import MembershipFunction, ResolvedRulebook

GRID = 501  # points over [0, 1]: a 0.002 step, finer than a pixel of the panel


@dataclass(frozen=True)
class Curve:
    """One set of one property, sampled on the grid."""

    name: str
    mf: MembershipFunction
    values: np.ndarray  # (GRID,)
    used_as: tuple[str, ...]  # how the rules write it: "low", "not low", "very high"


def evaluate_set(mf: MembershipFunction, grid: np.ndarray) -> np.ndarray:
    """Membership of `grid` in a resolved set, by the compiler's torch code."""
    import torch

    from kistrules.membership import grade_set

    values = torch.as_tensor(grid, dtype=torch.float64)
    with torch.no_grad():
        grades = grade_set(mf.function, mf.params, values)
    return grades.cpu().numpy()


def _term_phrase(term) -> str:
    words = (["not"] if term.negated else []) + [h.name for h in term.hedges] + [term.set.name]
    return " ".join(words)


def curves(
    resolved: ResolvedRulebook,
    *,
    evaluate: Callable[[MembershipFunction, np.ndarray], np.ndarray] = evaluate_set,
) -> dict[str, list[Curve]]:
    """Property -> its sets that the rules use, sampled on [0, 1], in order of first use."""
    grid = np.linspace(0.0, 1.0, GRID)
    used: dict[str, dict[str, list[str]]] = {p: {} for p in resolved.properties}
    for rule in resolved.rules:
        for term in iter_terms(rule.condition):
            phrases = used[term.property.name].setdefault(term.set.name, [])
            phrase = _term_phrase(term)
            if phrase not in phrases:
                phrases.append(phrase)
    out: dict[str, list[Curve]] = {}
    for prop, sets in used.items():
        out[prop] = [
            Curve(
                name,
                resolved.sets[(prop, name)],
                evaluate(resolved.sets[(prop, name)], grid),
                tuple(phrases),
            )
            for name, phrases in sets.items()
        ]
    return out


def _format_params(mf: MembershipFunction) -> str:
    return f"{mf.function}({', '.join(f'{p:g}' for p in mf.params)})"


def _legend_label(curve: Curve) -> str:
    origin = {"builtin": "built-in", "file": "file", "override": "OVERRIDE, dashed"}
    return f"{curve.name}: {_format_params(curve.mf)} [{origin.get(curve.mf.origin, '')}]"


def _scale_line(prop: str, gamma: float, explicit: bool) -> str:
    unit = PROPERTIES[prop].unit if prop in PROPERTIES else ""
    source = "" if explicit else " (default)"
    return f"gamma = {gamma:g}{source}: v' = 1 means {prop} >= {gamma:g} {unit}".rstrip()


PANEL_W, PLOT_H = 560, 240  # plot_h: the axes' height
LEFT, RIGHT, TOP = 52, 20, 52
LEGEND_ROW = 30


def _dashed(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], colour, width: int):
    """A polyline drawn in dashes (PIL has none): on for 8 px of arc length, off for 5."""
    on, period, travelled = 8.0, 13.0, 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        length = float(np.hypot(x1 - x0, y1 - y0))
        if travelled % period < on:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
        travelled += length


def _panel_height(rows: int) -> int:
    return TOP + PLOT_H + 60 + LEGEND_ROW * rows


def _panel(prop: str, sets: list[Curve], resolved: ResolvedRulebook, height: int) -> Image.Image:
    panel = Image.new("RGB", (PANEL_W, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    x0, x1 = LEFT, PANEL_W - RIGHT
    y0, y1 = TOP, TOP + PLOT_H  # y0: membership 1, y1: membership 0
    gamma = resolved.scales[prop]
    draw.text((10, 6), prop, fill=TEXT, font=font(17))
    draw.text(
        (10, 28),
        _scale_line(prop, gamma, prop in resolved.explicit_scales),
        fill=(70, 70, 70),
        font=font(12),
    )
    small = font(11)
    for tick in np.linspace(0, 1, 6):
        x = x0 + tick * (x1 - x0)
        y = y1 - tick * (y1 - y0)
        draw.line([(x, y0), (x, y1)], fill=(232, 232, 232))
        draw.line([(x0, y), (x1, y)], fill=(232, 232, 232))
        draw.text((x - 8, y1 + 4), f"{tick:.1f}", fill=TEXT, font=small)
        raw = f"{tick * gamma:.3g}"
        draw.text((x - 3 * len(raw), y1 + 18), raw, fill=(110, 110, 110), font=small)
        draw.text((x0 - 30, y - 7), f"{tick:.1f}", fill=TEXT, font=small)
    draw.rectangle((x0, y0, x1, y1), outline=(90, 90, 90))
    draw.text(
        (x0, y1 + 34),
        f"upper numbers: v'    lower numbers: raw {prop}",
        fill=(110, 110, 110),
        font=small,
    )
    grid = np.linspace(0.0, 1.0, GRID)
    xs = x0 + grid * (x1 - x0)
    for i, curve in enumerate(sets):
        colour = PALETTE[i % len(PALETTE)]
        ys = y1 - np.clip(curve.values, 0, 1) * (y1 - y0)
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        if curve.mf.origin == "override":
            _dashed(draw, points, colour, 3)
        else:
            draw.line(points, fill=colour, width=3)
    # The legend sits below the axes, so that it never hides a curve.
    legend_y = y1 + 56
    for i, curve in enumerate(sets):
        colour = PALETTE[i % len(PALETTE)]
        uses = ", ".join(curve.used_as)
        draw.rectangle((x0, legend_y + 5, x0 + 18, legend_y + 9), fill=colour)
        draw.text((x0 + 26, legend_y), _legend_label(curve), fill=TEXT, font=small)
        draw.text((x0 + 26, legend_y + 13), f"used as: {uses}", fill=(90, 90, 90), font=small)
        legend_y += LEGEND_ROW
    return panel


def render_sets(
    resolved: ResolvedRulebook,
    *,
    evaluate: Callable[[MembershipFunction, np.ndarray], np.ndarray] = evaluate_set,
    columns: int = 2,
) -> Image.Image:
    """The whole figure: a header (name, threshold alpha) and one panel per used property."""
    by_property = curves(resolved, evaluate=evaluate)
    height = _panel_height(max((len(sets) for sets in by_property.values()), default=1))
    panels = [_panel(prop, sets, resolved, height) for prop, sets in by_property.items()]
    columns = max(1, min(columns, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    header = 44
    figure = Image.new("RGB", (columns * PANEL_W, header + rows * height), (255, 255, 255))
    draw = ImageDraw.Draw(figure)
    name = resolved.source.display_name or resolved.source.path
    draw.text(
        (10, 10),
        f"{name}: membership functions over standardised values v' = clip(v / gamma, 0, 1); "
        f"threshold alpha = {resolved.threshold:g}",
        fill=TEXT,
        font=font(15),
    )
    for i, panel in enumerate(panels):
        figure.paste(panel, ((i % columns) * PANEL_W, header + (i // columns) * height))
    return figure
