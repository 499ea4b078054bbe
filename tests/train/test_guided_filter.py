"""Box and guided filters against naive per-window loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kist_train.guided_filter import box_filter, guided_filter, radius_for_size
from tests.reference import train as ref


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 40])
def test_box_filter_equals_naive(radius):
    g = torch.Generator().manual_seed(radius)
    x = torch.rand(2, 3, 9, 13, generator=g, dtype=torch.float64)
    out = box_filter(x, radius)
    assert out.shape == x.shape and out.dtype == x.dtype
    for b in range(2):
        for c in range(3):
            expected = ref.naive_box_mean(x[b, c].numpy(), radius)
            np.testing.assert_allclose(out[b, c].numpy(), expected, rtol=0, atol=1e-12)


def test_box_filter_radius_beyond_image_is_global_mean():
    x = torch.rand(1, 1, 4, 6, dtype=torch.float64)
    out = box_filter(x, 100)
    assert torch.allclose(out, x.mean().expand_as(x), atol=1e-12)


def test_box_filter_float32_keeps_precision_on_large_image():
    # A float32 integral image of this size would lose ~1e-4; float64 accumulation does not.
    x = torch.rand(1, 1, 512, 512, generator=torch.Generator().manual_seed(0))
    out = box_filter(x, 16)
    expected = box_filter(x.double(), 16)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), expected, atol=1e-6)


@pytest.mark.parametrize(("radius", "eps"), [(1, 1e-3), (2, 1e-2), (3, 1e-3), (20, 1e-1)])
def test_guided_filter_equals_naive(radius, eps):
    g = torch.Generator().manual_seed(7 + radius)
    guide = torch.rand(2, 1, 11, 8, generator=g, dtype=torch.float64)
    src = torch.rand(2, 1, 11, 8, generator=g, dtype=torch.float64) ** 2
    out = guided_filter(guide, src, radius, eps)
    assert out.shape == src.shape
    for b in range(2):
        expected = ref.naive_guided_filter(guide[b, 0].numpy(), src[b, 0].numpy(), radius, eps)
        np.testing.assert_allclose(out[b, 0].numpy(), expected, rtol=0, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 7),
    st.integers(1, 7),
    st.integers(0, 4),
    st.sampled_from([1e-3, 1e-1]),
    st.integers(0, 2**31 - 1),
)
def test_guided_filter_matches_naive_on_random_shapes(h, w, radius, eps, seed):
    g = torch.Generator().manual_seed(seed)
    guide = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    src = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    out = guided_filter(guide, src, radius, eps)[0, 0].numpy()
    expected = ref.naive_guided_filter(guide[0, 0].numpy(), src[0, 0].numpy(), radius, eps)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)


def test_guided_filter_batch_is_independent_per_image():
    guide = torch.rand(3, 1, 10, 10, dtype=torch.float64)
    src = torch.rand(3, 1, 10, 10, dtype=torch.float64)
    whole = guided_filter(guide, src, 2)
    for i in range(3):
        alone = guided_filter(guide[i : i + 1], src[i : i + 1], 2)
        assert torch.allclose(whole[i : i + 1], alone, atol=1e-14)


def test_guided_filter_flat_guide_is_box_mean():
    # With a constant guide a_k = 0 and b_k = mean(e): two box means of e.
    guide = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    src = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    out = guided_filter(guide, src, 2)
    assert torch.allclose(out, box_filter(box_filter(src, 2), 2), atol=1e-12)


def test_guided_filter_keeps_float32_dtype():
    guide = torch.rand(2, 1, 16, 16)
    src = torch.rand(2, 1, 16, 16)
    out = guided_filter(guide, src, 3)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), guided_filter(guide.double(), src.double(), 3), atol=1e-6)


def test_radius_for_size():
    assert radius_for_size(256) == 16
    assert radius_for_size(128) == 8
    assert radius_for_size(64) == 4
    assert radius_for_size(512) == 32
    assert radius_for_size(8) == 1
    assert radius_for_size(1) == 1


def test_bad_arguments():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="radius"):
        box_filter(x, -1)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(x, x, 1, eps=0.0)
    with pytest.raises(ValueError, match="differ"):
        guided_filter(x, torch.rand(1, 1, 4, 5), 1)
