"""Turn the user's ``--device`` option into a torch.device, with one-line errors."""

from __future__ import annotations

import re

import torch

from kistrules.errors import UsageError

__all__ = ["resolve_device"]

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def resolve_device(name: str = "auto") -> torch.device:
    """Pick the device for training and prediction.

    Args:
        name: "auto" (CUDA when available, else CPU), "cpu", "cuda", or "cuda:N"
            (one GPU of several, e.g. a DDP rank's local device); a torch.device
            is returned unchanged.

    Returns:
        The torch.device. Asking for CUDA on a machine without it is a
        UsageError rather than a late crash inside the first forward pass.
    """
    if isinstance(name, torch.device):
        return name
    if not isinstance(name, str):
        raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda")
    key = name.strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.fullmatch(key)
    if key == "cuda" or match:
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name!r}: CUDA is not available on this machine; use cpu")
        if match and int(match.group(1)) >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return torch.device(key)
    raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda")
