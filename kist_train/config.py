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
# The --device of every command (kist_train.device.resolve_device parses it).
DEVICE_HELP = "auto (CUDA when available) | cpu | cuda | cuda:N"
# The --mask-threshold of every command that reads masks (kist_train.data.read_mask):
# a pixel is defect when it reaches this fraction of its mask's maximum. Half keeps
# the anti-aliased rim of a drawn mask (1-30 px specks of low values) out of the defect.
MASK_THRESHOLD = 0.5
MASK_THRESHOLD_HELP = (
    "A mask pixel is defect when it reaches this fraction of the mask's maximum "
    "(0 < f <= 1; an all-zero mask stays empty)."
)

# Fields that do not change the numbers a run produces: a resumed run may differ in them.
# (`device` and `channels_last` change float rounding, not what is computed.)
RUNTIME_FIELDS = frozenset(
    {"out", "device", "workers", "threads", "channels_last", "checkpoint_minutes"}
)

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


def _option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    off: str | None = None,
    required: bool = False,
    path: bool = False,
) -> Any:
    """A field that is also an option of `kistrules train` (see `option_flag`, `to_argv`).

    flag: the option's name when it is not --field-name; aliases: more names;
    off: the flag that sets a bool option to False; required: the command needs it
    (the dataclass default "" is then only for a config built in code); path: the
    command takes a path (normalised, as pathlib does).
    """
    metadata = {"help": help, "flag": flag, "aliases": aliases, "off": off}
    return dataclasses.field(
        default=default, metadata={**metadata, "required": required, "path": path}
    )


def option_flag(field: dataclasses.Field) -> str:
    """The `kistrules train` flag of a TrainConfig field (--field-name unless it says)."""
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """One KIST (or baseline) training run.

    Every field is an option of `kistrules train` (kistrules.commands.train builds
    them from the metadata that `_option` gives each field: help, flag, default).
    The defaults follow the method's description and the prototype findings: a bounded push
    ("margin", fixed from the initial model at mu_e + margin_sigmas * sigma_e),
    labels frozen after the first labelling, 8 anomalous images in each batch of 32.
    `baseline=True` is the equal-training control: the same phases, batches and
    learning-rate schedule with lambda = 0.
    """

    data: str = _option("", "Data set root (train/good, ...).", required=True, path=True)
    out: str = _option("", "Run directory to create.", required=True, path=True)
    rulebook: str | None = _option(None, ".rules file (not needed with --baseline).", path=True)
    model: str = _option("cae", "cae | unet")
    width: int = _option(32, "Channels of the first level.")
    depth: int = _option(4, "Down-sampling levels.")
    skip_from: int = _option(
        2, "U-Net: finest level with a skip (0 = full resolution; copies input)."
    )
    size: int = _option(128, "Square working size in pixels.")
    epochs: int = _option(50, "Epochs of the initial model (eq. 8).")
    iterations: int = _option(5, "Self-training iterations I.")
    update_epochs: int = _option(4, "Epochs per update phase.")
    batch_size: int = _option(32, "Images per batch.")
    anomalous_per_batch: int = _option(8, "Anomalous images in each update batch.")
    lr: float = _option(1e-3, "Learning rate of the initial phase.")
    update_lr: float = _option(3e-4, "Learning rate of the update phases.")
    lam: float = _option(1.0, "lambda of eq. 13.")
    push: str = _option("margin", "paper (eq. 13 as printed) | margin (bounded)")
    margin_sigmas: float = _option(3.0, "Margin = mu_e + this * sigma_e of the initial model.")
    # A residual region spills a pixel or two past its defect (the reconstruction blurs it),
    # so a labelled region's rim is mostly normal pixels; pushing them teaches the model to
    # reconstruct a defect's surroundings badly (docs/demo.md). 0 trusts them all.
    label_erosion: int = _option(
        0, "Push only pseudo-labelled pixels at least this many px inside their region."
    )
    # Inside a labelled region the defect is where the residual is high; the spill past
    # it looks normal to the model (docs/demo.md: on 31 demo seeds, 5 made KIST lead on
    # every one). 0 trusts every interior pixel.
    label_min_sigmas: float = _option(
        0.0, "Push only labelled pixels whose own residual is >= mu_e + this * sigma_e."
    )
    # --s is a prefix of torchrun's own options (its argparse would take it): a relaunch
    # passes --threshold-step.
    s: float = _option(
        0.3, "Threshold step of eq. 9, in sigmas.", flag="--threshold-step", aliases=("--s",)
    )
    seed: int = _option(0, "Random seed.")
    device: str = _option("auto", DEVICE_HELP)
    baseline: bool = _option(False, "Equal-training control: lambda = 0.")
    freeze_labels: bool = _option(
        True,
        "Keep the first pseudo-labels, or relabel every iteration.",
        off="--recompute-labels",
    )
    workers: int = _option(0, "Threads decoding images.")
    # torch intra-op threads; 0 keeps torch's default. On a shared or oversubscribed CPU,
    # 1 can be several times faster than 2 (OpenMP threads spin waiting for each other).
    threads: int = _option(0, "torch CPU threads (0 = torch default; 1 on a busy machine).")
    # The model's weights and activations in NHWC order: on a CPU oneDNN then runs its
    # convolutions without reordering each tensor (1.3x per training step at 128 px,
    # docs/performance.md); on CUDA the same call selects cuDNN's NHWC kernels.
    channels_last: bool = _option(
        False, "Train with channels_last tensors (faster on CPU; equal up to rounding)."
    )
    # Minutes between partial checkpoints inside a phase (at an epoch boundary, under
    # RUN_DIR/partial): a killed run, which cannot save on the way out, loses at most
    # this much of the phase in flight. 0 saves only on SIGINT.
    checkpoint_minutes: float = _option(
        10.0, "Save the phase in flight this often (at an epoch end; 0 = only on Ctrl-C)."
    )
    # Run directory whose "initial" phase this run starts from instead of training its own
    # (the options in INITIAL_FIELDS must match): the baseline and KIST arms then share
    # one initial model, trained once, exactly as two uninterrupted runs would.
    init_from: str | None = _option(
        None,
        "Start from the initial model of this run (same model, size, epochs, seed).",
        path=True,
    )
    # Binarises the masks of train/anomalous, which only grade the logged pseudo-labels.
    mask_threshold: float = _option(MASK_THRESHOLD, MASK_THRESHOLD_HELP)

    def to_argv(self) -> list[str]:
        """The `kistrules train` options that give this config (the torchrun relaunch)."""
        argv: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                argv += [option_flag(f)] if value else [f.metadata["off"]] * bool(f.metadata["off"])
            elif value is not None:
                argv += [option_flag(f), str(value)]
        return argv

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
            "label_erosion": self.label_erosion,
            "label_min_sigmas": self.label_min_sigmas,
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
        check_mask_threshold(self.mask_threshold)
        return self

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of fields that change results and differ between two configs."""
        return [
            f.name
            for f in fields(self)
            if f.name not in RUNTIME_FIELDS and getattr(self, f.name) != getattr(other, f.name)
        ]


def check_mask_threshold(value: float) -> float:
    """`value` if it is a fraction in (0, 1]; else a UsageError naming --mask-threshold."""
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise UsageError(
            f"--mask-threshold must be in (0, 1] (a fraction of the mask's maximum), got {value!r}"
        )
    return value


def phase_names(iterations: int) -> list[str]:
    """The phases of a run in order: initial, labels_1, update_1, ..., update_I."""
    names = ["initial"]
    for i in range(1, iterations + 1):
        names += [f"labels_{i}", f"update_{i}"]
    return names
