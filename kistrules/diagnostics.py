"""One diagnostic shape for every problem `check` finds, and the code table.

Where text lives (decided once, as ruff learned to): `message` is the
one-line summary, `label` says what is wrong at the span, `hint` is the
did-you-mean or the fix; `replacement`, when set, is the did-you-mean's word,
for editors to offer as a one-click fix (the language server's code actions;
`check`'s text and JSON output do not show it). Codes are stable: E = error, W = warning. The long
explanation of each code (`kistrules explain-code CODE`) lives in `CODES`;
`docs/diagnostics.md` is generated from it and a test keeps them in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kistrules.builtins import PROPERTIES
from kistrules.span import Span

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class CodeInfo:
    code: str
    severity: Severity
    title: str
    explanation: str


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    severity: Severity
    message: str
    span: Span
    label: str | None = None
    hint: str | None = None
    # The text that should replace the span, when the hint is a did-you-mean.
    replacement: str | None = None

    def one_line(self) -> str:
        """`path:line:col: severity[CODE]: message (hint)` — the CLI's one-line form."""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.span}: {self.severity}[{self.code}]: {self.message}{hint}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.span.path, self.span.start, self.span.end, self.code)


def _codes(*infos: CodeInfo) -> dict[str, CodeInfo]:
    return {info.code: info for info in infos}


# The explanations are filled in by the language modules' authors; every code
# used anywhere must be listed here (a test enforces it).
CODES: dict[str, CodeInfo] = _codes(
    CodeInfo(
        "E001",
        "error",
        "syntax error",
        (
            "The text does not follow the grammar of the .rules language. The message says "
            'what was expected there ("expected THEN", "expected a number") and what was '
            "found; the hint names the usual slip: a misspelt keyword (`THN` for `then`), a "
            "missing THEN, an unclosed parenthesis, a missing `=` in `scale`/`set`, a truth "
            "value without parentheses. Only the statement with the error is skipped: "
            "checking resumes at the next statement keyword (rulebook, class, scale, set, "
            "threshold, rule, IF), so each mistake is reported once.\n\n"
            '    IF gray is low THN anomalous    # error: did you mean "then"?\n'
            "    IF gray is low THEN anomalous   # fixed"
        ),
    ),
    CodeInfo(
        "E002",
        "error",
        "unknown property",
        (
            f"A property name is not one of the built-in region properties: "
            f"{', '.join(PROPERTIES)}. This applies to terms "
            "of rules, to `scale PROPERTY = ...` and to `set PROPERTY.NAME = ...`. The hint "
            "suggests the closest name.\n\n    IF grya is low THEN anomalous     # error: did "
            'you mean "gray"?'
        ),
    ),
    CodeInfo(
        "E003",
        "error",
        "unknown set",
        (
            "A term uses a set that does not exist for its property. A term `gray is low` may "
            "use the built-in sets low, mid and high, any set defined with `set NAME = ...`, "
            "and the overrides `set gray.NAME = ...` of that property (an override for "
            "another property does not count).\n\n    IF gray is lwo THEN anomalous      # "
            'error: did you mean "low"?'
        ),
    ),
    CodeInfo(
        "E004",
        "error",
        "truth value outside (0, 1]",
        (
            "A rule's truth value (TV), the number in parentheses after `anomalous`, must be "
            "in (0, 1]: the rule's output is TV times the truth of its condition, and anomaly "
            "grades lie in [0, 1]. A TV of 0 would make the rule useless. Leave it out for TV "
            "= 1.\n\n    IF gray is low THEN anomalous (1.5)   # error\n    IF gray is low "
            "THEN anomalous (0.9)   # fixed"
        ),
    ),
    CodeInfo(
        "E005",
        "error",
        "threshold outside [0, 1]",
        (
            "The anomaly-grade threshold alpha must be in [0, 1]: a region whose grade "
            "reaches it goes into the pseudo-label. Without a `threshold` line it is 0.8, the "
            "paper's value.\n\n    threshold 80     # error\n    threshold 0.8    # fixed"
        ),
    ),
    CodeInfo(
        "E006",
        "error",
        "scale not positive",
        (
            "A scale (gamma) must be a positive number: a measured value v is standardised as "
            "v' = clip(v / gamma, 0, 1), so gamma is the value that counts as fully "
            "`high`.\n\n    scale gray = 0      # error\n    scale gray = 255    # fixed"
        ),
    ),
    CodeInfo(
        "E007",
        "error",
        "membership function with the wrong number of parameters",
        (
            "A membership function got the wrong number of parameters: trapezoid(a, b, c, d) "
            "takes 4, triangle(a, b, c) takes 3, gaussian(mean, sigma) takes 2.\n\n    set "
            "low = trapezoid(0, 0.2, 0.4)       # error\n    set low = trapezoid(0, 0, 0.2, "
            "0.4)    # fixed"
        ),
    ),
    CodeInfo(
        "E008",
        "error",
        "membership function parameters out of order",
        (
            "The parameters of a trapezoid must satisfy a <= b <= c <= d, and those of a "
            "triangle a <= b <= c (a = b or c = d gives a shoulder). The span points at the "
            "first parameter that is smaller than the one before it.\n\n    set mid = "
            "trapezoid(0.4, 0.2, 0.6, 0.8)   # error: reversed\n    set mid = trapezoid(0.2, "
            "0.4, 0.6, 0.8)   # fixed"
        ),
    ),
    CodeInfo(
        "E009",
        "error",
        "gaussian sigma not positive",
        (
            "A gaussian's sigma (its width) must be positive.\n\n    set mid = gaussian(0.5, "
            "0)      # error\n    set mid = gaussian(0.5, 0.1)    # fixed"
        ),
    ),
    CodeInfo(
        "E010",
        "error",
        "duplicate definition",
        (
            "The same scale, set, threshold or rulebook name is defined twice. Only one can "
            "take effect, so keep one; the message names the line of the first definition. "
            "`set low` and `set gray.low` are different sets and may both be defined. A class "
            "declared twice (`class crack, crack`, or in two `class` lines) is reported too."
        ),
    ),
    CodeInfo(
        "E011",
        "error",
        "duplicate rule name",
        (
            "Two rules have the same name. Rule names identify rules in explanations and "
            "audits, so each must be unique (unnamed rules are called `rule N` by their "
            "position)."
        ),
    ),
    CodeInfo(
        "E012",
        "error",
        "unknown membership function",
        (
            "A `set` line calls a membership function that does not exist. The functions are "
            "trapezoid(a, b, c, d), triangle(a, b, c) and gaussian(mean, sigma).\n\n    set "
            'low = trapezium(0, 0, 0.2, 0.4)   # error: did you mean "trapezoid"?'
        ),
    ),
    CodeInfo(
        "E013",
        "error",
        "unknown hedge",
        (
            "A word between `is` (or `is not`) and the set name is not a hedge. The hedges "
            "are `very` (x^2) and `somewhat` (sqrt x); they apply from the set outward.\n\n   "
            ' IF gray is vrey low THEN anomalous   # error: did you mean "very"?'
        ),
    ),
    CodeInfo(
        "E014",
        "error",
        "file is not readable UTF-8 text",
        (
            "The file is not UTF-8 text: it holds a byte that is not valid UTF-8, or a NUL "
            "byte (a binary file). The span points at the first such byte. Save the rulebook "
            "as UTF-8."
        ),
    ),
    CodeInfo(
        "E015",
        "error",
        "number too large",
        (
            "A number is too large to be represented (it overflows to infinity), e.g. "
            "`1e999`. Use an ordinary number."
        ),
    ),
    CodeInfo(
        "E016",
        "error",
        "unknown class",
        (
            "A rule concludes a class (`THEN crack`) that no `class` line declares. Declare "
            "the classes of defect first (`class blowhole, crack`), then conclude one of them "
            "or `anomalous`, which is built in and means a defect of any class. The hint "
            "suggests the closest declared class (or `anomalous`), else lists them.\n\n"
            "    class blowhole, crack\n"
            '    IF gray is low THEN crak (0.9)   # error: did you mean "crack"?'
        ),
    ),
    CodeInfo(
        "W101",
        "warning",
        "rule can never reach the threshold",
        (
            "No region can make this rule's output TV x truth(condition) reach the "
            "anomaly-grade threshold alpha, so the rule never puts a pixel into a pseudo-label "
            "(the paper's Remark 2). Either its truth value is below alpha, or the best its "
            "condition can reach over all standardised property values in [0, 1], times TV, is "
            "below alpha. The check is exact: the level set {condition >= alpha / TV} is "
            "computed from the membership functions in closed form (hedges and NOT inverted, "
            "terms on the same property intersected), not by sampling; properties are treated "
            "as independent.\n\n    threshold 0.8\n    IF gray is very mid THEN anomalous "
            "(0.7)   # warning: 0.7 < 0.8\n    IF gray is low AND gray is mid THEN anomalous   "
            "# warning: at most 0.5"
        ),
    ),
    CodeInfo(
        "W102",
        "warning",
        "condition is always 0",
        (
            "The condition is 0 for every region: no combination of property values in [0, 1] "
            "makes it positive, typically two terms on the same property whose sets do not "
            "overlap, joined by AND. The rule can never fire. Did you mean OR?\n\n    IF gray "
            "is low AND gray is high THEN anomalous   # warning: low is 0 above 0.4, high is 0 "
            "below 0.6"
        ),
    ),
    CodeInfo(
        "W103",
        "warning",
        "duplicate rule",
        (
            "Two rules have the same condition (up to the order of AND/OR operands, "
            "parentheses around chains of the same operator and repeated operands), the "
            "same truth value and the same conclusion (rules concluding different classes "
            "raise different class grades). The "
            "second adds nothing; the warning points at it and names the first.\n\n    IF gray "
            "is low AND area is high THEN anomalous (0.8)\n    IF area is high AND gray is low "
            "THEN anomalous (0.8)   # warning: duplicate"
        ),
    ),
    CodeInfo(
        "W104",
        "warning",
        "rule subsumed by another",
        (
            "A region's grade is the maximum over the rules, so a rule whose output can never "
            "exceed another rule's never changes any grade. Reported, exactly, when both rules "
            "are conjunctions of terms (AND only, or a single term), the subsumed rule's terms "
            "include all of the other's (min over more terms is never larger) and its truth "
            "value is no higher; also when the conditions are the same and the truth value is "
            "lower. Only rules with the same conclusion (`anomalous` or one class) "
            "compare.\n\n    IF gray is low THEN anomalous (0.9)\n    IF gray is low AND area is "
            "high THEN anomalous (0.8)   # warning: subsumed"
        ),
    ),
    CodeInfo(
        "W105",
        "warning",
        "set defined but never used",
        (
            "A `set` defined in the file is used by no rule. An override `set gray.low = ...` "
            "is used when a rule says `gray is low`; a file-wide `set low = ...` is used when "
            "some rule says `PROPERTY is low` for a property without its own override. Delete "
            "the set or use it (a typo in a rule may point at another set).\n\n    set dark = "
            "trapezoid(0, 0, 0.1, 0.3)   # warning: no rule uses dark"
        ),
    ),
    CodeInfo(
        "W106",
        "warning",
        "sets leave part of [0, 1] uncovered",
        (
            "For a property used by the rules, the sets usable with it (the built-in low, mid "
            "and high, the file-wide sets and that property's overrides, each resolved as a "
            "rule would see it) leave an interval of standardised values where every one of "
            "them is 0: values there cannot be described at all. The built-in sets cover [0, "
            "1], so this happens when a `set` line narrows or replaces one of them. Only gaps "
            "of positive length are reported (two sets meeting at a single point where both "
            "are 0 are not); the warning points at the file's set whose support ends at the "
            "gap.\n\n    set gray.low = trapezoid(0, 0, 0.1, 0.15)   # warning: gray values in "
            "[0.15, 0.2] are neither low nor mid"
        ),
    ),
    CodeInfo(
        "W107",
        "warning",
        "property used without an explicit scale",
        (
            "A property is used without a `scale` line, so it is standardised with its default "
            "gamma (v' = clip(v / gamma, 0, 1); e.g. gray 255, area 1, shape 187.5). The sets "
            "low, mid and high then mean fixed fractions of that default range, which may not "
            "match the data: in the paper, gamma is chosen by the expert so that a value known "
            "to be high reads as 0.8. Write the scale explicitly, even when it equals the "
            "default.\n\n    IF gray is low THEN anomalous   # warning: gray uses the default "
            "gamma 255\n    scale gray = 255                # explicit: no warning"
        ),
    ),
    CodeInfo(
        "W108",
        "warning",
        "class declared but never concluded",
        (
            "A class is declared by a `class` line but no rule concludes it, so its grade "
            "comes only from the rules that conclude `anomalous` (any class) and no labelled "
            "region is ever given this class. Write a rule for it, or delete it (a typo in a "
            "rule's conclusion is reported as E016).\n\n"
            "    class blowhole, crack\n"
            "    IF gray is low THEN blowhole   # warning: no rule concludes crack"
        ),
    ),
)


def make(
    code: str,
    message: str,
    span: Span,
    *,
    label: str | None = None,
    hint: str | None = None,
    replacement: str | None = None,
) -> Diagnostic:
    """A diagnostic whose severity comes from the code table."""
    return Diagnostic(
        code=code,
        severity=CODES[code].severity,
        message=message,
        span=span,
        label=label,
        hint=hint,
        replacement=replacement,
    )
