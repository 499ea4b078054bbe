"""One phase of a run on disk: what its checkpoint holds, saving it, restoring it.

A phase checkpoint (kist_train.checkpoints writes its sealed record last) holds
`PhaseState`: weights, optimiser state, the two generators and torch's RNG, the
pseudo-labels (tensors, one file), the residual statistics and the log so far
(in its record). Restoring every field, each validated first, lets `resume`
continue exactly where an uninterrupted run would be. An interrupted phase is
saved at an epoch boundary under RUN_DIR/partial/ with its loop position.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kist_train.config import TrainConfig, phase_names
from kistrules.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from kist_train.checkpoints import Checkpoint

LOG_FILE = "log.jsonl"  # the log for people; resume reads the log of the checkpoint
PARTIAL_DIR = "partial"  # RUN_DIR/partial: the interrupted phase at an epoch boundary
STATS = ("mu_e", "sigma_e", "initial_mu_e", "initial_sigma_e", "margin")


@dataclass
class PhaseState:
    """What the loop changes and a phase checkpoint must hold to resume."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    normal_gen: torch.Generator
    anomalous_gen: torch.Generator
    labels: torch.Tensor | None = None  # (Na, S, S) bool
    stats: dict[str, Any] = field(default_factory=dict)  # mu_e, sigma_e, margin, ...
    log: list[dict[str, Any]] = field(default_factory=list)


def write_log(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    from kistrules.atomic import atomic_write_text

    text = "".join(json.dumps(entry, sort_keys=False) + "\n" for entry in entries)
    atomic_write_text(run_dir / LOG_FILE, text)


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of RUN_DIR/log.jsonl (empty when there is none)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def rulebook_sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


def phase_meta(
    config: TrainConfig,
    state: PhaseState,
    *,
    phase: str,
    model_config: Any,
    rulebook_text: str | None,
    n_normal: int,
    n_anomalous: int,
) -> dict[str, Any]:
    """The JSON part of a phase checkpoint: the run's options, statistics and log."""
    mu = state.stats.get("mu_e")
    sigma = state.stats.get("sigma_e")
    return {
        "phase": phase,
        "phases": phase_names(config.iterations),
        "config": config.to_dict(),
        "model": model_config.to_dict(),
        "size": config.size,
        "mu_e": mu,
        "sigma_e": sigma,
        "initial_mu_e": state.stats.get("initial_mu_e"),
        "initial_sigma_e": state.stats.get("initial_sigma_e"),
        "margin": state.stats.get("margin"),
        "overlay_vmax": (mu + 6.0 * sigma) if mu is not None else None,
        "rulebook_text": rulebook_text,
        "rulebook_sha256": rulebook_sha256(rulebook_text),
        "n_train_good": n_normal,
        "n_train_anomalous": n_anomalous,
        "log": [dict(entry) for entry in state.log],  # resume restores it from here
    }


def save_phase(
    run_dir: Path,
    phase: str,
    state: PhaseState,
    meta: dict[str, Any],
    *,
    partial: bool = False,
    dist: Any = None,
) -> None:
    """Rank 0 alone writes (a 1-process run, `dist` None, is rank 0); the others wait.

    A complete phase drops RUN_DIR/partial (now stale); a partial one is written there,
    without the log file (the phase's entry does not exist yet).
    """
    if dist is None or dist.is_main:
        if partial:
            _write_phase(run_dir / PARTIAL_DIR, phase, state, meta, with_log=False)
        else:
            _write_phase(run_dir, phase, state, meta)
            drop_partial(run_dir)
    if dist is not None:
        dist.barrier()


def _write_phase(
    root: Path, phase: str, state: PhaseState, meta: dict[str, Any], *, with_log: bool = True
) -> None:
    """One checkpoint holds everything of the phase (kist_train.checkpoints writes its
    record last): weights, optimiser, generators and labels as tensors; the log in meta."""
    from kist_train.checkpoints import save_checkpoint

    extra = {
        "normal_gen": state.normal_gen.get_state(),
        "anomalous_gen": state.anomalous_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if state.labels is not None:
        extra["labels"] = state.labels.to(torch.uint8)
    if with_log:
        write_log(root, state.log)
    save_checkpoint(
        root, phase, state.model, meta, optimizer_state=state.optimizer.state_dict(), extra=extra
    )


def drop_partial(run_dir: Path) -> None:
    """Delete RUN_DIR/partial, records first (a record never outlives its tensors)."""
    partial = run_dir / PARTIAL_DIR
    for record in sorted((partial / "checkpoints").glob("*.json")):
        record.unlink(missing_ok=True)
    shutil.rmtree(partial, ignore_errors=True)


def partial_of(
    run_dir: Path, config: TrainConfig, phase: str
) -> tuple[Checkpoint, dict[str, Any]] | None:
    """The checkpoint an interrupted `phase` left in RUN_DIR/partial and its loop position
    ({"epochs_done", ...}, checked against `config`), or None."""
    from kist_train.checkpoints import read_checkpoint

    partial_dir = run_dir / PARTIAL_DIR
    if not (partial_dir / "checkpoints" / f"{phase}.json").is_file():
        return None
    checkpoint = read_checkpoint(partial_dir, phase)
    position = checkpoint.meta.get("partial")
    epochs = config.epochs if phase == "initial" else config.update_epochs
    done = position.get("epochs_done") if isinstance(position, dict) else None
    if not (_is_int(done) and 1 <= done < epochs):
        raise CheckpointError(f"{checkpoint.path}: partial checkpoint of {phase!r} lacks its epoch")
    if phase == "initial":
        losses = position.get("loss_per_epoch")
        good = isinstance(losses, list) and len(losses) == done and all(map(_is_finite, losses))
    else:
        sums = position.get("sums")
        good = (
            isinstance(sums, dict)
            and sorted(sums) == ["normal", "push", "total"]
            and all(map(_is_finite, sums.values()))
            and _is_int(position.get("steps"))
            and position["steps"] >= 0
        )
    if not good:
        raise CheckpointError(f"{checkpoint.path}: partial checkpoint of {phase!r} is malformed")
    return checkpoint, position


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_meta(
    checkpoint: Checkpoint, phase: str, log_phases: list[str], config: TrainConfig | None
) -> dict[str, Any]:
    """Validate every field of a checkpoint's meta that resume uses, naming its record.

    `config`: the run's own options, which the checkpoint must have been trained with
    (None for the --init-from run, checked by rundir.check_init_from). `log_phases`: the
    phases the stored log must list, in order.
    """
    meta, where = checkpoint.meta, checkpoint.path

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: {what}")

    if meta.get("phase") != phase:
        raise bad(f"holds phase {meta.get('phase')!r}, not {phase!r}")
    if config is not None:
        try:
            stored = TrainConfig.from_dict(meta.get("config"))
        except UsageError as err:
            raise bad(str(err)) from err
        diff = config.differences(stored)
        if diff or meta.get("phases") != phase_names(config.iterations):
            raise bad(f"belongs to another run (options differ: {', '.join(diff) or 'phases'})")
    for key in STATS:
        value = meta.get(key)
        if value is not None and not _is_finite(value):
            raise bad(f"{key} must be a finite number, not {value!r}")
        if key.endswith(("mu_e", "sigma_e")) and value is not None and value < 0:
            raise bad(f"{key} must be >= 0, not {value!r}")
    if phase != "initial" and (meta.get("mu_e") is None or meta.get("sigma_e") is None):
        raise bad("lacks the residual statistics mu_e, sigma_e")
    sha = meta.get("rulebook_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise bad("rulebook_sha256 is malformed")
    log = meta.get("log")
    if not isinstance(log, list) or not all(isinstance(entry, dict) for entry in log):
        raise bad("log is not a list of entries")
    if [entry.get("phase") for entry in log] != log_phases:
        raise bad(f"log does not list the phases {log_phases}")
    return meta


def restore(
    checkpoint: Checkpoint,
    phase: str,
    state: PhaseState,
    *,
    anomalous: torch.Tensor,
    log_phases: list[str],
    config: TrainConfig | None,
) -> None:
    """Put a verified checkpoint into `state`, each field validated first.

    `anomalous`: the run's (Na, 1, S, S) anomalous images, which the stored labels
    must fit (and whose device they go to).
    """
    from kist_train.checkpoints import load_weights

    meta = _check_meta(checkpoint, phase, log_phases, config)
    where = checkpoint.path
    load_weights(state.model, checkpoint.weights, where)
    if checkpoint.optimizer is not None:
        try:
            state.optimizer.load_state_dict(checkpoint.optimizer)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"{where}: optimizer state does not fit the model") from err
    extra = checkpoint.extra
    size = anomalous.shape[-1]
    expected = {
        "normal_gen": state.normal_gen.get_state(),
        "anomalous_gen": state.anomalous_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if "labels" in extra:
        expected["labels"] = torch.zeros((anomalous.shape[0], size, size), dtype=torch.uint8)
    for key, like in expected.items():
        got = extra.get(key)
        if got is None or got.dtype != like.dtype or got.shape != like.shape:
            raise CheckpointError(f"{where}: {key} is missing or has the wrong shape")
    try:
        state.normal_gen.set_state(extra["normal_gen"])
        state.anomalous_gen.set_state(extra["anomalous_gen"])
        torch.set_rng_state(extra["torch_rng"])
    except RuntimeError as err:
        raise CheckpointError(f"{where}: a generator state is invalid") from err
    if "labels" in extra:
        state.labels = extra["labels"].to(device=anomalous.device, dtype=torch.bool)
    for key in STATS:
        if meta.get(key) is not None:
            state.stats[key] = float(meta[key])
    state.log = [dict(entry) for entry in meta["log"]]


def restore_initial_of(config: TrainConfig, state: PhaseState, *, anomalous: torch.Tensor) -> None:
    """Restore the "initial" phase of the --init-from run (checked by rundir.check_init_from)."""
    from kist_train.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(config.init_from, "initial")
    restore(checkpoint, "initial", state, anomalous=anomalous, log_phases=["initial"], config=None)
    state.labels = None
