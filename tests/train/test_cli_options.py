"""`kistrules train`'s options are TrainConfig's fields: one source of truth.

Every field is an option with the field's flag, default and help (its metadata);
config -> argv (what the torchrun relaunch passes) -> the command's parser ->
config is the identity, for any config.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from kist_train.config import TrainConfig, option_flag
from kistrules.cli import app
from kistrules.commands import train as train_module
from kistrules.commands.train import config_from_options

COMMAND = typer.main.get_command(app).commands["train"]
PARAMS = {param.name: param for param in COMMAND.params}
FIELDS = dataclasses.fields(TrainConfig)


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_config_field_is_a_train_option_with_its_default_and_help(field):
    param = PARAMS[field.name]
    assert param.help == field.metadata["help"] and param.help
    assert option_flag(field) in param.opts + param.secondary_opts
    if field.metadata["required"]:
        assert param.required
    else:
        assert not param.required and param.default == field.default


def test_the_options_parse_to_the_default_config():
    context = COMMAND.make_context("train", ["--data", "d", "--out", "o"])
    assert config_from_options(context.params) == TrainConfig(data="d", out="o")


NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)
PATH = st.lists(NAME, min_size=1, max_size=3).map("/".join)
NUMBER = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
BY_TYPE = {
    "str": NAME,
    "str | None": st.none() | NAME,
    "int": st.integers(min_value=0, max_value=10**6),
    "float": NUMBER,
    "bool": st.booleans(),
}


def _strategy(field: dataclasses.Field):
    if field.metadata["path"]:
        return PATH if field.default is not None else st.none() | PATH
    return BY_TYPE[str(field.type)]


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({f.name: _strategy(f) for f in FIELDS}))
def test_config_to_argv_to_config_is_the_identity(values):
    config = TrainConfig(**values)
    context = COMMAND.make_context("train", config.to_argv())
    assert config_from_options(context.params) == config


def test_the_torchrun_relaunch_passes_the_config_argv(tmp_path, monkeypatch):
    """`--nproc 2` relaunches with exactly config.to_argv() (plus the run options)."""
    import kist_train.distributed as distributed

    config = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), s=0.25, baseline=True)
    seen = []
    monkeypatch.setattr(distributed, "check_divisible", lambda *args: None)
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, check: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0),
    )
    assert train_module._launch(config, 2, resume=False, force=True, stop_after=None) == 0
    argv = seen[0][seen[0].index("train") + 1 :]
    assert argv == [*config.to_argv(), "--force", "--no-progress"]
    assert "--threshold-step" in argv and "--s" not in argv  # --s is a torchrun prefix
    context = COMMAND.make_context("train", argv)
    assert config_from_options(context.params) == config
    assert Path(context.params["out"]) == tmp_path / "run"
