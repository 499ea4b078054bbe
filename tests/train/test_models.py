"""The reconstruction networks: shapes for any size, range, determinism, trainability."""

from __future__ import annotations

import pytest
import torch

from kist_train.losses import reconstruction_loss
from kist_train.models import ModelConfig, build_model
from kistrules.errors import CheckpointError


@pytest.mark.parametrize("kind", ["cae", "unet"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("h", "w"), [(37, 53), (32, 32), (9, 70)])
def test_output_shape_and_range(kind, channels, h, w):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, width=4, depth=3, in_channels=channels))
    x = torch.rand(2, channels, h, w)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_tiny_image_smaller_than_padding_still_works():
    model = build_model(ModelConfig(width=4, depth=4)).eval()
    assert model(torch.rand(1, 1, 5, 3)).shape == (1, 1, 5, 3)


@pytest.mark.parametrize("kind", ["cae", "unet"])
def test_deterministic_given_seed(kind):
    config = ModelConfig(kind=kind, width=4, depth=3)
    x = torch.rand(2, 1, 20, 20)
    torch.manual_seed(123)
    a = build_model(config).eval()
    torch.manual_seed(123)
    b = build_model(config).eval()
    torch.manual_seed(124)
    c = build_model(config).eval()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


@pytest.mark.parametrize("skip_from", [0, 1, 2, 3])
def test_unet_skips_exactly_from_skip_from(skip_from):
    cae = build_model(ModelConfig(kind="cae", width=4, depth=4))
    unet = build_model(ModelConfig(kind="unet", width=4, depth=4, skip_from=skip_from))
    # self.up runs from the deepest level (3) to full resolution (0); a skip doubles
    # the channels the decoder fuses at that level.
    for level, (u, c) in zip(reversed(range(4)), zip(unet.up, cae.up, strict=True), strict=True):
        ratio = u.fuse[0].in_channels // c.fuse[0].in_channels
        assert ratio == (2 if level >= skip_from else 1), level
    assert sum(p.numel() for p in unet.parameters()) > sum(p.numel() for p in cae.parameters())


def test_unet_output_ignores_encoder_levels_below_skip_from():
    """With skip_from=2 no full-resolution path exists: the output depends on the
    input only through features at 1/4 resolution or coarser."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="unet", width=4, depth=3, skip_from=2)).eval()
    x = torch.rand(1, 1, 32, 32)
    seen = []
    hooks = [model.up[-1].register_forward_hook(lambda m, i, o: seen.append(i))]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    decoder_state, skip = seen[0]
    assert skip is None  # the full-resolution decoder block gets no encoder features
    assert decoder_state.shape[-1] == 16  # only the half-resolution decoder state


def test_unet_without_any_skip_is_refused():
    with pytest.raises(ValueError, match="skip_from 2 leaves none"):
        ModelConfig(kind="unet", depth=2, skip_from=2)
    with pytest.raises(ValueError, match="skip_from"):
        ModelConfig(kind="unet", skip_from=-1)
    assert ModelConfig(kind="cae", depth=2, skip_from=2).depth == 2  # ignored by the CAE


def test_channels_capped_at_eight_times_width():
    model = build_model(ModelConfig(width=2, depth=6))
    deepest = model.down[-1][0].out_channels
    assert deepest == 16


@pytest.mark.parametrize("kind", ["cae", "unet"])
def test_training_steps_reduce_mse(kind):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, width=8, depth=2, skip_from=1))
    x = torch.rand(4, 1, 24, 24) * 0.5 + 0.25
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = reconstruction_loss(model(x), x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = reconstruction_loss(model(x), x).item()
    assert losses[-1] < 0.5 * losses[0]
    assert final < losses[0]


def test_config_round_trip_and_bad_dicts():
    config = ModelConfig(kind="unet", width=16, depth=3, in_channels=3)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict() == {
        "kind": "unet",
        "width": 16,
        "depth": 3,
        "in_channels": 3,
        "skip_from": 2,
    }
    with pytest.raises(CheckpointError, match="unknown model config key"):
        ModelConfig.from_dict({**config.to_dict(), "dropout": 0.1})
    with pytest.raises(CheckpointError, match="kind"):
        ModelConfig.from_dict({"kind": "vae"})
    with pytest.raises(CheckpointError, match="width"):
        ModelConfig.from_dict({"width": "32"})
    with pytest.raises(CheckpointError, match="JSON object"):
        ModelConfig.from_dict(["cae"])
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(depth=0)


def test_wrong_channel_count_is_rejected():
    model = build_model(ModelConfig(width=4, depth=2))
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(1, 3, 16, 16))


def test_unet_checkpoints_from_before_skip_from_load_with_every_skip():
    old = {"kind": "unet", "width": 4, "depth": 3, "in_channels": 1}
    assert ModelConfig.from_dict(old).skip_from == 0
    assert ModelConfig.from_dict({**old, "kind": "cae"}) == ModelConfig(
        kind="cae", width=4, depth=3
    )


@pytest.mark.parametrize("kind", ["cae", "unet"])
def test_channels_last_computes_the_same_output_and_gradients(kind):
    """The engine's --channels-last: NHWC weights and activations are a memory order,
    not another network. In float64 outputs and gradients agree to rounding (odd sizes
    exercise the padding and the crop); in float32 a pre-activation within rounding of
    LeakyReLU's kink can take the other slope in either order, so there the two only
    agree as closely as each agrees with float64."""
    torch.manual_seed(0)
    plain = build_model(ModelConfig(kind=kind, width=8, depth=3, skip_from=1)).double()
    nhwc = build_model(ModelConfig(kind=kind, width=8, depth=3, skip_from=1)).double()
    nhwc.load_state_dict(plain.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    x = torch.rand(5, 1, 37, 30, dtype=torch.float64)
    outputs, grads = [], []
    for model in (plain, nhwc):
        y = model(x)
        reconstruction_loss(y, x).backward()
        outputs.append(y.detach())
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert nhwc.down[0][0].weight.grad.is_contiguous(memory_format=torch.channels_last)
    assert not plain.down[0][0].weight.grad.is_contiguous(memory_format=torch.channels_last)
    assert outputs[0].shape == outputs[1].shape == x.shape
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-14)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-9, atol=1e-13, msg=name)
