"""Datalists from Medical Segmentation Decathlon (MSD) style datasets, for bundle configs.

An MSD-style dataset is a folder holding ``dataset.json`` with a ``training`` list of
``{"image": ..., "label": ...}`` records (paths relative to the folder), an optional ``validation`` list
and an optional ``test`` list of image paths (or ``{"image": ...}`` records). Bundles call
:func:`msd_datalist` from their configs::

    "datalist": "$msd_datalist(@dataset_dir, 'test')"
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError

#: The sections a bundle can ask for.
SECTIONS = ("training", "validation", "test")


def _absolute(record: Any, root: Path, file: Path, section: str, index: int) -> dict[str, Any]:
    """One datalist record with absolute paths; a bare string is an image path."""
    if isinstance(record, str):
        record = {"image": record}
    if not isinstance(record, dict) or "image" not in record:
        raise LabelZooError(f"{file}: entry {index} of '{section}' must be an image path or a record with an "
                            f"'image' key, got {record!r}")

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return str((root / value).resolve()) if not Path(value).is_absolute() else value
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return {k: fix(v) if k in ("image", "label") else v for k, v in record.items()}


def read_dataset_json(dataset_dir: str | Path) -> dict[str, Any]:
    """Read ``DATASET_DIR/dataset.json``.

    Raises:
        LabelZooError: naming the folder or file when the folder or file is missing or not a JSON object.
    """
    root = Path(dataset_dir).expanduser()
    if not root.is_dir():
        raise LabelZooError(f"dataset folder {root} does not exist: expected an MSD-style dataset folder "
                            f"(dataset.json, imagesTr/, labelsTr/); pass it with --dataset_dir")
    file = root / "dataset.json"
    if not file.is_file():
        raise LabelZooError(f"dataset folder {root} has no dataset.json: expected an MSD-style dataset "
                            f"(dataset.json listing 'training' image/label pairs and 'test' images)")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelZooError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise LabelZooError(f"{file} must hold a JSON object with a 'training' list, got {type(data).__name__}")
    return data


def msd_datalist(dataset_dir: str | Path, section: str = "training", val_fraction: float = 0.2) -> list[dict]:
    """The records of one section of an MSD-style ``dataset.json``, with absolute paths.

    Without a ``validation`` list in ``dataset.json``, the last ``ceil(val_fraction * n)`` training cases
    (at least one when there are two or more) are the validation set and the rest the training set, so
    ``training`` and ``validation`` never overlap.

    Args:
        dataset_dir: the dataset folder.
        section: ``training``, ``validation`` or ``test``.
        val_fraction: share of the training list held out for validation when there is no ``validation`` list.

    Returns:
        A list of dicts with ``image`` (and ``label`` for training/validation) as absolute paths.

    Raises:
        LabelZooError: for a missing folder or ``dataset.json``, a missing section, or malformed records.

    Example:
        >>> msd_datalist("data/Task09_Spleen", "validation")  # doctest: +SKIP
        [{'image': '/.../imagesTr/spleen_2.nii.gz', 'label': '/.../labelsTr/spleen_2.nii.gz'}]
    """
    if section not in SECTIONS:
        raise LabelZooError(f"datalist section must be one of {', '.join(SECTIONS)}, got {section!r}")
    root = Path(dataset_dir).expanduser()
    data = read_dataset_json(root)
    file = root / "dataset.json"
    key = "test" if section == "test" else "training"
    if section == "validation" and "validation" in data:
        key = "validation"
    if key not in data or not isinstance(data[key], list):
        raise LabelZooError(f"{file} has no '{key}' list: expected dataset.json with a '{key}' list of cases")
    records = [_absolute(r, root, file, key, i) for i, r in enumerate(data[key])]
    if section != "test":
        missing = [i for i, r in enumerate(records) if "label" not in r]
        if missing:
            raise LabelZooError(f"{file}: '{key}' entries {missing[:5]} have no 'label': expected image/label pairs")
    if section == "test" or "validation" in data:
        return records
    n_val = math.ceil(val_fraction * len(records)) if len(records) >= 2 and val_fraction > 0 else 0
    n_val = min(n_val, len(records) - 1) if records else 0
    return records[len(records) - n_val:] if section == "validation" else records[: len(records) - n_val]
