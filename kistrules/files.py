"""What kistrules reads: regular files only, checked before they are opened.

Opening a FIFO for reading blocks until a writer comes, which may be never; a
character device (`/dev/zero`, `/dev/urandom`) never ends; a socket cannot be
opened at all. None of them is a rulebook, an image or a mask, so each is
refused with one line naming it. The check is a `stat`, which follows
symlinks (a link to a regular file is fine) and never opens the file.
`collect_rulebooks` turns the paths of `check` and `fmt` into rulebook files.
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


def collect_rulebooks(paths: list[Path]) -> list[Path]:
    """Files as given, directories searched recursively for `*.rules` (sorted).

    Raises UsageError for a path that does not exist, for a directory that
    holds no `.rules` file (checking nothing and exiting 0 would read as
    "all clean"), and for a `.rules` entry found there that is a FIFO, socket
    or device (reading it would block or never end). Files named on the
    command line are checked by `read_rulebook` when they are read.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.rules") if _is_rulebook_entry(p))
            if not found:
                raise UsageError(f"{path}: directory holds no .rules files; nothing to do")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    return files


def _is_rulebook_entry(path: Path) -> bool:
    """A regular `*.rules` file under a searched directory; a special file there is refused.

    Directories named `*.rules` and dangling or looping symlinks are not
    rulebooks and are skipped, as before.
    """
    try:
        if stat.S_ISDIR(path.stat().st_mode):
            return False
    except OSError:
        return False
    require_regular_file(path, "rulebook")
    return True
