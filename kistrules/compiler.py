"""A rulebook compiled into a vectorised torch scorer that grades regions.

The hot path of KIST's pseudo-labelling (paper eq. 9-12) grades tens of
thousands of regions per iteration, so the rulebook becomes a small tensor
program built once from the resolved rulebook (never `eval`, never code
generated from text):

1. Standardise the properties the rules use: v' = clip(v / gamma, 0, 1) (eq. 16).
2. Grade every distinct term (property, set, hedges, `not`) once: one
   vectorised call per membership-function kind over a `(columns, n)` matrix,
   then hedges as one power and `not` as 1 - x. Terms that repeat across
   rules (the paper's `gray is low` appears in three of four MTD rules) share
   a column.
3. Each rule's truth: a plain AND of terms (the common case) is a chain of
   torch.minimum over its columns; any other condition is a tree of
   minimum / maximum / 1 - x. AND = min, OR = max, NOT = 1 - x (Zadeh).
4. Rule output TV * truth (eq. 4-6); grade = max over rules (eq. 7); the
   winner is the first rule reaching the grade.

Regions run along the last dimension, so every op is a long vectorised loop.
On a CPU the regions are processed in chunks whose temporaries fit in cache and
live in buffers reused from chunk to chunk (see `_Workspace`); on a GPU in one
pass. Inputs stay in their dtype until each chunk is divided by gamma, so the
float64 values of a RegionTable are standardised in float64 and rounded once.

Missing values: a NaN property value belongs to no set. Its membership grade
is 0, and hedges and `not` then apply as usual (so `gray is not low` is 1 for
a NaN gray, exactly as `NOT (gray is low)`). Grades are therefore never NaN,
whatever the input; +-inf standardise to 1 and 0 like any out-of-range value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kistrules import membership
from kistrules.ast import And, Not, Rulebook, Term
from kistrules.errors import DataError, KistrulesError
from kistrules.formatter import format_term
from kistrules.resolve import MembershipFunction, ResolvedRulebook, resolve


@dataclass(frozen=True)
class TermInfo:
    """One term of one rule, in rule order then left to right (what `explain` names)."""

    rule: int
    property: str
    set: str
    hedges: tuple[str, ...]
    negated: bool
    label: str  # e.g. "gray is not very low"
    mf: MembershipFunction
    scale: float


@dataclass(frozen=True)
class ScoreTrace:
    """Everything the scorer computed for N regions; training reads `grade`, explain the rest."""

    grade: torch.Tensor  # (N,) max over rules of TV * truth (eq. 4-7)
    rules: torch.Tensor  # (N, R) each rule's TV * truth, rulebook order
    winner: torch.Tensor  # (N,) int64, first rule reaching the grade
    fired: torch.Tensor  # (N,) bool, grade >= threshold (alpha)
    standardised: dict[str, torch.Tensor] | None = None  # trace: v' per property
    terms: torch.Tensor | None = None  # trace: (N, K) each term's truth (hedges, not)
    limiting: torch.Tensor | None = None  # trace: (N, R) int64 index into terms


# --- the tensor program -------------------------------------------------------------
# A rule's condition, with names bound to term indices; nested ANDs (ORs) are
# flattened, which changes neither the truth nor the first arg-min/arg-max.


@dataclass(frozen=True)
class _Leaf:
    term: int


@dataclass(frozen=True)
class _Node:
    op: str  # "and", "or", "not"
    operands: tuple[_Leaf | _Node, ...]


_Program = _Leaf | _Node


class _Builder:
    """Walks the rules once, numbering their terms left to right."""

    def __init__(self, resolved: ResolvedRulebook) -> None:
        self.resolved = resolved
        self.terms: list[TermInfo] = []

    def build(self, condition, rule: int) -> _Program:
        if isinstance(condition, Term):
            return self._term(condition, rule)
        if isinstance(condition, Not):
            return _Node("not", (self.build(condition.operand, rule),))
        op = "and" if isinstance(condition, And) else "or"
        operands: list[_Program] = []
        for operand in condition.operands:
            built = self.build(operand, rule)
            if isinstance(built, _Node) and built.op == op:
                operands.extend(built.operands)
            else:
                operands.append(built)
        return _Node(op, tuple(operands))

    def _term(self, term: Term, rule: int) -> _Leaf:
        prop, name = term.property.name, term.set.name
        self.terms.append(
            TermInfo(
                rule=rule,
                property=prop,
                set=name,
                hedges=tuple(h.name for h in term.hedges),
                negated=term.negated,
                label=format_term(term),
                mf=self.resolved.sets[(prop, name)],
                scale=float(self.resolved.scales[prop]),
            )
        )
        return _Leaf(len(self.terms) - 1)


def _is_flat_and(program: _Program) -> bool:
    if isinstance(program, _Leaf):
        return True
    return program.op == "and" and all(isinstance(o, _Leaf) for o in program.operands)


def _leaves(program: _Program) -> list[int]:
    if isinstance(program, _Leaf):
        return [program.term]
    return [t for operand in program.operands for t in _leaves(operand)]


class _Workspace:
    """Buffers reused by every chunk of one call, by name and shape.

    On a CPU a fresh temporary of a few hundred KB is handed back to the OS on
    release and page-faulted in again on the next allocation, which cost more
    than the arithmetic; reusing a few buffers keeps them mapped and in cache.
    At most two shapes occur per name: the full chunk and the last, shorter one.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self._buffers: dict[tuple, torch.Tensor] = {}

    def __call__(self, name: str, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
        key = (name, tuple(shape), dtype or self.dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(key[1], device=self.device, dtype=key[2])
        return self._buffers[key]


class Scorer(torch.nn.Module):
    """A compiled rulebook: `scorer(properties)` grades every region at once.

    Build it with `compile_rulebook` (or `Rulebook.compile`). The module holds
    only constant buffers; `.to(device)` moves it like any module.

    Layout: every distinct term (property, set, hedges, `not`) is one row of a
    `(columns, n)` matrix of truths, graded by one vectorised call per
    membership-function kind; a term repeated across rules (the paper's
    `gray is low` in three of the four MTD rules) is graded once. A rule that
    is a plain AND of terms (the common case) is then a chain of
    torch.minimum over its rows, written straight into the output; any other
    condition is a tree of minimum / maximum / 1 - x. When tracing, every rule
    is walked as a tree, which also yields its limiting term.
    """

    def __init__(
        self,
        resolved: ResolvedRulebook,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not resolved.rules:
            raise KistrulesError(f"{resolved.source.path}: the rulebook has no rules to compile")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point type, not {dtype}")
        self.resolved = resolved
        self.properties: tuple[str, ...] = tuple(resolved.properties)
        self.rule_names: tuple[str, ...] = resolved.rule_names
        self.threshold: float = float(resolved.threshold)
        self.dtype = dtype

        builder = _Builder(resolved)
        programs = [builder.build(rule.condition, i) for i, rule in enumerate(resolved.rules)]
        self.terms: tuple[TermInfo, ...] = tuple(builder.terms)
        self._programs = tuple(programs)

        # Columns: one per distinct term.
        keys = {}
        term_column = []
        for info in self.terms:
            key = (
                info.property,
                info.mf.function,
                info.mf.params,
                membership.hedge_exponent(info.hedges),
                info.negated,
            )
            term_column.append(keys.setdefault(key, len(keys)))
        self._term_columns = tuple(term_column)
        first_term = {c: t for t, c in reversed(list(enumerate(term_column)))}
        infos = [self.terms[first_term[c]] for c in range(len(keys))]  # one per column
        self._column_properties = tuple(self.properties.index(i.property) for i in infos)
        self._flat = tuple(
            (i, tuple(term_column[t] for t in _leaves(p)))
            for i, p in enumerate(programs)
            if _is_flat_and(p)
        )
        self._trees = tuple(i for i, p in enumerate(programs) if not _is_flat_and(p))

        def buffer(name: str, values: Sequence, kind: torch.dtype | None = None) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=kind or dtype), persistent=False)

        gaussian = [info.mf.function == "gaussian" for info in infos]
        self._kinds = frozenset(gaussian)  # {False}: trapezoids only, {True}, or both
        # Gaussian columns get a placeholder trapezoid; their grades are taken from
        # the gaussian pass (only rulebooks that mix both kinds compute both).
        shapes = [
            (0.0, 0.0, 1.0, 1.0) if g else membership.as_trapezoid(i.mf.function, i.mf.params)
            for i, g in zip(infos, gaussian, strict=True)
        ]
        parameters = membership.trapezoid_parameters(shapes, dtype=dtype)
        for name, values in parameters.items():
            self.register_buffer(f"linear_{name}", values, persistent=False)
        # Standardised values lie in [0, 1] (or MISSING, graded 0 anyway), so a
        # shoulder's step at 0 (at 1) can never change a grade: skip those passes.
        self._low_steps = any(a == b and a > 0.0 for a, b, _, _ in shapes)
        self._high_steps = any(c == d and d < 1.0 for _, _, c, d in shapes)
        buffer("gaussian", [[g] for g in gaussian], torch.bool)
        buffer(
            "gaussian_mean",
            [[i.mf.params[0] if g else 0.0] for i, g in zip(infos, gaussian, strict=True)],
        )
        buffer(
            "gaussian_inverse_sigma",
            [[1.0 / i.mf.params[1] if g else 1.0] for i, g in zip(infos, gaussian, strict=True)],
        )
        exponents = [membership.hedge_exponent(info.hedges) for info in infos]
        buffer("exponent", [[e] for e in exponents])
        self._hedged = any(e != 1.0 for e in exponents)
        buffer("negation_sign", [[-1.0 if info.negated else 1.0] for info in infos])
        buffer("negation_offset", [[1.0 if info.negated else 0.0] for info in infos])
        self._negates = any(info.negated for info in infos)
        # gamma in float64 too, to divide float64 inputs without rounding gamma.
        gammas = [[float(resolved.scales[p])] for p in self.properties]
        buffer("gamma", gammas)
        buffer("gamma64", gammas, torch.float64)
        buffer("column_property", list(self._column_properties), torch.long)
        buffer("term_column", list(self._term_columns), torch.long)
        buffer("truth_value", [[rule.truth_value] for rule in resolved.rules])
        buffer("rule_rank", [[float(len(programs) - r)] for r in range(len(programs))])
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.gamma.device

    # --- inputs ---------------------------------------------------------------------

    def _inputs(self, props: Any) -> list[torch.Tensor]:
        """The used properties, each `(N,)` on the scorer's device, in one float dtype."""
        table = getattr(props, "properties", props)
        if not isinstance(table, Mapping):
            raise DataError(
                f"region properties must be a mapping of name to values or a RegionTable, "
                f"not {type(props).__name__}"
            )
        missing = [p for p in self.properties if p not in table]
        if missing:
            raise DataError(
                f"region properties lack {', '.join(map(repr, missing))}, which the rulebook "
                f"{self.resolved.source.path} uses (given: {', '.join(sorted(table)) or 'none'})"
            )
        rows = []
        for name in self.properties:
            try:
                values = torch.as_tensor(table[name])
            except (TypeError, ValueError, RuntimeError) as err:
                raise DataError(f"property {name!r} is not numeric: {err}") from err
            if values.ndim != 1:
                raise DataError(
                    f"property {name!r} must be a 1-D tensor of region values, "
                    f"got shape {tuple(values.shape)}"
                )
            # Integer counts become float64. All rows then share the widest of
            # their dtypes and the scorer's: each chunk is divided by gamma in it
            # and rounded once into the scorer's dtype, which spares a full-size
            # copy of float64 inputs (a RegionTable's) for a float32 scorer.
            if not values.dtype.is_floating_point:
                values = values.to(torch.float64)
            rows.append(values.to(device=self.device))
        if len({len(r) for r in rows}) > 1:
            given = ", ".join(f"{p}={len(r)}" for p, r in zip(self.properties, rows, strict=True))
            raise DataError(f"region properties differ in length: {given}")
        wide = self.dtype
        for row in rows:
            wide = torch.promote_types(wide, row.dtype)
        return [row.to(wide) for row in rows]

    def _chunk_size(self, n: int) -> int:
        """Regions per pass: on a CPU, small enough that a pass's temporaries stay in cache.

        Big temporaries cost twice on a CPU: each op streams them through
        memory, and each fresh allocation is page-faulted in by the OS. Chunks of
        about 2^18 elements (1 MB in float32) per temporary avoid both; on a GPU one pass is best.
        """
        if self.device.type != "cpu":
            return max(n, 1)
        return max(4096, (1 << 18) // len(self._column_properties))

    # --- evaluation -----------------------------------------------------------------

    def _grades(self, standardised: torch.Tensor, work: _Workspace) -> torch.Tensor:
        """Every distinct term's truth `(columns, n)` from the standardised properties `(P, n)`."""
        shape = (len(self._column_properties), standardised.shape[1])
        values = torch.index_select(
            standardised, 0, self.column_property, out=work("values", shape)
        )
        grades = work("grades", shape)
        if False in self._kinds:
            membership.trapezoid(
                values,
                self.linear_left,
                self.linear_rise,
                self.linear_right,
                self.linear_fall,
                self.linear_low_step if self._low_steps else None,
                self.linear_high_step if self._high_steps else None,
                out=grades,
                scratch=work("scratch", shape),
            )
        if True in self._kinds:
            means, inverse_sigmas = self.gaussian_mean, self.gaussian_inverse_sigma
            if len(self._kinds) == 1:
                membership.gaussian(values, means, inverse_sigmas, out=grades)
            else:
                bell = membership.gaussian(values, means, inverse_sigmas, out=work("bell", shape))
                torch.where(self.gaussian, bell, grades, out=grades)
        if self._hedged:
            membership.apply_hedges(grades, self.exponent)
        if self._negates:
            membership.negate_where(grades, self.negation_sign, self.negation_offset)
        return grades

    def _tree(
        self, program: _Program, columns: torch.Tensor, trace: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A condition's truth `(n,)` and, when tracing, its limiting term `(n,)`."""
        if isinstance(program, _Leaf):
            truth = columns[self._term_columns[program.term]]
            limiting = None
            if trace:
                limiting = torch.full_like(truth, program.term, dtype=torch.long)
            return truth, limiting
        results = [self._tree(operand, columns, trace) for operand in program.operands]
        if program.op == "not":
            truth, limiting = results[0]
            return membership.negate(truth), limiting
        if not trace:
            combine = torch.minimum if program.op == "and" else torch.maximum
            truth = results[0][0]
            for other, _ in results[1:]:
                truth = combine(truth, other)
            return truth, None
        stacked = torch.stack([t for t, _ in results])
        # torch.min/max along a dim return the first extreme index on ties.
        truth, which = stacked.min(0) if program.op == "and" else stacked.max(0)
        limiting = torch.stack([lim for _, lim in results]).gather(0, which[None]).squeeze(0)
        return truth, limiting

    def _score(
        self,
        standardised: torch.Tensor,
        out: dict[str, torch.Tensor],
        trace: bool,
        work: _Workspace,
    ) -> None:
        """Grade one chunk of regions (standardised `(P, n)`) into slices of `out`."""
        columns = self._grades(standardised, work)
        rules, limiting = out["rules"], out.get("limiting")
        if trace:
            for i, program in enumerate(self._programs):
                truth, limits = self._tree(program, columns, trace=True)
                rules[i].copy_(truth)
                limiting[i].copy_(limits)
        else:
            for i, rows in self._flat:  # AND = min, straight into the output row
                torch.minimum(columns[rows[0]], columns[rows[-1]], out=rules[i])
                for row in rows[1:-1]:
                    torch.minimum(rules[i], columns[row], out=rules[i])
            for i in self._trees:
                rules[i].copy_(self._tree(self._programs[i], columns, trace=False)[0])
        rules.mul_(self.truth_value)  # eq. 4: TV * truth, the probabilistic operator
        grade = torch.amax(rules, 0, out=out["grade"])  # eq. 7
        # The first maximal rule: rule r reaching the grade scores R - r, so the
        # largest score is the first such rule. sign(rules - grade) + 1 is 1 exactly
        # where a rule reaches the grade, else 0 (rules <= grade). torch.max along
        # dim 0 returns the same index, but on a CPU its index kernel (and any
        # bool-valued comparison) is many times slower than these float passes.
        reached = torch.sub(rules, grade, out=work("reached", rules.shape)).sign_()
        score = torch.addcmul(self.rule_rank, reached, self.rule_rank, out=reached)
        first = torch.amax(score, 0, out=work("first", grade.shape))  # (1 + sign) * rank
        out["winner"].copy_(first).neg_().add_(len(self._programs))
        torch.ge(grade, self.threshold, out=out["fired"])  # while the chunk is in cache
        if trace:
            out["terms"].copy_(columns.index_select(0, self.term_column))

    def forward(self, props: Any, *, trace: bool = False) -> ScoreTrace:
        """Grade N regions.

        Args:
            props: property name -> (N,) raw values (tensor or array), or a
                `RegionTable`; properties the rulebook does not use are ignored.
            trace: also return standardised values, term truths and limiting terms.

        Returns:
            A ScoreTrace on the scorer's device. `rules`, `terms` and `limiting`
            are transposed views of region-last buffers. Grades carry no
            autograd history: the evaluation reuses buffers in place, and
            pseudo-labelling needs no gradient through the rules.
        """
        with torch.no_grad():
            return self._forward(props, trace)

    def _forward(self, props: Any, trace: bool) -> ScoreTrace:
        rows = self._inputs(props)
        n = len(rows[0])
        device, dtype = self.device, self.dtype
        out = {
            "rules": torch.empty((len(self._programs), n), device=device, dtype=dtype),
            "grade": torch.empty(n, device=device, dtype=dtype),
            "winner": torch.empty(n, device=device, dtype=torch.long),
            "fired": torch.empty(n, device=device, dtype=torch.bool),
        }
        if trace:
            out["limiting"] = torch.empty((len(self._programs), n), device=device, dtype=torch.long)
            out["terms"] = torch.empty((len(self.terms), n), device=device, dtype=dtype)
            out["standardised"] = torch.empty((len(rows), n), device=device, dtype=dtype)
        # gamma in the inputs' dtype: float64 inputs are divided in float64.
        gamma = self.gamma64.to(rows[0].dtype)
        step = self._chunk_size(n)
        work = _Workspace(device, dtype)
        for start in range(0, max(n, 1), step):
            end = min(start + step, n)
            shape = (len(rows), end - start)
            raw = torch.stack(
                [row[start:end] for row in rows], out=work("raw", shape, rows[0].dtype)
            )
            standardised = membership.standardise(raw, gamma, out=work("standardised", shape))
            if trace:  # before NaN becomes MISSING: the trace shows NaN
                out["standardised"][:, start:end].copy_(standardised)
            membership.mark_missing(standardised)
            self._score(standardised, {k: v[..., start:end] for k, v in out.items()}, trace, work)
        grade = out["grade"]
        return ScoreTrace(
            grade=grade,
            rules=out["rules"].T,
            winner=out["winner"],
            fired=out["fired"],
            standardised=(
                dict(zip(self.properties, out["standardised"].unbind(0), strict=True))
                if trace
                else None
            ),
            terms=out["terms"].T if trace else None,
            limiting=out["limiting"].T if trace else None,
        )

    def extra_repr(self) -> str:
        return (
            f"rules={len(self.rule_names)}, terms={len(self.terms)}, "
            f"columns={len(self._column_properties)}, properties={self.properties}, "
            f"dtype={self.dtype}"
        )


def compile_rulebook(
    rulebook: Rulebook | ResolvedRulebook,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Scorer:
    """The rulebook as a vectorised scorer on `device`.

    A `Rulebook` is resolved first, so it must have passed `check`; float64
    is for cross-checks, float32 (the default) for training.
    """
    resolved = rulebook if isinstance(rulebook, ResolvedRulebook) else resolve(rulebook)
    return Scorer(resolved, device=device, dtype=dtype)
