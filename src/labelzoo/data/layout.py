"""Writing a synthetic dataset in the two layouts every sample builder offers.

``monailabel``: ``OUT/<name><suffix>`` with labels of the first ``n_labeled`` cases in ``OUT/labels/final``
(MONAI Label's local datastore). ``msd``: labelled cases in ``OUT/imagesTr`` + ``OUT/labelsTr``, the others
in ``OUT/imagesTs``, and ``OUT/dataset.json`` (Medical Segmentation Decathlon), the input of the bundles and
the planner. The builders (CT, BraTS-like MRI, chest X-ray) differ only in how a case is made and saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

logger = logging.getLogger(__name__)

#: ``save(array, path)``: writes one image or label file atomically.
Saver = Callable[[np.ndarray, Path], Any]


def check_destination(out: str | Path, n_images: object, n_labeled: object, layout: str,
                      layouts: Iterable[str] = ("monailabel", "msd"), overwrite: bool = False) -> Path:
    """Validate a builder's common arguments; returns ``out`` as a path.

    Raises:
        LabelZooError: naming the bad argument (``--layout``, ``--n_images``, ``--n_labeled``) or the
        destination that is a file or not empty (without ``overwrite``).
    """
    out = Path(out).expanduser()
    layouts = tuple(layouts)
    if layout not in layouts:
        raise LabelZooError(f"--layout must be one of {', '.join(layouts)}, got {layout!r}")
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise LabelZooError(f"--n_images must be a positive integer, got {n_images!r}")
    if isinstance(n_labeled, bool) or not isinstance(n_labeled, int) or not 0 <= n_labeled <= n_images:
        raise LabelZooError(f"--n_labeled must be an integer between 0 and n_images={n_images}, got {n_labeled!r}")
    if out.exists() and not out.is_dir():
        raise LabelZooError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LabelZooError(f"{out} is not empty: choose an empty folder or pass --overwrite")
    return out


def write_dataset(out: Path, cases: Iterable[tuple[str, np.ndarray, np.ndarray, Saver]], n_labeled: int,
                  layout: str, suffix: str, description: dict[str, Any]) -> Path:
    """Write ``cases`` (``name, image, label, save``) in ``layout``; the first ``n_labeled`` keep their label.

    Args:
        out: destination folder (checked by :func:`check_destination`).
        cases: one tuple per case; ``save(array, path)`` writes its image and its label.
        n_labeled: cases written with a label (the MSD training set).
        layout: ``monailabel`` or ``msd``.
        suffix: file suffix of images and labels (``.nii.gz``, ``.png``).
        description: ``dataset.json`` fields besides the case lists (name, modality, labels, ...).

    Returns:
        ``out``.
    """
    training, test = [], []
    count = 0
    for i, (name, image, label, save) in enumerate(cases):
        count += 1
        file = f"{name}{suffix}"
        if layout == "monailabel":
            save(image, out / file)
            if i < n_labeled:
                save(label, out / "labels" / "final" / file)
        elif i < n_labeled:
            save(image, out / "imagesTr" / file)
            save(label, out / "labelsTr" / file)
            training.append({"image": f"./imagesTr/{file}", "label": f"./labelsTr/{file}"})
        else:
            save(image, out / "imagesTs" / file)
            test.append(f"./imagesTs/{file}")
    if layout == "msd":
        write_json_atomic(out / "dataset.json", {**description, "numTraining": len(training),
                                                 "numTest": len(test), "training": training, "test": test})
    logger.info("wrote %d cases (%d labelled, %s layout) to %s", count, min(n_labeled, count), layout, out)
    return out
