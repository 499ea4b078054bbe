"""Peak memory (RSS) of `predict` and `explain` per image size, each in a fresh process.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 1024,2048,4096,8192]
                                                [--random-sizes 512,1024,2048]
                                                [--rulebook rulebooks/mtd.rules] [--keep DIR]

Inputs (seeded, written to a temporary folder; `tests/hostile/scaling_inputs.py`):
a gray PNG with ten dark discs, the discs' mask, a float32 residual TIFF above
eq. 9's thresholds only on the discs, and for `--random-sizes` a 30 % random
mask (about side^2 / 20 regions: the case that grows with regions). `predict`
and `explain --model` use the training tests' tiny run (24 px working size),
trained first. Every command runs in its own process (`kistrules ...`, explain
with `--format json`); its peak RSS is read from /proc (VmHWM), so nothing of
another run is counted. The last line of each group is the slope between its
two largest sizes, in bytes per pixel (or per region for random masks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile.scaling_inputs import commands, peak_rss_bytes, tiny_run, write_inputs  # noqa: E402


def _measure(args: list[str], scratch: Path) -> tuple[int, float]:
    start = time.perf_counter()
    peak = peak_rss_bytes(args, scratch)
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096,8192")
    parser.add_argument("--random-sizes", default="512,1024,2048")
    parser.add_argument("--rulebook", type=Path, default=ROOT / "rulebooks" / "mtd.rules")
    parser.add_argument("--keep", type=Path, help="write the inputs here (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    random_sizes = [int(s) for s in args.random_sizes.split(",") if s]
    with tempfile.TemporaryDirectory() as temp:
        root = args.keep or Path(temp)
        run = root / "train" / "run"
        if not run.is_dir():  # --keep DIR from an earlier run: its model is reused
            run = tiny_run(root / "train", args.rulebook)
        results: dict[str, list[tuple[int, int, float]]] = {}
        for side in sorted(set(sizes) | set(random_sizes)):
            paths = write_inputs(root / "inputs", side, random_mask=side in random_sizes)
            for name, command in commands(paths, args.rulebook, run, root / "maps").items():
                if side not in (random_sizes if "random" in name else sizes):
                    continue
                peak, wall = _measure(command, root)
                results.setdefault(name, []).append((side, peak, wall))
                print(f"{name:24s} {side:>5} x {side:<5} peak {peak / 2**20:8.0f} MiB  "
                      f"{wall:6.1f} s", flush=True)  # fmt: skip
        print()
        for name, rows in results.items():
            if len(rows) < 2:
                continue
            (s0, p0, _), (s1, p1, _) = rows[-2], rows[-1]
            unit, count = (
                ("region", (s1**2 - s0**2) / 20) if "random" in name else ("pixel", s1**2 - s0**2)
            )
            print(f"{name:24s} slope {s0} -> {s1}: {(p1 - p0) / count:,.1f} bytes a {unit}")


if __name__ == "__main__":
    main()
