"""Sealed JSON: the seal survives writing and reading any JSON, and nothing else does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kist_train.sealed_json import MAX_DEPTH, read_json, seal, sealed_text, unseal
from kistrules.errors import CheckpointError

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(content=st.dictionaries(st.text(), _json, max_size=5))
def test_sealed_content_reads_back_and_verifies(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("sealed") / "a.json"
    path.write_text(sealed_text(content), encoding="utf-8")
    value = read_json(path, max_bytes=2**20, what="record")
    assert unseal(value, path, what="record") == json.loads(json.dumps(content))


@settings(max_examples=200, deadline=None)
@given(content=st.dictionaries(st.text(), _json, min_size=1, max_size=5), data=st.data())
def test_changing_or_dropping_any_key_breaks_the_seal(tmp_path_factory, content, data):
    sealed = seal(content)
    key = data.draw(st.sampled_from(sorted(content)))
    edited = dict(sealed)
    if data.draw(st.booleans()):
        del edited[key]
    else:
        edited[key] = [edited[key]]  # any other value
    with pytest.raises(CheckpointError, match="edited or corrupted"):
        unseal(edited, tmp_path_factory.mktemp("x") / "a.json", what="record")


def test_depth_limit(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert read_json(path, max_bytes=2**20, what="record") is not None
    path.write_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_json(path, max_bytes=2**20, what="record")
