"""What kistrules reads: regular files only, checked before they are opened.

Opening a FIFO for reading blocks until a writer comes, which may be never; a
character device (`/dev/zero`, `/dev/urandom`) never ends; a socket cannot be
opened at all. None of them is a rulebook, an image or a mask, so each is
refused with one line naming it. The check is a `stat`, which follows
symlinks (a link to a regular file is fine) and never opens the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from kistrules.errors import UsageError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """What a file of this `st_mode` is, in words, when it is not a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def _refuse(path: str | os.PathLike[str], kind: str, what: str) -> UsageError:
    article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
    return UsageError(f"{os.fspath(path)}: is {kind}; {article} {what} must be a regular file")


def require_regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path` if it names a regular file (through symlinks); else a one-line UsageError.

    `what` names the expected content ("rulebook", "image file") in the message.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"{os.fspath(path)}: no such {what}") from None
    except OSError as err:
        raise UsageError(f"{os.fspath(path)}: cannot read ({err.strerror or err})") from None
    kind = special_kind(mode)
    if kind is not None:
        raise _refuse(path, kind, what)
    return Path(path)


def open_regular(path: str | os.PathLike[str], what: str) -> BinaryIO:
    """Open a regular file for binary reading; refuse anything else without blocking.

    The file is opened non-blocking (a FIFO then opens at once instead of
    waiting for a writer) and its type is checked on the open descriptor, so a
    file swapped for a FIFO between a check and the open is still refused.
    Raises OSError (FileNotFoundError, ...) as `open` does.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refuse(path, kind, what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
