"""Grade regions for many parameter vectors at once: the scorer with its numbers as tensors.

The compiled scorer (kistrules.compiler) holds a rulebook's numbers as
constant buffers, which is right for training and wrong for a search that
tries hundreds of numbers per round. `CandidateScorer` grades N regions for C
candidate vectors of the tunable numbers in one pass of (C, N) tensor ops: a
scale becomes a (C, 1) divisor, a set's breakpoints (C, 1) columns, and the
rest of the program (hedges, NOT, AND = min, OR = max, truth values, max over
rules) is the scorer's.

Rules are read from `resolve`, so defined conditions are written out and
classes change nothing (the grade is the max over all rules); a `raw` set's
numbers are divided by the property's scale, candidate or not, as `resolve`
divides them.

It computes what `compile_rulebook(resolve(with_values(book, tunables, v)))`
computes, op for op in the same dtype (standardise in the inputs' dtype and
round once; edges as (v - a) / (b - a) and (d - v) / (d - c) clamped, a
vertical edge as a step; NaN grades 0 in every set), so that the grades are the
same bit for bit; the tests check it against the compiled scorer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from kistrules import membership
from kistrules.ast import And, Not, Rulebook, ScaleDef, Term
from kistrules.resolve import find_set_def, resolve
from kistrules.tuning.parameters import Tunable

# Elements of one (C, N) temporary: candidates are graded in chunks of this size.
CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class _Slot:
    """A number of the program: column `index` of the candidate matrix, or `constant`."""

    index: int | None = None
    constant: float = 0.0


@dataclass(frozen=True)
class _TermCode:
    property: str
    function: str
    params: tuple[_Slot, ...]
    exponent: float
    negated: bool
    raw: bool = False  # params in the property's units: divided by its scale, as resolve does


class CandidateScorer:
    """Grades of N regions under C candidate vectors of a rulebook's tunable numbers.

    `grades(properties, values)` takes the raw region properties (name -> (N,)
    tensor, or a RegionTable's `properties`) and a (C, K) matrix whose column k
    is the value of `tunables[k]`, and returns (C, N) grades (eq. 4-7).
    """

    def __init__(
        self,
        rulebook: Rulebook,
        tunables: Sequence[Tunable],
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        resolved = resolve(rulebook)
        self.dtype = dtype
        self.tunables = tuple(tunables)
        self.properties = resolved.properties
        where = {(t.statement, t.argument): k for k, t in enumerate(self.tunables)}
        index_of = {id(s): i for i, s in enumerate(rulebook.statements)}

        def slot(statement, argument: int, value: float) -> _Slot:
            k = where.get((index_of.get(id(statement), -1), argument))
            return _Slot(index=k) if k is not None else _Slot(constant=float(value))

        scale_defs = {s.property.name: s for s in rulebook.statements if isinstance(s, ScaleDef)}
        self._scales = {
            p: slot(scale_defs.get(p), 0, resolved.scales[p]) for p in resolved.properties
        }
        defined = rulebook.sets

        def term(condition: Term) -> _TermCode:
            prop, name = condition.property.name, condition.set.name
            mf = resolved.sets[(prop, name)]
            definition = find_set_def(rulebook, prop, name, defined=defined)
            params = tuple(
                slot(definition, i, value) if definition is not None else _Slot(constant=value)
                for i, value in enumerate(mf.params)
            )
            exponent = membership.hedge_exponent(h.name for h in condition.hedges)
            raw = definition is not None and definition.function.raw
            if raw:  # the written numbers, divided in `_term` by the (candidate) scale
                params = tuple(
                    slot(definition, i, arg.value) for i, arg in enumerate(definition.function.args)
                )
            return _TermCode(prop, mf.function, params, exponent, condition.negated, raw)

        self._programs = [_program(rule.condition, term) for rule in resolved.rules]
        self._terms = tuple(
            dict.fromkeys(c for p in self._programs for c in _codes(p))
        )  # each distinct term once
        self._truth = [float(rule.truth_value) for rule in resolved.rules]
        self.threshold = float(resolved.threshold)  # the search sweeps it; grades do not use it

    # --- evaluation -------------------------------------------------------------------

    def grades(self, properties: Mapping[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        """(C, N) grades: max over rules of TV x truth, for each candidate row of `values`."""
        if isinstance(values, torch.Tensor) and values.dtype != torch.float64:
            # float32 would round the candidates' numbers before they are even tried
            raise ValueError(f"candidate values must be float64, not {values.dtype}")
        values = torch.as_tensor(values, dtype=torch.float64)
        if values.dim() != 2 or values.shape[1] != len(self.tunables):
            raise ValueError(f"values must be (C, {len(self.tunables)}), got {tuple(values.shape)}")
        raw = {p: _raw(properties[p]) for p in self.properties}
        n = len(raw[self.properties[0]]) if self.properties else 0
        step = max(1, CHUNK_ELEMENTS // max(n, 1))
        out = torch.empty((values.shape[0], n), dtype=self.dtype)
        with torch.no_grad():
            for start in range(0, values.shape[0], step):
                chunk = values[start : start + step]
                out[start : start + step] = self._grade(raw, chunk)
        return out

    def _grade(self, raw: dict[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        standardised = {p: self._standardise(raw[p], self._scales[p], values) for p in raw}
        missing = {p: torch.isnan(raw[p]) for p in raw}
        cache: dict[_TermCode, torch.Tensor] = {}
        for code in self._terms:
            prop = code.property
            cache[code] = self._term(code, standardised[prop], missing[prop], values)
        grade = None
        for program, truth in zip(self._programs, self._truth, strict=True):
            rule = _evaluate(program, cache)
            if truth != 1.0:
                rule = rule * torch.tensor(truth, dtype=self.dtype)
            grade = rule if grade is None else torch.maximum(grade, rule)
        n = next(iter(raw.values())).shape[0]
        return grade.expand(values.shape[0], n)

    def _value(self, slot: _Slot, values: torch.Tensor) -> torch.Tensor:
        """A slot as a float64 (C, 1) column, or a (1, 1) constant."""
        if slot.index is None:
            return torch.tensor([[slot.constant]], dtype=torch.float64)
        return values[:, slot.index : slot.index + 1]

    def _standardise(self, raw: torch.Tensor, slot: _Slot, values: torch.Tensor) -> torch.Tensor:
        """v' = clip(v / gamma, 0, 1) (eq. 16), divided in the inputs' dtype, rounded once."""
        wide = torch.promote_types(self.dtype, raw.dtype)
        gamma = self._value(slot, values).to(wide)
        v = (raw.to(wide)[None, :] / gamma).to(self.dtype)
        return v.clamp_(0.0, 1.0).nan_to_num_(nan=0.0, posinf=1.0, neginf=0.0)

    def _term(
        self, code: _TermCode, v: torch.Tensor, missing: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        params = [self._value(s, values) for s in code.params]
        if code.raw:
            gamma = self._value(self._scales[code.property], values)
            params = [p / gamma for p in params]
        if code.function == "gaussian":
            mean, sigma = params
            inverse = (1.0 / sigma).to(self.dtype)
            z = (v - mean.to(self.dtype)) * inverse
            grade = (z * z * -0.5).exp()
        else:
            a, b, c, d = membership.as_trapezoid(code.function, params)
            grade = torch.minimum(self._rising(v, a, b), self._falling(v, c, d))
        grade = grade.masked_fill(missing[None, :], 0.0)  # a NaN value belongs to no set
        if code.exponent != 1.0:
            membership.apply_hedge(grade, code.exponent)
        return membership.negate(grade) if code.negated else grade

    def _rising(self, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(v - a) / (b - a) clamped; a vertical edge (a == b) is 1 from a on."""
        a32, b32 = a.to(self.dtype), b.to(self.dtype)
        ramp = ((v - a32) / (b32 - a32)).clamp_(0.0, 1.0)
        return torch.where(a < b, ramp, (v >= a32).to(self.dtype))

    def _falling(self, v: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(d - v) / (d - c) clamped; a vertical edge (c == d) is 1 up to d."""
        c32, d32 = c.to(self.dtype), d.to(self.dtype)
        ramp = ((d32 - v) / (d32 - c32)).clamp_(0.0, 1.0)
        return torch.where(c < d, ramp, (v <= d32).to(self.dtype))


def _raw(values) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if not tensor.dtype.is_floating_point:
        tensor = tensor.to(torch.float64)
    return tensor.reshape(-1).cpu()


def _program(condition, term: Callable[[Term], _TermCode]):
    """A condition as nested tuples: ("term", code), ("not", p), ("and" | "or", [p, ...])."""
    if isinstance(condition, Term):
        return ("term", term(condition))
    if isinstance(condition, Not):
        return ("not", _program(condition.operand, term))
    op = "and" if isinstance(condition, And) else "or"
    return (op, [_program(operand, term) for operand in condition.operands])


def _codes(program):
    kind, body = program
    if kind == "term":
        yield body
    elif kind == "not":
        yield from _codes(body)
    else:
        for operand in body:
            yield from _codes(operand)


def _evaluate(program, cache: dict[_TermCode, torch.Tensor]) -> torch.Tensor:
    kind, body = program
    if kind == "term":
        return cache[body]
    if kind == "not":
        return membership.negate(_evaluate(body, cache))
    combine = torch.minimum if kind == "and" else torch.maximum
    result = _evaluate(body[0], cache)
    for operand in body[1:]:
        result = combine(result, _evaluate(operand, cache))
    return result
