"""Precise BatchNorm statistics: averaged over augmented normal images, weights untouched,
stored in every phase's checkpoint, and applied to initial models saved before them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rich.console import Console

import kist_train.engine as engine
from kist_train.batchnorm import recompute_batchnorm
from kist_train.checkpoints import load_checkpoint
from kist_train.data import load_dataset, working_tensor
from kist_train.engine import train
from kist_train.models import ModelConfig, build_model
from kist_train.phase_store import read_log
from tests.train import synthetic as syn


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    syn.make_dataset(root / "d", n_good=12, n_anomalous=3, anomalous_masks=True)
    return root / "d", syn.write_rulebook(root / "blob.rules")


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


def _batchnorm_buffers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def _recomputed(run_dir, phase: str, normal: torch.Tensor, batch_size: int) -> dict:
    """The phase's weights with their BatchNorm statistics re-estimated from scratch."""
    state, meta, _ = load_checkpoint(run_dir, phase)
    model = build_model(ModelConfig.from_dict(meta["model"]))
    model.load_state_dict(state)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
    model.eval()
    recompute_batchnorm(model, normal, batch_size=batch_size)
    return _batchnorm_buffers(model.state_dict())


def test_statistics_are_the_plain_average_over_the_augmented_images():
    # Constant images stay constant under flips and reflected rotations, so the
    # estimate is known in closed form: one batch holds every pixel of every image.
    values = torch.tensor([0.1, 0.3, 0.35, 0.8, 0.9, 0.2])
    normal = values.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    layer = torch.nn.BatchNorm2d(1)
    model = torch.nn.Sequential(layer).eval()
    recompute_batchnorm(model, normal, batch_size=len(values))
    pixels = np.repeat(values.double().numpy(), 64)
    assert float(layer.running_mean) == pytest.approx(pixels.mean(), abs=1e-6)
    assert float(layer.running_var) == pytest.approx(pixels.var(ddof=1), rel=1e-5)
    assert not model.training and layer.momentum == 0.1  # mode and momentum restored


def test_weights_and_random_state_are_untouched():
    torch.manual_seed(3)
    model = build_model(ModelConfig(kind="cae", width=4, depth=2))
    normal = torch.rand(10, 1, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    recompute_batchnorm(model, normal, batch_size=4)
    after = model.state_dict()
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in before.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(value, after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in _batchnorm_buffers(before))


def test_every_phase_checkpoint_holds_the_precise_statistics(dataset, tmp_path):
    config = syn.tiny_config(dataset, tmp_path / "kist", iterations=1)
    run = train(config, console=_quiet(), progress=False)
    normal = working_tensor(load_dataset(config.data).train_good, config.size)
    for phase in ("initial", "update_1"):
        stored = _batchnorm_buffers(load_checkpoint(run, phase)[0])
        expected = _recomputed(run, phase, normal, config.batch_size)
        assert stored.keys() == expected.keys() and stored
        for key in stored:
            torch.testing.assert_close(stored[key], expected[key], rtol=1e-5, atol=1e-7)
    log = read_log(run)
    assert [e.get("batchnorm_recomputed") for e in log] == [True, None, True]


def test_an_initial_model_from_before_gets_settled_when_an_arm_starts(
    dataset, tmp_path, monkeypatch
):
    """--init-from a run saved without precise statistics: the arm recomputes them (and
    mu_e, sigma_e) and ends exactly where a run trained with them from the start ends."""
    fresh = syn.tiny_config(dataset, tmp_path / "fresh", baseline=True, rulebook=None)
    train(fresh, console=_quiet(), progress=False, stop_after="initial")

    settle = engine._settle_model

    def old_settle(*args):  # the engine as it was: running averages kept
        figures = settle(*args)
        del figures["batchnorm_recomputed"]
        return figures

    old = syn.tiny_config(dataset, tmp_path / "old", baseline=True, rulebook=None)
    with monkeypatch.context() as patch:
        patch.setattr("kist_train.batchnorm.recompute_batchnorm", lambda *a, **k: None)
        patch.setattr(engine, "_settle_model", old_settle)
        train(old, console=_quiet(), progress=False, stop_after="initial")
    old_entry = read_log(old.out)[0]
    assert "batchnorm_recomputed" not in old_entry
    assert old_entry["mu_e"] != read_log(fresh.out)[0]["mu_e"]  # the step matters

    arm = train(
        syn.tiny_config(dataset, tmp_path / "arm", init_from=str(old.out)),
        console=_quiet(),
        progress=False,
        stop_after="initial",
    )
    fresh_state, arm_state = (
        load_checkpoint(fresh.out, "initial")[0],
        load_checkpoint(arm, "initial")[0],
    )
    for key in fresh_state:
        torch.testing.assert_close(arm_state[key], fresh_state[key], rtol=1e-5, atol=1e-7)
    entry, fresh_entry = read_log(arm)[0], read_log(fresh.out)[0]
    assert entry["batchnorm_recomputed"] and entry["init_from"] == str(old.out)
    assert entry["mu_e"] == pytest.approx(fresh_entry["mu_e"], rel=1e-5)
    meta = load_checkpoint(arm, "initial")[1]  # what the arm's labelling reads
    assert meta["mu_e"] == pytest.approx(fresh_entry["mu_e"], rel=1e-5)
