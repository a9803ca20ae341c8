"""Losses that bundles reference by dotted path."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.losses import DeepSupervisionLoss


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A label map ``(B, 1, *spatial)`` resized to ``shape`` as nnU-Net v2 does for its deep-supervision targets.

    ``interpolate(..., mode="nearest-exact")`` on a float copy, cast back (batchgeneratorsv2's
    ``DownsampleSegForDSTransform``); the same per sample as per batch. A target already of ``shape`` is returned
    as is. MetaTensors lose their metadata (the loss needs none).

    Example:
        >>> downsample_target(torch.arange(16.0).reshape(1, 1, 4, 4), (2, 2)).tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    shape = tuple(int(s) for s in shape)
    if tuple(target.shape[2:]) == shape:
        return target
    plain = target.as_tensor() if hasattr(target, "as_tensor") else torch.as_tensor(target)
    return torch.nn.functional.interpolate(plain.float(), size=shape, mode="nearest-exact").to(plain.dtype)


def nnunet_deep_supervision(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``loss`` over a network's deep-supervision outputs, weighted as nnU-Net v2 does.

    Head ``i`` gets weight ``1 / 2**i``, normalised to sum 1 (``nnUNetTrainer._build_loss``). ``pred`` may be

    - a list or tuple ``[main, head_1, ...]`` of heads at their own resolution
      (:class:`labelzoo.networks.NativeHeadsDynUNet`): the target is downsampled to each head's shape
      (:func:`downsample_target`, nnU-Net's nearest-exact), so the loss runs at each head's resolution;
    - ``(B, 1 + k, C, ...)``, one dimension more than ``target`` (``DynUNet(deep_supervision=True)``, heads
      upsampled to the target's size): every head against the full-resolution target.

    Any other ``pred`` gets the plain loss.

    Example:
        >>> mse = lambda p, t: ((p - t) ** 2).mean()
        >>> float(nnunet_deep_supervision(mse, torch.stack([torch.ones(1, 2), torch.zeros(1, 2)], 1),
        ...                               torch.zeros(1, 2)))
        0.6666666865348816
        >>> float(nnunet_deep_supervision(mse, [torch.ones(1, 1, 4), torch.zeros(1, 1, 2)], torch.zeros(1, 1, 4)))
        0.6666666865348816
    """
    if isinstance(pred, (list, tuple)):
        heads = list(pred)
        targets = [downsample_target(target, h.shape[2:]) for h in heads]
    elif pred.dim() == target.dim() + 1:
        heads = list(torch.unbind(pred, dim=1))
        targets = [target] * len(heads)
    else:
        return loss(pred, target)
    weights = torch.tensor([0.5**i for i in range(len(heads))])
    weights = weights / weights.sum()
    return sum(w * loss(h, t) for w, h, t in zip(weights.tolist(), heads, targets, strict=True))


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


class MaskedDiceCELoss(torch.nn.Module):
    """Dice + cross-entropy that leaves out voxels whose target is ``ignore_value`` (partial annotation).

    MONAI's ``DiceCELoss`` has no ``ignore_index``. Here the masked voxels are removed from both terms: the
    cross-entropy is averaged over annotated voxels only, and the Dice sums (intersection, prediction,
    target) run over annotated voxels only (prediction and one-hot target multiplied by the mask). Without
    ignored voxels it equals ``DiceCELoss(to_onehot_y=True, softmax=True, ...)`` with the same arguments.
    Deep-supervision outputs (a list of heads at their own resolution, the target downsampled to each, or
    DynUNet's stacked ``(B, 1 + k, C, ...)``) are weighted ``1 / 2**i`` as nnU-Net does
    (:func:`nnunet_deep_supervision`, as :class:`labelzoo.planning.transforms.DeepSupervisionDiceCELoss`).

    Args:
        ignore_value: target value of unannotated voxels (:data:`labelzoo.partial.IGNORE_VALUE`).
        include_background: keep channel 0 in the Dice term.
        batch: Dice over the whole batch instead of per image.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        **unused: other ``DiceCELoss`` arguments of a bundle's loss config that this loss implies
            (``to_onehot_y=True``, ``softmax=True``); any other value is refused.

    Example:
        >>> loss = MaskedDiceCELoss()
        >>> target = torch.full((1, 1, 4, 4), 255.0); target[..., 0] = 1
        >>> float(loss(torch.zeros(1, 2, 4, 4), target)) > 0
        True
    """

    def __init__(self, ignore_value: int = 255, include_background: bool = False, batch: bool = False,
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                 **unused: object):
        super().__init__()
        implied = {"to_onehot_y": True, "softmax": True, "sigmoid": False, "squared_pred": False, "jaccard": False,
                   "reduction": "mean", "other_act": None, "weight": None, "ce_weight": None, "label_smoothing": 0.0}
        wrong = {k: v for k, v in unused.items() if k not in implied or implied[k] != v}
        if wrong:
            raise ValueError(f"MaskedDiceCELoss supports softmax Dice + CE on an index target only; unsupported "
                             f"arguments {wrong}")
        self.ignore_value = ignore_value
        self.include_background = include_background
        self.batch = batch
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def _one(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = torch.as_tensor(target)
        if target.shape[1] != 1:
            raise ValueError(f"target must hold class indices (B, 1, ...), got shape {tuple(target.shape)}")
        t = target[:, 0].round().long()
        mask = t != self.ignore_value
        t = torch.where(mask, t, torch.zeros_like(t))
        n_classes = pred.shape[1]
        pred = pred.float()
        ce = torch.nn.functional.cross_entropy(pred, t, reduction="none")
        m = mask.float()
        ce = (ce * m).sum() / m.sum().clamp(min=1.0)
        probs = torch.softmax(pred, dim=1) * m[:, None]
        onehot = torch.nn.functional.one_hot(t, n_classes).movedim(-1, 1).float() * m[:, None]
        if not self.include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
        dims = tuple(range(2, pred.ndim))
        if self.batch:
            dims = (0, *dims)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = 1.0 - (2.0 * inter + self.smooth_nr) / (denom + self.smooth_dr)
        return self.lambda_dice * dice.mean() + self.lambda_ce * ce

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nnunet_deep_supervision(self._one, pred, target)
