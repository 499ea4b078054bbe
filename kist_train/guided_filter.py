"""The guided filter of He et al. (the paper's eq. 14-15), batched, by cumulative sums.

The paper smooths the residual map e(x) with the input image as guide: inside
each (2r+1)^2 window, e is fitted by a ridge regression on the guide
(a_k, b_k of eq. 15); each output pixel averages the fits of every window that
contains it. Every mean is a box filter, computed from cumulative sums, so the
cost per pixel does not depend on the radius. Windows are clipped at the image
border and divided by their true pixel count (He et al.'s reference code does
the same), so no padding value leaks into the result.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_filter", "guided_filter", "radius_for_size"]


def _acc_dtype(x: Tensor) -> torch.dtype:
    """Accumulate in float64 where the device has it: float32 integral images lose digits."""
    if x.device.type == "mps":
        return torch.float32
    return torch.float64


def _box_sum_1d(x: Tensor, radius: int, dim: int) -> tuple[Tensor, Tensor]:
    """Window sums along one dim and the true window sizes, from one cumulative sum."""
    n = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = 1
    csum = torch.cat([x.new_zeros(shape), torch.cumsum(x, dim=dim)], dim=dim)
    idx = torch.arange(n, device=x.device)
    hi = (idx + radius + 1).clamp(max=n)
    lo = (idx - radius).clamp(min=0)
    sums = csum.index_select(dim, hi) - csum.index_select(dim, lo)
    return sums, (hi - lo)


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)^2 window around each pixel, clipped at the borders.

    Args:
        x: (B, C, H, W) tensor; any float dtype, any device.
        radius: window half-size r >= 0; a radius larger than the image just
            averages the whole image.

    Returns:
        Tensor of x's shape and dtype.
    """
    if x.dim() != 4:
        raise ValueError(f"box_filter expects (B, C, H, W); got shape {tuple(x.shape)}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0; got {radius!r}")
    acc = x.to(_acc_dtype(x))
    rows, n_rows = _box_sum_1d(acc, radius, dim=2)
    sums, n_cols = _box_sum_1d(rows, radius, dim=3)
    counts = n_rows.view(-1, 1).to(acc.dtype) * n_cols.view(1, -1).to(acc.dtype)
    return (sums / counts).to(x.dtype)


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float = 1e-3) -> Tensor:
    """Filter ``src`` (the residual map) guided by ``guide`` (the image), eq. 14-15.

    a_k = (mean(I e) - mu_k mean(e)) / (sigma_k^2 + eps), b_k = mean(e) - a_k mu_k;
    q_i = mean_k(a_k) I_i + mean_k(b_k) over the windows k containing pixel i.

    Args:
        guide: (B, 1, H, W) guide image in [0, 1] (eps is on that scale).
        src: (B, 1, H, W) map to smooth (channels broadcast against the guide).
        radius: window half-size; see ``radius_for_size``.
        eps: ridge regularisation of eq. 15; larger = smoother.

    Returns:
        The filtered map, src's shape and dtype.
    """
    if guide.dim() != 4 or src.dim() != 4:
        raise ValueError("guided_filter expects (B, 1, H, W) tensors")
    if guide.shape[0] != src.shape[0] or guide.shape[2:] != src.shape[2:]:
        raise ValueError(
            f"guide {tuple(guide.shape)} and src {tuple(src.shape)} differ in batch or size"
        )
    if not eps > 0:
        # eps = 0 divides by zero in any flat window of the guide.
        raise ValueError(f"eps must be > 0; got {eps!r}")
    dtype = _acc_dtype(src)
    g = guide.to(dtype)
    e = src.to(dtype)
    mean_g = box_filter(g, radius)
    mean_e = box_filter(e, radius)
    cov_ge = box_filter(g * e, radius) - mean_g * mean_e
    var_g = box_filter(g * g, radius) - mean_g * mean_g
    a = cov_ge / (var_g + eps)
    b = mean_e - a * mean_g
    q = box_filter(a, radius) * g + box_filter(b, radius)
    return q.to(src.dtype)


def radius_for_size(size: int) -> int:
    """Window radius for a working size: 16 at 256 px as in the paper, linear, at least 1."""
    if size < 1:
        raise ValueError(f"size must be >= 1; got {size!r}")
    return max(1, round(16 * size / 256))
