"""Explain with counterfactuals on generated rulebooks of 1,000 and 10,000 rules.

    .venv/bin/python benchmarks/bench_explain.py [--rules 1000,10000] [--regions 4]
                                                 [--naive-rules 1000] [--no-naive]

Workload: the generated rulebooks of `bench_parse.py` (AND / OR / NOT, hedges,
`is not`, an override; 8 properties), compiled once (not timed), and
`--regions` seeded regions with raw values over [0, 1.2] x gamma, scored with
a trace; the timed step is `explain_trace` with counterfactuals, i.e. what
`kistrules explain` does after measuring: for every rule a region misses, the
nearest single-property change, else the smallest change of two properties,
verified with the float32 scorer.

naive = the previous approach, measured in the same run on `--naive-rules`:
each candidate verified by re-scoring the region with the *whole* rulebook,
and each rule's terms found by scanning all terms (both once per rule, so the
cost grew with rules squared). The benchmark checks that both give the same
explanations before printing. Times are wall-clock and CPU seconds of one run
on a possibly shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

from kistrules.compiler import compile_rulebook
from kistrules.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parse import generate  # noqa: E402

import kistrules.counterfactuals as counterfactuals_module  # noqa: E402
from kistrules.api import loads  # noqa: E402
from kistrules.explain import explain_trace, to_jsonable  # noqa: E402


def regions(scorer, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded raw values over [0, 1.2] x gamma for every property the rulebook uses."""
    generator = torch.Generator().manual_seed(seed)
    scales = scorer.resolved.scales
    return {
        p: torch.rand(n, generator=generator, dtype=torch.float64) * 1.2 * scales[p]
        for p in scorer.properties
    }


def _full_rescore_verifier(scorer, raw):
    """The previous verifier: re-score the region with every rule to read one rule's output."""

    def fires(rule: int, rows) -> list[bool]:
        table = {
            p: torch.tensor([row.get(p, raw[p]) for row in rows], dtype=torch.float64)
            for p in scorer.properties
        }
        with torch.no_grad():
            out = scorer(table)
        return (out.rules[:, rule] >= scorer.threshold).tolist()

    return fires


@contextlib.contextmanager
def naive(scorer):
    """Swap in the previous approach: whole-rulebook re-scores, term lookup by scanning."""
    saved = counterfactuals_module.verifier
    counterfactuals_module.verifier = _full_rescore_verifier
    scorer.rule_terms = lambda rule: [t for t in scorer.terms if t.rule == rule]
    try:
        yield
    finally:
        counterfactuals_module.verifier = saved
        del scorer.rule_terms


def explain_once(scorer, raw) -> tuple[float, float, list]:
    trace = scorer(raw, trace=True)
    n = len(trace.grade)
    start, start_cpu = time.perf_counter(), time.process_time()
    out = explain_trace(scorer, trace, raw, bbox=torch.zeros(n, 4), pixel_count=torch.ones(n))
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="1000,10000", help="comma-separated rule counts")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--naive-rules", type=int, default=1000)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = [int(c) for c in args.rules.split(",")]
    torch.set_num_threads(1)  # one region at a time: threads only add overhead
    rows = []
    for count in counts:
        scorer = compile_rulebook(
            resolve(loads(generate(count, seed=args.seed), f"bench{count}.rules"))
        )
        raw = regions(scorer, args.regions, args.seed)
        wall, cpu, out = explain_once(scorer, raw)
        missed = sum(not r.reaches_threshold for e in out for r in e.rules)
        found = sum(r.counterfactual is not None for e in out for r in e.rules)
        pairs = sum(
            getattr(r, "pair_counterfactual", None) is not None for e in out for r in e.rules
        )
        rows.append((count, wall, cpu, missed, found))
        print(
            f"{count:>6} rules, {args.regions} regions: explain {wall:7.2f} s wall, "
            f"{cpu:7.2f} s CPU; {missed} missed rules, {found} counterfactuals, {pairs} of two "
            f"properties ({1e3 * wall / max(missed, 1):.2f} ms per missed rule)",
            flush=True,
        )
        if count == args.naive_rules and not args.no_naive:
            with naive(scorer):
                naive_wall, naive_cpu, naive_out = explain_once(scorer, raw)
            assert to_jsonable(naive_out) == to_jsonable(out), "naive and new explanations differ"
            print(
                f"{count:>6} rules, naive (whole-rulebook re-score per candidate): "
                f"{naive_wall:7.2f} s wall, {naive_cpu:7.2f} s CPU -> new is "
                f"{naive_wall / wall:.1f}x faster (wall), {naive_cpu / cpu:.1f}x (CPU); "
                "same explanations",
                flush=True,
            )
    if len(rows) >= 2:
        (c0, w0, u0, *_), (c1, w1, u1, *_) = rows[0], rows[-1]
        print(
            f"{c1 / c0:.0f}x the rules -> {w1 / w0:.1f}x the wall time, {u1 / u0:.1f}x the CPU "
            "time (linear: the same factor; quadratic: its square)"
        )


if __name__ == "__main__":
    main()
