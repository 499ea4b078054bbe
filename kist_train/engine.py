"""The KIST self-training loop (Algorithm 1), with checkpoints after every phase and resume.

Phases, in order: "initial" (eq. 8 on normal images, flips and small rotations),
then for i = 1..I: "labels_i" (mu_e, sigma_e over normal training pixels; eq. 9-12
through the compiled rulebook) and "update_i" (eq. 13). The baseline arm runs the
very same phases, batches and learning rates with lambda = 0. Every training phase
ends by re-estimating the BatchNorm statistics over augmented normal images
(kist_train.batchnorm), then mu_e, sigma_e; the weights are not touched there.

Reproducibility: normal-image batches and their augmentation come from one
generator, anomalous-image sampling from another, so both arms see identical
batches of normal images. Every phase ends with one checkpoint
(kist_train.checkpoints) holding all that `resume=True` needs to continue from
the last complete phase and end with the same weights as an uninterrupted run:
weights, optimiser state, generator states and pseudo-labels (tensors, one file),
statistics and the log so far (its sealed record, written last). A kill at any
moment leaves the previous checkpoint of a phase or the new one, never a mix.

The run directory (kist_train.rundir) is recognised by its marker, never by
anything else in it; `force=True` deletes only the files the tool writes; train()
holds the run's writer lock from start to end, so a second writer refuses.

SIGINT (Ctrl-C) does not raise mid-step: it sets a flag that the initial and update
loops read at each epoch end; the phase's state at that epoch boundary (weights,
optimiser, generators, loss sums) is saved under RUN_DIR/partial/ and `Interrupted`
is raised. `resume=True` continues that phase from the next epoch, bit-identically:
after an epoch nothing but those states decides the batches, augmentations and
anomalous draws. Further Ctrl-Cs change nothing (under torchrun a worker gets one from the
terminal and one from the agent). SIGTERM or SIGKILL stop at once; because a killed run
cannot save on its way out, the same partial checkpoint is also written every
`checkpoint_minutes` at an epoch end, so a kill loses at most that much of a phase.

The loop is a plain function over tensors that stay on the device. Under torchrun
(kist_train.distributed) every rank draws the same global batches and trains on its
shard through DDP; rank 0 alone writes. A 1-process run takes the original path.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kist_train.augment import augment_labelled, augment_normal
from kist_train.config import TrainConfig, phase_names
from kist_train.phase_store import PhaseState
from kist_train.progress import print_labels, print_phase, progress_bar
from kistrules.errors import CheckpointError, UsageError


class Interrupted(KeyboardInterrupt):
    """SIGINT stopped train() after the partial checkpoint of `phase` was written.

    A KeyboardInterrupt, so the CLI's Ctrl-C handling (one line, exit 130) applies.
    """

    def __init__(self, phase: str, epochs_done: int | None) -> None:
        super().__init__(phase, epochs_done)
        self.phase = phase
        self.epochs_done = epochs_done  # None: stopped at the end of the phase


class _Sigint:
    """While installed, SIGINT sets `requested` instead of raising KeyboardInterrupt.

    Repeated SIGINTs only set it again, so none can break into a checkpoint being
    written. Installed only from the main thread (signal.signal refuses other threads).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> _Sigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


@dataclass
class _Data:
    """Everything the loop reads, at the working size, on the device."""

    normal: torch.Tensor  # (Nn, 1, S, S) in [0, 1]
    anomalous: torch.Tensor  # (Na, 1, S, S)
    anomalous_sizes: list[tuple[int, int]]
    anomalous_truth: list[np.ndarray] | None  # original-size masks, when they exist


@dataclass(frozen=True)
class _Ddp:
    """DDP (kist_train.distributed): this rank's context and the module training steps
    call (the DDP wrapper of the model); a 1-process run has world_size 1 and net None."""

    ctx: Any
    net: torch.nn.Module | None

    @property
    def active(self) -> bool:
        return self.ctx.active


# ----------------------------------------------------------------- small pieces


def _epoch_batches(n: int, chunk: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(chunk)) if n else []


def _load_data(config: TrainConfig, device: torch.device, console) -> tuple[_Data, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from kist_train.data import load_dataset, original_sizes, working_tensor

    dataset = load_dataset(config.data, mask_threshold=config.mask_threshold)
    items = dataset.train_good + dataset.train_anomalous
    if config.workers > 0:
        # Decoding in threads trades memory (all originals at once) for speed.
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            list(pool.map(lambda item: item.gray(), items))
    sizes = original_sizes(dataset.train_anomalous)
    truth = None
    if dataset.anomalous_have_masks:
        truth = [item.mask() for item in dataset.train_anomalous]
    normal = working_tensor(dataset.train_good, config.size, device=device, release=True)
    anomalous = working_tensor(dataset.train_anomalous, config.size, device=device, release=True)
    data = _Data(normal, anomalous, sizes, truth)
    return data, dataset


def _load_scorer(config: TrainConfig, device: torch.device) -> tuple[Any, str | None]:
    """(compiled scorer or None, rulebook text or None)."""
    if config.rulebook is None:
        if not config.baseline:
            raise UsageError("--rulebook is required (or pass --baseline for the control arm)")
        return None, None
    from kistrules.api import load
    from kistrules.files import require_regular_file

    path = Path(config.rulebook)
    require_regular_file(path, "rulebook")  # missing, a folder or a FIFO: one line
    rulebook = load(path)
    from kistrules.compiler import compile_rulebook
    from kistrules.resolve import resolve

    return compile_rulebook(resolve(rulebook), device=device), path.read_text(encoding="utf-8")


# ----------------------------------------------------------------- phases


# Called by the loops after each epoch but the last with (epochs done, the loss figures
# so far); it saves a partial checkpoint and raises Interrupted when SIGINT was sent.
EpochEnd = Callable[[int, dict[str, Any]], None]


def _run_initial(
    config: TrainConfig,
    state: PhaseState,
    data: _Data,
    bar,
    ddp: _Ddp,
    *,
    epoch_end: EpochEnd | None = None,
    partial: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Eq. 8 on augmented normal images (from epoch `partial["epochs_done"]` on resume)."""
    from kist_train.distributed import initial_step_loss
    from kist_train.losses import reconstruction_loss

    for group in state.optimizer.param_groups:
        group["lr"] = config.lr
    n = data.normal.shape[0]
    per_epoch = math.ceil(n / config.batch_size)
    losses = list(partial["loss_per_epoch"]) if partial else []
    first = partial["epochs_done"] if partial else 0
    task = bar.add_task(
        "initial model",
        total=config.epochs * per_epoch,
        completed=first * per_epoch,
        loss=float("nan"),
    )
    state.model.train()
    for epoch in range(first, config.epochs):
        epoch_loss, batches = 0.0, 0
        for index in _epoch_batches(n, config.batch_size, state.normal_gen):
            x = augment_normal(data.normal[index.to(data.normal.device)], state.normal_gen)
            if ddp.net is not None:  # DDP: this rank's shard of the global batch
                loss, logged = initial_step_loss(ddp.ctx, ddp.net, x)
            else:
                loss = reconstruction_loss(state.model(x), x)
                logged = float(loss.detach())
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            epoch_loss += logged
            batches += 1
            bar.update(task, advance=1, loss=logged)
        losses.append(epoch_loss / max(batches, 1))
        if epoch_end is not None and epoch + 1 < config.epochs:
            epoch_end(epoch + 1, {"loss_per_epoch": losses})
    bar.remove_task(task)
    return {"epochs": config.epochs, "loss_per_epoch": losses}


def _run_labels(
    config: TrainConfig, state: PhaseState, data: _Data, scorer, iteration: int, ddp: _Ddp
) -> dict[str, Any]:
    """Residual statistics, then eq. 9-12 (or reuse the frozen labels)."""
    from kist_train.pseudo_labels import label_statistics, mask_scores, trusted_labels
    from kist_train.residuals import label_residuals

    batch = max(config.batch_size, 64)
    # Statistics of the current model, computed at the end of the previous phase.
    mu, sigma = state.stats["mu_e"], state.stats["sigma_e"]
    if iteration == 1:
        state.stats["initial_mu_e"] = mu
        state.stats["initial_sigma_e"] = sigma
        # Fixed from the initial model: a margin from a degrading model is a second feedback loop.
        state.stats["margin"] = mu + config.margin_sigmas * sigma
    entry: dict[str, Any] = {"mu_e": mu, "sigma_e": sigma, "margin": state.stats["margin"]}
    if scorer is None or data.anomalous.shape[0] == 0:
        entry["labelled"] = False
        return entry
    if iteration > 1 and config.freeze_labels and state.labels is not None:
        entry["labelled"] = False
        entry["frozen"] = True
        previous = next(
            (e for e in reversed(state.log) if e.get("labelled") and "labels" in e), None
        )
        if previous is not None:
            entry["labels"] = previous["labels"]
        return entry
    # Eq. 9's thresholds and the batching, the same with or without DDP.
    common = {"mu": mu, "sigma": sigma, "s": config.s, "batch_size": batch}
    if ddp.net is not None:  # DDP: label this rank's shard, gather masks and figures
        from kist_train.distributed import label_shards

        labels, entry["labels"] = label_shards(
            ddp.ctx,
            state.model,
            data.anomalous,
            scorer,
            sizes=data.anomalous_sizes,
            truth=data.anomalous_truth,
            **common,
        )
    else:
        labelling = label_residuals(
            state.model,
            data.anomalous,
            scorer,
            original_sizes=data.anomalous_sizes,
            **common,
        )
        labels = labelling.mask.to(data.anomalous.device)
        entry["labels"] = label_statistics(labelling, scorer, truth_masks=data.anomalous_truth)
    entry["labelled"] = True
    residuals, floor = None, None
    if config.label_min_sigmas:  # only pixels that themselves look anomalous
        # One more pass over the anomalous images, once per labelling: the DDP shards
        # return masks only, and one line serves both paths.
        from kist_train.residuals import residuals_of

        with torch.no_grad():
            residuals = residuals_of(state.model, data.anomalous, batch_size=batch)
        floor = mu + config.label_min_sigmas * sigma
    state.labels = trusted_labels(labels, config.label_erosion, residuals, floor)
    if config.label_erosion or floor is not None:  # what the push trusts
        pushed: dict[str, Any] = {"pixels": int(state.labels.sum())}
        if data.anomalous_truth is not None:
            pushed["precision"], pushed["recall"] = mask_scores(state.labels, data.anomalous_truth)
        entry["labels"]["interior"] = pushed
    return entry


def _run_update(
    config: TrainConfig,
    state: PhaseState,
    data: _Data,
    bar,
    iteration: int,
    ddp: _Ddp,
    *,
    epoch_end: EpochEnd | None = None,
    partial: dict[str, Any] | None = None,
):
    """Eq. 13: normal images plus pseudo-labelled anomalous images in each batch
    (from epoch `partial["epochs_done"]` on resume)."""
    from kist_train.distributed import update_step_loss
    from kist_train.losses import contrastive_reconstruction_loss

    for group in state.optimizer.param_groups:
        group["lr"] = config.update_lr
    n = data.normal.shape[0]
    n_anomalous = data.anomalous.shape[0]
    k = config.anomalous_per_batch if n_anomalous else 0
    # Normal batches have the same size in both arms, whatever the labels are.
    chunk = config.batch_size - k
    # Sampled from all anomalous images, whatever their labels: the batches (and hence
    # the BatchNorm statistics) are the same in both arms and with any rulebook; an
    # image with an empty label adds nothing to the push term.
    labels = state.labels
    size = data.normal.shape[-1]
    device = data.normal.device
    lam = config.effective_lam
    margin = state.stats.get("margin") if config.push == "margin" else None
    per_epoch = math.ceil(n / chunk)
    first = partial["epochs_done"] if partial else 0
    task = bar.add_task(
        f"update {iteration}",
        total=config.update_epochs * per_epoch,
        completed=first * per_epoch,
        loss=0.0,
    )
    state.model.train()
    sums = dict(partial["sums"]) if partial else {"total": 0.0, "normal": 0.0, "push": 0.0}
    steps = partial["steps"] if partial else 0
    for epoch in range(first, config.update_epochs):
        for index in _epoch_batches(n, chunk, state.normal_gen):
            x = augment_normal(data.normal[index.to(device)], state.normal_gen)
            pl = torch.zeros((x.shape[0], size, size), dtype=torch.bool, device=device)
            if k:
                if n_anomalous >= k:
                    pick = torch.randperm(n_anomalous, generator=state.anomalous_gen)[:k]
                else:
                    pick = torch.randint(n_anomalous, (k,), generator=state.anomalous_gen)
                pick = pick.to(device)
                la = (
                    labels[pick]
                    if labels is not None
                    else torch.zeros((k, size, size), dtype=torch.bool, device=device)
                )
                xa, la = augment_labelled(data.anomalous[pick], la, state.anomalous_gen)
                x = torch.cat([x, xa])
                pl = torch.cat([pl, la])
            is_normal = torch.zeros(x.shape[0], dtype=torch.bool, device=device)
            is_normal[: index.numel()] = True
            if ddp.net is not None:  # DDP: this rank's shard of the global batch
                loss, logged = update_step_loss(
                    ddp.ctx,
                    ddp.net,
                    x,
                    is_normal,
                    pl,
                    n_normal=index.numel(),
                    lam=lam,
                    push=config.push,
                    margin=margin,
                )
            else:
                parts = contrastive_reconstruction_loss(
                    state.model(x), x, is_normal, pl, lam=lam, push=config.push, margin=margin
                )
                loss = parts.total
                logged = [float(parts.total.detach()), float(parts.normal.detach())]
                logged.append(float(parts.push.detach()))
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            sums["total"] += logged[0]
            sums["normal"] += logged[1]
            sums["push"] += logged[2]
            steps += 1
            bar.update(task, advance=1, loss=logged[0])
        if epoch_end is not None and epoch + 1 < config.update_epochs:
            epoch_end(epoch + 1, {"sums": dict(sums), "steps": steps})
    bar.remove_task(task)
    return {
        "epochs": config.update_epochs,
        "lam": lam,
        "anomalous_labelled": 0 if labels is None else int(labels.flatten(1).any(1).sum()),
        **{f"loss_{name}": value / max(steps, 1) for name, value in sums.items()},
    }


def _agreed(ddp: _Ddp, device: torch.device, flags: list[bool]) -> list[bool]:
    """`flags`, each true when it is true on any rank (one all-reduce under DDP), so that
    every rank takes the same branch (a checkpoint has a barrier)."""
    if ddp.active:
        sums = ddp.ctx.all_sum([1.0 if f else 0.0 for f in flags], device)
        return [total > 0 for total in sums]
    return flags


# ----------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    console=None,
    progress: bool = True,
    stop_after: str | None = None,
) -> Path:
    """Run Algorithm 1 (or the equal-training baseline) and return the run directory.

    Args:
        config: the run; validated here.
        resume: continue the run in `config.out` from its last complete phase.
        force: replace an existing run in `config.out`.
        console: rich console for the progress bars and per-iteration lines.
        progress: show progress bars.
        stop_after: stop once this phase is checkpointed (split a long run into
            sessions; `resume=True` continues it).
    """
    from kist_train.distributed import setup

    config.validate()
    threads_before = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    # Under torchrun (WORLD_SIZE > 1) this joins the DDP job; otherwise a no-op context.
    ctx, device_name = setup(config.device, config.batch_size, config.anomalous_per_batch)
    try:
        with ExitStack() as held:  # the run's writer lock, taken by rundir.prepare
            return _train(
                config,
                resume=resume,
                force=force,
                console=console,
                progress=progress,
                stop_after=stop_after,
                ctx=ctx,
                device_name=device_name,
                held=held,
            )
    finally:
        torch.set_num_threads(threads_before)
        ctx.close()


def _train(
    config: TrainConfig, *, resume, force, console, progress, stop_after, ctx, device_name, held
) -> Path:
    from rich.console import Console

    from kist_train import distributed, rundir
    from kist_train import phase_store as store
    from kist_train.checkpoints import complete_phases, read_checkpoint, set_latest
    from kist_train.device import resolve_device
    from kist_train.models import ModelConfig, build_model

    if not ctx.is_main:  # rank 0 alone prints, logs and writes
        console, progress = Console(stderr=True, quiet=True), False
    console = console or Console(stderr=True, soft_wrap=True)
    device = resolve_device(device_name)
    phases = phase_names(config.iterations)
    if stop_after is not None and stop_after not in phases:
        raise UsageError(f"stop_after {stop_after!r} is not a phase of this run: {phases}")
    scorer, rulebook_text = _load_scorer(config, device)
    # Every training image is decoded here, before the run directory exists: a bad one
    # (unreadable, NaN, negative, ...) fails the command and leaves nothing behind.
    data, dataset = _load_data(config, device, console)
    if config.init_from is not None and not resume:
        rundir.check_init_from(config)
    run_dir = ctx.main_first(lambda: rundir.prepare(config, resume=resume, force=force, held=held))

    torch.manual_seed(config.seed)
    model_config = ModelConfig(
        kind=config.model, width=config.width, depth=config.depth, skip_from=config.skip_from
    )
    model = build_model(model_config).to(device)
    if config.channels_last:  # before DDP wraps it: weights, grads, Adam state all NHWC
        model = model.to(memory_format=torch.channels_last)
    # DDP: BatchNorm over all ranks, then the wrapper; the optimiser sees the converted model.
    net = distributed.wrap(ctx, model, device) if ctx.active else None
    ddp = _Ddp(ctx, net)
    state = PhaseState(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
        normal_gen=torch.Generator().manual_seed(config.seed),
        anomalous_gen=torch.Generator().manual_seed(config.seed + 1),
    )

    def save(phase: str, *, partial: dict[str, Any] | None = None) -> None:
        """The phase's checkpoint (under RUN_DIR/partial with its loop position)."""
        meta = store.phase_meta(
            config,
            state,
            phase=phase,
            model_config=model_config,
            rulebook_text=rulebook_text,
            n_normal=int(data.normal.shape[0]),
            n_anomalous=int(data.anomalous.shape[0]),
        )
        if partial is not None:
            meta["partial"] = partial
        store.save_phase(run_dir, phase, state, meta, partial=partial is not None, dist=ctx)

    def restore(checkpoint, phase: str, log_phases: list[str]) -> None:
        store.restore(
            checkpoint, phase, state, anomalous=data.anomalous, log_phases=log_phases, config=config
        )

    if not dataset.has_anomalous:
        console.print(
            f"note: {dataset.root / 'train' / 'anomalous'} is absent: no pseudo-labels, "
            "so KIST equals the baseline here"
        )

    start = 0
    partial: dict[str, Any] | None = None  # where an interrupted phase stopped
    if resume:
        done = set(complete_phases(run_dir))
        # Only a prefix of the phase order counts as done.
        prefix = 0
        while prefix < len(phases) and phases[prefix] in done:
            prefix += 1
        if prefix:
            last = read_checkpoint(run_dir, phases[prefix - 1])
            stored_sha = last.meta.get("rulebook_sha256")
            if stored_sha != store.rulebook_sha256(rulebook_text):
                raise CheckpointError(
                    f"{run_dir}: the rulebook changed since the run started; "
                    "train a new run (or --force)"
                )
            restore(last, phases[prefix - 1], phases[:prefix])
            if ctx.is_main:  # latest.json lags its record when a kill fell between the two
                set_latest(run_dir, phases[prefix - 1])
            console.print(f"resuming {run_dir} after phase {phases[prefix - 1]!r}")
        start = prefix
        found = None
        if start < len(phases) and not phases[start].startswith("labels_"):
            found = store.partial_of(run_dir, config, phases[start])
        if found is not None:
            # The interrupted phase at its epoch boundary; the log stays the prefix's.
            checkpoint, partial = found
            restore(checkpoint, phases[start], phases[:start])
            console.print(f"resuming phase {phases[start]!r} after epoch {partial['epochs_done']}")
        elif ctx.is_main:  # what a kill left of the partial of a phase completed since
            store.drop_partial(run_dir)
    if start == 0 and config.init_from is not None:
        store.restore_initial_of(config, state, anomalous=data.anomalous)
        if not state.log[0].get("batchnorm_recomputed"):
            # An initial model saved before BatchNorm statistics were recomputed at the
            # end of each phase: settle it now (its weights and generators are unchanged).
            state.log[0].update(_settle_model(config, state, data, ddp))
        state.log[0]["init_from"] = str(config.init_from)
        save("initial")
        console.print(f"initial model taken from {config.init_from}")
        start, partial = 1, None
        if stop_after == "initial":
            return run_dir

    with _Sigint() as sigint, progress_bar(console, progress) as bar:
        every = config.checkpoint_minutes * 60.0
        last_saved = time.monotonic()
        for phase in phases[start:]:
            began, began_cpu = time.perf_counter(), time.process_time()

            def epoch_end(epochs_done: int, figures: dict[str, Any], phase: str = phase) -> None:
                # Save the phase in flight on SIGINT (then stop) or when one is due.
                nonlocal last_saved
                due = every > 0 and time.monotonic() - last_saved >= every
                stop, due = _agreed(ddp, device, [sigint.requested, due])
                if not (stop or due):
                    return
                save(phase, partial={"epochs_done": epochs_done, **figures})
                last_saved = time.monotonic()
                if stop:
                    raise Interrupted(phase, epochs_done)

            resumed_at = partial["epochs_done"] if partial is not None else None
            if phase == "initial":
                entry = _run_initial(
                    config, state, data, bar, ddp, epoch_end=epoch_end, partial=partial
                )
            elif phase.startswith("labels_"):
                iteration = int(phase.split("_")[1])
                entry = _run_labels(config, state, data, scorer, iteration, ddp)
                print_labels(console, iteration, entry)
            else:
                iteration = int(phase.split("_")[1])
                entry = _run_update(
                    config, state, data, bar, iteration, ddp, epoch_end=epoch_end, partial=partial
                )
            partial = None
            if resumed_at is not None:
                entry["resumed_after_epoch"] = resumed_at
            if not phase.startswith("labels_"):
                # Where a phase's time goes: its loop, or settling the model (wall and CPU
                # seconds; CPU is the steadier figure on a shared machine).
                settling, settling_cpu = time.perf_counter(), time.process_time()
                entry.update(_settle_model(config, state, data, ddp))
                entry["settle_seconds"] = round(time.perf_counter() - settling, 3)
                entry["settle_cpu_seconds"] = round(time.process_time() - settling_cpu, 3)
            entry = {
                "phase": phase,
                "seconds": round(time.perf_counter() - began, 3),
                "cpu_seconds": round(time.process_time() - began_cpu, 3),
                **entry,
            }
            if ctx.active:
                # Every rank's weights, hashed: DDP must keep them identical.
                hashes = ctx.weights_agree(state.model)
                entry["weights_sha256_per_rank"] = hashes
                if len(set(hashes)) != 1:
                    raise CheckpointError(f"ranks disagree on the weights after phase {phase!r}")
            state.log.append(entry)
            save(phase)
            last_saved = time.monotonic()
            if not phase.startswith("labels_"):
                print_phase(console, entry)
            if stop_after == phase:
                break
            if phase != phases[-1] and _agreed(ddp, device, [sigint.requested])[0]:
                raise Interrupted(phase, None)  # this phase is complete on disk
    return run_dir


def _settle_model(config: TrainConfig, state: PhaseState, data: _Data, ddp: _Ddp) -> dict[str, Any]:
    """End of a training phase: precise BatchNorm statistics, then mu_e, sigma_e of the
    model as it will predict (eq. 9 of the next labelling; predict / audit / explain
    use those of the final model). Returns the figures for the phase's log entry."""
    from kist_train.batchnorm import recompute_batchnorm
    from kist_train.residuals import residual_statistics

    shard = ddp.ctx.shard if ddp.active else None  # global batches, each rank its part
    recompute_batchnorm(state.model, data.normal, batch_size=config.batch_size, shard=shard)
    batch = max(config.batch_size, 64)
    if ddp.active:  # float64 sums of each rank's shard, all-reduced
        mu, sigma = residual_statistics(
            state.model,
            data.normal[shard(data.normal.shape[0])],
            batch_size=batch,
            all_sum=lambda sums: ddp.ctx.all_sum(sums, data.normal.device),
        )
    else:
        mu, sigma = residual_statistics(state.model, data.normal, batch_size=batch)
    state.stats["mu_e"], state.stats["sigma_e"] = mu, sigma
    return {"batchnorm_recomputed": True, "mu_e": mu, "sigma_e": sigma}


__all__ = [
    "Interrupted",
    "augment_normal",
    "phase_names",
    "train",
]
