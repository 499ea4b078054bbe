"""Run directories: recognised by their marker alone, `--force` deletes only the tool's own
files (or nothing), and one writer at a time (a flock held for the whole training)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from kist_train import rundir
from kist_train.checkpoints import complete_phases, load_checkpoint
from kist_train.engine import phase_names, train
from kist_train.phase_store import read_log
from kistrules.cli import app
from kistrules.errors import CheckpointError, UsageError
from tests.train import synthetic as syn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundir")
    syn.make_dataset(root / "d", n_good=8, n_anomalous=2)
    return root / "d", syn.write_rulebook(root / "blob.rules")


def _config(dataset, out: Path, **changes):
    return syn.tiny_config(dataset, out, epochs=2, iterations=1, threads=1, **changes)


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    """A finished run with an evaluation and a partial checkpoint left by a kill, and
    the temporaries an atomic write leaves when killed: everything the tool writes."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(_config(dataset, out), console=_quiet(), progress=False)
    evaluation = json.dumps({"run": str(out), "data": "d", "raw": {}, "filtered": {}})
    (out / "evaluation.json").write_text(evaluation)
    (out / "evaluation_initial.json").write_text(evaluation)
    shutil.copytree(out / "checkpoints", out / "partial" / "checkpoints")
    (out / ".log.jsonl.0123456789ab.tmp").write_text("half")
    (out / "checkpoints" / ".update_1.json.0123456789ab.tmp").write_text("half")
    (out / "checkpoints" / "update_1.abcdefabcdef.safetensors").write_bytes(b"orphan")
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, symlinks=True)
    return to


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: a file's bytes, a link's target (the lock file aside)."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if path.name == rundir.LOCK:
            continue
        if path.is_symlink():
            out[str(path.relative_to(root))] = os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


# ----------------------------------------------------------------- recognition and --force


def _names(run: Path) -> list[str]:
    """The run's files, the random token of tensor file names masked."""
    return sorted(re.sub(r"\.[0-9a-f]{12}\.", ".<token>.", name) for name in _snapshot(run))


def test_force_deletes_exactly_the_runs_own_files(dataset, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    config = _config(dataset, run, seed=3)
    train(config, force=True, console=_quiet(), progress=False)
    fresh = dataclasses.replace(config, out=str(tmp_path / "fresh"))
    train(fresh, console=_quiet(), progress=False)
    # What is left is exactly what a new run writes (the evaluations, the partial
    # checkpoint and the temporaries are gone), and the replaced run is a new run.
    assert _names(run) == _names(Path(fresh.out))
    for phase in phase_names(1):
        mine, theirs = load_checkpoint(run, phase)[0], load_checkpoint(fresh.out, phase)[0]
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), phase
    assert (run / rundir.LOCK).is_file()  # never deleted


@pytest.mark.parametrize(
    "foreign",
    [
        "thesis.tex",
        "checkpoints/notes.json",  # a .json, but not a phase's name
        "checkpoints/initial.safetensors.bak",
        "partial/notes.txt",
        "maps/a.tiff",  # predict --out RUN/maps
        "evaluation.json",  # a tool's name, but not an evaluation (the user's own file)
        "link:evaluation.json",  # a tool's name, but a symbolic link out of the run
        "link:checkpoints",
    ],
)
def test_force_refuses_anything_foreign_and_touches_nothing(dataset, finished, tmp_path, foreign):
    run = _copy(finished, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    if foreign.startswith("link:"):
        name = foreign.removeprefix("link:")
        if (run / name).is_dir():
            shutil.rmtree(run / name)
        else:
            (run / name).unlink()
        (run / name).symlink_to(outside, target_is_directory=True)
        foreign = name
    else:
        (run / foreign).parent.mkdir(parents=True, exist_ok=True)
        (run / foreign).write_text("the user's\n")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="which kistrules did not write") as err:
        train(_config(dataset, run, seed=3), force=True, console=_quiet(), progress=False)
    # The message names the foreign entry (a foreign folder as a whole).
    named = foreign if foreign.startswith(("checkpoints/", "partial/")) else foreign.split("/")[0]
    assert f"holds {named}," in str(err.value) and "\n" not in str(err.value)
    assert _snapshot(run) == before
    assert (outside / "keep.txt").read_text() == "mine\n"


def test_a_directory_without_the_marker_is_never_a_run(dataset, finished, tmp_path):
    # The reproduction: a config.json proves nothing.
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "config.json").write_text("{}\n")
    (folder / "thesis.tex").write_text("x\n")
    for resume, force in ((False, True), (True, False), (False, False)):
        with pytest.raises(CheckpointError, match=r"no kistrules-run\.json"):
            train(_config(dataset, folder), resume=resume, force=force, console=_quiet())
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "thesis.tex"]
    # A run of an older kistrules (config.json and checkpoints/, no marker) is named as such.
    old = _copy(finished, tmp_path / "old")
    (old / rundir.MARKER).rename(old / "config.json")
    before = _snapshot(old)
    for resume, force in ((False, True), (True, False)):
        with pytest.raises(CheckpointError, match="older kistrules"):
            train(_config(dataset, old), resume=resume, force=force, console=_quiet())
    with pytest.raises(UsageError, match="not a run directory"):
        train(_config(dataset, tmp_path / "new", init_from=str(old)), console=_quiet())
    assert _snapshot(old) == before


def test_what_a_kill_during_creation_leaves_is_no_obstacle(dataset, tmp_path):
    """Killed before its marker existed, a run left the lock file and a temporary of the
    marker: not a run (nothing to resume), but not foreign either."""
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text("")
    (out / f".{rundir.MARKER}.0123456789ab.tmp").write_text("{")
    with pytest.raises(CheckpointError, match="no run to resume"):
        train(_config(dataset, out), resume=True, console=_quiet())
    train(_config(dataset, out), console=_quiet(), progress=False)
    assert complete_phases(out) == phase_names(1)


def test_an_edited_marker_is_refused(dataset, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    marker = json.loads((run / rundir.MARKER).read_text())
    marker["config"]["lr"] = 0.5
    (run / rundir.MARKER).write_text(json.dumps(marker))
    before = _snapshot(run)
    for resume, force in ((True, False), (False, True)):
        with pytest.raises(CheckpointError, match=r"kistrules-run\.json: run marker was edited"):
            train(_config(dataset, run, lr=0.5), resume=resume, force=force, console=_quiet())
    assert _snapshot(run) == before


# ----------------------------------------------------------------- one writer at a time

_HOLD = """
import sys
from pathlib import Path
from kist_train.rundir import lock
with lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _holder(run: Path) -> subprocess.Popen:
    """Another process holding the run's writer lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid(dataset, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    data = dataset[0]
    holder = _holder(run)
    try:
        before = _snapshot(run)
        for resume, force in ((True, False), (False, True)):
            with pytest.raises(CheckpointError, match=f"in use by .*pid {holder.pid}"):
                train(_config(dataset, run, seed=3), resume=resume, force=force, console=_quiet())
        # evaluate writing its default RUN/evaluation.json is a writer too (CLI: one line)
        result = CliRunner().invoke(app, ["evaluate", "--model", str(run), "--data", str(data)])
        assert result.exit_code == 1 and f"pid {holder.pid}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert _snapshot(run) == before
        # ... and reading is not writing: --json elsewhere works meanwhile.
        elsewhere = tmp_path / "e.json"
        args = ["evaluate", "--model", str(run), "--data", str(data), "--json", str(elsewhere)]
        assert CliRunner().invoke(app, args).exit_code == 0 and elsewhere.is_file()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    train(_config(dataset, run, seed=3), force=True, console=_quiet(), progress=False)
    assert load_checkpoint(run)[1]["config"]["seed"] == 3


def test_the_lock_is_held_for_the_whole_training(dataset, tmp_path, monkeypatch):
    """A second writer, tried at every batch of the first one's training, is refused."""
    from kist_train import engine

    config = _config(dataset, tmp_path / "run")
    real, tries = engine.augment_normal, []

    def second_writer(x, gen):
        with pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
            train(dataclasses.replace(config, seed=9), force=True, console=_quiet())
        tries.append(1)
        return real(x, gen)

    monkeypatch.setattr(engine, "augment_normal", second_writer)
    train(config, console=_quiet(), progress=False)
    monkeypatch.undo()
    assert len(tries) > 3
    assert [e["phase"] for e in read_log(config.out)] == phase_names(1)
    assert load_checkpoint(config.out)[1]["config"]["seed"] == config.seed


def test_the_lock_file_is_never_followed_through_a_link(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (run / rundir.LOCK).symlink_to(precious)
    with pytest.raises(CheckpointError, match="lock file"), rundir.lock(run):
        pass
    assert precious.read_text() == "keep me\n"
