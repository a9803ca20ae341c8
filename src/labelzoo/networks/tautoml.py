"""The T-AutoML search blocks and the 3D segmentation network decoded from a T-AutoML integer vector.

T-AutoML (Yang et al., "T-AutoML: Automated Machine Learning for Lesion Segmentation using Transformers in
3D Medical Imaging", ICCV 2021) searches networks made of residual, bottleneck and axial-attention blocks
whose type, count, spatial scale and connections are free: any directed acyclic graph, not only an
encoder-decoder. The vector layout is documented in :mod:`labelzoo.automl.encoding`.

How a vector becomes a network (:class:`TAutoMLNet`):

- a stem (3x3x3 conv + instance norm + leaky ReLU) maps the input to ``base_channels`` at full resolution;
- block ``i`` runs at spatial scale ``s`` (input size divided by ``2**s``, rounded up) with
  ``min(base_channels * 2**s, max_channels)`` channels. Its inputs (the stem for block 0, else the blocks
  named by ``input_a`` / ``input_b``) are resampled to its size (average pooling down, trilinear
  interpolation up), projected to its channels by a 1x1x1 convolution when their channels differ, and
  summed;
- the outputs of the blocks nobody reads are resampled to full resolution, projected to ``base_channels``,
  summed, and a 1x1x1 convolution gives the ``out_channels`` logits.

Shape contract: ``(B, in_channels, H, W, D) -> (B, out_channels, H, W, D)`` for any sizes that leave more
than one voxel at the coarsest scale used (instance norm needs it): with blocks at scale 3, at least 9
voxels per side; 16 or more is sensible.

Blocks (MONAI building blocks where MONAI has them):

- residual: :class:`monai.networks.blocks.UnetResBlock` (two 3x3x3 convs, instance norm, leaky ReLU, skip);
- bottleneck: :class:`monai.networks.nets.resnet.ResNetBottleneck` (1x1x1 reduce by 4, 3x3x3, 1x1x1 expand,
  skip), instance norm;
- axial attention: ``x + AxialAttention(norm(x))`` with :class:`labelzoo.networks.axial_attention.AxialAttention`
  (the same block the BraTS bundle's AxialDynUNet uses).

Example:
    >>> import torch
    >>> arch = [0, 0, 0, -1, -1, 1, 1, 1, 0, -1] + [0] * 8 + [2, 3]
    >>> TAutoMLNet(arch, in_channels=1, out_channels=3, base_channels=8)(torch.rand(1, 1, 16, 16, 16)).shape
    torch.Size([1, 3, 16, 16, 16])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UnetResBlock
from monai.networks.nets.resnet import ResNetBottleneck
from torch import nn

from labelzoo.automl.encoding import InvalidVectorError, decode
from labelzoo.networks.axial_attention import AxialAttention

__all__ = ["AxialAttentionSearchBlock", "BottleneckSearchBlock", "ResidualSearchBlock", "TAutoMLNet", "resample"]


def resample(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Resample a ``(B, C, *spatial)`` tensor to ``size``: average pooling when shrinking, trilinear otherwise."""
    current = list(x.shape[2:])
    if current == size:
        return x
    shrink = True
    for i in range(len(size)):
        if size[i] > current[i]:
            shrink = False
    if shrink:
        return F.adaptive_avg_pool3d(x, size)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def scale_size(full: list[int], scale: int) -> list[int]:
    """Spatial size at ``scale``: each full-resolution size divided by ``2**scale``, rounded up."""
    f = 1 << scale
    return [(d + f - 1) // f for d in full]


class ResidualSearchBlock(nn.Module):
    """T-AutoML residual block: MONAI's ``UnetResBlock`` (3x3x3 conv, norm, act, 3x3x3 conv, norm, + input, act)."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.block = UnetResBlock(spatial_dims=3, in_channels=channels, out_channels=channels, kernel_size=3,
                                  stride=1, norm_name=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial) -> (B, C, *spatial)``."""
        return self.block(x)


class BottleneckSearchBlock(nn.Module):
    """T-AutoML bottleneck block: MONAI's ``ResNetBottleneck`` (1x1x1 to C/4, 3x3x3, 1x1x1 to C, + input).

    Raises:
        ValueError: if ``channels`` is not a positive multiple of 4.
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        if channels < 4 or channels % 4:
            raise ValueError(f"a bottleneck block needs channels divisible by 4, got {channels}")
        self.block = ResNetBottleneck(in_planes=channels, planes=channels // 4, spatial_dims=3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial) -> (B, C, *spatial)``."""
        return self.block(x)


class AxialAttentionSearchBlock(nn.Module):
    """T-AutoML axial-attention block: ``x + AxialAttention(InstanceNorm(x))`` (pre-norm transformer style).

    Heads: ``min(4, max(1, channels // 8))``, each of dimension ``channels // num_heads``, so heads double with
    the channels as the resolution halves (up to 4).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        heads = min(4, max(1, channels // 8))
        self.norm = nn.InstanceNorm3d(channels, affine=True)
        self.attention = AxialAttention(spatial_dims=3, channels=channels, num_heads=heads,
                                        head_dim=max(1, channels // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W, D) -> (B, C, H, W, D)``."""
        return x + self.attention(self.norm(x))


def _make_body(block_type: str, channels: int) -> nn.Module:
    if block_type == "residual":
        return ResidualSearchBlock(channels)
    if block_type == "bottleneck":
        return BottleneckSearchBlock(channels)
    return AxialAttentionSearchBlock(channels)


class _Node(nn.Module):
    """One block of the graph with the adapters of its inputs (resample + 1x1x1 projection, then sum)."""

    def __init__(self, body: nn.Module, scale: int, sources: list[int], source_channels: list[int],
                 channels: int) -> None:
        super().__init__()
        self.scale = scale
        self.sources = sources  # indices into the feature list (0 = stem, i + 1 = block i)
        self.adapters = nn.ModuleList(
            [nn.Identity() if c == channels else nn.Conv3d(c, channels, kernel_size=1) for c in source_channels]
        )
        self.body = body

    def forward(self, feats: list[torch.Tensor], full: list[int]) -> torch.Tensor:
        size = scale_size(full, self.scale)
        x = torch.zeros(0)
        for k, adapter in enumerate(self.adapters):
            y = adapter(resample(feats[self.sources[k]], size))
            x = y if k == 0 else x + y
        return self.body(x)


class TAutoMLNet(nn.Module):
    """3D segmentation network decoded from a T-AutoML integer vector (see the module docstring).

    Args:
        arch: the configuration vector (the full vector with augmentation, lr and loss codes; only the
            block part shapes the network). See :mod:`labelzoo.automl.encoding`.
        in_channels: input channels.
        out_channels: output channels (classes, background included).
        base_channels: channels at full resolution; scale ``s`` has ``base_channels * 2**s`` (capped).
            A multiple of 4 (bottleneck blocks reduce by 4).
        max_channels: the cap on channels at any scale.

    Raises:
        ValueError: on an invalid vector (the message names the position) or bad channel counts.

    Shape contract: ``(B, in_channels, H, W, D) -> (B, out_channels, H, W, D)`` (logits).
    """

    def __init__(self, arch: Sequence[int], in_channels: int = 1, out_channels: int = 2, base_channels: int = 16,
                 max_channels: int = 128) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("max_channels", max_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(base_channels, bool) or not isinstance(base_channels, int) or base_channels < 4 \
                or base_channels % 4:
            raise ValueError(f"base_channels must be a positive multiple of 4, got {base_channels!r}")
        if max_channels < base_channels:
            raise ValueError(f"max_channels ({max_channels}) must be at least base_channels ({base_channels})")
        try:
            config = decode(arch)
        except InvalidVectorError as e:
            raise ValueError(f"arch: {e}") from None
        self.arch = [int(v) for v in arch]
        self.config = config

        def width(scale: int) -> int:
            return min(base_channels * 2**scale, max_channels)

        self.stem = Convolution(spatial_dims=3, in_channels=in_channels, out_channels=base_channels,
                                kernel_size=3, norm="instance", act=("leakyrelu", {"negative_slope": 0.01}))
        channels = [base_channels]  # channels of the feature list: stem, then block 0, 1, ...
        nodes = []
        for b in config.blocks:
            sources = [0] if b.id == 0 else [i + 1 for i in b.inputs]
            c = width(b.scale)
            nodes.append(_Node(_make_body(b.type, c), b.scale, sources, [channels[s] for s in sources], c))
            channels.append(c)
        self.nodes = nn.ModuleList(nodes)
        self.outputs = [i + 1 for i in config.output_blocks]
        self.output_adapters = nn.ModuleList(
            [nn.Identity() if channels[i] == base_channels else nn.Conv3d(channels[i], base_channels, 1)
             for i in self.outputs]
        )
        self.head = nn.Conv3d(base_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W, D) -> (B, out_channels, H, W, D)`` logits."""
        full = [int(s) for s in x.shape[2:]]
        feats = [self.stem(x)]
        for node in self.nodes:
            feats.append(node(feats, full))
        y = torch.zeros(0)
        for k, adapter in enumerate(self.output_adapters):
            z = adapter(resample(feats[self.outputs[k]], full))
            y = z if k == 0 else y + z
        return self.head(y)
