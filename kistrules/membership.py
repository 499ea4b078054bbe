"""Membership functions and hedges as vectorised torch ops.

Each function works on broadcastable shapes, so the compiler grades every
trapezoid edge (or gaussian) in a single call: values `(K, n)` against
parameters `(K, 1)`. The semantics are the language's (docs/language.md),
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
  stacked hedges compose into one power x^(product of exponents), a power of
  two applied as repeated squaring or square roots (`apply_hedge`).

Standardised values are in [0, 1], or `MISSING` (-inf) for a NaN raw value:
every membership function gives `MISSING` the grade 0 (a missing value belongs
to no set) without a separate NaN pass over the grades.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from kistrules.builtins import HEDGES

MISSING = float("-inf")  # the standardised stand-in for a NaN raw value


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


@dataclass(frozen=True)
class Edge:
    """One side of a trapezoid that can lower a grade on [0, 1]: clamp((w - left) / rise, 0, 1).

    A rising edge reads the standardised value itself (w = v), a falling edge
    its negation (w = -v, `sign` -1), so both are one subtract-divide-clamp
    and each set costs only the edges that can matter (the built-in `low` and
    `high` one each, not two). A vertical edge inside (0, 1] is the constant
    grade 1 with a `step`: 0 where w < step. The rise is `rise_to - rise_from`,
    subtracted in the grading dtype (as the reference does), not in Python.
    """

    sign: float  # 1.0: w = v (rising edge); -1.0: w = -v (falling edge)
    left: float
    rise_from: float
    rise_to: float
    step: float = float("-inf")  # grade 0 where w < step; -inf: no step


def trapezoid_edges(a: float, b: float, c: float, d: float) -> tuple[Edge, ...]:
    """The edges of `trapezoid(a, b, c, d)` that can lower a grade for v in [0, 1].

    The grade is the minimum of its edges' grades, equal bit for bit to
    clamp(min((v - a) / (b - a), (d - v) / (d - c)), 0, 1): with w = -v,
    (w - (-d)) is exactly d - v. A rising edge with b <= 0 grades >= 1 on
    [0, 1] (and a falling one with c >= 1), so it is left out, as are
    vertical edges at or beyond the ends. A set with no edge left becomes the
    constant edge (v + 1) / 1, so that `MISSING` still grades 0.
    """
    edges = []
    if a < b:
        if b > 0.0:
            edges.append(Edge(1.0, a, a, b))
    elif a > 0.0:  # vertical rising edge inside (0, 1]: 1 from a on, 0 below
        edges.append(Edge(1.0, -1.0, 0.0, 1.0, step=a))
    if c < d:
        if c < 1.0:
            edges.append(Edge(-1.0, -d, c, d))
    elif d < 1.0:  # vertical falling edge: 1 up to d, 0 above (w < -d)
        edges.append(Edge(-1.0, -2.0, 0.0, 1.0, step=-d))
    return tuple(edges) or (Edge(1.0, -1.0, 0.0, 1.0),)


def edge_parameters(
    edges: Sequence[Edge], *, dtype: torch.dtype, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Per-edge `(E, 1)` tensors for `grade_edges`: left, rise and step."""

    def column(values) -> torch.Tensor:
        return torch.tensor([[v] for v in values], dtype=dtype, device=device)

    return {
        "left": column(e.left for e in edges),
        "rise": column(e.rise_to for e in edges) - column(e.rise_from for e in edges),
        "step": column(e.step for e in edges),
    }


def grade_edges(
    signed: torch.Tensor,
    left: torch.Tensor,
    rise: torch.Tensor,
    step: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """In place: signed values `(E, n)` (w, `MISSING` for NaN) -> each edge's grade.

    clamp((w - left) / rise, 0, 1), then 0 where w < step. A division, not a
    multiplication by 1/rise, so that the grade is correctly rounded: exactly 1
    at a breakpoint, and bit-identical to pyfuzzylite and the reference in
    float64 (a region at exactly the threshold fires in both or neither).
    Pass `step` only when some edge has one (None saves two passes); `mask`
    is an optional bool buffer shaped like `signed`, reused across chunks.
    """
    below = torch.lt(signed, step, out=mask) if step is not None else None
    grades = signed.sub_(left).div_(rise).clamp_(0.0, 1.0)
    if below is not None:
        grades.masked_fill_(below, 0.0)
    return grades


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
    like = {"dtype": values.dtype, "device": values.device}
    if function == "gaussian":
        mean, sigma = params
        grades = gaussian(
            column, torch.tensor([[mean]], **like), torch.tensor([[1.0 / sigma]], **like)
        )
        return grades.reshape(values.shape)
    edges = trapezoid_edges(*as_trapezoid(function, params))
    p = edge_parameters(edges, **like)
    sign = torch.tensor([[e.sign] for e in edges], **like)
    signed = torch.where(column == MISSING, MISSING, column * sign)  # MISSING stays -inf
    has_step = any(e.step != float("-inf") for e in edges)
    grades = grade_edges(signed, p["left"], p["rise"], p["step"] if has_step else None)
    return grades.amin(0).reshape(values.shape)


def hedge_exponent(hedges: Iterable[str]) -> float:
    """The single power that a chain of hedges amounts to: very = 2, somewhat = 1/2.

    Raises KeyError on an unknown hedge: the checker rejects those first.
    """
    exponent = 1.0
    for hedge in hedges:
        exponent *= HEDGES[hedge]
    return exponent


def apply_hedge(grades: torch.Tensor, exponent: float) -> torch.Tensor:
    """In place: grades ** exponent, for grades in [0, 1] and a positive exponent (no NaN).

    `very` and `somewhat` compose into powers of two, applied as repeated
    x * x or sqrt(x): both are correctly rounded elementwise, whereas `pow`
    with a general exponent may round differently in torch's vectorised body
    and its scalar tail, so a grade could depend on where a chunk ends.
    """
    mantissa, power = math.frexp(exponent)  # exponent = mantissa * 2**power
    if mantissa != 0.5:
        return grades.pow_(exponent)
    for _ in range(power - 1):
        grades.mul_(grades)
    for _ in range(1 - power):
        grades.sqrt_()
    return grades


def negate(grades: torch.Tensor) -> torch.Tensor:
    """Zadeh's NOT, 1 - x (a term's `not`, or a NOT node)."""
    return torch.sub(1.0, grades)


def negate_where(grades: torch.Tensor, sign: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """In place: 1 - x on the rows with sign -1 and offset 1, x on rows with 1 and 0.

    x * -1 + 1 is exactly 1 - x, so this equals `negate` on the negated rows.
    """
    return grades.mul_(sign).add_(offset)
