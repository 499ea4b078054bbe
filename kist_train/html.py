"""A small HTML builder for self-contained pages: escaped by construction, no network.

Every string that is not `Markup` is escaped where it enters the page, as text
or as an attribute value: rulebook text, rule names, file names and paths are
data, and a `<script>` in any of them arrives as the text "<script>". Only
`tag` (and the functions built on it) make `Markup`, so no user string can
become markup by accident. Images are PNG data: URIs and charts are inline SVG,
so a page needs no network, no JavaScript and no file beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Markup", "escape", "join", "line_chart", "png_data_uri", "tag"]


class Markup(str):
    """HTML that is safe as it is: made by `tag`, never from outside text."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    """`value` as HTML text (quotes too, so it is safe in an attribute); Markup as it is."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Markup:
    """Concatenate parts, escaping every one that is not Markup."""
    return Markup("".join(escape(part) for part in parts))


# Elements without content; written "<name .../>", which HTML reads as a whole element
# and inline SVG (foreign content) needs: "<circle ...>" there would stay open.
_VOID = frozenset({"br", "circle", "hr", "img", "line", "meta", "path", "polyline", "rect"})


def _attribute_name(name: str) -> str:
    # class_ -> class, aria_label -> aria-label, http_equiv -> http-equiv
    return name.rstrip("_").replace("_", "-")


def tag(name: str, /, *children: Any, **attributes: Any) -> Markup:
    """`<name attr="value">children</name>`; None attributes are left out, True ones bare.

    `name` and the attribute names are the caller's literals; values and
    children are escaped unless they are Markup.
    """
    attrs = []
    for key, value in attributes.items():
        if value is None or value is False:
            continue
        if value is True:
            attrs.append(f" {_attribute_name(key)}")
        else:
            attrs.append(f' {_attribute_name(key)}="{escape(value)}"')
    if name in _VOID:
        if children:
            raise ValueError(f"<{name}> takes no children")
        return Markup(f"<{name}{''.join(attrs)}/>")
    return Markup(f"<{name}{''.join(attrs)}>{join(children)}</{name}>")


def png_data_uri(picture) -> str:
    """A PIL image as a `data:image/png;base64,...` URI (optimised PNG)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- SVG line charts ----------------------------------------------------------------------------

# Okabe-Ito, as `kistrules plot` uses (kistrules.overlay.PALETTE), as CSS colours.
SERIES_COLOURS = ("#e69f00", "#0072b2", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442")
_W, _H = 440, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 26, 58


def _ticks(low: float, high: float) -> list[float]:
    """Three to six round values spanning [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / 4
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_label: str = "",
) -> Markup:
    """An inline SVG chart: one line per series over the categories `x_labels`.

    A None value leaves a gap; a series of one point is drawn as a dot. Each
    point has a tooltip with its exact value.
    """
    values = [v for points in series.values() for v in points if v is not None]
    if not values or not x_labels:
        return tag("p", f"{title}: no values", class_="note")
    low, high = min(values), max(values)
    if high == low:
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    ticks = _ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    n = len(x_labels)

    def x_at(i: int) -> float:
        return _LEFT + (plot_w * (i + 0.5) / n)

    def y_at(v: float) -> float:
        return _TOP + plot_h * (1 - (v - low) / (high - low))

    parts: list[Markup] = [
        tag("text", title, x=_LEFT, y=16, class_="chart-title"),
        tag("rect", x=_LEFT, y=_TOP, width=plot_w, height=plot_h, class_="chart-frame"),
    ]
    for t in ticks:
        y = f"{y_at(t):.1f}"
        parts.append(tag("line", x1=_LEFT, x2=_LEFT + plot_w, y1=y, y2=y, class_="chart-grid"))
        parts.append(tag("text", _number(t), x=_LEFT - 4, y=y, class_="chart-y"))
    every = max(1, math.ceil(n / 12))  # at most a dozen category labels
    for i, label in enumerate(x_labels):
        if i % every == 0:
            parts.append(tag("text", label, x=f"{x_at(i):.1f}", y=_H - _BOTTOM + 14))
    if y_label:
        parts.append(tag("text", y_label, x=4, y=16, class_="chart-unit"))
    for k, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        run: list[str] = []
        runs: list[list[str]] = [run]
        for i, value in enumerate(points):
            if value is None:
                run = []
                runs.append(run)
                continue
            x, y = f"{x_at(i):.1f}", f"{y_at(value):.1f}"
            run.append(f"{x},{y}")
            tip = tag("title", f"{name}, {x_labels[i]}: {_number(value)}")
            parts.append(tag("g", tip, tag("circle", cx=x, cy=y, r=3, fill=colour)))
        for line in runs:
            if len(line) > 1:
                parts.append(tag("polyline", points=" ".join(line), stroke=colour, fill="none"))
        legend_x = _LEFT + 4 + 125 * (k % 3)  # three entries a row
        legend_y = _H - 26 + 15 * (k // 3)
        parts.append(tag("rect", x=legend_x, y=legend_y - 8, width=10, height=10, fill=colour))
        parts.append(tag("text", name, x=legend_x + 14, y=legend_y + 1, class_="chart-legend"))
    return tag(
        "svg",
        *parts,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {_W} {_H}",
        width=_W,
        height=_H,
        role="img",
        aria_label=title,
        class_="chart",
    )
