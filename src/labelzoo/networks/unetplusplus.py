"""UNet++ networks for the 2D UNet vs UNet++ bundle: a tensor-returning ``BasicUNetPlusPlus`` and a UNet++ decoder
on MONAI's ``FlexibleUNet`` encoder backbones.

Zhou et al., "UNet++: A Nested U-Net Architecture for Medical Image Segmentation", DLMIA 2018,
https://arxiv.org/abs/1807.10165.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.basic_unet import UpCat
from monai.networks.nets.basic_unetplusplus import BasicUNetPlusPlus
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE, SegmentationHead
from torch import nn

__all__ = ["FlexibleUNetPlusPlus", "UNetPlusPlus", "encoder_parameter_names"]


class UNetPlusPlus(nn.Module):
    """MONAI's ``BasicUNetPlusPlus`` returning a tensor, so MONAI inferers, metrics and MONAI Label can use it.

    ``BasicUNetPlusPlus.forward`` always returns a list. This wrapper (the MONAI network is ``self.net``) returns
    the final full-resolution output ``(B, out_channels, *spatial)`` in evaluation mode, and always when deep
    supervision is off. In training mode with ``deep_supervision=True`` it returns the list of the four
    full-resolution outputs, final (X^{0,4}) first, which ``monai.losses.DeepSupervisionLoss`` combines. Inference
    uses the final output only (no pruning). Without deep supervision the three auxiliary heads are replaced by
    identities, so every parameter gets a gradient (as ``DistributedDataParallel`` requires). TorchScript compiles
    the inference path.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes).
        features: six feature sizes, see ``BasicUNetPlusPlus``.
        deep_supervision: return all four outputs in training mode.
        kwargs: other ``BasicUNetPlusPlus`` arguments (act, norm, bias, dropout, upsample).

    Raises:
        ValueError: for ``spatial_dims`` other than 2 or 3, non-positive channel counts or not six features.

    Example:
        >>> net = UNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=2, features=(8, 8, 16, 32, 64, 8))
        >>> net.eval()(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32), deep_supervision: bool = False, **kwargs):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels}, {out_channels}")
        if len(tuple(features)) != 6:
            raise ValueError(f"features must be six sizes (five encoder levels, last upsampling), got {features}")
        self.deep_supervision = bool(deep_supervision)
        self.net = BasicUNetPlusPlus(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                                     features=features, deep_supervision=deep_supervision, **kwargs)
        if not self.deep_supervision:
            # BasicUNetPlusPlus runs its three auxiliary heads even when it discards them: without deep
            # supervision they would be parameters without gradients, which DistributedDataParallel rejects.
            for name in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3"):
                setattr(self.net, name, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.net(x)
        if not torch.jit.is_scripting():
            if self.training and self.deep_supervision:
                return outputs[::-1]  # type: ignore[return-value]
        return outputs[-1]


def encoder_parameter_names(network: nn.Module) -> list[str]:
    """Names of the parameters of ``network``'s encoder, for a lower encoder learning rate.

    Knows MONAI's ``BasicUNet`` (``conv_0``, ``down_1`` .. ``down_4``), ``BasicUNetPlusPlus`` / ``UNetPlusPlus``
    (``conv_0_0`` .. ``conv_4_0``), ``FlexibleUNet`` and ``FlexibleUNetPlusPlus`` (``encoder``).

    Raises:
        ValueError: for another network type.
    """
    from monai.networks.nets import BasicUNet, FlexibleUNet

    if isinstance(network, (FlexibleUNet, FlexibleUNetPlusPlus)):
        prefixes: tuple[str, ...] = ("encoder.",)
    elif isinstance(network, UNetPlusPlus):
        prefixes = tuple(f"net.conv_{i}_0." for i in range(5))
    elif isinstance(network, BasicUNetPlusPlus):
        prefixes = tuple(f"conv_{i}_0." for i in range(5))
    elif isinstance(network, BasicUNet):
        prefixes = ("conv_0.", "down_1.", "down_2.", "down_3.", "down_4.")
    else:
        raise ValueError(
            f"cannot tell the encoder of a {type(network).__name__}: expected BasicUNet, BasicUNetPlusPlus, "
            "FlexibleUNet or FlexibleUNetPlusPlus"
        )
    return [name for name, _ in network.named_parameters() if name.startswith(prefixes)]


class FlexibleUNetPlusPlus(nn.Module):
    """UNet++ (nested dense skip pathways) on a ``FlexibleUNet`` encoder backbone (ResNet, EfficientNet, ...).

    The encoder is the one ``monai.networks.nets.FlexibleUNet`` builds for ``backbone`` (from MONAI's
    ``FLEXUNET_BACKBONE`` register): five feature maps at strides 2, 4, 8, 16, 32. The decoder replaces
    FlexibleUNet's plain skip connections with UNet++'s nested nodes: node X^{i,j} (level ``i``, ``j``-th
    decoder node) upsamples X^{i+1,j-1} and concatenates it with every earlier node of its level X^{i,0..j-1}
    (X^{i,0} is the encoder map). Level ``i`` nodes have ``decoder_channels[3 - i]`` channels (the same widths as
    ``FlexibleUNet``'s decoder blocks at that stride), a last block upsamples X^{0,4} to the input resolution with
    ``decoder_channels[4]`` channels, and a 3x3 convolution head gives the logits. Backbones start from random
    weights unless ``pretrained=True`` (which downloads ImageNet weights, so LabelZoo never sets it).

    Args:
        in_channels: input channels.
        out_channels: output channels (classes).
        backbone: a name in ``FLEXUNET_BACKBONE.register_dict`` (e.g. ``resnet18``, ``resnet34``,
            ``efficientnet-b0``).
        pretrained: load the backbone's ImageNet weights (downloads; keep False offline).
        decoder_channels: five decoder widths, deepest (stride 16) first, as in ``FlexibleUNet``.
        spatial_dims: 2 or 3.
        norm: normalisation of the decoder blocks.
        act: activation of the decoder blocks.
        dropout: dropout of the decoder blocks.
        decoder_bias: bias in the decoder convolutions.
        upsample: ``deconv``, ``pixelshuffle`` or ``nontrainable``.

    Input ``(B, in_channels, *spatial)`` with each spatial size a multiple of 32; output
    ``(B, out_channels, *spatial)``.

    Raises:
        ValueError: for an unknown backbone, ``spatial_dims`` other than 2 or 3, a backbone without five feature
            maps, or ``decoder_channels`` of a length other than 5.

    Example:
        >>> net = FlexibleUNetPlusPlus(1, 2, backbone="resnet10", decoder_channels=(64, 32, 16, 8, 8))
        >>> net.eval()(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        backbone: str = "resnet34",
        pretrained: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        spatial_dims: int = 2,
        norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.1}),
        act: str | tuple = ("relu", {"inplace": True}),
        dropout: float | tuple = 0.0,
        decoder_bias: bool = False,
        upsample: str = "nontrainable",
    ) -> None:
        super().__init__()
        if backbone not in FLEXUNET_BACKBONE.register_dict:
            raise ValueError(
                f"unknown backbone {backbone!r}: expected one of {sorted(FLEXUNET_BACKBONE.register_dict)}"
            )
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels must have 5 widths (deepest first), got {tuple(decoder_channels)}")
        entry = FLEXUNET_BACKBONE.register_dict[backbone]
        if entry["feature_number"] != 5:
            raise ValueError(f"backbone {backbone!r} gives {entry['feature_number']} feature maps, expected 5")
        params = dict(entry["parameter"])
        params.update({"spatial_dims": spatial_dims, "in_channels": in_channels, "pretrained": pretrained})
        self.backbone = backbone
        self.encoder = entry["type"](**params)
        enc = list(entry["feature_channel"])  # channels at strides 2, 4, 8, 16, 32
        level_ch = [int(decoder_channels[3 - i]) for i in range(4)]  # decoder width at strides 2, 4, 8, 16

        def block(in_ch: int, cat_ch: int, out_ch: int) -> UpCat:
            return UpCat(spatial_dims, in_ch, cat_ch, out_ch, act, norm, decoder_bias, dropout, upsample,
                         pre_conv=None, interp_mode="nearest", align_corners=None, halves=False, is_pad=False)

        # Node X^{i,j} (j >= 1) upsamples X^{i+1,j-1} and concatenates X^{i,0..j-1}; built in computation order.
        self.node_levels = []
        nodes = []
        for j in range(1, 5):
            for i in range(0, 5 - j):
                up_ch = enc[i + 1] if j == 1 else level_ch[i + 1]
                cat_ch = enc[i] + (j - 1) * level_ch[i]
                nodes.append(block(up_ch, cat_ch, level_ch[i]))
                self.node_levels.append(i)
        self.nodes = nn.ModuleList(nodes)
        self.final_up = block(level_ch[0], 0, int(decoder_channels[4]))
        self.segmentation_head = SegmentationHead(spatial_dims=spatial_dims, in_channels=int(decoder_channels[4]),
                                                  out_channels=out_channels, kernel_size=3, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor] = self.encoder(x)
        # grid[i] holds X^{i,0}, X^{i,1}, ... for level i (stride 2 ** (i + 1)).
        grid: list[list[torch.Tensor]] = [[f] for f in feats]
        for k, node in enumerate(self.nodes):
            i = self.node_levels[k]
            grid[i].append(node(grid[i + 1][-1], torch.cat(grid[i], dim=1)))
        return self.segmentation_head(self.final_up(grid[0][4], None))
