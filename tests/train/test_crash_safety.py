"""Crash safety of `kistrules train`: SIGKILL and SIGINT mid-run, then --resume.

A run is a real subprocess (the CLI, as a user starts it), killed while a phase is
in flight (just after the first checkpoint appeared). Resuming must continue from
the last complete checkpoint and end bit-identical, weights and evaluation metrics,
to an uninterrupted run with the same seed: each phase's checkpoint holds the
weights, the optimiser state and the generators, and is written atomically
(temporary file, then os.replace; the phase's JSON last), so a kill can only ever
lose the phase in flight. Overwriting another run without --force is covered by
tests/train/test_engine.py::test_run_dir_is_never_overwritten_without_force.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from kist_train.checkpoints import complete_phases, load_checkpoint
from kist_train.config import TrainConfig
from kist_train.engine import phase_names, read_log, train
from kist_train.evaluate import evaluate_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _synthetic():
    name = "kist_train_tests_synthetic"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("synthetic.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


syn = _synthetic()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    syn.make_dataset(root / "d", n_good=12, n_anomalous=3, anomalous_masks=True)
    return root / "d", syn.write_rulebook(root / "blob.rules")


def _config(dataset, out: Path) -> TrainConfig:
    data, rulebook = dataset
    return TrainConfig(
        data=str(data),
        out=str(out),
        rulebook=str(rulebook),
        size=24,
        width=4,
        depth=2,
        epochs=3,
        iterations=2,
        update_epochs=10,  # long update phases: the kill lands inside one
        batch_size=6,
        anomalous_per_batch=2,
        device="cpu",
        threads=1,
    )


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    return train(_config(dataset, out), console=Console(stderr=True, quiet=True), progress=False)


def _start(config: TrainConfig, *extra: str) -> subprocess.Popen:
    args = [
        "train",
        f"--data={config.data}",
        f"--out={config.out}",
        f"--rulebook={config.rulebook}",
        "--size=24",
        "--width=4",
        "--depth=2",
        "--epochs=3",
        "--iterations=2",
        "--update-epochs=10",
        "--batch-size=6",
        "--anomalous-per-batch=2",
        "--device=cpu",
        "--threads=1",
        "--no-progress",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", "from kistrules.cli import main; main()", *args],
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
