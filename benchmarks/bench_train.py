"""Benchmark: the engine's training loop against bare steps of the same model, and
the speed options of a bare step, each against the plain step in the same run.

Part 1, loop vs bare: `kist_train.engine.train()` on a seeded synthetic data set
(one initial phase, one labelling, one update phase: augmentation, batching, the
loss of eq. 8 / eq. 13, the progress bar, the log and a checkpoint per phase)
against bare steps of the same CAE (forward, MSE, backward, Adam step) on the
same images, with exactly the batch sizes of the loop's steps. The loop's time is
the phases' time from the run's log minus what the engine spends settling each
phase (precise BatchNorm statistics, mu_e / sigma_e: `settle_seconds`), which
is a fixed cost per phase, reported apart with the rest of train()'s time.

Part 2, options: one bare step of the plain model (float32, NCHW, torch's
threads) against the same step with channels_last, `torch.compile`, bf16
autocast, another thread count, and the training augmentation added (its cost).

The machine is shared: every figure is the median of interleaved repeats
(A B A B ...), so slow minutes hit all arms alike; CPU time (all threads of this
process) is given next to wall time. Run:

    .venv/bin/python benchmarks/bench_train.py                       # 128 px, both parts
    .venv/bin/python benchmarks/bench_train.py --size 256 --part options
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import cpu_name  # benchmarks/machine.py
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from kist_train.augment import augment_normal  # noqa: E402
from kist_train.config import TrainConfig  # noqa: E402
from kist_train.data import load_dataset, working_tensor  # noqa: E402
from kist_train.device import resolve_device  # noqa: E402
from kist_train.engine import train  # noqa: E402
from kist_train.losses import reconstruction_loss  # noqa: E402
from kist_train.models import ModelConfig, build_model  # noqa: E402
from kist_train.phase_store import read_log  # noqa: E402
from tests.train.synthetic import make_dataset, write_rulebook  # noqa: E402

OPTIONS = ("channels_last", "compile", "compile+channels_last", "bf16", "threads", "augment")


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Wall and CPU seconds of one block (CPU: every thread of this process)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        sync(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def bf16_native() -> str:
    """What the CPU offers for bf16 matrix work (Linux /proc/cpuinfo flags)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n")[0].split())
    except (OSError, IndexError):
        return "unknown"
    found = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    return ", ".join(found) if found else "none of avx512f, avx512_bf16, amx"


# ----------------------------------------------------------------- part 1: loop vs bare


def loop_config(args, data: Path, rulebook: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        out=str(out),
        rulebook=str(rulebook),
        model="cae",
        width=args.width,
        depth=args.depth,
        size=args.size,
        epochs=args.epochs,
        iterations=1,
        update_epochs=args.update_epochs,
        batch_size=args.batch,
        anomalous_per_batch=args.anomalous_per_batch,
        threads=args.threads,
        device=args.device,
        channels_last=args.channels_last,
        seed=0,
    )


def step_sizes(config: TrainConfig, n_normal: int) -> list[int]:
    """Images in each training step of the loop, in order (initial, then update)."""
    initial = [min(config.batch_size, n_normal - s) for s in range(0, n_normal, config.batch_size)]
    chunk = config.batch_size - config.anomalous_per_batch
    update = [
        min(chunk, n_normal - s) + config.anomalous_per_batch for s in range(0, n_normal, chunk)
    ]
    return initial * config.epochs + update * config.update_epochs


def bare_steps(config: TrainConfig, normal: torch.Tensor, sizes: list[int]) -> None:
    """Forward, MSE, backward and Adam step of the same CAE, batches of `sizes` images
    sliced in order from the resident working tensor: no augmentation, no logging."""
    torch.manual_seed(config.seed)
    model = build_model(ModelConfig(kind=config.model, width=config.width, depth=config.depth)).to(
        normal.device
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = normal.shape[0]
    start = 0
    for size in sizes:
        index = torch.arange(start, start + size) % n
        start = (start + size) % n
        x = normal[index.to(normal.device)]
        loss = reconstruction_loss(model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())


def loop_vs_bare(args, device: torch.device, workdir: Path) -> None:
    data = make_dataset(
        workdir / "data",
        n_good=args.images,
        n_anomalous=args.anomalous,
        n_test_good=1,
        n_test_defect=1,
    )
    rulebook = write_rulebook(workdir / "blob.rules")
    normal = working_tensor(load_dataset(data).train_good, args.size, device=device)
    probe = loop_config(args, data, rulebook, workdir / "probe")
    sizes = step_sizes(probe, normal.shape[0])
    images = sum(sizes)
    threads_before = torch.get_num_threads()
    print(
        f"loop vs bare: CAE width {args.width} depth {args.depth}, {args.size} px, batch "
        f"{args.batch}, {normal.shape[0]} normal + {args.anomalous} anomalous images, "
        f"{args.epochs} initial + {args.update_epochs} update epoch(s): {len(sizes)} steps, "
        f"{images} images; threads {args.threads or torch.get_num_threads()}; "
        f"channels_last {args.channels_last}; {args.repeats} interleaved repeats"
    )
    rows: dict[str, list[float]] = {}

    def keep(**figures: float) -> None:
        for key, value in figures.items():
            rows.setdefault(key, []).append(value)

    for repeat in range(args.repeats):
        if args.threads:
            torch.set_num_threads(args.threads)
        with Clock(device) as bare:
            bare_steps(probe, normal, sizes)
        torch.set_num_threads(threads_before)
        config = loop_config(args, data, rulebook, workdir / f"run{repeat}")
        with Clock(device) as call:
            run = train(
                config, progress=False, console=Console(stderr=True, quiet=not args.verbose)
            )
        phases = [e for e in read_log(run) if not e["phase"].startswith("labels_")]
        settle = sum(e["settle_seconds"] for e in phases)
        settle_cpu = sum(e["settle_cpu_seconds"] for e in phases)
        keep(
            bare=bare.wall,
            bare_cpu=bare.cpu,
            loop=sum(e["seconds"] for e in phases) - settle,
            loop_cpu=sum(e["cpu_seconds"] for e in phases) - settle_cpu,
            settle=settle,
            settle_cpu=settle_cpu,
            call=call.wall,
            call_cpu=call.cpu,
        )
        print(
            f"  repeat {repeat + 1}: bare {bare.wall:.1f} s (CPU {bare.cpu:.1f}); loop "
            f"{rows['loop'][-1]:.1f} s (CPU {rows['loop_cpu'][-1]:.1f}); settling "
            f"{settle:.1f} s (CPU {settle_cpu:.1f}); whole train() {call.wall:.1f} s "
            f"(CPU {call.cpu:.1f})",
            flush=True,
        )
    med = {key: statistics.median(values) for key, values in rows.items()}

    def ratio(clock: str) -> str:
        per_repeat = [
            b / lp for b, lp in zip(rows["bare" + clock], rows["loop" + clock], strict=True)
        ]
        return (
            f"{med['bare' + clock] / med['loop' + clock]:6.1%} "
            f"(per repeat {', '.join(f'{r:.1%}' for r in per_repeat)})"
        )

    print(
        f"  {'median of ' + str(args.repeats):18s} {'wall s':>8s} {'CPU s':>8s} {'img/s wall':>11s}"
        f" {'img/s CPU':>10s}"
    )
    for label, key in (("bare steps", "bare"), ("engine loop", "loop")):
        print(
            f"  {label:18s} {med[key]:8.2f} {med[key + '_cpu']:8.2f} {images / med[key]:11.2f} "
            f"{images / med[key + '_cpu']:10.2f}"
        )
    print(f"  loop / bare, wall: {ratio('')}")
    print(f"  loop / bare, CPU:  {ratio('_cpu')}")
    print(
        f"  settling {len(phases)} phases: {med['settle']:.2f} s (CPU {med['settle_cpu']:.2f}); "
        f"whole train(): {med['call']:.2f} s (CPU {med['call_cpu']:.2f}), "
        f"{images / med['call_cpu']:.2f} img/s CPU"
    )


# ----------------------------------------------------------------- part 2: options


def step_factory(args, device: torch.device, option: str) -> tuple[Callable[[], float], Callable]:
    """(one training step, context it runs in) for the plain model or one option."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=args.width, depth=args.depth)).to(device)
    x = torch.rand(
        (args.batch, 1, args.size, args.size), generator=torch.Generator().manual_seed(1)
    )
    x = x.to(device)
    if "channels_last" in option:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward: Callable = model
    if option.startswith("compile"):
        forward = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if option == "bf16"
        else contextlib.nullcontext
    )

    def step() -> float:
        batch = augment_normal(x, gen) if option == "augment" else x
        with autocast():
            recon = forward(batch)
        loss = reconstruction_loss(recon.float(), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    threads = args.option_threads if option == "threads" else torch.get_num_threads()
    return step, threads


def options(args, device: torch.device) -> None:
    chosen = [o for o in args.options.split(",") if o]
    unknown = sorted(set(chosen) - set(OPTIONS))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; known: {', '.join(OPTIONS)}")
    variants = ["plain", *chosen]
    default_threads = torch.get_num_threads()
    print(
        f"options: one bare step, CAE width {args.width} depth {args.depth}, {args.size} px, "
        f"batch {args.batch}, {device}; plain = float32, NCHW, {default_threads} thread(s); "
        f"'threads' = {args.option_threads}; bf16 support of this CPU: {bf16_native()}"
    )
    steps = {}
    for name in variants:
        step, threads = step_factory(args, device, name)
        torch.set_num_threads(threads)
        with Clock(device) as warm:
            losses = [step() for _ in range(args.warmup)]
        torch.set_num_threads(default_threads)
        steps[name] = (step, threads)
        print(
            f"  warm-up {name}: {warm.wall:.1f} s for {args.warmup} steps, losses "
            + ", ".join(f"{v:.7f}" for v in losses),
            flush=True,
        )
    times = {name: ([], []) for name in variants}
    for _ in range(args.option_repeats):
        for name in variants:
            step, threads = steps[name]
            torch.set_num_threads(threads)
            with Clock(device) as clock:
                step()
            torch.set_num_threads(default_threads)
            times[name][0].append(clock.wall)
            times[name][1].append(clock.cpu)
    plain_wall = statistics.median(times["plain"][0])
    plain_cpu = statistics.median(times["plain"][1])
    print(
        f"  {'variant':24s} {'wall s':>8s} {'CPU s':>8s} {'img/s':>7s} {'x plain wall':>13s} "
        f"{'x plain CPU':>12s}"
    )
    for name in variants:
        wall = statistics.median(times[name][0])
        cpu = statistics.median(times[name][1])
        print(
            f"  {name:24s} {wall:8.3f} {cpu:8.3f} {args.batch / wall:7.2f} "
            f"{plain_wall / wall:13.2f} {plain_cpu / cpu:12.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("both", "loop", "options"), default="both")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    # part 1
    parser.add_argument("--images", type=int, default=64, help="normal training images")
    parser.add_argument("--anomalous", type=int, default=8)
    parser.add_argument("--anomalous-per-batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--update-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true", help="both arms channels_last")
    parser.add_argument("--verbose", action="store_true", help="show train()'s output")
    # part 2
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--option-repeats", type=int, default=7)
    parser.add_argument(
        "--option-threads",
        type=int,
        default=0,
        help="threads of the 'threads' option (0: 2 when plain has 1, else 1)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.option_threads:  # compare against the other of one and two threads
        args.option_threads = 2 if torch.get_num_threads() == 1 else 1
    print(
        f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()} kernels), "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    )
    if args.part in ("both", "loop"):
        with tempfile.TemporaryDirectory() as workdir:
            loop_vs_bare(args, device, Path(workdir))
    if args.part in ("both", "options"):
        options(args, device)


if __name__ == "__main__":
    main()
