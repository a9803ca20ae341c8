"""MONAI transforms that bundle configs reference to reject bad input with a clear message.

They raise :class:`labelzoo.errors.LabelZooError` naming the file and what was expected, where MONAI alone
would fail later with a shape error deep inside a network. Bundles use them by dotted path::

    {"_target_": "labelzoo.transforms.CheckedLoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "labelzoo.transforms.ValidateImaged", "keys": "image", "num_channels": 1, "spatial_dims": 3}

``CheckedLoadImaged`` is a :class:`monai.transforms.LoadImaged`, so MONAI Label (which looks for
``LoadImaged`` instances in a bundle's pre-transforms) treats it as the loader.

``ToGrey2Dd`` makes radiographs (grey, RGB, RGBA, single-frame DICOM) one grey 2D channel for 2D bundles.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform, Transform

from labelzoo.errors import LabelZooError


def _filename(data: Mapping[Hashable, Any], key: Hashable) -> str:
    """The source file of ``data[key]`` (from MetaTensor meta data or the path itself), for messages."""
    value = data.get(key)
    meta = getattr(value, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    meta_dict = data.get(f"{key}_meta_dict")
    if isinstance(meta_dict, Mapping) and meta_dict.get("filename_or_obj"):
        return str(meta_dict["filename_or_obj"])
    return str(value) if isinstance(value, (str, list, tuple)) else f"<'{key}' array>"


class CheckedLoadImaged(LoadImaged):
    """``LoadImaged`` that turns "cannot read this file" into one clear :class:`LabelZooError`.

    The message names the key, the file and what was expected (an image that nibabel or ITK can read).
    """

    def __call__(self, data, reader=None):  # noqa: D102 (same contract as LoadImaged)
        try:
            return super().__call__(data, reader)
        except LabelZooError:
            raise
        except Exception as e:  # MONAI wraps every reader failure; report the file, keep the cause chained
            key = next((k for k in self.keys if k in data), self.keys[0])
            source = data.get(key) if isinstance(data, Mapping) else data
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LabelZooError(
                f"cannot read '{key}' file {source}: expected an image file that nibabel or ITK can read "
                f"(NIfTI .nii/.nii.gz, NRRD, MHA, DICOM folder, PNG); reader said: {first}"
            ) from e


class ValidateImaged(MapTransform):
    """Check channel count and spatial dimensions of channel-first images; raise a clear error otherwise.

    Put it right after ``EnsureChannelFirstd``. A volume with a single voxel along a spatial axis counts as
    2D (a slice saved as NIfTI), which a 3D network cannot use.

    Args:
        keys: keys of the images to check.
        num_channels: expected channel count (the bundle metadata's ``num_channels``).
        spatial_dims: expected number of spatial dimensions (2 or 3).
        min_size: smallest accepted size along every spatial axis.
        allow_missing_keys: skip keys absent from the data.

    Raises:
        LabelZooError: naming the file, the shape found and the shape expected.
    """

    def __init__(self, keys: KeysCollection, num_channels: int, spatial_dims: int = 3, min_size: int = 2,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if num_channels < 1:
            raise ValueError(f"num_channels must be at least 1, got {num_channels}")
        self.num_channels = int(num_channels)
        self.spatial_dims = int(spatial_dims)
        self.min_size = int(min_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key], _filename(d, key), key)
        return d

    def check(self, image: Any, filename: str, key: Hashable = "image") -> None:
        """Raise :class:`LabelZooError` if ``image`` (channel first) does not have the expected shape."""
        shape: Sequence[int] = tuple(getattr(image, "shape", ()))
        expected = f"{self.num_channels} channel(s) of a {self.spatial_dims}D image (channel-first shape " \
                   f"({self.num_channels}, {', '.join('N' * self.spatial_dims)}))"
        spatial = shape[1:]
        if len(spatial) != self.spatial_dims or min(spatial, default=0) < self.min_size:
            found = tuple(s for s in spatial if s > 1)
            raise LabelZooError(
                f"'{key}' file {filename} is a {len(found)}D image of spatial shape {tuple(spatial)}: "
                f"expected {expected}, at least {self.min_size} voxels along each axis"
            )
        if shape[0] != self.num_channels:
            raise LabelZooError(
                f"'{key}' file {filename} has {shape[0]} channel(s) (shape {tuple(shape)}): expected {expected}"
            )


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
        squeezed = False
        while img.ndim > 3 and img.shape[-1] == 1:
            img, squeezed = img[..., 0], True
        if squeezed and isinstance(img, MetaTensor) and "spatial_shape" in img.meta:
            # writers size their output from the meta data: keep it 2D like the array
            img.meta["spatial_shape"] = np.asarray(img.meta["spatial_shape"])[: img.ndim - 1]
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
