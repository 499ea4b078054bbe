"""Eq. 8 and eq. 13 by hand on tiny tensors: values, masks, signs and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kist_train.losses import LossParts, contrastive_reconstruction_loss, reconstruction_loss


def _batch():
    """Two 1x2x2 images: image 0 normal, image 1 anomalous with one labelled pixel."""
    target = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    recon = torch.tensor(
        [[[[0.1, 0.2], [0.3, 0.4]]], [[[0.5, 0.0], [0.2, 0.0]]]], dtype=torch.float64
    )
    is_normal = torch.tensor([True, False])
    labels = torch.zeros(2, 2, 2, dtype=torch.bool)
    labels[1, 0, 0] = True  # residual 0.5 -> e = 0.25
    labels[0, 1, 1] = True  # on a normal image: must be ignored
    return recon, target, is_normal, labels


def test_reconstruction_loss_is_mse():
    recon, target, *_ = _batch()
    expected = (recon**2).sum() / recon.numel()
    assert reconstruction_loss(recon, target) == pytest.approx(expected.item(), abs=1e-15)


def test_paper_push_by_hand():
    recon, target, is_normal, labels = _batch()
    parts = contrastive_reconstruction_loss(recon, target, is_normal, labels, lam=1.0, push="paper")
    normal = (0.01 + 0.04 + 0.09 + 0.16) / 4
    assert isinstance(parts, LossParts)
    assert parts.normal.item() == pytest.approx(normal, abs=1e-15)
    assert parts.push.item() == pytest.approx(-0.25, abs=1e-15)
    assert parts.total.item() == pytest.approx(normal - 0.25, abs=1e-15)
    half = contrastive_reconstruction_loss(recon, target, is_normal, labels, lam=0.5, push="paper")
    assert half.push.item() == pytest.approx(-0.125, abs=1e-15)


def test_margin_push_by_hand():
    recon, target, is_normal, labels = _batch()
    labels[1, 1, 0] = True  # second labelled pixel: residual 0.2 -> e = 0.04
    parts = contrastive_reconstruction_loss(
        recon, target, is_normal, labels, lam=2.0, push="margin", margin=0.1
    )
    # relu(0.1 - 0.25) = 0, relu(0.1 - 0.04) = 0.06; mean over 2 labelled pixels, times 2.
    assert parts.push.item() == pytest.approx(2.0 * 0.06 / 2, abs=1e-15)
    assert parts.total.item() == pytest.approx(parts.normal.item() + 0.06, abs=1e-15)


def test_paper_push_decreases_as_labelled_residual_grows():
    _, target, is_normal, labels = _batch()
    values = []
    for r in (0.0, 0.2, 0.5, 0.9):
        recon = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
        recon[1, 0, 0, 0] = r
        parts = contrastive_reconstruction_loss(recon, target, is_normal, labels, push="paper")
        values.append(parts.total.item())
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


def test_margin_push_is_zero_beyond_margin():
    _, target, is_normal, labels = _batch()
    for r, expected in ((0.0, 0.09), (0.2, 0.09 - 0.04), (0.3, 0.0), (0.7, 0.0)):
        recon = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
        recon[1, 0, 0, 0] = r
        parts = contrastive_reconstruction_loss(
            recon, target, is_normal, labels, push="margin", margin=0.09
        )
        assert parts.push.item() == pytest.approx(expected, abs=1e-15)


def test_no_labelled_pixels_gives_exact_zero_push():
    recon, target, is_normal, _ = _batch()
    labels = torch.zeros(2, 2, 2, dtype=torch.bool)
    labels[0] = True  # labels on the normal image only do not count
    for push in ("paper", "margin"):
        parts = contrastive_reconstruction_loss(
            recon, target, is_normal, labels, push=push, margin=0.1
        )
        assert parts.push.item() == 0.0
        assert torch.equal(parts.total, parts.normal)


def test_batch_without_normal_images_has_zero_normal_term():
    recon, target, _, labels = _batch()
    parts = contrastive_reconstruction_loss(
        recon, target, torch.tensor([False, False]), labels, push="paper"
    )
    assert parts.normal.item() == 0.0
    # Now image 0's label counts: e = 0.16 and 0.25 on the two labelled pixels.
    assert parts.push.item() == pytest.approx(-(0.16 + 0.25) / 2, abs=1e-15)


def test_lam_zero_is_exactly_the_baseline():
    recon, target, is_normal, labels = _batch()
    for push in ("paper", "margin"):
        parts = contrastive_reconstruction_loss(
            recon, target, is_normal, labels, lam=0.0, push=push
        )
        assert torch.equal(parts.total, parts.normal)
        assert parts.push.item() == 0.0


def test_push_gradient_flows_only_through_labelled_anomalous_pixels():
    recon, target, is_normal, labels = _batch()
    recon = recon.clone().requires_grad_(True)
    parts = contrastive_reconstruction_loss(recon, target, is_normal, labels, push="paper")
    (grad,) = torch.autograd.grad(parts.push, recon)
    expected = torch.zeros_like(recon)
    # d/dr of -(r - 0)^2 / 1 at r = 0.5 is -1.0: only at the labelled anomalous pixel.
    expected[1, 0, 0, 0] = -2 * 0.5
    assert torch.allclose(grad, expected, atol=1e-15)
    # The normal term's gradient covers exactly the normal image.
    recon2 = recon.detach().clone().requires_grad_(True)
    parts2 = contrastive_reconstruction_loss(recon2, target, is_normal, labels, push="paper")
    (g_normal,) = torch.autograd.grad(parts2.normal, recon2)
    assert torch.all(g_normal[1] == 0)
    assert torch.all(g_normal[0] != 0)


def test_margin_gradient_vanishes_beyond_margin():
    recon, target, is_normal, labels = _batch()
    recon = recon.clone().requires_grad_(True)
    parts = contrastive_reconstruction_loss(
        recon, target, is_normal, labels, push="margin", margin=0.2
    )  # the labelled pixel's e = 0.25 > 0.2
    (grad,) = torch.autograd.grad(parts.push, recon)
    assert torch.all(grad == 0)


def test_multichannel_averages_channels():
    target = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    recon = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    recon[0, :, 0, 0] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    labels = torch.tensor([[[True, False]]])
    parts = contrastive_reconstruction_loss(
        recon, target, torch.tensor([False]), labels, push="paper"
    )
    assert parts.push.item() == pytest.approx(-(0.01 + 0.04 + 0.09) / 3, abs=1e-15)
    normal = contrastive_reconstruction_loss(
        recon, target, torch.tensor([True]), labels, push="paper"
    )
    assert normal.normal.item() == pytest.approx((0.01 + 0.04 + 0.09) / 6, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_matches_definition_on_random_batches(b, side, seed):
    g = torch.Generator().manual_seed(seed)
    recon = torch.rand(b, 2, side, side, generator=g, dtype=torch.float64)
    target = torch.rand(b, 2, side, side, generator=g, dtype=torch.float64)
    is_normal = torch.rand(b, generator=g) < 0.5
    labels = torch.rand(b, side, side, generator=g) < 0.3
    parts = contrastive_reconstruction_loss(
        recon, target, is_normal, labels, lam=0.7, push="margin", margin=0.05
    )
    normal_vals, push_vals = [], []
    for i in range(b):
        for y in range(side):
            for x in range(side):
                e = ((recon[i, :, y, x] - target[i, :, y, x]) ** 2).mean().item()
                if is_normal[i]:
                    normal_vals.append(e)
                elif labels[i, y, x]:
                    push_vals.append(max(0.0, 0.05 - e))
    exp_normal = sum(normal_vals) / len(normal_vals) if normal_vals else 0.0
    exp_push = 0.7 * sum(push_vals) / len(push_vals) if push_vals else 0.0
    assert parts.normal.item() == pytest.approx(exp_normal, abs=1e-12)
    assert parts.push.item() == pytest.approx(exp_push, abs=1e-12)


def test_bad_arguments():
    recon, target, is_normal, labels = _batch()
    with pytest.raises(ValueError, match="margin"):
        contrastive_reconstruction_loss(recon, target, is_normal, labels, push="margin")
    with pytest.raises(ValueError, match="push"):
        contrastive_reconstruction_loss(recon, target, is_normal, labels, push="clip")
    with pytest.raises(ValueError, match="lam"):
        contrastive_reconstruction_loss(recon, target, is_normal, labels, lam=-1.0, push="paper")
    with pytest.raises(ValueError, match="pseudo_labels"):
        contrastive_reconstruction_loss(recon, target, is_normal, labels[:, :1], push="paper")
