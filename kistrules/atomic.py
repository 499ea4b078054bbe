"""Write files so that readers see the old content or the new, never half of either.

THE one writer of every file the tool makes: checkpoints, logs, outputs,
pictures, docs, formatted rulebooks. Each is written to a temporary file in
the target's directory (same file system, so ``os.replace`` is atomic), named
``.NAME.<12 hex>.tmp`` (what `--force` recognises as ours), flushed to disk
and renamed over the target only once complete. A crash or an exception
mid-write leaves the previous file untouched and no temporary behind, and an
error names the target, never the temporary. `rewrite_file` is the variant for
a file that must stay the same file for its user (fmt: symlinks, hard links,
owner and mode).
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "rewrite_file"]


def _temporary_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The block writes the temporary file however it likes (e.g. a library that
    only accepts a filename); it is fsynced before the rename. On an exception
    the temporary file is removed and the exception propagates.
    """
    target = Path(path)
    tmp = _temporary_beside(target)
    try:
        yield tmp
        _fsync_file(tmp)
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


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def rewrite_file(path: str | os.PathLike[str], old: bytes, new: bytes) -> None:
    """Give the file at `path` the bytes `new`; it stays the same file for its user.

    - A symlink is followed: its target gets the new text, the link stays a link.
    - A file with one name is replaced atomically: a temporary file in the
      target's directory, given the original's owner and mode, is renamed over
      it, so a reader sees the old text or the new, never half (full disk, crash).
    - A file with several hard links, or whose owner a rename cannot keep (we
      are not root and it is someone else's), is rewritten in place: every name
      sees the new text, and inode, owner and mode stay. Replacing it would
      split the links (the other names keep the old text) or steal the file.
      Its old bytes (`old`) are first saved beside it and written back if the
      rewrite fails; after a crash mid-write they are still there, in `.NAME.*.tmp`.
    """
    target = Path(os.path.realpath(path))
    info = target.stat()
    if info.st_nlink == 1 and _replace_keeping_owner(target, new, info):
        return
    _rewrite_in_place(target, old, new)


def _temporary_copy(target: Path, data: bytes) -> Path:
    """`data` in a new file beside `target` (same file system), flushed to disk."""
    tmp = _temporary_beside(target)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace_keeping_owner(target: Path, data: bytes, info: os.stat_result) -> bool:
    """Rename a temporary copy over `target`; False (nothing done) if its owner cannot be kept."""
    tmp = _temporary_copy(target, data)
    try:
        mine = tmp.stat()
        if (mine.st_uid, mine.st_gid) != (info.st_uid, info.st_gid):
            try:
                os.chown(tmp, info.st_uid, info.st_gid)
            except PermissionError:
                tmp.unlink()
                return False
        os.chmod(tmp, stat.S_IMODE(info.st_mode))  # after chown, which clears set-id bits
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _overwrite(target: Path, data: bytes) -> None:
    with open(target, "r+b") as handle:
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def _rewrite_in_place(target: Path, old: bytes, new: bytes) -> None:
    """Overwrite `target` through its own inode, with its old bytes saved until done."""
    saved = _temporary_copy(target, old)
    try:
        _overwrite(target, new)
    except BaseException:
        try:
            _overwrite(target, old)
        except OSError as err:
            raise OSError(
                err.errno, f"{err.strerror}; its original text is in {saved}", os.fspath(target)
            ) from err
        saved.unlink()
        raise
    saved.unlink()
