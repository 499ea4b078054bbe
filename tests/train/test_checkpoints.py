"""Checkpoints (round trip, never pickle, one-line errors, atomic saves, sealed records),
atomic writes, devices."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import pytest
import torch

import kistrules.atomic as atomic_mod
from kist_train.checkpoints import (
    complete_phases,
    load_checkpoint,
    load_model_from_run,
    save_checkpoint,
)
from kist_train.device import resolve_device
from kist_train.models import ModelConfig, build_model
from kistrules.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from kistrules.errors import CheckpointError, UsageError

CONFIG = ModelConfig(kind="cae", width=4, depth=2)


def _trained(config=CONFIG, seed=0):
    """A model and an Adam optimizer after one step, so both have non-trivial state."""
    torch.manual_seed(seed)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    x = torch.rand(2, config.in_channels, 16, 16)
    opt.zero_grad()
    ((model(x) - x) ** 2).mean().backward()
    opt.step()
    return model, opt


def _meta(config=CONFIG):
    return {
        "model": config.to_dict(),
        "size": 64,
        "mu_e": 0.0123,
        "sigma_e": 0.0045,
        "rulebook": "IF darkness is high THEN anomalous (0.8)\n",
        "rulebook_sha256": "ab" * 32,
        "phases": ["initial", "iter1"],
        "rng": [1, 2, 3],
    }


def _tensor_file(run_dir, phase="initial"):
    """The tensor file the phase's record names (a fresh name at every save)."""
    record = json.loads((run_dir / "checkpoints" / f"{phase}.json").read_text())
    return run_dir / "checkpoints" / record["tensors"]


def _no_unpickling(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    class NoUnpickler:
        def __init__(self, *args, **kwargs):
            boom()

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    monkeypatch.setattr(torch, "load", boom)


def test_round_trip_weights_meta_and_optimizer(tmp_path, monkeypatch):
    model, opt = _trained()
    path = save_checkpoint(tmp_path, "initial", model, _meta(), optimizer_state=opt.state_dict())
    assert path == tmp_path / "checkpoints" / "initial.json"
    assert _tensor_file(tmp_path).is_file()
    _no_unpickling(monkeypatch)  # loading must not need pickle at all
    state, meta, optim_state = load_checkpoint(tmp_path)
    assert meta == _meta()
    expected = model.state_dict()
    assert set(state) == set(expected)
    for k, v in expected.items():
        assert torch.equal(state[k], v), k
    # The optimizer state comes back exactly: int keys, tuples, tensors.
    original = opt.state_dict()
    assert optim_state["param_groups"] == original["param_groups"]
    assert set(optim_state["state"]) == set(original["state"])
    for pid, entry in original["state"].items():
        for key, value in entry.items():
            assert torch.equal(optim_state["state"][pid][key], value)
    fresh, fresh_opt = _trained(seed=1)
    fresh.load_state_dict(state)
    fresh_opt.load_state_dict(optim_state)
    assert fresh_opt.state_dict()["param_groups"][0]["betas"] == (0.9, 0.99)


def test_load_model_from_run_reproduces_outputs(tmp_path):
    config = ModelConfig(kind="unet", width=4, depth=2, in_channels=3, skip_from=1)
    model, _ = _trained(config)
    save_checkpoint(tmp_path, "initial", model, _meta(config))
    loaded, meta = load_model_from_run(tmp_path, device="cpu")
    assert meta["model"]["kind"] == "unet"
    assert not loaded.training
    x = torch.rand(1, 3, 21, 19)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_latest_and_complete_phases(tmp_path):
    assert complete_phases(tmp_path) == []
    a, _ = _trained(seed=0)
    b, _ = _trained(seed=1)
    save_checkpoint(tmp_path, "initial", a, _meta())
    save_checkpoint(tmp_path, "iter1", b, _meta())
    assert complete_phases(tmp_path) == ["initial", "iter1"]
    latest, _, optim_state = load_checkpoint(tmp_path)
    assert optim_state is None
    assert all(torch.equal(latest[k], v) for k, v in b.state_dict().items())
    first, _, _ = load_checkpoint(tmp_path, "initial")
    assert all(torch.equal(first[k], v) for k, v in a.state_dict().items())


def test_torch_save_file_is_refused_without_unpickling(tmp_path, monkeypatch):
    model, _ = _trained()
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save(model.state_dict(), ckpt / "initial.pt")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    _no_unpickling(monkeypatch)
    with pytest.raises(CheckpointError, match=r"pickle checkpoints .* refused") as err:
        load_checkpoint(tmp_path, "initial")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "model.pt")


def test_pickle_disguised_as_safetensors_is_refused(tmp_path, monkeypatch):
    model, _ = _trained()
    save_checkpoint(tmp_path, "initial", model, _meta())
    target = _tensor_file(tmp_path)
    torch.save(model.state_dict(), target)  # zip-format pickle
    _no_unpickling(monkeypatch)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path)
    target.write_bytes(pickle.dumps({"a": 1}, protocol=4))  # raw pickle
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refused"):
        complete_phases(tmp_path)


def test_mismatching_tensors_are_one_line_errors(tmp_path):
    wide, _ = _trained(ModelConfig(width=8, depth=2))
    save_checkpoint(tmp_path / "a", "initial", wide, _meta(CONFIG))  # meta says width 4
    with pytest.raises(CheckpointError, match=r"does not fit.*shape") as err:
        load_model_from_run(tmp_path / "a")
    assert "\n" not in str(err.value)
    cae, _ = _trained(CONFIG)
    save_checkpoint(tmp_path / "b", "initial", cae, _meta(ModelConfig("cae", 4, 3)))
    with pytest.raises(CheckpointError, match="missing"):
        load_model_from_run(tmp_path / "b")
    bad_meta = _meta()
    bad_meta["model"] = {"kind": "cae", "width": 4, "depth": 2, "dropout": 0.5}
    save_checkpoint(tmp_path / "c", "initial", cae, bad_meta)
    with pytest.raises(CheckpointError, match="unknown model config"):
        load_model_from_run(tmp_path / "c")


def test_missing_or_foreign_run_dirs(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_checkpoint(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    with pytest.raises(CheckpointError, match="not a kistrules run directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest.json").write_text('{"phase": "x"}')
    with pytest.raises(CheckpointError, match="not a kistrules checkpoint"):
        load_checkpoint(tmp_path)
    model, _ = _trained()
    save_checkpoint(tmp_path, "initial", model, _meta())
    with pytest.raises(CheckpointError, match="iter9 does not exist"):
        load_checkpoint(tmp_path, "iter9")
    with pytest.raises(CheckpointError, match="phase name"):
        load_checkpoint(tmp_path, "../initial")
    with pytest.raises(ValueError, match="phase name"):
        save_checkpoint(tmp_path, "latest", model, _meta())


@pytest.mark.parametrize("failing", [1, 2, 3], ids=["tensors", "record", "latest"])
def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch, failing):
    """Whichever rename of a re-save fails (a full disk, a kill), the phase loads whole:
    the old weights with the old meta, or the new weights with the new meta."""
    old, _ = _trained(seed=0)
    new, _ = _trained(seed=1)
    save_checkpoint(tmp_path, "initial", old, _meta())
    real_replace, calls = atomic_mod.os.replace, [0]

    def failing_replace(src, dst):
        calls[0] += 1
        if calls[0] == failing:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(atomic_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, "initial", new, {**_meta(), "mu_e": 9.0})
    monkeypatch.undo()
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    state, meta, _ = load_checkpoint(tmp_path, "initial")
    committed = failing > 2  # the record's rename (the second) is the commit
    expected = new if committed else old
    assert meta["mu_e"] == (9.0 if committed else 0.0123)
    assert all(torch.equal(state[k], v) for k, v in expected.state_dict().items())
    assert complete_phases(tmp_path) == ["initial"]


def test_unserialisable_meta_changes_nothing(tmp_path):
    model, _ = _trained()
    save_checkpoint(tmp_path, "initial", model, _meta())
    with pytest.raises(CheckpointError, match="not JSON"):
        save_checkpoint(tmp_path, "initial", model, {"model": CONFIG.to_dict(), "x": object()})
    with pytest.raises(CheckpointError, match="not JSON"):
        save_checkpoint(tmp_path, "iter1", model, {"mu_e": float("nan")})
    assert complete_phases(tmp_path) == ["initial"]
    assert load_checkpoint(tmp_path)[1] == _meta()


def test_tensors_that_do_not_match_their_record_are_refused(tmp_path):
    """A save never leaves a record beside tensors it does not name: another run's tensors
    under the record's name are an edit, refused naming the file, also by complete_phases."""
    a, _ = _trained(seed=0)
    b, _ = _trained(seed=1)
    save_checkpoint(tmp_path / "run", "initial", a, _meta())
    save_checkpoint(tmp_path / "other", "initial", b, _meta())
    target = _tensor_file(tmp_path / "run")
    shutil.copy(_tensor_file(tmp_path / "other"), target)
    with pytest.raises(CheckpointError, match="edited or corrupted") as err:
        load_checkpoint(tmp_path / "run")
    assert str(target) in str(err.value)
    with pytest.raises(CheckpointError, match="edited or corrupted"):
        complete_phases(tmp_path / "run")
    # Tensors whose record was never written are an interrupted first save: incomplete.
    orphan = tmp_path / "other" / "checkpoints" / "iter1.0123456789ab.safetensors"
    orphan.write_bytes(b"part")
    with pytest.raises(CheckpointError, match="iter1 is incomplete"):
        load_checkpoint(tmp_path / "other", "iter1")
    assert complete_phases(tmp_path / "other") == ["initial"]


def test_json_record_names_everything_prediction_needs(tmp_path):
    model, _ = _trained()
    path = save_checkpoint(tmp_path, "initial", model, _meta())
    record = json.loads(path.read_text())
    assert record["meta"]["model"] == CONFIG.to_dict()
    assert re.fullmatch(r"initial\.[0-9a-f]{12}\.safetensors", record["tensors"])
    assert len(record["sha256"]) == 64 and len(record["record_sha256"]) == 64
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["phase"] == "initial"


# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_writes(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(tmp_path / "new.bin") as tmp:
        assert tmp.parent == tmp_path and tmp.name != "new.bin"
        tmp.write_bytes(b"x")
    assert (tmp_path / "new.bin").read_bytes() == b"x"


# --- devices ---------------------------------------------------------------------------------


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(UsageError, match="'tpu' is not one of auto, cpu, cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_usage_error():
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda:0")


# --- sealed records: every field covered, every read bounded ----------------------------------


def _leaves(value, path=()):
    """(path, value) of every number, string, bool and null in parsed JSON."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if abs(value) < 1e15 else value / 2
    if isinstance(value, str):
        return value + "x"
    return 0  # null


def test_any_edit_of_a_record_is_refused_naming_it(tmp_path):
    """Statistics, config, optimizer skeleton, tensor hash: an edit anywhere is refused."""
    model, opt = _trained()
    meta = {**_meta(), "config": {"seed": 0, "lr": 0.001}}
    path = save_checkpoint(tmp_path, "initial", model, meta, optimizer_state=opt.state_dict())
    original = path.read_text()
    leaves = [p for p, _ in _leaves(json.loads(original)) if p != ("record_sha256",)]
    assert {("meta", "mu_e"), ("meta", "sigma_e"), ("meta", "config", "seed")} <= set(leaves)
    for leaf in leaves:
        record = json.loads(original)
        *parents, last = leaf
        holder = record
        for key in parents:
            holder = holder[key]
        holder[last] = _changed(holder[last])
        path.write_text(json.dumps(record, indent=1))
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path, "initial")
        message = str(err.value)
        assert "\n" not in message and str(path) in message, (leaf, message)
    path.write_text(original)
    assert load_checkpoint(tmp_path)[1] == meta


def test_hostile_record_text_is_a_one_line_error(tmp_path):
    model, _ = _trained()
    path = save_checkpoint(tmp_path, "initial", model, _meta())
    record = json.loads(path.read_text())
    cases = {
        "NaN": path.read_text().replace('"mu_e": 0.0123', '"mu_e": NaN'),
        "Infinity": path.read_text().replace('"mu_e": 0.0123', '"mu_e": -Infinity'),
        "out of range": path.read_text().replace('"mu_e": 0.0123', '"mu_e": 1e999'),
        "nested too deeply": "[" * 100_000 + "]" * 100_000,
        "over 64 levels": "[" * 70 + "]" * 70,  # parses, but no record is that deep
        "unreadable": "{not json",
        "not a kistrules checkpoint": json.dumps({"format": "other"}),
        "older kistrules": json.dumps({**record, "version": 1}),
        "has no record_sha256": json.dumps(
            {k: v for k, v in record.items() if k != "record_sha256"}
        ),
    }
    for fragment, text in cases.items():
        path.write_text(text)
        with pytest.raises(CheckpointError, match=fragment) as err:
            load_checkpoint(tmp_path, "initial")
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with open(path, "wb") as handle:  # sparse: refused from its size, never read
        handle.truncate(65 * 2**20)
    with pytest.raises(CheckpointError, match="the limit is"):
        load_checkpoint(tmp_path, "initial")


def test_an_edited_latest_pointer_is_refused(tmp_path):
    model, _ = _trained()
    save_checkpoint(tmp_path, "initial", model, _meta())
    save_checkpoint(tmp_path, "iter1", model, _meta())
    latest = tmp_path / "checkpoints" / "latest.json"
    pointer = json.loads(latest.read_text())
    latest.write_text(json.dumps({**pointer, "phase": "initial"}))
    with pytest.raises(CheckpointError, match=r"latest\.json: checkpoint pointer was edited"):
        load_checkpoint(tmp_path)


def test_a_re_saved_phase_keeps_one_tensor_file(tmp_path):
    """Each save writes its tensors under a fresh name and deletes the ones it replaced."""
    a, _ = _trained(seed=0)
    b, _ = _trained(seed=1)
    save_checkpoint(tmp_path, "initial", a, _meta())
    first = _tensor_file(tmp_path)
    save_checkpoint(tmp_path, "initial", b, _meta())
    assert _tensor_file(tmp_path) != first and not first.exists()
    assert [p.name for p in (tmp_path / "checkpoints").glob("*.safetensors")] == [
        _tensor_file(tmp_path).name
    ]
    state = load_checkpoint(tmp_path)[0]
    assert all(torch.equal(state[k], v) for k, v in b.state_dict().items())
