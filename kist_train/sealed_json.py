"""JSON files of a run that reveal any edit, read within bounds.

Every JSON file that kistrules reads back from a run (the run marker, checkpoint
records, latest.json) is *sealed*: it holds "record_sha256", the sha256 of its
own content in a canonical form (sorted keys, no spaces). A hand edit, a bit flip
or a copy from another run without re-sealing is refused on load, naming the file.
The seal is a check against accidents, not a signature: whoever recomputes it can
still edit a file, which is why readers also validate every field they use.

Reading is bounded: the file's size, no NaN or infinite numbers (JSON has none;
Python would accept them), and a nesting depth far above what kistrules writes,
so a hostile file cannot exhaust memory or the recursion limit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kistrules.errors import CheckpointError

__all__ = ["MAX_DEPTH", "read_json", "seal", "sealed_text", "unseal"]

SEAL = "record_sha256"
MAX_DEPTH = 64  # kistrules writes at most ~12 levels (optimizer state in a record)


def _canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def seal(content: dict[str, Any]) -> dict[str, Any]:
    """`content` plus its seal; raises ValueError or TypeError if it is not plain JSON."""
    body = {k: v for k, v in content.items() if k != SEAL}
    return {**body, SEAL: hashlib.sha256(_canonical(body)).hexdigest()}


def sealed_text(content: dict[str, Any]) -> str:
    """The file text of a sealed `content` (indented for people who read it)."""
    return json.dumps(seal(content), indent=1, allow_nan=False) + "\n"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def read_json(path: Path, *, max_bytes: int, what: str) -> Any:
    """Parse a JSON file of a run, or raise a one-line CheckpointError naming it."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"{path}: {what} of {size:,} bytes (the limit is {max_bytes:,})")
        text = path.read_text(encoding="utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except CheckpointError:
        raise
    except RecursionError as err:
        raise CheckpointError(f"{path}: {what} is nested too deeply") from err
    except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise CheckpointError(f"{path}: unreadable {what} ({reason})") from err
    if _depth(value) > MAX_DEPTH:
        raise CheckpointError(f"{path}: {what} is nested too deeply (over {MAX_DEPTH} levels)")
    return value


def unseal(value: Any, path: Path, *, what: str) -> dict[str, Any]:
    """The content of a sealed record read by `read_json`, after checking its seal."""
    if not isinstance(value, dict) or not isinstance(value.get(SEAL), str):
        raise CheckpointError(f"{path}: {what} has no {SEAL} (not written by this kistrules)")
    body = {k: v for k, v in value.items() if k != SEAL}
    if hashlib.sha256(_canonical(body)).hexdigest() != value[SEAL]:
        raise CheckpointError(f"{path}: {what} was edited or corrupted (its sha256 differs)")
    return body
