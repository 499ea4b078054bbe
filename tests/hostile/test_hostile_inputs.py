"""Hostile inputs through the CLI: one table, one line of error each, nothing half-written.

Every row of `CASES` is one hostile input (issue 6, part 3). A row says how to
build the input in a fresh directory, which `kistrules` command to run on it,
the exit code expected and fragments that the single line on stderr must hold
(normally the offending file's name and what is wrong). `test_hostile_input`
then checks, for every row:

- the exit code, and no "Traceback" anywhere in the output;
- for a non-zero exit: exactly one non-empty line on stderr, holding "error"
  and every fragment, and naming no hidden temporary file;
- the row's `out` path (relative to the case directory) is absent or holds no
  file, and no temporary file (`*.tmp`, `.NAME.*.png`) is left anywhere;
- the row's own `check`, if any (e.g. "the previous file is intact").

Some hostile inputs are legitimate and must *work* (exit 0): a 1 x 1 image, a
mask with values other than 0/255 (nonzero = defect, as the data layout says),
10,000 redundant parentheses, symlink loops in a data folder (never followed).

To add a case: write a `build(tmp, world, monkeypatch) -> list[str]` function
that creates the input under `tmp` (the shared tiny data set, rulebook and
trained run are in `world`; copy what you modify) and returns the command line
arguments, then append a `Case(...)` row to `CASES`. `monkeypatch` lets a case
simulate what a test cannot cause for real (a full disk). Read-only outputs are
made with `make_read_only`: chmod, plus `chattr +i` when the tests run as root
(root ignores file modes); it is undone after the case.

Decisions documented here (and in the code that enforces them):
- images, masks and residual maps above `kist_train.data.MAX_PIXELS`
  (8192 x 8192) are refused from their header, before any pixel is decoded;
- rulebooks above `kistrules.api.MAX_RULEBOOK_BYTES` (1 MiB) are refused
  unread (exit 2);
- conditions nest at most `kistrules.parser.MAX_NESTING` (100) operators deep
  (E001); parentheses around a single condition add no depth;
- pixels that cannot be gray values are refused by `kist_train.decoding`, for
  every command: NaN or infinite samples (images, masks, residual maps),
  negative integers, floats outside 0-255, several pages in one file.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from typer.testing import CliRunner

from kistrules.cli import app
from tests.train import synthetic as syn

RUNNER = CliRunner()
KISTRULES = Path(sys.executable).with_name("kistrules")
TINY = [
    "--size", "16", "--width", "4", "--depth", "2", "--epochs", "1", "--iterations", "1",
    "--update-epochs", "1", "--batch-size", "4", "--anomalous-per-batch", "2",
    "--device", "cpu", "--no-progress", "--threads", "1",
]  # fmt: skip


# --- the shared world: a tiny data set, rulebook and trained run ------------------------------


@dataclass(frozen=True)
class World:
    data: Path
    rules: Path
    run: Path
    image: Path  # a test image with a dark blob
    mask: Path  # its 0/255 ground-truth mask


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    data = syn.make_dataset(root / "d", n_good=4, n_anomalous=2, n_test_good=1, n_test_defect=1)
    rules = syn.write_rulebook(root / "b.rules")
    result = RUNNER.invoke(
        app,
        ["train", "--data", str(data), "--rulebook", str(rules), "--out", str(root / "run"), *TINY],
    )
    assert result.exit_code == 0, result.output
    image = next((data / "test" / "blob").glob("*.png"))
    mask = data / "ground_truth" / "blob" / f"{image.stem}_mask.png"
    yield World(data, rules, root / "run", image, mask)
    torch.set_num_threads(before)


# --- input builders ---------------------------------------------------------------------------


def write_huge_png(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A valid all-black 1-bit PNG of width x height, streamed: ~50 kB on disk, no big array."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def write_huge_tiff(path: Path, side: int = 20_000, tile: int = 1024) -> Path:
    """A valid all-zero uint8 tiled TIFF (zlib), ~1 MB on disk, written one tile at a time."""
    zero = np.zeros((tile, tile), np.uint8)
    count = (-(-side // tile)) ** 2  # ceil(side / tile) tiles a side
    tifffile.imwrite(
        path,
        (zero for _ in range(count)),
        shape=(side, side),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="zlib",
    )
    return path


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def _cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _copy_run(world: World, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(world.run, run)
    return run


def _latest_phase(run: Path) -> str:
    return json.loads((run / "checkpoints" / "latest.json").read_text())["phase"]


def _forbid_unpickling(monkeypatch) -> None:
    """Any unpickling attempt fails the test (it would show as a second stderr line)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _explain(world: World, image: Path | str, *extra: str) -> list[str]:
    return ["explain", str(image), "-r", str(world.rules), *extra]


def _predict(run: Path | str, image: Path | str, out: Path) -> list[str]:
    return ["predict", "--model", str(run), "--input", str(image), "--out", str(out)]


# images


def b_truncated_png(tmp, world, mp):
    bad = _cut_in_half(world.image, tmp / "cut.png")
    return _explain(world, bad, "--mask", str(world.mask))


def b_truncated_jpg(tmp, world, mp):
    _png(tmp / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64)))
    Image.open(tmp / "full.png").save(tmp / "full.jpg")
    bad = _cut_in_half(tmp / "full.jpg", tmp / "cut.jpg")
    return _predict(world.run, bad, tmp / "out")


def b_random_bytes_png(tmp, world, mp):
    data = tmp / "d"
    shutil.copytree(world.data, data)
    (data / "train" / "good" / "noise.png").write_bytes(np.random.default_rng(1).bytes(4096))
    return ["train", "--data", str(data), "--rulebook", str(world.rules), "--out", str(tmp / "out")]


def b_random_bytes_mask(tmp, world, mp):
    (tmp / "noise_mask.png").write_bytes(np.random.default_rng(2).bytes(512))
    return _explain(world, world.image, "--mask", str(tmp / "noise_mask.png"))


def b_one_pixel_explain(tmp, world, mp):
    image = _png(tmp / "dot.png", np.full((1, 1), 40))
    mask = _png(tmp / "dot_mask.png", np.full((1, 1), 255))
    return _explain(world, image, "--mask", str(mask), "--format", "json")


def b_one_pixel_predict(tmp, world, mp):
    return _predict(world.run, _png(tmp / "dot.png", np.full((1, 1), 40)), tmp / "out")


def _one_pixel_map(tmp: Path) -> None:
    assert tifffile.imread(tmp / "out" / "dot.tiff").shape == (1, 1)


def b_huge_png(tmp, world, mp):
    return _explain(world, write_huge_png(tmp / "huge.png"), "--mask", str(world.mask))


def b_huge_png_in_data(tmp, world, mp):
    data = tmp / "d"
    shutil.copytree(world.data, data)
    write_huge_png(data / "train" / "good" / "huge.png")
    return ["train", "--data", str(data), "--rulebook", str(world.rules), "--out", str(tmp / "out")]


def b_huge_mask(tmp, world, mp):
    return _explain(world, world.image, "--mask", str(write_huge_png(tmp / "huge_mask.png")))


def b_huge_tiff_residual(tmp, world, mp):
    huge = write_huge_tiff(tmp / "huge.tif")
    return _explain(world, world.image, "--residual", str(huge), "--mu", "0", "--sigma", "1")


def b_huge_predict(tmp, world, mp):
    return _predict(world.run, write_huge_png(tmp / "huge.png"), tmp / "out")


# residual maps and masks


def _residual(tmp: Path, world: World, value: float) -> list[str]:
    height, width = np.asarray(Image.open(world.image)).shape[:2]
    residual = np.full((height, width), 0.01, np.float32)
    residual[3, 4] = value
    tifffile.imwrite(tmp / "residual.tif", residual)
    return _explain(
        world, world.image, "--residual", str(tmp / "residual.tif"), "--mu", "0", "--sigma", "1"
    )


def b_nan_residual(tmp, world, mp):
    return _residual(tmp, world, float("nan"))


def b_inf_residual(tmp, world, mp):
    return _residual(tmp, world, float("inf"))


def b_mask_odd_values(tmp, world, mp):
    """The blob at 100-200 of a maximum of 200, a faint rim and stray specks at 1-60 around it."""
    from scipy import ndimage

    mask = np.asarray(Image.open(world.mask)) > 0
    cycle = np.arange(mask.size).reshape(mask.shape) % 4
    odd = np.where(mask, np.array([100, 128, 160, 200])[cycle], 0)
    rim = ndimage.binary_dilation(mask) & ~mask
    odd = np.where(rim, np.array([1, 7, 30, 60])[cycle], odd)
    odd[0, 0] = odd[-1, -1] = 7
    return _explain(world, world.image, "--mask", str(_png(tmp / "odd_mask.png", odd)))


# pixels that cannot be gray values (issue 16, items 6 and 7)


def _float_twin(world: World, path: Path, bad: float | None = None, at=(3, 4)) -> Path:
    """world.image as a 0-1 float32 TIFF, with one `bad` sample at `at` (row, column)."""
    pixels = np.asarray(Image.open(world.image), dtype=np.float32) / 255.0
    if bad is not None:
        pixels[at] = bad
    tifffile.imwrite(path, pixels)
    return path


def _data_with(world: World, tmp: Path, folder: str, write: Callable[[Path], Path]) -> Path:
    data = tmp / "d"
    shutil.copytree(world.data, data)
    write(data / "train" / folder)
    return data


def b_nan_image_explain(tmp, world, mp):
    return _explain(
        world, _float_twin(world, tmp / "nan.tif", float("nan")), "--mask", str(world.mask)
    )


def b_inf_image_predict(tmp, world, mp):
    return _predict(world.run, _float_twin(world, tmp / "inf.tif", float("inf")), tmp / "out")


def b_nan_image_train(tmp, world, mp):
    data = _data_with(world, tmp, "good", lambda d: _float_twin(world, d / "nan.tif", float("nan")))
    return ["train", "--data", str(data), "--rulebook", str(world.rules), "--out", str(tmp / "out"),
            *TINY]  # fmt: skip


def b_nan_image_train_anomalous(tmp, world, mp):
    data = _data_with(
        world, tmp, "anomalous", lambda d: _float_twin(world, d / "nan.tif", float("-inf"))
    )
    return ["train", "--data", str(data), "--rulebook", str(world.rules), "--out", str(tmp / "out"),
            "--workers", "2", *TINY]  # fmt: skip


def b_nan_mask(tmp, world, mp):
    mask = np.asarray(Image.open(world.mask), dtype=np.float32)
    mask[0, 0] = np.nan
    tifffile.imwrite(tmp / "nan_mask.tif", mask)
    return _explain(world, world.image, "--mask", str(tmp / "nan_mask.tif"))


def b_negative_int16_image(tmp, world, mp):
    pixels = np.asarray(Image.open(world.image)).astype(np.int16)
    pixels[0, 0] = -5
    tifffile.imwrite(tmp / "neg.tif", pixels)
    return _explain(world, tmp / "neg.tif", "--mask", str(world.mask))


def b_float_above_255(tmp, world, mp):
    pixels = np.asarray(Image.open(world.image), dtype=np.float32) * 257.0  # 16-bit as float
    tifffile.imwrite(tmp / "wide.tif", pixels)
    return _predict(world.run, tmp / "wide.tif", tmp / "out")


def b_multi_page_image(tmp, world, mp):
    pixels = np.asarray(Image.open(world.image))
    tifffile.imwrite(tmp / "pages.tif", np.stack([pixels, pixels]), photometric="minisblack")
    return _explain(world, tmp / "pages.tif", "--mask", str(world.mask))


# rulebooks


def b_rulebook_100mb(tmp, world, mp):
    path = tmp / "huge.rules"
    path.write_text("IF gray is low THEN anomalous (0.9)\n")
    with open(path, "r+b") as handle:  # sparse: 100 MB on paper, nothing on disk
        handle.truncate(100 * 2**20)
    return ["check", str(path)]


def b_rulebook_100mb_train(tmp, world, mp):
    b_rulebook_100mb(tmp, world, mp)
    return [
        "train", "--data", str(world.data), "--rulebook", str(tmp / "huge.rules"),
        "--out", str(tmp / "out"),
    ]  # fmt: skip


def _nested(tmp: Path, world: World, condition: str) -> list[str]:
    path = tmp / "deep.rules"
    path.write_text(f"IF {condition} THEN anomalous (0.9)\n")
    return ["explain", str(world.image), "-r", str(path), "--mask", str(world.mask)]


def b_nested_and(tmp, world, mp):
    n = 10_000
    return _nested(tmp, world, "gray is low AND (" * n + "area is high" + ")" * n)


def b_nested_not(tmp, world, mp):
    n = 10_000
    return _nested(tmp, world, "NOT (" * n + "area is high" + ")" * n)


def b_unclosed_parens(tmp, world, mp):
    return _nested(tmp, world, "(" * 10_000 + "area is high")


def b_define_chain(tmp, world, mp):
    """10,000 named conditions, each naming the next: the checker's walks are iterative."""
    n = 10_000
    path = tmp / "chain.rules"
    lines = [f"define d{i} = d{i + 1}" for i in range(n)] + [f"define d{n} = gray is low"]
    path.write_text("\n".join(lines) + "\nIF d0 THEN anomalous (0.9)\n")
    return ["check", str(path), "--strict"]


def b_define_doubling(tmp, world, mp):
    """Each name used twice by the next: 2^60 terms written out, refused (E023)."""
    path = tmp / "double.rules"
    lines = ["define d0 = gray is low"] + [
        f"define d{i} = d{i - 1} OR d{i - 1}" for i in range(1, 61)
    ]
    path.write_text("\n".join(lines) + "\nIF d60 THEN anomalous\n")
    return ["explain", str(world.image), "-r", str(path), "--mask", str(world.mask)]


def b_redundant_parens(tmp, world, mp):
    path = tmp / "deep.rules"
    path.write_text("IF " + "(" * 10_000 + "gray is low" + ")" * 10_000 + " THEN anomalous (0.9)\n")
    return ["check", str(path), "--ignore", "W"]


# checkpoints


def _edit_record(run: Path, edit: Callable[[dict], None], *, reseal: bool = False) -> Path:
    """Edit the latest checkpoint record as a user would (its seal then differs), or
    re-seal it as a determined one would (to reach the checks behind the seal)."""
    path = run / "checkpoints" / f"{_latest_phase(run)}.json"
    record = json.loads(path.read_text())
    edit(record)
    if reseal:
        from kist_train.sealed_json import seal

        record = seal(record)
    path.write_text(json.dumps(record))
    return path


def _latest_tensors(run: Path) -> Path:
    record = json.loads((run / "checkpoints" / f"{_latest_phase(run)}.json").read_text())
    return run / "checkpoints" / record["tensors"]


def b_checkpoint_mismatch(tmp, world, mp):
    run = _copy_run(world, tmp)
    # the tensors were saved for width 4; re-sealed, so that the shapes are what refuses
    _edit_record(run, lambda r: r["meta"]["model"].update(width=8), reseal=True)
    return _predict(run, world.image, tmp / "out")


def b_checkpoint_truncated(tmp, world, mp):
    run = _copy_run(world, tmp)
    tensors = _latest_tensors(run)
    _cut_in_half(tensors, tensors)
    return _predict(run, world.image, tmp / "out")


def b_checkpoint_pickle_in_run(tmp, world, mp):
    run = _copy_run(world, tmp)
    torch.save({"weight": torch.zeros(2)}, _latest_tensors(run))
    _forbid_unpickling(mp)
    return _predict(run, world.image, tmp / "out")


def b_record_sigma_zero(tmp, world, mp):
    run = _copy_run(world, tmp)
    _edit_record(run, lambda r: r["meta"].update(sigma_e=0.0))
    return _audit(run, world)


def b_record_mu_nan(tmp, world, mp):
    run = _copy_run(world, tmp)
    path = _edit_record(run, lambda r: r["meta"].update(mu_e="__nan__"))
    path.write_text(path.read_text().replace('"__nan__"', "NaN"))
    return _audit(run, world)


def b_record_size_1e6(tmp, world, mp):
    run = _copy_run(world, tmp)
    _edit_record(run, lambda r: r["meta"].update(size=1e6))
    return _predict(run, world.image, tmp / "out")


def b_record_size_1e6_resealed(tmp, world, mp):
    run = _copy_run(world, tmp)
    _edit_record(run, lambda r: r["meta"].update(size=1_000_000), reseal=True)
    return _predict(run, world.image, tmp / "out")


def b_record_mu_negative_resealed(tmp, world, mp):
    run = _copy_run(world, tmp)
    _edit_record(run, lambda r: r["meta"].update(mu_e=-1.0), reseal=True)
    return _audit(run, world)


def b_record_nested(tmp, world, mp):
    run = _copy_run(world, tmp)
    path = run / "checkpoints" / f"{_latest_phase(run)}.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return _predict(run, world.image, tmp / "out")


def _audit(run: Path, world: World) -> list[str]:
    return ["audit", "--model", str(run), "--rulebook", str(world.rules), "--data", str(world.data)]


# run directories: resume and --force


def _train_into(world: World, out: Path, *extra: str) -> list[str]:
    """The world run's own options (so that --resume matches), into `out`."""
    return [
        "train", "--data", str(world.data), "--rulebook", str(world.rules), "--out", str(out),
        *TINY, *extra,
    ]  # fmt: skip


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root and its bytes (the lock file aside: its content is a pid)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "kistrules-run.lock"
    }


def _remember(tmp: Path, root: Path) -> None:
    (tmp / "before.json").write_text(json.dumps({k: v.hex() for k, v in _snapshot(root).items()}))


def _untouched(name: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        before = {
            k: bytes.fromhex(v) for k, v in json.loads((tmp / "before.json").read_text()).items()
        }
        assert _snapshot(tmp / name) == before, "the refused command changed files"

    return check


def b_resume_truncated_tensors(tmp, world, mp):
    run = _copy_run(world, tmp)
    tensors = _latest_tensors(run)
    _cut_in_half(tensors, tensors)
    _remember(tmp, run)
    return _train_into(world, run, "--resume")


def b_resume_nested_marker(tmp, world, mp):
    run = _copy_run(world, tmp)
    (run / "kistrules-run.json").write_text("{" + '"a":{' * 50_000 + "}" * 50_001)
    _remember(tmp, run)
    return _train_into(world, run, "--resume")


def b_resume_edited_marker(tmp, world, mp):
    run = _copy_run(world, tmp)
    marker = json.loads((run / "kistrules-run.json").read_text())
    marker["config"]["seed"] = 7  # as if to resume it under other options
    (run / "kistrules-run.json").write_text(json.dumps(marker))
    _remember(tmp, run)
    return _train_into(world, run, "--resume", "--seed", "7")


def b_force_foreign_file(tmp, world, mp):
    run = _copy_run(world, tmp)
    (run / "thesis.tex").write_text("x\n")
    _remember(tmp, run)
    return _train_into(world, run, "--force")


def b_force_config_json_folder(tmp, world, mp):
    """The issue's reproduction: a folder with a config.json is not a run."""
    folder = tmp / "p"
    folder.mkdir()
    (folder / "config.json").write_text("{}\n")
    (folder / "thesis.tex").write_text("x\n")
    _remember(tmp, folder)
    return _train_into(world, folder, "--force")


def b_force_data_folder(tmp, world, mp):
    data = tmp / "d"
    shutil.copytree(world.data, data)
    (data / "config.json").write_text("{}\n")
    _remember(tmp, data)
    return _train_into(world, data, "--force")


def b_force_old_run(tmp, world, mp):
    """A run of an older kistrules (config.json, checkpoints/, no marker)."""
    run = _copy_run(world, tmp)
    (run / "kistrules-run.json").rename(run / "config.json")
    _remember(tmp, run)
    return _train_into(world, run, "--force")


def b_checkpoint_pickle_file(tmp, world, mp):
    torch.save({"weight": torch.zeros(2)}, tmp / "model.pt")
    _forbid_unpickling(mp)
    return _predict(tmp / "model.pt", world.image, tmp / "out")


# data folders


def b_symlink_loops_predict(tmp, world, mp):
    folder = tmp / "images"
    folder.mkdir()
    shutil.copy(world.image, folder / "a.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "self.png").symlink_to(folder / "self.png")  # ELOOP when opened
    return _predict(world.run, folder, tmp / "maps")


def _one_map(tmp: Path) -> None:
    assert sorted(p.name for p in (tmp / "maps").rglob("*.tiff")) == ["a.tiff"]


def b_symlink_loops_train(tmp, world, mp):
    data = tmp / "d"
    shutil.copytree(world.data, data)
    (data / "train" / "good" / "loop").symlink_to(data / "train", target_is_directory=True)
    (data / "train" / "anomalous" / "loop").symlink_to(data, target_is_directory=True)
    (data / "train" / "good" / "self.png").symlink_to(data / "train" / "good" / "self.png")
    return [
        "train", "--data", str(data), "--rulebook", str(world.rules), "--out", str(tmp / "run"),
        *TINY,
    ]  # fmt: skip


def b_only_symlink_loops(tmp, world, mp):
    good = tmp / "d" / "train" / "good"
    good.mkdir(parents=True)
    (good / "loop").symlink_to(good, target_is_directory=True)
    (good / "self.png").symlink_to(good / "self.png")
    return [
        "train",
        "--data",
        str(tmp / "d"),
        "--rulebook",
        str(world.rules),
        "--out",
        str(tmp / "o"),
    ]


# read-only outputs


FROZEN: list[Path] = []  # what make_read_only froze; thawed after each case


def make_read_only(path: Path) -> Path:
    """Make a file or folder read-only for us, even as root (immutable attribute)."""
    path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"running as root and cannot chattr +i ({done.stderr.strip()!r})")
    FROZEN.append(path)
    return path


def thaw() -> None:
    while FROZEN:
        path = FROZEN.pop()
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
        path.chmod(0o755 if path.is_dir() else 0o644)


def _read_only(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return make_read_only(path)


def b_read_only_train(tmp, world, mp):
    frozen = _read_only(tmp / "frozen")
    return [
        "train", "--data", str(world.data), "--rulebook", str(world.rules),
        "--out", str(frozen / "run"), *TINY,
    ]  # fmt: skip


def b_read_only_predict(tmp, world, mp):
    return _predict(world.run, world.image, _read_only(tmp / "frozen") / "maps")


def b_read_only_explain(tmp, world, mp):
    out = _read_only(tmp / "frozen") / "overlay.png"
    return _explain(world, world.image, "--mask", str(world.mask), "--out", str(out))


def b_read_only_fmt(tmp, world, mp):
    folder = tmp / "frozen"
    folder.mkdir()
    (folder / "messy.rules").write_text("if GRAY is LOW then anomalous (0.9)\n")
    make_read_only(folder)
    return ["fmt", str(folder / "messy.rules")]


def b_read_only_fmt_file(tmp, world, mp):
    """A read-only file in a writable folder: fmt must not replace it behind the user's back."""
    (tmp / "messy.rules").write_text("if GRAY is LOW then anomalous (0.9)\n")
    make_read_only(tmp / "messy.rules")
    return ["fmt", str(tmp / "messy.rules")]


def _messy_unchanged(tmp: Path) -> None:
    for path in tmp.rglob("messy.rules"):
        assert path.read_text() == "if GRAY is LOW then anomalous (0.9)\n"


# full disk (mocked: fsync or the TIFF writer raises ENOSPC)


def _invoke_ok(args: list[str]) -> None:
    """Run a preparatory command of a case; it must succeed."""
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output


def _keep_copy(path: Path) -> None:
    """Remember a file's bytes beside the case directory's files, for `_copies_intact`."""
    shutil.copyfile(path, path.with_name(path.name + ".before"))


def _copies_intact(tmp: Path) -> None:
    copies = list(tmp.rglob("*.before"))
    assert copies, "the case kept no copy to compare with"
    for copy in copies:
        original = copy.with_name(copy.name.removesuffix(".before"))
        assert original.read_bytes() == copy.read_bytes(), f"{original} changed"


def b_full_disk_evaluate(tmp, world, mp):
    args = [
        "evaluate", "--model", str(world.run), "--data", str(world.data),
        "--json", str(tmp / "eval.json"), "--device", "cpu",
    ]  # fmt: skip
    _invoke_ok(args)  # the previous output: evaluate may replace only its own
    _keep_copy(tmp / "eval.json")
    mp.setattr(os, "fsync", _disk_full)
    return args


def b_full_disk_predict(tmp, world, mp):
    shutil.copy(world.image, tmp / "a.png")
    _invoke_ok(_predict(world.run, tmp / "a.png", tmp / "maps"))
    _keep_copy(tmp / "maps" / "a.tiff")

    def half_then_full(path, data, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00 half a tiff")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mp.setattr(tifffile, "imwrite", half_then_full)
    return _predict(world.run, tmp / "a.png", tmp / "maps")


def b_full_disk_fmt(tmp, world, mp):
    (tmp / "messy.rules").write_text("if GRAY is LOW then anomalous (0.9)\n")
    mp.setattr(os, "fsync", _disk_full)
    return ["fmt", str(tmp / "messy.rules")]


# outputs over inputs and foreign files (issue 16, item 2): predict, explain, plot, evaluate,
# audit and demo replace only files they wrote themselves, and never an input


def _images(folder: Path, world: World, *names: str) -> Path:
    """`folder` holding copies of the world's test image under `names` (suffix picks the format)."""
    folder.mkdir(parents=True, exist_ok=True)
    gray = np.asarray(Image.open(world.image).convert("L"))
    for name in names:
        if name.endswith((".tif", ".tiff")):
            tifffile.imwrite(folder / name, gray)
        else:
            Image.fromarray(gray).save(folder / name)
        _keep_copy(folder / name)
    return folder


def _no_maps(tmp: Path) -> None:
    _copies_intact(tmp)
    assert not [p for p in tmp.rglob("*.tiff") if not p.name.startswith("b.")], "maps written"
    assert not list(tmp.rglob("predict.json")), "predict.json written"


def b_predict_out_is_input(tmp, world, mp):
    """The issue's example: `predict --input imgs --out imgs` with PNG images."""
    imgs = _images(tmp / "imgs", world, "a.png", "b.png")
    return _predict(world.run, imgs, imgs)


def b_predict_out_links_to_input(tmp, world, mp):
    """--out spelled through a symlink to the input folder; b.tiff's map would be b.tiff."""
    imgs = _images(tmp / "imgs", world, "b.tiff")
    (tmp / "link").symlink_to(imgs, target_is_directory=True)
    return [*_predict(world.run, imgs, tmp / "link"), "--no-overlays"]


def b_predict_input_inside_out(tmp, world, mp):
    out = _images(tmp / "out", world, "a.png")
    return _predict(world.run, out / "a.png", out)


def b_predict_foreign_file_in_out(tmp, world, mp):
    imgs = _images(tmp / "imgs", world, "a.png")
    _images(tmp / "out", world, "a.png")  # the user's own picture that happens to share the name
    return _predict(world.run, imgs, tmp / "out")


def b_predict_foreign_manifest(tmp, world, mp):
    imgs = _images(tmp / "imgs", world, "a.png")
    (tmp / "out").mkdir()
    (tmp / "out" / "predict.json").write_text('{"my": "notes"}\n')
    _keep_copy(tmp / "out" / "predict.json")
    return _predict(world.run, imgs, tmp / "out")


def b_predict_symlink_in_out(tmp, world, mp):
    imgs = _images(tmp / "imgs", world, "a.png")
    (tmp / "precious.tiff").write_bytes(b"not ours")
    _keep_copy(tmp / "precious.tiff")
    (tmp / "out").mkdir()
    (tmp / "out" / "a.tiff").symlink_to(tmp / "precious.tiff")
    return _predict(world.run, imgs, tmp / "out")


def _link_kept(tmp: Path) -> None:
    _copies_intact(tmp)
    assert (tmp / "out" / "a.tiff").is_symlink()


def b_predict_edited_output(tmp, world, mp):
    """An overlay predict wrote, then the user edited: no longer predict's to replace."""
    imgs = _images(tmp / "imgs", world, "a.png")
    _invoke_ok(_predict(world.run, imgs, tmp / "out"))
    with open(tmp / "out" / "a.png", "ab") as handle:
        handle.write(b"the user's annotations")
    _keep_copy(tmp / "out" / "a.png")
    return _predict(world.run, imgs, tmp / "out")


def b_predict_twice_into_input_folder(tmp, world, mp):
    """JPEG inputs, --out = the input folder: allowed (nothing replaced), and repeatable:
    the second run must not take the first run's maps and overlays for inputs."""
    imgs = _images(tmp / "imgs", world, "a.jpg")
    _invoke_ok(_predict(world.run, imgs, imgs))
    return _predict(world.run, imgs, imgs)


def b_predict_twice_into_subfolder(tmp, world, mp):
    imgs = _images(tmp / "imgs", world, "a.png")
    _invoke_ok(_predict(world.run, imgs, imgs / "maps"))
    return _predict(world.run, imgs, imgs / "maps")


def _one_map_beside(tmp: Path) -> None:
    _copies_intact(tmp)
    maps = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*.tiff"))
    assert len(maps) == 1, maps


def b_explain_out_is_image(tmp, world, mp):
    image = _images(tmp, world, "x.png") / "x.png"
    return _explain(world, image, "--mask", str(world.mask), "--out", str(image))


def b_explain_out_is_mask(tmp, world, mp):
    shutil.copy(world.mask, tmp / "m.png")
    _keep_copy(tmp / "m.png")
    return _explain(world, world.image, "--mask", str(tmp / "m.png"), "--out", str(tmp / "m.png"))


def b_explain_out_foreign_png(tmp, world, mp):
    _images(tmp, world, "holiday.png")
    out = str(tmp / "holiday.png")
    return _explain(world, world.image, "--mask", str(world.mask), "--out", out)


def b_plot_out_is_rulebook(tmp, world, mp):
    shutil.copy(world.rules, tmp / "b.rules")
    _keep_copy(tmp / "b.rules")
    return ["plot", str(tmp / "b.rules"), "--out", str(tmp / "b.rules")]


def b_plot_out_foreign_png(tmp, world, mp):
    _images(tmp, world, "sets.png")
    return ["plot", str(world.rules), "--out", str(tmp / "sets.png")]


def b_evaluate_json_foreign(tmp, world, mp):
    (tmp / "notes.json").write_text('{"mine": true}\n')
    _keep_copy(tmp / "notes.json")
    return [
        "evaluate", "--model", str(world.run), "--data", str(world.data),
        "--json", str(tmp / "notes.json"), "--device", "cpu",
    ]  # fmt: skip


def b_audit_json_is_rulebook(tmp, world, mp):
    shutil.copy(world.rules, tmp / "b.rules")
    _keep_copy(tmp / "b.rules")
    return [
        "audit", "--model", str(world.run), "--rulebook", str(tmp / "b.rules"),
        "--data", str(world.data), "--json", str(tmp / "b.rules"), "--device", "cpu",
    ]  # fmt: skip


def _tune(world: World, rules: Path, out: Path, masks: Path | None = None) -> list[str]:
    return [
        "tune", str(rules), "--model", str(world.run), "--data", str(world.data),
        "--masks", str(masks or world.data / "ground_truth"), "--out", str(out),
        "--device", "cpu",
    ]  # fmt: skip


def b_tune_out_is_rulebook(tmp, world, mp):
    shutil.copy(world.rules, tmp / "b.rules")
    _keep_copy(tmp / "b.rules")
    return _tune(world, tmp / "b.rules", tmp / "b.rules")


def b_tune_out_foreign_rulebook(tmp, world, mp):
    """--out names the expert's other rulebook: tune writes only over its own unchanged output."""
    (tmp / "mine.rules").write_text("scale gray = 255\nrule r: if gray is low then anomalous\n")
    _keep_copy(tmp / "mine.rules")
    return _tune(world, world.rules, tmp / "mine.rules")


def b_tune_too_few_masks(tmp, world, mp):
    """The world has one annotated test image: too few to tell, refused before any output."""
    return _tune(world, world.rules, tmp / "out" / "t.rules")


def b_tune_fifo_mask(tmp, world, mp):
    """A named pipe called like a mask is not read (it would block): no masks at all here."""
    (tmp / "masks").mkdir()
    _fifo(tmp / "masks" / "d000_mask.png")
    return _tune(world, world.rules, tmp / "out" / "t.rules", tmp / "masks")


def b_fifo_tune_rulebook(tmp, world, mp):
    return _tune(world, _fifo(tmp / "pipe.rules"), tmp / "out" / "t.rules")


def b_demo_out_holds_user_data(tmp, world, mp):
    """`demo --out` on a folder of the user's: it used to delete OUT/data before anything else."""
    (tmp / "project" / "data").mkdir(parents=True)
    (tmp / "project" / "data" / "measurements.csv").write_text("1,2,3\n")
    _keep_copy(tmp / "project" / "data" / "measurements.csv")
    return ["demo", "--fast", "--out", str(tmp / "project")]


# fmt (issue 16, item 5): through symlinks, keeping hard links, owner and mode, never past
# the size limit that `check` enforces

MESSY = "IF GRAY is LOW then anomalous (.9)\n"
TIDY = "if gray is low then anomalous (0.9)\n"


def b_fmt_symlink(tmp, world, mp):
    (tmp / "real.rules").write_text(MESSY)
    (tmp / "link.rules").symlink_to("real.rules")
    return ["fmt", str(tmp / "link.rules")]


def _target_formatted_link_kept(tmp: Path) -> None:
    assert (tmp / "link.rules").is_symlink()
    assert os.readlink(tmp / "link.rules") == "real.rules"
    assert (tmp / "real.rules").read_text() == TIDY


def b_fmt_hard_link(tmp, world, mp):
    (tmp / "a.rules").write_text(MESSY)
    os.link(tmp / "a.rules", tmp / "b.rules")
    return ["fmt", str(tmp / "a.rules")]


def _links_kept(tmp: Path) -> None:
    assert os.path.samefile(tmp / "a.rules", tmp / "b.rules")
    assert (tmp / "a.rules").stat().st_nlink == 2
    assert (tmp / "b.rules").read_text() == TIDY


def b_fmt_hard_link_full_disk(tmp, world, mp):
    """The in-place rewrite fails (disk full at its fsync): the old text is put back."""
    b_fmt_hard_link(tmp, world, mp)
    calls = []
    real_fsync = os.fsync

    def second_fails(fd):  # 1: the saved copy of the old text; 2: the rewrite
        calls.append(fd)
        if len(calls) == 2:
            _disk_full()
        return real_fsync(fd)

    mp.setattr(os, "fsync", second_fails)
    return ["fmt", str(tmp / "a.rules")]


def _links_kept_old_text(tmp: Path) -> None:
    assert os.path.samefile(tmp / "a.rules", tmp / "b.rules")
    assert (tmp / "b.rules").read_text() == MESSY
    assert sorted(p.name for p in tmp.iterdir()) == ["a.rules", "b.rules"]


def b_fmt_keeps_owner_and_mode(tmp, world, mp):
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    (tmp / "a.rules").write_text(MESSY)
    os.chown(tmp / "a.rules", 65534, 65534)  # nobody / nogroup
    (tmp / "a.rules").chmod(0o604)
    return ["fmt", str(tmp / "a.rules")]


def _owner_and_mode_kept(tmp: Path) -> None:
    info = (tmp / "a.rules").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (65534, 65534, 0o604)
    assert (tmp / "a.rules").read_text() == TIDY


def b_fmt_owner_not_keepable(tmp, world, mp):
    """Someone else's file, and we may not chown (as a non-root user): fmt must not take the
    file over by a rename; it rewrites it in place (same inode, owner and mode)."""
    b_fmt_keeps_owner_and_mode(tmp, world, mp)
    (tmp / "inode").write_text(str((tmp / "a.rules").stat().st_ino))

    def not_permitted(*args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    mp.setattr(os, "chown", not_permitted)  # what a non-root user gets
    return ["fmt", str(tmp / "a.rules")]


def _same_inode_formatted(tmp: Path) -> None:
    assert str((tmp / "a.rules").stat().st_ino) == (tmp / "inode").read_text()
    _owner_and_mode_kept(tmp)


def b_fmt_long_set_names(tmp, world, mp):
    """The issue's file: 151 `set` lines, one with a 10,000-character name (14.6 kB)."""
    lines = [f"set gray.{'n' * 10_000} = triangle(0, 0.5, 1)"]
    lines += [f"set gray.s{i} = triangle(0, 0.5, 1)" for i in range(150)]
    lines.append("IF gray is s1 THEN anomalous (0.9)")
    (tmp / "long.rules").write_text("\n".join(lines) + "\n")
    return ["fmt", str(tmp / "long.rules")]


def _still_checkable(tmp: Path) -> None:
    from kistrules.api import MAX_RULEBOOK_BYTES, read_rulebook

    size = (tmp / "long.rules").stat().st_size
    assert size <= 2 * 14_615, f"formatting grew the file to {size:,} bytes"
    assert len(read_rulebook(tmp / "long.rules")) <= MAX_RULEBOOK_BYTES


# non-regular files (issue 16, item 9): refused unopened, never a hang; these cases run the
# CLI in a subprocess with a timeout, so that a regression fails instead of blocking the suite


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    os.mkfifo(path)
    return path


def b_fifo_check(tmp, world, mp):
    return ["check", str(_fifo(tmp / "pipe.rules"))]


def b_fifo_fmt(tmp, world, mp):
    return ["fmt", str(_fifo(tmp / "pipe.rules"))]


def b_fifo_in_searched_folder(tmp, world, mp):
    shutil.copy(world.rules, tmp / "b.rules")
    _fifo(tmp / "pipe.rules")
    return ["check", str(tmp)]


def b_fifo_explain_rulebook(tmp, world, mp):
    pipe = str(_fifo(tmp / "pipe.rules"))
    return ["explain", str(world.image), "-r", pipe, "--mask", str(world.mask)]


def b_fifo_explain_image(tmp, world, mp):
    return _explain(world, _fifo(tmp / "pipe.png"), "--mask", str(world.mask))


def b_fifo_explain_mask(tmp, world, mp):
    return _explain(world, world.image, "--mask", str(_fifo(tmp / "pipe.png")))


def b_fifo_explain_residual(tmp, world, mp):
    pipe = _fifo(tmp / "pipe.tif")
    return _explain(world, world.image, "--residual", str(pipe), "--mu", "0", "--sigma", "1")


def b_fifo_plot(tmp, world, mp):
    return ["plot", str(_fifo(tmp / "pipe.rules")), "--out", str(tmp / "out" / "sets.png")]


def b_fifo_predict(tmp, world, mp):
    return _predict(world.run, _fifo(tmp / "pipe.png"), tmp / "out")


def b_fifo_train_rulebook(tmp, world, mp):
    return [
        "train", "--data", str(world.data), "--rulebook", str(_fifo(tmp / "pipe.rules")),
        "--out", str(tmp / "out"), *TINY,
    ]  # fmt: skip


def b_device_rulebook(tmp, world, mp):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    return ["check", "/dev/zero"]


def b_empty_folder_check(tmp, world, mp):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("not a rulebook\n")
    return ["check", str(tmp / "empty")]


def b_empty_folder_fmt(tmp, world, mp):
    (tmp / "empty").mkdir()
    return ["fmt", str(tmp / "empty")]


# --- the table --------------------------------------------------------------------------------

Build = Callable[[Path, World, pytest.MonkeyPatch], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    code: int
    fragments: tuple[str, ...] = ()  # all in the one stderr line (exit != 0) or stdout (exit 0)
    out: str | None = None  # relative path that must hold no file afterwards
    check: Callable[[Path], None] | None = None
    isolated: bool = False  # run `python -m kistrules` with a timeout: a hang must fail


LIMIT = "above the limit of 67,108,864 pixels"
NONFINITE = "holds 1 NaN or infinite pixel value"
CASES = [
    Case("truncated_png", b_truncated_png, 1, ("cut.png", "cannot read image")),
    Case("truncated_jpg", b_truncated_jpg, 1, ("cut.jpg", "cannot read image"), out="out"),
    Case("random_bytes_png", b_random_bytes_png, 1, ("noise.png", "cannot read"), out="out"),
    Case("random_bytes_mask", b_random_bytes_mask, 1, ("noise_mask.png", "cannot read mask")),
    Case("one_pixel_explain", b_one_pixel_explain, 0, ('"regions"',)),
    Case("one_pixel_predict", b_one_pixel_predict, 0, ("1 maps",), check=_one_pixel_map),
    Case("huge_png_explain", b_huge_png, 1, ("huge.png", "20000x20000", LIMIT)),
    Case("huge_png_in_data", b_huge_png_in_data, 1, ("huge.png", LIMIT), out="out"),
    Case("huge_png_mask", b_huge_mask, 1, ("huge_mask.png", "mask is 20000x20000", LIMIT)),
    Case("huge_tiff_residual", b_huge_tiff_residual, 1, ("huge.tif", "residual map", LIMIT)),
    Case("huge_png_predict", b_huge_predict, 1, ("huge.png", LIMIT), out="out"),
    Case("nan_residual", b_nan_residual, 1, ("residual.tif", "NaN or infinite")),
    Case("inf_residual", b_inf_residual, 1, ("residual.tif", "NaN or infinite")),
    Case("mask_values_not_0_255", b_mask_odd_values, 0, ("regions",)),
    Case("nan_image_explain", b_nan_image_explain, 1, ("nan.tif", NONFINITE, "row 3, column 4")),
    Case("inf_image_predict", b_inf_image_predict, 1, ("inf.tif", NONFINITE), out="out"),
    Case("nan_image_train", b_nan_image_train, 1, ("good/nan.tif", NONFINITE), out="out"),
    Case(
        "nan_image_train_anomalous",
        b_nan_image_train_anomalous,
        1,
        ("anomalous/nan.tif", NONFINITE),
        out="out",
    ),
    Case("nan_mask", b_nan_mask, 1, ("nan_mask.tif", "mask holds 1 NaN or infinite")),
    Case("negative_int16_image", b_negative_int16_image, 1, ("neg.tif", "values from -5")),
    Case("float_above_255", b_float_above_255, 1, ("wide.tif", "must be 0 to 255"), out="out"),
    Case("multi_page_image", b_multi_page_image, 1, ("pages.tif", "holds 2 images")),
    Case("rulebook_100mb_check", b_rulebook_100mb, 2, ("huge.rules", "limit of 1,048,576")),
    Case("rulebook_100mb_train", b_rulebook_100mb_train, 2, ("huge.rules", "limit"), out="out"),
    Case("nested_and_10000", b_nested_and, 2, ("deep.rules:1:", "E001", "nested more than 100")),
    Case("nested_not_10000", b_nested_not, 2, ("deep.rules:1:", "E001", "nested more than 100")),
    Case("unclosed_parens_10000", b_unclosed_parens, 2, ("deep.rules:1:", "E001", "expected")),
    Case("redundant_parens_10000", b_redundant_parens, 0, ("0 errors",)),
    Case("define_chain_10000", b_define_chain, 0, ("0 errors, 0 warnings",)),
    Case("define_doubling_60", b_define_doubling, 2, ("double.rules:", "E023", "written out")),
    Case("checkpoint_mismatch", b_checkpoint_mismatch, 1, ("run", "does not fit"), out="out"),
    Case(
        "checkpoint_truncated",
        b_checkpoint_truncated,
        1,
        (".safetensors", "does not match its record"),
        out="out",
    ),
    Case("record_sigma_zero", b_record_sigma_zero, 1, ("update_1.json", "edited or corrupted")),
    Case("record_mu_nan", b_record_mu_nan, 1, ("update_1.json", "NaN")),
    Case("record_size_1e6", b_record_size_1e6, 1, ("update_1.json", "edited"), out="out"),
    Case(
        "record_size_1e6_resealed",
        b_record_size_1e6_resealed,
        1,
        ("update_1.json", "size 1000000"),
        out="out",
    ),
    Case("record_mu_negative", b_record_mu_negative_resealed, 1, ("update_1.json", "mu_e")),
    Case("record_nested", b_record_nested, 1, ("update_1.json", "nested too deeply"), out="out"),
    Case(
        "resume_truncated_tensors",
        b_resume_truncated_tensors,
        1,
        (".safetensors", "does not match its record"),
        check=_untouched("run"),
    ),
    Case(
        "resume_nested_marker",
        b_resume_nested_marker,
        1,
        ("kistrules-run.json", "nested too deeply"),
        check=_untouched("run"),
    ),
    Case(
        "resume_edited_marker",
        b_resume_edited_marker,
        1,
        ("kistrules-run.json", "edited or corrupted"),
        check=_untouched("run"),
    ),
    Case(
        "force_foreign_file",
        b_force_foreign_file,
        1,
        ("thesis.tex", "did not write"),
        check=_untouched("run"),
    ),
    Case(
        "force_config_json_folder",
        b_force_config_json_folder,
        1,
        ("p:", "not a run directory"),
        check=_untouched("p"),
    ),
    Case(
        "force_data_folder",
        b_force_data_folder,
        1,
        ("not a run directory",),
        check=_untouched("d"),
    ),
    Case("force_old_run", b_force_old_run, 1, ("older kistrules",), check=_untouched("run")),
    Case(
        "checkpoint_pickle_in_run",
        b_checkpoint_pickle_in_run,
        1,
        (".safetensors", "pickle checkpoints", "refused"),
        out="out",
    ),
    Case("checkpoint_pickle_file", b_checkpoint_pickle_file, 1, ("model.pt", "refused"), out="out"),
    Case("symlink_loops_predict", b_symlink_loops_predict, 0, ("1 maps",), check=_one_map),
    Case("symlink_loops_train", b_symlink_loops_train, 0, ("run",)),
    Case("only_symlink_loops", b_only_symlink_loops, 1, ("good", "no images"), out="o"),
    Case("read_only_train", b_read_only_train, 1, ("frozen",), out="frozen"),
    Case("read_only_predict", b_read_only_predict, 1, ("frozen",), out="frozen"),
    Case("read_only_explain", b_read_only_explain, 1, ("overlay.png",), out="frozen"),
    Case(
        "read_only_fmt_folder",
        b_read_only_fmt,
        1,
        ("messy.rules", "cannot write"),
        check=_messy_unchanged,
    ),
    Case(
        "read_only_fmt_file",
        b_read_only_fmt_file,
        1,
        ("messy.rules", "cannot write (read-only file)"),
        check=_messy_unchanged,
    ),
    Case(
        "full_disk_evaluate",
        b_full_disk_evaluate,
        1,
        ("eval.json", "No space left on device"),
        check=_copies_intact,
    ),
    Case(
        "full_disk_predict",
        b_full_disk_predict,
        1,
        ("a.tiff", "No space left on device"),
        check=_copies_intact,
    ),
    Case(
        "full_disk_fmt",
        b_full_disk_fmt,
        1,
        ("messy.rules", "No space left on device"),
        check=_messy_unchanged,
    ),
    # outputs over inputs and foreign files
    Case("predict_out_is_input", b_predict_out_is_input, 2, ("is the input",), check=_no_maps),
    Case(
        "predict_out_links_to_input",
        b_predict_out_links_to_input,
        2,
        ("b.tiff", "is the input"),
        check=_no_maps,
    ),
    Case(
        "predict_input_inside_out",
        b_predict_input_inside_out,
        2,
        ("a.png", "is the input"),
        check=_no_maps,
    ),
    Case(
        "predict_foreign_file_in_out",
        b_predict_foreign_file_in_out,
        2,
        ("out/a.png", "not an earlier output of kistrules predict"),
        check=_no_maps,
    ),
    Case(
        "predict_foreign_manifest",
        b_predict_foreign_manifest,
        2,
        ("predict.json", "not an earlier output"),
        check=_copies_intact,
    ),
    Case(
        "predict_symlink_in_out",
        b_predict_symlink_in_out,
        2,
        ("a.tiff", "symbolic link"),
        check=_link_kept,
    ),
    Case(
        "predict_edited_output",
        b_predict_edited_output,
        2,
        ("a.png", "not an earlier output"),
        check=_copies_intact,
    ),
    Case(
        "predict_twice_into_input_folder",
        b_predict_twice_into_input_folder,
        0,
        ("1 maps",),
        check=_one_map_beside,
    ),
    Case(
        "predict_twice_into_subfolder",
        b_predict_twice_into_subfolder,
        0,
        ("1 maps",),
        check=_one_map_beside,
    ),
    Case(
        "explain_out_is_image",
        b_explain_out_is_image,
        2,
        ("x.png", "is the input"),
        check=_copies_intact,
    ),
    Case(
        "explain_out_is_mask",
        b_explain_out_is_mask,
        2,
        ("m.png", "is the input"),
        check=_copies_intact,
    ),
    Case(
        "explain_out_foreign_png",
        b_explain_out_foreign_png,
        2,
        ("holiday.png", "not an earlier output of kistrules explain"),
        check=_copies_intact,
    ),
    Case(
        "plot_out_is_rulebook",
        b_plot_out_is_rulebook,
        2,
        ("b.rules", "is the input"),
        check=_copies_intact,
    ),
    Case(
        "plot_out_foreign_png",
        b_plot_out_foreign_png,
        2,
        ("sets.png", "not an earlier output"),
        check=_copies_intact,
    ),
    Case(
        "evaluate_json_foreign",
        b_evaluate_json_foreign,
        2,
        ("notes.json", "not an earlier output of kistrules evaluate"),
        check=_copies_intact,
    ),
    Case(
        "audit_json_is_rulebook",
        b_audit_json_is_rulebook,
        2,
        ("b.rules", "is the input"),
        check=_copies_intact,
    ),
    Case(
        "tune_out_is_rulebook",
        b_tune_out_is_rulebook,
        2,
        ("b.rules", "is the input"),
        check=_copies_intact,
    ),
    Case(
        "tune_out_foreign_rulebook",
        b_tune_out_foreign_rulebook,
        2,
        ("mine.rules", "not an earlier output of kistrules tune"),
        check=_copies_intact,
    ),
    Case(
        "tune_too_few_masks", b_tune_too_few_masks, 1, ("1 annotated image", "too few"), out="out"
    ),
    Case("tune_fifo_mask", b_tune_fifo_mask, 1, ("masks", "no *_mask.png files"), out="out"),
    Case(
        "demo_out_holds_user_data",
        b_demo_out_holds_user_data,
        2,
        ("measurements.csv", "not written by an earlier kistrules demo"),
        check=_copies_intact,
    ),
    # fmt
    Case("fmt_symlink", b_fmt_symlink, 0, check=_target_formatted_link_kept),
    Case("fmt_hard_link", b_fmt_hard_link, 0, check=_links_kept),
    Case(
        "fmt_hard_link_full_disk",
        b_fmt_hard_link_full_disk,
        1,
        ("a.rules", "No space left on device"),
        check=_links_kept_old_text,
    ),
    Case("fmt_keeps_owner_and_mode", b_fmt_keeps_owner_and_mode, 0, check=_owner_and_mode_kept),
    Case("fmt_owner_not_keepable", b_fmt_owner_not_keepable, 0, check=_same_inode_formatted),
    Case("fmt_long_set_names", b_fmt_long_set_names, 0, check=_still_checkable),
    # non-regular files and empty folders
    *(
        Case(name, build, 2, fragments, isolated=True)
        for name, build, fragments in (
            ("fifo_check", b_fifo_check, ("pipe.rules", "named pipe")),
            ("fifo_fmt", b_fifo_fmt, ("pipe.rules", "named pipe")),
            ("fifo_in_searched_folder", b_fifo_in_searched_folder, ("pipe.rules", "named pipe")),
            ("fifo_explain_rulebook", b_fifo_explain_rulebook, ("pipe.rules", "named pipe")),
            ("fifo_explain_image", b_fifo_explain_image, ("pipe.png", "named pipe")),
            ("fifo_explain_mask", b_fifo_explain_mask, ("pipe.png", "named pipe")),
            ("fifo_explain_residual", b_fifo_explain_residual, ("pipe.tif", "named pipe")),
            ("fifo_plot", b_fifo_plot, ("pipe.rules", "named pipe")),
            ("fifo_predict", b_fifo_predict, ("pipe.png", "named pipe")),
            ("fifo_train_rulebook", b_fifo_train_rulebook, ("pipe.rules", "named pipe")),
            ("fifo_tune_rulebook", b_fifo_tune_rulebook, ("pipe.rules", "named pipe")),
            ("device_rulebook", b_device_rulebook, ("/dev/zero", "character device")),
        )
    ),
    Case("empty_folder_check", b_empty_folder_check, 2, ("empty", "no .rules files")),
    Case("empty_folder_fmt", b_empty_folder_fmt, 2, ("empty", "no .rules files")),
]


# --- running a case ---------------------------------------------------------------------------


def _run_in_process(args: list[str]) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash: show its traceback in the test report
    return result.exit_code, result.stdout, result.stderr


def _run_isolated(args: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """`python -m kistrules ARGS` with no stdin; a command still running at `timeout` fails."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kistrules", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"kistrules {' '.join(args)} still running after {timeout} s: it hangs")
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: Case, world: World, tmp_path: Path, monkeypatch) -> None:
    try:
        args = case.build(tmp_path, world, monkeypatch)
        code, out, err = (_run_isolated if case.isolated else _run_in_process)(args)
    finally:
        monkeypatch.undo()  # the checks below use the real file system calls
        thaw()

    assert "Traceback" not in out + err, out + err
    assert code == case.code, f"exit {code}\nstdout: {out}\nstderr: {err}"
    if case.code == 0:
        for fragment in case.fragments:
            assert fragment in out, out
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "error" in lines[0], lines[0]
        assert "/." not in lines[0], "the message names a hidden temporary file"
        for fragment in case.fragments:
            assert fragment in lines[0], lines[0]
    if case.out is not None:
        left = [p for p in (tmp_path / case.out).rglob("*") if p.is_file()]
        assert not left, f"half-written output: {left}"
    temporaries = [*tmp_path.rglob("*.tmp"), *tmp_path.rglob(".*.png")]
    assert not temporaries, temporaries
    if case.check is not None:
        case.check(tmp_path)


# --- beyond the table -------------------------------------------------------------------------


def test_mask_values_other_than_255_mean_defect_from_half_the_maximum(
    world: World, tmp_path: Path
) -> None:
    """Decision (issue 17): a pixel is defect where it reaches half the mask's maximum. A
    mask at 100-200 with a rim and specks at 1-60 explains exactly as its 0/255 twin."""
    args = b_mask_odd_values(tmp_path, world, None)
    odd = RUNNER.invoke(app, [*args, "--format", "json"])
    plain = RUNNER.invoke(
        app, [*_explain(world, world.image, "--mask", str(world.mask)), "--format", "json"]
    )
    assert odd.exit_code == plain.exit_code == 0, odd.output + plain.output
    first, second = json.loads(odd.stdout), json.loads(plain.stdout)
    assert first["regions"], "the blob mask must give at least one region"
    assert first["regions"] == second["regions"]


def _cmyk_jpeg(gray: np.ndarray, path: Path) -> None:
    Image.fromarray(gray).convert("CMYK").save(path, quality=100)


def _float_tiff(gray: np.ndarray, path: Path) -> None:
    tifffile.imwrite(path, gray.astype(np.float32) / 255.0)


def _int32_tiff(gray: np.ndarray, path: Path) -> None:
    Image.fromarray((gray.astype(np.int64) * (2**31 - 1) // 255).astype(np.int32)).save(path)


def _palette_tiff(gray: np.ndarray, path: Path) -> None:
    """Indices that are not the gray values: a shuffled gray palette."""
    order = np.random.default_rng(0).permutation(256)  # index i shows gray order[i]
    index_of = np.argsort(order).astype(np.uint8)
    image = Image.fromarray(index_of[gray], mode="P")
    image.putpalette(np.repeat(order.astype(np.uint8), 3).tobytes())
    image.save(path)


@pytest.mark.parametrize(
    ("write", "name", "tolerance"),
    [
        (_cmyk_jpeg, "cmyk.jpg", 0.5),
        (_float_tiff, "float.tif", 1e-3),
        (_int32_tiff, "int32.tif", 1e-3),
        (_palette_tiff, "palette.tif", 1e-9),
    ],
    ids=["cmyk_jpeg", "float_0_1_tiff", "int32_tiff", "palette_tiff"],
)
def test_one_picture_in_any_encoding_explains_alike(world, tmp_path, write, name, tolerance):
    """Issue 16, item 7: CMYK, 0-1 float, int32 and palette files of world.image measure
    the regions of its mask as the 8-bit PNG does (CMYK JPEG: within its loss)."""
    gray = np.asarray(Image.open(world.image))
    write(gray, tmp_path / name)

    def measured(image: Path) -> list[dict]:
        args = [*_explain(world, image, "--mask", str(world.mask)), "--format", "json"]
        result = RUNNER.invoke(app, args)
        assert result.exit_code == 0, result.output
        return [region["properties"] for region in json.loads(result.stdout)["regions"]]

    expected, got = measured(world.image), measured(tmp_path / name)
    assert expected and len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert want.keys() == have.keys()
        for prop in want:
            assert have[prop]["raw"] == pytest.approx(want[prop]["raw"], abs=tolerance), prop


def test_huge_image_is_refused_with_little_memory(tmp_path: Path) -> None:
    """A 20,000 x 20,000 PNG and TIFF are refused from the header: peak RSS stays small.

    Decoding either would need at least 400 MB (uint8) and 3.2 GB as float64;
    the subprocess reads both and reports its peak resident memory (Linux /proc).
    """
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux /proc to measure the peak resident memory")
    png = write_huge_png(tmp_path / "huge.png")
    tif = write_huge_tiff(tmp_path / "huge.tif")
    script = (
        "import sys\n"
        "from kist_train.data import read_gray, read_mask\n"
        "from kist_train.decoding import read_float_map\n"
        "from kistrules.errors import DataError\n"
        "from pathlib import Path\n"
        "refused = 0\n"
        "for read, path in ((read_gray, sys.argv[1]), (read_mask, sys.argv[1]),\n"
        "                   (read_gray, sys.argv[2]), (read_float_map, Path(sys.argv[2]))):\n"
        "    try:\n"
        "        read(path)\n"
        "    except DataError:\n"
        "        refused += 1\n"
        # VmHWM, not ru_maxrss: the latter keeps the forked parent's (pytest + torch) peak.
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(refused, int(peak.split()[1]) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(png), str(tif)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    refused, peak_mb = map(int, done.stdout.split())
    assert refused == 4
    assert peak_mb < 200, f"peak RSS {peak_mb} MB: the pixels were decoded"


def test_image_at_the_limit_is_read(tmp_path: Path) -> None:
    """The limit refuses only what exceeds it: an 8192 x 4 strip is decoded normally."""
    from kist_train.data import MAX_PIXELS, check_image_size, read_gray

    assert MAX_PIXELS == 8192 * 8192
    path = _png(tmp_path / "strip.png", np.full((4, 8192), 9))
    check_image_size(path)
    assert read_gray(path).shape == (4, 8192)


def test_console_script_prints_one_line(tmp_path: Path) -> None:
    """The installed `kistrules` entry point (not CliRunner): one line, exit 2, no traceback."""
    if not KISTRULES.exists():
        pytest.skip(f"{KISTRULES} is not installed")
    args = b_rulebook_100mb(tmp_path, None, None)
    done = subprocess.run(
        [str(KISTRULES), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "huge.rules" in lines[0] and "limit" in lines[0], lines


def test_fmt_never_writes_past_the_size_limit(tmp_path: Path, monkeypatch) -> None:
    """Formatting grows this file past a (lowered) limit: fmt says so and leaves it untouched.

    `check` would refuse the result, so fmt treats it as a file with errors: that
    line, the summary, exit 1, and the next files are still formatted.
    """
    import kistrules.api

    text = "".join(f"IF gray is low THEN anomalous (.{i % 9 + 1})\n" for i in range(6))
    grows, other = tmp_path / "grows.rules", tmp_path / "other.rules"
    grows.write_text(text)
    other.write_text(MESSY)
    monkeypatch.setattr(kistrules.api, "MAX_RULEBOOK_BYTES", len(text.encode()) + 2)
    code, out, err = _run_in_process(["fmt", str(grows), str(other)])
    assert code == 1, err
    assert "Traceback" not in out + err
    (line,) = [line for line in err.splitlines() if "grows.rules" in line]
    assert line.startswith("error: ") and "above the rulebook limit" in line, line
    assert grows.read_text() == text
    assert other.read_text() == TIDY
