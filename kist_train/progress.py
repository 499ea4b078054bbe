"""What a training run prints: the progress bar and one line per phase.

The engine calls these on rank 0 (other ranks get a quiet console); nothing
here decides anything about the run.
"""

from __future__ import annotations

from typing import Any


def progress_bar(console, enabled: bool):
    """A transient rich progress bar (one task per training phase) with the running loss."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.5f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


def print_labels(console, iteration: int, entry: dict[str, Any]) -> None:
    """The line of a "labels_i" phase: residual statistics and what was labelled."""
    head = f"iteration {iteration}: mu_e={entry['mu_e']:.3g} sigma_e={entry['sigma_e']:.3g}"
    labels = entry.get("labels")
    if labels is None:
        console.print(f"{head}; no pseudo-labels")
        return
    fired = ", ".join(f"{name} {count}" for name, count in labels["fired_per_rule"].items())
    text = (
        f"{head}; labelled {labels['images_labelled']}/{labels['images']} images, "
        f"{labels['pixels_labelled']} px, regions fired {labels['regions_fired']}"
        f"/{labels['regions']} (by rule, a region may fire several: {fired})"
    )
    if labels.get("precision") is not None or labels.get("recall") is not None:
        text += f"; precision {_pct(labels.get('precision'))} recall {_pct(labels.get('recall'))}"
    inside = labels.get("interior")
    if inside is not None:  # --label-erosion: the pixels the push trusts
        text += f"; interior {inside['pixels']} px"
        if inside.get("precision") is not None or inside.get("recall") is not None:
            text += (
                f" (precision {_pct(inside.get('precision'))} recall {_pct(inside.get('recall'))})"
            )
    if entry.get("frozen"):
        text += " [frozen]"
    console.print(text, markup=False, highlight=False)


def print_phase(console, entry: dict[str, Any]) -> None:
    """The line of a training phase: time, loss and mu_e."""
    if entry["phase"] == "initial":
        loss = f"loss {entry['loss_per_epoch'][-1]:.3g}" if entry["loss_per_epoch"] else "no epochs"
    else:
        loss = f"loss normal {entry['loss_normal']:.3g} push {entry['loss_push']:.3g}"
    console.print(
        f"{entry['phase']}: {entry['seconds']:.1f} s, {loss}, mu_e={entry['mu_e']:.3g}",
        markup=False,
        highlight=False,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
