"""The residual map e(x) = (G(x) - x)^2: its one computation, its statistics, its labels.

Training (each "labels_i" phase and the end of every training phase), predict,
audit and `explain --model` all take e(x) from here, so that what an expert
audits or explains is exactly what the model trained on. Under DDP the engine
hands `residual_statistics` this rank's shard and a sum over ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kistrules.pseudo_labels import PseudoLabels, label_regions


@torch.no_grad()
def residuals_of(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    """e(x) = (G(x) - x)^2 for (N, 1, S, S) in eval mode, returned as (N, S, S)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size]
        out.append(((model(batch) - batch) ** 2)[:, 0])
    model.train(was_training)
    return torch.cat(out) if out else x.new_zeros((0, *x.shape[-2:]))


@torch.no_grad()
def residual_statistics(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int,
    all_sum: Callable[[list[float]], list[float]] | None = None,
) -> tuple[float, float]:
    """mu_e, sigma_e of e(x) over every pixel of the normal training images (eq. 9).

    Float64 sums; under DDP `x` is this rank's shard and `all_sum` adds the
    sums (total, total of squares, count) over ranks before the division.
    """
    total = 0.0
    total_sq = 0.0
    count = 0
    was_training = model.training
    model.eval()
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size]
        res = ((model(batch) - batch) ** 2).double()
        total += float(res.sum())
        total_sq += float((res * res).sum())
        count += res.numel()
    model.train(was_training)
    if all_sum is not None:
        total, total_sq, count = all_sum([total, total_sq, count])
    mu = total / count
    return mu, math.sqrt(max(total_sq / count - mu * mu, 0.0))


def label_residuals(
    model: torch.nn.Module,
    x: torch.Tensor,
    scorer: Any,
    *,
    mu: float,
    sigma: float,
    s: float,
    original_sizes: Sequence[tuple[int, int]] | None,
    batch_size: int,
) -> PseudoLabels:
    """Eq. 9-12 on (N, 1, S, S) working images in [0, 1]: e(x), then `label_regions`
    with the gray values on a 0-255 scale (the scale the rulebooks' `gray` uses)."""
    residuals = residuals_of(model, x, batch_size=batch_size)
    return label_regions(
        x[:, 0] * 255.0,
        residuals,
        scorer,
        mu=mu,
        sigma=sigma,
        s=s,
        original_sizes=original_sizes,
    )
