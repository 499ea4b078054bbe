"""The honest tuning protocol: tune on one half of the test masks, report on the other.

    .venv/bin/python scripts/tune_split.py DATA_DIR RUN_DIR OUT_DIR RULEBOOK [RULEBOOK ...]

The anomalous test images are dealt into two halves, per defect type in name
order (even places: half A, odd: half B). For each rulebook, each direction
(tune on A, report on B; tune on B, report on A) and each number of annotated
images N (5, 10, the whole half; `--images N` deals them per defect type),
`kistrules tune` runs on the tuning half's masks and writes
OUT_DIR/<rulebook>_<half>_<N>.rules; the label audit of the original and of the
tuned rulebook then runs on the other half, which the search never saw. Prints
one markdown table row per case: precision / recall on the tuning half (from
tune, fitted), tune's own cross-validated figure, and the other half's audit
(docs/results.md, "Tuning").
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from kist_train.audit import audit_scorer
from kist_train.data import MASK_SUFFIX, load_dataset
from kist_train.predict import load_run
from kist_train.tune import annotated_items
from kistrules.api import load
from kistrules.compiler import compile_rulebook
from kistrules.resolve import resolve

COUNTS = (5, 10, None)  # None: the whole half


def halves(data: Path, out: Path) -> dict[str, Path]:
    """Two mask folders of symbolic links, laid out like DATA/ground_truth; and beside
    them OUT/data_A, OUT/data_B: views of the data set whose test anomalies are one half
    (`kistrules evaluate --data OUT/data_B` scores a KIST run on half B only)."""
    by_defect: dict[str, list] = {}
    for item in load_dataset(data).require_test():
        if item.is_anomalous:
            by_defect.setdefault(item.defect, []).append(item)
    folders = {"A": out / "masks_A", "B": out / "masks_B"}
    for defect, items in sorted(by_defect.items()):
        for index, item in enumerate(sorted(items, key=lambda i: i.path.name)):
            folder = folders["AB"[index % 2]] / defect
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / f"{item.path.stem}{MASK_SUFFIX}"
            if not link.exists():
                link.symlink_to(item.mask_path.resolve())
            view = out / f"data_{'AB'[index % 2]}"
            for target, source in (
                (view / "test" / defect / item.path.name, item.path),
                (view / "ground_truth" / defect / link.name, item.mask_path),
            ):
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(source.resolve())
    for half in "AB":
        view = out / f"data_{half}"
        for shared in ("train", "test/good"):
            if not (view / shared).exists() and (data / shared).exists():
                (view / shared).parent.mkdir(parents=True, exist_ok=True)
                (view / shared).symlink_to((data / shared).resolve(), target_is_directory=True)
    return folders


def held_out_figures(run: Path, data: Path, masks: Path, rulebook: Path) -> tuple[float, float]:
    """Precision and recall (%) of a rulebook's labels on the images of `masks`: the audit."""
    dataset = load_dataset(data)
    loaded = load_run(run, device="cpu")
    book = load(rulebook)
    report = audit_scorer(
        loaded,
        compile_rulebook(resolve(book)),
        dataset,
        rulebook=str(rulebook),
        text=book.source,
        items=annotated_items(dataset, masks),
    )
    row = report.row("all")
    return 100 * (row.precision or 0.0), 100 * (row.recall or 0.0)


def tune_figures(stdout: str) -> dict[str, tuple[float, float]]:
    """The precision / recall lines tune printed."""
    found = {}
    for name in ("annotated images, original", "annotated images, tuned", "held out, tuned"):
        match = re.search(re.escape(name) + r"[^\n]*?\s+([\d.]+|n/a)\s+([\d.]+|n/a)", stdout)
        if match:
            found[name] = tuple(float(v) if v != "n/a" else float("nan") for v in match.groups())
    return found


def main(data: Path, run: Path, out: Path, rulebooks: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    folders = halves(data, out)
    kistrules = Path(sys.executable).with_name("kistrules")
    print(
        "| rulebook | tuned on | N | tuning half: original -> tuned (fitted) | "
        "tune's held-out (CV) | other half: original | other half: tuned | changed | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rulebook in rulebooks:
        for tuning_half, other_half in (("A", "B"), ("B", "A")):
            original = held_out_figures(run, data, folders[other_half], rulebook)
            for count in COUNTS:
                name = f"{rulebook.stem}_{tuning_half}_{count or 'all'}.rules"
                target = out / name
                args = [
                    str(kistrules), "tune", str(rulebook), "--model", str(run), "--data",
                    str(data), "--masks", str(folders[tuning_half]), "--out", str(target),
                    "--device", "cpu",
                ]  # fmt: skip
                if count is not None:
                    args += ["--images", str(count)]
                start = time.perf_counter()
                done = subprocess.run(args, capture_output=True, text=True, check=False)
                seconds = time.perf_counter() - start
                if done.returncode != 0:
                    print(f"| {rulebook.name} | {tuning_half} | {count or 'all'} | "
                          f"refused: {done.stderr.strip().splitlines()[-1]} |")  # fmt: skip
                    continue
                figures = tune_figures(done.stdout)
                tuned = held_out_figures(run, data, folders[other_half], target)
                changed = next(
                    (line[len("changed: "):] for line in done.stdout.splitlines()
                     if line.startswith("changed: ")), "",
                )  # fmt: skip
                before, after = (
                    figures["annotated images, original"],
                    figures["annotated images, tuned"],
                )
                cv = figures.get("held out, tuned", (float("nan"),) * 2)
                print(
                    f"| {rulebook.name} | {tuning_half} | {count or 'all'} | "
                    f"{before[0]:.1f} / {before[1]:.1f} -> {after[0]:.1f} / {after[1]:.1f} | "
                    f"{cv[0]:.1f} / {cv[1]:.1f} | {original[0]:.1f} / {original[1]:.1f} | "
                    f"**{tuned[0]:.1f} / {tuned[1]:.1f}** | {changed} | {seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), [Path(a) for a in sys.argv[4:]])
