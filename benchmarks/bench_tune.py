"""Tuning's inner loop: grading one round of candidate rulebooks against the masks.

Run from the repository root:  .venv/bin/python benchmarks/bench_tune.py
(options: --images 30 --size 128 --candidates 200 --alphas 100 --repeats 3 --seed 0)

Data: seeded synthetic residual maps and masks (tests/tuning/synthetic.py, at a
working size of 128 px like the MTD runs), measured once into label evidence.
One round of the search grades C candidate parameter vectors of the synthetic
rulebook at every alpha of a grid. The naive way: for each candidate, write its
numbers into the rulebook, compile it, grade the regions, and for each alpha
build the pseudo-label mask (`pseudo_label_mask`) and count its pixels against
the masks. Tuning's way: one (C, N) pass of `CandidateScorer`, then
`label_counts` (pixel groups by chain, one sort for every alpha). The results
are checked equal first, then both are timed; the table prints the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kistrules.api import loads  # noqa: E402
from kistrules.compiler import compile_rulebook  # noqa: E402
from kistrules.regions import pseudo_label_mask  # noqa: E402
from kistrules.resolve import resolve  # noqa: E402
from kistrules.tuning.candidates import CandidateScorer  # noqa: E402
from kistrules.tuning.evidence import label_counts  # noqa: E402
from kistrules.tuning.parameters import tunable_numbers, with_values  # noqa: E402
from kistrules.tuning.search import Search  # noqa: E402
from tests.tuning import synthetic as syn  # noqa: E402


def naive(book, tunables, candidates, alphas, raw) -> tuple[np.ndarray, np.ndarray]:
    """Compile every candidate; for every alpha, a pixel mask per batch, counted."""
    tp = np.zeros((len(candidates), len(alphas)))
    fp = np.zeros_like(tp)
    for c, values in enumerate(candidates):
        scorer = compile_rulebook(resolve(with_values(book, tunables, values)))
        for start, table in zip(range(0, 10**9, 4), raw["tables"], strict=False):
            grade = scorer(table).grade
            window = slice(start, start + table.labels.shape[0])
            truth = raw["masks"][window]
            for a, alpha in enumerate(alphas):
                mask = pseudo_label_mask(table, grade >= alpha).numpy()
                tp[c, a] += np.count_nonzero(mask & truth)
                fp[c, a] += np.count_nonzero(mask & ~truth)
    return tp, fp


def batched(scorer, evidence, candidates, alphas) -> tuple[np.ndarray, np.ndarray]:
    grades = scorer.grades(evidence.properties, torch.tensor(candidates, dtype=torch.float64))
    tp, fp = label_counts(evidence, grades, torch.tensor(alphas, dtype=torch.float64))
    return tp.numpy(), fp.numpy()


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--alphas", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    evidence, raw = syn.evidence(args.seed, args.images, args.size)
    book = loads(syn.RULEBOOK)
    tunables = tunable_numbers(book)
    search = Search(book)
    moves = search.moves(list(search.original))
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(moves), size=min(args.candidates, len(moves)), replace=False)
    candidates = [moves[i] for i in picks]
    alphas = [round(0.01 * i, 2) for i in range(1, args.alphas + 1)]
    scorer = CandidateScorer(book, tunables)

    # equal first: the batched counts are the naive ones (a few candidates, every alpha)
    check = candidates[:3]
    assert all(
        np.array_equal(x, y)
        for x, y in zip(
            batched(scorer, evidence, check, alphas),
            naive(book, tunables, check, alphas, raw),
            strict=True,
        )
    ), "batched and naive counts differ"

    naive_few = max(1, min(len(candidates), 10))
    t_naive, _ = best_of(lambda: naive(book, tunables, candidates[:naive_few], alphas, raw), 1)
    t_naive_all = t_naive * len(candidates) / naive_few
    t_batched, _ = best_of(lambda: batched(scorer, evidence, candidates, alphas), args.repeats)
    table = Table(
        title=f"one search round: {len(candidates)} candidates x {len(alphas)} alphas, "
        f"{evidence.regions} regions, {args.images} images at {args.size} px "
        f"({torch.get_num_threads()} torch threads)"
    )
    for column in ("method", "seconds", "per candidate (ms)", "ratio"):
        table.add_column(column, justify="right" if column != "method" else "left")
    table.add_row(
        f"naive (compile + mask per alpha; timed on {naive_few}, scaled)",
        f"{t_naive_all:.2f}",
        f"{1000 * t_naive_all / len(candidates):.1f}",
        "1.0",
    )
    table.add_row(
        "CandidateScorer + label_counts",
        f"{t_batched:.3f}",
        f"{1000 * t_batched / len(candidates):.2f}",
        f"{t_naive_all / t_batched:.0f}x faster",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
