"""Where a run's pixel AUROC comes from: defect pixels against the pixels of the normal
test tiles, and against the defect-free pixels of the defective tiles.

    .venv/bin/python scripts/auroc_split.py DATA_DIR RUN_DIR [RUN_DIR ...]

A push that raises the residual of normal texture shows up in the first split; one
that only sharpens the defects' surroundings, in the second. Prints, per run and for
the raw and the guided-filtered maps, both AUROCs (%) and the median map value of
the normal tiles and of the defect pixels (docs/results.md, Verdict, item 2).
"""

from __future__ import annotations

import sys

import numpy as np

from kist_train.data import load_dataset
from kist_train.metrics import roc_auc
from kist_train.predict import load_run, maps_both


def split(run_dir: str, data_dir: str, batch_size: int = 16) -> dict[str, tuple[float, ...]]:
    items = load_dataset(data_dir).require_test()
    run = load_run(run_dir, device="cpu")
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        kind: {"defect": [], "normal_tiles": [], "defect_free": []} for kind in ("raw", "filtered")
    }
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        raw, filtered = maps_both(run, [item.gray() for item in chunk], batch_size=batch_size)
        for item, *maps in zip(chunk, raw, filtered, strict=True):
            mask = item.mask().astype(bool)
            for kind, m in zip(("raw", "filtered"), maps, strict=True):
                if item.is_anomalous:
                    parts[kind]["defect"].append(m[mask])
                    parts[kind]["defect_free"].append(m[~mask])
                else:
                    parts[kind]["normal_tiles"].append(m.ravel())
            item.release()
    result = {}
    for kind, groups in parts.items():
        defect, normal, free = (np.concatenate(groups[k]) for k in groups)
        ones, zeros = np.ones(defect.size, bool), np.zeros
        result[kind] = (
            100 * roc_auc(np.concatenate([defect, normal]), np.r_[ones, zeros(normal.size, bool)]),
            100 * roc_auc(np.concatenate([defect, free]), np.r_[ones, zeros(free.size, bool)]),
            float(np.median(normal)),
            float(np.median(defect)),
        )
    return result


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    data_dir, runs = argv[0], argv[1:]
    for run_dir in runs:
        for kind, (vs_normal, vs_free, median_normal, median_defect) in split(
            run_dir, data_dir
        ).items():
            print(
                f"{run_dir} {kind}: AUROC vs normal tiles {vs_normal:.1f}, vs defect-free "
                f"pixels of defective tiles {vs_free:.1f}; median normal tile "
                f"{median_normal:.4f}, defect {median_defect:.4f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
