"""labelzoo.networks.unetplusplus: shapes, deep supervision, TorchScript, encoder split, bad arguments."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet, FlexibleUNet

from labelzoo.networks import FlexibleUNetPlusPlus, UNetPlusPlus, encoder_parameter_names

SMALL = (4, 4, 8, 8, 16, 4)


def test_unetplusplus_returns_a_tensor_and_scripts():
    net = UNetPlusPlus(2, 1, 2, features=SMALL).eval()
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        y = net(x)
        scripted = torch.jit.script(net)
        assert torch.allclose(scripted(x), y, atol=1e-5)
    assert y.shape == (2, 2, 32, 48)


def test_deep_supervision_lists_four_outputs_in_training_only():
    net = UNetPlusPlus(2, 1, 3, features=SMALL, deep_supervision=True)
    x = torch.randn(1, 1, 32, 32)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (1, 3, 32, 32) for o in outs)
    net.eval()
    with torch.no_grad():
        final = net(x)
        assert torch.allclose(final, net.net(x)[-1]), "inference uses the final node X^{0,4}"


def test_flexible_unetplusplus_shapes_and_script():
    net = FlexibleUNetPlusPlus(1, 2, backbone="resnet10", decoder_channels=(32, 16, 8, 8, 4)).eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert net(x).shape == (1, 2, 64, 96)
    # ResNet encoders do not script in MONAI; EfficientNet ones do.
    eff = FlexibleUNetPlusPlus(1, 2, backbone="efficientnet-b0", decoder_channels=(32, 16, 8, 8, 4)).eval()
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(eff)(x), eff(x), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "vgg16"}, "unknown backbone"),
        ({"decoder_channels": (16, 8, 4)}, "decoder_channels"),
        ({"spatial_dims": 1}, "spatial_dims"),
    ],
)
def test_flexible_unetplusplus_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlexibleUNetPlusPlus(1, 2, **{"backbone": "resnet10", **kwargs})


@pytest.mark.parametrize(("kwargs", "match"), [({"spatial_dims": 1}, "spatial_dims"), ({"out_channels": 0}, "positive"),
                                               ({"features": (4, 4, 8)}, "six")])
def test_unetplusplus_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetPlusPlus(**{"spatial_dims": 2, "in_channels": 1, "out_channels": 2, **kwargs})


def test_encoder_parameter_names_per_network():
    unet = BasicUNet(2, 1, 2, features=SMALL)
    names = encoder_parameter_names(unet)
    assert names and all(n.split(".")[0] in {"conv_0", "down_1", "down_2", "down_3", "down_4"} for n in names)
    flex = FlexibleUNet(1, 2, "resnet10", spatial_dims=2)
    assert set(encoder_parameter_names(flex)) == {n for n, _ in flex.named_parameters() if n.startswith("encoder.")}
    pp = UNetPlusPlus(2, 1, 2, features=SMALL)
    assert all(n.startswith("net.conv_") and n.split(".")[1].endswith("_0") for n in encoder_parameter_names(pp))
    with pytest.raises(ValueError, match="encoder"):
        encoder_parameter_names(torch.nn.Linear(2, 2))
