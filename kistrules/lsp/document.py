"""One analysed version of an open document: what every request reads.

Analysing is `kistrules.api.diagnose`, exactly what `check` runs; the symbol
index and the position maps are built on first use, since diagnostics alone
need neither.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from kistrules.api import MAX_RULEBOOK_BYTES, diagnose
from kistrules.ast import Rulebook
from kistrules.diagnostics import Diagnostic
from kistrules.lsp.positions import PositionMap
from kistrules.parser import gc_paused
from kistrules.symbols import SymbolIndex


@dataclass
class Snapshot:
    uri: str
    version: int | None
    text: str
    rulebook: Rulebook | None
    diagnostics: list[Diagnostic]
    too_large: bool = False  # over `kistrules check`'s size limit: not analysed
    _maps: dict[str, PositionMap] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def index(self) -> SymbolIndex | None:
        return SymbolIndex(self.rulebook) if self.rulebook is not None else None

    def positions(self, encoding: str) -> PositionMap:
        """The offset <-> LSP position map for the negotiated encoding."""
        found = self._maps.get(encoding)
        if found is None:
            found = self._maps[encoding] = PositionMap(self.text, encoding)
        return found


def analyse(uri: str, version: int | None, text: str, path: str) -> Snapshot:
    """Parse and check one version of a document (CPU-bound: run it off the event loop).

    The cyclic garbage collector pauses throughout, as it does for parsing
    (`kistrules.parser.gc_paused`): the server keeps the previous version's
    AST alive meanwhile, and collections rescanning both cost about a fifth of
    the server's CPU time per edit of a 1,000-rule file (benchmarks/bench_lsp.py).
    """
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_RULEBOOK_BYTES:
        return Snapshot(uri, version, text, None, [], too_large=True)
    with gc_paused():
        rulebook, diagnostics = diagnose(text, path)
    return Snapshot(uri, version, text, rulebook, diagnostics)
