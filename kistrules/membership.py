"""Membership functions, hedges and standardisation as vectorised torch ops.

Each function works on broadcastable shapes, so the compiler grades every term
of one kind in a single call: standardised values `(K, n)` against parameters
`(K, 1)`. The semantics are the language contract's (`rules-language.md`),
fixed here precisely because grades at the breakpoints decide whether a region
reaches the threshold:

- `trapezoid(a, b, c, d)`: 0 below `a` and above `d`; `(v - a) / (b - a)` on
  `[a, b)`; 1 on `[b, c]`; `(d - v) / (d - c)` on `(c, d]`. A shoulder (`a == b`
  or `c == d`) is therefore 1 right up to and including its edge: with
  `a == b`, 1 for `a <= v <= c`; with `c == d`, 1 for `b <= v <= d`. These are
  also pyfuzzylite's `Trapezoid` semantics, against which the tests check.
- `triangle(a, b, c)` is `trapezoid(a, b, b, c)`, degenerate edges included.
- `gaussian(mean, sigma) = exp(-(v - mean)^2 / (2 sigma^2))`.
- Hedges: `very` = x^2, `somewhat` = sqrt(x), applied from the set outward;
  stacked hedges compose into one power x^(product of exponents).

Standardised values are in [0, 1], or `MISSING` (-inf) for a NaN raw value:
every membership function gives `MISSING` the grade 0 (a missing value belongs
to no set) without a separate NaN pass over the grades.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from kistrules.builtins import HEDGES

MISSING = float("-inf")  # the standardised stand-in for a NaN raw value


def standardise(values: torch.Tensor, gamma: torch.Tensor | float, *, out=None) -> torch.Tensor:
    """v' = clip(v / gamma, 0, 1) (paper eq. 16 plus the contract's clip); NaN stays NaN.

    Division, not a multiplication by 1/gamma, so that a raw value at a
    breakpoint (gray = 102 with gamma 255) standardises exactly to it (0.4).
    `out` may have a narrower dtype than `values`: the division is then done in
    the wider one and rounded once.
    """
    return torch.div(values, gamma, out=out).clamp_(0.0, 1.0)


def mark_missing(standardised: torch.Tensor) -> torch.Tensor:
    """In place: NaN -> `MISSING`, which every membership function grades 0."""
    return standardised.nan_to_num_(nan=MISSING, posinf=1.0, neginf=0.0)


def as_trapezoid(function: str, params: Sequence[float]) -> tuple[float, float, float, float]:
    """`triangle(a, b, c)` is `trapezoid(a, b, b, c)`; a trapezoid is itself."""
    if function == "triangle":
        a, b, c = params
        return (a, b, b, c)
    if function == "trapezoid":
        a, b, c, d = params
        return (a, b, c, d)
    raise ValueError(f"{function!r} is not a piecewise-linear membership function")


def trapezoid_parameters(
    sets: Sequence[tuple[float, float, float, float]],
    *,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Per-set `(K, 1)` tensors for `trapezoid`: left, rise, right, fall and steps.

    A sloped edge is evaluated as (v - a) / (b - a): a division, not a
    multiplication by a reciprocal, so that the grade is correctly rounded
    (exactly 1 at `b`, and bit-identical to pyfuzzylite and the reference in
    float64, which matters for regions at exactly the threshold). A shoulder
    edge becomes the constant (v + 1) / 1 >= 1 on [0, 1] (or (2 - v) / 1), with
    a step exactly at its breakpoint, so `a == b` gives 1 at v == a and 0 just
    below it; `MISSING` (-inf) still grades 0 through either form.
    """

    def column(values) -> torch.Tensor:
        return torch.tensor([[v] for v in values], dtype=dtype, device=device)

    a, b, c, d = (column(s[i] for s in sets) for i in range(4))
    inf = torch.tensor(float("inf"), dtype=dtype, device=device)
    rising, falling = b > a, d > c
    return {
        "left": torch.where(rising, a, -1.0),
        "rise": torch.where(rising, b - a, 1.0),
        "low_step": torch.where(rising, -inf, a),
        "right": torch.where(falling, d, 2.0),
        "fall": torch.where(falling, d - c, 1.0),
        "high_step": torch.where(falling, inf, d),
    }


def trapezoid(
    values: torch.Tensor,
    left: torch.Tensor,
    rise: torch.Tensor,
    right: torch.Tensor,
    fall: torch.Tensor,
    low_step: torch.Tensor | None = None,
    high_step: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """clamp(min((v - left) / rise, (right - v) / fall), 0, 1), with steps.

    Parameters come from `trapezoid_parameters`. `low_step`/`high_step` zero
    the grade where v < low_step or v > high_step; pass None when no step lies
    inside (0, 1) (the built-in `low` steps at 0 and `high` at 1, so neither is
    needed), which saves a pass each. `out` and `scratch` (shaped like the
    result) let a caller reuse buffers across chunks: on a CPU, fresh large
    temporaries are page-faulted in again and again.
    """
    grade = torch.sub(values, left, out=out).div_(rise)
    falling = torch.sub(right, values, out=scratch).div_(fall)
    grade = torch.minimum(grade, falling, out=grade).clamp_(0.0, 1.0)
    if low_step is not None:
        grade = grade.masked_fill_(values < low_step, 0.0)
    if high_step is not None:
        grade = grade.masked_fill_(values > high_step, 0.0)
    return grade


def gaussian(
    values: torch.Tensor,
    mean: torch.Tensor,
    inverse_sigma: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """exp(-(v - mean)^2 / (2 sigma^2)), given 1/sigma; `MISSING` gives 0."""
    z = torch.sub(values, mean, out=out).mul_(inverse_sigma)
    return z.mul_(z).mul_(-0.5).exp_()


def grade_set(function: str, params: Sequence[float], values: torch.Tensor) -> torch.Tensor:
    """Grades of standardised values (in [0, 1], or `MISSING`) in one set, any shape.

    The scorer's own code for a single set, for plots and checks; the scorer
    itself grades all its terms at once.
    """
    column = values.reshape(1, -1)
    if function == "gaussian":
        mean, sigma = params
        like = {"dtype": values.dtype, "device": values.device}
        grades = gaussian(
            column, torch.tensor([[mean]], **like), torch.tensor([[1.0 / sigma]], **like)
        )
    else:
        p = trapezoid_parameters(
            [as_trapezoid(function, params)], dtype=values.dtype, device=values.device
        )
        grades = trapezoid(
            column, p["left"], p["rise"], p["right"], p["fall"], p["low_step"], p["high_step"]
        )
    return grades.reshape(values.shape)


def hedge_exponent(hedges: Iterable[str]) -> float:
    """The single power that a chain of hedges amounts to: very = 2, somewhat = 1/2.

    Raises KeyError on an unknown hedge: the checker rejects those first.
    """
    exponent = 1.0
    for hedge in hedges:
        exponent *= HEDGES[hedge]
    return exponent


def apply_hedges(grades: torch.Tensor, exponent: torch.Tensor | float) -> torch.Tensor:
    """In place: grades ** exponent; grades are in [0, 1] and exponents positive (no NaN)."""
    return grades.pow_(exponent)


def negate(grades: torch.Tensor) -> torch.Tensor:
    """Zadeh's NOT, 1 - x (a term's `not`, or a NOT node)."""
    return torch.sub(1.0, grades)


def negate_where(grades: torch.Tensor, sign: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """In place: 1 - x on the rows with sign -1 and offset 1, x on rows with 1 and 0.

    x * -1 + 1 is exactly 1 - x, so this equals `negate` on the negated rows.
    """
    return grades.mul_(sign).add_(offset)
