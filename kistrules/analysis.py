"""Logic warnings (W101-W108, W110, W111), exact under the language's min/max semantics.

`analyse` runs on a rulebook that has no errors, over its rules as resolved:
named conditions written out (`kistrules.definitions`), raw sets divided by
their scales. Every warning is decided by interval arithmetic on the
membership functions (`kistrules.intervals`), not by sampling, so a rule that
misses the threshold by 1e-9 is caught and one that reaches it exactly is
not. W111 (TV = alpha) names, for a conjunction, where each term is exactly
1, in the property's raw units: only there can such a rule fire.

Why W101 and W102 are exact. A rule gives TV * cond(v) for a region whose
standardised properties are v in [0, 1]^P (one coordinate per property; the
properties are treated as independent, so every point of the product is a
possible region). The rule reaches the threshold alpha iff the level set
{v : cond(v) >= L} with L = alpha / TV is non-empty. That set is computed
exactly by structural recursion, because under Zadeh's operators

    {min(a, b) >= L} = {a >= L} ∩ {b >= L},   {max(a, b) >= L} = {a >= L} ∪ {b >= L},

and NOT is first pushed down to the terms by De Morgan (1 - min(a, b) =
max(1 - a, 1 - b), 1 - (1 - x) = x), where it becomes the term's own `not`
whose level set is the complement of a level set of the set's grade. Each
term's level set is an exact `IntervalSet` on its own property's axis, so the
whole level set is a finite union of boxes (products of per-property interval
sets). A box is non-empty iff each factor is, because the axes are
independent; terms on the SAME property meet in the same factor, which is
where `gray is low AND gray is high` collides. W102 is the same computation
for {cond > 0}. The best value the condition reaches (reported in W101's
message) is the supremum of the levels with a non-empty level set: in closed
form where the operands of each AND are on disjoint properties (sup of a min
over independent axes is the min of the sups; sup of a max is the max), else
by bisection on the exact predicate (to ~1e-11); the warning itself never
depends on the bisection.

The only approximation is floating point: interval ends computed on a sloped
edge are rounded to 12 decimals (so that two edges crossing exactly at the
level meet instead of missing each other by an ulp: ends within 1e-12 count as
equal, breakpoints 1e-9 apart are told apart), and alpha / TV is one float
division. The properties are independent by assumption (in real data `area`
and `pixels` are not; the analysis treats every combination of values as
possible, so it can miss a conflict between them but never invents one that
independent values would not have). A condition whose box expansion exceeds
`MAX_BOXES` (many ORs under ANDs) is not analysed for W101/W102: deciding it
is NP-hard in general and no real rulebook comes near the limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations

from kistrules.ast import And, ClassDef, Not, Or, Rule, Rulebook, SetDef, Term, iter_terms
from kistrules.builtins import PROPERTIES
from kistrules.definitions import used_names
from kistrules.diagnostics import Diagnostic, make
from kistrules.formatter import format_number, format_term
from kistrules.intervals import IntervalSet, level_set, support, term_truth_range
from kistrules.resolve import MembershipFunction, ResolvedRulebook, resolve, sets_for_property
from kistrules.span import Span

MAX_BOXES = 20_000

Condition = Term | Not | And | Or


def analyse(rulebook: Rulebook) -> list[Diagnostic]:
    """All W1xx warnings of an error-free rulebook, sorted by position."""
    resolved = resolve(rulebook)
    diagnostics: list[Diagnostic] = []
    always_zero = set()
    for rule in resolved.rules:  # named conditions written out (`kistrules.definitions`)
        found = _reachability(resolved, rule)
        if any(d.code == "W102" for d in found):
            always_zero.add(id(rule))
        diagnostics.extend(found)
    diagnostics.extend(_duplicates(resolved.rules, always_zero))
    diagnostics.extend(_unused_sets(resolved))
    diagnostics.extend(_unused_definitions(rulebook))
    diagnostics.extend(_unconcluded_classes(rulebook))
    diagnostics.extend(_coverage(rulebook, resolved))
    diagnostics.extend(_implicit_scales(rulebook, resolved))
    return sorted(diagnostics, key=Diagnostic.sort_key)


# --- negation normal form and exact level sets ----------------------------------


@dataclass(frozen=True)
class _Literal:
    term: Term
    property: str
    mf: MembershipFunction
    hedges: tuple[str, ...]
    negated: bool


@dataclass(frozen=True)
class _Junction:
    kind: str  # "and" | "or"
    operands: tuple[_Literal | _Junction, ...]


_Nnf = _Literal | _Junction


def _nnf(resolved: ResolvedRulebook, condition: Condition, negate: bool = False) -> _Nnf:
    """The condition with every NOT pushed onto a term (De Morgan, exact under Zadeh)."""
    if isinstance(condition, Term):
        prop = condition.property.name
        return _Literal(
            condition,
            prop,
            resolved.sets[(prop, condition.set.name)],
            tuple(h.name for h in condition.hedges),
            condition.negated != negate,
        )
    if isinstance(condition, Not):
        return _nnf(resolved, condition.operand, not negate)
    kind = condition.kind if not negate else ("or" if condition.kind == "and" else "and")
    return _Junction(kind, tuple(_nnf(resolved, op, negate) for op in condition.operands))


class _TooComplex(Exception):
    pass


Box = dict[str, IntervalSet]  # a property missing from the box is unconstrained ([0, 1])


def _meet(a: Box, b: Box) -> Box | None:
    out = dict(a)
    for prop, s in b.items():
        joined = out[prop] & s if prop in out else s
        if joined.is_empty:
            return None
        out[prop] = joined
    return out


def _merge_single_property(boxes: list[Box]) -> list[Box]:
    """Boxes that constrain one and the same property are one box (their union)."""
    singles: dict[str, IntervalSet] = {}
    rest = []
    for box in boxes:
        if len(box) == 1:
            ((prop, s),) = box.items()
            singles[prop] = singles[prop] | s if prop in singles else s
        else:
            rest.append(box)
    return rest + [{p: s} for p, s in singles.items()]


@functools.lru_cache(maxsize=8192)
def _level_set(
    mf: MembershipFunction, hedges: tuple[str, ...], negated: bool, level: float, strict: bool
) -> IntervalSet:
    """`level_set`, memoised: rulebooks repeat the same few terms at the same level."""
    return level_set(mf, hedges, negated, level, strict=strict)


def _region(node: _Nnf, level: float, strict: bool) -> list[Box]:
    """{v : node(v) >= level} (> when strict) as a union of non-empty boxes."""
    if isinstance(node, _Literal):
        s = _level_set(node.mf, node.hedges, node.negated, level, strict)
        return [{node.property: s}] if s else []
    if node.kind == "or":
        boxes = [box for op in node.operands for box in _region(op, level, strict)]
        return _merge_single_property(boxes)
    boxes: list[Box] = [{}]
    for op in node.operands:
        parts = _region(op, level, strict)
        boxes = [m for a in boxes for b in parts if (m := _meet(a, b)) is not None]
        if not boxes:
            return []
        if len(boxes) > MAX_BOXES:
            raise _TooComplex
        boxes = _merge_single_property(boxes)
    return boxes


def reaches(resolved: ResolvedRulebook, condition: Condition, level: float, *, strict=False):
    """Whether some point of [0, 1]^P gives the condition a truth >= level (> if strict).

    Raises `_TooComplex` beyond MAX_BOXES boxes.
    """
    return bool(_region(_nnf(resolved, condition), level, strict))


def best_truth(resolved: ResolvedRulebook, condition: Condition) -> float:
    """sup over [0, 1]^P of the condition's truth.

    Exact in closed form where the structure allows it (sup of a max is the
    max of the sups; sup of a min over operands on disjoint properties is the
    min of their sups, the axes being independent); where operands share a
    property, by bisection on the exact level-set predicate (to ~1e-15).
    """
    return _best(_nnf(resolved, condition))


def _properties(node: _Nnf) -> set[str]:
    return {lit.property for lit in _literals(node)}


def _best(node: _Nnf) -> float:
    if isinstance(node, _Literal):
        return term_truth_range(node.mf, node.hedges, node.negated)[1]
    if node.kind == "or":
        return max(_best(op) for op in node.operands)
    seen: set[str] = set()
    for op in node.operands:
        props = _properties(op)
        if props & seen:
            return _bisect_best(node)
        seen |= props
    return min(_best(op) for op in node.operands)


def _bisect_best(node: _Nnf) -> float:
    if _region(node, 1.0, False):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if _region(node, mid, False):
            lo = mid
        else:
            hi = mid
    return lo


# --- W101 / W102 -------------------------------------------------------------------


def _num(x: float, digits: int = 12) -> str:
    text = f"{x:.{digits}g}"
    return "0" if text == "-0" else text


def _approx(x: float) -> str:
    """A computed supremum: ends are rounded to 1e-12 (see intervals), so 10 digits."""
    return _num(x, 10)


def _rule_anchor(rule: Rule) -> Span:
    return rule.label.span if rule.label is not None else rule.condition.span


def _reachability(resolved: ResolvedRulebook, rule: Rule) -> list[Diagnostic]:
    alpha = resolved.threshold
    tv = rule.truth_value
    node = _nnf(resolved, rule.condition)
    if _decided(lambda: not _region(node, 0.0, True)):
        return [
            make(
                "W102",
                f"the condition of {_rule_ref(rule)} is always 0: no region can satisfy it",
                rule.condition.span,
                label="never true",
                hint=_always_zero_hint(node),
            )
        ]
    if tv < alpha:  # only a written TV can be below alpha: the default is 1
        truth = rule.truth
        return [
            make(
                "W101",
                f"{_rule_ref(rule)} can never reach the threshold {_num(alpha)}: "
                f"its truth value {_num(tv) if truth is None else format_number(truth)} "
                "is below it",
                _rule_anchor(rule) if truth is None else truth.span,
                label="below the threshold",
                hint=f"raise the truth value to at least {_num(alpha)} "
                "or lower the threshold (the paper's Remark 2)",
            )
        ]
    if alpha > 0.0 and _decided(lambda: not _region(node, alpha / tv, False)):
        try:
            best = _best(node)
            why = (
                f"its condition is at most {_approx(best)}, so the rule gives at most "
                f"{_approx(best * tv)}"
            )
        except _TooComplex:
            why = f"its condition never reaches {_approx(alpha / tv)}"
        return [
            make(
                "W101",
                f"{_rule_ref(rule)} can never reach the threshold {_num(alpha)}: {why}",
                _rule_anchor(rule),
                label="never reaches the threshold",
                hint=_limiting_hint(node, alpha / tv),
            )
        ]
    if 0.0 < alpha < 1.0 and tv == alpha:  # alpha = 1 asks for 1 of every rule
        return [_only_at_one(resolved, rule, node)]
    return []


def _only_at_one(resolved: ResolvedRulebook, rule: Rule, node: _Nnf) -> Diagnostic:
    """W111: TV = alpha, so the rule fires only where its condition is exactly 1."""
    alpha = _num(resolved.threshold)
    conjuncts = _conjuncts(node)
    if conjuncts is not None:
        plateaus = "; ".join(_plateau(resolved, lit) for lit in conjuncts)
        where = f"every term is exactly 1 ({plateaus})"
    else:
        where = "its condition is exactly 1"
    truth = rule.truth
    return make(
        "W111",
        f"{_rule_ref(rule)} fires only where {where}: its truth value equals the threshold {alpha}",
        _rule_anchor(rule) if truth is None else truth.span,
        label="equals the threshold",
        hint=f"raise the truth value above {alpha} (with 1, the rule fires from a condition of "
        f"{alpha}) or lower the threshold; if meant, say why beside # kist: ignore[W111]",
    )


def _plateau(resolved: ResolvedRulebook, lit: _Literal) -> str:
    """Where a term is exactly 1, in the property's raw units: `gray <= 51`."""
    gamma = resolved.scales[lit.property]
    where = []
    for i in _level_set(lit.mf, lit.hedges, lit.negated, 1.0, False):
        lo, hi = f"{i.lo * gamma:.4g}", f"{i.hi * gamma:.4g}"
        above = f"{lit.property} {'>=' if i.lo_closed else '>'} {lo}"
        below = f"{lit.property} {'<=' if i.hi_closed else '<'} {hi}"
        if i.lo == i.hi:
            where.append(f"{lit.property} = {lo}")
        elif i.lo <= 0.0 and i.hi >= 1.0:
            where.append(f"any {lit.property}")
        elif i.lo <= 0.0:
            where.append(below)
        elif i.hi >= 1.0:
            where.append(above)
        else:
            where.append(f"{lo} {'<=' if i.lo_closed else '<'} {below}")
    return f"`{_literal_text(lit)}`: " + (" or ".join(where) or "nowhere")


def _decided(question: Callable[[], bool]) -> bool:
    """The predicate's answer; False (no warning) when the condition is too complex."""
    try:
        return bool(question())
    except _TooComplex:
        return False


def _rule_ref(rule: Rule) -> str:
    return f"rule {rule.label.name!r}" if rule.label is not None else rule.name


def _literals(node: _Nnf) -> Iterator[_Literal]:
    if isinstance(node, _Literal):
        yield node
    else:
        for op in node.operands:
            yield from _literals(op)


def _conjuncts(node: _Nnf) -> list[_Literal] | None:
    """The literals of a plain conjunction (or a single literal); None otherwise."""
    if isinstance(node, _Literal):
        return [node]
    if node.kind == "and" and all(isinstance(op, _Literal) for op in node.operands):
        return list(node.operands)  # type: ignore[arg-type]
    return None


def _literal_text(lit: _Literal) -> str:
    return format_term(lit.term.model_copy(update={"negated": lit.negated}))


def _same_property_groups(literals: list[_Literal]) -> dict[str, list[_Literal]]:
    groups: dict[str, list[_Literal]] = {}
    for lit in literals:
        groups.setdefault(lit.property, []).append(lit)
    return {p: g for p, g in groups.items() if len(g) > 1}


def _limiting_hint(node: _Nnf, level: float) -> str:
    conjuncts = _conjuncts(node)
    if conjuncts is not None:
        for lit in conjuncts:
            _, high = term_truth_range(lit.mf, lit.hedges, lit.negated)
            if high < level:
                return (
                    f"`{_literal_text(lit)}` is at most {_approx(high)} for any value; "
                    "widen the set, drop a hedge, or raise the truth value"
                )
        for prop, group in _same_property_groups(conjuncts).items():
            texts = " and ".join(f"`{_literal_text(lit)}`" for lit in group)
            return f"{texts} cannot all reach {_approx(level)} at the same value of {prop}"
    return "raise the truth value, lower the threshold, or widen the sets the condition uses"


def _always_zero_hint(node: _Nnf) -> str:
    conjuncts = _conjuncts(node)
    if conjuncts is not None:
        for lit in conjuncts:
            s = support(lit.mf, lit.hedges, lit.negated)
            if s.is_empty:
                return f"`{_literal_text(lit)}` is 0 for every value in [0, 1]"
        for group in _same_property_groups(conjuncts).values():
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    sa = support(a.mf, a.hedges, a.negated)
                    sb = support(b.mf, b.hedges, b.negated)
                    if (sa & sb).is_empty:
                        return (
                            f"`{_literal_text(a)}` (> 0 on {sa}) and `{_literal_text(b)}` "
                            f"(> 0 on {sb}) are never both above 0; did you mean OR?"
                        )
    return "no values of the properties make the whole condition above 0"


# --- W103 / W104 -------------------------------------------------------------------


def _canonical(condition: Condition) -> tuple:
    """A span-free form, equal for conditions that are the same up to AND/OR laws.

    Operand order does not matter, chains are flattened (a AND (b AND c) =
    a AND b AND c) and repeats dropped (a AND a = a): all exact under min/max.
    """
    if isinstance(condition, Term):
        return (
            "term",
            condition.property.name,
            condition.negated,
            tuple(h.name for h in condition.hedges),
            condition.set.name,
        )
    if isinstance(condition, Not):
        return ("not", _canonical(condition.operand))
    flat: set[tuple] = set()
    for op in condition.operands:
        c = _canonical(op)
        flat.update(c[1] if c[0] == condition.kind else [c])
    if len(flat) == 1:
        return flat.pop()
    return (condition.kind, tuple(sorted(flat, key=repr)))


def _term_set(canonical: tuple) -> frozenset[tuple] | None:
    """The terms of a plain conjunction (or one term); None for anything else."""
    if canonical[0] == "term":
        return frozenset([canonical])
    if canonical[0] == "and" and all(op[0] == "term" for op in canonical[1]):
        return frozenset(canonical[1])
    return None


# Above this many terms a conjunction's subsets are not enumerated (2^k lookups);
# such a rule is compared with every other conjunction instead.
_MAX_SUBSET_TERMS = 12


def _where(rule: Rule) -> str:
    return f"{_rule_ref(rule)} (line {rule.span.line})"


def _duplicates(all_rules: Iterable[Rule], skip: set[int]) -> list[Diagnostic]:
    """W103 and W104, by hashing: linear in the rules (times 2^terms for subsets)."""
    rules = [r for r in all_rules if id(r) not in skip]
    order = {id(r): i for i, r in enumerate(rules)}
    canon = {id(r): _canonical(r.condition) for r in rules}
    # Only rules of one conclusion compare: a rule for another class raises another grade.
    by_canon: dict[tuple, list[Rule]] = {}
    by_terms: dict[tuple[str, frozenset[tuple]], list[Rule]] = {}
    for r in rules:
        by_canon.setdefault((r.concludes, canon[id(r)]), []).append(r)
        terms = _term_set(canon[id(r)])
        if terms is not None:
            by_terms.setdefault((r.concludes, terms), []).append(r)
    out = []
    for rule in rules:
        tv = rule.truth_value
        same = by_canon[(rule.concludes, canon[id(rule)])]
        first = next((o for o in same if o.truth_value == tv), rule)
        if first is not rule:  # an earlier copy with the same truth value
            out.append(
                make(
                    "W103",
                    f"{_rule_ref(rule)} duplicates {_where(first)}",
                    _rule_anchor(rule),
                    label="duplicate",
                    hint="delete one of the two rules",
                )
            )
            continue
        higher = next((o for o in same if o.truth_value > tv), None)
        if higher is not None:
            out.append(_subsumed(rule, higher, "it has the same condition"))
            continue
        terms = _term_set(canon[id(rule)])
        if terms is None or len(terms) < 2:
            continue
        kind = rule.concludes
        candidates = (
            (o for sub in _proper_subsets(terms) for o in by_terms.get((kind, sub), ()))
            if len(terms) <= _MAX_SUBSET_TERMS
            else (
                o
                for (of, key), group in by_terms.items()
                if of == kind and key < terms
                for o in group
            )
        )
        better = [o for o in candidates if o.truth_value >= tv]
        if better:
            other = min(better, key=lambda o: order[id(o)])
            out.append(_subsumed(rule, other, "its terms include all of that rule's"))
    return out


def _unconcluded_classes(rulebook: Rulebook) -> Iterator[Diagnostic]:
    """W108: a declared class that no rule concludes (only `anomalous` rules grade it)."""
    concluded = {rule.concludes for rule in rulebook.rules}
    reported = set()
    for statement in rulebook.statements:
        for name in statement.names if isinstance(statement, ClassDef) else ():
            if name.name in concluded or name.name in reported:
                continue
            reported.add(name.name)
            yield make(
                "W108",
                f'no rule concludes class "{name.name}"',
                name.span,
                label="never concluded",
                hint=f"write a rule ending THEN {name.name}, or delete the class",
            )


def _proper_subsets(terms: frozenset[tuple]) -> Iterator[frozenset[tuple]]:
    items = sorted(terms, key=repr)
    for size in range(1, len(items)):
        for combo in combinations(items, size):
            yield frozenset(combo)


def _subsumed(rule: Rule, other: Rule, why: str) -> Diagnostic:
    return make(
        "W104",
        f"{_rule_ref(rule)} is subsumed by {_where(other)}: {why} and its truth value is "
        f"no higher ({_num(rule.truth_value)} <= {_num(other.truth_value)}), so it never "
        "changes a region's grade",
        _rule_anchor(rule),
        label="subsumed",
        hint="delete it, or raise its truth value above the other rule's",
    )


# --- W105 -------------------------------------------------------------------------


def _join(a: Span, b: Span) -> Span:
    return a.model_copy(update={"end": b.end, "end_line": b.end_line, "end_column": b.end_column})


def _set_name_span(definition: SetDef) -> Span:
    if definition.property is None:
        return definition.name.span
    return _join(definition.property.span, definition.name.span)


def _unused_sets(resolved: ResolvedRulebook) -> list[Diagnostic]:
    defined = resolved.source.sets
    # a set used only by an unused `define` counts as used: W110 reports the define
    conditions = [r.condition for r in resolved.rules]
    conditions += [d.condition for d in resolved.source.definitions.values()]
    uses = {(t.property.name, t.set.name) for c in conditions for t in iter_terms(c)}
    out = []
    for qualified, definition in defined.items():
        name = definition.name.name
        if definition.property is not None:
            if (definition.property.name, name) in uses:
                continue
            hint = f"no rule says `{definition.property.name} is ... {name}`; use it or delete it"
        else:
            users = [p for p, s in uses if s == name]
            if any(f"{p}.{name}" not in defined for p in users):
                continue
            if users:
                shadows = ", ".join(f"`{p}.{name}`" for p in sorted(set(users)))
                hint = f"every use of `{name}` is overridden ({shadows}); delete it or an override"
            else:
                hint = "use it in a rule or delete the definition"
        out.append(
            make(
                "W105",
                f"set {qualified!r} is defined but never used",
                _set_name_span(definition),
                label="never used",
                hint=hint,
            )
        )
    return out


# --- W110 -------------------------------------------------------------------------


def _unused_definitions(rulebook: Rulebook) -> list[Diagnostic]:
    used = used_names(rulebook)
    return [
        make(
            "W110",
            f"condition {name!r} is defined but never used",
            definition.name.span,
            label="never used",
            hint="use it in a rule (IF " + name + " AND ...) or delete the definition",
        )
        for name, definition in rulebook.definitions.items()
        if name not in used
    ]


# --- W106 -------------------------------------------------------------------------


def uncovered(rulebook: Rulebook, prop: str) -> IntervalSet:
    """The parts of [0, 1] of positive length where every set usable with `prop` is 0."""
    covered = IntervalSet.empty()
    for mf in sets_for_property(rulebook, prop).values():
        covered = covered | support(mf)
    return IntervalSet(i for i in covered.complement() if i.hi > i.lo)


def _first_use(resolved: ResolvedRulebook, prop: str) -> Term:
    return next(
        t for r in resolved.rules for t in iter_terms(r.condition) if t.property.name == prop
    )


def _coverage(rulebook: Rulebook, resolved: ResolvedRulebook) -> list[Diagnostic]:
    out = []
    for prop in resolved.properties:
        gaps = uncovered(rulebook, prop)
        if gaps.is_empty:
            continue
        family = sets_for_property(rulebook, prop)
        span = _gap_anchor(rulebook, prop, gaps, family) or _first_use(resolved, prop).span
        out.append(
            make(
                "W106",
                f"{prop}: values in {gaps} belong to no set usable with it ({', '.join(family)})",
                span,
                label="leaves a gap",
                hint="widen a set so that neighbouring sets overlap, or add a set for the gap",
            )
        )
    return out


def _gap_anchor(
    rulebook: Rulebook, prop: str, gaps: IntervalSet, family: dict[str, MembershipFunction]
) -> Span | None:
    """The first set defined in the file whose support ends at a gap: the likely culprit."""
    ends = {e for g in gaps for e in (g.lo, g.hi)}
    for definition in rulebook.statements:
        if not isinstance(definition, SetDef):
            continue
        if definition.property is not None and definition.property.name != prop:
            continue
        mf = family.get(definition.name.name)
        if mf is None or mf.origin == "builtin":
            continue
        # the definition must be the one the property resolves to
        is_override = definition.property is not None
        if is_override != (mf.origin == "override"):
            continue
        s = support(mf)
        if any(e in ends for i in s for e in (i.lo, i.hi)) or s.is_empty:
            return _set_name_span(definition)
    return None


# --- W107 -------------------------------------------------------------------------


def _implicit_scales(rulebook: Rulebook, resolved: ResolvedRulebook) -> Iterable[Diagnostic]:
    """One W107 (opt-in) naming every used property without a `scale` line."""
    missing = [p for p in resolved.properties if p not in resolved.explicit_scales]
    if not missing:
        return
    defaults = [(p, _num(PROPERTIES[p].default_scale)) for p in missing]
    listed = ", ".join(f"{p} {gamma} ({PROPERTIES[p].unit})" for p, gamma in defaults)
    lines = "; ".join(f"`scale {p} = {gamma}`" for p, gamma in defaults)
    first, gamma = defaults[0]
    yield make(
        "W107",
        f"{len(missing)} propert{'y has' if len(missing) == 1 else 'ies have'} no scale and "
        f"use{'s' if len(missing) == 1 else ''} the default gamma: {listed}",
        _first_use(resolved, first).property.span,
        label="no explicit scale",
        hint=f"write {lines} to make {'it' if len(missing) == 1 else 'them'} explicit; "
        f"v' = clip({first} / {gamma}, 0, 1), so `{first} is high` is fully true from "
        f"{first} = {_num(0.8 * PROPERTIES[first].default_scale)}",
    )


__all__ = ["MAX_BOXES", "analyse", "best_truth", "reaches", "uncovered"]
