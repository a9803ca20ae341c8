"""Ensemble inference for a bundle chosen by ``labelzoo find-best``: average the softmax of several configurations.

The host bundle's own network and inferer give the first member; :class:`EnsembleInferer` adds the other
members (their networks and weights live in the host bundle's ``models/``), each run on the host's
resampled image: a ``3d_lowres`` member on the image downsampled by the spacing ratio (its softmax
upsampled back), a ``2d`` member slice by slice (its in-plane spacing is the host's; slices are
independent, so the slice spacing does not matter to it). The average is returned as log-probabilities,
so the bundle's ``Activationsd(softmax=True)`` turns it back into the averaged probabilities
(nnU-Net v2 ``ensemble_folders`` averages probabilities the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

logger = logging.getLogger(__name__)


class EnsembleMember:
    """One extra member: a network with its weights and how to run it on the host's grid.

    Args:
        network: the member's network (inference mode, no deep supervision).
        checkpoint: its weights (``CheckpointSaver`` file with key ``model`` or a plain state dict), or ``None``.
        roi_size: its patch size (2 values for a ``2d`` member).
        spacing_ratio: member spacing / host spacing per axis of the host (3D members); ``None`` = same grid.
        slice_axis: for a 2D member on 3D images, the host axis it slices along.
    """

    def __init__(self, network: torch.nn.Module, checkpoint: str | Path | None, roi_size: Sequence[int],
                 spacing_ratio: Sequence[float] | None = None, slice_axis: int | None = None):
        self.network = network
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"ensemble member weights {path} not found")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state,
                                         strict=False)
        self.roi_size = list(roi_size)
        self.spacing_ratio = [float(r) for r in spacing_ratio] if spacing_ratio else None
        self.slice_axis = slice_axis

    def probabilities(self, inputs: torch.Tensor, sw_batch_size: int, overlap: float) -> torch.Tensor:
        """Softmax of this member on ``inputs`` (B, C, *spatial), at the input's grid."""
        net = self.network.to(inputs.device).eval()
        size = inputs.shape[2:]
        if self.slice_axis is not None:
            inferer = SliceInferer(roi_size=self.roi_size, spatial_dim=self.slice_axis, sw_batch_size=sw_batch_size,
                                   overlap=overlap, mode="gaussian", progress=False)
            return torch.softmax(torch.as_tensor(inferer(torch.as_tensor(inputs), net)), 1)
        x = torch.as_tensor(inputs)
        interp = "trilinear" if len(size) == 3 else "bilinear"
        if self.spacing_ratio and any(abs(r - 1.0) > 1e-3 for r in self.spacing_ratio):
            low = [max(1, round(s / r)) for s, r in zip(size, self.spacing_ratio, strict=True)]
            x = F.interpolate(x, size=low, mode=interp, align_corners=False)
        inferer = SlidingWindowInferer(roi_size=self.roi_size, sw_batch_size=sw_batch_size, overlap=overlap,
                                       mode="gaussian")
        probs = torch.softmax(torch.as_tensor(inferer(x, net)), 1)
        if tuple(probs.shape[2:]) != tuple(size):
            probs = F.interpolate(probs, size=list(size), mode=interp, align_corners=False)
        return probs


class EnsembleInferer(Inferer):
    """Average the softmax of the host (``inferer`` + the network passed in) and ``members``.

    Args:
        inferer: the host bundle's own inferer.
        members: extra members, as :class:`EnsembleMember` or dicts of its arguments.
        sw_batch_size: windows per forward pass for the members.
        overlap: window overlap for the members.

    Returns (on call):
        Log of the averaged probabilities, shape of the host's output.
    """

    def __init__(self, inferer: Inferer, members: Sequence[EnsembleMember | Mapping[str, Any]], sw_batch_size: int = 1,
                 overlap: float = 0.5):
        super().__init__()
        if not members:
            raise ValueError("members: give at least one extra ensemble member")
        self.inferer = inferer
        self.members = [m if isinstance(m, EnsembleMember) else EnsembleMember(**m) for m in members]
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            host = torch.softmax(torch.as_tensor(self.inferer(inputs, network, *args, **kwargs)), 1)
            total = host.clone()
            for m in self.members:
                total += m.probabilities(inputs, self.sw_batch_size, self.overlap).to(total.device)
        return torch.log((total / (1 + len(self.members))).clamp_min(1e-8))
