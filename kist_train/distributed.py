"""DDP for the KIST engine: torch.distributed set-up, sharding, reductions, a global BatchNorm.

The engine keeps one code path: every rank draws the same random numbers from the
same CPU generators (batch order, augmentation, anomalous picks) and so holds the
same *global* batch; `Distributed.shard` hands each rank a disjoint, contiguous
slice of it (the distributed sampler). Gradients are averaged by
DistributedDataParallel; the losses are weighted by each rank's share of the global
normalisers (pixels, labelled pixels), so the averaged gradient is that of the
global batch even when the last batch of an epoch splits unevenly. BatchNorm is
replaced by `GlobalBatchNorm2d` (batch statistics over all ranks) when
world_size > 1: torch's SyncBatchNorm refuses CPU tensors, and without it each rank
would normalise with its own shard's statistics and drift from a 1-process run.

A 1-process run never enters this module's collective paths: `Distributed.active`
is False and the engine runs its original code, bit for bit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kistrules.errors import CheckpointError, DataError, KistrulesError, UsageError

__all__ = [
    "Distributed",
    "GlobalBatchNorm2d",
    "check_divisible",
    "convert_batchnorm",
    "setup",
    "torchrun_command",
]

T = TypeVar("T")
_ERRORS: dict[str, type[KistrulesError]] = {
    cls.__name__: cls for cls in (KistrulesError, UsageError, CheckpointError, DataError)
}


@dataclass
class Distributed:
    """This process's place in the job; world_size 1 means a plain 1-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    bn_group: Any = None  # a separate gloo/nccl group for BatchNorm statistics
    owns_group: bool = False  # we initialised the default group, so we destroy it

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n items (sizes differ by at most 1)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def shard_sizes(self, n: int) -> list[int]:
        base, extra = divmod(n, self.world_size)
        return [base + (1 if r < extra else 0) for r in range(self.world_size)]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Sum float64 values over ranks (mu_e / sigma_e sums, logged losses)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        if self.active:
            dist.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run fn on rank 0 alone (e.g. preparing the run dir); every rank gets its
        result or raises its KistrulesError, so no rank waits forever on a failed one."""
        if not self.active:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except KistrulesError as err:
                box[0] = ("error", type(err).__name__, str(err))
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if box[0][0] == "error":
            raise _ERRORS.get(box[0][1], KistrulesError)(box[0][2])
        return box[0][1]

    def weights_agree(self, model: nn.Module) -> list[str]:
        """sha256 of this rank's weights, gathered from every rank (rank order)."""
        digest = weights_sha256(model)
        if not self.active:
            return [digest]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, digest)
        return out

    def close(self) -> None:
        if self.active and self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def weights_sha256(model: nn.Module) -> str:
    """A fingerprint of a model's state (parameters and buffers, in key order)."""
    sha = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        sha.update(key.encode("utf-8"))
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def check_divisible(batch_size: int, anomalous_per_batch: int, world_size: int) -> None:
    """Per-rank batch = batch_size / world_size (and so for the anomalous images)."""
    if batch_size % world_size:
        raise UsageError(
            f"--batch-size {batch_size} must be divisible by the {world_size} processes"
        )
    if anomalous_per_batch % world_size:
        raise UsageError(
            f"--anomalous-per-batch {anomalous_per_batch} must be divisible by the "
            f"{world_size} processes"
        )


def setup(device_name: str, batch_size: int, anomalous_per_batch: int) -> tuple[Distributed, str]:
    """Join the torchrun job named by RANK / WORLD_SIZE / LOCAL_RANK (MASTER_ADDR/PORT).

    Returns the context and the device name to use: cuda:LOCAL_RANK (nccl) when the
    run is on GPUs, the CPU (gloo) otherwise. Without WORLD_SIZE > 1: 1-process run.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), device_name
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    check_divisible(batch_size, anomalous_per_batch, world_size)
    want_cuda = device_name in ("auto", "cuda") or device_name.startswith("cuda")
    use_cuda = want_cuda and torch.cuda.is_available() and device_name != "cpu"
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device_name!r}: CUDA is not available on this machine")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    bn_group = dist.new_group(backend=backend)
    return Distributed(rank, world_size, local_rank, bn_group, owns), device_name


# ----------------------------------------------------------------- BatchNorm over ranks


class _AllSum(torch.autograd.Function):
    """all_reduce(SUM) whose gradient is the all_reduce(SUM) of the upstream gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks.

    Sums, sums of squares and counts are all-reduced with autograd-aware
    collectives (float64), so forward and backward equal BatchNorm on the
    concatenated batch up to float error, on CPU (gloo) as on GPU. Same state_dict
    keys as nn.BatchNorm2d: checkpoints load into the plain model.
    """

    group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        dims = (0, 2, 3)
        local = torch.cat(
            [
                x.double().sum(dims),
                (x.double() ** 2).sum(dims),
                x.new_full((1,), x.numel() // x.shape[1], dtype=torch.float64),
            ]
        )
        total = _AllSum.apply(local, self.group)
        c = x.shape[1]
        count = total[2 * c]
        mean = total[:c] / count
        var = (total[c : 2 * c] / count - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum None: the cumulative average, as nn.BatchNorm2d (and
                # torch's update_bn, kist_train.batchnorm) define it.
                momentum = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(x.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(x.dtype))
        shape = (1, c, 1, 1)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module, group: Any) -> nn.Module:
    """Replace every BatchNorm2d by a GlobalBatchNorm2d sharing its parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm2d):
            new = GlobalBatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.group = group
            new.to(next(iter(child.state_dict().values())).device)
            setattr(module, name, new)
        else:
            convert_batchnorm(child, group)
    return module


def wrap(ctx: Distributed, model: nn.Module, device: torch.device) -> nn.Module:
    """The module that training steps call: DDP over a global-BatchNorm model."""
    from torch.nn.parallel import DistributedDataParallel

    convert_batchnorm(model, ctx.bn_group)
    ids = [device.index] if device.type == "cuda" else None
    # Running statistics are identical on every rank (global BN): no buffer broadcast
    # before each forward (torch >= 2.12 renamed the option).
    import inspect

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    option = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=ids, **{option: False})


# ----------------------------------------------------------------- losses of a shard


def initial_step_loss(ctx: Distributed, net: nn.Module, x: torch.Tensor):
    """Eq. 8 on this rank's shard, weighted so DDP's mean gradient is the global batch's.

    Returns (loss to backpropagate, global eq. 8 loss for the log).
    """
    part = x[ctx.shard(x.shape[0])]
    local = ((net(part) - part) ** 2).sum() / x.numel()
    logged = ctx.all_sum([float(local.detach())], x.device)[0]  # nccl: a device tensor
    return local * ctx.world_size, logged


def update_step_loss(
    ctx: Distributed,
    net: nn.Module,
    x: torch.Tensor,
    is_normal: torch.Tensor,
    pseudo_labels: torch.Tensor,
    *,
    n_normal: int,
    lam: float,
    push: str,
    margin: float | None,
):
    """Eq. 13 on this rank's shard of the normal and of the anomalous images.

    Every rank holds the whole global batch (cheap: indices and masks), so the
    global normalisers (normal pixels, labelled pixels) need no communication.
    Returns (loss to backpropagate, [total, normal, push] of the global batch).
    """
    from kist_train.losses import contrastive_reconstruction_loss

    n = x.shape[0]
    normal_part = ctx.shard(n_normal)
    anomalous_part = ctx.shard(n - n_normal)
    index = torch.cat(
        [
            torch.arange(n_normal)[normal_part],
            n_normal + torch.arange(n - n_normal)[anomalous_part],
        ]
    ).to(x.device)
    h, w = x.shape[-2:]
    labelled = pseudo_labels & ~is_normal.view(-1, 1, 1)
    global_normal = max(int(is_normal.sum()) * h * w, 1)
    global_labelled = max(int(labelled.sum()), 1)
    xs, normal_s, pl_s = x[index], is_normal[index], pseudo_labels[index]
    parts = contrastive_reconstruction_loss(
        net(xs), xs, normal_s, pl_s, lam=lam, push=push, margin=margin
    )
    local_normal = int(normal_s.sum()) * h * w
    local_labelled = int(labelled[index].sum())
    normal = parts.normal * (local_normal / global_normal)
    push_term = parts.push * (local_labelled / global_labelled)
    normal_sum, push_sum = ctx.all_sum(
        [float(normal.detach()), float(push_term.detach())], x.device
    )
    return (normal + push_term) * ctx.world_size, [normal_sum + push_sum, normal_sum, push_sum]


# ----------------------------------------------------------------- statistics and labels


def label_shards(
    ctx: Distributed,
    model: nn.Module,
    anomalous: torch.Tensor,
    scorer: Any,
    *,
    mu: float,
    sigma: float,
    s: float,
    sizes: Sequence[tuple[int, int]],
    truth: Sequence[np.ndarray] | None,
    batch_size: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Eq. 9-12 on this rank's shard of the anomalous images; masks and figures gathered.

    Returns the (Na, S, S) bool labels of all images and the label_statistics dict,
    identical on every rank.
    """
    from kist_train.pseudo_labels import (
        confusion,
        label_statistics,
        precision_recall,
        upsample_mask,
    )
    from kist_train.residuals import label_residuals

    n = anomalous.shape[0]
    part = ctx.shard(n)
    images = anomalous[part]
    if images.shape[0]:
        labels = label_residuals(
            model,
            images,
            scorer,
            mu=mu,
            sigma=sigma,
            s=s,
            original_sizes=list(sizes[part]),
            batch_size=batch_size,
        )
        mask = labels.mask.to(torch.uint8)
        stats = label_statistics(labels, scorer)
    else:
        mask = torch.zeros((0, *anomalous.shape[-2:]), dtype=torch.uint8, device=anomalous.device)
        stats = None
    # Pad to the largest shard: all_gather needs equal shapes.
    counts = ctx.shard_sizes(n)
    padded = mask.new_zeros((max(counts), *anomalous.shape[-2:]))
    padded[: mask.shape[0]] = mask
    gathered = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    full = torch.cat([g[:c] for g, c in zip(gathered, counts, strict=True)]).to(torch.bool)
    every: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(every, stats)
    merged = _merge_statistics([e for e in every if e is not None])
    if truth is not None:
        tp = fp = fn = 0
        for index, mask_truth in enumerate(truth):
            a, b, c = confusion(upsample_mask(full[index], mask_truth.shape), mask_truth)
            tp, fp, fn = tp + a, fp + b, fn + c
        merged["precision"], merged["recall"] = precision_recall(tp, fp, fn)
    return full, merged


def _merge_statistics(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """label_statistics of the shards -> those of all images (counts add up)."""
    merged = dict(parts[0])
    for key in ("images", "images_labelled", "pixels_labelled", "regions", "regions_fired"):
        merged[key] = sum(part[key] for part in parts)
    for key in ("fired_per_rule", "fired_per_class"):  # per class: a class-aware rulebook
        if key in parts[0]:
            merged[key] = {name: sum(part[key][name] for part in parts) for name in parts[0][key]}
    return merged


# ----------------------------------------------------------------- launching


def torchrun_command(options: list[str], nproc: int) -> list[str]:
    """The command that runs `kist_train train OPTIONS` in nproc processes on this machine."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "kist_train",
        "train",
        *options,
    ]
