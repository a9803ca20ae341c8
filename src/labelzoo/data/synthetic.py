"""Deterministic synthetic abdominal CT volumes.

Each case is a body-shaped ellipse of soft tissue (about 40 HU) in air (-1000 HU), holding a liver,
a spleen and a left kidney as ellipsoids of distinct contrast, with Gaussian noise. Labels use the
BTCV convention (spleen 1, left kidney 3, liver 6), so the same studies train and test the BTCV
UNETR bundle. Centres, radii and intensities vary per case with the seed; the affine is an
LPS-oriented scanner affine with anisotropic spacing, as CT converted from DICOM usually is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from labelzoo.data.layout import check_destination, write_dataset
from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti

logger = logging.getLogger(__name__)

#: Label names and values (BTCV numbering) of the organs the synthetic CT holds.
CT_LABELS: dict[str, int] = {"background": 0, "spleen": 1, "left kidney": 3, "liver": 6}

#: Default volume size (voxels) and spacing (mm): small enough for a quick CPU demo.
DEFAULT_SHAPE: tuple[int, int, int] = (96, 96, 64)
DEFAULT_SPACING: tuple[float, float, float] = (1.5, 1.5, 2.0)

#: Output layouts of :func:`build_sample_studies`.
LAYOUTS = ("monailabel", "msd", "dicom")


def _ellipsoid(grid: tuple[np.ndarray, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean mask of the voxels inside an axis-aligned ellipsoid (all in voxel units)."""
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return dist <= 1.0


def scanner_affine(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """NIfTI affine of a CT converted from DICOM: LPS axes (x, y flipped in RAS) centred on the volume."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [spacing[0] * shape[0] / 2, spacing[1] * shape[1] / 2, -spacing[2] * shape[2] / 2]
    return affine


def make_ct_case(
    seed: int,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build one synthetic CT case.

    Args:
        seed: case seed; the same seed gives the same case.
        shape: volume size in voxels (x, y, z), each at least 16.
        spacing: voxel size in mm (x, y, z).

    Returns:
        ``(image, label, affine)``: float32 HU image, uint8 label map in BTCV numbering
        (see :data:`CT_LABELS`) and the 4x4 affine.

    Raises:
        LabelZooError: if ``shape`` or ``spacing`` is not three positive numbers.

    Example:
        >>> image, label, affine = make_ct_case(0, shape=(32, 32, 24))
        >>> image.shape, sorted(set(label.ravel().tolist()))
        ((32, 32, 24), [0, 1, 3, 6])
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 16:
        raise LabelZooError(f"shape must be three sizes of at least 16 voxels, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise LabelZooError(f"spacing must be three positive sizes in mm, got {spacing}")
    rng = np.random.default_rng(seed)
    size = np.array(shape, dtype=float)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    jitter = lambda scale: rng.uniform(1 - scale, 1 + scale)  # noqa: E731

    image = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)

    # An elliptic cylinder along z (grid is 3D, so the 2D ellipse extends through every slice).
    body = _ellipsoid(grid[:2], size[:2] / 2, size[:2] * np.array([0.45, 0.38]) * jitter(0.05))
    image[body] = 40.0

    # Organs: (label value, centre as a fraction of the volume, radii as a fraction, HU).
    # x runs from the patient's right to left in this LPS-style voxel order after the flip.
    organs = [
        (CT_LABELS["liver"], [0.36, 0.45, 0.55], [0.17, 0.16, 0.28], 110.0),
        (CT_LABELS["spleen"], [0.70, 0.55, 0.55], [0.08, 0.09, 0.16], 150.0),
        (CT_LABELS["left kidney"], [0.66, 0.68, 0.40], [0.06, 0.07, 0.14], 200.0),
    ]
    for value, centre, radii, hu in organs:
        c = size * np.array(centre) * np.array([jitter(0.06) for _ in range(3)])
        r = np.maximum(size * np.array(radii) * np.array([jitter(0.12) for _ in range(3)]), 2.0)
        mask = _ellipsoid(grid, c, r) & body
        image[mask] = hu * jitter(0.1)
        label[mask] = value

    image += rng.normal(0.0, 20.0, size=shape).astype(np.float32)
    return image, label, scanner_affine(shape, spacing)


def _parse_triple(value: str | tuple | list, name: str, cast: type) -> tuple:
    """Accept ``"96,96,64"`` or a sequence of three numbers (fire passes either)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(cast(p) for p in parts)
    except (TypeError, ValueError):
        raise LabelZooError(f"--{name} must be three numbers like 96,96,64, got {value!r}") from None
    if len(out) != 3:
        raise LabelZooError(f"--{name} must be three numbers like 96,96,64, got {value!r}")
    return out


def build_sample_studies(
    out: str | Path,
    n_images: int = 8,
    n_labeled: int = 3,
    shape: str | tuple = DEFAULT_SHAPE,
    spacing: str | tuple = DEFAULT_SPACING,
    seed: int = 0,
    layout: str = "monailabel",
    overwrite: bool = False,
) -> Path:
    """Write a synthetic CT dataset.

    Layouts:
        ``monailabel``: ``OUT/case_XXX.nii.gz`` and ``OUT/labels/final/case_XXX.nii.gz`` for the first
        ``n_labeled`` cases: the MONAI Label local datastore (the default, what ``labelzoo serve`` uses).
        ``msd``: ``OUT/imagesTr``, ``OUT/labelsTr``, ``OUT/imagesTs`` and ``OUT/dataset.json`` in the
        Medical Segmentation Decathlon format, for ``python -m monai.bundle run`` and the planner.
        ``dicom``: ``OUT/case_XXX/slice_NNNN.dcm``, one DICOM CT series per case (no labels), to load
        into a PACS such as Orthanc and serve through DICOMweb.

    Args:
        out: destination folder; created if missing.
        n_images: number of cases.
        n_labeled: cases that get a label (``monailabel``) or go to the training set (``msd``).
        shape: volume size in voxels, ``"X,Y,Z"``.
        spacing: voxel size in mm, ``"X,Y,Z"``.
        seed: base seed; case ``i`` uses ``seed + i``.
        layout: ``monailabel``, ``msd`` or ``dicom``.
        overwrite: allow writing into a folder that already has files.

    Returns:
        The destination folder.

    Raises:
        LabelZooError: on a non-empty destination without ``overwrite``, or bad counts, shape, spacing
        or layout.
    """
    out = check_destination(out, n_images, n_labeled, layout, LAYOUTS, overwrite)
    shape = _parse_triple(shape, "shape", int)
    spacing = _parse_triple(spacing, "spacing", float)
    names = [f"case_{i:03d}" for i in range(n_images)]
    if layout == "dicom":
        from labelzoo.data.dicom import write_ct_series

        for i, name in enumerate(names):
            image, _, affine = make_ct_case(seed + i, shape, spacing)
            write_ct_series(image, affine, out / name, patient_id=f"LZ{i:04d}", series_description=f"LabelZoo {name}")
        return out

    def cases():
        for i, name in enumerate(names):
            image, label, affine = make_ct_case(seed + i, shape, spacing)
            yield name, image, label, lambda array, path, affine=affine: save_nifti(array, affine, path)

    return write_dataset(out, cases(), n_labeled, layout, ".nii.gz", {
        "name": "LabelZooSyntheticCT",
        "description": "Synthetic abdominal CT made by labelzoo sample-data (BTCV label numbering)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(v): k for k, v in CT_LABELS.items()},
    })
