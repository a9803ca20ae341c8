"""Deterministic synthetic chest radiographs with lung masks (2D, no downloads).

Each case is a frontal (PA) chest radiograph look-alike: a bright thorax on a dark background, two dark lung
fields (air attenuates little) separated by the bright mediastinum, a heart shadow that cuts into the left lung
(the viewer's right), curved ribs crossing the lungs, clavicles, a smooth intensity gradient and noise. The label
is the usual lung-segmentation target: 1 inside either lung field (heart excluded), 0 elsewhere.

Array convention: images are ``(H, W)`` (rows, columns) as in a PNG. NIfTI files store the transpose ``(W, H)``
(see :func:`cxr_affine`), so MONAI's ``LoadImage`` returns the same ``(W, H)`` array for a PNG (PIL reader) and for
its NIfTI twin, and a prediction maps back to the right pixels whatever the input format.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from labelzoo.data.layout import check_destination, write_dataset
from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti

logger = logging.getLogger(__name__)

#: Label names and values of the synthetic chest radiographs.
CXR_LABELS: dict[str, int] = {"background": 0, "lung": 1}

#: Default image size (rows, columns): portrait, like a PA radiograph, and not square so that a wrong
#: (H, W) / (W, H) order cannot go unnoticed.
DEFAULT_CXR_SHAPE: tuple[int, int] = (288, 256)

def _inside_ellipse(rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], radii: tuple[float, float],
                    ) -> np.ndarray:
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1.0


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=sigma, mode="nearest")


def make_cxr_case(seed: int, shape: tuple[int, int] = DEFAULT_CXR_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Build one synthetic chest radiograph and its lung mask.

    Args:
        seed: case seed; the same seed gives the same case.
        shape: image size ``(rows, columns)``, each at least 32 pixels.

    Returns:
        ``(image, label)``: ``uint8`` grey image (0..255) and ``uint8`` lung mask (0 background, 1 lung), both
        ``(rows, columns)``.

    Raises:
        LabelZooError: if ``shape`` is not two sizes of at least 32 pixels.

    Example:
        >>> image, label = make_cxr_case(0, shape=(64, 48))
        >>> image.shape, image.dtype.name, sorted(set(label.ravel().tolist()))
        ((64, 48), 'uint8', [0, 1])
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise LabelZooError(f"shape must be two sizes (rows, columns), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 32:
        raise LabelZooError(f"shape must be two sizes (rows, columns) of at least 32 pixels, got {shape}")
    rng = np.random.default_rng(seed)
    h, w = float(shape[0]), float(shape[1])
    rows, cols = np.meshgrid(np.arange(shape[0], dtype=np.float32), np.arange(shape[1], dtype=np.float32),
                             indexing="ij")

    def jit(scale: float) -> float:
        return float(rng.uniform(1 - scale, 1 + scale))

    # Thorax: a wide ellipse reaching below the image, soft tissue brightness.
    image = np.full(shape, 0.08, dtype=np.float32)
    thorax = _inside_ellipse(rows, cols, (0.62 * h * jit(0.03), 0.5 * w * jit(0.02)),
                             (0.62 * h * jit(0.04), 0.46 * w * jit(0.04)))
    image[thorax] = 0.62

    # Lungs: tall ellipses clipped at the top (apex) and with a flat-ish base, left and right of the midline.
    # The patient's right lung is on the viewer's left (columns < w/2) in a PA view.
    label = np.zeros(shape, dtype=np.uint8)
    top = 0.16 * h * jit(0.08)
    lung_specs = [  # (centre column fraction, half-width fraction, base row fraction)
        (0.31, 0.15, 0.78),
        (0.69, 0.14, 0.80),
    ]
    for col_frac, half_w, base in lung_specs:
        c_col = col_frac * w * jit(0.03)
        base_row = base * h * jit(0.04)
        centre = ((top + base_row) / 2, c_col)
        radii = ((base_row - top) / 2, half_w * w * jit(0.08))
        lung = _inside_ellipse(rows, cols, centre, radii) & thorax
        label[lung] = 1

    # Heart: a bright ellipse low and left of the midline (viewer's right), which the lung mask excludes.
    heart = _inside_ellipse(rows, cols, (0.66 * h * jit(0.04), 0.57 * w * jit(0.03)),
                            (0.14 * h * jit(0.08), 0.15 * w * jit(0.08)))
    label[heart] = 0
    mediastinum = (np.abs(cols - 0.5 * w) < 0.06 * w * jit(0.1)) & thorax
    label[mediastinum] = 0

    lungs = label.astype(bool)
    image[lungs] = 0.22 * jit(0.15)
    image[heart & thorax] = 0.70
    image[mediastinum] = 0.75

    # Ribs: arcs (bright bands) crossing the thorax, slightly curved downwards towards the sides.
    n_ribs = int(rng.integers(7, 10))
    spacing = (0.62 * h) / n_ribs
    curvature = 0.35 * jit(0.2)
    for k in range(n_ribs):
        centre_row = top + spacing * (k + 0.3)
        arc = centre_row + curvature * h * ((cols - 0.5 * w) / w) ** 2
        rib = (np.abs(rows - arc) < 0.012 * h + 1) & thorax & ~mediastinum
        image[rib] += 0.12

    # Clavicles: two slanted bright bars near the top.
    for side in (-1, 1):
        line = 0.13 * h + side * 0.12 * (cols - 0.5 * w) * jit(0.1)
        clav = (np.abs(rows - line) < 0.015 * h + 1) & (np.abs(cols - 0.5 * w) < 0.38 * w) & thorax
        image[clav] += 0.15

    # Exposure gradient, blur (radiographs are not crisp), noise.
    image *= (0.9 + 0.2 * rows / h) * jit(0.05)
    image = _smooth(image, sigma=max(shape) / 200.0)
    image += rng.normal(0.0, 0.025, size=shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)
    return np.round(image * 255).astype(np.uint8), label


def cxr_affine() -> np.ndarray:
    """Affine of the 2D NIfTI radiographs: 1 mm pixels, ITK's identity (LPS) direction, ``diag(-1, -1, 1, 1)`` in RAS.

    MONAI Label 0.8.5 writes every 2D result through ITK without the input's geometry, which gives exactly this
    affine. The images use it too so that a suggested mask lies on its image in 3D Slicer (a detector pixel pitch
    or another direction here would misplace every suggestion). In Slicer's axial view column 0 is on the left and
    row 0 at the top, as in the PNG.
    """
    return np.diag([-1.0, -1.0, 1.0, 1.0])


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a ``uint8`` ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB) array as a PNG atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_cxr_nifti(array: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W)`` image or mask as a 2D NIfTI (stored ``(W, H)``, see the module docstring)."""
    return save_nifti(np.ascontiguousarray(np.asarray(array).T), cxr_affine(), path)


def _parse_pair(value: str | tuple | list, name: str) -> tuple[int, int]:
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise LabelZooError(f"--{name} must be two integers like 288,256 (rows,columns), got {value!r}") from None
    if len(out) != 2:
        raise LabelZooError(f"--{name} must be two integers like 288,256 (rows,columns), got {value!r}")
    return out  # type: ignore[return-value]


def build_cxr_studies(
    out: str | Path,
    n_images: int = 8,
    n_labeled: int = 6,
    shape: str | tuple = DEFAULT_CXR_SHAPE,
    seed: int = 0,
    layout: str = "msd",
    overwrite: bool = False,
) -> Path:
    """Write a synthetic chest-radiograph lung-segmentation dataset.

    Layouts:
        ``msd``: ``OUT/imagesTr/*.png``, ``OUT/labelsTr/*.png`` (mask values 0/1) for the first ``n_labeled``
        cases, ``OUT/imagesTs/*.png`` for the rest and ``OUT/dataset.json`` (Medical Segmentation Decathlon
        style) that the ``cxr_xray_unetplusplus_segmentation`` bundle reads with ``--dataset_dir OUT``.
        ``monailabel``: ``OUT/cxr_XXX.nii.gz`` (2D NIfTI, which MONAI Label and 3D Slicer show as a coronal
        slice) and ``OUT/labels/final/cxr_XXX.nii.gz`` for the first ``n_labeled`` cases.

    Args:
        out: destination folder; created if missing.
        n_images: number of cases.
        n_labeled: cases with a lung mask.
        shape: image size ``"ROWS,COLUMNS"``.
        seed: base seed; case ``i`` uses ``seed + i``.
        layout: ``msd`` or ``monailabel``.
        overwrite: allow writing into a folder that already has files.

    Returns:
        The destination folder.

    Raises:
        LabelZooError: on a non-empty destination without ``overwrite``, or bad counts, shape or layout.
    """
    out = check_destination(out, n_images, n_labeled, layout, ("msd", "monailabel"), overwrite)
    shape = _parse_pair(shape, "shape")
    # MONAI Label shows 2D NIfTI; the bundle reads PNG (as radiograph datasets ship)
    save, suffix = (save_cxr_nifti, ".nii.gz") if layout == "monailabel" else (save_png, ".png")
    cases = ((f"cxr_{i:03d}", *make_cxr_case(seed + i, shape), save) for i in range(n_images))
    return write_dataset(out, cases, n_labeled, layout, suffix, {
        "name": "LabelZooSyntheticCXR",
        "description": "Synthetic chest radiographs with lung masks (labelzoo sample-data --kind cxr)",
        "tensorImageSize": "2D",
        "modality": {"0": "X-ray"},
        "labels": {str(v): k for k, v in CXR_LABELS.items()},
    })
