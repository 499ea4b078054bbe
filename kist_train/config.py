"""TrainConfig: every choice of a KIST run in one frozen, JSON-round-trippable record.

A run stores it in its marker (kist_train.rundir) and in every checkpoint's meta,
so that `predict`, `evaluate`, `audit` and `--resume` see exactly what the
training saw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from kistrules.errors import UsageError

MODELS = ("cae", "unet")
MAX_SIZE = 8192  # working size in pixels; larger images are refused anyway (data.MAX_PIXELS)
PUSH_MODES = ("paper", "margin")

# Fields that do not change the numbers a run produces: a resumed run may differ in them.
RUNTIME_FIELDS = frozenset({"out", "device", "workers", "threads", "checkpoint_minutes"})

# The JSON types of each field's annotation, checked when a config is read back from a run.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}

# Fields that decide the initial model (eq. 8 phase); `init_from` requires them equal.
INITIAL_FIELDS = (
    "model",
    "width",
    "depth",
    "skip_from",
    "size",
    "epochs",
    "batch_size",
    "lr",
    "seed",
)


@dataclass(frozen=True)
class TrainConfig:
    """One KIST (or baseline) training run.

    The defaults follow kist-method.md and the prototype findings: a bounded push
    ("margin", fixed from the initial model at mu_e + margin_sigmas * sigma_e),
    labels frozen after the first labelling, 8 anomalous images in each batch of 32.
    `baseline=True` is the equal-training control: the same phases, batches and
    learning-rate schedule with lambda = 0.
    """

    data: str = ""
    out: str = ""
    rulebook: str | None = None
    model: str = "cae"
    width: int = 32
    depth: int = 4
    # U-Net only: finest level with a skip (0 = full resolution, which learns the identity).
    skip_from: int = 2
    size: int = 128
    epochs: int = 50
    iterations: int = 5
    update_epochs: int = 4
    batch_size: int = 32
    anomalous_per_batch: int = 8
    lr: float = 1e-3
    update_lr: float = 3e-4
    lam: float = 1.0
    push: str = "margin"
    margin_sigmas: float = 3.0
    s: float = 0.3
    seed: int = 0
    device: str = "auto"
    baseline: bool = False
    freeze_labels: bool = True
    workers: int = 0
    # torch intra-op threads; 0 keeps torch's default. On a shared or oversubscribed CPU,
    # 1 can be several times faster than 2 (OpenMP threads spin waiting for each other).
    threads: int = 0
    # Minutes between partial checkpoints inside a phase (at an epoch boundary, under
    # RUN_DIR/partial): a killed run, which cannot save on the way out, loses at most
    # this much of the phase in flight. 0 saves only on SIGINT.
    checkpoint_minutes: float = 10.0
    # Run directory whose "initial" phase this run starts from instead of training its own
    # (the options in INITIAL_FIELDS must match): the baseline and KIST arms then share
    # one initial model, trained once, exactly as two uninterrupted runs would.
    init_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (field order preserved)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, dict):
            raise UsageError(f"training options must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown training option(s) {unknown[:5]}; valid: {sorted(known)}")
        for f in fields(cls):
            value = data.get(f.name)
            types = _JSON_TYPES[str(f.type)]
            if f.name in data and (
                not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
            ):
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise UsageError(f"training option {f.name!r} must be {f.type}, not {shown}")
        # U-Net runs saved before skip_from existed had skips at every level.
        legacy = {"skip_from": 0} if data.get("model") == "unet" else {}
        return cls(**{**legacy, **data})

    @property
    def effective_lam(self) -> float:
        """lambda of eq. 13 as trained: 0 for the baseline arm."""
        return 0.0 if self.baseline else self.lam

    def validate(self) -> TrainConfig:
        """Raise UsageError naming the first bad option; return self for chaining."""
        if not self.data:
            raise UsageError("--data is required")
        if not self.out:
            raise UsageError("--out is required")
        if self.model not in MODELS:
            raise UsageError(f"--model {self.model!r} is not one of {', '.join(MODELS)}")
        if self.push not in PUSH_MODES:
            raise UsageError(f"--push {self.push!r} is not one of {', '.join(PUSH_MODES)}")
        positive = {
            "width": self.width,
            "depth": self.depth,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "update_lr": self.update_lr,
            "s": self.s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value!r}")
        non_negative = {
            "epochs": self.epochs,
            "iterations": self.iterations,
            "update_epochs": self.update_epochs,
            "lam": self.lam,
            "margin_sigmas": self.margin_sigmas,
            "workers": self.workers,
            "threads": self.threads,
            "checkpoint_minutes": self.checkpoint_minutes,
            "anomalous_per_batch": self.anomalous_per_batch,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")
        if self.skip_from < 0:
            raise UsageError(f"--skip-from must be >= 0, got {self.skip_from!r}")
        if self.model == "unet" and self.skip_from >= self.depth:
            raise UsageError(
                f"--skip-from {self.skip_from} leaves a depth-{self.depth} U-Net no skip "
                f"(levels 0..{self.depth - 1}): lower it, or use --model cae"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{f.name.replace('_', '-')} must be a finite number")
        if self.size < 8:
            raise UsageError(f"--size {self.size} is too small (at least 8 px)")
        if self.size > MAX_SIZE:
            raise UsageError(f"--size {self.size} is too large (at most {MAX_SIZE} px)")
        if self.anomalous_per_batch >= self.batch_size:
            raise UsageError(
                f"--anomalous-per-batch {self.anomalous_per_batch} must be smaller than "
                f"--batch-size {self.batch_size}"
            )
        if self.s > 1:
            raise UsageError(f"--s {self.s!r} must be in (0, 1] (eq. 9 step in sigmas)")
        return self

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of fields that change results and differ between two configs."""
        return [
            f.name
            for f in fields(self)
            if f.name not in RUNTIME_FIELDS and getattr(self, f.name) != getattr(other, f.name)
        ]


def phase_names(iterations: int) -> list[str]:
    """The phases of a run in order: initial, labels_1, update_1, ..., update_I."""
    names = ["initial"]
    for i in range(1, iterations + 1):
        names += [f"labels_{i}", f"update_{i}"]
    return names
