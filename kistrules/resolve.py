"""Bind every name of a checked rulebook: the one place the language's defaults apply.

A term `gray is low` means, in order of precedence: the override
`set gray.low = ...`, else a file-wide `set low = ...`, else the built-in
`low`. A property without `scale` gets its default gamma; a `raw` set is
divided by its property's gamma here. A rule concludes `anomalous` or a
declared class. Named conditions are written out
(`kistrules.definitions`), so the rules of a `ResolvedRulebook` hold terms
only. The compiler, the analysis and `plot` all read a `ResolvedRulebook`,
so they cannot disagree about which set a term uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from kistrules.ast import ANY_CLASS, Rule, Rulebook, SetDef, iter_terms
from kistrules.builtins import BUILTIN_SETS, PROPERTIES
from kistrules.definitions import expand, expansions


@dataclass(frozen=True)
class MembershipFunction:
    """A resolved fuzzy set: function name and parameters, over standardised values."""

    function: str
    params: tuple[float, ...]
    origin: str = "builtin"  # "builtin", "file" (set NAME) or "override" (set PROPERTY.NAME)


@dataclass(frozen=True)
class ResolvedRulebook:
    """A rulebook with every property's scale and every term's set bound."""

    source: Rulebook
    threshold: float
    rules: tuple[Rule, ...]  # the source's rules, named conditions written out
    properties: tuple[str, ...]  # properties the rules use, in order of first use
    scales: dict[str, float]  # gamma for every used property (explicit or default)
    explicit_scales: frozenset[str]
    sets: dict[tuple[str, str], MembershipFunction] = field(default_factory=dict)
    classes: tuple[str, ...] = ()  # declared classes, in declaration order

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)


def lookup_set(
    rulebook: Rulebook, property_name: str, set_name: str, *, defined: dict | None = None
) -> MembershipFunction | None:
    """The set a term `property is set_name` uses, or None when no such set exists.

    `defined` may pass `rulebook.sets` in, computed once, when looking up many terms.
    """
    definition = find_set_def(rulebook, property_name, set_name, defined=defined)
    if definition is not None:
        return set_function(rulebook, definition)
    if set_name in BUILTIN_SETS:
        function, params = BUILTIN_SETS[set_name]
        return MembershipFunction(function, params, "builtin")
    return None


def find_set_def(
    rulebook: Rulebook, property_name: str, set_name: str, *, defined: dict | None = None
) -> SetDef | None:
    """The file's `set` line a term `property is set_name` uses: the override
    `set property.set_name`, else `set set_name`; None for a built-in or unknown set."""
    defined = rulebook.sets if defined is None else defined
    return defined.get(f"{property_name}.{set_name}") or defined.get(set_name)


def scale_of(rulebook: Rulebook, property_name: str) -> float:
    """A property's gamma: its `scale` line, else its default."""
    explicit = rulebook.scales.get(property_name)
    return explicit if explicit is not None else PROPERTIES[property_name].default_scale


def set_function(rulebook: Rulebook, definition: SetDef) -> MembershipFunction:
    """The membership function a `set` line defines, over standardised values.

    A `raw` set (only `set PROPERTY.NAME = raw ...`, E025) is written in the
    property's units: each parameter, widths included, is divided by its gamma.
    """
    call = definition.function
    params = tuple(arg.value for arg in call.args)
    if call.raw and definition.property is not None:
        gamma = scale_of(rulebook, definition.property.name)
        if math.isfinite(gamma) and gamma > 0:  # else E006 / E015: the checker's to say
            params = tuple(p / gamma for p in params)
    origin = "file" if definition.property is None else "override"
    return MembershipFunction(call.function.name, params, origin)


def sets_for_property(rulebook: Rulebook, property_name: str) -> dict[str, MembershipFunction]:
    """Every set name usable with a property, resolved (built-ins, file sets, overrides)."""
    names = set(BUILTIN_SETS)
    for definition in rulebook.sets.values():
        if definition.property is None or definition.property.name == property_name:
            names.add(definition.name.name)
    resolved = {name: lookup_set(rulebook, property_name, name) for name in sorted(names)}
    return {name: mf for name, mf in resolved.items() if mf is not None}


def resolve(rulebook: Rulebook) -> ResolvedRulebook:
    """Bind names; the rulebook must have passed `check` without errors.

    Raises KeyError on an unknown property or set: that is a bug in the
    caller (an unchecked rulebook), not a user error.
    """
    properties: list[str] = []
    sets: dict[tuple[str, str], MembershipFunction] = {}
    defined = rulebook.sets
    classes = rulebook.classes
    declared = frozenset(classes)
    for rule in rulebook.rules:
        if rule.concludes != ANY_CLASS and rule.concludes not in declared:
            raise KeyError(f"unknown class {rule.concludes!r}")
    rules = rulebook.rules
    if rulebook.definitions:
        written_out = expansions(rulebook)
        rules = tuple(
            r.model_copy(update={"condition": expand(r.condition, written_out)}) for r in rules
        )
    for rule in rules:
        for term in iter_terms(rule.condition):
            prop, name = term.property.name, term.set.name
            if prop not in PROPERTIES:
                raise KeyError(f"unknown property {prop!r}")
            if prop not in properties:
                properties.append(prop)
            if (prop, name) in sets:
                continue
            # `defined` is computed once: `Rulebook.sets` walks every statement,
            # and per term that made resolving 10,000 rules quadratic.
            mf = lookup_set(rulebook, prop, name, defined=defined)
            if mf is None:
                raise KeyError(f"unknown set {name!r} for property {prop!r}")
            sets[(prop, name)] = mf
    explicit = rulebook.scales
    scales = {p: explicit.get(p, PROPERTIES[p].default_scale) for p in properties}
    return ResolvedRulebook(
        source=rulebook,
        threshold=rulebook.threshold,
        rules=rules,
        properties=tuple(properties),
        scales=scales,
        explicit_scales=frozenset(explicit),
        sets=sets,
        classes=classes,
    )


def only_rule(resolved: ResolvedRulebook, index: int) -> ResolvedRulebook:
    """The rulebook reduced to its rule `index`: its properties, scales and sets only.

    Compiled, it scores that one rule exactly as the whole rulebook does (every op
    of the scorer is elementwise, so neither the other rules nor the number of
    terms changes a value); `explain` re-scores one rule this way.
    """
    rule = resolved.rules[index]
    terms = list(iter_terms(rule.condition))
    properties = tuple(dict.fromkeys(t.property.name for t in terms))
    keys = dict.fromkeys((t.property.name, t.set.name) for t in terms)
    return replace(
        resolved,
        rules=(rule,),
        properties=properties,
        scales={p: resolved.scales[p] for p in properties},
        sets={k: resolved.sets[k] for k in keys},
    )
