"""Reconstruction networks G: a convolutional autoencoder ("cae") and a U-Net ("unet").

Both are pure ``nn.Module``s, fully convolutional, mapping (B, C, H, W) images in
[0, 1] to reconstructions in [0, 1] (sigmoid output), for any H and W: the
input is padded inside ``forward`` to a multiple of 2**depth (reflect padding,
so the border looks like image content) and the output cropped back.

- ``cae`` follows the paper's ref. [16] (Bergmann et al.'s SSIM autoencoder):
  stride-2 conv + BatchNorm + LeakyReLU(0.2) downsampling blocks, a 1x1
  bottleneck that squeezes the code to ``width`` channels, and a mirrored
  decoder of stride-2 transposed convolutions. No skip connections: all
  information passes the bottleneck, which is what keeps anomalies from being
  reconstructed.
- ``unet`` follows ref. [35]: the same encoder and decoder, with the encoder's
  feature map concatenated into the decoder at levels ``skip_from`` .. depth-1
  (level 0 is full resolution). Ronneberger's U-Net skips at every level, and
  so did this one until MTD showed why a reconstruction model must not: through
  the full-resolution skip it learns the identity, reconstructs defects as well
  as texture, and its residuals carry no signal (128 px MTD, 40 epochs: mean
  residual 2e-4, a tenth of the CAE's; pixel AUROC 49.6, chance). Skipping from
  1/4 resolution down (``skip_from=2``, the default) keeps the fine detail from
  the coarse levels' context but not a copy of the pixels: at 64 px and 12
  epochs, pixel AUROC 51.7 (skips at every level), 56.6 (from 1/2), 59.2 (from
  1/4), 58.0 (from 1/8), CAE 57.6 (docs/results.md).

Channels double per level and are capped at 8 * width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kistrules.errors import CheckpointError

__all__ = ["ModelConfig", "build_model"]

_KINDS = ("cae", "unet")


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a network: stored in every checkpoint's JSON."""

    kind: Literal["cae", "unet"] = "cae"
    width: int = 32
    depth: int = 4
    in_channels: int = 1
    # U-Net only: the finest encoder level whose features reach the decoder.
    skip_from: int = 2

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {', '.join(_KINDS)}")
        for name, low, high in (("width", 1, 4096), ("depth", 1, 10), ("in_channels", 1, 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(
                    f"model {name} must be an integer in [{low}, {high}]; got {value!r}"
                )
        skip_from = self.skip_from
        if isinstance(skip_from, bool) or not isinstance(skip_from, int) or skip_from < 0:
            raise ValueError(f"model skip_from must be an integer >= 0; got {skip_from!r}")
        if self.kind == "unet" and skip_from >= self.depth:
            # No level would keep a skip: that network is the CAE, so say so.
            raise ValueError(
                f"a U-Net of depth {self.depth} skips at levels below {self.depth}; "
                f"skip_from {skip_from} leaves none (use the cae, or a smaller skip_from)"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> ModelConfig:
        """Rebuild from a checkpoint's dict; anything unexpected is a CheckpointError."""
        if not isinstance(d, dict):
            raise CheckpointError(f"model config must be a JSON object; got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(
                f"unknown model config key(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(sorted(known))}"
            )
        try:
            # U-Net checkpoints written before skip_from existed skipped at every level.
            legacy = {"skip_from": 0} if d.get("kind") == "unet" else {}
            return cls(**{**legacy, **d})
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"bad model config: {err}") from err


def _channels(width: int, level: int) -> int:
    """Channels at a level: width * 2**level, capped at 8 * width."""
    return min(width * 2**level, 8 * width)


def _conv_bn_act(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Down(nn.Sequential):
    """Halve the resolution: stride-2 4x4 conv, then a 3x3 conv (both BN + LeakyReLU)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, inplace=True),
            _conv_bn_act(c_out, c_out),
        )


class _Up(nn.Module):
    """Double the resolution with a transposed conv; optionally fuse a skip connection."""

    def __init__(self, c_in: int, c_out: int, *, skip: bool) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.fuse = _conv_bn_act(2 * c_out if skip else c_out, c_out)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


class ReconstructionNet(nn.Module):
    """Encoder, bottleneck, decoder; a U-Net adds skips at levels ``config.skip_from`` and up."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w, depth = config.width, config.depth
        # skip_levels[i]: does the decoder at level i receive the encoder's level-i features?
        self.skip_levels = [config.kind == "unet" and i >= config.skip_from for i in range(depth)]
        self.stem = _conv_bn_act(config.in_channels, w)
        self.down = nn.ModuleList(_Down(_channels(w, i), _channels(w, i + 1)) for i in range(depth))
        deepest = _channels(w, depth)
        # The CAE's code: squeeze to `width` channels at 1/2**depth resolution.
        self.bottleneck = nn.Sequential(
            _conv_bn_act(deepest, w, kernel=1), _conv_bn_act(w, deepest, kernel=1)
        )
        self.up = nn.ModuleList(
            _Up(_channels(w, i + 1), _channels(w, i), skip=self.skip_levels[i])
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(w, config.in_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected (B, {self.config.in_channels}, H, W) input; got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        m = 2**self.config.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            # Reflect needs the pad smaller than the side; tiny images fall back to replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        feats = [self.stem(x)]
        for block in self.down:
            feats.append(block(feats[-1]))
        y = self.bottleneck(feats[-1])
        for level, block in zip(reversed(range(self.config.depth)), self.up, strict=True):
            y = block(y, feats[level] if self.skip_levels[level] else None)
        return torch.sigmoid(self.head(y))[..., :h, :w]


def build_model(config: ModelConfig) -> nn.Module:
    """Build G for a config; weights depend only on torch's RNG state (seed it first).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> g = build_model(ModelConfig(kind="unet", width=4, depth=3))
        >>> g(torch.rand(1, 1, 37, 53)).shape
        torch.Size([1, 1, 37, 53])
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig; got {type(config).__name__}")
    return ReconstructionNet(config)
