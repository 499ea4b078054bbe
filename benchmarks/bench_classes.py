"""Benchmark: per-class grades in the scorer's pass against computing them afterwards.

The KIST paper's MTD rulebook (Table I, third column), once as published (every
rule concludes `anomalous`) and once class-aware: `class break_fray, crack,
blowhole, uneven`, its four rules concluding break_fray, crack, blowhole and
anomalous. Timed on N seeded regions (float32, CPU, the float64 inputs a
RegionTable holds):

- plain: the published rulebook, grades only (what training pays today);
- classes: the class-aware rulebook, grades and the (N, C) class grades in the
  same chunked pass;
- naive: the plain scorer's rule outputs, then per region and class the max over
  the rules concluding that class or `anomalous`, in Python, as a script would
  do it (timed on `--naive-regions` regions and extrapolated per region).

Both class computations are checked to agree before anything is timed. Run:

    .venv/bin/python benchmarks/bench_classes.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # benchmarks/machine.py
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from kistrules.api import loads  # noqa: E402
from kistrules.compiler import compile_rulebook  # noqa: E402
from kistrules.resolve import resolve  # noqa: E402
from tests.scorer.paper import MTD_TEXT  # noqa: E402

CLASSES = ("break_fray", "crack", "blowhole", "anomalous")  # the conclusion of each rule


def class_aware(text: str) -> str:
    """MTD_TEXT with a `class` line and the i-th rule concluding CLASSES[i]."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("IF ")]
    for i, conclusion in zip(rules, CLASSES, strict=True):
        lines[i] = lines[i].replace("THEN anomalous", f"THEN {conclusion}")
    declared = ", ".join(c for c in CLASSES if c != "anomalous") + ", uneven"
    return "\n".join([f"class {declared}", *lines]) + "\n"


def naive_classes(rules: np.ndarray, conclusions, names) -> np.ndarray:
    """Per region and class, in Python: the max of the rules concluding it or `anomalous`."""
    out = np.zeros((rules.shape[0], len(names)))
    for n in range(rules.shape[0]):
        for c, name in enumerate(names):
            out[n, c] = max(
                (
                    float(v)
                    for v, k in zip(rules[n], conclusions, strict=True)
                    if k in (name, "anomalous")
                ),
                default=0.0,
            )
    return out


def timed_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median wall times of two calls, alternated so that load on a shared machine
    hits both alike."""
    walls: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, walls[0]), (second, walls[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(walls[0]), statistics.median(walls[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    parser.add_argument("--naive-regions", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plain = compile_rulebook(resolve(loads(MTD_TEXT, "mtd.rules")))
    classes = compile_rulebook(resolve(loads(class_aware(MTD_TEXT), "mtd_classes.rules")))
    rng = np.random.default_rng(args.seed)

    def regions(n: int) -> dict[str, torch.Tensor]:
        return {
            p: torch.from_numpy(rng.uniform(0.0, 1.2, n) * g)
            for p, g in plain.resolved.scales.items()
        }

    check = regions(args.naive_regions)
    trace = classes(check)
    start = time.perf_counter()
    slow = naive_classes(plain(check).rules.numpy(), classes.rule_classes, classes.class_names)
    naive_per_region = (time.perf_counter() - start) / args.naive_regions
    assert np.array_equal(trace.classes.numpy(), slow.astype(np.float32)), "class grades differ"
    assert torch.equal(trace.grade, plain(check).grade), "the overall grade changed"

    table = Table(title="per-class grades (MTD rulebook, float32 CPU, median wall time)")
    for column in ("regions", "plain", "classes", "classes / plain", "naive (extrapolated)"):
        table.add_column(column, justify="right")
    table.add_column("naive / classes", justify="right")
    for n in args.sizes:
        props = regions(n)
        t_plain, t_classes = timed_pair(
            lambda props=props: plain(props), lambda props=props: classes(props), args.repeats
        )
        t_naive = naive_per_region * n
        table.add_row(
            f"{n:,}",
            f"{t_plain * 1e3:.2f} ms",
            f"{t_classes * 1e3:.2f} ms",
            f"{t_classes / t_plain:.2f}x",
            f"{t_naive:.2f} s",
            f"{t_naive / t_classes:,.0f}x",
        )
    console = Console()
    console.print(table)
    console.print(
        f"CPU: {cpu_name()}; torch threads {args.threads}; "
        f"naive timed on {args.naive_regions:,} regions; seed {args.seed}"
    )


if __name__ == "__main__":
    main()
