"""Checkpoints of a run: safetensors weights plus a JSON record, never pickle.

Layout of a run directory::

    RUN_DIR/checkpoints/<phase>.safetensors   model tensors; optimizer tensors as "optim.*"
    RUN_DIR/checkpoints/<phase>.json          format, tensors' sha256, meta, optimizer skeleton
    RUN_DIR/checkpoints/latest.json           {"phase": <the last phase saved>}

A phase is complete only when its JSON exists and names the sha256 of the
tensors beside it: the tensors are renamed into place first and the JSON
last, each atomically, so an interrupted save leaves the previous checkpoint
of that phase loadable and ``--resume`` never picks up half a phase. Loading
reads safetensors only (no code runs on load); a pickle file (``torch.save``,
``.pt``) is refused with a one-line CheckpointError, without being opened by
an unpickler. The JSON ``meta`` is the caller's: everything prediction needs
(model config under "model", working size, mu_e, sigma_e, rulebook text and
its sha256...), so a checkpoint reproduces prediction on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from kist_train.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from kist_train.device import resolve_device
from kist_train.models import ModelConfig, build_model
from kistrules.errors import CheckpointError

__all__ = ["complete_phases", "load_checkpoint", "load_model_from_run", "save_checkpoint"]

FORMAT = "kistrules-checkpoint"
VERSION = 1
_OPTIM = "optim."
_PHASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def _checkpoint_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "checkpoints"


def _check_phase(phase: Any, error: type[Exception]) -> str:
    if not isinstance(phase, str) or not _PHASE.fullmatch(phase) or phase == "latest":
        raise error(f"phase name {phase!r} must be letters, digits, '_', '-', '.' (not 'latest')")
    return phase


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
) -> Path:
    """Save one phase of a run; returns the phase's JSON path (the completion marker).

    Args:
        run_dir: the run directory (created if needed).
        phase: a file-name-safe phase name, e.g. "initial", "iter3".
        model: its ``state_dict()`` is stored (moved to the CPU).
        meta: JSON-serialisable dict (tuples come back as lists); should hold
            "model": ModelConfig.to_dict() for ``load_model_from_run``.
        optimizer_state: ``optimizer.state_dict()``, restored exactly (int keys,
            tuples, tensors) by ``load_checkpoint``.
    """
    _check_phase(phase, ValueError)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    clash = [k for k in tensors if k.startswith(_OPTIM)]
    if clash:
        raise ValueError(f"model tensor names may not start with {_OPTIM!r}: {clash[0]!r}")
    skeleton = None
    if optimizer_state is not None:
        skeleton = _encode(optimizer_state, "", tensors)
    # Serialise everything before touching the disk: a bad meta changes nothing.
    blob = st_save(tensors, metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "version": VERSION,
        "phase": phase,
        "saved_ns": time.time_ns(),
        "tensors": f"{phase}.safetensors",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "meta": meta,
        "optimizer": skeleton,
    }
    try:
        text = json.dumps(record, indent=1, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint meta for phase {phase!r} is not JSON: {err}") from err

    directory = _checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{phase}.json"
    # JSON last: its temp file is renamed only after the tensors are in place.
    with atomic_path(json_path) as json_tmp:
        json_tmp.write_text(text, encoding="utf-8")
        atomic_write_bytes(directory / f"{phase}.safetensors", blob)
    atomic_write_text(directory / "latest.json", json.dumps({"format": FORMAT, "phase": phase}))
    return json_path


# --- load -----------------------------------------------------------------------------------


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint record ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kistrules checkpoint record")
    return record


def _read_phase(directory: Path, phase: str) -> tuple[dict[str, Any], bytes]:
    """The phase's JSON record and verified tensor bytes, or a one-line CheckpointError."""
    json_path = directory / f"{phase}.json"
    tensor_path = directory / f"{phase}.safetensors"
    if not json_path.is_file():
        for suffix in _PICKLE_SUFFIXES:
            if (directory / f"{phase}{suffix}").exists():
                raise _refuse_pickle(directory / f"{phase}{suffix}")
        state = "is incomplete" if tensor_path.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {json_path.with_suffix('')} {state}")
    record = _read_json(json_path)
    if record.get("version") != VERSION:
        raise CheckpointError(f"{json_path}: checkpoint version {record.get('version')!r} unknown")
    if record.get("tensors") != tensor_path.name:
        raise CheckpointError(f"{json_path} does not describe {tensor_path.name}")
    try:
        data = tensor_path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{tensor_path}: cannot read ({err.strerror})") from err
    if _looks_like_pickle(data):
        raise _refuse_pickle(tensor_path)
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise CheckpointError(f"{tensor_path} does not match its record (interrupted save?)")
    return record, data


def load_checkpoint(
    run_dir: str | os.PathLike[str], phase: str | None = None
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any] | None]:
    """Load one phase (the latest when ``phase`` is None) without unpickling anything.

    Returns:
        (model state dict on the CPU, meta as saved, optimizer state dict or None).
    """
    directory = _open_run(run_dir)
    if phase is None:
        latest = directory / "latest.json"
        if not latest.is_file():
            raise CheckpointError(f"{Path(run_dir)} has no complete checkpoint yet")
        phase = _read_json(latest).get("phase")
    phase = _check_phase(phase, CheckpointError)
    record, data = _read_phase(directory, phase)
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"{directory / record['tensors']}: not a safetensors file") from err
    model_state = {k: v for k, v in tensors.items() if not k.startswith(_OPTIM)}
    optim_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIM)}
    skeleton = record.get("optimizer")
    optimizer = None if skeleton is None else _decode(skeleton, optim_tensors)
    return model_state, record.get("meta"), optimizer


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
        if got.shape != want.shape:
            return f"tensor {key!r} has shape {tuple(got.shape)}, the model {tuple(want.shape)}"
    return None


def load_model_from_run(
    run_dir: str | os.PathLike[str],
    phase: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild G from meta["model"] and load its weights strictly.

    Returns:
        (the model on ``device``, in eval mode, ready to predict; meta).
    """
    state, meta, _ = load_checkpoint(run_dir, phase)
    if not isinstance(meta, dict) or "model" not in meta:
        raise CheckpointError(f"{Path(run_dir)}: checkpoint meta has no 'model' config")
    config = ModelConfig.from_dict(meta["model"])
    model = build_model(config)
    problem = _mismatch(model, state)
    if problem:
        raise CheckpointError(f"{Path(run_dir)}: checkpoint does not fit {config}: {problem}")
    model.load_state_dict(state, strict=True)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(target).eval(), meta


def complete_phases(run_dir: str | os.PathLike[str]) -> list[str]:
    """Phases whose JSON and verified tensors both exist, oldest save first ([] for a new run)."""
    directory = _checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = []
    for json_path in directory.glob("*.json"):
        phase = json_path.stem
        if phase == "latest" or not _PHASE.fullmatch(phase):
            continue
        try:
            record, _ = _read_phase(directory, phase)
        except CheckpointError:
            continue
        found.append((record.get("saved_ns", 0), phase))
    return [phase for _, phase in sorted(found)]
