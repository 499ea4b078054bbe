"""Parse and check a generated 10,000-rule rulebook; print rules per second.

    .venv/bin/python benchmarks/bench_parse.py [--rules N] [--repeat K] [--with-analysis]

The rulebook mixes the language's constructs (named and unnamed rules, AND /
OR / NOT, parentheses, hedges, `is not`, an override) so that every path of
the parser and checker runs. The headline is parse + name/range checking
(E codes); `--with-analysis` also times the interval warnings (W codes), which
compare rules pairwise. Timing is wall-clock on a possibly shared machine:
the best of `--repeat` runs is printed.
"""

from __future__ import annotations

import argparse
import random
import time

from kistrules.builtins import PROPERTIES
from kistrules.checker import check_names
from kistrules.parser import parse_detailed

SETS = ("low", "mid", "high")


def _term(rng: random.Random) -> str:
    prop = rng.choice(list(PROPERTIES))
    negated = "not " if rng.random() < 0.15 else ""
    hedge = rng.choice(["", "", "", "very ", "somewhat "])
    return f"{prop} is {negated}{hedge}{rng.choice(SETS)}"


def _condition(rng: random.Random) -> str:
    terms = [_term(rng) for _ in range(rng.randint(1, 4))]
    if len(terms) >= 3 and rng.random() < 0.3:
        return f"{terms[0]} AND ({terms[1]} OR {' AND '.join(terms[2:])})"
    if len(terms) >= 2 and rng.random() < 0.2:
        return f"NOT ({terms[0]}) OR " + " AND ".join(terms[1:])
    return " AND ".join(terms)


def generate(n_rules: int, seed: int = 0) -> str:
    """A valid rulebook of `n_rules` rules (plus a header of scales and sets)."""
    rng = random.Random(seed)
    lines = ['rulebook "benchmark"', "threshold 0.8"]
    lines += [f"scale {p} = {info.default_scale}" for p, info in PROPERTIES.items()]
    lines += ["set gray.low = trapezoid(0, 0, 0.3, 0.5)  # an override"]
    for i in range(n_rules):
        tv = rng.choice(["", " (1)", " (0.9)", " (0.85)"])
        name = f"rule r{i}: " if rng.random() < 0.5 else ""
        lines.append(f"{name}IF {_condition(rng)} THEN anomalous{tv}")
    return "\n".join(lines) + "\n"


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU seconds of `repeat` runs, and the result."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--with-analysis", action="store_true")
    args = parser.parse_args()
    text = generate(args.rules)
    parse_detailed("IF gray is low THEN anomalous", "warmup.rules")  # builds the LALR tables
    parse_time, parse_cpu, result = _best(lambda: parse_detailed(text, "bench.rules"), args.repeat)
    rulebook = result.rulebook
    assert len(rulebook.rules) == args.rules and not result.diagnostics, result.diagnostics[:3]
    check_time, check_cpu, errors = _best(lambda: check_names(rulebook), args.repeat)
    assert not errors, errors[:3]
    total = parse_time + check_time
    print(
        f"{args.rules} rules ({len(text) / 1e6:.2f} MB): parse {parse_time:.2f} s, "
        f"check {check_time:.2f} s -> {args.rules / total:,.0f} rules/s wall-clock, "
        f"{args.rules / (parse_cpu + check_cpu):,.0f} rules/s of CPU time (best of {args.repeat})"
    )
    if args.with_analysis:
        from kistrules.analysis import analyse

        analysis_time, _, warnings = _best(lambda: analyse(rulebook), 1)
        print(
            f"  + interval warnings: {analysis_time:.2f} s ({len(warnings)} warnings) -> "
            f"{args.rules / (total + analysis_time):,.0f} rules/s end to end"
        )


if __name__ == "__main__":
    main()
