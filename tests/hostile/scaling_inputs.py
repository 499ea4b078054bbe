"""Inputs and a peak-memory probe shared by tests/hostile/test_scaling.py and
benchmarks/bench_memory.py (not a test module itself).

`write_inputs` makes, for one side length, a seeded gray image with ten dark
discs, the discs' mask, a 30 % random mask (about side^2 / 20 regions) and a
float32 residual map that is above eq. 9's thresholds (mu 1e-4, sigma 1e-3)
only on the discs. `peak_rss_bytes` runs one `kistrules` command in a fresh
process and returns its peak resident memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

RESIDUAL_STATS = ("--mu", "0.0001", "--sigma", "0.001")  # eq. 9 thresholds 0.0013 .. 0.0031

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so the
# child of a large process (pytest) would report its parent's size.
_PEAK = """
import os, sys
from kistrules.cli import main
sys.argv = ["kistrules", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    if stop.code:
        raise
with open("/proc/self/status") as status, open(os.environ["PEAK_OUT"], "w") as out:
    out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def peak_rss_bytes(args: list[str], scratch: Path) -> int:
    """Peak RSS of `kistrules ARGS` in a fresh process (stdout discarded); fails on exit != 0."""
    out = Path(scratch) / "peak.txt"
    env = {**os.environ, "PEAK_OUT": str(out), "OMP_NUM_THREADS": "1"}
    # cwd: `python -c` puts the working directory first on sys.path.
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, cwd=scratch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:].decode(errors="replace")
    return int(out.read_text()) * 1024  # kB (KiB) in /proc


def write_inputs(root: Path, side: int, *, random_mask: bool = True) -> dict[str, Path]:
    """image, mask (discs), random (30 % mask) and residual files for one side length."""
    import tifffile
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(side)
    yy, xx = np.ogrid[:side, :side]
    discs = np.zeros((side, side), bool)
    for _ in range(10):
        cy, cx = rng.integers(0, side, 2)
        radius = int(rng.integers(side // 100 + 1, side // 20 + 2))
        discs |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    image = rng.normal(140, 8, (side, side)).clip(0, 255).astype(np.uint8)
    image[discs] //= 2
    residual = ((0.01 + 0.005 * rng.standard_normal((side, side))) ** 2).astype(np.float32)
    residual[discs] += 0.05
    paths = {
        "image": root / f"image{side}.png",
        "mask": root / f"discs{side}.png",
        "residual": root / f"residual{side}.tiff",
    }
    Image.fromarray(image).save(paths["image"])
    Image.fromarray(discs.astype(np.uint8) * 255).save(paths["mask"])
    tifffile.imwrite(paths["residual"], residual)
    if random_mask:
        paths["random"] = root / f"random{side}.png"
        speckle = rng.random((side, side)) < 0.3
        Image.fromarray(speckle.astype(np.uint8) * 255).save(paths["random"])
    return paths


def commands(paths: dict[str, Path], rulebook: Path, run: Path, scratch: Path) -> dict[str, list]:
    """The measured command lines, by name (explain prints JSON)."""
    image, rules = str(paths["image"]), str(rulebook)
    explain = ["explain", image, "-r", rules, "--format", "json"]
    found = {
        "predict": ["predict", "--model", str(run), "--input", image, "--out", str(scratch)],
        "explain --mask": [*explain, "--mask", str(paths["mask"])],
        "explain --residual": [*explain, "--residual", str(paths["residual"]), *RESIDUAL_STATS],
        "explain --model": [*explain, "--model", str(run)],
    }
    if "random" in paths:
        found["explain --mask (random)"] = [*explain, "--mask", str(paths["random"])]
    return found


def tiny_run(root: Path, rulebook: Path) -> Path:
    """A run directory of the training tests' tiny model (24 px working size), trained here."""
    from rich.console import Console

    from kist_train.engine import train
    from tests.train import synthetic as syn

    data = syn.make_dataset(Path(root) / "d", n_good=6, n_anomalous=2)
    config = syn.tiny_config((data, rulebook), Path(root) / "run", iterations=1)
    return train(config, progress=False, console=Console(quiet=True))
