"""The run report's page: `render_html(RunReport)` lays out what `kist_train.report` gathered.

One HTML5 document, no JavaScript, no network: inline CSS, PNG data: URIs and
inline SVG charts (`kist_train.html`, which escapes every string it is given).
A Content-Security-Policy meta tag allows nothing but inline styles and data:
images, so even a page someone edited could neither run a script nor load
anything. The generator meta tag marks the file as ours (`kistrules.outputs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kist_train.html import Markup, join, line_chart, tag
from kist_train.report import Arm, Picture, RunReport, training_phases
from kistrules.outputs import html_generator

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
METRICS = (("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("image_auroc", "image AUROC"))
POSTS = (("raw", "w/o filter"), ("filtered", "guided filter"))

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1240px; padding: 0 18px 40px; }
h1 { font-size: 22px; margin: 18px 0 4px; word-break: break-all; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
table.paths td { overflow-wrap: anywhere; }
td.num { text-align: right; }
th { background: #f2f2f2; }
tr.diff td { font-weight: 600; }
td.up { color: #08752b; } td.down { color: #b3261e; }
tr.differs td { background: #fff6d8; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 8px; overflow-x: auto;
      white-space: pre-wrap; word-break: break-all; }
.note { color: #555; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #e4e4e4; background: #fff; }
.chart text { font: 11px system-ui, sans-serif; fill: #333; text-anchor: middle; }
.chart text.chart-title { font-size: 13px; font-weight: 600; text-anchor: start; }
.chart text.chart-y { text-anchor: end; dominant-baseline: middle; }
.chart text.chart-unit, .chart text.chart-legend { text-anchor: start; }
.chart-frame { fill: none; stroke: #999; }
.chart-grid { stroke: #eee; }
.chart polyline { stroke-width: 2; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: #444; max-width: 100%; word-break: break-all; }
.gallery.small figure { width: 170px; }
.gallery.small img { width: 160px; height: auto; image-rendering: pixelated; }
"""


# --- small helpers ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """A number as the page prints it; None (undefined) as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _cell(value: Any) -> Markup:
    if isinstance(value, Markup):  # a whole <td> the caller made
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return tag("td", _fmt(value), class_="num" if numeric else None)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, row_class=None, class_=None
) -> Markup:
    body = [
        tag("tr", *map(_cell, row), class_=row_class(row) if row_class else None) for row in rows
    ]
    return tag("table", tag("tr", *(tag("th", h) for h in headers)), *body, class_=class_)


def _image(picture: Picture) -> Markup:
    return tag(
        "figure",
        tag(
            "img", src=picture.uri, alt=picture.caption, width=picture.width, height=picture.height
        ),
        tag("figcaption", picture.caption),
    )


def _section(anchor: str, title: str, *body: Any) -> Markup:
    return tag("section", tag("h2", title), *body, id=anchor)


def _arms(report: RunReport) -> list[Arm]:
    return [report.run] + ([report.control] if report.control is not None else [])


# --- sections -----------------------------------------------------------------------------------


def _configuration(report: RunReport) -> Markup:
    arms = _arms(report)
    names: list[str] = []
    for arm in arms:
        names += [k for k in arm.config if k not in names]
    rows = [[name, *(_fmt(arm.config.get(name)) for arm in arms)] for name in names]
    facts = (
        ("phase of the final checkpoint", "phase"),
        ("model", "model"),
        ("working size (px)", "size"),
        ("mu_e (final model)", "mu_e"),
        ("sigma_e (final model)", "sigma_e"),
        ("overlay scale: mu_e + 6 sigma_e", "overlay_vmax"),
        ("margin of the push term", "margin"),
        ("normal training images", "n_train_good"),
        ("anomalous training images", "n_train_anomalous"),
        ("rulebook SHA-256", "rulebook_sha256"),
    )
    rows += [[label, *(_fmt(arm.meta.get(key)) for arm in arms)] for label, key in facts]

    def differs(row: Sequence[Any]) -> str | None:
        return "differs" if len(arms) > 1 and len(set(row[1:])) > 1 else None

    headers = ["option", *(f"{arm.name}: {arm.run_dir}" for arm in arms)]
    note = "Options that differ between the arms are highlighted." if len(arms) > 1 else ""
    return _section(
        "configuration",
        "Configuration",
        tag("p", note, class_="note") if note else "",
        _table(headers, rows, row_class=differs, class_="paths"),  # long paths and hashes wrap
    )


def _rulebook(report: RunReport) -> Markup:
    if not report.rulebook_text:
        return _section("rulebook", "Rulebook", tag("p", "No rulebook: a baseline run."))
    if report.run.config.get("baseline"):
        usage = "labelled with (a baseline run: lambda = 0, so the labels did not train it)"
    else:
        usage = "trained with"
    return _section(
        "rulebook",
        "Rulebook",
        tag(
            "p",
            f"The text the run {usage} (from its checkpoint); rules: "
            f"{', '.join(report.rule_names)}.",
            class_="note",
        ),
        tag("pre", report.rulebook_text),
        _image(report.sets_plot) if report.sets_plot else "",
    )


def _phase_rows(arm: Arm) -> list[list[Any]]:
    rows = []
    for entry in arm.log:
        labels = entry.get("labels") or {}
        loss = entry.get("loss_total", "")  # "": not part of this phase; n/a: undefined
        if entry.get("phase") == "initial" and entry.get("loss_per_epoch"):
            loss = entry["loss_per_epoch"][-1]
        fired = labels.get("fired_per_rule") or {}
        note = []
        if entry.get("frozen"):
            note.append("labels frozen")
        if entry.get("init_from"):
            note.append(f"from {entry['init_from']}")
        if entry.get("resumed_after_epoch") is not None:
            note.append(f"resumed after epoch {entry['resumed_after_epoch']}")
        rows.append(
            [
                entry.get("phase"),
                entry.get("seconds"),
                loss,
                entry.get("loss_normal", ""),
                entry.get("loss_push", ""),
                entry.get("mu_e", ""),
                entry.get("sigma_e", ""),
                f"{labels['images_labelled']}/{labels['images']}" if labels else "",
                labels.get("pixels_labelled", ""),
                f"{labels['regions_fired']}/{labels['regions']}" if labels else "",
                ", ".join(f"{name} {count}" for name, count in fired.items()),
                _pct(labels.get("precision")) if labels else "",
                _pct(labels.get("recall")) if labels else "",
                "; ".join(note),
            ]
        )
    return rows


PHASE_HEADERS = (
    "phase",
    "seconds",
    "loss",
    "loss normal",
    "loss push",
    "mu_e",
    "sigma_e",
    "images labelled",
    "px labelled",
    "regions fired",
    "fired per rule",
    "precision %",
    "recall %",
    "note",
)


def _training(report: RunReport) -> Markup:
    arms = _arms(report)
    parts: list[Any] = [
        tag(
            "p",
            "One row per phase of the log: the loss (initial: the last epoch's; update: the "
            "total of eq. 13), mu_e and sigma_e of the normal training residuals at the "
            "phase's end, and the pseudo-labels of each labelling phase (precision and recall "
            "only where the anomalous training images have masks).",
            class_="note",
        )
    ]
    for arm in arms:
        parts += [tag("h3", f"{arm.name}: {arm.run_dir}"), _table(PHASE_HEADERS, _phase_rows(arm))]
    charts = []
    epochs = max((len(_initial_losses(arm)) for arm in arms), default=0)
    if epochs:
        charts.append(
            line_chart(
                "initial model: loss per epoch",
                [str(i + 1) for i in range(epochs)],
                {arm.name: _initial_losses(arm) for arm in arms},
            )
        )
    phases = _union(arm.phases for arm in arms)
    by_phase = [{e.get("phase"): e for e in arm.log} for arm in arms]
    series = {}
    for arm, entries in zip(arms, by_phase, strict=True):
        series[f"{arm.name} mu_e"] = [entries.get(p, {}).get("mu_e") for p in phases]
        series[f"{arm.name} sigma_e"] = [entries.get(p, {}).get("sigma_e") for p in phases]
    charts.append(line_chart("residual statistics per phase", phases, series))
    updates = [p for p in phases if p.startswith("update_")]
    if updates:
        losses = {}
        for arm, entries in zip(arms, by_phase, strict=True):
            for key in ("normal", "push"):
                losses[f"{arm.name} {key}"] = [
                    entries.get(p, {}).get(f"loss_{key}") for p in updates
                ]
        charts.append(line_chart("update phases: loss terms", updates, losses))
    return _section(
        "training",
        "Training: losses and residual statistics",
        *parts,
        tag("div", *charts, class_="charts"),
    )


def _initial_losses(arm: Arm) -> list[float | None]:
    for entry in arm.log:
        if entry.get("phase") == "initial":
            return list(entry.get("loss_per_epoch") or [])
    return []


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    out: list[str] = []
    for items in lists:
        out += [item for item in items if item not in out]
    return out


def _audit(report: RunReport) -> Markup:
    if report.audit is None:
        why = "no --data given" if report.data_dir is None else "the run has no rulebook"
        return _section("audit", "Label audit", tag("p", f"Not computed: {why}.", class_="note"))
    audit = report.audit
    rows = [
        [
            r.group,
            r.rule,
            r.regions_fired,
            f"{r.images_labelled}/{r.images}",
            _pct(r.precision),
            _pct(r.recall),
        ]
        for r in audit.rows
    ]
    by_class = [
        [
            r.group,
            r.defect_class,
            r.regions_fired,
            f"{r.images_labelled}/{r.images}",
            _pct(r.precision),
            _pct(r.recall),
        ]
        for r in audit.class_rows
    ]
    classes = (
        [
            tag(
                "p",
                "Per class: a labelled region's class is its winning rule's conclusion; "
                "recall is the share of the defect pixels that labels of that class cover.",
                class_="note",
            ),
            _table(
                ["defect", "class", "regions", "images labelled", "precision %", "recall %"],
                by_class,
            ),
        ]
        if by_class
        else []
    )
    intro = (
        f"The pseudo-labels the run's rulebook gives the anomalous test images with the final "
        f"model (mu_e = {audit.mu_e:.4g}, sigma_e = {audit.sigma_e:.4g}, "
        f"{len(audit.thresholds)} thresholds of eq. 9), compared with their masks at the "
        f"{audit.resolution}: per defect type, per rule and for the whole rulebook"
        + (
            f"; {'; '.join(audit.trust_notes())}, as the run trained."
            if audit.trust_notes()
            else "."
        )
    )
    return _section(
        "audit",
        "Label audit per rule",
        tag("p", intro, class_="note"),
        _table(
            ["defect", "rule", "regions fired", "images labelled", "precision %", "recall %"],
            rows,
        ),
        *classes,
        tag(
            "p",
            "The worst-labelled test images: each region is outlined in the colour of the rule "
            "that fired (grey: none reached alpha), and the pseudo-label is tinted red.",
            class_="note",
        ),
        _gallery("Most pixels labelled outside the mask (precision)", report.worst_labelled),
        _gallery("Most mask pixels missed (recall)", report.worst_missed),
    )


def _gallery(title: str, pictures: Sequence[tuple[Any, Picture]]) -> Markup:
    if not pictures:
        return join([tag("h3", title), tag("p", "None.", class_="note")])
    return join([tag("h3", title), tag("div", *(_image(p) for _, p in pictures), class_="gallery")])


def _evaluation(report: RunReport) -> Markup:
    if report.data_dir is None:
        return _section(
            "evaluation", "Evaluation", tag("p", "Not computed: no --data given.", class_="note")
        )
    arms = _arms(report)
    phases = _union([p for p in training_phases(arm) if p in arm.evaluations] for arm in arms)
    headers = ["phase", "arm"] + [f"{name} {post} %" for _, post in POSTS for _, name in METRICS]
    rows: list[list[Any]] = []
    for phase in phases:
        results = [arm.evaluations.get(phase) for arm in arms]
        for arm, result in zip(arms, results, strict=True):
            if result is not None:
                rows.append([phase, arm.name, *(_number(v, "") for v in _figures(result))])
        if len(arms) > 1 and all(r is not None for r in results):
            diffs = [a - b for a, b in zip(_figures(results[0]), _figures(results[1]), strict=True)]
            cells = [_number(d, "+", up=d > 0, down=d < 0) for d in diffs]
            rows.append([phase, f"{arms[0].name} - {arms[1].name}", *cells])
    charts = []
    for key, name in METRICS:
        series = {}
        for arm in arms:
            for post, label in POSTS:
                series[f"{arm.name} {label}"] = [
                    arm.evaluations[p][post][key] if p in arm.evaluations else None for p in phases
                ]
        charts.append(line_chart(f"{name} per phase", phases, series, y_label="%"))
    scope = "every training phase" if report.phases == "all" else "the last training phase"
    first = next(iter(arms[0].evaluations.values()), {})
    intro = (
        f"Test set {report.data_dir}: {first.get('images', '?')} images, "
        f"{first.get('anomalous_images', '?')} anomalous; {scope} of each arm "
        f"(--phases {report.phases}), in %."
    )
    return _section(
        "evaluation",
        "Evaluation per phase",
        tag("p", intro, class_="note"),
        _table(headers, rows, row_class=lambda row: "diff" if " - " in str(row[1]) else None),
        tag("div", *charts, class_="charts"),
    )


def _number(value: float, sign: str, *, up: bool = False, down: bool = False) -> Markup:
    """A figure to two decimals in its own right-aligned cell; green up, red down."""
    classes = ["num"] + ["up"] * up + ["down"] * down
    return tag("td", f"{value:{sign}.2f}", class_=" ".join(classes))


def _figures(result: dict[str, Any]) -> list[float]:
    return [float(result[post][key]) for post, _ in POSTS for key, _ in METRICS]


def _test_set(report: RunReport) -> Markup:
    if not report.test_images:
        return _section(
            "test-set", "Test set", tag("p", "Not computed: no --data given.", class_="note")
        )
    intro = (
        f"Every test image with the final model's guided-filtered anomaly map, worst first. "
        f"Heat from black through red and yellow to white reaches white at the run's fixed "
        f"scale mu_e + 6 sigma_e = {report.overlay_vmax:.4g}; the mask is outlined in cyan. "
        "Error = the mean heat over normal pixels and the mean missing heat over defect "
        "pixels, averaged (0 = right, 1 = wrong everywhere)."
    )
    return _section(
        "test-set",
        f"Test set: {len(report.test_images)} images sorted by error",
        tag("p", intro, class_="note"),
        tag("div", *(_image(s.picture) for s in report.test_images), class_="gallery small"),
    )


# --- the page -----------------------------------------------------------------------------------


def render_html(report: RunReport) -> str:
    """The whole page as text (an HTML5 document)."""
    from kistrules import __version__

    run = report.run
    summary = [f"{run.name} run {run.run_dir}"]
    if report.control is not None:
        summary.append(f"control {report.control.run_dir}")
    summary.append(f"data {report.data_dir}" if report.data_dir else "no data set given")
    sections = [
        _configuration(report),
        _rulebook(report),
        _training(report),
        _audit(report),
        _evaluation(report),
        _test_set(report),
    ]
    nav = tag(
        "nav",
        *(
            tag("a", title, href=f"#{anchor}")
            for anchor, title in (
                ("configuration", "configuration"),
                ("rulebook", "rulebook"),
                ("training", "training"),
                ("audit", "label audit"),
                ("evaluation", "evaluation"),
                ("test-set", "test set"),
            )
        ),
    )
    head = join(
        [
            Markup('<meta charset="utf-8">'),
            Markup(html_generator("report")),
            tag("meta", http_equiv="Content-Security-Policy", content=CSP),
            tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
            tag("title", f"kistrules report: {run.run_dir}"),
            tag("style", Markup(CSS)),
        ]
    )
    body = tag(
        "body",
        tag("h1", f"Run report: {run.run_dir}"),
        tag("p", "; ".join(summary) + f". Written by kistrules {__version__}.", class_="note"),
        nav,
        *sections,
    )
    return "<!DOCTYPE html>\n" + tag("html", tag("head", head), body, lang="en") + "\n"
