"""What makes a directory a kistrules run, what `--force` may delete in it, who may write it.

A run directory is recognised by RUN_DIR/kistrules-run.json, a sealed record
(kist_train.sealed_json) that only `kistrules train` writes: a format tag and the
run's options. A `config.json` or any other file proves nothing, so a folder of
the user's or a data set given as --out is never taken for a run.

`--force` deletes only entries the tool writes (`tool_files`: the checkpoints,
the partial checkpoint, the log, evaluations, temporaries of atomic writes) and
refuses, touching nothing, when anything else is there. Runs written before the
marker existed are refused too (resume or replace): train into a new --out, or
delete the old run by hand.

Every writer of a run holds an exclusive flock on RUN_DIR/kistrules-run.lock
(`lock`), training for its whole length; a second writer refuses with the
holder's pid. The kernel drops the lock when its holder dies, even by SIGKILL.
The lock file is never deleted: two processes could otherwise lock two
different files of the same name.

`prepare` is train()'s way in: it makes or checks the run directory under the
lock; `check_init_from` vets the run an --init-from takes its initial phase from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from kist_train.config import INITIAL_FIELDS, TrainConfig
from kist_train.sealed_json import read_json, sealed_text, unseal
from kistrules.atomic import atomic_write_text
from kistrules.errors import CheckpointError, UsageError

__all__ = ["LOCK", "MARKER", "clear", "lock", "lock_if_run", "read_marker", "write_marker"]

MARKER = "kistrules-run.json"
LOCK = "kistrules-run.lock"
FORMAT = "kistrules-run"
VERSION = 1

_PHASE = r"(?:initial|labels_[1-9][0-9]*|update_[1-9][0-9]*)"
_TOKEN = r"[0-9a-f]{12}"
_CHECKPOINTS = re.compile(rf"{_PHASE}\.json|{_PHASE}\.{_TOKEN}\.safetensors|latest\.json")
# The folders of a run and the names of the files the tool writes in each (None: no files).
_LAYOUT: dict[str, re.Pattern[str] | None] = {
    ".": re.compile(
        rf"kistrules-run\.json|kistrules-run\.lock|log\.jsonl|evaluation(?:_{_PHASE})?\.json"
    ),
    "checkpoints": _CHECKPOINTS,
    "partial": None,
    "partial/checkpoints": _CHECKPOINTS,
}
# kistrules.atomic's temporary file of a target NAME: .NAME.<token>.tmp
_TEMPORARY = re.compile(rf"\.(.+)\.{_TOKEN}\.tmp")
_MARKER_NAME = re.compile(re.escape(MARKER))
_EVALUATION = re.compile(rf"evaluation(?:_{_PHASE})?\.json")
_OLD_RUN = ("config.json", "checkpoints")  # what a run of an older kistrules holds


def _ours(name: str, pattern: re.Pattern[str] | None) -> bool:
    temporary = _TEMPORARY.fullmatch(name)
    return pattern is not None and bool(pattern.fullmatch(temporary[1] if temporary else name))


def _is_evaluation(path: Path) -> bool:
    """An `evaluate` output (the name alone proves nothing: a user may have saved one)."""
    from kist_train.evaluate import EVALUATE_FIELDS
    from kistrules.outputs import json_with_fields

    return json_with_fields(*EVALUATE_FIELDS)(path)


def has_marker(run_dir: Path) -> bool:
    return (run_dir / MARKER).is_file()


def unclaimed(run_dir: Path) -> bool:
    """No run and nothing else in it: absent, empty, or what a run killed while being
    created leaves (the lock file, a temporary of the marker)."""
    if not run_dir.is_dir():
        return not run_dir.exists()
    return all(
        entry.is_file(follow_symlinks=False)
        and (entry.name == LOCK or _ours(entry.name, _MARKER_NAME))
        for entry in os.scandir(run_dir)
    )


def not_a_run(run_dir: Path) -> CheckpointError:
    """The refusal for a non-empty --out without the marker."""
    if all((run_dir / name).exists() for name in _OLD_RUN):
        return CheckpointError(
            f"{run_dir}: a run of an older kistrules (no {MARKER}); it cannot be resumed "
            "or replaced: train into another --out (delete it yourself if no longer needed)"
        )
    return CheckpointError(
        f"{run_dir}: not empty and not a run directory (no {MARKER}); "
        "choose another --out (--force never deletes it)"
    )


def write_marker(run_dir: Path, config: dict[str, Any]) -> None:
    """Make `run_dir` a run of `config` (TrainConfig.to_dict()), in one atomic write."""
    atomic_write_text(
        run_dir / MARKER, sealed_text({"format": FORMAT, "version": VERSION, "config": config})
    )


def read_marker(run_dir: Path) -> dict[str, Any]:
    """The run's options as the marker holds them (checked: format, version, seal)."""
    path = run_dir / MARKER
    value = read_json(path, max_bytes=2**20, what="run marker")
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kistrules run marker")
    if value.get("version") != VERSION:
        raise CheckpointError(f"{path}: run marker version {value.get('version')!r} unknown")
    config = unseal(value, path, what="run marker").get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: run marker holds no options")
    return config


def tool_files(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(files, folders) the tool wrote in a run, in an order safe to delete: checkpoint
    records before the tensors they name, a folder after its content. The marker and
    the lock file are left out. Raises CheckpointError naming the first entry that the
    tool did not write (or that is a symbolic link)."""
    files: list[Path] = []
    folders: list[Path] = []

    def walk(rel: str) -> None:
        for entry in sorted(os.scandir(run_dir / rel), key=lambda e: e.name):
            child = entry.name if rel == "." else f"{rel}/{entry.name}"
            if entry.is_dir(follow_symlinks=False) and child in _LAYOUT:
                walk(child)
                folders.append(run_dir / child)
            elif (
                entry.is_file(follow_symlinks=False)
                and _ours(entry.name, _LAYOUT[rel])
                and (not _EVALUATION.fullmatch(entry.name) or _is_evaluation(run_dir / child))
            ):
                files.append(run_dir / child)
            else:
                raise CheckpointError(
                    f"{run_dir}: holds {child}, which kistrules did not write; move it away "
                    "or choose another --out (--force deletes only the run's own files)"
                )

    walk(".")
    keep = {run_dir / MARKER, run_dir / LOCK}
    records = [p for p in files if p.suffix == ".json" and p.parent.name == "checkpoints"]
    rest = [p for p in files if p not in keep and p not in records]
    return records + rest, folders


def clear(run_dir: Path) -> None:
    """Delete what the tool wrote in a run but the marker and the lock (for --force).

    Checks everything before deleting anything: a foreign entry refuses, touching nothing.
    """
    files, folders = tool_files(run_dir)
    for path in files:
        path.unlink(missing_ok=True)
    for path in folders:  # deepest first (tool_files lists a folder after its content)
        path.rmdir()


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "pid unknown"


@contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's writer lock, or raise a one-line CheckpointError naming the holder."""
    import fcntl
    import stat

    path = run_dir / LOCK
    try:  # never through a link: the pid is written into the file
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot open the run's lock file ({err.strerror})") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise CheckpointError(f"{path}: not a lock file of kistrules")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"{run_dir}: in use by another kistrules process ({_holder(fd)}); "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_if_run(run_dir: Path):
    """`lock(run_dir)` for a run (with its marker); nothing for any other directory."""
    return lock(run_dir) if has_marker(run_dir) else nullcontext()


def prepare(config: TrainConfig, *, resume: bool, force: bool, held: ExitStack) -> Path:
    """Create or check the run dir and take its writer lock (held in `held` until train()
    returns): never touch a directory that is not a run, nor a run without resume or force."""
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: --out exists and is not a directory")
    # Before the lock file is created: a folder that is not a run gets nothing written.
    if not has_marker(run_dir) and not unclaimed(run_dir):
        raise not_a_run(run_dir)
    if resume and not has_marker(run_dir):
        raise CheckpointError(f"{run_dir}: no run to resume (no {MARKER})")
    run_dir.mkdir(parents=True, exist_ok=True)
    held.enter_context(lock(run_dir))
    # Checked again under the lock: another writer may have come and gone meanwhile.
    if has_marker(run_dir):
        stored = stored_config(run_dir)
        if resume:
            diff = config.differences(stored)
            if diff:
                raise CheckpointError(
                    f"{run_dir}: holds a different run (options differ: {', '.join(diff)}); "
                    "resume with the same options or train elsewhere"
                )
            return run_dir
        if not force:
            raise CheckpointError(
                f"{run_dir}: already holds a run; pass --resume to continue it "
                "or --force to replace it"
            )
        clear(run_dir)  # refuses, deleting nothing, if anything foreign is there
    elif resume:
        raise CheckpointError(f"{run_dir}: no run to resume (no {MARKER})")
    elif not unclaimed(run_dir):
        raise not_a_run(run_dir)
    write_marker(run_dir, config.to_dict())
    return run_dir


def stored_config(run_dir: Path) -> TrainConfig:
    """The options a run was started with, from its marker (validated)."""
    try:
        return TrainConfig.from_dict(read_marker(run_dir)).validate()
    except UsageError as err:
        raise CheckpointError(f"{run_dir / MARKER}: {err}") from err


def check_init_from(config: TrainConfig) -> None:
    """Refuse an --init-from run whose initial phase is not this run's own (before any write).

    Everything that decides the initial phase must match (INITIAL_FIELDS and the data):
    restoring it is then bit-identical to training it here, minus the time.
    """
    from kist_train.checkpoints import complete_phases

    source = Path(config.init_from)
    if not has_marker(source):
        raise UsageError(
            f"{source}: --init-from is not a run directory (no {MARKER}; "
            "runs of an older kistrules cannot be used)"
        )
    other = stored_config(source)
    if "initial" not in complete_phases(source):
        raise UsageError(f"{source}: --init-from run has no complete 'initial' phase")
    diff = [name for name in INITIAL_FIELDS if getattr(config, name) != getattr(other, name)]
    if Path(config.data).resolve() != Path(other.data).resolve():
        diff.insert(0, "data")
    if diff:
        raise UsageError(
            f"{source}: --init-from run has a different initial phase "
            f"(options differ: {', '.join(diff)})"
        )
