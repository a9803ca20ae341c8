"""Checks on what a client sends the server: image ids, image files, image and label geometry.

Each check raises :class:`labelzoo.errors.LabelZooError` with a message naming the id, file or model
and what was expected; the app turns it into an HTTP 4xx. The geometry rules are pure functions of
shapes, unit-tested without files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError

#: An image id or label tag: a file-name stem, no folders, no ``..``, no leading dot.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def check_id(value: object, what: str = "image id") -> str:
    """Return ``value`` if it is a safe id (letters, digits, ``._-``; no path separators or ``..``).

    Raises:
        LabelZooError: for an empty, path-like or traversal id such as ``../x`` or ``a/b``.

    Example:
        >>> check_id("case_001")
        'case_001'
    """
    text = str(value) if value is not None else ""
    if not text:
        raise LabelZooError(f"{what} is empty: give the id of an image in the datastore")
    if not _SAFE_ID.match(text) or ".." in text:
        raise LabelZooError(
            f"{what} {text!r} is not a valid id: use letters, digits, '.', '_' and '-' only, "
            "without folders or '..'"
        )
    return text


def squeeze_trailing(shape: Sequence[int], keep: int) -> tuple[int, ...]:
    """Drop trailing size-1 axes beyond the first ``keep`` (NIfTI often stores (X, Y, Z, 1))."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > keep and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def geometry_error(shape: Sequence[int], spatial_dims: int, channels: int, name: str = "image",
                   model: str = "the model") -> str | None:
    """Why an image of ``shape`` cannot go into a model taking ``channels`` x ``spatial_dims``-D input.

    An image is either ``spatial_dims``-D (one channel) or ``spatial_dims``-D plus a last channel axis
    (NIfTI multi-channel layout, e.g. 240x240x155x4 for BraTS); trailing size-1 axes are ignored.

    Returns:
        ``None`` when it fits, else a message naming the image, the model and what was expected.
    """
    squeezed = squeeze_trailing(shape, spatial_dims)
    expected = f"{spatial_dims}D with {channels} channel{'s' if channels != 1 else ''}"
    if len(squeezed) == spatial_dims:
        found = 1
    elif len(squeezed) == spatial_dims + 1:
        found = squeezed[-1]
    else:
        return (f"{name} has shape {tuple(shape)} ({len(squeezed)} dimensions); {model} expects a {expected} "
                f"image ({spatial_dims} spatial axes, plus a last channel axis when there are several channels)")
    if found != channels:
        plural = "s" if found != 1 else ""
        return f"{name} has {found} channel{plural} (shape {tuple(shape)}); {model} expects {expected}"
    if min(squeezed[:spatial_dims]) < 1:
        return f"{name} has an empty axis (shape {tuple(shape)})"
    return None


def label_shape_error(label_shape: Sequence[int], image_shape: Sequence[int], name: str = "label") -> str | None:
    """Why a label of ``label_shape`` does not fit an image of ``image_shape`` (``None`` when it does).

    The label must have the image's spatial shape: the image may carry a last channel axis the label
    lacks; trailing size-1 axes are ignored on both.
    """
    image = squeeze_trailing(image_shape, 2)
    label = squeeze_trailing(label_shape, 2)
    if label == image or (len(image) == len(label) + 1 and image[: len(label)] == label and len(label) >= 2):
        return None
    return f"{name} has shape {tuple(label_shape)} but its image has shape {tuple(image_shape)}: they must match"


def read_shape(path: str | Path, full: bool = False) -> tuple[int, ...]:
    """The array shape of an image file, read from the header for NIfTI (``full`` also reads the voxels).

    Raises:
        LabelZooError: when the file is not a readable image.
    """
    path = Path(path)
    name = path.name
    try:
        if name.endswith(NIFTI_SUFFIXES):
            import nibabel as nib
            import numpy as np

            img = nib.load(str(path))
            if full:
                data = np.asanyarray(img.dataobj)
                return tuple(int(s) for s in data.shape)
            return tuple(int(s) for s in img.shape)
        from monai.transforms import LoadImage

        return tuple(int(s) for s in LoadImage(image_only=True)(str(path)).shape)
    except LabelZooError:
        raise
    except Exception as e:  # any reader error means "not an image we can read"
        raise LabelZooError(f"{name} is not a readable image ({type(e).__name__}: {e}); "
                            "expected NIfTI (.nii, .nii.gz) or another format MONAI's LoadImage reads") from None


def read_label_values(path: str | Path) -> set[int]:
    """The distinct voxel values of a label file.

    Raises:
        LabelZooError: when the file is not readable, or holds values that are not whole numbers.
    """
    import numpy as np

    path = Path(path)
    try:
        if path.name.endswith(NIFTI_SUFFIXES):
            import nibabel as nib

            data = np.asanyarray(nib.load(str(path)).dataobj)
        else:
            from monai.transforms import LoadImage

            data = np.asarray(LoadImage(image_only=True)(str(path)))
    except Exception as e:  # any reader error means "not a label we can read"
        raise LabelZooError(f"{path.name} is not a readable label image ({type(e).__name__}: {e})") from None
    values = np.unique(data)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise LabelZooError(f"{path.name} holds non-integer values ({values[:5].tolist()}...): a label map holds "
                            "the integer value of each voxel's label")
    return {int(v) for v in values}


def label_values_error(values: set[int], image_shape: Sequence[int] | None,
                       models: Sequence[tuple[str, int, int, frozenset[int]]], name: str = "label") -> str | None:
    """Why a label with these voxel ``values`` cannot train any served model that reads its image.

    Args:
        values: the label's distinct voxel values.
        image_shape: the image's shape (``None``: every model is considered).
        models: ``(name, spatial_dims, channels, label values)`` of each served model.
        name: how to call the label in the message.

    Returns:
        ``None`` when every value is 0 or a label value of at least one model that reads the image (or
        no model reads it), else a message naming the stray values and each model's label values.
    """
    fitting = [(m, allowed) for m, dims, ch, allowed in models
               if image_shape is None or geometry_error(image_shape, dims, ch) is None]
    if not fitting:
        return None
    stray = sorted(set(values) - {0}.union(*(allowed for _, allowed in fitting)))
    if not stray:
        return None
    known = "; ".join(f"{m}: {sorted(allowed)}" for m, allowed in fitting)
    return (f"{name} has label value(s) {stray} that no served model for this image predicts (label values of "
            f"{known}); paint with the model's label values")


# ---- sizes and geometry from headers, before any voxel is read ------------------------------------------------
def _png_shape(path: Path) -> tuple[tuple[int, ...], int]:
    from PIL import Image

    with Image.open(path) as im:  # reads the header only
        bands = len(im.getbands())
        width, height = im.size
        bits = 2 if im.mode in ("I;16", "I;16B", "I;16L") else (4 if im.mode in ("I", "F") else 1)
    return ((width, height) if bands == 1 else (width, height, bands)), bits


_NRRD_TYPES = {"uchar": 1, "unsigned char": 1, "uint8": 1, "signed char": 1, "int8": 1, "char": 1, "short": 2,
               "int16": 2, "ushort": 2, "unsigned short": 2, "uint16": 2, "int": 4, "int32": 4, "uint": 4,
               "unsigned int": 4, "uint32": 4, "float": 4, "double": 8, "longlong": 8, "int64": 8,
               "ulonglong": 8, "uint64": 8}


def _nrrd_shape(path: Path) -> tuple[tuple[int, ...], int]:
    sizes, itemsize = None, 1
    with open(path, "rb") as f:
        for _ in range(200):
            line = f.readline(4096).decode("latin-1").strip()
            if not line:
                break
            key, _, value = line.partition(":")
            if key.strip() == "sizes":
                sizes = tuple(int(v) for v in value.split())
            elif key.strip() == "type":
                itemsize = _NRRD_TYPES.get(value.strip().lower(), 8)
    if sizes is None:
        raise ValueError("no 'sizes' field in the NRRD header")
    return sizes, itemsize


def header_shape(path: str | Path) -> tuple[tuple[int, ...], int]:
    """``(shape, bytes per voxel)`` of an image file from its header alone (NIfTI, NRRD, PNG/JPEG/TIFF).

    Raises:
        LabelZooError: when the header cannot be read.
        ValueError: for a format whose header this function does not read (the caller bounds it otherwise).
    """
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(NIFTI_SUFFIXES):
            import nibabel as nib

            img = nib.load(str(path))
            return tuple(int(s) for s in img.shape), int(img.header.get_data_dtype().itemsize)
        if name.endswith(".nrrd"):
            return _nrrd_shape(path)
        if name.endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")):
            return _png_shape(path)
    except Exception as e:  # any reader error means "not an image we can read"
        raise LabelZooError(f"{path.name} is not a readable image ({type(e).__name__}: {e}); "
                            "expected NIfTI (.nii, .nii.gz) or another format MONAI's LoadImage reads") from None
    raise ValueError(f"no header reader for {path.name}")


def size_error(shape: Sequence[int], itemsize: int, max_voxels: int, name: str = "image") -> str | None:
    """Why an image of ``shape`` is too large to load (``None`` when it is within ``max_voxels``)."""
    voxels = 1
    for s in shape:
        voxels *= max(int(s), 0)
    if voxels > max_voxels:
        mib = voxels * itemsize / 2**20
        return (f"{name} has {voxels:,} voxels (shape {tuple(int(s) for s in shape)}, {mib:,.0f} MiB in memory); "
                f"this server accepts at most {max_voxels:,} voxels (setting max_image_voxels)")
    return None


def check_image_size(path: str | Path, max_voxels: int, max_bytes: int, name: str = "image") -> tuple[int, ...] | None:
    """Check an image file's declared size against the limits before its voxels are read.

    Returns the header shape (``None`` for a format without a header reader, which is then bounded by its
    file size: ``max_bytes``, the upload limit).

    Raises:
        LabelZooError: naming the file, its size and the setting, when it is over a limit or unreadable.
    """
    try:
        shape, itemsize = header_shape(path)
    except ValueError:
        if Path(path).stat().st_size > max_bytes:
            raise LabelZooError(f"{name} is larger than {max_bytes:,} bytes (setting max_upload_mb)") from None
        return None
    err = size_error(shape, itemsize, max_voxels, name)
    if err:
        raise LabelZooError(err)
    return shape


def read_affine(path: str | Path) -> Any:
    """The voxel-to-world affine of a NIfTI file from its header (``None`` for other formats)."""
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        return None
    import nibabel as nib

    try:
        return nib.load(str(path)).affine
    except Exception as e:  # any reader error means "not an image we can read"
        raise LabelZooError(f"{path.name} is not a readable image ({type(e).__name__}: {e})") from None


def affine_error(label_affine: Any, image_affine: Any, name: str = "label", spacing_tol: float = 1e-3,
                 origin_tol_mm: float = 0.1) -> str | None:
    """Why a label with ``label_affine`` would be misplaced on an image with ``image_affine`` (``None`` if not).

    The spacing and direction columns must agree within ``spacing_tol`` (relative) and the origin within
    ``origin_tol_mm`` millimetres; a label painted on another grid would land in the wrong place in Slicer
    and in training.
    """
    import numpy as np

    if label_affine is None or image_affine is None:
        return None
    lab, img = np.asarray(label_affine, float), np.asarray(image_affine, float)
    if lab.shape != img.shape:
        return f"{name} has a {lab.shape} affine but its image a {img.shape} one"
    spacing_l, spacing_i = np.linalg.norm(lab[:3, :3], axis=0), np.linalg.norm(img[:3, :3], axis=0)
    scale = np.maximum(spacing_i, 1e-6)
    if np.any(np.abs(lab[:3, :3] - img[:3, :3]) > spacing_tol * scale[None, :] + 1e-6):
        return (f"{name} has voxel spacing {np.round(spacing_l, 4).tolist()} mm / direction not matching its image's "
                f"{np.round(spacing_i, 4).tolist()} mm: save the label on the image's own grid")
    if np.any(np.abs(lab[:3, 3] - img[:3, 3]) > origin_tol_mm):
        return (f"{name} has origin {np.round(lab[:3, 3], 3).tolist()} mm but its image "
                f"{np.round(img[:3, 3], 3).tolist()} mm: save the label on the image's own grid")
    return None
