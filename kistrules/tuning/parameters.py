"""The numbers of a rulebook that tuning may move, and the rulebook with them moved.

Tuning keeps an expert's structure (rules, terms, hedges, which sets exist)
and moves numbers only: the `scale` of a property some rule uses, the
parameters of a file `set` some term uses (a `raw` set's in the property's
units), and the `threshold`. Classes and `define`d conditions hold no number;
a set used only inside a definition is used. Numbers that
grade nothing (a scale or set no rule reads) are left alone, and so are truth
values: a truth value below the threshold switches a rule off, which is a
change of structure in disguise.

`tunable_numbers` is the one list. It walks the statements and picks the
kinds it knows; any other statement kind is skipped, so a new kind of
statement is tunable only once it is added here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kistrules.ast import MembershipCall, Number, Rulebook, ScaleDef, SetDef, ThresholdDef
from kistrules.builtins import MEMBERSHIP_FUNCTIONS
from kistrules.resolve import find_set_def, resolve

Kind = Literal["scale", "set", "threshold"]


@dataclass(frozen=True)
class Tunable:
    """One number of the rulebook that tuning may move.

    `statement` indexes `rulebook.statements`; `argument` is the position of
    the number among a set's parameters (0 otherwise); `group` names the set
    whose parameters must stay ordered (`gray.dark`), or the property of a scale.
    """

    kind: Kind
    statement: int
    argument: int
    number: Number
    group: str
    function: str = ""  # a set's membership function
    raw: str = ""  # a `raw` set's property: its numbers are in that property's units

    @property
    def value(self) -> float:
        return self.number.value

    @property
    def label(self) -> str:
        """How reports name the number: `scale gray`, `set gray.dark c`, `threshold`."""
        if self.kind == "set":
            return f"set {self.group} {MEMBERSHIP_FUNCTIONS[self.function][self.argument]}"
        if self.kind == "scale":
            return f"scale {self.group}"
        return "threshold"


def tunable_numbers(rulebook: Rulebook) -> tuple[Tunable, ...]:
    """Every number tuning may move, in file order; the rulebook must check without errors."""
    resolved = resolve(rulebook)
    defined = rulebook.sets
    used_sets = {
        id(definition)
        for prop, name in resolved.sets
        if (definition := find_set_def(rulebook, prop, name, defined=defined)) is not None
    }
    out: list[Tunable] = []
    for index, statement in enumerate(rulebook.statements):
        if isinstance(statement, ScaleDef) and statement.property.name in resolved.scales:
            name = statement.property.name
            out.append(Tunable("scale", index, 0, statement.value, name))
        elif isinstance(statement, SetDef) and id(statement) in used_sets:
            function = statement.function.function.name
            raw = statement.property.name if statement.function.raw and statement.property else ""
            for position, number in enumerate(statement.function.args):
                group = statement.qualified_name
                out.append(Tunable("set", index, position, number, group, function, raw))
        elif isinstance(statement, ThresholdDef):
            out.append(Tunable("threshold", index, 0, statement.value, "threshold"))
    return tuple(out)


def number_text(value: float) -> str:
    """The shortest spelling that reads back as exactly `value`, without a needless `.0`
    (`280`, `0.475`; Python's `repr` otherwise)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def with_values(
    rulebook: Rulebook, tunables: Sequence[Tunable], values: Sequence[float]
) -> Rulebook:
    """The rulebook with each tunable number replaced by its value (spans kept).

    The result is a syntax tree for resolving and compiling; `rewrite` makes
    the text an expert reads.
    """
    if len(values) != len(tunables):
        raise ValueError(f"{len(values)} values for {len(tunables)} tunable numbers")
    statements = list(rulebook.statements)
    for tunable, value in zip(tunables, values, strict=True):
        number = tunable.number.model_copy(
            update={"value": float(value), "text": number_text(float(value))}
        )
        statement = statements[tunable.statement]
        if isinstance(statement, SetDef):
            args = list(statement.function.args)
            args[tunable.argument] = number
            call: MembershipCall = statement.function.model_copy(update={"args": tuple(args)})
            statements[tunable.statement] = statement.model_copy(update={"function": call})
        else:
            statements[tunable.statement] = statement.model_copy(update={"value": number})
    return rulebook.model_copy(update={"statements": tuple(statements)})


def structure(rulebook: Rulebook) -> tuple:
    """The rulebook without positions, spellings, numbers or comments: what tuning keeps."""

    def strip(dump: object) -> object:
        if isinstance(dump, dict):
            if dump.get("kind") == "number":
                return "NUMBER"
            return {k: strip(v) for k, v in dump.items() if k not in ("span", "text")}
        if isinstance(dump, (list, tuple)):
            return tuple(strip(v) for v in dump)
        return dump

    return tuple(strip(s.model_dump()) for s in rulebook.statements)
