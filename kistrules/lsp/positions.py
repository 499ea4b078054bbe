"""Character offsets <-> LSP positions.

The parser's spans are offsets into the Python string (code points). The
Language Server Protocol counts lines from 0, ends a line at `\\n`, `\\r\\n`
or `\\r` (and nowhere else: not at a form feed, which the grammar allows as
whitespace), and counts columns in code units of the negotiated position
encoding: UTF-16 unless client and server agreed on UTF-8 or UTF-32. So a
column is not a character index as soon as a line holds non-ASCII text
(`é` is 1 UTF-16 unit but 2 UTF-8 bytes; `𝛾` is 2 UTF-16 units).
"""

from __future__ import annotations

import bisect
import re

_LINE_END = re.compile(r"\r\n|\r|\n")


# "surrogatepass": a lone surrogate (JSON allows "\\ud800") counts as one UTF-16 unit.
def _units_utf16(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def _units_utf8(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


_UNITS = {"utf-16": _units_utf16, "utf-8": _units_utf8, "utf-32": len}


class PositionMap:
    """Converts between character offsets of one text and LSP (line, character) positions."""

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        self.text = text
        self.units = _UNITS.get(encoding, _units_utf16)
        self._starts = [0]  # offset where each line starts
        self._ends = []  # offset where each line's content ends (before its line end)
        for m in _LINE_END.finditer(text):
            self._ends.append(m.start())
            self._starts.append(m.end())
        self._ends.append(len(text))

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def position(self, offset: int) -> tuple[int, int]:
        """The (line, character) of a character offset, clamped to the text.

        An offset inside a `\\r\\n` pair counts as the end of its line.
        """
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset) - 1
        start = self._starts[line]
        offset = min(offset, self._ends[line])
        segment = self.text[start:offset]
        return line, len(segment) if segment.isascii() else self.units(segment)

    def offset(self, line: int, character: int) -> int:
        """The character offset of an LSP position.

        A line past the end gives the end of the text; a character past the end
        of its line gives the line's end; a character in the middle of a
        character's code units (half a surrogate pair) gives that character's start.
        """
        if line < 0:
            return 0
        if line >= len(self._starts):
            return len(self.text)
        start, end = self._starts[line], self._ends[line]
        content = self.text[start:end]
        if content.isascii():
            return start + max(0, min(character, len(content)))
        units = 0
        for i, ch in enumerate(content):
            units += self.units(ch)
            if units > character:
                return start + i
        return end

    def end(self) -> tuple[int, int]:
        """The position just past the last character."""
        return self.position(len(self.text))
