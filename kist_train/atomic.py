"""Write files so that readers see the old content or the new, never half of either.

Checkpoints, logs and outputs are written to a temporary file in the target's
directory (same file system, so ``os.replace`` is atomic) and renamed over the
target only once complete. A crash or an exception mid-write leaves the
previous file untouched and no temporary behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The block writes the temporary file however it likes (e.g. a library that
    only accepts a filename). On an exception the temporary file is removed
    and the exception propagates.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and (
            err.filename is None or os.fspath(err.filename) == os.fspath(tmp)
        ):
            # Name the file the user asked for, not our hidden temporary (full disk, read-only).
            raise type(err)(err.errno, err.strerror or str(err), os.fspath(target)) from err
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (renames, new names) to disk.

    Between two renames that must reach the disk in order (a checkpoint's tensors,
    then the record naming them), so that a power cut cannot keep the second alone.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
