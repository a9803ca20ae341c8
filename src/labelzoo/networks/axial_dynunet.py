"""AxialDynUNet: MONAI's DynUNet with the BraTS 2021 winning extensions (asymmetric encoder, axial attention).

Luu, H. M. & Park, S.-H., "Extending nn-UNet for brain tumor segmentation", BrainLes 2021 (BraTS 2021
challenge, first place), arXiv:2112.04653. Reference implementation: github.com/rixez/Brats21_KAIST_MRI_Lab.
"""

# No `from __future__ import annotations`: TorchScript must read the class attribute annotation of _SkipLayer.

from collections.abc import Sequence
from typing import List  # noqa: UP035 (TorchScript reads the attribute annotation of _SkipLayer)

import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock, UnetOutBlock, get_conv_layer
from monai.networks.nets import DynUNet
from monai.networks.nets.dynunet import DynUNetSkipLayer
from torch import nn

from labelzoo.networks.axial_attention import AxialAttention

__all__ = ["AxialDynUNet", "AxialUpBlock"]


class AxialUpBlock(nn.Module):
    """Decoder stage: transposed-conv upsampling, optional axial attention added to it, skip concat, conv block.

    ``up = transp_conv(inp); up = up + attention(up); out = conv_block(cat(up, skip))``. Unlike MONAI's
    ``UnetUpBlock`` the skip may have a different width than the decoder (``skip_channels``), which an
    asymmetric (wider) encoder needs.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of the lower-resolution decoder input.
        skip_channels: channels of the encoder skip connection.
        out_channels: channels of this decoder stage.
        kernel_size: kernel size of the conv block.
        upsample_kernel_size: kernel size (and stride) of the transposed convolution.
        norm_name: normalisation of the conv block (MONAI name or ``(name, args)``).
        act_name: activation of the conv block.
        dropout: dropout of the conv layers.
        trans_bias: whether the transposed convolution has a bias.
        attention: an :class:`AxialAttention` over ``out_channels``, or ``None`` for no attention.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        kernel_size: Sequence[int] | int,
        upsample_kernel_size: Sequence[int] | int,
        norm_name: tuple | str,
        act_name: tuple | str,
        dropout: tuple | str | float | None = None,
        trans_bias: bool = False,
        attention: AxialAttention | None = None,
    ) -> None:
        super().__init__()
        self.transp_conv = get_conv_layer(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=upsample_kernel_size,
            stride=upsample_kernel_size,
            dropout=dropout,
            bias=trans_bias,
            act=None,
            norm=None,
            conv_only=False,
            is_transposed=True,
        )
        self.attention = attention
        self.conv_block = UnetBasicBlock(
            spatial_dims,
            out_channels + skip_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=1,
            dropout=dropout,
            norm_name=norm_name,
            act_name=act_name,
        )

    def forward(self, inp: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.transp_conv(inp)
        if self.attention is not None:
            out = out + self.attention(out)
        out = torch.cat((out, skip), dim=1)
        return self.conv_block(out)


class _SkipLayer(DynUNetSkipLayer):
    """``DynUNetSkipLayer`` that TorchScript compiles, and that skips its head when not supervising.

    MONAI's layer types ``heads`` as ``Optional[List[Tensor]]`` and assigns into it, which TorchScript
    (torch 2.14) rejects; here ``heads`` is always a list (empty for layers without a head).
    """

    heads: List[torch.Tensor]  # noqa: UP006

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        downout = self.downsample(x)
        nextout = self.next_layer(downout)
        upout = self.upsample(nextout, downout)
        if self.super_head is not None and self.supervise and self.index > 0:
            self.heads[self.index - 1] = self.super_head(upout)
        return upout


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _group_count(norm_name: tuple | str) -> int | None:
    """``num_groups`` when ``norm_name`` is a MONAI GroupNorm spec, else ``None``."""
    if isinstance(norm_name, (tuple, list)) and len(norm_name) == 2 and isinstance(norm_name[1], dict):
        name, args = norm_name
        if str(name).lower() == "group":
            return args.get("num_groups")
    elif isinstance(norm_name, str) and norm_name.lower() == "group":
        raise ValueError('norm_name "GROUP" needs its number of groups: use ("GROUP", {"num_groups": 32})')
    return None


class AxialDynUNet(DynUNet):
    """DynUNet extended as in the BraTS 2021 winning entry: asymmetric encoder and axial attention in the decoder.

    Luu & Park, "Extending nn-UNet for brain tumor segmentation", BraTS 2021 / BrainLes 2021,
    `arXiv:2112.04653 <https://arxiv.org/abs/2112.04653>`_. Three changes to the nnU-Net (``DynUNet``)
    architecture, all reachable through the arguments below:

    - asymmetric, larger network: the encoder has ``encoder_multiplier`` (2) times the filters of the
      decoder, at most ``max_encoder_filters`` (512); the decoder keeps the nnU-Net widths ``filters``;
    - GroupNorm (``norm_name=("GROUP", {"num_groups": 32})``, the reference code's setting) instead of
      BatchNorm / InstanceNorm; leaky ReLU with slope 0.01;
    - axial attention (:class:`labelzoo.networks.AxialAttention`) applied to the output of the transposed-conv
      upsampling of the ``attention_levels`` (4) lowest-resolution decoder stages and added to it. The highest-
      resolution stage with attention has ``attention_heads`` x ``attention_head_dim`` (4 x 16, the 64^3 stage
      of a 128^3 patch); heads and head dimension double at each lower stage (8 x 32 at 32^3, 16 x 64 at
      16^3, 32 x 128 at 8^3).

    Deep supervision heads sit at every resolution except the two lowest (the bottleneck and the lowest
    decoder stage): ``deep_supr_num`` defaults to ``len(strides) - 3``.

    Shape contract (as ``DynUNet``): input ``(B, in_channels, *spatial)`` with each spatial size divisible by
    the product of ``strides`` along that axis. In eval mode, or without deep supervision, the output is
    ``(B, out_channels, *spatial / strides[0])`` logits. In training mode with deep supervision the output is
    one tensor ``(B, 1 + deep_supr_num, out_channels, *spatial / strides[0])``: index 0 along dim 1 is the
    full-resolution output, index ``k`` the head ``k`` levels lower, upsampled (nearest) to full size (what
    ``monai.losses.DeepSupervisionLoss`` takes after ``torch.unbind(out, dim=1)``).

    The deep supervision heads exist whatever ``deep_supervision`` is, so a network built with
    ``deep_supervision=False`` (for inference) loads the state dict of one trained with it, strictly, and
    exports to TorchScript; ``deep_supervision`` only decides whether the heads are computed and returned.

    Differences from the reference code, all documented in the BraTS bundle's README: no learned positional
    embedding before the attention (so any patch size divisible by the strides works), the decoder stage
    convolutions run at decoder width (the reference's first decoder conv runs at encoder width).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (one logit per region for sigmoid outputs).
        kernel_size: convolution kernel size per level, as ``DynUNet``.
        strides: convolution strides per level, as ``DynUNet`` (at least 3 levels).
        upsample_kernel_size: transposed-conv kernel sizes, equal to ``strides[1:]``.
        filters: decoder (nnU-Net) widths per level; default ``min(32 * 2**i, 320)`` (512 in 2D).
        encoder_multiplier: encoder width = ``min(encoder_multiplier * filters[i], max_encoder_filters)``.
        max_encoder_filters: cap on the encoder width.
        dropout: dropout of the conv layers.
        norm_name: normalisation, a MONAI norm spec; GroupNorm's group count must divide every width.
        act_name: activation, a MONAI act spec.
        attention_levels: number of lowest-resolution decoder stages with axial attention (0 disables it).
        attention_heads: heads at the highest-resolution stage with attention, doubled per stage below.
        attention_head_dim: head dimension at that stage, doubled per stage below.
        deep_supervision: whether to compute and output the deep supervision heads in training mode (fixed at
            construction).
        deep_supr_num: number of deep supervision heads; ``None`` gives ``len(strides) - 3``.
        res_block: residual encoder blocks, as ``DynUNet``.
        trans_bias: bias in the transposed convolutions.

    Raises:
        ValueError: on a bad argument (its name is in the message).

    Example:
        >>> import torch
        >>> net = AxialDynUNet(3, 4, 3, kernel_size=[3] * 4, strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
        ...                    filters=[8, 16, 32, 32], norm_name=("GROUP", {"num_groups": 4}), attention_levels=2,
        ...                    attention_heads=1, attention_head_dim=4)
        >>> net(torch.rand(2, 4, 16, 16, 16)).shape  # training mode: final output + 1 deep supervision head
        torch.Size([2, 2, 3, 16, 16, 16])
        >>> net.eval()(torch.rand(1, 4, 16, 16, 16)).shape
        torch.Size([1, 3, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[Sequence[int] | int],
        strides: Sequence[Sequence[int] | int],
        upsample_kernel_size: Sequence[Sequence[int] | int],
        filters: Sequence[int] | None = None,
        encoder_multiplier: int = 2,
        max_encoder_filters: int = 512,
        dropout: tuple | str | float | None = None,
        norm_name: tuple | str = ("GROUP", {"num_groups": 32}),
        act_name: tuple | str = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        attention_levels: int = 4,
        attention_heads: int = 4,
        attention_head_dim: int = 16,
        deep_supervision: bool = True,
        deep_supr_num: int | None = None,
        res_block: bool = False,
        trans_bias: bool = False,
    ) -> None:
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        _positive_int("in_channels", in_channels)
        _positive_int("out_channels", out_channels)
        if not isinstance(strides, Sequence) or not isinstance(kernel_size, Sequence) or len(strides) < 3:
            raise ValueError(f"strides must be a sequence of at least 3 levels, got {strides!r}")
        if len(kernel_size) != len(strides):
            raise ValueError(f"kernel_size and strides must have the same length, got {kernel_size!r} and {strides!r}")
        levels = len(strides)
        if filters is None:
            filters = [min(2 ** (5 + i), 320 if spatial_dims == 3 else 512) for i in range(levels)]
        if len(filters) < levels:
            raise ValueError(f"filters needs one width per level ({levels}), got {list(filters)!r}")
        decoder_filters = [_positive_int(f"filters[{i}]", f) for i, f in enumerate(filters[:levels])]
        _positive_int("encoder_multiplier", encoder_multiplier)
        _positive_int("max_encoder_filters", max_encoder_filters)
        encoder_filters = [min(encoder_multiplier * f, max_encoder_filters) for f in decoder_filters]
        _positive_int("attention_levels", attention_levels, minimum=0)
        if attention_levels > levels - 1:
            raise ValueError(
                f"attention_levels must be at most the number of decoder stages ({levels - 1}), got {attention_levels}"
            )
        _positive_int("attention_heads", attention_heads)
        _positive_int("attention_head_dim", attention_head_dim)
        if deep_supr_num is None:
            if deep_supervision and levels < 4:
                raise ValueError(
                    f"deep supervision at all but the 2 lowest resolutions needs at least 4 levels in strides, "
                    f"got {levels}: pass deep_supervision=False or an explicit deep_supr_num"
                )
            deep_supr_num = max(levels - 3, 1)
        groups = _group_count(norm_name)
        if groups is not None:
            _positive_int("norm_name num_groups", groups)
            bad = sorted({w for w in encoder_filters + decoder_filters if w % groups})
            if bad:
                raise ValueError(f"GroupNorm num_groups={groups} must divide every width; it does not divide {bad}")

        # Read by the builder methods, which DynUNet.__init__ calls.
        self.decoder_filters = decoder_filters
        self.encoder_filters = encoder_filters
        self.attention_levels = attention_levels
        self.attention_heads = attention_heads
        self.attention_head_dim = attention_head_dim
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size,
            strides,
            upsample_kernel_size,
            filters=encoder_filters,
            dropout=dropout,
            norm_name=norm_name,
            act_name=act_name,
            deep_supervision=True,  # always build the heads: one state dict for training and inference
            deep_supr_num=deep_supr_num,
            res_block=res_block,
            trans_bias=trans_bias,
        )
        self.deep_supervision = deep_supervision
        layer = self.skip_layers
        while isinstance(layer, DynUNetSkipLayer):
            layer.__class__ = _SkipLayer
            layer.heads = [] if layer.heads is None else layer.heads
            layer.supervise = deep_supervision
            layer = layer.next_layer

    def __prepare_scriptable__(self) -> "AxialDynUNet":
        """Refuse to script a deep-supervision network (TorchScript would not share the heads list)."""
        if self.deep_supervision:
            raise ValueError(
                "AxialDynUNet with deep_supervision=True cannot be exported to TorchScript: build the inference "
                "network with deep_supervision=False (same state dict) and load the trained weights into it"
            )
        return self

    def attention_shape(self, level: int) -> tuple[int, int] | None:
        """``(heads, head_dim)`` of the axial attention of the decoder stage at ``level`` (0 = full resolution).

        ``None`` for a stage without attention.
        """
        first = len(self.strides) - 1 - self.attention_levels  # highest-resolution level with attention
        if level < first or level > len(self.strides) - 2:
            return None
        scale = 2 ** (level - first)
        return self.attention_heads * scale, self.attention_head_dim * scale

    def get_upsamples(self) -> nn.ModuleList:
        """Decoder stages from the lowest resolution up, with axial attention at the lowest ``attention_levels``."""
        levels = len(self.strides)
        layers = []
        for level in range(levels - 2, -1, -1):  # output level of each decoder stage, lowest resolution first
            in_c = self.encoder_filters[-1] if level == levels - 2 else self.decoder_filters[level + 1]
            out_c = self.decoder_filters[level]
            shape = self.attention_shape(level)
            attention = None
            if shape is not None:
                attention = AxialAttention(self.spatial_dims, out_c, num_heads=shape[0], head_dim=shape[1])
            layers.append(
                AxialUpBlock(
                    self.spatial_dims,
                    in_channels=in_c,
                    skip_channels=self.encoder_filters[level],
                    out_channels=out_c,
                    kernel_size=self.kernel_size[level + 1],
                    upsample_kernel_size=self.upsample_kernel_size[level],
                    norm_name=self.norm_name,
                    act_name=self.act_name,
                    dropout=self.dropout,
                    trans_bias=self.trans_bias,
                    attention=attention,
                )
            )
        return nn.ModuleList(layers)

    def get_output_block(self, idx: int) -> UnetOutBlock:
        """1x1 convolution to ``out_channels`` from the decoder width of level ``idx``."""
        return UnetOutBlock(self.spatial_dims, self.decoder_filters[idx], self.out_channels, dropout=self.dropout)
