"""Reconstruction losses: eq. 8 (MSE) and the contrastive reconstruction loss, eq. 13.

Eq. 13 pulls normal images towards perfect reconstruction and pushes the
pseudo-labelled pixels of anomalous images away from it:

    L_cr = mean_{normal images, all pixels} (x^ - x)^2
           - lambda * mean_{pseudo-labelled pixels of anomalous images} (x^ - x)^2

Only labelled pixels of anomalous images enter the push: the paper trusts an
"anomalous" label, never an unlabelled pixel of an anomalous image.

The paper's push is unbounded below: the model lowers the loss without limit
by making labelled pixels ever worse, and the gradient through shared weights
then degrades normal reconstruction too (a prototype here saw the normal term
grow x60). ``push="margin"`` is a hinge in the spirit of BGAD's boundary-guided
semi-push-pull loss: a labelled pixel is pushed only until its squared
residual exceeds a margin derived from the normal residual distribution
(the engine uses mu_e + 3 sigma_e of the initial model, i.e. "clearly outside
what normal pixels produce"); beyond it the pixel contributes nothing, so the
loss is bounded below by the normal term and training stays stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["LossParts", "contrastive_reconstruction_loss", "reconstruction_loss"]


@dataclass(frozen=True)
class LossParts:
    """The loss and its two terms, all 0-d tensors: ``total == normal + push``.

    ``push`` is the signed, lambda-weighted term as added to the total: <= 0 for
    the paper's form, >= 0 for the margin hinge.
    """

    total: Tensor
    normal: Tensor
    push: Tensor


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Eq. 8: mean squared error over all images, channels and pixels."""
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")
    return torch.mean((recon - target) ** 2)


def contrastive_reconstruction_loss(
    recon: Tensor,
    target: Tensor,
    is_normal: Tensor,
    pseudo_labels: Tensor,
    *,
    lam: float = 1.0,
    push: Literal["paper", "margin"] = "margin",
    margin: float | None = None,
) -> LossParts:
    """Eq. 13 on a mixed batch of normal and weakly labelled anomalous images.

    Args:
        recon: (B, C, H, W) reconstructions G(x).
        target: (B, C, H, W) inputs x.
        is_normal: (B,) bool, True for images of the normal training set.
        pseudo_labels: (B, H, W) bool, True where a pixel is labelled anomalous;
            ignored on normal images.
        lam: lambda of eq. 13 (>= 0). 0 gives the equal-training baseline:
            ``total`` is then exactly ``normal``.
        push: "paper" (eq. 13 as printed, unbounded below) or "margin" (hinge
            relu(margin - e) per labelled pixel, zero once e >= margin).
        margin: the hinge's squared-residual margin; required for "margin"
            with lam > 0.

    Returns:
        LossParts. The per-pixel residual e = (x^ - x)^2 is averaged over
        channels before the hinge, so a multi-channel pixel is one pixel. With
        no normal image the normal term is 0; with no labelled pixel the push
        is exactly 0 (never NaN).
    """
    if recon.shape != target.shape or recon.dim() != 4:
        raise ValueError(
            f"recon {tuple(recon.shape)} and target {tuple(target.shape)} "
            "must be equal (B, C, H, W) shapes"
        )
    b, _, h, w = recon.shape
    if tuple(is_normal.shape) != (b,):
        raise ValueError(f"is_normal must have shape ({b},); got {tuple(is_normal.shape)}")
    if tuple(pseudo_labels.shape) != (b, h, w):
        raise ValueError(
            f"pseudo_labels must have shape ({b}, {h}, {w}); got {tuple(pseudo_labels.shape)}"
        )
    if push not in ("paper", "margin"):
        raise ValueError(f"push must be 'paper' or 'margin'; got {push!r}")
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0; got {lam!r}")

    normal_img = is_normal.to(torch.bool)
    e = ((recon - target) ** 2).mean(dim=1)  # (B, H, W): eq. 13's per-pixel residual
    zero = e.new_zeros(())

    # Sums over masks divided by clamped counts: no host sync, no NaN on empty masks.
    normal_px = normal_img.view(b, 1, 1).expand(b, h, w)
    n_normal = normal_px.sum().clamp(min=1).to(e.dtype)
    normal = torch.where(normal_px, e, zero).sum() / n_normal

    if lam == 0:
        return LossParts(total=normal, normal=normal, push=zero)
    if push == "margin" and (margin is None or not margin > 0 or not math.isfinite(margin)):
        raise ValueError(f"push='margin' needs a finite margin > 0; got {margin!r}")

    labelled = pseudo_labels.to(torch.bool) & ~normal_img.view(b, 1, 1)
    n_labelled = labelled.sum().clamp(min=1).to(e.dtype)
    per_pixel = -e if push == "paper" else torch.relu(margin - e)
    push_term = lam * torch.where(labelled, per_pixel, zero).sum() / n_labelled
    return LossParts(total=normal + push_term, normal=normal, push=push_term)
