"""The exception tree: every error a user can cause is a `KistrulesError`.

The CLI prints any `KistrulesError` as one line and exits non-zero; anything
else is a bug and is reported as an internal error (still one line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kistrules.diagnostics import Diagnostic


class KistrulesError(Exception):
    """Root of every user-facing error (bad rulebook, data, checkpoint, option)."""

    exit_code: int = 1


class UsageError(KistrulesError):
    """A command was called wrongly: missing file, bad option value."""

    exit_code = 2


class RulebookError(KistrulesError):
    """A rulebook has errors; `diagnostics` holds all of them, not just the first.

    Every command but `check` and `fmt` (which report the errors themselves,
    exit 1) refuses such a rulebook like any unusable input: one line, exit 2.
    """

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"] or self.diagnostics
        first = errors[0] if errors else None
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first.one_line()}{more}" if first else "invalid rulebook")


class DataError(KistrulesError):
    """A data set, image, mask or residual map cannot be used as given."""


class CheckpointError(KistrulesError):
    """A run directory or checkpoint is missing, foreign or does not match the model."""
