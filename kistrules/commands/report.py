"""`kistrules report`: one self-contained HTML page about a run (kist_train.report).

The --out file is checked before any work (it may be neither a file of the
run, the control or the data set, nor an existing file that is not an earlier
report) and again when written, atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kist_train.config import DEVICE_HELP, MASK_THRESHOLD
from kistrules.commands.common import MaskThreshold, one_line_errors, stderr


def report_command(
    run: Annotated[Path, typer.Argument(help="Run directory of `kistrules train`.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="HTML file to write (replaces only an earlier report; never a file of the run, "
            "the control or the data set).",
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Data set root with test/ and masks: adds the evaluation per phase, the label "
            "audit and the test-set overlays.",
        ),
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option("--control", help="The run's control (e.g. its --baseline run), compared."),
    ] = None,
    phases: Annotated[
        str,
        typer.Option(
            "--phases",
            help="Evaluate every training phase (all) or only the last (last, faster).",
        ),
    ] = "all",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0 = torch default; 1 on a busy machine).")
    ] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    mask_threshold: MaskThreshold = MASK_THRESHOLD,
) -> None:
    """Write one HTML file about a run: configuration, rulebook, training log, label audit,
    evaluation per phase (beside its control) and the test set sorted by error.

    The page needs no network and no JavaScript: images are inline PNGs (test-set
    overlays at most 128 px on a side) and charts inline SVG.
    """
    with one_line_errors():
        from kist_train.report import build_report, check_out, write_report
        from kist_train.report_page import render_html

        inputs = [p for p in (run, control, data) if p is not None]
        check_out(out, inputs)  # before any work
        report = build_report(
            run,
            data,
            control=control,
            phases=phases,
            device=device,
            threads=threads,
            console=stderr,
            progress=progress,
            mask_threshold=mask_threshold,
        )
        written = write_report(render_html(report), out, inputs=inputs)
        size = written.stat().st_size
    stderr.print(f"report written to {escape(str(written))} ({size / 1e6:.1f} MB)", highlight=False)
