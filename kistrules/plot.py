"""`kistrules plot`: the terms a rulebook uses, one panel per property.

Each curve is the compiled scorer's own code evaluated on a grid of
standardised values (never a second implementation drawn by hand), so the
picture shows exactly what training will compute: a term as the rules write
it, hedges (`very` = x^2, `somewhat` = x^0.5) and `not` (1 - x) included, is a
thick line; a set the rules use only through a hedge or `not` is also drawn
thin, so that the change the hedge makes shows. Each panel states the
property's scale gamma and what v' = 1 means in raw units, and draws the
threshold alpha as a dotted line; overrides (`set PROPERTY.NAME = ...`) are
dashed and named as such.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from kistrules.ast import iter_terms
from kistrules.builtins import HEDGES, PROPERTIES
from kistrules.errors import KistrulesError
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


@dataclass(frozen=True)
class TermCurve:
    """One term as the rules write it (`not very low`), sampled on the grid."""

    phrase: str  # "very low", "not high", "low"
    set: str
    hedges: tuple[str, ...]
    negated: bool
    mf: MembershipFunction
    values: np.ndarray  # (GRID,) the term's truth: hedges, then `not`


def evaluate_set(mf: MembershipFunction, grid: np.ndarray) -> np.ndarray:
    """Membership of `grid` in a resolved set, by the compiler's torch code."""
    return evaluate_term(mf, (), False, grid)


def evaluate_term(
    mf: MembershipFunction, hedges: Sequence[str], negated: bool, grid: np.ndarray
) -> np.ndarray:
    """A term's truth on `grid`, by the scorer's torch code: set, hedges, then `not`."""
    import torch

    from kistrules.membership import apply_hedge, grade_set, hedge_exponent, negate

    values = torch.as_tensor(grid, dtype=torch.float64)
    with torch.no_grad():
        grades = grade_set(mf.function, mf.params, values)
        if hedges:
            grades = apply_hedge(grades, hedge_exponent(hedges))
        if negated:
            grades = negate(grades)
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


def term_curves(resolved: ResolvedRulebook) -> dict[str, list[TermCurve]]:
    """Property -> every distinct term the rules write on it, sampled, in order of first use."""
    grid = np.linspace(0.0, 1.0, GRID)
    seen: dict[str, dict[str, TermCurve]] = {p: {} for p in resolved.properties}
    for rule in resolved.rules:
        for term in iter_terms(rule.condition):
            prop, phrase = term.property.name, _term_phrase(term)
            if phrase in seen[prop]:
                continue
            hedges = tuple(h.name for h in term.hedges)
            mf = resolved.sets[(prop, term.set.name)]
            values = evaluate_term(mf, hedges, term.negated, grid)
            seen[prop][phrase] = TermCurve(phrase, term.set.name, hedges, term.negated, mf, values)
    return {prop: list(terms.values()) for prop, terms in seen.items()}


def _formula(term: TermCurve) -> str:
    """`very not low` -> "1 - low(v')^2": what the line shows, in the scorer's terms."""
    exponent = 1.0
    for hedge in term.hedges:
        exponent *= HEDGES[hedge]
    core = f"{term.set}(v')" + (f"^{exponent:g}" if exponent != 1.0 else "")
    return f"1 - {core}" if term.negated else core


def _format_params(mf: MembershipFunction) -> str:
    return f"{mf.function}({', '.join(f'{p:g}' for p in mf.params)})"


def _legend_label(curve: Curve | TermCurve) -> str:
    origin = {"builtin": "built-in", "file": "file", "override": "OVERRIDE, dashed"}
    name = curve.set if isinstance(curve, TermCurve) else curve.name
    return f"{name}: {_format_params(curve.mf)} [{origin.get(curve.mf.origin, '')}]"


def _scale_line(prop: str, gamma: float, explicit: bool) -> str:
    unit = PROPERTIES[prop].unit if prop in PROPERTIES else ""
    source = "" if explicit else " (default)"
    return f"gamma = {gamma:g}{source}: v' = 1 means {prop} >= {gamma:g} {unit}".rstrip()


PANEL_W, PLOT_H = 560, 240  # plot_h: the axes' height
THRESHOLD_COLOUR = (200, 30, 30)
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


def _panel(
    prop: str,
    sets: list[Curve],
    terms: list[TermCurve],
    resolved: ResolvedRulebook,
    height: int,
) -> Image.Image:
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
    colours = {term.phrase: PALETTE[i % len(PALETTE)] for i, term in enumerate(terms)}

    def line(values: np.ndarray, colour, width: int, dashed: bool) -> None:
        ys = y1 - np.clip(values, 0, 1) * (y1 - y0)
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        if dashed:
            _dashed(draw, points, colour, width)
        else:
            draw.line(points, fill=colour, width=width)

    # A set the rules use only through a hedge or `not`: thin, in its first term's colour.
    thin = _thin_sets(sets, terms)
    for curve, first in thin:
        line(curve.values, colours[first.phrase], 1, curve.mf.origin == "override")
    for term in terms:
        line(term.values, colours[term.phrase], 3, term.mf.origin == "override")
    _threshold_line(draw, resolved.threshold, x0, x1, y0, y1, small)
    # The legend sits below the axes, so that it never hides a curve.
    legend_y = y1 + 56
    for term in terms:
        colour = colours[term.phrase]
        draw.rectangle((x0, legend_y + 5, x0 + 18, legend_y + 9), fill=colour)
        name = f"{term.phrase} = {_formula(term)}" if term.hedges or term.negated else term.phrase
        draw.text((x0 + 26, legend_y), name, fill=TEXT, font=small)
        draw.text((x0 + 26, legend_y + 13), _legend_label(term), fill=(90, 90, 90), font=small)
        legend_y += LEGEND_ROW
    for curve, first in thin:
        draw.line((x0, legend_y + 7, x0 + 18, legend_y + 7), fill=colours[first.phrase], width=1)
        text = f"{curve.name}(v'): the set itself, thin (the rules use it only hedged or negated)"
        draw.text((x0 + 26, legend_y), text, fill=TEXT, font=small)
        legend_y += LEGEND_ROW
    return panel


def _thin_sets(sets: list[Curve], terms: list[TermCurve]) -> list[tuple[Curve, TermCurve]]:
    """The sets no rule uses plainly, each with its first (hedged or negated) term."""
    out = []
    for curve in sets:
        used = [t for t in terms if t.set == curve.name]
        if used and all(t.hedges or t.negated for t in used):
            out.append((curve, used[0]))
    return out


def _threshold_line(draw, alpha: float, x0: int, x1: int, y0: int, y1: int, text_font) -> None:
    """alpha as a dotted line across the axes, labelled at its right end."""
    y = y1 - min(max(alpha, 0.0), 1.0) * (y1 - y0)
    for x in range(x0, x1, 6):
        draw.line([(x, y), (min(x + 2, x1), y)], fill=THRESHOLD_COLOUR, width=1)
    label = f"alpha = {alpha:g}"
    left, top, right, bottom = draw.textbbox((0, 0), label, font=text_font)
    box = (x1 - (right - left) - 8, y - (bottom - top) - 7, x1 - 2, y - 2)
    draw.rectangle(box, fill=(255, 255, 255))
    draw.text((box[0] + 3, box[1] + 1), label, fill=THRESHOLD_COLOUR, font=text_font)


def render_sets(
    resolved: ResolvedRulebook,
    *,
    evaluate: Callable[[MembershipFunction, np.ndarray], np.ndarray] = evaluate_set,
    columns: int = 2,
) -> Image.Image:
    """The whole figure: a header (name, threshold alpha) and one panel per used property.

    Raises KistrulesError for a rulebook without rules: there is nothing to draw,
    and a blank picture would look like a plot of nothing wrong.
    """
    if not resolved.rules:
        name = resolved.source.path or resolved.source.display_name or "the rulebook"
        raise KistrulesError(f"{name}: the rulebook has no rules, so no terms to plot")
    by_property = curves(resolved, evaluate=evaluate)
    by_term = term_curves(resolved)
    rows = [len(by_term[p]) + len(_thin_sets(sets, by_term[p])) for p, sets in by_property.items()]
    height = _panel_height(max(rows, default=1))
    panels = [
        _panel(prop, sets, by_term[prop], resolved, height) for prop, sets in by_property.items()
    ]
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
