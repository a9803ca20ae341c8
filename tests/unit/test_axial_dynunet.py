"""AxialDynUNet: widths, attention placement, deep-supervision output format, bad arguments, TorchScript."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss

from labelzoo.networks import AxialAttention, AxialDynUNet, AxialUpBlock

GN4 = ("GROUP", {"num_groups": 4})


def small_net(**kwargs) -> AxialDynUNet:
    """5 levels (16^3 patch -> 1^3 bottleneck), narrow widths: quick on a CPU."""
    args = dict(
        spatial_dims=3, in_channels=4, out_channels=3, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2],
        upsample_kernel_size=[2] * 4, filters=[8, 16, 32, 32, 32], max_encoder_filters=48, norm_name=GN4,
        attention_levels=3, attention_heads=1, attention_head_dim=4,
    )
    args.update(kwargs)
    return AxialDynUNet(**args)


def test_paper_configuration_widths_and_attention() -> None:
    """The BraTS configuration: 128^3 patch, 6 levels, encoder doubled capped at 512, 4x16 heads at 64^3."""
    net = AxialDynUNet(3, 4, 3, kernel_size=[3] * 6, strides=[1, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 5)
    assert net.decoder_filters == [32, 64, 128, 256, 320, 320]
    assert net.encoder_filters == [64, 128, 256, 512, 512, 512]
    assert net.deep_supr_num == 3  # 128, 64, 32, 16 supervised; not 8 (lowest decoder stage) nor 4 (bottleneck)
    # decoder stages (lowest resolution first): attention at 8^3, 16^3, 32^3, 64^3 only
    shapes = [(up.attention.num_heads, up.attention.head_dim) if up.attention is not None else None
              for up in net.upsamples]
    assert shapes == [(32, 128), (16, 64), (8, 32), (4, 16), None]
    assert [net.attention_shape(level) for level in range(5)] == [None, (4, 16), (8, 32), (16, 64), (32, 128)]
    assert all(isinstance(up, AxialUpBlock) for up in net.upsamples)
    norms = {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__}
    assert norms == {"GroupNorm"}
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    # encoder blocks at encoder width, decoder blocks at decoder width, output from the decoder's 32 channels
    assert net.input_block.conv1.conv.out_channels == 64
    assert net.bottleneck.conv2.conv.out_channels == 512
    assert net.upsamples[0].transp_conv.conv.in_channels == 512
    assert net.upsamples[0].conv_block.conv1.conv.in_channels == 320 + 512
    assert net.output_block.conv.conv.in_channels == 32


def test_training_output_is_stacked_deep_supervision() -> None:
    torch.manual_seed(0)
    net = small_net().train()
    assert net.deep_supr_num == 2  # 5 levels: all but the 2 lowest resolutions -> final + 2 heads
    out = net(torch.rand(2, 4, 16, 16, 16))
    assert out.shape == (2, 3, 3, 16, 16, 16)  # (B, 1 + deep_supr_num, C, *spatial)
    # the format MONAI's DeepSupervisionLoss takes; the loss backpropagates into every head
    loss = DeepSupervisionLoss(DiceCELoss(sigmoid=True, batch=True))(list(torch.unbind(out, dim=1)),
                                                                     torch.randint(0, 2, (2, 3, 16, 16, 16)).float())
    loss.backward()
    assert all(h.conv.conv.weight.grad is not None for h in net.deep_supervision_heads)
    attention = [up.attention for up in net.upsamples if up.attention is not None]
    assert len(attention) == 3 and all(p.grad is not None for a in attention for p in a.parameters())


@pytest.mark.parametrize("shape", [(1, 4, 16, 16, 16), (2, 4, 32, 16, 48)])
def test_eval_output_shape(shape: tuple[int, ...]) -> None:
    net = small_net().eval()
    with torch.no_grad():
        assert net(torch.rand(shape)).shape == (shape[0], 3, *shape[2:])


def test_2d_and_no_attention_and_no_deep_supervision() -> None:
    net2d = AxialDynUNet(2, 1, 2, kernel_size=[3] * 4, strides=[1, 2, 2, 2], upsample_kernel_size=[2] * 3,
                         filters=[8, 16, 16, 16], norm_name=GN4, attention_levels=1, attention_heads=2,
                         attention_head_dim=4).train()
    assert net2d(torch.rand(2, 1, 32, 24)).shape == (2, 2, 2, 32, 24)
    plain = small_net(attention_levels=0, deep_supervision=False).train()
    assert not any(isinstance(m, AxialAttention) for m in plain.modules())
    assert plain(torch.rand(1, 4, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": -1}, "out_channels"),
        ({"strides": [1, 2]}, "strides"),
        ({"kernel_size": [3, 3, 3]}, "kernel_size"),
        ({"filters": [8, 16]}, "filters"),
        ({"filters": [8, 16, 0, 32, 32]}, r"filters\[2\]"),
        ({"encoder_multiplier": 0}, "encoder_multiplier"),
        ({"attention_levels": 5}, "attention_levels"),
        ({"attention_levels": -1}, "attention_levels"),
        ({"attention_heads": 0}, "attention_heads"),
        ({"attention_head_dim": 0}, "attention_head_dim"),
        ({"norm_name": ("GROUP", {"num_groups": 3})}, "num_groups"),
        ({"norm_name": "GROUP"}, "num_groups"),
        ({"deep_supr_num": 4}, "deep_supr_num"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small_net(**kwargs)


def test_deep_supervision_needs_four_levels() -> None:
    with pytest.raises(ValueError, match="at least 4 levels"):
        AxialDynUNet(3, 1, 1, kernel_size=[3] * 3, strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                     filters=[8, 8, 8], norm_name=GN4, attention_levels=1)
    net = AxialDynUNet(3, 1, 1, kernel_size=[3] * 3, strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                       filters=[8, 8, 8], norm_name=GN4, attention_levels=1, deep_supervision=False)
    assert net.eval()(torch.rand(1, 1, 8, 8, 8)).shape == (1, 1, 8, 8, 8)


def test_inference_network_loads_the_training_state_dict_strictly() -> None:
    torch.manual_seed(0)
    trained = small_net(deep_supervision=True)
    inference = small_net(deep_supervision=False)
    inference.load_state_dict(trained.state_dict(), strict=True)
    x = torch.rand(1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(inference.eval()(x), trained.eval()(x))
    assert inference.train()(x).shape == (1, 3, 16, 16, 16)  # no heads computed without deep supervision


def test_torchscript_round_trip_of_the_inference_network(tmp_path) -> None:
    """TorchScript export of the inference network (deep_supervision=False); the training one refuses clearly.

    With deep supervision on, TorchScript would copy (not share) the list the decoder stages write their
    heads into, so the scripted network would return stale heads: scripting it raises ``ValueError``.
    """
    torch.manual_seed(0)
    net = small_net(deep_supervision=False).eval()
    x = torch.rand(1, 4, 16, 16, 16)
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), net(x))
    with pytest.raises(ValueError, match="deep_supervision=False"):
        torch.jit.script(small_net(deep_supervision=True))
