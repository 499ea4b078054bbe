"""One diagnostic shape for every problem `check` finds, and the code table.

Where text lives (decided once, as ruff learned to): `message` is the
one-line summary, `label` says what is wrong at the span, `hint` is the
did-you-mean or the fix. Codes are stable: E = error, W = warning. The long
explanation of each code (`kistrules explain-code CODE`) lives in `CODES`;
`docs/diagnostics.md` is generated from it and a test keeps them in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

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
    CodeInfo("E001", "error", "syntax error", ""),
    CodeInfo("E002", "error", "unknown property", ""),
    CodeInfo("E003", "error", "unknown set", ""),
    CodeInfo("E004", "error", "truth value outside (0, 1]", ""),
    CodeInfo("E005", "error", "threshold outside [0, 1]", ""),
    CodeInfo("E006", "error", "scale not positive", ""),
    CodeInfo("E007", "error", "membership function with the wrong number of parameters", ""),
    CodeInfo("E008", "error", "membership function parameters out of order", ""),
    CodeInfo("E009", "error", "gaussian sigma not positive", ""),
    CodeInfo("E010", "error", "duplicate definition", ""),
    CodeInfo("E011", "error", "duplicate rule name", ""),
    CodeInfo("E012", "error", "unknown membership function", ""),
    CodeInfo("E013", "error", "unknown hedge", ""),
    CodeInfo("E014", "error", "file is not readable UTF-8 text", ""),
    CodeInfo("W101", "warning", "rule can never reach the threshold", ""),
    CodeInfo("W102", "warning", "condition is always 0", ""),
    CodeInfo("W103", "warning", "duplicate rule", ""),
    CodeInfo("W104", "warning", "rule subsumed by another", ""),
    CodeInfo("W105", "warning", "set defined but never used", ""),
    CodeInfo("W106", "warning", "sets leave part of [0, 1] uncovered", ""),
    CodeInfo("W107", "warning", "property used without an explicit scale", ""),
)


def make(code: str, message: str, span: Span, *, label: str | None = None,
         hint: str | None = None) -> Diagnostic:
    """A diagnostic whose severity comes from the code table."""
    return Diagnostic(code=code, severity=CODES[code].severity, message=message, span=span,
                      label=label, hint=hint)
