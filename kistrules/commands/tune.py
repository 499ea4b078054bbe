"""`kistrules tune` and `kistrules suggest`: calibrate a rulebook, or propose rules, on a few
annotated images.

Both take a trained run (`--model`), the data set (`--data`) and a folder of
the expert's masks (`--masks`), measure the run's residual regions on the
annotated images once (kist_train.tune) and hand them to kistrules.tuning.
Neither ever changes the input rulebook: `tune` writes a new one (`--out`),
`suggest` prints rules and writes them only where asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kist_train.config import DEVICE_HELP
from kistrules.commands.common import one_line_errors, stderr

ModelOption = Annotated[Path, typer.Option("--model", help="Run directory of `kistrules train`.")]
DataOption = Annotated[Path, typer.Option("--data", help="Data set root (the run's layout).")]
MasksOption = Annotated[
    Path,
    typer.Option(
        "--masks",
        help="Folder of the expert's masks, <image stem>_mask.png, for images of "
        "DATA/train/anomalous or DATA/test/<defect> (e.g. DATA/ground_truth).",
    ),
]
ImagesOption = Annotated[
    int | None,
    typer.Option("--images", help="Use only this many annotated images, dealt per defect type."),
]
GridOption = Annotated[
    bool,
    typer.Option("--grid", help="Compare on the working grid where training uses the labels."),
]
DeviceOption = Annotated[str, typer.Option(help=DEVICE_HELP)]


def _say(message: str) -> None:
    stderr.print(message, markup=False, highlight=False)


def _check_out(out: Path, inputs: list[Path], command: str) -> None:
    from kistrules.outputs import refuse_inputs, require_replaceable, rules_written_by

    refuse_inputs([out], inputs, command=command)
    require_replaceable(out, command=command, ours=rules_written_by(command))


def _write(out: Path, text: str, inputs: list[Path], command: str) -> None:
    from kistrules.atomic import atomic_write_text

    _check_out(out, inputs, command)  # again: it may have appeared while we searched
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)


def tune_command(
    rulebook: Annotated[Path, typer.Argument(help="The expert's .rules file (never changed).")],
    model: ModelOption,
    data: DataOption,
    masks: MasksOption,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to write the tuned rulebook; replaces only an unchanged earlier "
            "output of tune, never the input.",
        ),
    ],
    images: ImagesOption = None,
    min_recall: Annotated[
        float | None,
        typer.Option(
            "--min-recall",
            help="Keep label recall at least this (a fraction: 0.02 = 2 % of the mask pixels; "
            "default: half the original rulebook's recall).",
        ),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-validation folds for the held-out figure.")
    ] = 5,
    grid: GridOption = False,
    device: DeviceOption = "auto",
) -> None:
    """Tune a rulebook's scales, set breakpoints and threshold for precise labels on a few
    annotated images; structure unchanged, figures held out from the search."""
    with one_line_errors():
        from kist_train.tune import load_annotated
        from kistrules.api import load, loads
        from kistrules.compiler import compile_rulebook
        from kistrules.errors import UsageError
        from kistrules.files import require_regular_file
        from kistrules.outputs import sign_rules
        from kistrules.resolve import resolve
        from kistrules.tuning.protocol import require_tunables, tune
        from kistrules.tuning.report import format_tuning, header_lines
        from kistrules.tuning.rewrite import tuned_text

        if min_recall is not None and not 0.0 <= min_recall <= 1.0:
            raise UsageError(f"--min-recall must be a fraction in [0, 1], got {min_recall!r}")
        if folds < 2:
            raise UsageError(f"--folds must be at least 2, got {folds}")
        _check_out(out, [rulebook], "tune")
        book = load(require_regular_file(rulebook, "rulebook"))
        require_tunables(book)  # before the model is loaded
        annotated = load_annotated(
            model,
            data,
            masks,
            properties=resolve(book).properties,
            images=images,
            grid=grid,
            device=device,
            progress=_say,
        )
        tuning = tune(book, annotated.evidence, min_recall=min_recall, folds=folds, progress=_say)
        name = rulebook.name
        header = header_lines(tuning, name)
        text = tuned_text(book, tuning.tunables, tuning.result.values, header=header)
        text = sign_rules("tune", text)
        tuned = loads(text, str(out))
        run = annotated.run
        source = rulebook.read_text(encoding="utf-8")
        before = annotated.audit(
            compile_rulebook(resolve(book), device=run.device), rulebook=str(rulebook), text=source
        )
        after = annotated.audit(
            compile_rulebook(resolve(tuned), device=run.device), rulebook=str(out), text=text
        )
        _write(out, text, [rulebook], "tune")
    typer.echo("before:\n" + before.format_text())
    typer.echo("\nafter:\n" + after.format_text())
    typer.echo("\n" + format_tuning(tuning, name))
    _say(f"written {out}")


def suggest_command(
    model: ModelOption,
    data: DataOption,
    masks: MasksOption,
    rulebook: Annotated[
        Path | None,
        typer.Option(
            "--rulebook",
            help="The expert's .rules file: its scales are used, its labels shown for comparison.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the suggested rulebook here (replaces only an unchanged earlier "
            "output of suggest).",
        ),
    ] = None,
    images: ImagesOption = None,
    rules: Annotated[int, typer.Option("--rules", help="At most this many rules.")] = 3,
    depth: Annotated[int, typer.Option("--depth", help="At most this many terms a rule.")] = 2,
    min_recall: Annotated[
        float,
        typer.Option(
            "--min-recall", help="Each rule labels at least this fraction of the mask pixels."
        ),
    ] = 0.05,
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-validation folds for the held-out figure.")
    ] = 5,
    grid: GridOption = False,
    device: DeviceOption = "auto",
) -> None:
    """Propose readable rules (a shallow tree over the region properties, one rule a leaf)
    from a few annotated images, for an expert to read, keep or drop; nothing is applied."""
    with one_line_errors():
        from kist_train.tune import load_annotated
        from kistrules.api import load
        from kistrules.errors import UsageError
        from kistrules.files import require_regular_file
        from kistrules.outputs import sign_rules
        from kistrules.resolve import resolve
        from kistrules.tuning.suggest import measure, suggest

        if not 0.0 <= min_recall <= 1.0:
            raise UsageError(f"--min-recall must be a fraction in [0, 1], got {min_recall!r}")
        if rules < 1 or depth < 1 or folds < 2:
            raise UsageError("--rules and --depth must be at least 1, --folds at least 2")
        inputs = [rulebook] if rulebook is not None else []
        if out is not None:
            _check_out(out, inputs, "suggest")
        book = load(require_regular_file(rulebook, "rulebook")) if rulebook is not None else None
        annotated = load_annotated(
            model, data, masks, properties=None, images=images, grid=grid, device=device,
            progress=_say,
        )  # fmt: skip
        scales = {p: resolve(book).scales[p] for p in book.scales} if book is not None else None
        found = suggest(
            annotated.evidence,
            scales=scales,
            max_rules=rules,
            depth=depth,
            min_recall=min_recall,
            folds=folds,
        )
        expert = measure(annotated.evidence, book.source) if book is not None else None
        if out is not None and found.text:
            _write(
                out, sign_rules("suggest", "# kistrules suggest\n" + found.text), inputs, "suggest"
            )
    if not found.text:
        typer.echo(
            "no rule found: no cut of one property leaves regions holding "
            f"{100 * min_recall:.1f} % of the mask pixels more precisely than all regions"
        )
        return
    typer.echo(found.text, nl=False)
    if expert is not None:
        typer.echo(
            f"\nyour rulebook {rulebook}: {_pct(expert.precision)} % precise at "
            f"{_pct(expert.recall)} % recall on the same images"
        )
    if out is not None:
        _say(f"written {out}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
