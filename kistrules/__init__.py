"""kistrules: fuzzy-rule knowledge for reconstruction-based anomaly localization.

The public API is short; heavy modules (torch) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kistrules.ast import Rulebook
from kistrules.diagnostics import Diagnostic
from kistrules.errors import KistrulesError, RulebookError

__version__ = "0.1.0"

__all__ = [
    "Diagnostic",
    "KistrulesError",
    "RegionTable",
    "Rulebook",
    "RulebookError",
    "Scorer",
    "check",
    "format_rulebook",
    "load",
    "loads",
    "measure",
    "measure_regions",
]

_LAZY = {
    "loads": "kistrules.api",
    "load": "kistrules.api",
    "check": "kistrules.api",
    "format_rulebook": "kistrules.formatter",
    "measure": "kistrules.regions",
    "measure_regions": "kistrules.regions",
    "RegionTable": "kistrules.regions",
    "Scorer": "kistrules.compiler",
}

if TYPE_CHECKING:
    from kistrules.api import check, load, loads
    from kistrules.compiler import Scorer
    from kistrules.formatter import format_rulebook
    from kistrules.regions import RegionTable, measure, measure_regions


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kistrules' has no attribute {name!r}")
