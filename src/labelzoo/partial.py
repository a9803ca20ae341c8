"""Partial (slice-level) annotation and the label values a served model trains on. Pure functions, unit-tested.

**Slice-level queries.** A slice-level strategy answers ``next_sample`` with an image *and* the slices to
annotate (``slices``, ``slice_axis``: indices along an axis of the image file's voxel grid). The annotator
paints only those slices and submits the label with its label info naming them::

    {"annotated_slices": {"axis": 2, "slices": [7, 12, 18]}}

Voxels outside those slices are *not annotated* (whatever value they hold in the file, 0 from Slicer).
Training turns them into :data:`IGNORE_VALUE` (:func:`mask_unannotated`) and the loss leaves them out
(:class:`labelzoo.losses.MaskedDiceCELoss`).

**Label values.** The app stores labels in the served model's values (its ``channel_def``); a bundle whose
training maps *dataset* label values to model values (``MapLabelValued``, as a planned bundle does for
BTCV-numbered labels 1, 3, 6 -> 1, 2, 3) would map them a second time and train a liver label as another
class. :func:`identity_label_maps` gives the config overrides that make those maps the identity when the app
trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError

#: label info key of a partial label
PARTIAL_KEY = "annotated_slices"
#: the value unannotated voxels get in a training label (nearest resampling and crops keep it; no class has it)
IGNORE_VALUE = 255
#: the most slices one query may ask for
MAX_SLICES = 4096


# ---- the slices of a query -----------------------------------------------------------------------------------
def slices_to_grid(per_slice: Sequence[float], n_target: int) -> list[float]:
    """Per-slice scores computed on the network's grid, resampled (nearest) to ``n_target`` slices of the image.

    The bundle's preprocessing resamples the image along the slice axis (same physical extent, another spacing):
    image slice ``j`` covers network slice ``floor((j + 0.5) * n / n_target)``.

    Raises:
        ValueError: for an empty ``per_slice`` or ``n_target < 1``.
    """
    n = len(per_slice)
    if n < 1 or n_target < 1:
        raise ValueError(f"need at least one slice on both grids, got {n} -> {n_target}")
    return [float(per_slice[min(n - 1, int((j + 0.5) * n / n_target))]) for j in range(n_target)]


def top_slices(per_slice: Sequence[float], n: int, min_gap: int = 1) -> list[int]:
    """The ``n`` highest-scoring slice indices (ascending), at least ``min_gap`` apart when there is room.

    Ties go to the lower index. ``min_gap`` > 1 spreads the query over the structure instead of asking for
    neighbouring, near-identical slices; when too few slices satisfy the gap the rest are filled by score.

    Raises:
        ValueError: for ``n < 1`` or ``min_gap < 1``.
    """
    if n < 1 or min_gap < 1:
        raise ValueError(f"n and min_gap must be >= 1, got n={n}, min_gap={min_gap}")
    order = sorted(range(len(per_slice)), key=lambda i: (-float(per_slice[i]), i))
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        if all(abs(i - c) >= min_gap for c in chosen):
            chosen.append(i)
    for i in order:
        if len(chosen) >= min(n, len(order)):
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


# ---- partial labels --------------------------------------------------------------------------------------------
def check_annotated_slices(value: Any, shape: Sequence[int], name: str = "label info") -> tuple[int, list[int]]:
    """Check a label's ``annotated_slices`` entry against the label's spatial shape; return ``(axis, slices)``.

    Raises:
        LabelZooError: naming the field, for anything but ``{"axis": int, "slices": [int, ...]}`` with the axis a
            spatial axis of ``shape`` and every slice inside it (no duplicates, at least one).
    """
    where = f"{name} {PARTIAL_KEY!r}"
    if not isinstance(value, Mapping) or set(value) - {"axis", "slices"} or "slices" not in value:
        raise LabelZooError(f"{where} must be an object {{'axis': <int>, 'slices': [<int>, ...]}}, got {value!r}"[:300])
    dims = [int(s) for s in shape]
    axis = value.get("axis", len(dims) - 1)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(dims) <= axis < len(dims):
        raise LabelZooError(f"{where}.axis must be an integer axis of the {len(dims)}D label, got {axis!r}")
    axis %= len(dims)
    slices = value["slices"]
    if not isinstance(slices, (list, tuple)) or not slices or len(slices) > MAX_SLICES:
        raise LabelZooError(f"{where}.slices must be a non-empty list of at most {MAX_SLICES} slice indices")
    bad = [s for s in slices if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < dims[axis]]
    if bad:
        raise LabelZooError(f"{where}.slices {bad[:5]} are not slice indices along axis {axis} "
                            f"(0 to {dims[axis] - 1})")
    if len(set(slices)) != len(slices):
        raise LabelZooError(f"{where}.slices holds duplicates")
    return axis, sorted(int(s) for s in slices)


def slice_mask(shape: Sequence[int], axis: int, slices: Sequence[int]) -> np.ndarray:
    """Boolean array of ``shape``: True on the given slices along ``axis``."""
    mask = np.zeros(tuple(shape), dtype=bool)
    index: list[Any] = [slice(None)] * len(shape)
    index[axis] = list(slices)
    mask[tuple(index)] = True
    return mask


def mask_unannotated(label: np.ndarray, axis: int, slices: Sequence[int], ignore: int = IGNORE_VALUE) -> np.ndarray:
    """The training label of a partial annotation: ``label`` on the annotated slices, ``ignore`` elsewhere."""
    label = np.asarray(label)
    out = np.full(label.shape, ignore, dtype=np.uint8 if ignore < 256 and label.max(initial=0) < 256 else np.int32)
    keep = slice_mask(label.shape, axis, slices)
    out[keep] = label[keep]
    return out


def partial_label(truth: np.ndarray, axis: int, slices: Sequence[int]) -> np.ndarray:
    """What an annotator who paints only ``slices`` submits: the truth there, 0 (unpainted) elsewhere."""
    truth = np.asarray(truth)
    return np.where(slice_mask(truth.shape, axis, slices), truth, 0).astype(truth.dtype)


# ---- one label mapping -----------------------------------------------------------------------------------------
def _walk(node: Any, path: list[str]):
    if isinstance(node, Mapping):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, [*path, str(k)])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, [*path, str(i)])


def identity_label_maps(config: Mapping[str, Any], sections: Sequence[str] = ("train", "validate")) -> dict[str, Any]:
    """Config overrides that turn every ``MapLabelValued`` of the training sections into the identity.

    A bundle's training maps the label values of *its dataset* to the values it predicts; the app's datastore
    already holds labels in the predicted values (it accepts no other), so training from the datastore must
    not map them again. Each ``MapLabelValued`` gets ``orig_labels`` = its ``target_labels``.

    Args:
        config: the bundle's train config (raw, unparsed).
        sections: top-level ids searched.

    Returns:
        ``{"<id>#orig_labels": [...]}`` for each map found (MONAI bundle id syntax); empty when none.

    Raises:
        LabelZooError: when a map's ``target_labels`` is not a literal list (it cannot be checked here).
    """
    out: dict[str, Any] = {}
    for section in sections:
        for path, node in _walk(config.get(section), [section]):
            target = str(node.get("_target_", ""))
            if target.rsplit(".", 1)[-1] != "MapLabelValued":
                continue
            labels = node.get("target_labels")
            if not isinstance(labels, list) or not all(isinstance(v, (int, float)) for v in labels):
                raise LabelZooError(f"{'#'.join(path)}: MapLabelValued target_labels must be a list of numbers to "
                                    f"train from the app's labels (model values), got {labels!r}")
            if node.get("orig_labels") != labels:
                out["#".join([*path, "orig_labels"])] = list(labels)
    return out


#: losses a partial label can train with, by the last part of ``_target_`` (the masked loss replaces them)
MASKABLE_LOSSES = ("DiceCELoss", "DeepSupervisionDiceCELoss")


def masked_loss_config(loss: Any, name: str = "loss") -> dict[str, Any]:
    """The config of :class:`labelzoo.losses.MaskedDiceCELoss` standing in for a bundle's Dice + CE loss.

    ``DiceCELoss`` / ``DeepSupervisionDiceCELoss`` keep their arguments (``include_background``, ``batch``, ...);
    ``DeepSupervisionLoss`` / ``StackedDeepSupervisionLoss`` around one of them use its arguments.

    Raises:
        LabelZooError: for any other loss: the bundle cannot leave unannotated voxels out of training.
    """
    node = loss
    if isinstance(node, Mapping) and str(node.get("_target_", "")).endswith("DeepSupervisionLoss"):
        node = node.get("loss")
    target = str(node.get("_target_", "")) if isinstance(node, Mapping) else ""
    if target.rsplit(".", 1)[-1] not in MASKABLE_LOSSES:
        raise LabelZooError(f"the bundle's {name!r} ({target or type(loss).__name__}) cannot leave unannotated "
                            f"voxels out: partial (slice-level) labels train with a {' or '.join(MASKABLE_LOSSES)} "
                            "bundle only")
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    return {"_target_": "labelzoo.losses.MaskedDiceCELoss", **kwargs, "ignore_value": IGNORE_VALUE}
