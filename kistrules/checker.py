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
    ConditionRef,
    Define,
    Identifier,
    MembershipCall,
    Number,
    Rule,
    Rulebook,
    RulebookName,
    ScaleDef,
    SetDef,
    ThresholdDef,
)
from kistrules.builtins import BUILTIN_SETS, HEDGES, MEMBERSHIP_FUNCTIONS, PROPERTIES
from kistrules.definitions import (
    MAX_EXPANDED_DEPTH,
    MAX_EXPANDED_TERMS,
    MAX_TOTAL_TERMS,
    Size,
    condition_size,
    definition_sizes,
    dependency_order,
    leaves,
    references,
    too_large,
)
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
    rulebook: Rulebook,
    *,
    assume_sets: frozenset[str] = frozenset(),
    assume_conditions: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    """Every error (E002-E013, E015, E016, E020-E025) in a parsed rulebook, in file order.

    Args:
        rulebook: the parser's output (possibly partial after syntax errors).
        assume_sets: set names to treat as defined: those whose `set` line did
            not parse, so that one syntax error does not cascade into E003s.
        assume_conditions: the same for `define` lines (no E020 for their names).
    """
    out: list[Diagnostic] = []
    _check_numbers(rulebook, out)
    _check_duplicates(rulebook, out)
    usable: dict[str, list[str]] = {}  # property -> its set names, computed once each
    classes = rulebook.classes
    declared = frozenset(classes)
    refs: list[ConditionRef] = []  # defined names used, found with the terms
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
            known = statement.property is None or _check_property(statement.property, out)
            if _check_membership(statement.function, out) and known:
                _check_set_range(rulebook, statement, out)
        elif isinstance(statement, Define):
            if statement.name.name in PROPERTIES:
                out.append(
                    make(
                        "E022",
                        f"a condition cannot be named {_q(statement.name.text)}: it is a property",
                        statement.name.span,
                        label="a property's name",
                        hint=f"choose another name, e.g. {statement.name.name}_defect",
                    )
                )
            _check_terms(rulebook, statement.condition, assume_sets, usable, refs, out)
        elif isinstance(statement, Rule):
            _check_rule(rulebook, statement, assume_sets, usable, refs, out)
            _check_conclusion(statement, classes, declared, out)
    _check_references(rulebook, refs, assume_conditions, out)
    _check_definitions(rulebook, out)
    out.sort(key=Diagnostic.sort_key)
    return out


def check_has_rules(rulebook: Rulebook) -> list[Diagnostic]:
    """E026 when the file holds no rule: it would grade nothing, and every later
    command would fail on it. The caller skips it after a syntax error (the
    statement lost may be the rule)."""
    if rulebook.rules:
        return []
    start = rulebook.span.model_copy(
        update={"end": 0, "end_line": 1, "end_column": 1, "start": 0, "line": 1, "column": 1}
    )
    return [
        make(
            "E026",
            "the rulebook has no rules",
            start,
            label="no rule in this file",
            hint="add one, e.g. IF gray is low THEN anomalous",
        )
    ]


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


def _check_membership(call: MembershipCall, out: list[Diagnostic]) -> bool:
    """E012, E007, E009, E008 for a membership call; True when it has none of them."""
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
        return False
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
        return False
    if not all(math.isfinite(a.value) for a in args):
        return False  # E015 already said so
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
            return False
        return True
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
            return False
    return True


def _in_order(args: tuple[Number, ...]) -> list[str]:
    return [a.text for a in sorted(args, key=lambda a: a.value)]


def _check_rule(
    rulebook: Rulebook,
    rule: Rule,
    assume_sets: frozenset[str],
    usable: dict[str, list[str]],
    refs: list[ConditionRef],
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
    _check_terms(rulebook, rule.condition, assume_sets, usable, refs, out)


def _check_terms(
    rulebook: Rulebook,
    condition,
    assume_sets: frozenset[str],
    usable: dict[str, list[str]],
    refs: list[ConditionRef],
    out: list[Diagnostic],
) -> None:
    """E002, E013 and E003 for the terms of a rule's or a definition's condition; its
    defined names go to `refs`, for `_check_references`."""
    for term in leaves(condition):
        if isinstance(term, ConditionRef):
            refs.append(term)
            continue
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


def _scale(rulebook: Rulebook, prop: str) -> float | None:
    """The gamma a property's raw sets are divided by; None when its `scale` line is wrong."""
    lines = [s for s in rulebook.statements if isinstance(s, ScaleDef) and s.property.name == prop]
    if not lines:
        return PROPERTIES[prop].default_scale
    value = lines[-1].value.value
    return value if math.isfinite(value) and value > 0 else None


def _number(x: float) -> str:
    return f"{x:.6g}"


def _check_set_range(rulebook: Rulebook, definition: SetDef, out: list[Diagnostic]) -> None:
    """E025 for a raw set without a property; E024 for a breakpoint outside [0, 1]
    once standardised (a raw one divided by its property's scale)."""
    call, prop = definition.function, definition.property
    name = call.function.name
    if call.raw and prop is None:
        raw = call.span.model_copy(
            update={"end": call.span.start + 3, "end_line": call.span.line,
                    "end_column": call.span.column + 3}
        )  # fmt: skip
        out.append(
            make(
                "E025",
                f"set {_q(definition.qualified_name)} is raw but belongs to no property: "
                "its unit is unknown",
                raw,
                label="raw, but in which unit?",
                hint=f"write it for one property (set PROPERTY.{definition.name.name} = raw "
                f"{name}(...)) or in standardised values in [0, 1]",
            )
        )
        return
    gamma = 1.0
    if call.raw and prop is not None:
        found = _scale(rulebook, prop.name)
        if found is None:
            return  # E006 / E015 at the scale already
        gamma = found
    positions = (0,) if name == "gaussian" else range(len(call.args))
    bad = next((i for i in positions if not 0.0 <= call.args[i].value / gamma <= 1.0), None)
    if bad is None:
        return
    arg = call.args[bad]
    param = MEMBERSHIP_FUNCTIONS[name][bad]
    qualified = _q(definition.qualified_name)
    if call.raw and prop is not None:
        unit = PROPERTIES[prop.name].unit
        where = f"{prop.name} = {_number(gamma)}"
        message = (
            f"set {qualified}: raw {param} = {arg.text} ({unit}) reads "
            f"{_number(arg.value / gamma)} with the scale {where}, outside [0, 1]"
        )
        if arg.value > gamma:
            top = max(a.value for a in call.args)
            hint = (
                f"every {prop.name} above the scale {_number(gamma)} reads 1: raise it to at "
                f"least {_number(top)} (scale {prop.name} = {_number(top)}) or lower the "
                "parameter"
            )
        else:
            hint = f"standardised values start at 0: no {prop.name} reads below 0"
    else:
        message = f"set {qualified}: {param} = {arg.text} is outside [0, 1], where sets live"
        if prop is None:
            hint = (
                "sets are written in standardised values v' = clip(v / gamma, 0, 1); to "
                f"write a property's own units, make it that property's set: set "
                f"PROPERTY.{definition.name.name} = raw {name}(...)"
            )
        else:
            gamma = _scale(rulebook, prop.name) or PROPERTIES[prop.name].default_scale
            written = ", ".join(a.text for a in call.args)
            top = max(a.value for a in call.args)
            rescale = f" with a scale of at least {_number(top)}" if top > gamma else ""
            hint = (
                f"sets are standardised ({prop.name} reads clip({prop.name} / {_number(gamma)}, "
                f"0, 1)): write the parameters in [0, 1], or, if they are raw values "
                f"({PROPERTIES[prop.name].unit}), mark the set raw{rescale}: "
                f"set {definition.qualified_name} = raw {name}({written})"
            )
    out.append(make("E024", message, arg.span, label="outside [0, 1]", hint=hint))


def _check_references(
    rulebook: Rulebook, refs: list[ConditionRef], assume: frozenset[str], out: list[Diagnostic]
) -> None:
    """E020: a bare name in a condition that no `define` names."""
    if not refs:
        return
    definitions = rulebook.definitions
    known = list(definitions)
    set_names = set(BUILTIN_SETS) | {s.name.name for s in _set_defs(rulebook)}
    for ref in refs:
        name = ref.name.name
        if name in definitions or name in assume:
            continue
        if name in PROPERTIES:
            hint = {"hint": f"a term reads {name} is SET, e.g. {name} is high"}
        elif name in set_names:
            hint = {"hint": f"{_q(name)} is a set; a term reads PROPERTY is {name}"}
        elif known:
            hint = _hint(name, known, "conditions")
        else:
            hint = {"hint": "name a condition first: define NAME = CONDITION"}
        out.append(
            make(
                "E020",
                f"unknown condition {_q(ref.name.text)}",
                ref.name.span,
                label="not a defined condition",
                **hint,
            )
        )


def _check_definitions(rulebook: Rulebook, out: list[Diagnostic]) -> None:
    """E021 for each cycle of named conditions; E023 for expansions too large."""
    definitions = rulebook.definitions
    if not definitions:
        return
    order, cycles = dependency_order(definitions)
    for cycle in cycles:
        user, used = definitions[cycle[-2]], cycle[-1]
        closing = next(r for r in references(user.condition) if r.name.name == used)
        out.append(
            make(
                "E021",
                f"condition {_q(used)} uses itself: {' -> '.join(cycle)}",
                closing.name.span,
                label="closes the cycle",
                hint="a definition may use other names, but never itself through them",
            )
        )
    sizes = definition_sizes(definitions, order)
    oversized = {name for name, size in sizes.items() if too_large(size)}
    for name in oversized:  # only where it starts: not again in each name using it
        if not {r.name.name for r in references(definitions[name].condition)} & oversized:
            span = definitions[name].name.span
            out.append(_too_large(f"condition {_q(name)}", sizes[name], span))
    total, reported = 0, False
    for rule in rulebook.rules:
        names = {r.name.name for r in references(rule.condition)}
        size = condition_size(rule.condition, sizes)
        if names and names <= set(sizes) and not names & oversized and too_large(size):
            anchor = rule.label.span if rule.label is not None else rule.condition.span
            out.append(_too_large(f"the condition of {rule.name}", size, anchor))
        total += size.terms
        if total > MAX_TOTAL_TERMS and not reported:
            reported = True
            out.append(
                make(
                    "E023",
                    f"the rules hold more than {MAX_TOTAL_TERMS:,} terms once their names are "
                    "written out",
                    rule.label.span if rule.label is not None else rule.condition.span,
                    label="the limit is passed here",
                    hint="use named conditions that expand to fewer terms",
                )
            )


def _too_large(what: str, size: Size, span) -> Diagnostic:
    terms = f"more than {MAX_TOTAL_TERMS:,}" if size.terms > MAX_TOTAL_TERMS else f"{size.terms:,}"
    terms += " term" if size.terms == 1 else " terms"
    return make(
        "E023",
        f"{what} is {terms}, {size.depth} levels deep once its names are written out "
        f"(at most {MAX_EXPANDED_TERMS:,} terms and {MAX_EXPANDED_DEPTH} levels)",
        span,
        label="too large once expanded",
        hint="split it into several rules: the grade is the maximum over rules",
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
        elif isinstance(statement, Define):
            key, what, node = (
                f"define {statement.name.name}",
                f"condition {_q(statement.name.name)}",
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
