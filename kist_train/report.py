"""`kistrules report`: what one run did and how well, gathered for one self-contained HTML page.

`build_report` reads the run only through the engine's public readers
(`load_run`, `read_log`, `complete_phases`) and, given the data set, computes:

- the evaluation of every training phase (or only the last, `phases="last"`)
  of the run and of its control, by `kist_train.evaluate` (one forward pass a
  phase, both columns);
- the label audit of the rulebook the run trained with (its text is in the
  checkpoint) on the anomalous test images, by `kist_train.audit`, and the
  overlays of the worst-labelled images by `kist_train.explain.explain_model`;
- a heat overlay of every test image with the final model
  (`kist_train.predict.heat_overlay`, the run's fixed scale), outlined with its
  mask and sorted by error (`map_error`).

Labels phases are not evaluated: they change no weight. `kist_train.report_page`
renders the result; `write_report` writes it where `kistrules.outputs` allows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kist_train.config import MASK_THRESHOLD, check_mask_threshold
from kistrules.errors import UsageError

PHASE_CHOICES = ("all", "last")
COMMAND = "report"
WORST_IMAGES = 3  # audit: this many with the most wrongly labelled, and most missed, pixels
THUMB_SIDE = 128  # px, longest side of a test-set overlay (a 181-image MTD page: see docs)
AUDIT_SIDE = 256  # px, shortest side an audit overlay's image is enlarged to
MASK_OUTLINE = (0, 220, 255)  # cyan: apart from every colour of the heat map


@dataclass(frozen=True)
class Picture:
    """An image ready for the page: a PNG data: URI, its size and a caption."""

    uri: str
    width: int
    height: int
    caption: str

    @classmethod
    def of(cls, picture, caption: str) -> Picture:
        from kist_train.html import png_data_uri

        return cls(png_data_uri(picture), picture.width, picture.height, caption)


@dataclass(frozen=True)
class ScoredImage:
    """One test image with the final model: its overlay and how wrong its map is."""

    image: str  # path under the data root, e.g. test/crack/x.jpg
    defect: str  # "good" for a normal image
    error: float  # map_error against its mask, 0 (right) to 1
    score: float  # the image score: the map's maximum
    picture: Picture


@dataclass
class Arm:
    """One run as the page shows it: its final checkpoint's meta, log and evaluations."""

    name: str  # "KIST" or "control"
    run_dir: Path
    meta: dict[str, Any]
    log: list[dict[str, Any]]
    phases: list[str]  # complete phases, in training order
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase -> evaluate

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config") or {})


@dataclass
class RunReport:
    """Everything the page shows, computed; rendering computes nothing."""

    run: Arm
    control: Arm | None
    data_dir: str | None
    phases: str  # "all" or "last": which phases were evaluated
    rulebook_text: str | None
    rule_names: tuple[str, ...] = ()
    sets_plot: Picture | None = None
    audit: Any = None  # kist_train.audit.AuditReport, with --data and a rulebook
    # (AuditImage, overlay): most pixels labelled outside the mask, then most mask pixels missed
    worst_labelled: list[tuple[Any, Picture]] = field(default_factory=list)
    worst_missed: list[tuple[Any, Picture]] = field(default_factory=list)
    test_images: list[ScoredImage] = field(default_factory=list)  # worst first
    overlay_vmax: float | None = None


# --- pieces -------------------------------------------------------------------------------------


def training_phases(arm: Arm) -> list[str]:
    """The complete phases that end with new weights: initial and update_i (not labels_i)."""
    return [p for p in arm.phases if not p.startswith("labels_")]


def map_error(amap: np.ndarray, mask: np.ndarray, vmax: float) -> float:
    """How wrong one anomaly map is, 0 to 1, at the run's fixed overlay scale.

    With t = clip(map / vmax, 0, 1), the heat each pixel shows: the mean of t
    over normal pixels (false alarm) and of 1 - t over defect pixels (miss),
    averaged over the kinds of pixel the image has, so a small defect weighs
    as much as the background around it.
    """
    t = np.clip(np.asarray(amap, dtype=np.float64) / max(vmax, 1e-12), 0.0, 1.0)
    truth = np.asarray(mask) != 0
    parts = []
    if (~truth).any():
        parts.append(float(t[~truth].mean()))
    if truth.any():
        parts.append(1.0 - float(t[truth].mean()))
    return sum(parts) / len(parts)


def heat_picture(image: np.ndarray, amap: np.ndarray, mask: np.ndarray, vmax: float):
    """The heat overlay at most THUMB_SIDE px long, the mask's outline drawn on it in cyan."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    from kist_train.predict import heat_overlay

    picture = Image.fromarray(heat_overlay(image, amap, vmax))
    truth = Image.fromarray((np.asarray(mask) != 0).astype(np.uint8) * 255)
    scale = THUMB_SIDE / max(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BOX)
        truth = truth.resize(size, Image.Resampling.NEAREST)
    rgb = np.array(picture)
    rgb[find_boundaries(np.asarray(truth) > 127, mode="inner")] = MASK_OUTLINE
    return Image.fromarray(rgb)


def _arm(name: str, run, log_dir: Path) -> Arm:
    from kist_train.checkpoints import complete_phases
    from kist_train.config import phase_names
    from kist_train.phase_store import read_log

    done = set(complete_phases(log_dir))
    order = phase_names(run.config.iterations)
    phases = [p for p in order if p in done]
    return Arm(name, Path(run.run_dir), dict(run.meta), read_log(log_dir), phases)


def _progress(console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


# --- gathering ----------------------------------------------------------------------------------


def build_report(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    control: str | Path | None = None,
    phases: str = "all",
    device: str = "auto",
    threads: int = 0,
    console=None,
    progress: bool = True,
    mask_threshold: float = MASK_THRESHOLD,
) -> RunReport:
    """Gather the report of a run (and its control) on the test set of `data_dir`.

    Without `data_dir` the page holds the configuration, rulebook and training
    log only. `phases="last"` evaluates only the last training phase of each
    arm (one forward pass and metrics per arm instead of one per phase).
    `threads` > 0 sets torch's CPU threads meanwhile (1 on a busy machine: the
    demo's report took 9 s with one thread and 89 s with two on a shared 2-core CPU).
    `mask_threshold` binarises the test masks (`kist_train.data.read_mask`).
    """
    import torch

    if phases not in PHASE_CHOICES:
        raise UsageError(f"--phases must be one of {', '.join(PHASE_CHOICES)}, not {phases!r}")
    if threads < 0:
        raise UsageError(f"--threads must be >= 0, not {threads}")
    check_mask_threshold(mask_threshold)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _build(run_dir, data_dir, control, phases, device, console, progress, mask_threshold)
    finally:
        torch.set_num_threads(before)


def _build(
    run_dir, data_dir, control, phases, device, console, progress, mask_threshold
) -> RunReport:
    from kist_train.predict import load_run

    run = load_run(run_dir, device=device)
    arms = [_arm("KIST" if not run.config.baseline else "run", run, Path(run_dir))]
    if control is not None:
        arms.append(_arm("control", load_run(control, device=device), Path(control)))
    text = run.meta.get("rulebook_text")
    report = RunReport(
        run=arms[0],
        control=arms[1] if len(arms) > 1 else None,
        data_dir=None if data_dir is None else str(data_dir),
        phases=phases,
        rulebook_text=text,
    )
    scorer = None
    if text:
        from kistrules.api import loads
        from kistrules.plot import render_sets
        from kistrules.resolve import resolve

        rulebook = loads(text, f"{run_dir} (the rulebook it trained with)")
        from kistrules.compiler import compile_rulebook

        scorer = compile_rulebook(resolve(rulebook), device=run.device)
        report.rule_names = tuple(scorer.rule_names)
        if scorer.rule_names:  # render_sets refuses a rulebook without rules
            report.sets_plot = Picture.of(
                render_sets(resolve(rulebook)), "membership functions the rules use"
            )
    if data_dir is None:
        return report

    from kist_train.data import load_dataset

    dataset = load_dataset(data_dir, mask_threshold=mask_threshold)
    dataset.require_test()
    plan = [
        (arm, phase)
        for arm in arms
        for phase in (training_phases(arm) if phases == "all" else training_phases(arm)[-1:])
    ]
    with _progress(console, progress) as bar:
        task = bar.add_task("report", total=len(plan) + 2 * (scorer is not None) + 1)
        final_maps = None
        for arm, phase in plan:
            bar.update(task, description=f"evaluating {arm.name} {phase}")
            maps = _evaluate(arm, phase, dataset, device=device)
            if arm is report.run and phase == training_phases(arm)[-1]:
                final_maps = maps  # the final model's, for the test-set pictures
            bar.advance(task)
        if scorer is not None:
            bar.update(task, description="auditing the rulebook's labels")
            _audit(report, run, scorer, dataset)
            bar.advance(task)
            bar.update(task, description="drawing the worst-labelled images")
            _worst(report, run, scorer, dataset)
            bar.advance(task)
        bar.update(task, description="drawing the test set")
        if final_maps is not None:
            _test_images(report, dataset, *final_maps)
        bar.advance(task)
    return report


def _evaluate(arm: Arm, phase: str, dataset, *, device: str):
    """Evaluate one phase into `arm.evaluations`; returns its maps and overlay scale."""
    from kist_train.evaluate import evaluation_maps, score_maps
    from kist_train.predict import load_run

    run = load_run(arm.run_dir, device=device, phase=phase)
    maps = evaluation_maps(run, dataset)
    arm.evaluations[phase] = score_maps(run, dataset, maps)
    return maps, run.overlay_vmax


def _audit(report: RunReport, run, scorer, dataset) -> None:
    from kist_train.audit import audit_scorer

    report.audit = audit_scorer(
        run,
        scorer,
        dataset,
        rulebook=f"the rulebook {report.run.run_dir} trained with",
        text=report.rulebook_text or "",
        # What the run pushed: the labels' interior (--label-erosion) above its floor.
        label_erosion=run.config.label_erosion,
        label_min_sigmas=run.config.label_min_sigmas,
    )


def _worst(report: RunReport, run, scorer, dataset) -> None:
    """Overlays of the test images with the most pixels labelled outside their mask (what
    costs precision), and of those with the most mask pixels missed (recall)."""
    from kist_train.explain import explain_model
    from kistrules.overlay import explain_picture

    by_path = {item.path.relative_to(dataset.root).as_posix(): item for item in dataset.test}

    def picture(entry, caption: str) -> tuple[Any, Picture]:
        item = by_path[entry.image]
        result = explain_model(scorer, item.gray(), run, counterfactual=False)
        item.release()
        drawn = explain_picture(scorer, result, title=entry.image, min_side=AUDIT_SIDE)
        return entry, Picture.of(drawn, caption)

    images = report.audit.images
    labelled = sorted((i for i in images if i.fp), key=lambda i: (-i.fp, i.image))
    for entry in labelled[:WORST_IMAGES]:
        caption = f"{entry.image}: {entry.fp} px labelled outside the mask ({entry.tp} inside)"
        report.worst_labelled.append(picture(entry, caption))
    missed = sorted((i for i in images if i.fn), key=lambda i: (-i.fn, i.image))
    for entry in missed[:WORST_IMAGES]:
        caption = f"{entry.image}: {entry.fn} mask px not labelled ({entry.tp} labelled)"
        report.worst_missed.append(picture(entry, caption))


def _test_images(report: RunReport, dataset, maps, vmax: float) -> None:
    report.overlay_vmax = vmax
    scored = []
    for item, amap, mask in zip(maps.items, maps.filtered, maps.masks, strict=True):
        name = item.path.relative_to(dataset.root).as_posix()
        error = map_error(amap, mask, vmax)
        picture = heat_picture(item.gray(), amap, mask, vmax)
        item.release()
        caption = f"{name} ({item.defect}): error {error:.3f}, score {float(np.max(amap)):.4g}"
        scored.append(
            ScoredImage(name, item.defect, error, float(np.max(amap)), Picture.of(picture, caption))
        )
    report.test_images = sorted(scored, key=lambda s: (-s.error, s.image))


# --- writing ------------------------------------------------------------------------------------


def _files_under(roots: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every file in the run directories and data set the report reads (symlinks not followed)."""
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
        for folder, _, names in os.walk(root):
            files += [Path(folder) / name for name in names]
    return files


def check_out(out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse an --out that is a file of the run, control or data set (any spelling or link),
    or an existing file that is not an earlier report; before any work, and again on writing."""
    from kistrules.outputs import html_written_by, refuse_inputs, require_replaceable

    refuse_inputs([out], _files_under(inputs), command=COMMAND)
    require_replaceable(out, command=COMMAND, ours=html_written_by(COMMAND))


def write_report(
    page: str, out: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Write the page to `out` atomically, if `check_out` allows it; returns `out`."""
    from kistrules.atomic import atomic_write_bytes

    out = Path(out)
    check_out(out, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A lone surrogate (possible in JSON text) becomes a character reference, not an error.
    atomic_write_bytes(out, page.encode("utf-8", errors="xmlcharrefreplace"))
    return out
