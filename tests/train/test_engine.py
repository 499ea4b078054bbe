"""The self-training loop on a tiny synthetic data set: phases, eq. 9, baseline, resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import kist_train.engine as engine
from kist_train.checkpoints import complete_phases, load_checkpoint
from kist_train.config import TrainConfig
from kist_train.data import load_dataset, working_tensor
from kist_train.engine import phase_names, train
from kist_train.models import ModelConfig, build_model
from kist_train.phase_store import read_log
from kistrules.errors import CheckpointError, UsageError
from tests.train import synthetic as syn


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    syn.make_dataset(root / "d", n_good=12, n_anomalous=3, anomalous_masks=True)
    rulebook = syn.write_rulebook(root / "blob.rules")
    return root / "d", rulebook


def _config(dataset, out, **changes) -> TrainConfig:
    return syn.tiny_config(dataset, out, **changes)


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


def _weights(run_dir, phase=None):
    state, _, _ = load_checkpoint(run_dir, phase)
    return state


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_kist_run_end_to_end(dataset, tmp_path):
    console = Console(stderr=True, record=True, width=200)
    run = train(_config(dataset, tmp_path / "kist"), console=console, progress=True)
    text = console.export_text()
    assert "iteration 1: mu_e=" in text and "regions fired" in text and "update_2:" in text
    assert set(complete_phases(run)) == set(phase_names(2))
    log = read_log(run)
    assert [e["phase"] for e in log] == phase_names(2)
    assert log[0]["loss_per_epoch"][-1] < log[0]["loss_per_epoch"][0]
    labels = log[1]["labels"]
    assert log[1]["labelled"] and labels["images"] == 3
    assert labels["pixels_labelled"] > 0 and labels["regions_fired"] > 0
    assert labels["precision"] is not None and 0 <= labels["recall"] <= 1
    assert log[3]["frozen"] and log[3]["labels"] == labels
    assert log[2]["lam"] == 1.0 and log[2]["loss_push"] != 0.0
    _, meta, optim = load_checkpoint(run)
    assert meta["phase"] == "update_2" and optim is not None
    assert meta["rulebook_text"] == Path(dataset[1]).read_text()
    assert meta["margin"] == pytest.approx(meta["initial_mu_e"] + 3.0 * meta["initial_sigma_e"])


def test_eq9_thresholds_come_from_the_initial_model(dataset, tmp_path):
    """Recompute mu_e, sigma_e of the 'initial' checkpoint with numpy; eq. 9 by hand."""
    config = _config(dataset, tmp_path / "kist", iterations=1)
    run = train(config, console=_quiet(), progress=False)
    state, meta, _ = load_checkpoint(run, "initial")
    model = build_model(ModelConfig.from_dict(meta["model"]))
    model.load_state_dict(state)
    model.eval()
    x = working_tensor(load_dataset(config.data).train_good, config.size)
    with torch.no_grad():
        e = ((model(x) - x) ** 2).double().numpy()
    mu, sigma = float(e.mean()), float(e.std())
    entry = read_log(run)[1]
    assert entry["mu_e"] == pytest.approx(mu, rel=1e-9)
    assert entry["sigma_e"] == pytest.approx(sigma, rel=1e-6)
    expected = [mu + n * 0.3 * sigma for n in range(4, 11)]  # ceil(1/0.3)=4 .. floor(3/0.3)=10
    np.testing.assert_allclose(entry["labels"]["thresholds"], expected, rtol=1e-6)


def test_baseline_is_the_same_loop_with_lambda_zero(dataset, tmp_path):
    kist = train(_config(dataset, tmp_path / "k"), console=_quiet(), progress=False)
    base = train(_config(dataset, tmp_path / "b", baseline=True), console=_quiet(), progress=False)
    # Same seed, same initial phase; the update phases differ only through lambda.
    _assert_same(_weights(kist, "initial"), _weights(base, "initial"))
    log = read_log(base)
    assert [e["phase"] for e in log] == phase_names(2)
    assert log[2]["lam"] == 0.0 and log[2]["loss_push"] == 0.0
    assert log[2]["loss_total"] == log[2]["loss_normal"]
    final_k, final_b = _weights(kist), _weights(base)
    assert any(not torch.equal(final_k[k], final_b[k]) for k in final_k)
    # Labels do not steer the control: without a rulebook it trains identically.
    plain = train(
        _config(dataset, tmp_path / "p", baseline=True, rulebook=None),
        console=_quiet(),
        progress=False,
    )
    _assert_same(_weights(base), _weights(plain))


def test_label_erosion_pushes_the_interior_of_the_same_labels(dataset, tmp_path):
    """The run trains on the interior of exactly the labels the rulebook gave; the log keeps
    the rulebook's figures and adds the interior's."""
    from kist_train.checkpoints import read_checkpoint
    from kist_train.pseudo_labels import interior

    def labels_of(run):
        return read_checkpoint(run, "labels_1").extra["labels"].to(torch.bool)

    plain = train(_config(dataset, tmp_path / "p", iterations=1), console=_quiet(), progress=False)
    console = Console(stderr=True, record=True, width=200)
    eroded = train(
        _config(dataset, tmp_path / "e", iterations=1, label_erosion=1),
        console=console,
        progress=False,
    )
    assert labels_of(plain).any()
    assert torch.equal(labels_of(eroded), interior(labels_of(plain), 1))
    plain_entry, eroded_entry = read_log(plain)[1]["labels"], read_log(eroded)[1]["labels"]
    assert "interior" not in plain_entry
    inside = eroded_entry.pop("interior")
    assert eroded_entry == plain_entry
    assert inside["pixels"] == int(labels_of(eroded).sum()) < plain_entry["pixels_labelled"]
    assert 0 <= inside["recall"] <= plain_entry["recall"]
    assert f"interior {inside['pixels']} px" in console.export_text()


def test_label_min_sigmas_pushes_only_labels_that_look_anomalous(dataset, tmp_path):
    """The run trains on the labelled pixels whose own residual (initial model) reaches
    mu_e + k sigma_e: a part of the labels, and exactly those pixels."""
    from kist_train.checkpoints import read_checkpoint
    from kist_train.predict import load_run
    from kist_train.pseudo_labels import interior
    from kist_train.residuals import residuals_of

    def labels_of(run):
        return read_checkpoint(run, "labels_1").extra["labels"].to(torch.bool)

    plain = train(_config(dataset, tmp_path / "p", iterations=1), console=_quiet(), progress=False)
    floored = train(
        _config(dataset, tmp_path / "f", iterations=1, label_min_sigmas=2.0),
        console=_quiet(),
        progress=False,
    )
    inside = interior(labels_of(plain), 0)  # no erosion: the tiny blobs have no interior
    got = labels_of(floored)
    assert got.any() and not torch.equal(got, inside)
    config = _config(dataset, tmp_path / "f")
    initial = load_run(floored, device="cpu", phase="initial")
    x = working_tensor(load_dataset(config.data).train_anomalous, config.size)
    e = residuals_of(initial.model, x, batch_size=max(config.batch_size, 64))  # as labelling
    floor = initial.mu_e + 2.0 * initial.sigma_e
    assert torch.equal(got, inside & (e >= floor))
    entry = read_log(floored)[1]["labels"]["interior"]
    assert entry["pixels"] == int(got.sum()) < int(inside.sum())


def test_unet_paper_push_and_recomputed_labels(dataset, tmp_path):
    config = _config(
        dataset, tmp_path / "r", push="paper", freeze_labels=False, model="unet", skip_from=1
    )
    log = read_log(train(config, console=_quiet(), progress=False))
    assert log[2]["loss_push"] < 0  # eq. 13 as printed: -lambda * mean labelled residual
    assert log[3]["labelled"] and not log[3].get("frozen")


def test_resume_gives_the_same_weights(dataset, tmp_path):
    full = train(_config(dataset, tmp_path / "full"), console=_quiet(), progress=False)
    part_config = _config(dataset, tmp_path / "part")
    train(part_config, console=_quiet(), progress=False, stop_after="labels_1")
    assert complete_phases(tmp_path / "part") == ["initial", "labels_1"]
    train(part_config, resume=True, console=_quiet(), progress=False)
    _assert_same(_weights(full), _weights(tmp_path / "part"))
    assert [e["phase"] for e in read_log(tmp_path / "part")] == phase_names(2)


def test_resume_after_a_crash_inside_a_phase(dataset, tmp_path, monkeypatch):
    full = train(_config(dataset, tmp_path / "full"), console=_quiet(), progress=False)
    config = _config(dataset, tmp_path / "crash")
    real = engine._run_update
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_update", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(config, console=_quiet(), progress=False)
    monkeypatch.setattr(engine, "_run_update", real)
    assert complete_phases(tmp_path / "crash")[-1] == "labels_2"
    train(config, resume=True, console=_quiet(), progress=False)
    _assert_same(_weights(full), _weights(tmp_path / "crash"))


def test_run_dir_is_never_overwritten_without_force(dataset, tmp_path):
    config = _config(dataset, tmp_path / "run", iterations=1, epochs=1)
    train(config, console=_quiet(), progress=False)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(config, console=_quiet(), progress=False)
    with pytest.raises(CheckpointError, match="options differ: lr"):
        train(dataclasses.replace(config, lr=0.5), resume=True, console=_quiet(), progress=False)
    train(dataclasses.replace(config, seed=3), force=True, console=_quiet(), progress=False)
    _, meta, _ = load_checkpoint(tmp_path / "run")
    assert meta["config"]["seed"] == 3
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a run directory"):
        train(dataclasses.replace(config, out=str(other)), force=True, console=_quiet())
    assert (other / "precious.txt").read_text() == "keep me"


def test_plain_mvtec_category_equals_baseline(tmp_path):
    root = syn.make_dataset(tmp_path / "mvtec", n_good=8, n_anomalous=0)
    rules = syn.write_rulebook(tmp_path / "b.rules")
    lines = []
    console = Console(file=None, stderr=True, record=True, quiet=False, width=200)
    data = (root, rules)
    kist = train(_config(data, tmp_path / "k"), console=console, progress=False)
    lines = console.export_text()
    assert "KIST equals the baseline" in lines
    base = train(_config(data, tmp_path / "b", baseline=True), console=_quiet(), progress=False)
    _assert_same(_weights(kist), _weights(base))


def test_rulebook_required_unless_baseline(dataset, tmp_path):
    with pytest.raises(UsageError, match="--rulebook is required"):
        train(_config(dataset, tmp_path / "x", rulebook=None), console=_quiet())


@pytest.mark.parametrize("value", [-0.5, float("nan")])
def test_label_min_sigmas_must_be_a_number_at_least_zero(dataset, tmp_path, value):
    with pytest.raises(UsageError, match="label"):
        train(_config(dataset, tmp_path / "x", label_min_sigmas=value), console=_quiet())


def test_init_from_shares_the_initial_model_exactly(dataset, tmp_path):
    """Both arms from one initial run end where uninterrupted runs end, bit for bit."""
    full = train(_config(dataset, tmp_path / "full"), console=_quiet(), progress=False)
    init = _config(dataset, tmp_path / "init", baseline=True, rulebook=None)
    train(init, console=_quiet(), progress=False, stop_after="initial")
    shared = train(
        _config(dataset, tmp_path / "shared", init_from=str(tmp_path / "init")),
        console=_quiet(),
        progress=False,
    )
    _assert_same(_weights(full), _weights(shared))
    log = read_log(shared)
    assert [e["phase"] for e in log] == phase_names(2)
    assert log[0]["init_from"] == str(tmp_path / "init")
    assert log[1]["labels"] == read_log(full)[1]["labels"]
    with pytest.raises(UsageError, match="options differ: epochs"):
        train(
            _config(dataset, tmp_path / "bad", epochs=2, init_from=str(tmp_path / "init")),
            console=_quiet(),
            progress=False,
        )
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    with pytest.raises(UsageError, match="not a run directory"):
        train(
            _config(dataset, tmp_path / "bad2", init_from=str(tmp_path / "nowhere")),
            console=_quiet(),
            progress=False,
        )


def test_runs_saved_before_skip_from_keep_their_architecture():
    old_unet = {"data": "d", "out": "o", "model": "unet", "width": 4, "depth": 2}
    assert TrainConfig.from_dict(old_unet).skip_from == 0  # skips at every level, as then
    assert TrainConfig.from_dict({**old_unet, "model": "cae"}).skip_from == 2  # unused by the CAE


# ----------------------------------------------------------------- what resume reads


def _reseal(path: Path, edit) -> None:
    """Edit a checkpoint record and seal it again: what the seal cannot catch."""
    import json

    from kist_train.sealed_json import seal

    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(seal(record)))


def test_resume_refuses_a_checkpoint_of_another_run(dataset, tmp_path):
    """A record is whole and sealed, but another run's: refused by its config."""
    import json
    import shutil

    for name, seed in (("a", 0), ("b", 3)):
        config = _config(dataset, tmp_path / name, seed=seed)
        train(config, console=_quiet(), progress=False, stop_after="labels_1")
    ours, theirs = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    for path in ours.glob("labels_1.*"):
        path.unlink()
    record = json.loads((theirs / "labels_1.json").read_text())
    for name in ("labels_1.json", record["tensors"]):
        shutil.copy(theirs / name, ours / name)
    with pytest.raises(CheckpointError, match=r"labels_1\.json: belongs to another run") as err:
        train(_config(dataset, tmp_path / "a"), resume=True, console=_quiet(), progress=False)
    assert "options differ: seed" in str(err.value)


class _Crash(Exception):
    pass


@pytest.fixture
def interrupted(dataset, tmp_path, monkeypatch):
    """A run killed in its initial phase's third epoch, with a partial checkpoint of two."""
    config = _config(dataset, tmp_path / "run", checkpoint_minutes=1e-9)
    real, calls = engine.augment_normal, [0]

    def crash(x, gen):
        calls[0] += 1
        if calls[0] == 2 * 2 + 1:  # 12 images, batch 6: 2 batches per epoch
            raise _Crash
        return real(x, gen)

    monkeypatch.setattr(engine, "augment_normal", crash)
    with pytest.raises(_Crash):
        train(config, console=_quiet(), progress=False)
    monkeypatch.undo()
    assert (
        load_checkpoint(tmp_path / "run" / "partial", "initial")[1]["partial"]["epochs_done"] == 2
    )
    return config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["partial"].update(epochs_done=99), "lacks its epoch"),
        (lambda m: m["partial"].update(epochs_done=True), "lacks its epoch"),
        (lambda m: m["partial"]["loss_per_epoch"].pop(), "is malformed"),
        (lambda m: m.update(phase="update_1"), "holds phase 'update_1'"),
        (lambda m: m["log"].append({"phase": "initial"}), "log does not list"),
        (lambda m: m.update(sigma_e=-1.0), "sigma_e must be >= 0"),
        (lambda m: m["config"].update(lr="fast"), "'lr' must be float"),
    ],
)
def test_resume_validates_every_field_it_reads(interrupted, edit, message):
    record = Path(interrupted.out) / "partial" / "checkpoints" / "initial.json"
    _reseal(record, lambda r: edit(r["meta"]))
    with pytest.raises(CheckpointError, match=message) as err:
        train(interrupted, resume=True, console=_quiet(), progress=False)
    assert str(record) in str(err.value) and "\n" not in str(err.value)


def test_resume_validates_the_stored_tensors(interrupted):
    """Generator states of the wrong size, saved as a whole checkpoint: refused, named."""
    from kist_train.checkpoints import model_of, read_checkpoint, save_checkpoint

    partial = Path(interrupted.out) / "partial"
    checkpoint = read_checkpoint(partial, "initial")
    extra = {**checkpoint.extra, "normal_gen": torch.zeros(3, dtype=torch.uint8)}
    save_checkpoint(
        partial,
        "initial",
        model_of(checkpoint),
        checkpoint.meta,
        optimizer_state=checkpoint.optimizer,
        extra=extra,
    )
    with pytest.raises(
        CheckpointError, match="normal_gen is missing or has the wrong shape"
    ) as err:
        train(interrupted, resume=True, console=_quiet(), progress=False)
    assert str(partial / "checkpoints" / "initial.json") in str(err.value)


def test_channels_last_is_a_runtime_layout_of_the_same_training(dataset, tmp_path, monkeypatch):
    """--channels-last trains in NHWC order (weights, activations, Adam state), stores
    checkpoints in the plain layout, and may be switched on at resume like --threads.
    The computation is the same (tests/train/test_models.py compares the gradients);
    rounding differs, and Adam with BatchNorm lets that grow over the epochs, so only
    the first epoch's loss is compared here (a 1 % change of the learning rate moves
    it by 4e-4, relative)."""
    import kist_train.phase_store as store

    layouts = []
    save_phase = store.save_phase

    def spy(run_dir, phase, state, *args, **kwargs):
        weight = state.model.down[0][0].weight  # (8, 4, 4, 4): the two orders differ
        layouts.append(weight.is_contiguous(memory_format=torch.channels_last))
        return save_phase(run_dir, phase, state, *args, **kwargs)

    monkeypatch.setattr(store, "save_phase", spy)
    plain = train(_config(dataset, tmp_path / "plain"), console=_quiet(), progress=False)
    assert layouts and not any(layouts)
    layouts.clear()
    nhwc = train(
        _config(dataset, tmp_path / "nhwc", channels_last=True), console=_quiet(), progress=False
    )
    assert layouts and all(layouts)
    first = [read_log(run)[0]["loss_per_epoch"][0] for run in (plain, nhwc)]
    assert first[1] == pytest.approx(first[0], rel=2e-5)
    assert all(tensor.is_contiguous() for tensor in _weights(nhwc).values())
    for entry in read_log(nhwc):  # the engine says what settling each phase cost
        assert ("settle_seconds" in entry) == (not entry["phase"].startswith("labels_"))

    layouts.clear()
    switched = _config(dataset, tmp_path / "switched")
    train(switched, console=_quiet(), progress=False, stop_after="labels_1")
    train(dataclasses.replace(switched, channels_last=True), resume=True, console=_quiet())
    assert layouts == [False, False, True, True, True]
    assert [e["phase"] for e in read_log(switched.out)] == phase_names(2)
