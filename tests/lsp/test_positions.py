"""Offsets <-> LSP positions, against a plain character-by-character reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kistrules.lsp.positions import PositionMap

# encoding -> (Python codec without a byte-order mark, bytes per code unit)
CODECS = {"utf-8": ("utf-8", 1), "utf-16": ("utf-16-le", 2), "utf-32": ("utf-32-le", 4)}


def reference_position(text: str, offset: int, encoding: str) -> tuple[int, int]:
    """LSP's rules spelt out: lines end at \\r\\n, \\r or \\n; columns in code units."""
    line, start, i = 0, 0, 0
    while i < offset:
        ch = text[i]
        if ch == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            if i + 1 == offset:  # between \r and \n: the end of the line
                break
            line, start, i = line + 1, i + 2, i + 2
            continue
        if ch in "\r\n":
            line, start = line + 1, i + 1
        i += 1
    prefix = text[start : min(offset, i)]
    codec, unit = CODECS[encoding]
    return line, len(prefix.encode(codec, errors="surrogatepass")) // unit


# "\ud800": a lone surrogate, which JSON can carry (one UTF-16 unit, as editors count it).
texts = st.text(
    alphabet=st.sampled_from(["a", " ", "é", "𝛾", "字", "\ud800", "\r", "\n", "\f", "\t"])
)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
@given(text=texts)
def test_positions_match_the_reference_and_round_trip(encoding, text):
    positions = PositionMap(text, encoding)
    for offset in range(len(text) + 1):
        line, character = positions.position(offset)
        assert (line, character) == reference_position(text, offset, encoding)
        inside_crlf = 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n"
        if not inside_crlf:
            assert positions.offset(line, character) == offset


def test_examples():
    text = 'x "𝛾é" y\r\nz\fw\rlast'
    utf16 = PositionMap(text, "utf-16")
    assert utf16.position(text.index("y")) == (0, 8)  # 𝛾 is two UTF-16 units
    assert PositionMap(text, "utf-8").position(text.index("y")) == (0, 11)  # 𝛾 4 bytes, é 2
    assert PositionMap(text, "utf-32").position(text.index("y")) == (0, 7)
    assert utf16.position(text.index("w")) == (1, 2)  # a form feed is not a line end
    assert utf16.position(text.index("last")) == (2, 0)  # a lone \r is
    assert utf16.end() == (2, 4)
    assert utf16.line_count == 3


def test_out_of_range_positions_are_clamped():
    text = "ab\n𝛾c\n"
    positions = PositionMap(text)
    assert positions.offset(0, 99) == 2  # past the line's end: the line's end
    assert positions.offset(1, 1) == 3  # inside the surrogate pair: the character's start
    assert positions.offset(9, 0) == len(text)
    assert positions.offset(-1, 0) == 0
    assert positions.position(-5) == (0, 0)
    assert positions.position(99) == (2, 0)
