"""Judge a parsed rulebook: names, ranges, duplicates, with did-you-mean hints.

The parser accepts whatever has the right shape (a reversed trapezoid, a truth
value of 1.5, a property named `grya`); this pass turns each such mistake into
a diagnostic whose span points at the offending node. It reports errors only;
the interval warnings (W1xx) live in `kistrules.analysis`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from kistrules.ast import (
    ANY_CLASS,
    ClassDef,
    Identifier,
    MembershipCall,
    Number,
    Rule,
    Rulebook,
    RulebookName,
    ScaleDef,
    SetDef,
    ThresholdDef,
    iter_terms,
)
from kistrules.builtins import BUILTIN_SETS, HEDGES, MEMBERSHIP_FUNCTIONS, PROPERTIES
from kistrules.diagnostics import Diagnostic, make
from kistrules.resolve import sets_for_property


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and
    swaps of neighbours each cost 1 (`grya` -> `gray` is one slip, not two)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word`, if it is close enough to be a slip of the keyboard.

    One edit for words of up to four letters, two for longer ones; ties go to
    the earlier candidate. Case is ignored.
    """
    word = word.lower()
    allowed = 1 if len(word) <= 4 else 2
    best, best_distance = None, allowed + 1
    for candidate in candidates:
        if candidate == word:
            continue
        distance = edit_distance(word, candidate)
        if distance < best_distance:
            best, best_distance = candidate, distance
    return best


def _hint(word: str, candidates: Sequence[str], kind: str) -> dict[str, str | None]:
    """`make`'s hint and replacement: a did-you-mean (and its word), or the known names."""
    guess = did_you_mean(word, candidates)
    if guess is not None:
        return {"hint": f'did you mean "{guess}"?', "replacement": guess}
    return {"hint": f"known {kind}: " + ", ".join(candidates), "replacement": None}


def _q(value: str) -> str:
    return f'"{value}"'


def check_names(
    rulebook: Rulebook, *, assume_sets: frozenset[str] = frozenset()
) -> list[Diagnostic]:
    """Every error (E002-E013, E015, E016) in a parsed rulebook, in file order.

    Args:
        rulebook: the parser's output (possibly partial after syntax errors).
        assume_sets: set names to treat as defined: those whose `set` line did
            not parse, so that one syntax error does not cascade into E003s.
    """
    out: list[Diagnostic] = []
    _check_numbers(rulebook, out)
    _check_duplicates(rulebook, out)
    usable: dict[str, list[str]] = {}  # property -> its set names, computed once each
    classes = rulebook.classes
    declared = frozenset(classes)
    for statement in rulebook.statements:
        if isinstance(statement, ScaleDef):
            _check_property(statement.property, out)
            value = statement.value
            if math.isfinite(value.value) and value.value <= 0:
                out.append(
                    make(
                        "E006",
                        f"scale of {_q(statement.property.name)} must be > 0, got {value.text}",
                        value.span,
                        label="not positive",
                        hint="gamma divides the measured value: v' = clip(v / gamma, 0, 1)",
                    )
                )
        elif isinstance(statement, ThresholdDef):
            value = statement.value
            if math.isfinite(value.value) and not 0 <= value.value <= 1:
                out.append(
                    make(
                        "E005",
                        f"threshold must be in [0, 1], got {value.text}",
                        value.span,
                        label="outside [0, 1]",
                        hint="anomaly grades lie in [0, 1]; the paper uses 0.8",
                    )
                )
        elif isinstance(statement, SetDef):
            if statement.property is not None:
                _check_property(statement.property, out)
            _check_membership(statement.function, out)
        elif isinstance(statement, Rule):
            _check_rule(rulebook, statement, assume_sets, usable, out)
            _check_conclusion(statement, classes, declared, out)
    out.sort(key=Diagnostic.sort_key)
    return out


def _check_property(ident: Identifier, out: list[Diagnostic]) -> bool:
    if ident.name in PROPERTIES:
        return True
    out.append(
        make(
            "E002",
            f"unknown property {_q(ident.text)}",
            ident.span,
            label="not a built-in property",
            **_hint(ident.name, list(PROPERTIES), "properties"),
        )
    )
    return False


def _check_membership(call: MembershipCall, out: list[Diagnostic]) -> None:
    name = call.function.name
    if name not in MEMBERSHIP_FUNCTIONS:
        out.append(
            make(
                "E012",
                f"unknown membership function {_q(call.function.text)}",
                call.function.span,
                label="not a membership function",
                **_hint(name, list(MEMBERSHIP_FUNCTIONS), "functions"),
            )
        )
        return
    params = MEMBERSHIP_FUNCTIONS[name]
    args = call.args
    if len(args) != len(params):
        out.append(
            make(
                "E007",
                f"{name} takes {len(params)} parameters ({', '.join(params)}), got {len(args)}",
                call.span,
                label=f"{len(args)} parameter{'s' if len(args) != 1 else ''}",
                hint=f"write {name}({', '.join(params)})",
            )
        )
        return
    if not all(math.isfinite(a.value) for a in args):
        return  # E015 already said so
    if name == "gaussian":
        sigma = args[1]
        if sigma.value <= 0:
            out.append(
                make(
                    "E009",
                    f"gaussian sigma must be > 0, got {sigma.text}",
                    sigma.span,
                    label="not positive",
                    hint="sigma is the width of the bell",
                )
            )
        return
    for i in range(1, len(args)):
        if args[i].value < args[i - 1].value:
            order = " <= ".join(params)
            out.append(
                make(
                    "E008",
                    f"{name} parameters must satisfy {order}, but "
                    f"{params[i]} = {args[i].text} < {params[i - 1]} = {args[i - 1].text}",
                    args[i].span,
                    label=f"smaller than {params[i - 1]}",
                    hint=f"in order: {name}({', '.join(_in_order(args))})",
                )
            )
            return


def _in_order(args: tuple[Number, ...]) -> list[str]:
    return [a.text for a in sorted(args, key=lambda a: a.value)]


def _check_rule(
    rulebook: Rulebook,
    rule: Rule,
    assume_sets: frozenset[str],
    usable: dict[str, list[str]],
    out: list[Diagnostic],
) -> None:
    truth = rule.truth
    if truth is not None and math.isfinite(truth.value) and not 0 < truth.value <= 1:
        out.append(
            make(
                "E004",
                f"truth value must be in (0, 1], got {truth.text}",
                truth.span,
                label="outside (0, 1]",
                hint="1 = certain; 0.8 = fairly sure; leave it out for 1",
            )
        )
    for term in iter_terms(rule.condition):
        known = _check_property(term.property, out)
        for hedge in term.hedges:
            if hedge.name not in HEDGES:
                out.append(
                    make(
                        "E013",
                        f"unknown hedge {_q(hedge.text)}",
                        hedge.span,
                        label="not a hedge",
                        **_hint(hedge.name, list(HEDGES), "hedges"),
                    )
                )
        name = term.set.name
        if name in assume_sets:
            continue
        key = term.property.name if known else ""
        if key not in usable:
            if known:
                usable[key] = list(sets_for_property(rulebook, key))
            else:
                usable[key] = sorted(set(BUILTIN_SETS) | {s.name.name for s in _set_defs(rulebook)})
        if name in usable[key]:
            continue
        if name in HEDGES:
            example = f"{term.property.name} is {name} low"
            hint = {"hint": f'"{name}" is a hedge; a set name must follow it: {example}'}
        else:
            hint = _hint(name, usable[key], "sets")
        where = f" for property {_q(term.property.name)}" if known else ""
        out.append(
            make(
                "E003",
                f"unknown set {_q(term.set.text)}{where}",
                term.set.span,
                label="no such set",
                **hint,
            )
        )


def _check_conclusion(
    rule: Rule, classes: tuple[str, ...], declared: frozenset[str], out: list[Diagnostic]
) -> None:
    """E016: a rule concludes a class that no `class` line declares."""
    conclusion = rule.conclusion
    if conclusion is None or conclusion.name in declared:
        return
    guess = did_you_mean(conclusion.name, [*classes, ANY_CLASS])
    if guess is not None:
        hint = {"hint": f'did you mean "{guess}"?', "replacement": guess}
    elif classes:
        hint = {"hint": "declared classes: " + ", ".join(classes) + f", or {ANY_CLASS} (any)"}
    else:
        hint = {"hint": f"declare it first: class {conclusion.name}"}
    out.append(
        make(
            "E016",
            f"unknown class {_q(conclusion.text)}",
            conclusion.span,
            label="not declared by a class line",
            **hint,
        )
    )


def _set_defs(rulebook: Rulebook) -> list[SetDef]:
    return [s for s in rulebook.statements if isinstance(s, SetDef)]


def _check_numbers(rulebook: Rulebook, out: list[Diagnostic]) -> None:
    for number in _numbers(rulebook):
        if not math.isfinite(number.value):
            out.append(
                make(
                    "E015",
                    f"number {number.text} is too large",
                    number.span,
                    label="not a finite number",
                )
            )


def _numbers(rulebook: Rulebook) -> Iterable[Number]:
    for statement in rulebook.statements:
        if isinstance(statement, ScaleDef | ThresholdDef):
            yield statement.value
        elif isinstance(statement, SetDef):
            yield from statement.function.args
        elif isinstance(statement, Rule) and statement.truth is not None:
            yield statement.truth


def _check_duplicates(rulebook: Rulebook, out: list[Diagnostic]) -> None:
    seen: dict[str, int] = {}  # key -> line of its first definition
    rules: dict[str, int] = {}
    for statement in rulebook.statements:
        if isinstance(statement, Rule):
            if statement.label is None:
                continue
            name = statement.label.name
            if name in rules:
                out.append(
                    make(
                        "E011",
                        f"rule name {_q(name)} is already used at line {rules[name]}",
                        statement.label.span,
                        label="second rule with this name",
                        hint="give each rule its own name",
                    )
                )
            else:
                rules[name] = statement.label.span.line
            continue
        if isinstance(statement, ScaleDef):
            key, what, node = (
                f"scale {statement.property.name}",
                (f"scale of {_q(statement.property.name)}"),
                statement.property,
            )
        elif isinstance(statement, SetDef):
            key, what, node = (
                f"set {statement.qualified_name}",
                (f"set {_q(statement.qualified_name)}"),
                statement.name,
            )
        elif isinstance(statement, ThresholdDef):
            key, what, node = "threshold", "threshold", statement.value
        elif isinstance(statement, RulebookName):
            key, what, node = "rulebook", "rulebook name", statement
        elif isinstance(statement, ClassDef):
            for name in statement.names:
                key, what = f"class {name.name}", f"class {_q(name.name)}"
                _duplicate(seen, key, what, name, out, "declare each class once")
            continue
        else:  # pragma: no cover - every statement kind is handled above
            continue
        _duplicate(seen, key, what, node, out)


def _duplicate(
    seen: dict[str, int],
    key: str,
    what: str,
    node: Identifier | Number | RulebookName,
    out: list[Diagnostic],
    hint: str = "keep one definition; the last one would silently win",
) -> None:
    """E010 for a second definition of `key`; else remember the line of the first."""
    if key in seen:
        out.append(
            make(
                "E010",
                f"{what} is already defined at line {seen[key]}",
                node.span,
                label="second definition",
                hint=hint,
            )
        )
    else:
        seen[key] = node.span.line
