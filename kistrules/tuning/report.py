"""What `kistrules tune` prints and writes at the top of the tuned rulebook."""

from __future__ import annotations

from kistrules.tuning.parameters import number_text
from kistrules.tuning.protocol import Tuning
from kistrules.tuning.rewrite import changes
from kistrules.tuning.search import Figures


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def format_tuning(tuning: Tuning, rulebook: str) -> str:
    """The search-set and held-out figures, before and after, the changes and the warnings."""
    result = tuning.result
    folds = len(tuning.folds)
    rows = [
        ("annotated images, original", result.before, ""),
        ("annotated images, tuned", result.after, "fitted to these images: optimistic"),
        (f"held out, original ({folds} folds)", tuning.held_out_before, ""),
        (
            f"held out, tuned ({folds} folds)",
            tuning.held_out_after,
            "folds: " + " ".join(pct(f.after.precision) for f in tuning.folds),
        ),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = [
        f"tune {rulebook}: {len(tuning.tunables)} numbers, {tuning.images} annotated images, "
        f"{tuning.defect_regions} defect regions, minimum recall {pct(tuning.min_recall)} %, "
        f"{result.rounds} rounds, {result.candidates} candidates graded",
        f"{'':<{width}}{'precision %':>12}{'recall %':>10}",
    ]
    for name, figures, note in rows:
        line = f"{name:<{width}}{pct(figures.precision):>12}{pct(figures.recall):>10}"
        lines.append(f"{line}  {note}".rstrip())
    changed = changes(tuning.tunables, result.values)
    if changed:
        lines.append("changed: " + ", ".join(_change(t, v) for t, v in changed))
    else:
        lines.append("changed: nothing (no move raised precision on the annotated images)")
    lines += [f"warning: {w}" for w in tuning.warnings]
    return "\n".join(lines)


def _change(tunable, value: float) -> str:
    return f"{tunable.label} {tunable.number.text} -> {number_text(value)}"


def header_lines(tuning: Tuning, rulebook: str) -> list[str]:
    """The comment block at the top of the tuned rulebook (the first line is replaced by
    the mark of `kistrules.outputs.sign_rules`)."""
    result = tuning.result
    before, after = tuning.held_out_before, tuning.held_out_after
    return [
        "kistrules tune wrote this file",
        f"Tuned from {rulebook} on {tuning.images} annotated images "
        f"({tuning.defect_regions} defect regions): label precision",
        f"{_pair(result.before, result.after)} on them (fitted), "
        f"{_pair(before, after)} held out from the search",
        f"({len(tuning.folds)}-fold cross-validation); recall "
        f"{pct(result.before.recall)} % -> {pct(result.after.recall)} %.",
        "Each changed number has a `tuned:` comment: read it before keeping the change.",
    ]


def _pair(before: Figures, after: Figures) -> str:
    return f"{pct(before.precision)} % -> {pct(after.precision)} %"
