"""Cascade stage 2 at inference: run stage 1 (``3d_lowres``) inside the inferer, so the bundle needs only ``image``.

nnU-Net v2's cascade predicts stage 1 at the low-resolution spacing, resamples its segmentation to the
full-resolution grid, one-hot encodes it and appends it to the image channels of stage 2
(``nnunetv2/inference/predict_from_raw_data.py``, ``previous_stage_predictions``). :class:`CascadeInferer`
does the same on one tensor: downsample the (already resampled, normalised) full-resolution image by the
spacing ratio, sliding-window stage 1, upsample its softmax, argmax, one-hot, concatenate, sliding-window
stage 2.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, sliding_window_inference
from monai.networks.utils import one_hot

logger = logging.getLogger(__name__)


class CascadeInferer(Inferer):
    """Sliding-window inference of a two-stage cascade (stage 1 held by the inferer, stage 2 passed in).

    Args:
        stage1_network: the ``3d_lowres`` network (inference mode, no deep supervision).
        stage1_checkpoint: its weights (a MONAI ``CheckpointSaver`` file with key ``model``, or a plain state
            dict); ``None`` keeps the network as it is (tests only).
        roi_size: stage-2 patch size.
        stage1_roi_size: stage-1 patch size.
        spacing_ratio: stage-1 spacing / stage-2 spacing per axis (> 1: stage 1 is coarser).
        num_classes: classes of the one-hot stage-1 segmentation (background included).
        sw_batch_size: windows per forward pass.
        overlap: window overlap.
        mode: window blending (``gaussian`` as nnU-Net, or ``constant``).
        image_channels: leading input channels that are the image (``None``: all); others are dropped.

    Example:
        >>> from monai.networks.nets import DynUNet
        >>> net1 = DynUNet(3, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16])
        >>> net2 = DynUNet(3, 3, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16])
        >>> inferer = CascadeInferer(net1, None, [16, 16, 16], [8, 8, 8], [2.0, 2.0, 2.0], 2)
        >>> inferer(torch.zeros(1, 1, 16, 16, 16), net2.eval()).shape
        torch.Size([1, 2, 16, 16, 16])
    """

    def __init__(self, stage1_network: torch.nn.Module, stage1_checkpoint: str | Path | None,
                 roi_size: Sequence[int], stage1_roi_size: Sequence[int], spacing_ratio: Sequence[float],
                 num_classes: int, sw_batch_size: int = 1, overlap: float = 0.5, mode: str = "gaussian",
                 image_channels: int | None = None):
        super().__init__()
        if len(roi_size) != len(stage1_roi_size) or len(roi_size) != len(spacing_ratio):
            raise ValueError("roi_size, stage1_roi_size and spacing_ratio must have one entry per spatial axis, got "
                             f"{roi_size}, {stage1_roi_size}, {spacing_ratio}")
        self.stage1 = stage1_network
        if stage1_checkpoint is not None:
            path = Path(stage1_checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"stage-1 checkpoint {path} not found: train the 3d_lowres bundle first")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
            self.stage1.load_state_dict(state, strict=False)
        self.roi_size = list(roi_size)
        self.stage1_roi_size = list(stage1_roi_size)
        self.spacing_ratio = [float(r) for r in spacing_ratio]
        self.num_classes = int(num_classes)
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.image_channels = image_channels

    def stage1_onehot(self, inputs: torch.Tensor) -> torch.Tensor:
        """One-hot stage-1 segmentation of ``inputs`` at the input's grid."""
        size = inputs.shape[2:]
        low = [max(1, round(s / r)) for s, r in zip(size, self.spacing_ratio, strict=True)]
        interp = "trilinear" if len(size) == 3 else "bilinear"
        x_low = F.interpolate(torch.as_tensor(inputs), size=low, mode=interp, align_corners=False)
        net = self.stage1.to(inputs.device).eval()
        logits = sliding_window_inference(x_low, self.stage1_roi_size, self.sw_batch_size, net,
                                          overlap=self.overlap, mode=self.mode)
        probs = F.interpolate(torch.softmax(torch.as_tensor(logits), 1), size=size, mode=interp, align_corners=False)
        return one_hot(probs.argmax(1, keepdim=True), self.num_classes, dim=1).to(inputs.dtype)

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.image_channels:
            inputs = inputs[:, : self.image_channels]
        with torch.no_grad():
            prev = self.stage1_onehot(inputs)
        x = torch.cat([inputs, prev.to(inputs.device)], 1)
        return sliding_window_inference(x, self.roi_size, self.sw_batch_size, network, *args, overlap=self.overlap,
                                        mode=self.mode, **kwargs)
