"""Per defect kind: how far a run's defects stand above the normal residual floor.

    .venv/bin/python scripts/residuals_by_kind.py DATA_DIR RUN_DIR[:PHASE] [RUN_DIR[:PHASE] ...]

For each run (default: its last phase), on the working grid (masks brought to it as
`kistrules audit --grid` does): the mean raw residual
e(x) over the pixels of the normal test images (the floor a defect must clear), and
per defect kind (the test/<kind> folder) the median residual of the defect pixels
and its ratio to that floor. A push that lifts the floor more than a kind's defects
lowers that kind's ratio, and its pixel AUROC (docs/demo.md, "The first
confirmation failed on seed 1").
"""

from __future__ import annotations

import sys

import numpy as np

from kist_train.audit import grid_mask
from kist_train.data import load_dataset, working_tensor
from kist_train.predict import load_run
from kist_train.residuals import residuals_of
from kistrules.errors import KistrulesError


def by_kind(data_dir: str, run_spec: str) -> tuple[float, dict[str, float]]:
    """(normal floor, {kind: median defect residual}) of one run, raw e(x) x 1e4."""
    run_dir, _, phase = run_spec.partition(":")
    run = load_run(run_dir, device="cpu", phase=phase or None)
    items = load_dataset(data_dir).require_test()
    x = working_tensor(items, run.size, device="cpu")
    residual = residuals_of(run.model, x, batch_size=64).numpy()
    normal = [residual[i].mean() for i, item in enumerate(items) if not item.is_anomalous]
    floor = float(np.mean(normal))
    kinds: dict[str, list[np.ndarray]] = {}
    for index, item in enumerate(items):
        if item.is_anomalous:
            mask = grid_mask(item.mask(), run.size)  # as `audit --grid` compares
            kinds.setdefault(item.defect, []).append(residual[index][mask])
    return 1e4 * floor, {k: 1e4 * float(np.median(np.concatenate(v))) for k, v in kinds.items()}


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    data_dir, runs = argv[0], argv[1:]
    for run_spec in runs:
        try:
            floor, medians = by_kind(data_dir, run_spec)
        except KistrulesError as err:  # a wrong path or run: one line, as the CLI says it
            raise SystemExit(f"error: {err}") from None
        cells = " | ".join(f"{k} {v:.1f} ({v / floor:.1f}x)" for k, v in sorted(medians.items()))
        print(f"{run_spec}: normal floor {floor:.2f} | {cells}")


if __name__ == "__main__":
    main(sys.argv[1:])
