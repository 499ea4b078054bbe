"""Where kistrules writes: never over an input, never over a file it did not write.

Every command that writes a file asks here first, before it writes anything.
A path that does not exist is free. An existing path may be replaced only if
it is a regular file (not a symlink, folder or FIFO) that is recognisably an
earlier output of the *same* command:

- a PNG (explain, plot) carries a `Software: kistrules COMMAND` text chunk
  (`png_software`, `png_written_by`);
- a JSON document (evaluate, audit) holds the fields that mark that
  command's output (`json_with_fields`);
- a rulebook (tune, suggest) starts with a comment line naming the command
  and the SHA-256 of the lines below it (`sign_rules`, `rules_written_by`):
  a rulebook is meant to be edited, and once it is, it is the expert's;
- an HTML page (report) names the command in its `generator` meta tag
  near the top (`html_generator`, `html_written_by`);
- a folder of outputs (predict, demo) keeps a manifest that lists every file
  the command wrote with its SHA-256 (`Manifest`): a file is the command's
  own only while it is listed and unchanged, so an edited or swapped file is
  refused too.

An output that is one of the command's inputs (the same file, through any
symlink, hard link or spelling) is refused with its own message
(`refuse_inputs`). `--force` does not exist for any of this: a user who wants
a file replaced moves it away.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kistrules.errors import UsageError
from kistrules.files import special_kind

# An earlier JSON output is at most a few MB (audit --per-image); a larger file is not ours.
_MAX_JSON_BYTES = 64 << 20


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of the file `path` leads to (symlinks followed), or None if none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def refuse_inputs(
    outputs: Iterable[str | os.PathLike[str]],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    command: str,
) -> None:
    """UsageError if an output path leads to one of the input files.

    Files are compared by device and inode, so a symlink, a hard link, a
    `..` detour or another case spelling of an input is caught too.
    """
    known = {}
    for path in inputs:
        identity = file_identity(path)
        if identity is not None:
            known.setdefault(identity, path)
    for path in outputs:
        source = known.get(file_identity(path))  # type: ignore[arg-type]
        if source is not None:
            raise UsageError(
                f"{os.fspath(path)}: is the input {os.fspath(source)}; kistrules {command} "
                "never overwrites its inputs (choose another output path)"
            )


def require_replaceable(
    path: str | os.PathLike[str], *, command: str, ours: Callable[[Path], bool]
) -> None:
    """UsageError unless `path` is free or an earlier output of `command` (per `ours`).

    `ours` is asked only about an existing regular file (never a symlink, so
    it never follows one, and never a FIFO, so it never blocks).
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISLNK(info.st_mode):
        what = "is a symbolic link"
    elif not stat.S_ISREG(info.st_mode):
        what = f"is {special_kind(info.st_mode)}"
    elif not ours(path):
        what = f"exists and is not an earlier output of kistrules {command}"
    else:
        return
    raise UsageError(
        f"{path}: {what}; {command} replaces only files it wrote itself "
        "(choose another output path, or move the file away)"
    )


# --- recognising an earlier output --------------------------------------------------------------


def png_software(command: str) -> str:
    """The `Software` text our PNGs carry: what `png_written_by` looks for."""
    return f"kistrules {command}"


def png_written_by(command: str) -> Callable[[Path], bool]:
    """Is a file a PNG that `command` wrote? Reads only the chunks before the pixels."""

    def ours(path: Path) -> bool:
        from PIL import Image

        try:
            with Image.open(path) as image:
                return image.format == "PNG" and image.info.get("Software") == png_software(command)
        except Exception:  # not an image, or one PIL refuses: not ours either way
            return False

    return ours


def html_generator(command: str) -> str:
    """The `<meta name="generator">` tag our HTML pages carry: what `html_written_by` finds."""
    return f'<meta name="generator" content="kistrules {command}">'


# The generator tag sits in the first lines of the head; a page is not read further.
_HTML_HEAD_BYTES = 4096


def html_written_by(command: str) -> Callable[[Path], bool]:
    """Is a file an HTML page that `command` wrote? Reads only the start of the file."""
    mark = html_generator(command).encode("utf-8")

    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                head = handle.read(_HTML_HEAD_BYTES)
        except OSError:
            return False
        return head.startswith(b"<!DOCTYPE html>") and mark in head

    return ours


def rules_mark(command: str) -> str:
    """How the first line of a rulebook that `command` wrote begins."""
    return f"# kistrules {command} wrote this file"


def sign_rules(command: str, text: str) -> str:
    """`text` with its first line replaced by the mark of `command` and the SHA-256
    (16 hex digits) of the lines after it: what `rules_written_by` checks."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    return f"{rules_mark(command)} (sha256 {digest} of the lines below)\n{body}"


def rules_written_by(command: str) -> Callable[[Path], bool]:
    """Is a file a rulebook that `command` wrote and nobody changed since?"""

    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_RULES_BYTES + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        return (
            len(data) <= MAX_RULES_BYTES
            and text.startswith(rules_mark(command))
            and (sign_rules(command, text) == text)
        )

    return ours


MAX_RULES_BYTES = 1 << 20  # the rulebook size limit of `check` (kistrules.api)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a (regular, reasonably small) file, or None if it holds none."""
    try:
        if os.lstat(path).st_size > _MAX_JSON_BYTES:
            return None
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def json_with_fields(*fields: str) -> Callable[[Path], bool]:
    """Is a file a JSON object holding all of `fields` (the marks of one command's output)?"""

    def ours(path: Path) -> bool:
        document = read_json_object(path)
        return document is not None and all(field in document for field in fields)

    return ours


# --- folders of outputs -------------------------------------------------------------------------


class Manifest:
    """The files a command wrote under `root`, by relative path, with their SHA-256.

    The command saves the manifest (inside a JSON file of its own) as it
    writes, and on a later run replaces a file under `root` only if
    `owns(file)`: listed, still a regular file, and byte for byte what was
    written.
    """

    def __init__(self, root: str | os.PathLike[str], files: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.files: dict[str, str] = dict(files or {})

    @classmethod
    def from_json(cls, root: str | os.PathLike[str], files: object) -> Manifest | None:
        """The manifest stored as `files` in a JSON document, or None if that is not one."""
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            return None
        return cls(root, files)

    def key(self, path: str | os.PathLike[str]) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def owns(self, path: str | os.PathLike[str]) -> bool:
        """`path` is listed, a regular file (not a symlink), and unchanged since written."""
        try:
            expected = self.files.get(self.key(path))
            return (
                expected is not None
                and stat.S_ISREG(os.lstat(path).st_mode)
                and sha256_of(path) == expected
            )
        except (OSError, ValueError):
            return False

    def record(self, path: str | os.PathLike[str], digest: str | None = None) -> None:
        """List `path` (under `root`) as written, with `digest` or its current SHA-256."""
        self.files[self.key(path)] = digest or sha256_of(path)

    def record_tree(self, path: str | os.PathLike[str]) -> None:
        """List `path`, or every regular file under the folder `path` (symlinks not followed)."""
        path = Path(path)
        if path.is_symlink() or not path.exists():
            return
        if path.is_file():
            self.record(path)
            return
        for folder, _, names in os.walk(path):
            for name in names:
                entry = Path(folder) / name
                if stat.S_ISREG(os.lstat(entry).st_mode):
                    self.record(entry)

    def foreign_files(self, *, besides: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
        """Entries under `root` that this manifest does not own, `besides` excepted, sorted.

        Symlinks count as entries (to folders too) and are never followed.
        """
        skip = {Path(p) for p in besides}
        found: list[Path] = []
        for folder, dirs, names in os.walk(self.root):
            links = [d for d in dirs if (Path(folder) / d).is_symlink()]
            for name in [*names, *links]:
                entry = Path(folder) / name
                if entry not in skip and not self.owns(entry):
                    found.append(entry)
        return sorted(found)

    def listed_and_present(self) -> dict[str, str]:
        """The entries whose file still exists (files deleted since are dropped)."""
        return {
            key: digest
            for key, digest in sorted(self.files.items())
            if os.path.lexists(self.root / key)
        }
