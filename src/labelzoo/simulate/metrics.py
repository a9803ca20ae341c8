"""What the simulated annotator measures: correction effort of a suggestion and the quality of a model.

Pure functions on label arrays, unit-tested without files or servers. Label maps are integer arrays
in the *dataset's* label values (e.g. BTCV numbering 1, 3, 6); a model that predicts other values
(a planned bundle predicts contiguous indices 1, 2, 3) is mapped first with :func:`label_lookup`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def label_lookup(model_labels: Mapping[str, int], dataset_labels: Mapping[int, str] | None) -> dict[int, int]:
    """Model output value -> dataset label value, matching classes by name (case-insensitive).

    Args:
        model_labels: the served model's ``labels`` from ``/info/`` (name -> value the model writes).
        dataset_labels: the dataset's value -> name (``dataset.json`` ``labels``); ``None`` when the
            dataset names no classes: the model's values are taken as the dataset's.

    Returns:
        A mapping for every model value (background 0 -> 0).

    Raises:
        ValueError: naming the model classes the dataset does not have.
    """
    lut = {0: 0}
    if not dataset_labels:
        lut.update({int(v): int(v) for v in model_labels.values()})
        return lut
    by_name = {str(n).strip().lower(): int(v) for v, n in dataset_labels.items()}
    missing = []
    for name, value in model_labels.items():
        key = str(name).strip().lower()
        if key == "background":
            continue
        if key not in by_name:
            missing.append(name)
            continue
        lut[int(value)] = by_name[key]
    if missing:
        raise ValueError(f"model classes {missing} are not among the dataset's labels "
                         f"{sorted(by_name)}: the model does not segment this dataset's classes")
    return lut


def apply_lookup(pred: np.ndarray, lut: Mapping[int, int]) -> np.ndarray:
    """Map a model's label map into dataset values; values absent from ``lut`` become background."""
    pred = np.rint(np.asarray(pred)).astype(np.int64)
    out = np.zeros_like(pred)
    for src, dst in lut.items():
        out[pred == src] = dst
    return out


def class_dice(truth: np.ndarray, pred: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """Dice per class; a class absent from both maps scores 1 (nothing to find, nothing found)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth shape {truth.shape} differs from prediction shape {pred.shape}")
    out = {}
    for c in classes:
        a, b = truth == c, pred == c
        total = int(a.sum()) + int(b.sum())
        out[int(c)] = 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
    return out


@dataclass(frozen=True)
class Effort:
    """How much an annotator corrects to turn a suggestion into the ground truth."""

    voxels_changed: int
    fraction_changed: float
    one_minus_dice: float

    def as_dict(self) -> dict[str, float]:
        return {"voxels_changed": self.voxels_changed, "fraction_changed": self.fraction_changed,
                "one_minus_dice": self.one_minus_dice}


def correction_effort(truth: np.ndarray, suggestion: np.ndarray, classes: Sequence[int]) -> Effort:
    """Voxels whose label differs between suggestion and truth, and 1 - mean foreground Dice.

    Args:
        truth: the ground-truth label map (what the annotator submits).
        suggestion: the model's label map, in the same label values.
        classes: the foreground classes to average Dice over.
    """
    truth, suggestion = np.asarray(truth), np.asarray(suggestion)
    if truth.shape != suggestion.shape:
        raise ValueError(f"truth shape {truth.shape} differs from suggestion shape {suggestion.shape}")
    changed = int(np.count_nonzero(truth != suggestion))
    dice = class_dice(truth, suggestion, classes)
    mean = float(np.mean(list(dice.values()))) if dice else 1.0
    return Effort(changed, changed / max(1, truth.size), 1.0 - mean)


def hd95(truth: np.ndarray, pred: np.ndarray, classes: Sequence[int],
         spacing: Sequence[float] | None = None) -> dict[int, float]:
    """95th-percentile Hausdorff distance per class in mm (MONAI's ``compute_hausdorff_distance``).

    A class present in only one of the maps gets ``inf``; a class absent from both is left out.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    truth, pred = np.asarray(truth), np.asarray(pred)
    out = {}
    for c in classes:
        a, b = truth == c, pred == c
        if not a.any() and not b.any():
            continue
        if not a.any() or not b.any():
            out[int(c)] = math.inf
            continue
        y = torch.as_tensor(a[None, None], dtype=torch.float32)
        yp = torch.as_tensor(b[None, None], dtype=torch.float32)
        d = compute_hausdorff_distance(yp, y, include_background=True, percentile=95,
                                       spacing=list(spacing) if spacing is not None else None)
        out[int(c)] = float(d.reshape(-1)[0])
    return out


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (``nan`` when none is finite)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else math.nan


# ---- learning-curve summaries --------------------------------------------------------------------------
def curve_auc(labels: Sequence[float], dice: Sequence[float]) -> float:
    """Normalised area under a learning curve (Dice vs number of labels, trapezoids): the mean Dice over the range.

    Returns the single Dice for a one-point curve and ``nan`` for an empty one.
    """
    if len(labels) != len(dice):
        raise ValueError(f"labels ({len(labels)}) and dice ({len(dice)}) differ in length")
    pairs = sorted((float(x), float(y)) for x, y in zip(labels, dice, strict=True))
    if not pairs:
        return math.nan
    if len(pairs) == 1 or pairs[-1][0] == pairs[0][0]:
        return pairs[-1][1]
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pairs, pairs[1:], strict=False))
    return area / (pairs[-1][0] - pairs[0][0])


def labels_to_reach(labels: Sequence[float], dice: Sequence[float], target: float) -> float | None:
    """The fewest labels at which the curve reaches ``target`` Dice (``None`` if it never does)."""
    for x, y in sorted(zip(labels, dice, strict=True)):
        if y >= target:
            return float(x)
    return None
