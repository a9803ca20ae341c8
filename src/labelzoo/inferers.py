"""Inferers that bundles reference by dotted path."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer


class MirroringInferer(Inferer):
    """Test-time augmentation by mirroring, as nnU-Net: the mean of the predictions of every flip combination.

    For ``spatial_axes=(0, 1, 2)`` the wrapped inferer runs ``2**3 = 8`` times (identity, each axis, each pair,
    all three); each prediction is flipped back before averaging. The network outputs (logits) are averaged,
    as nnU-Net v2 does (``_internal_maybe_mirror_and_predict``; v1 averaged the softmax). With
    ``enabled=False`` it is the wrapped inferer, so a bundle switches TTA with one config value.

    Args:
        inferer: the inferer to wrap, e.g. ``SlidingWindowInferer``.
        spatial_axes: spatial axes (0-based, after batch and channel) to mirror along.
        enabled: whether to mirror at all.

    Raises:
        ValueError: on a negative or repeated axis.

    Example:
        >>> from monai.inferers import SimpleInferer
        >>> net = lambda x: x * 2
        >>> MirroringInferer(SimpleInferer(), spatial_axes=(0, 1))(torch.ones(1, 1, 4, 4), net).mean().item()
        2.0
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = (0, 1, 2), enabled: bool = True) -> None:
        super().__init__()
        axes = tuple(int(a) for a in spatial_axes)
        if any(a < 0 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"spatial_axes must be distinct non-negative axes, got {tuple(spatial_axes)}")
        self.inferer = inferer
        self.spatial_axes = axes
        self.enabled = bool(enabled)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if not self.enabled or not self.spatial_axes:
            return self.inferer(inputs, network, *args, **kwargs)
        if max(self.spatial_axes) >= inputs.ndim - 2:
            raise ValueError(f"spatial_axes {self.spatial_axes} do not fit an input of shape {tuple(inputs.shape)}")
        total: torch.Tensor | None = None
        count = 0
        for n in range(len(self.spatial_axes) + 1):
            for subset in itertools.combinations(self.spatial_axes, n):
                dims = [a + 2 for a in subset]
                x = torch.flip(inputs, dims) if dims else inputs
                y = self.inferer(x, network, *args, **kwargs)
                y = torch.flip(y, dims) if dims else y
                total = y if total is None else total + y
                count += 1
        assert total is not None
        return total / count
