"""Crash safety of `kistrules train`: SIGKILL and SIGINT mid-run, then --resume.

A run is a real subprocess (the CLI, as a user starts it), killed while a phase is
in flight (just after the first checkpoint appeared). Resuming must continue from
the last complete checkpoint and end bit-identical, weights and evaluation metrics,
to an uninterrupted run with the same seed: each phase's checkpoint holds the
weights, the optimiser state and the generators, and is written atomically
(temporary file, then os.replace; the phase's JSON last), so a kill can only ever
lose the phase in flight. SIGINT loses less: the engine finishes the epoch in flight,
saves it under RUN_DIR/partial and stops; --resume continues from the next epoch.
Overwriting another run without --force is covered by
tests/train/test_engine.py::test_run_dir_is_never_overwritten_without_force.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from kist_train.checkpoints import complete_phases, load_checkpoint
from kist_train.config import TrainConfig
from kist_train.engine import phase_names, train
from kist_train.evaluate import evaluate_run
from kist_train.phase_store import read_log
from tests.train import synthetic as syn

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    syn.make_dataset(root / "d", n_good=12, n_anomalous=3, anomalous_masks=True)
    return root / "d", syn.write_rulebook(root / "blob.rules")


def _config(dataset, out: Path) -> TrainConfig:
    # Long update phases: the kill lands inside one.
    return syn.tiny_config(dataset, out, update_epochs=10, threads=1)


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    return train(_config(dataset, out), console=Console(stderr=True, quiet=True), progress=False)


def _start(
    config: TrainConfig,
    *extra: str,
    python_code: str = "from kistrules.cli import main; main()",
) -> subprocess.Popen:
    args = [
        "train",
        f"--data={config.data}",
        f"--out={config.out}",
        f"--rulebook={config.rulebook}",
        *syn.tiny_cli_args(update_epochs=10, threads=1),
        "--no-progress",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", python_code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_new_checkpoint(proc: subprocess.Popen, run_dir: Path, before: int) -> list[str]:
    """Poll until the run has more complete phases than `before` (or the process ends)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = complete_phases(run_dir) if (run_dir / "checkpoints").is_dir() else []
        if len(done) > before:
            return done
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no checkpoint within 120 s")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)[0], load_checkpoint(b)[0]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_sigkill_mid_phase_then_resume_ends_like_an_uninterrupted_run(
    dataset, uninterrupted, tmp_path
):
    config = _config(dataset, tmp_path / "killed")
    run_dir = Path(config.out)
    # Kill 1: inside the phase after "initial".
    proc = _start(config)
    _wait_for_new_checkpoint(proc, run_dir, 0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    first = complete_phases(run_dir)
    assert first[0] == "initial" and first != phase_names(2)
    # Kill 2: inside the resumed run, after it added one more phase.
    proc = _start(config, "--resume")
    _wait_for_new_checkpoint(proc, run_dir, len(first))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    second = complete_phases(run_dir)
    assert len(second) > len(first) and second == phase_names(2)[: len(second)]
    # Resume to the end (in this process) and compare with the uninterrupted run.
    train(config, resume=True, console=Console(stderr=True, quiet=True), progress=False)
    assert complete_phases(run_dir) == phase_names(2)
    _assert_same_weights(run_dir, uninterrupted)
    assert [e["phase"] for e in read_log(run_dir)] == phase_names(2)
    for mine, theirs in zip(read_log(run_dir), read_log(uninterrupted), strict=True):
        assert mine.get("labels") == theirs.get("labels")
        assert mine["mu_e"] == theirs["mu_e"]
    data = config.data
    got, want = (
        evaluate_run(run_dir, data, device="cpu"),
        evaluate_run(uninterrupted, data, device="cpu"),
    )
    assert got["raw"] == want["raw"] and got["filtered"] == want["filtered"]


def test_sigint_stops_cleanly_and_resumes(dataset, uninterrupted, tmp_path):
    config = _config(dataset, tmp_path / "interrupted")
    run_dir = Path(config.out)
    proc = _start(config)
    _wait_for_new_checkpoint(proc, run_dir, 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; resume with --resume"
    assert "Traceback" not in err
    done = complete_phases(run_dir)
    assert done and done != phase_names(2) and done == phase_names(2)[: len(done)]
    # Nothing partial: no temporary file left, every phase on disk is loadable.
    assert not [p for p in run_dir.rglob("*.tmp")]
    for phase in done:
        load_checkpoint(run_dir, phase)
    log = [e["phase"] for e in read_log(run_dir)]
    assert log[: len(done)] == done
    resumed = _start(config, "--resume")
    out, err = resumed.communicate(timeout=120)
    assert out.strip() == str(run_dir)
    assert resumed.returncode == 0, err[-2000:]
    assert f"resuming {run_dir}" in err.replace("\n", "")
    _assert_same_weights(run_dir, uninterrupted)


# --------------------------------------------------------------- SIGINT at an epoch boundary
#
# A real SIGINT, sent by the process to itself from inside augment_normal (called once per
# normal batch), lands at a known batch; the engine finishes that epoch, writes
# RUN_DIR/partial and raises Interrupted. 12 normal images: the initial phase has 2 batches
# per epoch (batch 6), an update phase 3 (6 - 2 anomalous = 4 normal per batch).

INITIAL_BATCHES, UPDATE_BATCHES = 2, 3


def _full_run_batches(config: TrainConfig) -> int:
    return config.epochs * INITIAL_BATCHES + config.iterations * config.update_epochs * (
        UPDATE_BATCHES
    )


class _SigintAt:
    """Wraps engine.augment_normal: counts calls and sends SIGINT to us at call `at`."""

    def __init__(self, real, at: int | None) -> None:
        self.real, self.at, self.calls = real, at, 0

    def __call__(self, x, gen):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.real(x, gen)


def _interrupt_then_resume(config, monkeypatch, at: int):
    from kist_train import engine

    quiet = Console(stderr=True, quiet=True)
    handler_before = signal.getsignal(signal.SIGINT)
    first = _SigintAt(engine.augment_normal, at)
    monkeypatch.setattr(engine, "augment_normal", first)
    with pytest.raises(engine.Interrupted) as caught:
        train(config, console=quiet, progress=False)
    assert signal.getsignal(signal.SIGINT) is handler_before  # restored
    second = _SigintAt(first.real, None)
    monkeypatch.setattr(engine, "augment_normal", second)
    return caught.value, first.calls, second, quiet


def test_sigint_in_initial_phase_saves_the_epoch_and_resumes_from_the_next(
    dataset, uninterrupted, tmp_path, monkeypatch
):
    config = _config(dataset, tmp_path / "run")
    run_dir = Path(config.out)
    # SIGINT during epoch 2's first batch: epoch 2 completes, then the run stops.
    stop, calls, counter, quiet = _interrupt_then_resume(config, monkeypatch, INITIAL_BATCHES + 1)
    assert (stop.phase, stop.epochs_done) == ("initial", 2)
    assert calls == 2 * INITIAL_BATCHES
    assert complete_phases(run_dir) == []  # the phase is not complete ...
    assert complete_phases(run_dir / "partial") == ["initial"]  # ... but saved
    meta = load_checkpoint(run_dir / "partial", "initial")[1]
    assert meta["partial"]["epochs_done"] == 2 and len(meta["partial"]["loss_per_epoch"]) == 2
    assert not list(run_dir.rglob("*.tmp"))
    train(config, resume=True, console=quiet, progress=False)
    # The resumed run did not redo epochs 1-2 and ended like the uninterrupted one.
    assert calls + counter.calls == _full_run_batches(config)
    log = read_log(run_dir)
    assert [e["phase"] for e in log] == phase_names(2)
    assert log[0]["resumed_after_epoch"] == 2
    assert log[0]["loss_per_epoch"] == read_log(uninterrupted)[0]["loss_per_epoch"]
    assert not (run_dir / "partial").exists()  # dropped once the phase completed
    _assert_same_weights(run_dir, uninterrupted)
    for mine, theirs in zip(log, read_log(uninterrupted), strict=True):
        assert mine.get("labels") == theirs.get("labels")
        assert mine["mu_e"] == theirs["mu_e"]


def test_sigint_in_update_phase_saves_the_epoch_and_resumes_from_the_next(
    dataset, uninterrupted, tmp_path, monkeypatch
):
    config = _config(dataset, tmp_path / "run")
    run_dir = Path(config.out)
    at = config.epochs * INITIAL_BATCHES + 4 * UPDATE_BATCHES + 2  # update_1, epoch 5
    stop, calls, counter, quiet = _interrupt_then_resume(config, monkeypatch, at)
    assert (stop.phase, stop.epochs_done) == ("update_1", 5)
    assert calls == config.epochs * INITIAL_BATCHES + 5 * UPDATE_BATCHES
    assert complete_phases(run_dir) == ["initial", "labels_1"]
    assert complete_phases(run_dir / "partial") == ["update_1"]
    assert load_checkpoint(run_dir / "partial", "update_1")[1]["partial"]["steps"] == 15
    train(config, resume=True, console=quiet, progress=False)
    assert calls + counter.calls == _full_run_batches(config)
    log = read_log(run_dir)
    assert [e["phase"] for e in log] == phase_names(2)
    assert log[2]["resumed_after_epoch"] == 5
    assert "resumed_after_epoch" not in log[4]
    for key in ("loss_total", "loss_normal", "loss_push", "mu_e", "sigma_e"):
        assert log[2][key] == read_log(uninterrupted)[2][key], key
    _assert_same_weights(run_dir, uninterrupted)


def test_sigint_through_the_cli_exits_130_with_one_line_and_a_partial_checkpoint(
    dataset, uninterrupted, tmp_path
):
    config = _config(dataset, tmp_path / "cli")
    run_dir = Path(config.out)
    at = config.epochs * INITIAL_BATCHES + 2 * UPDATE_BATCHES + 1  # update_1, epoch 3
    wrapper = (
        "import os, signal\n"
        "from kist_train import engine\n"
        "real, calls = engine.augment_normal, [0]\n"
        "def wrapped(x, gen):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {at}:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(x, gen)\n"
        "engine.augment_normal = wrapped\n"
        "from kistrules.cli import main\n"
        "main()\n"
    )
    proc = _start(config, python_code=wrapper)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; resume with --resume"
    assert "Traceback" not in err and err.count("interrupted") == 1
    assert complete_phases(run_dir) == ["initial", "labels_1"]
    meta = load_checkpoint(run_dir / "partial", "update_1")[1]
    assert meta["partial"]["epochs_done"] == 3
    train(config, resume=True, console=Console(stderr=True, quiet=True), progress=False)
    assert read_log(run_dir)[2]["resumed_after_epoch"] == 3
    _assert_same_weights(run_dir, uninterrupted)


class _Killed(Exception):
    """A kill: nothing runs on the way out."""


class _CrashAt:
    """Wraps engine.augment_normal and raises at call `at`: a kill, which saves nothing."""

    def __init__(self, real, at: int) -> None:
        self.real, self.at, self.calls = real, at, 0

    def __call__(self, x, gen):
        self.calls += 1
        if self.calls == self.at:
            raise _Killed
        return self.real(x, gen)


def test_a_killed_run_resumes_from_its_last_periodic_partial_checkpoint(
    dataset, uninterrupted, tmp_path, monkeypatch
):
    from kist_train import engine

    quiet = Console(stderr=True, quiet=True)
    real = engine.augment_normal
    # The default interval (10 minutes) does not come due in a tiny run: nothing saved.
    config = _config(dataset, tmp_path / "default")
    done_before = config.epochs * INITIAL_BATCHES + 4 * UPDATE_BATCHES
    at = done_before + 2  # the crash lands in update_1's epoch 5
    monkeypatch.setattr(engine, "augment_normal", _CrashAt(real, at))
    with pytest.raises(_Killed):
        train(config, console=quiet, progress=False)
    assert not (Path(config.out) / "partial").exists()
    # Due at every epoch end: the kill loses only the epoch in flight.
    config = replace(_config(dataset, tmp_path / "periodic"), checkpoint_minutes=1e-9)
    monkeypatch.setattr(engine, "augment_normal", _CrashAt(real, at))
    with pytest.raises(_Killed):
        train(config, console=quiet, progress=False)
    run_dir = Path(config.out)
    assert complete_phases(run_dir) == ["initial", "labels_1"]
    assert load_checkpoint(run_dir / "partial", "update_1")[1]["partial"]["epochs_done"] == 4
    assert not list(run_dir.rglob("*.tmp"))
    counter = _SigintAt(real, None)
    monkeypatch.setattr(engine, "augment_normal", counter)
    train(config, resume=True, console=quiet, progress=False)
    assert counter.calls == _full_run_batches(config) - done_before
    assert read_log(run_dir)[2]["resumed_after_epoch"] == 4
    _assert_same_weights(run_dir, uninterrupted)


def test_more_sigints_are_ignored_and_the_epoch_is_still_saved(dataset, tmp_path, monkeypatch):
    from kist_train import engine, phase_store

    config = _config(dataset, tmp_path / "run")
    real_augment, real_save = engine.augment_normal, phase_store._write_phase

    def thrice(x, gen):  # Ctrl-C from the terminal, then again (as torchrun forwards it)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real_augment(x, gen)

    def save_under_fire(*args, **kwargs):  # ... and once more while the save runs
        os.kill(os.getpid(), signal.SIGINT)
        real_save(*args, **kwargs)

    monkeypatch.setattr(engine, "augment_normal", thrice)
    monkeypatch.setattr(phase_store, "_write_phase", save_under_fire)
    with pytest.raises(engine.Interrupted) as caught:
        train(config, console=Console(stderr=True, quiet=True), progress=False)
    assert (caught.value.phase, caught.value.epochs_done) == ("initial", 1)
    assert complete_phases(Path(config.out) / "partial") == ["initial"]
    assert not list(Path(config.out).rglob("*.tmp"))


def test_sigint_on_one_ddp_rank_stops_every_rank_and_resumes_bit_identically(dataset, tmp_path):
    """2 gloo processes; SIGINT reaches rank 1 alone: the ranks agree (all-reduced flag),
    rank 0 writes the partial checkpoint, and --resume ends like an uninterrupted run."""
    wrapper = tmp_path / "sigint_rank1.py"
    wrapper.write_text(
        "import os, signal\n"
        "from kist_train import engine\n"
        "real, calls = engine.augment_normal, [0]\n"
        "def wrapped(x, gen):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 8 and os.environ.get('RANK') == '1':\n"  # update_1, epoch 1
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(x, gen)\n"
        "engine.augment_normal = wrapped\n"
        "from kistrules.cli import main\n"
        "main()\n"
    )
    data, rulebook = dataset
    args = [
        "train",
        f"--data={data}",
        f"--rulebook={rulebook}",
        *syn.tiny_cli_args(iterations=1, update_epochs=4, threads=1),
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cli = [sys.executable, "-c", "from kistrules.cli import main; main()"]

    def run(cmd: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cmd, *args, f"--out={out}", *extra],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )

    interrupted, full = tmp_path / "interrupted", tmp_path / "full"
    done = run([*torchrun, str(wrapper)], interrupted)
    assert done.returncode != 0
    # Both ranks took the Ctrl-C path (each worker's CLI prints the line and exits 130).
    assert done.stderr.count("interrupted; resume with --resume") == 2, done.stderr[-3000:]
    # (torchrun itself then reports the failed workers, with its own traceback.)
    assert complete_phases(interrupted) == ["initial", "labels_1"]
    assert load_checkpoint(interrupted / "partial", "update_1")[1]["partial"]["epochs_done"] == 1
    for out, extra in ((interrupted, ["--resume"]), (full, [])):
        done = run(cli, out, "--nproc=2", *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    log = read_log(interrupted)
    assert log[-1]["resumed_after_epoch"] == 1
    assert len(set(log[-1]["weights_sha256_per_rank"])) == 1
    assert log[-1]["loss_total"] == read_log(full)[-1]["loss_total"]
    _assert_same_weights(interrupted, full)


# --------------------------------------------------------------- a kill at every write
#
# Every change a run's files go through is an os.replace (atomic writes), an os.unlink or
# an os.rmdir. _KillAtWrite stands in for the three and, at the k-th call, "kills" the run
# there: the call raises instead of acting and from then on nothing changes on disk any
# more (a dead process cleans up nothing, its temporaries stay). For every k of a run that
# saves a partial checkpoint at every epoch end, the killed run is resumed (or, killed
# before it existed, started again) and must end with exactly the uninterrupted weights.


class _KilledAtWrite(BaseException):
    """Raised in place of the k-th file-system change; no except clause catches it."""


class _KillAtWrite:
    def __init__(self, at: int | None) -> None:
        self.at, self.calls, self.dead = at, 0, False

    def wrap(self, real):
        def change(*args, **kwargs):
            if self.dead:
                return None
            self.calls += 1
            if self.calls == self.at:
                self.dead = True
                raise _KilledAtWrite
            return real(*args, **kwargs)

        return change

    def install(self, monkeypatch) -> None:
        for name in ("replace", "unlink", "rmdir"):
            monkeypatch.setattr(os, name, self.wrap(getattr(os, name)))


def _kill_config(dataset, out: Path) -> TrainConfig:
    # A partial checkpoint at every epoch end: 2 in the initial phase, 1 in update_1.
    return syn.tiny_config(
        dataset, out, epochs=3, iterations=1, update_epochs=2, threads=1, checkpoint_minutes=1e-9
    )


def test_a_kill_at_every_write_then_resume_ends_bit_identical(dataset, tmp_path, monkeypatch):
    from kist_train.checkpoints import latest_phase
    from kistrules.errors import CheckpointError

    quiet = Console(stderr=True, quiet=True)
    reference = _kill_config(dataset, tmp_path / "reference")
    counter = _KillAtWrite(None)
    with monkeypatch.context() as patch:
        counter.install(patch)
        train(reference, console=quiet, progress=False)
    writes = counter.calls
    # marker; per complete phase log, tensors, record, latest; per partial save 4 more
    assert writes >= 1 + 3 * 4 + 3 * 4, writes
    want = read_log(Path(reference.out))
    resumed_epochs = set()
    for at in range(1, writes + 1):
        config = replace(reference, out=str(tmp_path / f"killed_{at}"))
        killer = _KillAtWrite(at)
        with monkeypatch.context() as patch, pytest.raises(_KilledAtWrite):
            killer.install(patch)
            train(config, console=quiet, progress=False)
        try:
            train(config, resume=True, console=quiet, progress=False)
        except CheckpointError as err:  # killed before the run existed: start it again
            assert "no run to resume" in str(err), (at, err)
            train(config, console=quiet, progress=False)
        run_dir = Path(config.out)
        assert complete_phases(run_dir) == phase_names(1), at
        assert latest_phase(run_dir) == "update_1", at
        assert not (run_dir / "partial").exists(), at
        for phase in phase_names(1):
            _assert_same_weights_of(run_dir, Path(reference.out), phase, at)
        got = read_log(run_dir)
        for mine, theirs in zip(got, want, strict=True):
            for key in ("mu_e", "sigma_e", "loss_per_epoch", "loss_total", "labels"):
                assert mine.get(key) == theirs.get(key), (at, key)
            resumed_epochs.add((mine["phase"], mine.get("resumed_after_epoch")))
    # The kills did land inside phases, and their partial checkpoints were used.
    assert {("initial", 1), ("initial", 2), ("update_1", 1)} <= resumed_epochs


def _assert_same_weights_of(a: Path, b: Path, phase: str, at: int) -> None:
    wa, wb = load_checkpoint(a, phase)[0], load_checkpoint(b, phase)[0]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), (at, phase, key)
