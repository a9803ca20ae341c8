"""MONAI transforms the bundles reference by dotted path (only what MONAI lacks)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from labelzoo.errors import LabelZooError

__all__ = ["LUMA_WEIGHTS", "ToGrey2D", "ToGrey2Dd"]

#: ITU-R BT.601 luma weights (what PIL's ``convert("L")`` uses) for R, G, B.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _source(img: torch.Tensor) -> str:
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return f" in {name}"
    return ""


class ToGrey2D(Transform):
    """Make a loaded, channel-first 2D image one grey channel: ``(C, W, H[, 1...])`` -> ``(1, W, H)``.

    Accepts what radiographs come as: grey (1 channel), grey + alpha (2; alpha dropped), RGB (3; BT.601 luma)
    and RGBA (4; alpha dropped), with trailing singleton spatial axes (a single-frame DICOM or a 2D NIfTI stored
    as ``W x H x 1``) squeezed. Metadata (affine, file name) is kept.

    Raises:
        LabelZooError: for a volume (more than two spatial axes of size > 1) or another channel count, naming
            the file when the image carries it.
    """

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim < 3:
            raise LabelZooError(
                f"expected a channel-first 2D image (C, W, H){_source(img)}, got shape {tuple(img.shape)}"
            )
        while img.ndim > 3 and img.shape[-1] == 1:
            img = img[..., 0]
        if img.ndim != 3:
            raise LabelZooError(
                f"expected a 2D image{_source(img)}, got spatial shape {tuple(img.shape[1:])}: "
                "this model segments single radiographs (PNG, JPEG, single-frame DICOM or 2D NIfTI), not volumes"
            )
        channels = img.shape[0]
        if channels == 1:
            return img
        if channels == 2:
            return img[:1]
        if channels in (3, 4):
            w = torch.as_tensor(LUMA_WEIGHTS, dtype=torch.float32, device=img.device).view(3, 1, 1)
            grey = (img[:3].float() * w).sum(dim=0, keepdim=True)
            return grey.to(img.dtype) if img.dtype.is_floating_point else grey
        raise LabelZooError(
            f"expected a grey, grey+alpha, RGB or RGBA image{_source(img)}, got {channels} channels"
        )


class ToGrey2Dd(MapTransform):
    """Dictionary version of :class:`ToGrey2D`.

    Example (bundle JSON): ``{"_target_": "labelzoo.transforms.ToGrey2Dd", "keys": ["image", "label"]}``
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToGrey2D()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
