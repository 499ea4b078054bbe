"""Checkpoints of a run: safetensors tensors plus a sealed JSON record, never pickle.

Layout of a run directory::

    RUN_DIR/checkpoints/<phase>.<token>.safetensors  model tensors; optimizer tensors as
                                                     "optim.*", the caller's as "extra.*"
    RUN_DIR/checkpoints/<phase>.json    the record: format, tensor file name and sha256,
                                        meta, optimizer skeleton; sealed (sealed_json)
    RUN_DIR/checkpoints/latest.json     {"phase": <the last phase saved>}, sealed

The record is a phase's one commit point. Its tensors go to a file of a fresh name
(a random token), flushed to disk, and only then is the record renamed into place,
naming that file and its sha256; the previous tensors of the phase are deleted
after. A save that is killed at any moment therefore leaves either the previous
record with the previous tensors or the new record with the new tensors, never a
mix: a record that does not match its tensors was edited or corrupted, and is
refused with a one-line CheckpointError naming the file, as is any field out of
place. Tensors without a record are an incomplete save, ignored.

Loading reads safetensors only (no code runs on load); a pickle file (``torch.save``,
``.pt``) is refused without being opened by an unpickler. The JSON ``meta`` is the
caller's: everything prediction needs (model config under "model", working size,
mu_e, sigma_e, rulebook text and its sha256...), so a checkpoint reproduces
prediction on its own; the seal covers it, statistics and config included.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from kist_train.device import resolve_device
from kist_train.models import ModelConfig, build_model
from kist_train.sealed_json import read_json, sealed_text, unseal
from kistrules.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from kistrules.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "complete_phases",
    "load_checkpoint",
    "load_model_from_run",
    "load_weights",
    "model_of",
    "read_checkpoint",
    "save_checkpoint",
    "set_latest",
]

FORMAT = "kistrules-checkpoint"
VERSION = 2  # 1: tensors in <phase>.safetensors, the record unsealed (refused)
_OPTIM = "optim."
_EXTRA = "extra."
_PHASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MAX_RECORD_BYTES = 64 * 2**20  # a record holds the rulebook (at most 1 MiB) and small figures


def _checkpoint_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "checkpoints"


def _check_phase(phase: Any, error: type[Exception]) -> str:
    if not isinstance(phase, str) or not _PHASE.fullmatch(phase) or phase == "latest":
        raise error(f"phase name {phase!r} must be letters, digits, '_', '-', '.' (not 'latest')")
    return phase


def _tensor_files(directory: Path, phase: str) -> list[Path]:
    """Every tensor file a save of `phase` may have left (the current one among them)."""
    pattern = re.compile(rf"{re.escape(phase)}\.[0-9a-f]{{12}}\.safetensors")
    return [p for p in directory.glob(f"{phase}.*.safetensors") if pattern.fullmatch(p.name)]


# --- optimizer state: tensors to safetensors, the rest to JSON -------------------------------


def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """Replace tensors by {"__tensor__": key}; keep dict keys' types and tuples exactly."""
    if isinstance(obj, Tensor):
        key = f"{_OPTIM}{path}"
        if key in tensors:
            raise CheckpointError(f"optimizer state has two tensors at {key!r}")
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"optimizer state key {k!r} at {path!r} is not str or int")
            items.append([k, _encode(v, f"{path}.{k}" if path else str(k), tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        encoded = [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": encoded} if isinstance(obj, tuple) else encoded
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"optimizer state value at {path!r} has unsupported type {type(obj)}")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError as err:
                raise CheckpointError(f"optimizer tensor {obj['__tensor__']!r} missing") from err
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        raise CheckpointError("optimizer state in the checkpoint JSON is malformed")
    return obj


# --- save -----------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    phase: str,
    model: nn.Module,
    meta: dict[str, Any],
    *,
    optimizer_state: dict[str, Any] | None = None,
    extra: dict[str, Tensor] | None = None,
) -> Path:
    """Save one phase of a run; returns the phase's record path (its commit point).

    Args:
        run_dir: the run directory (created if needed).
        phase: a file-name-safe phase name, e.g. "initial", "iter3".
        model: its ``state_dict()`` is stored (moved to the CPU).
        meta: JSON-serialisable dict (tuples come back as lists); should hold
            "model": ModelConfig.to_dict() for ``load_model_from_run``.
        optimizer_state: ``optimizer.state_dict()``, restored exactly (int keys,
            tuples, tensors) by ``load_checkpoint``.
        extra: the caller's own tensors (e.g. generator states), saved in the same
            file and hash, returned by ``read_checkpoint`` as ``Checkpoint.extra``.
    """
    _check_phase(phase, ValueError)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    clash = [k for k in tensors if k.startswith((_OPTIM, _EXTRA))]
    if clash:
        raise ValueError(
            f"model tensor names may not start with {_OPTIM!r} or {_EXTRA!r}: {clash[0]!r}"
        )
    skeleton = None
    if optimizer_state is not None:
        skeleton = _encode(optimizer_state, "", tensors)
    for key, value in (extra or {}).items():
        tensors[_EXTRA + key] = value.detach().to("cpu").contiguous().clone()
    # Serialise everything before touching the disk: a bad meta changes nothing.
    blob = st_save(tensors, metadata={"format": FORMAT})
    tensor_name = f"{phase}.{uuid.uuid4().hex[:12]}.safetensors"
    record = {
        "format": FORMAT,
        "version": VERSION,
        "phase": phase,
        "saved_ns": time.time_ns(),
        "tensors": tensor_name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "meta": meta,
        "optimizer": skeleton,
    }
    try:
        text = sealed_text(record)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint meta for phase {phase!r} is not JSON: {err}") from err

    directory = _checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    old = _tensor_files(directory, phase)
    # The tensors reach the disk before the record that names them.
    atomic_write_bytes(directory / tensor_name, blob)
    fsync_dir(directory)
    atomic_write_text(directory / f"{phase}.json", text)
    fsync_dir(directory)
    set_latest(run_dir, phase)
    for path in old:  # no record names them any more
        path.unlink(missing_ok=True)
    return directory / f"{phase}.json"


def set_latest(run_dir: str | os.PathLike[str], phase: str) -> None:
    """Point RUN_DIR/checkpoints/latest.json at `phase` (the default of loading)."""
    text = sealed_text({"format": FORMAT, "phase": _check_phase(phase, ValueError)})
    atomic_write_text(_checkpoint_dir(run_dir) / "latest.json", text)


# --- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """One verified phase: its record's path (named in errors), tensors, meta."""

    path: Path
    weights: dict[str, Tensor]
    meta: dict[str, Any]
    optimizer: dict[str, Any] | None
    extra: dict[str, Tensor]


def _refuse_pickle(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: pickle checkpoints (torch.save, .pt) are refused; "
        "kistrules loads safetensors run directories only"
    )


def _looks_like_pickle(data: bytes) -> bool:
    """torch.save writes a zip ("PK\\x03\\x04") or a raw pickle (0x80, protocol 2-5).

    A safetensors file starts with an 8-byte header length and then "{", so a
    real safetensors file is never mistaken for one whatever its header length.
    """
    if data[8:9] == b"{":
        return False
    return data[:4] == b"PK\x03\x04" or (len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5)


class MissingRunError(CheckpointError):
    """A run directory that does not exist: a wrong path, exit 2 like every missing input."""

    exit_code = 2


def _open_run(run_dir: str | os.PathLike[str]) -> Path:
    run = Path(run_dir)
    if run.is_file():
        if run.suffix.lower() in _PICKLE_SUFFIXES:
            raise _refuse_pickle(run)
        raise CheckpointError(f"{run} is a file, not a kistrules run directory")
    if not run.is_dir():
        raise MissingRunError(f"run directory {run} does not exist")
    directory = _checkpoint_dir(run)
    if not directory.is_dir():
        raise CheckpointError(f"{run} is not a kistrules run directory (no checkpoints/ folder)")
    return directory


def _read_record(path: Path, what: str) -> dict[str, Any]:
    value = read_json(path, max_bytes=MAX_RECORD_BYTES, what=what)
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kistrules checkpoint record")
    if value.get("version") == 1:
        raise CheckpointError(
            f"{path}: checkpoint of an older kistrules (format 1, without integrity hashes); "
            "train the run again with this version"
        )
    if value.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {value.get('version')!r} unknown")
    return unseal(value, path, what=what)


def _read_phase(directory: Path, phase: str) -> tuple[dict[str, Any], bytes]:
    """The phase's record and its verified tensor bytes, or a one-line CheckpointError."""
    json_path = directory / f"{phase}.json"
    if not json_path.is_file():
        for suffix in _PICKLE_SUFFIXES:
            if (directory / f"{phase}{suffix}").exists():
                raise _refuse_pickle(directory / f"{phase}{suffix}")
        started = _tensor_files(directory, phase) or (directory / f"{phase}.safetensors").exists()
        state = "is incomplete" if started else "does not exist"
        raise CheckpointError(f"checkpoint {json_path.with_suffix('')} {state}")
    record = _read_record(json_path, "checkpoint record")
    name = record.get("tensors")
    if (
        record.get("phase") != phase
        or not isinstance(name, str)
        or not re.fullmatch(rf"{re.escape(phase)}\.[0-9a-f]{{12}}\.safetensors", name)
        or not isinstance(record.get("sha256"), str)
        or not _SHA256.fullmatch(record["sha256"])
        or not isinstance(record.get("meta"), dict)
        or not isinstance(record.get("saved_ns"), int)
        or not isinstance(record.get("optimizer"), (dict, list, type(None)))
    ):
        raise CheckpointError(f"{json_path} is not a checkpoint record of phase {phase!r}")
    tensor_path = directory / name
    try:
        data = tensor_path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{tensor_path}: cannot read ({err.strerror})") from err
    if _looks_like_pickle(data):
        raise _refuse_pickle(tensor_path)
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise CheckpointError(f"{tensor_path} does not match its record (edited or corrupted)")
    return record, data


def latest_phase(run_dir: str | os.PathLike[str]) -> str:
    """The phase RUN_DIR/checkpoints/latest.json names (the last one saved)."""
    latest = _open_run(run_dir) / "latest.json"
    if not latest.is_file():
        raise CheckpointError(f"{Path(run_dir)} has no complete checkpoint yet")
    value = read_json(latest, max_bytes=4096, what="checkpoint pointer")
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise CheckpointError(f"{latest} is not a kistrules checkpoint record")
    phase = unseal(value, latest, what="checkpoint pointer").get("phase")
    if not isinstance(phase, str) or not _PHASE.fullmatch(phase) or phase == "latest":
        raise CheckpointError(f"{latest}: names no phase")
    return phase


def read_checkpoint(run_dir: str | os.PathLike[str], phase: str | None = None) -> Checkpoint:
    """One phase (the latest when ``phase`` is None), verified, without unpickling anything."""
    directory = _open_run(run_dir)
    phase = latest_phase(run_dir) if phase is None else _check_phase(phase, CheckpointError)
    record, data = _read_phase(directory, phase)
    json_path = directory / f"{phase}.json"
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"{directory / record['tensors']}: not a safetensors file") from err
    weights = {k: v for k, v in tensors.items() if not k.startswith((_OPTIM, _EXTRA))}
    extra = {k[len(_EXTRA) :]: v for k, v in tensors.items() if k.startswith(_EXTRA)}
    optim_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIM)}
    skeleton = record["optimizer"]
    try:
        optimizer = None if skeleton is None else _decode(skeleton, optim_tensors)
    except CheckpointError as err:
        raise CheckpointError(f"{json_path}: {err}") from err
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{json_path}: optimizer state is malformed") from err
    return Checkpoint(json_path, weights, record["meta"], optimizer, extra)


def load_checkpoint(
    run_dir: str | os.PathLike[str], phase: str | None = None
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any] | None]:
    """Load one phase (the latest when ``phase`` is None) without unpickling anything.

    Returns:
        (model state dict on the CPU, meta as saved, optimizer state dict or None).
    """
    checkpoint = read_checkpoint(run_dir, phase)
    return checkpoint.weights, checkpoint.meta, checkpoint.optimizer


def _mismatch(model: nn.Module, state: dict[str, Tensor]) -> str | None:
    """A one-line description of how ``state`` differs from the model's, or None."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        return "tensors " + ", ".join(parts)
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            return (
                f"tensor {key!r} has shape {tuple(got.shape)} ({got.dtype}), "
                f"the model {tuple(want.shape)} ({want.dtype})"
            )
    return None


def load_weights(model: nn.Module, weights: dict[str, Tensor], source: Path) -> None:
    """Load ``weights`` strictly, or raise a one-line CheckpointError naming ``source``."""
    problem = _mismatch(model, weights)
    if problem:
        raise CheckpointError(f"{source}: checkpoint does not fit the model: {problem}")
    model.load_state_dict(weights, strict=True)


def load_model_from_run(
    run_dir: str | os.PathLike[str],
    phase: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild G from meta["model"] and load its weights strictly.

    Returns:
        (the model on ``device``, in eval mode, ready to predict; meta).
    """
    checkpoint = read_checkpoint(run_dir, phase)
    model = model_of(checkpoint)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(target).eval(), checkpoint.meta


def model_of(checkpoint: Checkpoint) -> nn.Module:
    """The network a checkpoint describes (meta["model"]) with its weights, on the CPU."""
    if "model" not in checkpoint.meta:
        raise CheckpointError(f"{checkpoint.path}: checkpoint meta has no 'model' config")
    try:
        config = ModelConfig.from_dict(checkpoint.meta["model"])
    except CheckpointError as err:
        raise CheckpointError(f"{checkpoint.path}: {err}") from err
    model = build_model(config)
    load_weights(model, checkpoint.weights, checkpoint.path)
    return model


def complete_phases(run_dir: str | os.PathLike[str]) -> list[str]:
    """Phases with a record and its verified tensors, oldest save first ([] for a new run).

    Tensors without a record are an interrupted first save: not complete. A record that
    does not verify is an error (a save never leaves one), named in a CheckpointError.
    """
    directory = _checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = []
    for json_path in directory.glob("*.json"):
        phase = json_path.stem
        if phase == "latest" or not _PHASE.fullmatch(phase):
            continue
        record, _ = _read_phase(directory, phase)
        found.append((record["saved_ns"], phase))
    return [phase for _, phase in sorted(found)]
