"""CLI commands of the training engine: train, predict, evaluate, audit.

Each parses its options, calls kist_train, prints, and turns a KistrulesError
into one line on stderr with the error's exit code (2 for usage errors).
torch and kist_train are imported inside the commands, so `check` starts fast.
"""

from __future__ import annotations

import inspect
import json
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from kist_train.config import DEVICE_HELP, MASK_THRESHOLD
from kistrules.commands.common import MaskThreshold, one_line_errors, stderr

# The fields that mark a JSON file as an earlier output of a command: only such a file is
# replaced by the command's --json (kistrules.outputs), never a user's file or an input.
AUDIT_FIELDS = ("run_dir", "rulebook_sha256", "rows")


def _check_json_out(path: Path, inputs: list[Path], *, command: str, fields: tuple) -> None:
    from kistrules.outputs import json_with_fields, refuse_inputs, require_replaceable

    refuse_inputs([path], inputs, command=command)
    require_replaceable(path, command=command, ours=json_with_fields(*fields))


def _write_json(path: Path, data: dict, *, command: str, fields: tuple) -> None:
    from kistrules.atomic import atomic_write_text

    _check_json_out(path, [], command=command, fields=fields)  # again: it may have appeared since
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def _interruptible():
    """Ctrl-C: the engine saved the phase in flight at its last epoch end (RUN_DIR/partial)
    and raised engine.Interrupted, a KeyboardInterrupt; --resume continues from there."""
    try:
        yield
    except KeyboardInterrupt:
        stderr.print("interrupted; resume with --resume", markup=False, highlight=False)
        raise typer.Exit(130) from None


def _launch(config, nproc: int, *, resume: bool, force: bool, stop_after: str | None) -> int:
    """Run this training in `nproc` DDP processes (torchrun) and return its exit code."""
    import signal
    import subprocess

    from kist_train.distributed import check_divisible, torchrun_command
    from kistrules.errors import UsageError

    if nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {nproc!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--nproc inside a torchrun job: launch either torchrun or --nproc")
    config.validate()
    check_divisible(config.batch_size, config.anomalous_per_batch, nproc)
    options = config.to_argv()
    options += ["--resume"] * resume + ["--force"] * force + ["--no-progress"]
    if stop_after is not None:
        options += ["--stop-after", stop_after]
    # Ctrl-C reaches torchrun and its workers too: wait while they save the epoch, then stop.
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        code = subprocess.run(torchrun_command(options, nproc), check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted and code != 0:
        raise KeyboardInterrupt
    return code


# The options of `train` that are not part of the run's TrainConfig.
_RUN_OPTIONS = {
    "resume": (
        Annotated[bool, typer.Option("--resume", help="Continue from the last complete phase.")],
        False,
    ),
    "force": (
        Annotated[
            bool,
            typer.Option(
                "--force", help="Replace an existing run (deletes only the run's own files)."
            ),
        ],
        False,
    ),
    "progress": (Annotated[bool, typer.Option("--progress/--no-progress")], True),
    "stop_after": (
        Annotated[str | None, typer.Option(help="Stop after this phase (e.g. initial, update_2).")],
        None,
    ),
    "nproc": (
        Annotated[
            int,
            typer.Option(
                "--nproc", help="DDP processes on this machine (launched with torchrun; 1 = none)."
            ),
        ],
        1,
    ),
}
_TYPES = {"str": str, "str | None": str | None, "int": int, "float": float, "bool": bool}


def config_options() -> list[inspect.Parameter]:
    """One typer option per TrainConfig field: its flag, help and default from the field."""
    import dataclasses

    from kist_train.config import TrainConfig, option_flag

    out = []
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        kind = _TYPES[str(field.type)]
        if meta["path"]:
            kind = Path | None if field.default is None else Path
        flag = option_flag(field)
        decls = [f"{flag}/{meta['off']}"] if meta["off"] else [*meta["aliases"], flag]
        annotation = Annotated[kind, typer.Option(*decls, help=meta["help"])]
        default = inspect.Parameter.empty if meta["required"] else field.default
        out.append(inspect.Parameter(field.name, KEYWORD, default=default, annotation=annotation))
    return out


def config_from_options(options: dict):
    """The TrainConfig of `train`'s parsed options (paths as strings, as the config keeps them)."""
    import dataclasses

    from kist_train.config import TrainConfig

    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = options[field.name]
        values[field.name] = str(value) if field.metadata["path"] and value is not None else value
    return TrainConfig(**values)


def _train(*, resume: bool, force: bool, progress: bool, stop_after, nproc: int, **options):
    """Train a reconstruction model with KIST (Algorithm 1), or the equal-training baseline."""
    with one_line_errors(), _interruptible():
        from kist_train.engine import train

        config = config_from_options(options)
        if nproc != 1:
            code = _launch(config, nproc, resume=resume, force=force, stop_after=stop_after)
            raise typer.Exit(code)
        run_dir = train(
            config,
            resume=resume,
            force=force,
            console=stderr,
            progress=progress,
            stop_after=stop_after,
        )
    if os.environ.get("RANK", "0") == "0":  # DDP: rank 0 alone prints
        typer.echo(str(run_dir))


def _train_command():
    """`_train` with a signature typer reads: TrainConfig's options, then the run options."""

    def train_command(**options) -> None:
        _train(**options)

    parameters = config_options() + [
        inspect.Parameter(name, KEYWORD, default=default, annotation=annotation)
        for name, (annotation, default) in _RUN_OPTIONS.items()
    ]
    train_command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    train_command.__annotations__ = {p.name: p.annotation for p in parameters}
    train_command.__doc__ = _train.__doc__
    return train_command


KEYWORD = inspect.Parameter.KEYWORD_ONLY
train_command = _train_command()


def predict_command(
    model: Annotated[Path, typer.Option("--model", help="Run directory of `kistrules train`.")],
    inputs: Annotated[
        list[Path], typer.Option("--input", help="Image folder or image files (repeatable).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for the maps: OUT/NAME.tiff, OUT/NAME.png and OUT/predict.json, which "
            "lists every file predict wrote with its SHA-256. An existing file is replaced only "
            "if predict.json lists it unchanged, and never an input image; otherwise predict "
            "refuses before writing anything.",
        ),
    ],
    no_filter: Annotated[
        bool, typer.Option("--no-filter", help="Raw residuals, no guided filter.")
    ] = False,
    overlays: Annotated[bool, typer.Option("--overlays/--no-overlays")] = True,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Write float32 TIFF anomaly maps at original resolution (and PNG overlays)."""
    with one_line_errors():
        from kist_train.predict import load_run, write_predictions

        run = load_run(model, device=device)
        written = write_predictions(run, inputs, out, filter=not no_filter, overlays=overlays)
    typer.echo(f"{len(written)} maps written to {out}")


def evaluate_command(
    model: Annotated[Path, typer.Option("--model", help="Run directory of `kistrules train`.")],
    data: Annotated[Path, typer.Option("--data", help="Data set root with test/ and masks.")],
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Where to write (default RUN/evaluation.json, or evaluation_PHASE.json); "
            "replaces only an earlier evaluate output.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    phase: Annotated[
        str | None, typer.Option(help="Checkpoint to evaluate (e.g. update_2; default: the last).")
    ] = None,
    mask_threshold: MaskThreshold = MASK_THRESHOLD,
) -> None:
    """Pixel AUROC, AUPRO and image AUROC (%), with and without the guided filter."""
    with one_line_errors():
        from kist_train.evaluate import EVALUATE_FIELDS, evaluate_run, format_table
        from kist_train.rundir import lock_if_run

        default_name = f"evaluation_{phase}.json" if phase else "evaluation.json"
        target = json_path or model / default_name
        _check_json_out(target, [], command="evaluate", fields=EVALUATE_FIELDS)
        # Writing into a run: hold its lock, as training does (a second writer refuses).
        inside = model.resolve() in target.resolve().parents
        with lock_if_run(model) if inside else nullcontext():
            result = evaluate_run(
                model, data, device=device, phase=phase, mask_threshold=mask_threshold
            )
            _write_json(target, result, command="evaluate", fields=EVALUATE_FIELDS)
    typer.echo(format_table(result))
    stderr.print(f"written {target}", markup=False, highlight=False)


def audit_command(
    model: Annotated[Path, typer.Option("--model", help="Run directory of `kistrules train`.")],
    rulebook: Annotated[Path, typer.Option("--rulebook", help=".rules file to audit.")],
    data: Annotated[Path, typer.Option("--data", help="Data set root with test/ and masks.")],
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Also write JSON here (replaces only an earlier audit output)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    phase: Annotated[
        str | None, typer.Option(help="Checkpoint to audit (e.g. update_2; default: the last).")
    ] = None,
    grid: Annotated[
        bool,
        typer.Option("--grid", help="Compare on the working grid where training uses the labels."),
    ] = False,
    per_image: Annotated[
        bool,
        typer.Option("--per-image", help="Also list the labelled images, most wrong pixels first."),
    ] = False,
    mask_threshold: MaskThreshold = MASK_THRESHOLD,
    label_erosion: Annotated[
        int | None,
        typer.Option(
            "--label-erosion",
            help="Audit only the labels' interior, this many px in, as training with "
            "--label-erosion pushes them (default: the run's own setting).",
        ),
    ] = None,
    label_min_sigmas: Annotated[
        float | None,
        typer.Option(
            "--label-min-sigmas",
            help="Audit only labelled pixels with e >= mu_e + this * sigma_e, as training "
            "with --label-min-sigmas pushes them (default: the run's own setting).",
        ),
    ] = None,
) -> None:
    """Pseudo-label precision / recall of a rulebook on the anomalous test images."""
    with one_line_errors():
        from kist_train.audit import audit_rulebook

        if json_path is not None:
            _check_json_out(json_path, [rulebook], command="audit", fields=AUDIT_FIELDS)
        report = audit_rulebook(
            model,
            rulebook,
            data,
            device=device,
            phase=phase,
            grid=grid,
            mask_threshold=mask_threshold,
            label_erosion=label_erosion,
            label_min_sigmas=label_min_sigmas,
        )
        if json_path is not None:
            _write_json(json_path, report.to_dict(), command="audit", fields=AUDIT_FIELDS)
    typer.echo(report.format_text())
    if per_image:
        typer.echo("\n" + report.format_images())
