"""`kistrules fmt PATH... [--check] [--diff]`: rewrite rulebooks in canonical layout.

Like `ruff format`: files are rewritten in place (atomically: a temporary
file in the same directory, then `os.replace`; symlinks, hard links, owner and
mode are kept, see `write_formatted`); `--check` only lists the files that
would change and exits 1 if there are any; `--diff` prints a unified diff and
writes nothing (exit 1 if there is a difference). A file with errors is left
alone: its errors are printed one per line and the exit status is 1; so is a
file whose formatted text would exceed the rulebook size limit that `check`
enforces (fmt never writes a file that check refuses). A missing path, a
directory without rulebooks, or a FIFO or device is a usage error (exit 2).
The layout itself lives in `kistrules.formatter`.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kistrules.cli import app, fail, stderr
from kistrules.errors import UsageError


def write_formatted(path: Path, old: bytes, new: bytes) -> None:
    """Give the rulebook at `path` the bytes `new`; it stays the same file for its user.

    - A symlink is followed: its target gets the new text, the link stays a link.
    - A file with one name is replaced atomically: a temporary file in the
      target's directory, given the original's owner and mode, is renamed over
      it, so a reader sees the old text or the new, never half (full disk, crash).
    - A file with several hard links, or whose owner a rename cannot keep (we
      are not root and it is someone else's), is rewritten in place: every name
      sees the new text, and inode, owner and mode stay. Replacing it would
      split the links (the other names keep the old text) or steal the file.
      Its old bytes are first saved beside it and written back if the rewrite
      fails; after a crash mid-write they are still there, in `.NAME.*.tmp`.
    """
    target = Path(os.path.realpath(path))
    info = target.stat()
    if info.st_nlink == 1 and _replace(target, new, info):
        return
    _rewrite_in_place(target, old, new)


def _temporary_copy(target: Path, data: bytes) -> Path:
    """`data` in a new file beside `target` (same file system), flushed to disk."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _replace(target: Path, data: bytes, info: os.stat_result) -> bool:
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


def unified_diff(path: Path, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path} (original)",
            tofile=f"{path} (formatted)",
        )
    )


@app.command("fmt")
def fmt_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Rulebook files, or directories to search for *.rules.")
    ],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Print a unified diff instead of writing.")
    ] = False,
) -> None:
    """Format rulebooks: lower-case keywords, aligned blocks, one rule per statement."""
    from kistrules.api import MAX_RULEBOOK_BYTES, read_rulebook
    from kistrules.commands.check import collect_files
    from kistrules.formatter import format_source
    from kistrules.parser import decode

    try:
        files = collect_files(paths)
        contents = [(path, read_rulebook(path)) for path in files]
    except UsageError as err:
        raise fail(escape(str(err)), code=2) from None

    changed: list[Path] = []
    failed = 0
    for path, data in contents:
        text, problem = decode(data, str(path))
        formatted, errors = (None, [problem]) if text is None else format_source(text, str(path))
        if formatted is None:
            failed += 1
            for d in errors:
                stderr.print(d.one_line(), markup=False, highlight=False)
            continue
        encoded = formatted.encode("utf-8")
        if encoded == data:
            continue
        if len(encoded) > MAX_RULEBOOK_BYTES:  # `check` would refuse what we wrote
            failed += 1
            stderr.print(
                f"error: {path}: formatted text would be {len(encoded):,} bytes, above the "
                f"rulebook limit of {MAX_RULEBOOK_BYTES:,} bytes; not formatted",
                markup=False,
                highlight=False,
            )
            continue
        changed.append(path)
        if diff:
            sys.stdout.write(unified_diff(path, text, formatted))
        elif check:
            sys.stdout.write(f"would reformat {path}\n")
        else:
            if not os.access(path, os.W_OK):  # os.replace would swap a read-only file anyway
                raise fail(escape(f"{path}: cannot write (read-only file); not formatted"))
            try:
                write_formatted(path, data, encoded)
            except OSError as err:  # read-only file or folder, full disk: the file is unchanged
                raise fail(escape(f"{path}: cannot write ({err.strerror or err})")) from None
    sys.stdout.flush()

    verb = "would be reformatted" if check or diff else "reformatted"
    unchanged = len(contents) - len(changed) - failed
    summary = f"{len(changed)} file{'s' * (len(changed) != 1)} {verb}, {unchanged} unchanged"
    if failed:
        summary += f", {failed} with errors (not formatted)"
    stderr.print(summary, markup=False, highlight=False)
    if failed or ((check or diff) and changed):
        raise typer.Exit(1)
