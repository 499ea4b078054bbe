"""Benchmark: the compiled rule scorer against scikit-fuzzy per region and pyfuzzylite.

Grades N regions with the KIST paper's MTD rulebook (Table I, third column):

- naive: what a user would otherwise write, scikit-fuzzy `interp_membership`
  called per region and per term (membership arrays precomputed once on a
  0.01 grid, which represents the paper's trapezoids exactly), min/max in
  Python. Timed on a subset (`--naive-regions`) and extrapolated per region.
- peer: pyfuzzylite 8's vectorised engine (numpy arrays as input values,
  `RuleBlock.activate()`; Minimum conjunction, AlgebraicProduct implication,
  rule weights = TV, Maximum aggregation), standardisation included.
- ours: `kistrules.compiler.compile_rulebook(resolve(...), dtype=float32)` on the CPU,
  fed the float64 tensors a RegionTable holds (conversion included).

All three are checked to agree before anything is timed. Run:

    .venv/bin/python benchmarks/bench_scorer.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import skfuzzy
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kistrules.api import loads  # noqa: E402
from kistrules.compiler import compile_rulebook  # noqa: E402
from kistrules.resolve import resolve  # noqa: E402
from tests.scorer.paper import MTD_TEXT, fuzzylite_engine, fuzzylite_grades  # noqa: E402


def raw_regions(scales: dict[str, float], n: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded raw property values over [0, 1.2] x gamma (some clip at 1)."""
    rng = np.random.default_rng(seed)
    return {p: rng.uniform(0.0, 1.2, n) * gamma for p, gamma in scales.items()}


class NaiveScikitFuzzy:
    """Per-region scoring with scikit-fuzzy, as a straightforward script would do it."""

    def __init__(self, resolved) -> None:
        self.universe = np.linspace(0.0, 1.0, 101)
        self.curves = {
            key: skfuzzy.trapmf(self.universe, list(mf.params)) for key, mf in resolved.sets.items()
        }
        self.scales = resolved.scales
        self.rules = [
            ([(t.property.name, t.set.name) for t in rule.condition.operands], rule.truth_value)
            for rule in resolved.rules
        ]

    def grade(self, values: dict[str, float]) -> float:
        best = 0.0
        for terms, tv in self.rules:
            truth = 1.0
            for prop, name in terms:
                v = min(max(values[prop] / self.scales[prop], 0.0), 1.0)
                mu = skfuzzy.interp_membership(self.universe, self.curves[(prop, name)], v)
                truth = min(truth, float(mu))
            best = max(best, tv * truth)
        return best


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(best wall, median wall, best CPU) seconds over `repeats` calls, after one warm-up.

    CPU time (all threads of this process) is the steadier figure on a shared
    machine: it does not count time spent waiting for a core.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus)


def seconds(value: float) -> str:
    return f"{value:.3g} s" if value >= 1 else f"{value * 1e3:.3g} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**5, 10**6])
    parser.add_argument("--naive-regions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=170)

    book = loads(MTD_TEXT, "mtd.rules")
    resolved = resolve(book)
    scorer = compile_rulebook(resolved, device="cpu", dtype=torch.float32)
    engine, block, output = fuzzylite_engine(book)
    naive = NaiveScikitFuzzy(resolved)

    def peer(raw: dict[str, np.ndarray]) -> np.ndarray:
        standardised = {p: np.clip(v / resolved.scales[p], 0.0, 1.0) for p, v in raw.items()}
        return fuzzylite_grades(engine, block, output, standardised)[0]

    # Naive: per-region time on a subset, and agreement with the peer on it.
    subset = raw_regions(resolved.scales, args.naive_regions, args.seed + 1)
    wall, cpu = time.perf_counter(), time.process_time()
    naive_grades = np.array(
        [
            naive.grade({p: float(v[i]) for p, v in subset.items()})
            for i in range(args.naive_regions)
        ]
    )
    naive_wall = (time.perf_counter() - wall) / args.naive_regions
    naive_cpu = (time.process_time() - cpu) / args.naive_regions
    naive_gap = float(np.abs(naive_grades - peer(subset)).max())

    table = Table(
        title=f"MTD rulebook (Table I): {len(resolved.rules)} rules, {len(scorer.terms)} terms; "
        f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}"
    )
    for column in (
        "regions", "method", "wall", "CPU", "regions/s (wall)",
        "ours faster (wall)", "ours faster (CPU)", "max |diff| vs pyfuzzylite",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for n in args.sizes:
        raw = raw_regions(resolved.scales, n, args.seed)
        props = {p: torch.from_numpy(v) for p, v in raw.items()}  # float64, like a RegionTable
        ours_grade = scorer(props).grade.double().numpy()
        peer_grade = peer(raw)
        gap = float(np.abs(ours_grade - peer_grade).max())
        if gap > 1e-5:
            raise SystemExit(f"ours and pyfuzzylite disagree by {gap:.3g} at {n} regions")
        ours_wall, ours_median, ours_cpu = timed(lambda props=props: scorer(props), args.repeats)
        peer_wall, _, peer_cpu = timed(lambda raw=raw: peer(raw), max(1, min(args.repeats, 3)))
        rows = [
            ("scikit-fuzzy per region (extrapolated)", naive_wall * n, naive_cpu * n, naive_gap),
            ("pyfuzzylite vectorised", peer_wall, peer_cpu, 0.0),
            ("kistrules float32 CPU", ours_wall, ours_cpu, gap),
        ]
        for i, (method, wall_s, cpu_s, diff) in enumerate(rows):
            table.add_row(
                f"{n:,}" if i == 0 else "", method, seconds(wall_s), seconds(cpu_s),
                f"{n / wall_s:,.0f}",
                f"{wall_s / ours_wall:,.1f}x" if i < 2 else f"median {seconds(ours_median)}",
                f"{cpu_s / ours_cpu:,.1f}x" if i < 2 else "",
                f"{diff:.1e}", end_section=i == 2,
            )  # fmt: skip
    console.print(table)
    console.print(
        f"naive timed on {args.naive_regions:,} regions ({naive_wall * 1e6:.1f} us/region wall, "
        f"{naive_cpu * 1e6:.1f} us CPU) and extrapolated; others best of repeated runs. "
        "Other jobs may share the machine: compare the CPU columns."
    )


if __name__ == "__main__":
    main()
