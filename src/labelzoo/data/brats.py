"""Deterministic synthetic BraTS-like multi-parametric MRI: 4 channels, nested tumour regions, BraTS labels.

Each case is a brain-like ellipsoid (zero outside, as skull-stripped BraTS volumes are) holding a tumour of
three nested parts: an enhancing rim (label 4, or 3 with ``enhancing_label=3``) around a necrotic core (1),
inside a larger oedema (2). The four channels are T1, T1Gd, T2 and FLAIR (the bundle's channel order); each
tissue has its own contrast per channel, as in real MRI (enhancing tumour bright on T1Gd, oedema bright on
T2 and FLAIR, necrosis dark on T1), so a network can learn the regions. Sizes, positions and intensities
vary with the seed. Volumes are 1 mm isotropic, RAS, like the BraTS release.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from labelzoo.data.layout import check_destination, write_dataset
from labelzoo.data.synthetic import _ellipsoid, _parse_triple
from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti

logger = logging.getLogger(__name__)

#: BraTS 2021 label values and names (BraTS 2023+ numbers the enhancing tumour 3).
BRATS_LABELS: dict[int, str] = {0: "background", 1: "necrotic tumor core", 2: "peritumoral edema",
                                4: "enhancing tumor"}
#: Enhancing-tumour label values: 4 (BraTS <= 2021) and 3 (BraTS 2023+).
ENHANCING_LABELS: tuple[int, ...] = (4, 3)
#: Channel order of the images (and of the BraTS bundle's input).
BRATS_CHANNELS: tuple[str, ...] = ("T1", "T1Gd", "T2", "FLAIR")
#: Default volume size (voxels, 1 mm isotropic): small enough for a quick CPU demo.
DEFAULT_BRATS_SHAPE: tuple[int, int, int] = (64, 64, 48)

# Mean intensity per tissue and channel (T1, T1Gd, T2, FLAIR), arbitrary MR units.
_CONTRAST: dict[str, tuple[float, float, float, float]] = {
    "brain": (600.0, 620.0, 500.0, 450.0),
    "oedema": (480.0, 500.0, 850.0, 900.0),
    "necrosis": (300.0, 320.0, 900.0, 500.0),
    "enhancing": (520.0, 1000.0, 700.0, 750.0),
}


def make_brats_case(
    seed: int,
    shape: tuple[int, int, int] = DEFAULT_BRATS_SHAPE,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    enhancing_label: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build one synthetic BraTS-like case.

    Args:
        seed: case seed; the same seed gives the same case.
        shape: volume size in voxels (x, y, z), each at least 24.
        spacing: voxel size in mm (x, y, z).
        enhancing_label: label of the enhancing tumour: 4 (BraTS 2021) or 3 (BraTS 2023+).

    Returns:
        ``(image, label, affine)``: float32 image ``(x, y, z, 4)`` (channels last, as a 4D NIfTI stores them;
        T1, T1Gd, T2, FLAIR), uint8 label map ``(x, y, z)`` with 0, 1, 2 and ``enhancing_label``, RAS affine.

    Raises:
        LabelZooError: on a bad shape, spacing or enhancing label.

    Example:
        >>> image, label, affine = make_brats_case(0, shape=(32, 32, 24))
        >>> image.shape, sorted(set(label.ravel().tolist()))
        ((32, 32, 24, 4), [0, 1, 2, 4])
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 24:
        raise LabelZooError(f"shape must be three sizes of at least 24 voxels, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise LabelZooError(f"spacing must be three positive sizes in mm, got {spacing}")
    if enhancing_label not in ENHANCING_LABELS:
        raise LabelZooError(f"enhancing_label must be 4 (BraTS 2021) or 3 (BraTS 2023+), got {enhancing_label!r}")
    rng = np.random.default_rng(seed)
    size = np.array(shape, dtype=float)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")

    def jitter(scale: float, n: int = 3) -> np.ndarray:
        return rng.uniform(1 - scale, 1 + scale, n)

    brain = _ellipsoid(grid, size / 2, size * np.array([0.42, 0.46, 0.42]) * jitter(0.04))
    # Tumour centre inside one hemisphere; nested ellipsoids share a slightly shifted centre.
    centre = size * np.array([rng.choice([0.36, 0.64]), 0.5, 0.5]) + rng.uniform(-2, 2, 3)
    wt_r = np.maximum(size * 0.2 * jitter(0.15), 4.0)
    tc_r = wt_r * rng.uniform(0.5, 0.65)
    ncr_r = tc_r * rng.uniform(0.55, 0.75)
    shift = rng.uniform(-1.0, 1.0, 3)
    whole = _ellipsoid(grid, centre, wt_r) & brain
    core = _ellipsoid(grid, centre + shift, tc_r) & whole
    necrosis = _ellipsoid(grid, centre + shift, ncr_r) & core

    label = np.zeros(shape, dtype=np.uint8)
    label[whole] = 2
    label[core] = enhancing_label
    label[necrosis] = 1

    image = np.zeros(shape + (len(BRATS_CHANNELS),), dtype=np.float32)
    gain = rng.uniform(0.85, 1.15, len(BRATS_CHANNELS))  # scanner gain differs per case and channel
    tissues = (("brain", brain), ("oedema", label == 2), ("necrosis", label == 1),
               ("enhancing", label == enhancing_label))
    for name, mask in tissues:
        image[mask] = np.array(_CONTRAST[name], dtype=np.float32) * gain
    noise = rng.normal(0.0, 25.0, size=image.shape).astype(np.float32)
    image = np.where(brain[..., None], np.maximum(image + noise, 1.0), 0.0).astype(np.float32)
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = -np.array(spacing) * size / 2
    return image, label, affine


def build_brats_studies(
    out: str | Path,
    n_images: int = 6,
    n_labeled: int = 3,
    shape: str | tuple = DEFAULT_BRATS_SHAPE,
    spacing: str | tuple = (1.0, 1.0, 1.0),
    seed: int = 0,
    layout: str = "monailabel",
    overwrite: bool = False,
    enhancing_label: int = 4,
) -> Path:
    """Write a synthetic BraTS-like dataset of 4-channel MRI (one 4D NIfTI per case, channels T1, T1Gd, T2, FLAIR).

    Layouts as :func:`labelzoo.data.build_sample_studies`: ``monailabel`` (``OUT/case_XXX.nii.gz``, labels of the
    first ``n_labeled`` cases in ``OUT/labels/final``) or ``msd`` (``imagesTr``, ``labelsTr``, ``imagesTs``,
    ``dataset.json`` in the Medical Segmentation Decathlon format, with BraTS 2021 label numbering; note MSD
    Task01 itself numbers its labels and orders its channels differently).

    Args:
        out: destination folder; created if missing.
        n_images: number of cases.
        n_labeled: cases that get a label (``monailabel``) or go to the training set (``msd``).
        shape: volume size in voxels, ``"X,Y,Z"``.
        spacing: voxel size in mm, ``"X,Y,Z"``.
        seed: base seed; case ``i`` uses ``seed + i``.
        layout: ``monailabel`` or ``msd``.
        overwrite: allow writing into a folder that already has files.
        enhancing_label: 4 (BraTS 2021) or 3 (BraTS 2023+).

    Returns:
        The destination folder.

    Raises:
        LabelZooError: on a non-empty destination without ``overwrite``, or bad counts, shape, spacing, layout
        or enhancing label.
    """
    out = check_destination(out, n_images, n_labeled, layout, overwrite=overwrite)
    shape = _parse_triple(shape, "shape", int)
    spacing = _parse_triple(spacing, "spacing", float)
    if enhancing_label not in ENHANCING_LABELS:
        raise LabelZooError(f"--enhancing_label must be 4 (BraTS 2021) or 3 (BraTS 2023+), got {enhancing_label!r}")

    def cases():
        for i in range(n_images):
            image, label, affine = make_brats_case(seed + i, shape, spacing, enhancing_label)
            yield f"case_{i:03d}", image, label, lambda array, path, affine=affine: save_nifti(array, affine, path)

    labels = {k: v for k, v in BRATS_LABELS.items() if k != 4}
    labels[enhancing_label] = BRATS_LABELS[4]
    return write_dataset(out, cases(), n_labeled, layout, ".nii.gz", {
        "name": "LabelZooSyntheticBraTS",
        "description": "Synthetic BraTS-like MRI made by labelzoo sample-data --kind brats",
        "tensorImageSize": "4D",
        "modality": {str(i): c for i, c in enumerate(BRATS_CHANNELS)},
        "labels": {str(k): v for k, v in sorted(labels.items())},
    })
