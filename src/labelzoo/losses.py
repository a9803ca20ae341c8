"""Losses that bundles reference by dotted path."""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss


class StackedDeepSupervisionLoss(DeepSupervisionLoss):
    """``monai.losses.DeepSupervisionLoss`` that also takes DynUNet's stacked deep-supervision output.

    In training mode ``DynUNet(deep_supervision=True)`` (and :class:`labelzoo.networks.AxialDynUNet`) return one
    tensor ``(B, 1 + heads, C, *spatial)``, the heads upsampled to full size, because TorchScript needs one
    return type. ``SupervisedTrainer`` hands that tensor to the loss as is; MONAI's ``DeepSupervisionLoss``
    wants a list. This subclass unbinds a tensor with one dimension more than the target; anything else
    (a list, a plain ``(B, C, *spatial)`` output in eval mode) goes to ``DeepSupervisionLoss`` unchanged.

    Args:
        loss: the loss of each output, e.g. ``DiceCELoss`` or ``DiceFocalLoss``.
        weight_mode: ``"exp"`` (1, 0.5, 0.25, ... as nnU-Net), ``"same"`` or ``"two"``; see MONAI.
        weights: explicit weights per output, overriding ``weight_mode``.

    Example:
        >>> from monai.losses import DiceLoss
        >>> loss = StackedDeepSupervisionLoss(DiceLoss(sigmoid=True))
        >>> float(loss(torch.zeros(2, 3, 1, 8, 8), torch.ones(2, 1, 8, 8))) > 0
        True
    """

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(input, torch.Tensor) and input.ndim == target.ndim + 1:
            input = list(torch.unbind(input, dim=1))
        return super().forward(input, target)
