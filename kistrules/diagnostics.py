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
    # Off unless asked for by its full code (`check --select W107`): advice that a
    # valid rulebook may well ignore, so it must not fail `--strict` by default.
    opt_in: bool = False


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
            "threshold, define, rule, IF), so each mistake is reported once.\n\n"
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
            "v' = clip(v / gamma, 0, 1), so gamma is the raw value that reads as 1, the top "
            "of the standardised range (the built-in `high` is fully true from 0.8 gamma).\n\n"
            "    scale gray = 0      # error\n    scale gray = 255    # fixed"
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
            "The same scale, set, named condition, threshold or rulebook name is defined "
            "twice. Only one can take effect, so keep one; the message names the line of "
            "the first definition. "
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
            "is low AND area is high THEN anomalous (0.9)\n    IF area is high AND gray is low "
            "THEN anomalous (0.9)   # warning: duplicate"
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
            "high THEN anomalous (0.85)   # warning: subsumed"
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
            "Off by default: reported only when asked for by its code (`kistrules check "
            "--select W107`, or `--select E,W,W107` for everything else too), since a default "
            "scale is a valid choice. Some properties are used without a `scale` line, so "
            "they are standardised with their default gamma (v' = clip(v / gamma, 0, 1); e.g. "
            "gray 255, area 1, shape 187.5). The sets low, mid and high then mean fixed "
            "fractions of that default range, which may not match the data: the paper's "
            "recipe is to choose gamma so that a value known to be high reads 0.8, where "
            "`high` becomes fully true (gamma = that value / 0.8). Reported once per "
            "rulebook, naming every such property; write the scales explicitly, even where "
            "they equal the defaults.\n\n    IF gray is low THEN anomalous   # warning: gray "
            "uses the default gamma 255\n    scale gray = 255                # explicit: no "
            "warning"
        ),
        opt_in=True,
    ),
    # --- named conditions, raw units, empty rulebooks, ignore comments (issue 17) ---
    CodeInfo(
        "E020",
        "error",
        "unknown condition name",
        (
            "A name standing alone in a condition (not followed by `is`) refers to a "
            "condition defined with `define NAME = CONDITION`, anywhere in the file; no such "
            "definition exists. The hint suggests the closest defined name, or, when the name "
            "is a property, the missing `is SET`.\n\n    define dark_spot = darkness is high "
            "AND pixels is not low\n    IF dark_spto AND border is low THEN anomalous   # "
            'error: did you mean "dark_spot"?\n    IF gray THEN anomalous                      '
            "    # error: a term reads gray is SET"
        ),
    ),
    CodeInfo(
        "E021",
        "error",
        "named conditions in a cycle",
        (
            "A defined condition may use other defined conditions, but not itself, directly "
            "or through others: writing it out would never end. The message names the "
            "cycle.\n\n    define a = gray is low AND b\n    define b = area is high OR a   "
            "   # error: a -> b -> a"
        ),
    ),
    CodeInfo(
        "E022",
        "error",
        "condition named like a property",
        (
            "A `define` may not take the name of a built-in region property: a bare `gray` "
            "in a condition would read as a term whose `is SET` is missing. Choose another "
            "name.\n\n    define gray = gray is low AND unevenness is low        # error\n "
            "   define dark_flat = gray is low AND unevenness is low   # fixed"
        ),
    ),
    CodeInfo(
        "E023",
        "error",
        "condition too large once names are expanded",
        (
            "A rule means its condition with every defined name written out in full; the "
            "scorer and the analysis work on that expansion. A name used twice in a "
            "definition that is itself used twice, and so on, doubles the expansion at each "
            "level, so it is bounded as if written by hand: at most 100 levels of nesting "
            "and 1,000 terms per rule or definition, 100,000 terms in the whole rulebook. "
            "Split the knowledge into several rules (the grade is the maximum over rules, so "
            "`IF a OR b THEN ...` is the same as two rules `IF a` and `IF b`)."
        ),
    ),
    CodeInfo(
        "E024",
        "error",
        "set parameter outside [0, 1] once standardised",
        (
            "Sets live on the standardised scale v' = clip(v / gamma, 0, 1), so a breakpoint "
            "(a trapezoid's or triangle's a, b, c, d, a gaussian's mean) outside [0, 1] lies "
            "where no value can be: usually the set was written in the property's own units. "
            "Write it standardised, or mark a property's set `raw` to write it in that "
            "property's units (divided by its scale). A raw breakpoint above the scale gamma "
            "means the scale is too small: every value above gamma reads 1. The hint names "
            "the scale.\n\n    scale pixels = 100\n    set pixels.speck = trapezoid(0, 0, "
            "10, 25)       # error: 25 is outside [0, 1]\n    set pixels.speck = raw "
            "trapezoid(0, 0, 10, 25)   # fixed: 10 px reads 0.1, 25 px 0.25"
        ),
    ),
    CodeInfo(
        "E025",
        "error",
        "raw set without a property",
        (
            "`raw` says the parameters are in a property's own units (pixels, gray levels, "
            "degrees) and are divided by that property's scale. A file-wide `set NAME` is "
            "usable with every property, so it has no unit: write the set for one property, "
            "or in standardised values.\n\n    set speck = raw trapezoid(0, 0, 10, 25)       "
            "   # error: in which unit?\n    set pixels.speck = raw trapezoid(0, 0, 10, 25)   "
            "# fixed"
        ),
    ),
    CodeInfo(
        "E026",
        "error",
        "rulebook without rules",
        (
            "The file has no rule, so it grades nothing: `explain`, `plot`, `audit` and "
            "`train` would have nothing to work with. Add a rule, e.g. `IF gray is low THEN "
            "anomalous`. Not reported while a syntax error has made a statement unreadable "
            "(that statement may be the rule): fix that first."
        ),
    ),
    CodeInfo(
        "E027",
        "error",
        "error code in an ignore comment",
        (
            "A `# kist: ignore[...]` comment may silence warnings only. An error means the "
            "rulebook cannot be used as written (an unknown set, a cycle); silencing it would "
            "only move the failure to `explain`, `plot` or `train`, which refuse a rulebook "
            "with errors. The error is still reported, and so is the comment naming it: fix "
            "the error and keep only W codes in the comment. A bare `# kist: ignore` "
            "silences the warnings of its statement.\n\n    IF gray is lowx THEN anomalous   "
            "# kist: ignore[E003]   <- error: E003 cannot be ignored"
        ),
    ),
    CodeInfo(
        "W110",
        "warning",
        "named condition never used",
        (
            "A condition defined with `define` is used by no rule, neither directly nor "
            "through another defined condition that a rule uses. Use it or delete it; a typo "
            "in a rule may point at another name.\n\n    define dark_spot = darkness is high "
            "AND pixels is not low   # warning: no rule uses dark_spot"
        ),
    ),
    CodeInfo(
        "W111",
        "warning",
        "truth value equals the threshold",
        (
            "A rule fires where TV x truth(condition) >= alpha. With its truth value TV equal "
            "to the threshold alpha, that is where its condition is exactly 1: in an AND, "
            "every term fully true, each value on its set's plateau (`gray is low` only for "
            "gray <= 0.2 gamma); a region that is 0.99 of the way there is never labelled. "
            "A TV is a confidence and alpha the bar for a grade, so this is rarely meant. "
            "Raise the truth value above alpha (with TV 1 the rule fires from a condition of "
            "0.8) or lower the threshold; where the strictness is intended (the KIST paper's "
            "Table I writes TV 0.8 with alpha 0.8), say so with `# kist: ignore[W111]` and a "
            "reason.\n\n    threshold 0.8\n    IF gray is low AND shape is high THEN "
            "anomalous (0.8)   # warning: only where both are exactly 1\n    IF gray is low "
            "AND shape is high THEN anomalous (1)     # fires from 0.8"
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
