"""Training augmentation: random flips and small rotations (the paper's eq. 8 set-up).

Random numbers are drawn on the CPU from the caller's generator and moved to the
data's device, so the same seed gives the same batches on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 10.0


def _flip(x: torch.Tensor, flip_h: torch.Tensor, flip_v: torch.Tensor) -> torch.Tensor:
    x = torch.where(flip_h.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
    return torch.where(flip_v.view(-1, *[1] * (x.dim() - 1)), x.flip(-2), x)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of (B, 1, H, W) by its angle, reflecting at the borders."""
    theta = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_normal(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and a small rotation (|angle| <= 10 degrees) per image.

    Random numbers are drawn on the CPU from `gen` and moved to x's device, so the
    same seed gives the same batches on any device.
    """
    n = x.shape[0]
    flips = torch.rand((2, n), generator=gen) < 0.5
    angles = (torch.rand(n, generator=gen) * 2 - 1) * MAX_ROTATION_DEG
    x = _flip(x, flips[0].to(x.device), flips[1].to(x.device))
    return _rotate(x, angles.to(x.device, x.dtype))


def augment_labelled(
    x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips only for anomalous images, applied to image and pseudo-label alike (exact)."""
    n = x.shape[0]
    flips = (torch.rand((2, n), generator=gen) < 0.5).to(x.device)
    return _flip(x, flips[0], flips[1]), _flip(labels, flips[0], flips[1])
