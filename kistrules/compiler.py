"""A rulebook compiled into a vectorised torch scorer that grades regions.

The hot path of KIST's pseudo-labelling (paper eq. 9-12) grades tens of
thousands of regions per iteration, so the rulebook becomes a small tensor
program built once from the resolved rulebook (never `eval`, never code
generated from text):

1. Standardise the properties the rules use: v' = clip(v / gamma, 0, 1)
   (eq. 16), divided (not multiplied by 1/gamma) so that a raw value at a
   breakpoint (gray = 102, gamma 255) lands exactly on it (0.4); and -v' for
   the properties that a falling edge reads.
2. Grade every distinct trapezoid edge once, as one subtract-divide-clamp
   over an `(edges, n)` matrix (`membership.trapezoid_edges`): the built-in
   `low` and `high` have one edge each, `mid` two. A term's truth is the
   minimum of its edges; gaussians, hedges (x * x, sqrt) and `not` (1 - x)
   then fill a `(columns, n)` matrix of distinct terms, built only when some
   term needs it or a trace is asked for. Terms that repeat across rules (the
   paper's `gray is low` appears in three of four MTD rules) share a column.
3. Each rule's truth: a plain AND of terms (the common case) is a chain of
   torch.minimum over its rows (over the edges themselves when no column is
   needed); any other condition is a tree of minimum / maximum / 1 - x.
   AND = min, OR = max, NOT = 1 - x (Zadeh).
4. Rule output TV * truth (eq. 4-6); grade = max over rules (eq. 7); the
   winner, the first rule reaching the grade, is derived from those on first
   use (`ScoreTrace.winner`).
5. With declared classes, each class's grade, in the same pass: the max over
   the rules concluding that class and those concluding `anomalous` (any
   class), so the grade is the max over classes. A labelled region's class is
   its winner's conclusion (`ScoreTrace.winner_class`).

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
from functools import cached_property
from typing import Any

import torch

from kistrules import membership
from kistrules.ast import ANY_CLASS, And, Not, Term
from kistrules.errors import DataError, KistrulesError
from kistrules.formatter import format_term
from kistrules.resolve import MembershipFunction, ResolvedRulebook, only_rule

# Elements per temporary and per torch thread in one CPU pass. With the MTD
# rulebook's 9 edges, one thread takes chunks of ~58k regions (buffers of ~2 MB),
# two threads ~116k: each thread's half of a row stays longer than torch's
# 32k-element grain, so even the one-row ops run on both (docs/performance.md).
CHUNK_ELEMENTS = 1 << 19


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
    fired: torch.Tensor  # (N,) bool, grade >= threshold (alpha)
    classes: torch.Tensor  # (N, C) each declared class's grade (C = 0 without classes)
    rule_class: torch.Tensor  # (R,) int64 index of each rule's class, -1 for `anomalous`
    standardised: dict[str, torch.Tensor] | None = None  # trace: v' per property
    terms: torch.Tensor | None = None  # trace: (N, K) each term's truth (hedges, not)
    limiting: torch.Tensor | None = None  # trace: (N, R) int64 index into terms

    @cached_property
    def winner(self) -> torch.Tensor:
        """(N,) int64, the first rule reaching the grade.

        Computed on first use from `rules` and `grade`, which hold it exactly:
        pseudo-labelling reads only grades and rules, so the scorer's hot path
        does not pay for it. A rule reaching the grade scores R - r, so the
        largest score is the first such rule.
        """
        rules = self.rules.T  # (R, N), the scorer's contiguous layout
        count = rules.shape[0]
        rank = torch.arange(count, 0, -1, device=rules.device, dtype=rules.dtype)[:, None]
        score = torch.where(rules == self.grade, rank, 0.0).amax(0)
        return count - score.long()

    @cached_property
    def winner_class(self) -> torch.Tensor:
        """(N,) int64, the class the winner concludes: an index into the scorer's
        `class_names`, -1 when it concludes `anomalous` (the rulebook names no class)."""
        return self.rule_class[self.winner]


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


def _max_into(operands: Sequence[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """`out` = the elementwise max of `operands`; 0 for none (rule outputs are >= 0)."""
    if not operands:
        return out.zero_()
    if len(operands) == 1:
        return out.copy_(operands[0])
    torch.maximum(operands[0], operands[1], out=out)
    for operand in operands[2:]:
        torch.maximum(out, operand, out=out)
    return out


def _is_flat_and(program: _Program) -> bool:
    if isinstance(program, _Leaf):
        return True
    return program.op == "and" and all(isinstance(o, _Leaf) for o in program.operands)


def _leaves(program: _Program) -> list[int]:
    if isinstance(program, _Leaf):
        return [program.term]
    return [t for operand in program.operands for t in _leaves(operand)]


def _unique(rows: Sequence[int]) -> tuple[int, ...]:
    """Rows in first-seen order without repeats (min is idempotent)."""
    return tuple(dict.fromkeys(rows))


def _column_key(info: TermInfo) -> tuple:
    """What makes two terms the same column: property, set, hedge power, `not`."""
    return (
        info.property,
        info.mf.function,
        info.mf.params,
        membership.hedge_exponent(info.hedges),
        info.negated,
    )


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

    Layout (see the module docstring): signed standardised rows `(P + Q, n)`,
    the distinct edges `(edges, n)`, and when needed the distinct terms
    `(columns, n)`; a plain AND rule is a chain of torch.minimum written
    straight into its output row, any other condition a tree of minimum /
    maximum / 1 - x. When tracing, every rule is walked as a tree, which also
    yields its limiting term. `chunk_size` (regions per pass, None: automatic)
    is there for tests; results do not depend on it.
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
        self.class_names: tuple[str, ...] = tuple(resolved.classes)
        self.rule_classes: tuple[str, ...] = tuple(r.concludes for r in resolved.rules)
        # A class's grade: its own rules and those concluding `anomalous` (any class).
        by_class: dict[str, list[int]] = {name: [] for name in (*self.class_names, ANY_CLASS)}
        for r, conclusion in enumerate(self.rule_classes):
            by_class[conclusion].append(r)
        self._class_rules = tuple(tuple(by_class[name]) for name in self.class_names)
        self._any_rules = tuple(by_class[ANY_CLASS])

        builder = _Builder(resolved)
        programs = [builder.build(rule.condition, i) for i, rule in enumerate(resolved.rules)]
        self.terms: tuple[TermInfo, ...] = tuple(builder.terms)
        self._programs = tuple(programs)
        by_rule: list[list[TermInfo]] = [[] for _ in programs]
        for info in self.terms:
            by_rule[info.rule].append(info)
        self._rule_terms = tuple(tuple(infos) for infos in by_rule)
        self._rule_scorers: dict[int, Scorer] = {}  # one-rule scorers, built on first use

        # Columns: one per distinct term, piecewise-linear sets first, gaussians last.
        first_info: dict[tuple, TermInfo] = {}
        for info in self.terms:
            first_info.setdefault(_column_key(info), info)
        keys = sorted(first_info, key=lambda key: key[1] == "gaussian")  # stable
        column_of = {key: c for c, key in enumerate(keys)}
        self._term_columns = tuple(column_of[_column_key(info)] for info in self.terms)
        infos = [first_info[key] for key in keys]
        linear = [i for i in infos if i.mf.function != "gaussian"]
        gaussians = infos[len(linear) :]

        # Signed rows: v' of every property, then -v' of those a falling edge
        # reads. Properties with a falling edge come first, so the negated rows
        # are one slice: rows P .. P+Q-1 = -(rows 0 .. Q-1).
        edges_of = [
            membership.trapezoid_edges(*membership.as_trapezoid(i.mf.function, i.mf.params))
            for i in linear
        ]
        falling = {
            i.property for i, es in zip(linear, edges_of, strict=True) for e in es if e.sign < 0
        }
        order = sorted(range(len(self.properties)), key=lambda p: self.properties[p] not in falling)
        self._row_property = tuple(order)  # signed row j < P holds property order[j]
        self._negated = len(falling)
        row_of = {self.properties[p]: j for j, p in enumerate(order)}
        count = len(self.properties)

        # Edges: each distinct (signed row, edge) graded once; a column is the
        # minimum of its edges (the built-in low and high have one edge, mid two).
        edge_index: dict[tuple, int] = {}
        column_edges = []
        for info, edges in zip(linear, edges_of, strict=True):
            row = row_of[info.property]
            column_edges.append(
                tuple(
                    edge_index.setdefault((row + (count if e.sign < 0 else 0), e), len(edge_index))
                    for e in edges
                )
            )
        self._column_edges = tuple(column_edges)
        edge_list = list(edge_index)
        self._steps = any(e.step != float("-inf") for _, e in edge_list)

        def buffer(name: str, values: Sequence, kind: torch.dtype | None = None) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=kind or dtype), persistent=False)

        buffer("edge_row", [row for row, _ in edge_list], torch.long)
        for name, values in membership.edge_parameters(
            [e for _, e in edge_list], dtype=dtype
        ).items():
            self.register_buffer(f"edge_{name}", values, persistent=False)
        buffer("gaussian_row", [row_of[i.property] for i in gaussians], torch.long)
        buffer("gaussian_mean", [[i.mf.params[0]] for i in gaussians])
        buffer("gaussian_inverse_sigma", [[1.0 / i.mf.params[1]] for i in gaussians])
        exponents = [membership.hedge_exponent(info.hedges) for info in infos]
        buffer("negation_sign", [[-1.0 if info.negated else 1.0] for info in infos])
        buffer("negation_offset", [[1.0 if info.negated else 0.0] for info in infos])
        # gamma in float64 too, to divide float64 inputs without rounding gamma.
        gammas = [float(resolved.scales[p]) for p in self.properties]
        buffer("gamma", gammas)
        buffer("gamma64", gammas, torch.float64)
        buffer("term_column", list(self._term_columns), torch.long)
        truth_values = [rule.truth_value for rule in resolved.rules]
        buffer("truth_value", [[tv] for tv in truth_values])
        index = {name: c for c, name in enumerate(self.class_names)}
        buffer("rule_class", [index.get(c, -1) for c in self.rule_classes], torch.long)
        self._weighted = any(tv != 1.0 for tv in truth_values)

        # A plain AND rule is a minimum chain over rows: of the column matrix, or,
        # when no column needs more than its edges (no gaussian, hedge, `not` or
        # tree anywhere), straight over the edge matrix.
        self._needs_columns = bool(
            gaussians
            or any(e != 1.0 for e in exponents)
            or any(info.negated for info in infos)
            or any(not _is_flat_and(p) for p in programs)
        )
        self._hedges = tuple((c, e) for c, e in enumerate(exponents) if e != 1.0)
        self._negates = any(info.negated for info in infos)
        flat = [
            (i, _unique([self._term_columns[t] for t in _leaves(p)]))
            for i, p in enumerate(programs)
            if _is_flat_and(p)
        ]
        self._flat_columns = tuple(flat)
        self._flat_edges = (
            ()
            if self._needs_columns
            else tuple(
                (i, _unique([e for c in cols for e in self._column_edges[c]])) for i, cols in flat
            )
        )
        self._trees = tuple(i for i, p in enumerate(programs) if not _is_flat_and(p))
        self.chunk_size: int | None = None  # regions per pass; None: `_chunk_size` decides
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.gamma.device

    def rule_terms(self, rule: int) -> tuple[TermInfo, ...]:
        """The terms of rule `rule` (rulebook order), left to right: its slice of `terms`."""
        return self._rule_terms[rule]

    def rule_scorer(self, rule: int) -> Scorer:
        """A scorer of rule `rule` alone, compiled on first use and kept.

        Its `rules[:, 0]` equals this scorer's `rules[:, rule]` bit for bit: every
        op of the scorer is elementwise, so the other rules and the number of
        terms change no value. Re-scoring one rule this way costs that rule's
        terms, not the whole rulebook's (`explain` verifies counterfactuals so).
        """
        scorer = self._rule_scorers.get(rule)
        if scorer is None or scorer.device != self.device:
            scorer = Scorer(only_rule(self.resolved, rule), device=self.device, dtype=self.dtype)
            self._rule_scorers[rule] = scorer
        return scorer

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
        about CHUNK_ELEMENTS elements per temporary and thread avoid both; on a GPU one pass
        is best.
        `chunk_size`, when set, overrides both (tests use it to cross chunk borders).
        """
        if self.chunk_size is not None:
            return max(1, int(self.chunk_size))
        if self.device.type != "cpu":
            return max(n, 1)
        rows = max(
            len(self.edge_row), len(self.negation_sign), len(self.properties) + self._negated
        )
        return max(4096, CHUNK_ELEMENTS * max(1, torch.get_num_threads()) // rows)

    # --- evaluation -----------------------------------------------------------------

    def _edges(self, signed: torch.Tensor, work: _Workspace) -> torch.Tensor:
        """Every distinct edge's grade `(edges, n)` from the signed rows `(P + Q, n)`."""
        shape = (len(self.edge_row), signed.shape[1])
        edges = torch.index_select(signed, 0, self.edge_row, out=work("edges", shape))
        return membership.grade_edges(
            edges,
            self.edge_left,
            self.edge_rise,
            self.edge_step if self._steps else None,
            mask=work("below", shape, torch.bool) if self._steps else None,
        )

    def _columns(self, signed: torch.Tensor, edges: torch.Tensor, work: _Workspace) -> torch.Tensor:
        """Every distinct term's truth `(columns, n)`: min of its edges, or its gaussian."""
        n = signed.shape[1]
        columns = work("columns", (len(self.negation_sign), n))
        linear = len(self._column_edges)
        for c, rows in enumerate(self._column_edges):
            torch.minimum(edges[rows[0]], edges[rows[-1]], out=columns[c])
        if linear < len(columns):
            shape = (len(columns) - linear, n)
            values = torch.index_select(signed, 0, self.gaussian_row, out=work("bell", shape))
            means, inverse_sigmas = self.gaussian_mean, self.gaussian_inverse_sigma
            membership.gaussian(values, means, inverse_sigmas, out=columns[linear:])
        for c, exponent in self._hedges:
            membership.apply_hedge(columns[c], exponent)
        if self._negates:
            membership.negate_where(columns, self.negation_sign, self.negation_offset)
        return columns

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
        signed: torch.Tensor,
        out: dict[str, torch.Tensor],
        trace: bool,
        work: _Workspace,
    ) -> None:
        """Grade one chunk of regions (signed rows `(P + Q, n)`) into slices of `out`."""
        edges = self._edges(signed, work) if len(self.edge_row) else signed[:0]
        rules = out["rules"]
        if trace or self._needs_columns:
            columns = self._columns(signed, edges, work)
            matrix, flat = columns, self._flat_columns
        else:  # every column is its edges' minimum: AND straight over the edges
            matrix, flat = edges, self._flat_edges
        if trace:
            limiting = out["limiting"]
            for i, program in enumerate(self._programs):
                truth, limits = self._tree(program, columns, trace=True)
                rules[i].copy_(truth)
                limiting[i].copy_(limits)
        else:
            for i, rows in flat:  # AND = min, straight into the output row
                torch.minimum(matrix[rows[0]], matrix[rows[-1]], out=rules[i])
                for row in rows[1:-1]:
                    torch.minimum(rules[i], matrix[row], out=rules[i])
            for i in self._trees:
                rules[i].copy_(self._tree(self._programs[i], columns, trace=False)[0])
        if self._weighted:
            rules.mul_(self.truth_value)  # eq. 4: TV * truth, the probabilistic operator
        grade = torch.amax(rules, 0, out=out["grade"])  # eq. 7
        torch.ge(grade, self.threshold, out=out["fired"])  # while the chunk is in cache
        if self.class_names:
            classes = out["classes"]
            general = [rules[r] for r in self._any_rules]  # those concluding `anomalous`
            if len(general) > 1:  # their max, once for every class
                general = [_max_into(general, work("any", grade.shape))]
            for c, rows in enumerate(self._class_rules):
                _max_into([rules[r] for r in rows] + general, classes[c])
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
            "fired": torch.empty(n, device=device, dtype=torch.bool),
            "classes": torch.empty((len(self.class_names), n), device=device, dtype=dtype),
        }
        if trace:
            out["limiting"] = torch.empty((len(self._programs), n), device=device, dtype=torch.long)
            out["terms"] = torch.empty((len(self.terms), n), device=device, dtype=dtype)
            out["standardised"] = torch.empty((len(rows), n), device=device, dtype=dtype)
        # gamma in the inputs' dtype: float64 inputs are divided in float64.
        gamma = self.gamma64.to(rows[0].dtype).unbind(0)
        count, negated = len(rows), self._negated
        step = self._chunk_size(n)
        work = _Workspace(device, dtype)
        for start in range(0, max(n, 1), step):
            end = min(start + step, n)
            signed = work("signed", (count + negated, end - start))
            # eq. 16 row by row, straight from the inputs (no stacked copy); the
            # division is done in the inputs' dtype and rounded once into `signed`.
            for j, p in enumerate(self._row_property):
                torch.div(rows[p][start:end], gamma[p], out=signed[j])
            signed[:count].clamp_(0.0, 1.0)
            if trace:  # before NaN becomes MISSING: the trace shows NaN
                for j, p in enumerate(self._row_property):
                    out["standardised"][p, start:end].copy_(signed[j])
            if negated:
                torch.neg(signed[:negated], out=signed[count:])
            membership.mark_missing(signed)  # after negating: MISSING is -inf on every row
            self._score(signed, {k: v[..., start:end] for k, v in out.items()}, trace, work)
        return ScoreTrace(
            grade=out["grade"],
            rules=out["rules"].T,
            fired=out["fired"],
            classes=out["classes"].T,
            rule_class=self.rule_class,
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
            f"columns={len(self.negation_sign)}, edges={len(self.edge_row)}, "
            f"properties={self.properties}, "
            f"dtype={self.dtype}"
        )


def compile_rulebook(
    resolved: ResolvedRulebook,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Scorer:
    """A resolved rulebook (`kistrules.resolve.resolve` of one that passed `check`) as a
    vectorised scorer on `device`; float64 is for cross-checks, float32 (the default)
    for training."""
    return Scorer(resolved, device=device, dtype=dtype)
