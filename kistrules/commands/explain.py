"""CLI commands: explain (why regions got their grades), plot (membership functions), demo.

Each parses its options, calls the library (`kistrules.explain`, `kistrules.plot`,
`kist_train.demo`), renders and picks the exit code: 0 done, 1 a data or
rulebook error, 2 a usage error. A `KistrulesError` becomes one line on stderr.
torch and kist_train are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kist_train.config import DEVICE_HELP, MASK_THRESHOLD
from kistrules.commands.common import MaskThreshold, one_line_errors, stderr, stdout_console
from kistrules.errors import UsageError
from kistrules.files import require_regular_file


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def _existing(path: Path, what: str) -> Path:
    """`path` if it exists; a file argument must be a regular file (a FIFO would block)."""
    if what != "run directory":
        return require_regular_file(path, what)
    if not path.exists():
        raise UsageError(f"{path}: no such {what}")
    return path


def _check_rule(name: str | None, rule_names: tuple[str, ...], rulebook: Path) -> str | None:
    if name is None:
        return None
    from kistrules.checker import did_you_mean

    wanted = name.strip().lower()
    if wanted in rule_names:
        return wanted
    guess = did_you_mean(wanted, rule_names)
    hint = f"; did you mean {guess!r}?" if guess else f" (rules: {', '.join(rule_names)})"
    raise UsageError(f"--why-not: {rulebook} has no rule {name!r}{hint}")


def run_explain(
    image_path: Path,
    rulebook_path: Path,
    *,
    mask: Path | None = None,
    residual: Path | None = None,
    model: Path | None = None,
    mu: float | None = None,
    sigma: float | None = None,
    s: float | None = None,
    device: str = "auto",
    mask_threshold: float = MASK_THRESHOLD,
):
    """Load everything an explanation needs and explain; returns (scorer, ExplainResult)."""
    from kist_train.data import read_gray, read_mask
    from kist_train.decoding import read_float_map
    from kistrules import explain
    from kistrules.api import load

    sources = [n for n, v in (("--mask", mask), ("--residual", residual)) if v is not None]
    if model is not None and residual is None:
        sources.append("--model")
    if not sources:
        raise UsageError("give a region source: --mask MASK, --residual MAP or --model RUN_DIR")
    if len(sources) > 1:
        raise UsageError(f"give one region source, not {' and '.join(sources)}")
    if mask is not None and (model is not None or mu is not None or sigma is not None):
        raise UsageError("--mask takes no --model, --mu or --sigma (its regions are given)")
    if mask is None and mask_threshold != MASK_THRESHOLD:
        raise UsageError("--mask-threshold applies to --mask only")
    image = read_gray(_existing(image_path, "image file"))
    rulebook = load(_existing(rulebook_path, "rulebook file"))
    run = None
    if model is not None:
        from kist_train.predict import load_run

        run = load_run(_existing(model, "run directory"), device=device)
    from kist_train.device import resolve_device
    from kistrules.compiler import compile_rulebook
    from kistrules.resolve import resolve

    on = run.device if run is not None else resolve_device(device)  # the one --device parser
    scorer = compile_rulebook(resolve(rulebook), device=on)
    if mask is not None:
        truth = read_mask(_existing(mask, "mask file"), mask_threshold)
        return scorer, explain.explain_mask(scorer, image, truth)
    if residual is not None:
        if run is not None:
            mu = run.mu_e if mu is None else mu
            sigma = run.sigma_e if sigma is None else sigma
            s = float(run.config.s) if s is None else s
        if mu is None or sigma is None:
            raise UsageError(
                "--residual needs mu_e and sigma_e: give --model RUN_DIR or --mu/--sigma"
            )
        result = explain.explain_residual(
            scorer,
            image,
            read_float_map(_existing(residual, "residual map")),
            mu=mu,
            sigma=sigma,
            s=0.3 if s is None else s,
        )
        return scorer, result
    from kist_train.explain import explain_model

    return scorer, explain_model(scorer, image, run)


def _short_cf(region, why_not: str | None) -> str:
    """The nearest counterfactual among the rules that missed (or the focused rule's)."""
    rules = [r for r in region.rules if why_not is None or r.name == why_not]
    if why_not is not None and rules and rules[0].reaches_threshold:
        return "fires"
    if why_not is None and region.fired:
        return ""
    found = [r.counterfactual for r in rules if r.counterfactual is not None]
    if found:
        return min(found, key=lambda c: c.change).text
    pairs = [r.pair_counterfactual for r in rules if r.pair_counterfactual is not None]
    if pairs:
        return min(pairs, key=lambda c: c.change).text
    reasons = [r.no_counterfactual_reason for r in rules if r.no_counterfactual_reason]
    if reasons and why_not is not None:
        return reasons[0]
    return "no change of one or two properties fires a rule"


def _limiting(rule) -> str:
    """The limiting term; every term at 0 when several are (changing one cannot help)."""
    if len(rule.zero_terms) > 1:
        return f"{', '.join(rule.zero_terms)} (all 0)"
    return rule.limiting_term


def print_explanation(console, scorer, result, *, verbose: bool, why_not: str | None, title: str):
    """One table row per region; --verbose adds each region's properties, terms and rules."""
    from kistrules.explain import grade_text

    table = Table(title=title, title_justify="left", header_style="bold")
    # overflow="fold": on a narrow terminal a long rule name wraps, it is never cut.
    for column in ("id", "t", "bbox r0,c0,r1,c1", "px", "grade", ">= alpha", "fired"):
        table.add_column(
            column,
            justify="right" if column in ("id", "t", "px", "grade") else "left",
            overflow="fold",
        )
    if scorer.class_names:  # a class-aware rulebook: the class each labelled region gets
        table.add_column("class")
    if why_not is not None:
        table.add_column(f"{why_not} output", overflow="fold")
        table.add_column("limiting term", overflow="fold")
    table.add_column("nearest change" if why_not is None else f"why not {why_not}", overflow="fold")
    for region in result.regions:
        row = [
            str(region.id),
            "-" if region.threshold is None else f"{region.threshold:.4g}",
            ",".join(map(str, region.bbox)),
            str(region.pixel_count),
            grade_text(region.grade, scorer.threshold),
            "yes" if region.fired else "no",
            region.winner or "none",
        ]
        if scorer.class_names:
            row.append(region.defect_class or "-")
        if why_not is not None:
            rule = next(r for r in region.rules if r.name == why_not)
            row += [grade_text(rule.output, scorer.threshold), _limiting(rule)]
        row.append(_short_cf(region, why_not))
        table.add_row(*[escape(c) for c in row])
    console.print(table)
    if not result.regions:
        console.print("no regions found")
    if verbose:
        for region in result.regions:
            _render_region(console, region, why_not, scorer.threshold)
    console.print(
        f"alpha = {scorer.threshold:g}; {sum(r.fired for r in result.regions)} of "
        f"{len(result.regions)} regions reach it; pseudo-label: "
        f"{int(result.pseudo_label.sum())} pixels",
        highlight=False,
    )


def _render_region(console, region, why_not: str | None, alpha: float) -> None:
    from kistrules.explain import grade_text

    props = ", ".join(
        f"{p} {v['raw']:.4g} (v'={v['standardised']:.3f})" for p, v in region.properties.items()
    )
    console.print(f"[bold]region {region.id}[/]: {escape(props)}", highlight=False)
    detail = Table(show_header=True, header_style="dim", box=None, padding=(0, 2))
    for column in ("rule", "term", "truth", "rule output", "limiting"):
        detail.add_column(column, overflow="fold")
    notes = []
    terms_of: dict[str, list] = {}
    for term in region.terms:  # grouped once: a scan per rule was quadratic in rules
        terms_of.setdefault(term.rule, []).append(term)
    for rule in region.rules:
        if why_not is not None and rule.name != why_not:
            continue
        terms = terms_of.get(rule.name, [])
        zeros = set(rule.zero_terms) if len(rule.zero_terms) > 1 else set()
        for i, term in enumerate(terms):
            output = grade_text(rule.output, alpha) + (
                " >= alpha" if rule.reaches_threshold else ""
            )
            detail.add_row(
                escape(rule.name) if i == 0 else "",
                escape(term.term),
                f"{term.truth:.3f}",
                output if i == 0 else "",
                "<- limiting"
                if term.term == rule.limiting_term
                else "<- also 0"
                if term.term in zeros
                else "",
            )
        if not rule.reaches_threshold:
            notes.append(f"  why not {rule.name}: {_why_not(rule)}")
    console.print(detail)
    for note in notes:
        console.print(escape(note), highlight=False)


def _why_not(rule) -> str:
    """The change that would make a missed rule fire, or why there is none."""
    if rule.counterfactual is not None:
        return rule.counterfactual.text
    if rule.pair_counterfactual is not None:
        return f"{rule.no_counterfactual_reason}; {rule.pair_counterfactual.text}"
    return rule.no_counterfactual_reason or ""


def _check_png_out(out: Path, inputs: list[Path | None], *, command: str) -> None:
    """Refuse an --out that is one of the inputs, or an existing file not written by `command`."""
    from kistrules.outputs import png_written_by, refuse_inputs, require_replaceable

    refuse_inputs([out], [p for p in inputs if p is not None], command=command)
    require_replaceable(out, command=command, ours=png_written_by(command))


def explain_command(
    image: Annotated[Path, typer.Argument(help="The image to explain.")],
    rulebook: Annotated[Path, typer.Option("--rulebook", "-r", help="The .rules file.")],
    mask: Annotated[
        Path | None, typer.Option(help="Regions = 8-connected components of this mask.")
    ] = None,
    residual: Annotated[
        Path | None, typer.Option(help="Regions of this residual map (TIFF) at eq. 9's thresholds.")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Run directory: reconstruct with it (or give mu/sigma for --residual)."),
    ] = None,
    mu: Annotated[float | None, typer.Option(help="mu_e for --residual.")] = None,
    sigma: Annotated[float | None, typer.Option(help="sigma_e for --residual.")] = None,
    s: Annotated[float | None, typer.Option(help="Threshold step of eq. 9 (default 0.3).")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="text | json")] = (
        OutputFormat.text
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Add every term.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write an overlay PNG (replaces only an earlier explain overlay, never an input).",
        ),
    ] = None,
    why_not: Annotated[str | None, typer.Option("--why-not", help="Focus on one rule.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    mask_threshold: MaskThreshold = MASK_THRESHOLD,
) -> None:
    """Show an image's regions, what they measure, which rule fired and why others did not."""
    with one_line_errors():
        if out is not None:  # before any work: never over an input or a user's file
            _check_png_out(out, [image, rulebook, mask, residual], command="explain")
        scorer, result = run_explain(
            image,
            rulebook,
            mask=mask,
            residual=residual,
            model=model,
            mu=mu,
            sigma=sigma,
            s=s,
            device=device,
            mask_threshold=mask_threshold,
        )
        focus = _check_rule(why_not, scorer.rule_names, rulebook)
        if output_format is OutputFormat.json:
            from kistrules.explain import explain_document

            document = explain_document(
                scorer, result, image=image, rulebook=rulebook, why_not=focus
            )
            # Streamed: the text of a large image's regions is never one string.
            json.dump(document, sys.stdout, indent=2)
            print()
        else:
            title = f"{image.name}: regions from {result.source}"
            print_explanation(
                stdout_console(), scorer, result, verbose=verbose, why_not=focus, title=title
            )
        if out is not None:
            from kistrules.overlay import write_overlay

            written = write_overlay(scorer, result, out, title=f"{image.name} ({result.source})")
            stderr.print(f"overlay written to {escape(str(written))}", highlight=False)


def plot_command(
    rulebook: Annotated[Path, typer.Argument(help="The .rules file.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="PNG to write (replaces only an earlier plot PNG)."),
    ] = Path("sets.png"),
) -> None:
    """Draw the membership functions of every property the rulebook uses, one panel each."""
    from kistrules.api import load
    from kistrules.overlay import save_png
    from kistrules.plot import render_sets
    from kistrules.resolve import resolve

    with one_line_errors():
        _check_png_out(out, [rulebook], command="plot")
        resolved = resolve(load(_existing(rulebook, "rulebook file")))
        written = save_png(render_sets(resolved), out, command="plot")
        stderr.print(f"membership plot written to {escape(str(written))}", highlight=False)


def demo_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Directory for data, runs and pictures: new, empty, or an earlier demo's "
            "(replaced; refused if it holds any file the demo did not write).",
        ),
    ] = Path("kist-demo"),
    fast: Annotated[bool, typer.Option("--fast", help="A smoke run under a minute.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of data and training.")] = 0,
) -> None:
    """Make a small defect data set, train baseline and KIST on the CPU, and compare them."""
    from kist_train.demo import run_demo

    with one_line_errors():
        run_demo(out, fast=fast, seed=seed, console=stdout_console())
