"""DDP with gloo on 2 CPU processes: ranks agree, and agree with a 1-process run.

Two levels. (1) One training step, spawned in 2 processes: the gradients and BatchNorm
running statistics of the sharded step (GlobalBatchNorm2d, weighted shard losses, DDP
averaging) equal those of the whole batch in one process up to float32 rounding
(rtol 1e-4: the sums run in another order). (2) `kistrules train --nproc 2` (torchrun,
gloo) on the tiny synthetic set: every phase's log entry carries each rank's weight
hash, which must be identical, and equal to the hash of rank 0's checkpoint; the run is
split in two sessions (--stop-after, --resume); its weights after every phase match a
1-process run with the same global batch within the tolerance below.

Why that tolerance: the float32 rounding differences (~1e-7 relative) do not stay that
small through Adam. Adam divides each update by the running RMS of the gradient, so a
parameter whose gradient is near zero moves by about +-lr whatever its size: a rounding
difference that flips such a gradient's sign changes that parameter by up to 2 * lr per
step. So the bound is max |w2 - w1| <= 2 * lr * steps per parameter, and, since that
happens to few parameters, a relative L2 distance of the weight vectors below 1e-2
(measured: about 2e-4 after the initial phase, 6e-4 at the end, on a shared machine).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from kist_train.checkpoints import load_checkpoint, load_model_from_run
from kist_train.config import TrainConfig
from kist_train.distributed import Distributed, check_divisible, weights_sha256
from kist_train.engine import phase_names, train
from kist_train.phase_store import read_log
from kistrules.errors import UsageError
from tests.train import synthetic as syn

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


# ----------------------------------------------------------------- pure pieces


def test_shards_are_disjoint_and_cover_everything():
    for n in range(0, 13):
        for world in (1, 2, 3, 4):
            parts = [Distributed(rank=r, world_size=world).shard(n) for r in range(world)]
            covered = [i for part in parts for i in range(n)[part]]
            assert covered == list(range(n))
            sizes = Distributed(rank=0, world_size=world).shard_sizes(n)
            assert sizes == [len(range(n)[part]) for part in parts]
            assert max(sizes) - min(sizes) <= 1


def test_batch_must_split_evenly():
    check_divisible(32, 8, 4)
    with pytest.raises(UsageError, match="--batch-size 6 must be divisible by the 4"):
        check_divisible(6, 2, 4)
    with pytest.raises(UsageError, match="--anomalous-per-batch 3"):
        check_divisible(8, 3, 2)


# ----------------------------------------------------------------- one step, spawned

_STEP = """
import os, sys, torch, torch.distributed as dist
from safetensors.torch import save_file
from kist_train import distributed as d
from kist_train.models import ModelConfig, build_model
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
ctx, device = d.setup("cpu", 6, 2)
torch.manual_seed(0)
model = build_model(ModelConfig(kind=sys.argv[2], width=4, depth=2, skip_from=1))
net = d.wrap(ctx, model, torch.device("cpu"))
gen = torch.Generator().manual_seed(1)
x = torch.rand((7, 1, 16, 16), generator=gen)          # 7 = uneven shards (4 + 3)
pl = torch.rand((7, 16, 16), generator=gen) > 0.7
is_normal = torch.arange(7) < 4                         # 4 normal (2 + 2), 3 anomalous (2 + 1)
if sys.argv[3] == "initial":
    loss, logged = d.initial_step_loss(ctx, net, x)
    extra = [logged]
else:
    loss, logged = d.update_step_loss(
        ctx, net, x, is_normal, pl, n_normal=4, lam=1.0, push="margin", margin=0.3
    )
    extra = logged
loss.backward()
out = {"grad." + k: p.grad.contiguous() for k, p in model.named_parameters()}
out.update({"state." + k: v.contiguous() for k, v in model.state_dict().items()})
out["logged"] = torch.tensor(extra, dtype=torch.float64)
save_file(out, f"{sys.argv[1]}/rank{rank}.safetensors")
ctx.close()
"""


def _reference_step(kind: str, phase: str) -> dict[str, torch.Tensor]:
    from kist_train.losses import contrastive_reconstruction_loss, reconstruction_loss
    from kist_train.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, width=4, depth=2, skip_from=1))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((7, 1, 16, 16), generator=gen)
    pl = torch.rand((7, 16, 16), generator=gen) > 0.7
    is_normal = torch.arange(7) < 4
    if phase == "initial":
        loss = reconstruction_loss(model(x), x)
        logged = [float(loss.detach())]
    else:
        parts = contrastive_reconstruction_loss(
            model(x), x, is_normal, pl, lam=1.0, push="margin", margin=0.3
        )
        loss = parts.total
        logged = [float(parts.total.detach()), float(parts.normal.detach())]
        logged.append(float(parts.push.detach()))
    loss.backward()
    out = {"grad." + k: p.grad for k, p in model.named_parameters()}
    out.update({"state." + k: v for k, v in model.state_dict().items()})
    out["logged"] = torch.tensor(logged, dtype=torch.float64)
    return out


@pytest.mark.parametrize(("kind", "phase"), [("cae", "initial"), ("unet", "update")])
def test_one_sharded_step_equals_the_whole_batch(tmp_path, kind, phase):
    from safetensors.torch import load_file

    script = tmp_path / "step.py"
    script.write_text(_STEP)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        str(script),
        str(tmp_path),
        kind,
        phase,
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    expected = _reference_step(kind, phase)
    assert ranks[0].keys() == expected.keys()
    for key, want in expected.items():
        # DDP averaged the gradients: both ranks hold the same ones.
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
        got = ranks[0][key]
        if key.endswith("num_batches_tracked"):
            assert torch.equal(got, want)
            continue
        scale = float(want.double().abs().max()) or 1.0
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-5 * scale)


# ----------------------------------------------------------------- a whole run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    syn.make_dataset(root / "d", n_good=12, n_anomalous=5, anomalous_masks=True)
    return root / "d", syn.write_rulebook(root / "blob.rules")


def _config(dataset, out: Path) -> TrainConfig:
    return syn.tiny_config(dataset, out, threads=1)


def _vector(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            weights[k].double().flatten()
            for k in sorted(weights)
            if not k.endswith("num_batches_tracked")
        ]
    )


def test_two_gloo_processes_agree_and_match_one_process(dataset, tmp_path):
    config = _config(dataset, tmp_path / "ddp")
    cmd = [sys.executable, "-c", "from kistrules.cli import main; main()"]  # `kistrules`
    args = [
        "train",
        "--data",
        config.data,
        "--out",
        config.out,
        "--rulebook",
        config.rulebook,
        *syn.tiny_cli_args(threads=1),
        "--no-progress",
        "--nproc=2",
    ]
    # Two sessions: a distributed run resumes like a 1-process one.
    for extra in (["--stop-after=update_1"], ["--resume"]):
        done = subprocess.run(
            cmd + args + extra, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().splitlines() == [config.out]  # rank 0 alone prints
        assert "Traceback" not in done.stderr
    assert "resuming" in done.stderr and "update_2:" in done.stderr

    one = train(
        dataclasses.replace(config, out=str(tmp_path / "one")),
        progress=False,
        console=Console(stderr=True, quiet=True),
    )
    log2, log1 = read_log(config.out), read_log(one)
    assert [e["phase"] for e in log2] == phase_names(2)
    for entry in log2:
        hashes = entry["weights_sha256_per_rank"]
        assert len(hashes) == 2 and hashes[0] == hashes[1], entry["phase"]
    # Adam steps so far: 3 epochs x 2 batches, then 3 batches (4 normal + 2 anomalous) each.
    for phase, steps in (("initial", 6), ("update_1", 9), ("update_2", 12)):
        entry = next(e for e in log2 if e["phase"] == phase)
        model, _ = load_model_from_run(config.out, phase=phase, device="cpu")
        assert weights_sha256(model) == entry["weights_sha256_per_rank"][0]
        w2 = _vector(load_checkpoint(config.out, phase)[0])
        w1 = _vector(load_checkpoint(one, phase)[0])
        assert float((w2 - w1).norm() / w1.norm()) < 1e-2, phase
        assert float((w2 - w1).abs().max()) <= 2 * 1e-3 * steps, phase
    for e2, e1 in zip(log2, log1, strict=True):
        assert e2["mu_e"] == pytest.approx(e1["mu_e"], rel=1e-3)
        assert e2["sigma_e"] == pytest.approx(e1["sigma_e"], rel=1e-3)
    labels2, labels1 = log2[1]["labels"], log1[1]["labels"]
    assert labels1["images"] == 5 and labels1["pixels_labelled"] > 0
    assert labels2["images"] == labels1["images"]  # a count of files
    # Regions come from thresholding residual maps that the sharded and the whole-batch
    # computations round differently in the last bits (and differently on AVX2 and
    # AVX-512): a region at a threshold may split or merge, so counts agree within a
    # stated tolerance, not exactly.
    assert abs(labels2["images_labelled"] - labels1["images_labelled"]) <= 1
    assert labels2["regions"] == pytest.approx(labels1["regions"], rel=0.02, abs=2)
    assert labels2["fired_per_rule"].keys() == labels1["fired_per_rule"].keys()
    for rule, fired in labels1["fired_per_rule"].items():
        assert labels2["fired_per_rule"][rule] == pytest.approx(fired, rel=0.05, abs=2), rule
    assert labels2["pixels_labelled"] == pytest.approx(labels1["pixels_labelled"], rel=0.05)
    np.testing.assert_allclose(labels2["thresholds"], labels1["thresholds"], rtol=1e-3)
    assert labels2["precision"] == pytest.approx(labels1["precision"], abs=0.05)
    # The checkpoint is the plain model's (no DDP "module." prefix, plain BatchNorm keys).
    assert load_checkpoint(config.out)[0].keys() == load_checkpoint(one)[0].keys()


def test_nproc_refuses_uneven_batches_in_one_line(dataset, tmp_path):
    from typer.testing import CliRunner

    from kistrules.cli import app

    data, rulebook = dataset
    base = ["train", "--data", str(data), "--rulebook", str(rulebook), "--device", "cpu"]
    for extra, message in (
        (
            ["--batch-size", "6", "--anomalous-per-batch", "2", "--nproc", "4"],
            "--batch-size 6 must be divisible by the 4",
        ),
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
    ):
        result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "x"), *extra])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
