"""Named conditions (`define NAME = CONDITION`): their order, cycles, sizes and expansion.

A rule that says `IF dark_spot AND border is low` means the condition with
`dark_spot` written out; `expand` does that once, when the rulebook is
resolved, so the compiler, the analysis and `explain` only ever see terms
(explain's per-term truths name the underlying terms, such as
`darkness is high`). The checker uses the same graph for its errors: unknown
names (E020, in the checker), cycles (E021) and expansions too large to write
out (E023).

Every walk over the graph of names is iterative: a chain of 10,000 defines,
each naming the next, must not exhaust Python's stack. Recursion happens only
inside one statement's own condition, which the parser bounds at
`MAX_NESTING` levels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from kistrules.ast import And, ConditionRef, Define, Not, Or, Rulebook, Term

Condition = Term | ConditionRef | Not | And | Or

# An expansion is bounded as if it had been written by hand (E023): the nesting the
# parser allows, and terms enough for any real rule; the rulebook's total keeps a
# 1 MiB file from expanding into millions of terms.
MAX_EXPANDED_DEPTH = 100
MAX_EXPANDED_TERMS = 1_000
MAX_TOTAL_TERMS = 100_000


def references(condition: Condition) -> Iterator[ConditionRef]:
    """Every defined name used in a condition, left to right."""
    for leaf in leaves(condition):
        if isinstance(leaf, ConditionRef):
            yield leaf


def leaves(condition: Condition) -> Iterator[Term | ConditionRef]:
    """Every term and defined name of a condition as written, left to right."""
    if isinstance(condition, (Term, ConditionRef)):
        yield condition
    elif isinstance(condition, Not):
        yield from leaves(condition.operand)
    else:
        for operand in condition.operands:
            yield from leaves(operand)


def dependency_order(definitions: Mapping[str, Define]) -> tuple[list[str], list[list[str]]]:
    """The defined names, each after every name it uses, and the cycles among them.

    A cycle is listed once, as the path that closes it (`["a", "b", "a"]`),
    from where the walk (in file order) entered it; names in a cycle, or using
    one, are left out of the order. Unknown names are ignored (E020's job).
    """
    uses = {
        name: [r.name.name for r in references(d.condition) if r.name.name in definitions]
        for name, d in definitions.items()
    }
    done: set[str] = set()
    broken: set[str] = set()  # in a cycle, or depending on one
    order: list[str] = []
    cycles: list[list[str]] = []
    for root in definitions:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(uses[root])]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                name = path.pop()
                on_path.discard(name)
                stack.pop()
                done.add(name)
                if any(u in broken for u in uses[name]):
                    broken.add(name)
                if name not in broken:
                    order.append(name)
                continue
            if child in on_path:
                cycle = [*path[path.index(child) :], child]
                broken.update(cycle)
                cycles.append(cycle)
            elif child not in done:
                path.append(child)
                on_path.add(child)
                stack.append(iter(uses[child]))
    return order, cycles


@dataclass(frozen=True)
class Size:
    """An expanded condition's number of terms and nesting depth (operators above a term)."""

    terms: int
    depth: int


def condition_size(condition: Condition, sizes: Mapping[str, Size]) -> Size:
    """The size of a condition once its names are written out (`sizes`: each name's).

    Term counts saturate just above MAX_TOTAL_TERMS, so that a name doubling at
    every level of a long chain stays a small number. Unknown names count 0.
    """
    if isinstance(condition, Term):
        return Size(1, 0)
    if isinstance(condition, ConditionRef):
        return sizes.get(condition.name.name, Size(0, 0))
    operands = (condition.operand,) if isinstance(condition, Not) else condition.operands
    parts = [condition_size(op, sizes) for op in operands]
    terms = min(sum(p.terms for p in parts), MAX_TOTAL_TERMS + 1)
    return Size(terms, 1 + max(p.depth for p in parts))


def definition_sizes(definitions: Mapping[str, Define], order: list[str]) -> dict[str, Size]:
    """Each orderable name's expanded size, computed in dependency order."""
    sizes: dict[str, Size] = {}
    for name in order:
        sizes[name] = condition_size(definitions[name].condition, sizes)
    return sizes


def too_large(size: Size) -> bool:
    return size.depth > MAX_EXPANDED_DEPTH or size.terms > MAX_EXPANDED_TERMS


def used_names(rulebook: Rulebook) -> set[str]:
    """The defined names some rule uses, directly or through other names."""
    definitions = rulebook.definitions
    if not definitions:
        return set()
    pending = [r.name.name for rule in rulebook.rules for r in references(rule.condition)]
    used: set[str] = set()
    while pending:
        name = pending.pop()
        if name in used or name not in definitions:
            continue
        used.add(name)
        pending.extend(r.name.name for r in references(definitions[name].condition))
    return used


def expand(condition: Condition, expansions: Mapping[str, Condition]) -> Condition:
    """The condition with every name replaced by its (already expanded) condition.

    The replacement takes the name's span, so that a diagnostic about it points
    at the name in the rule; the terms inside keep their own spans (in the
    `define` line). Expanded names are shared, not copied.
    """
    if isinstance(condition, Term):
        return condition
    if isinstance(condition, ConditionRef):
        return expansions[condition.name.name].model_copy(update={"span": condition.span})
    if isinstance(condition, Not):
        operand = expand(condition.operand, expansions)
        if operand is condition.operand:
            return condition
        return condition.model_copy(update={"operand": operand})
    operands = tuple(expand(op, expansions) for op in condition.operands)
    if all(a is b for a, b in zip(operands, condition.operands, strict=True)):
        return condition
    return condition.model_copy(update={"operands": operands})


def expansions(rulebook: Rulebook) -> dict[str, Condition]:
    """Every defined name's condition written out; the rulebook must have passed `check`.

    Raises KeyError on an unknown or cyclic name: a bug in the caller (an
    unchecked rulebook), not a user error.
    """
    definitions = rulebook.definitions
    order, cycles = dependency_order(definitions)
    if cycles:
        raise KeyError(f"cyclic definitions: {' -> '.join(cycles[0])}")
    out: dict[str, Condition] = {}
    for name in order:
        out[name] = expand(definitions[name].condition, out)
    return out


__all__ = [
    "MAX_EXPANDED_DEPTH",
    "MAX_EXPANDED_TERMS",
    "MAX_TOTAL_TERMS",
    "Size",
    "condition_size",
    "definition_sizes",
    "dependency_order",
    "expand",
    "expansions",
    "leaves",
    "references",
    "too_large",
    "used_names",
]
