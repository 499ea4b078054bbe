"""Source positions.

A `Span` is half-open in character offsets (`start` inclusive, `end` exclusive)
and 1-based in lines and columns; `end_line`/`end_column` point just past the
last character, as editors and LSP do. Lark and sqlglot disagree on these
conventions, so the project fixes them here once.
"""

from __future__ import annotations

import bisect

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """Where a piece of a rulebook came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class LineIndex:
    """Converts character offsets of one text to 1-based line:column."""

    def __init__(self, text: str, path: str = "<string>") -> None:
        self.text = text
        self.path = path
        self._line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._line_starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset, clamped to the text."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def span(self, start: int, end: int) -> Span:
        """The span of text[start:end]."""
        end = max(start, end)
        line, column = self.position(start)
        end_line, end_column = self.position(end)
        return Span(
            path=self.path,
            start=start,
            end=end,
            line=line,
            column=column,
            end_line=end_line,
            end_column=end_column,
        )

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)]
