"""The rulebook syntax tree: frozen pydantic nodes, each with its source span.

The tree holds whatever parses; judging it (unknown names, reversed trapezoids,
truth values out of range) is the checker's job, so that every such mistake
becomes a diagnostic with a span rather than a spanless validation error.

Names are stored lower-cased (the language is case-insensitive); `text` keeps
the spelling the expert wrote, for messages. Sequences are tuples, because
pydantic's `frozen` is shallow. Nodes carry no behaviour beyond read-only
conveniences; each pass is a function that dispatches on `kind`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kistrules.span import Span

if TYPE_CHECKING:
    pass


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span


class Identifier(Node):
    """A name as written: `name` lower-cased, `text` verbatim."""

    kind: Literal["identifier"] = "identifier"
    name: str
    text: str


class Number(Node):
    """A numeric literal; `text` keeps the expert's spelling (`0.80`, `1e-3`)."""

    kind: Literal["number"] = "number"
    value: float
    text: str


class MembershipCall(Node):
    """`trapezoid(a, b, c, d)`, `triangle(a, b, c)` or `gaussian(mean, sigma)`.

    `function` is whatever name was written; the checker validates it and the
    arity, so a typo gets a did-you-mean instead of a syntax error. `raw`
    (`raw trapezoid(30, 60, 1200, 1500)`): the parameters are in the
    property's own units, divided by its scale when the set is resolved.
    """

    kind: Literal["membership"] = "membership"
    function: Identifier
    args: tuple[Number, ...]
    raw: bool = False


# --- statements -------------------------------------------------------------


class RulebookName(Node):
    """`rulebook "NAME"`: the display name."""

    kind: Literal["rulebook"] = "rulebook"
    name: str


class ScaleDef(Node):
    """`scale PROPERTY = NUMBER`: gamma, v' = clip(v / gamma, 0, 1) (paper eq. 16)."""

    kind: Literal["scale"] = "scale"
    property: Identifier
    value: Number


class SetDef(Node):
    """`set NAME = MF(...)` (any property) or `set PROPERTY.NAME = MF(...)` (one)."""

    kind: Literal["set"] = "set"
    property: Identifier | None
    name: Identifier
    function: MembershipCall

    @property
    def qualified_name(self) -> str:
        return f"{self.property.name}.{self.name.name}" if self.property else self.name.name


class ClassDef(Node):
    """`class NAME, NAME ...`: defect classes that rules may conclude (in declaration order)."""

    kind: Literal["class"] = "class"
    names: tuple[Identifier, ...]


class ThresholdDef(Node):
    """`threshold NUMBER`: the anomaly-grade threshold alpha."""

    kind: Literal["threshold"] = "threshold"
    value: Number


# --- conditions -------------------------------------------------------------


class Term(Node):
    """`PROPERTY is [not] [HEDGE ...] SET`.

    `hedges` are in written order; they apply from the set outward, and `not`
    last: `gray is not very somewhat low` = 1 - very(somewhat(low(gray'))).
    """

    kind: Literal["term"] = "term"
    property: Identifier
    negated: bool = False
    hedges: tuple[Identifier, ...] = ()
    set: Identifier


class ConditionRef(Node):
    """A defined condition used by its name: `dark_spot` in `IF dark_spot AND ...`."""

    kind: Literal["reference"] = "reference"
    name: Identifier


class Not(Node):
    kind: Literal["not"] = "not"
    operand: Condition


class And(Node):
    """Two or more operands; AND = min. A chain `a AND b AND c` is one node."""

    kind: Literal["and"] = "and"
    operands: tuple[Condition, ...]


class Or(Node):
    """Two or more operands; OR = max."""

    kind: Literal["or"] = "or"
    operands: tuple[Condition, ...]


Condition = Annotated[Term | ConditionRef | Not | And | Or, Field(discriminator="kind")]


class Define(Node):
    """`define NAME = CONDITION`: a condition named once and used by name in others.

    Kept as written here; `kistrules.definitions` writes the names out for
    the scorer and the analysis.
    """

    kind: Literal["define"] = "define"
    name: Identifier
    condition: Condition


ANY_CLASS = "anomalous"  # what `THEN anomalous` concludes: a defect of any class


class Rule(Node):
    """`rule NAME: IF COND THEN anomalous (TV)`; name and TV are optional.

    `position` is the rule's 1-based place among the rulebook's rules, which
    names an unnamed rule (`rule 3`). `conclusion` is the class after THEN, or
    None for `anomalous` (any class).
    """

    kind: Literal["rule"] = "rule"
    label: Identifier | None = None
    condition: Condition
    conclusion: Identifier | None = None
    truth: Number | None = None
    position: int

    @property
    def concludes(self) -> str:
        """The class the rule concludes: a declared class's name, or `anomalous`."""
        return self.conclusion.name if self.conclusion is not None else ANY_CLASS

    @property
    def name(self) -> str:
        return self.label.name if self.label is not None else f"rule {self.position}"

    @property
    def truth_value(self) -> float:
        return self.truth.value if self.truth is not None else 1.0


Statement = Annotated[
    RulebookName | ClassDef | ScaleDef | SetDef | ThresholdDef | Define | Rule,
    Field(discriminator="kind"),
]


class Comment(Node):
    """A `# ...` comment; kept so that `fmt` can put it back."""

    kind: Literal["comment"] = "comment"
    text: str


DEFAULT_THRESHOLD = 0.8


class Rulebook(Node):
    """A parsed rulebook: its statements in file order, plus its comments.

    The read-only views (`rules`, `scales`, `sets`, `threshold`) take the last
    definition when a name is defined twice; the checker reports the duplicate.
    """

    kind: Literal["rulebook_file"] = "rulebook_file"
    path: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = ()
    source: str = Field(default="", repr=False)

    @property
    def display_name(self) -> str | None:
        names = [s.name for s in self.statements if isinstance(s, RulebookName)]
        return names[-1] if names else None

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(s for s in self.statements if isinstance(s, Rule))

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    @property
    def scales(self) -> dict[str, float]:
        """Explicit scales only; `builtins.PROPERTIES` holds the defaults."""
        return {s.property.name: s.value.value for s in self.statements if isinstance(s, ScaleDef)}

    @property
    def sets(self) -> dict[str, SetDef]:
        """Sets defined in the file, keyed `name` or `property.name`."""
        return {s.qualified_name: s for s in self.statements if isinstance(s, SetDef)}

    @property
    def classes(self) -> tuple[str, ...]:
        """Declared class names in declaration order, each once (empty: no `class` line)."""
        names = (i.name for s in self.statements if isinstance(s, ClassDef) for i in s.names)
        return tuple(dict.fromkeys(names))

    @property
    def definitions(self) -> dict[str, Define]:
        """Named conditions, keyed by name."""
        return {s.name.name: s for s in self.statements if isinstance(s, Define)}

    @property
    def threshold(self) -> float:
        values = [s.value.value for s in self.statements if isinstance(s, ThresholdDef)]
        return values[-1] if values else DEFAULT_THRESHOLD


Not.model_rebuild()
And.model_rebuild()
Or.model_rebuild()
Define.model_rebuild()
Rule.model_rebuild()
Rulebook.model_rebuild()


def iter_terms(condition: Term | ConditionRef | Not | And | Or):
    """Every term of a condition as written, left to right (a defined name's terms are
    not included: `kistrules.definitions.expand` writes them out)."""
    if isinstance(condition, Term):
        yield condition
    elif isinstance(condition, ConditionRef):
        return
    elif isinstance(condition, Not):
        yield from iter_terms(condition.operand)
    else:
        for operand in condition.operands:
            yield from iter_terms(operand)
