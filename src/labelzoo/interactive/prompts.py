"""Annotator prompts (clicks, boxes, scribbles, lassos): the request format and its strict validation.

MONAI Label's clients send DeepEdit clicks as request params: one list of voxel triples ``[i, j, k]`` (in the
image file's voxel grid) per label name, plus ``background``; the DeepGrow-style tools send ``foreground`` /
``background`` and the selected label as ``label``. LabelZoo adds (all optional, all in voxel coordinates of
the image file)::

    "boxes":     [{"label": "spleen", "min": [i, j, k], "max": [i, j, k]}]      # 3D box, or a 2D box on one
                                                                                 # slice (min[a] == max[a])
    "scribbles": [{"label": "spleen" | "background", "points": [[i, j, k], ...]}]   # a painted stroke
    "lassos":    [{"label": "spleen", "axis": 2, "points": [[i, j, k], ...]}]   # closed contour on one slice
    "prior":     true | ["liver", ...]   # refine the current mask: the uploaded label file (the request's
                                         # ``label``) is the current segmentation, in the image's voxel grid,
                                         # valued as the model answers (/info/ labels 1..K); true: every label

On a 2D image the points are ``[i, j]`` (``[i, j, 0]`` is taken too: a one-slice volume, as Slicer shows a 2D
image) and a box is ``min``/``max`` pairs. A 2D model run slice by slice on a volume (the planner's ``2d``
configuration, ``slice_axis``) takes the same 3D prompts; each guides the slice it lies on, a 2D box must lie on
one of the model's slices and a 3D box is a box on every slice it spans.

:func:`parse_prompts` checks every value (types, int triples inside the image, known labels, sizes) and
returns a :class:`Prompts`; anything else raises :class:`~labelzoo.errors.LabelZooError` naming the parameter.
Nothing a client sends is evaluated: the values only become voxel indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError

#: Request parameter names LabelZoo reads besides the per-label click lists.
PROMPT_PARAMS = ("foreground", "background", "label", "boxes", "scribbles", "lassos", "prior")
#: Limits that bound memory before any is spent.
MAX_POINTS = 200          # clicks per label
MAX_SHAPES = 32           # boxes, scribbles or lassos per request
MAX_SHAPE_POINTS = 5000   # points of one scribble or lasso


@dataclass
class Prompts:
    """Validated prompts in the image file's voxel grid.

    Attributes:
        points: label name (``"background"`` included) -> list of ``(i, j, k)`` clicks.
        boxes: label name -> list of ``(min, max)`` inclusive voxel corners.
        lasso_points: label name -> voxels inside lassos (filled contours), added to the label's guidance.
    """

    points: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True without any click, box, scribble or lasso: the model then runs in automatic mode."""
        return not any(self.points.values()) and not any(self.boxes.values())

    def count(self) -> int:
        """Number of prompt points plus boxes."""
        return sum(len(v) for v in self.points.values()) + sum(len(v) for v in self.boxes.values())


def _triple(value: Any, name: str, shape: Sequence[int] | None) -> tuple[int, ...]:
    dims = len(shape) if shape is not None else 3
    if dims == 2 and isinstance(value, (list, tuple)) and len(value) == 3 and value[2] == 0:
        value = value[:2]  # a 2D image seen as a one-slice volume (Slicer): [i, j, 0]
    if (not isinstance(value, (list, tuple)) or len(value) != dims
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        raise LabelZooError(f"parameter {name!r}: expected a list of {dims} integer voxel indices, got {value!r:.80}")
    point = tuple(int(v) for v in value)
    if shape is not None and any(p < 0 or p >= s for p, s in zip(point, shape, strict=True)):
        raise LabelZooError(f"parameter {name!r}: point {list(point)} is outside the image (shape {list(shape)})")
    return point


def _points(value: Any, name: str, shape: Sequence[int] | None, limit: int) -> list[tuple[int, ...]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise LabelZooError(f"parameter {name!r}: expected a list of [i, j, k] points, got {type(value).__name__}")
    if len(value) > limit:
        raise LabelZooError(f"parameter {name!r}: {len(value)} points, at most {limit} allowed")
    return [_triple(v, f"{name}[{n}]", shape) for n, v in enumerate(value)]


def _shapes(value: Any, name: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise LabelZooError(f"parameter {name!r}: expected a list of objects")
    if len(value) > MAX_SHAPES:
        raise LabelZooError(f"parameter {name!r}: {len(value)} entries, at most {MAX_SHAPES} allowed")
    return list(value)


def _label_of(entry: Mapping[str, Any], name: str, labels: Sequence[str], allow_background: bool) -> str:
    label = entry.get("label")
    allowed = [*labels, "background"] if allow_background else list(labels)
    if label not in allowed:
        raise LabelZooError(f"parameter {name!r}: 'label' must be one of {allowed}, got {label!r:.60}")
    return str(label)


def fill_lasso(points: Sequence[Sequence[int]], axis: int, shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Voxels inside a closed contour drawn on one slice (the plane normal to ``axis``), contour included; on a
    2D image (``shape`` of two axes) the image's plane, ``axis`` unused.

    Example:
        >>> len(fill_lasso([[1, 1, 0], [1, 3, 0], [3, 3, 0], [3, 1, 0]], 2, (5, 5, 1)))
        9
        >>> len(fill_lasso([[1, 1], [1, 3], [3, 3], [3, 1]], 2, (5, 5)))
        9
    """
    from skimage.draw import polygon, polygon_perimeter

    pts = np.asarray(points, dtype=int)
    if len(shape) == 2:
        rr, cc = polygon(pts[:, 0], pts[:, 1], shape=tuple(shape))
        pr, pc = polygon_perimeter(pts[:, 0], pts[:, 1], shape=tuple(shape), clip=True)
        inside = np.unique(np.stack([np.concatenate([rr, pr]), np.concatenate([cc, pc])], 1), axis=0)
        return [tuple(int(x) for x in p) for p in inside]
    plane = [a for a in range(3) if a != axis]
    size = (int(shape[plane[0]]), int(shape[plane[1]]))
    rr, cc = polygon(pts[:, plane[0]], pts[:, plane[1]], shape=size)
    pr, pc = polygon_perimeter(pts[:, plane[0]], pts[:, plane[1]], shape=size, clip=True)
    inside = np.unique(np.stack([np.concatenate([rr, pr]), np.concatenate([cc, pc])], 1), axis=0)
    out = np.zeros((len(inside), 3), dtype=int)
    out[:, plane] = inside
    out[:, axis] = int(pts[0, axis])
    return [tuple(int(x) for x in p) for p in out]


def parse_prompts(params: Mapping[str, Any], labels: Sequence[str], shape: Sequence[int] | None = None,
                  slice_axis: int | None = None) -> Prompts:
    """Validate the prompts of a request and return them per label.

    Args:
        params: the request (MONAI Label merges the client's params into it).
        labels: the model's label names without ``background``.
        shape: the image's spatial shape (voxels, 3 or 2 axes); points outside it are refused. ``None`` skips
            that check (3D points).
        slice_axis: for a 2D model run slice by slice on a volume, the axis normal to its slices: a box flat along
            another axis (a 2D box drawn across the model's slices) is refused. ``None``: any box.

    Returns:
        The prompts; clicks per label include ``foreground`` (added to ``params["label"]``, or to the only
        label of a one-label model) and the filled lassos and scribbles.

    Raises:
        LabelZooError: on any malformed value, naming the parameter.
    """
    labels = [str(n) for n in labels if str(n) != "background"]
    out = Prompts(points={n: [] for n in [*labels, "background"]}, boxes={n: [] for n in labels})
    for name in [*labels, "background"]:
        out.points[name] += _points(params.get(name), name, shape, MAX_POINTS)
    foreground = _points(params.get("foreground"), "foreground", shape, MAX_POINTS)
    if foreground:
        selected = params.get("label")
        if selected is None and len(labels) == 1:
            selected = labels[0]
        if selected not in labels:
            raise LabelZooError(f"parameter 'label': foreground clicks need the label they belong to, one of "
                                f"{labels}, got {selected!r:.60}")
        out.points[str(selected)] += foreground
    for n, box in enumerate(_shapes(params.get("boxes"), "boxes")):
        label = _label_of(box, f"boxes[{n}]", labels, allow_background=False)
        lo = _triple(box.get("min"), f"boxes[{n}].min", shape)
        hi = _triple(box.get("max"), f"boxes[{n}].max", shape)
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            raise LabelZooError(f"parameter 'boxes[{n}]': min {list(lo)} must not exceed max {list(hi)}")
        if slice_axis is not None and len(lo) == 3 and lo[slice_axis] != hi[slice_axis]:
            flat = [a for a in range(3) if lo[a] == hi[a]]
            if flat:
                raise LabelZooError(
                    f"parameter 'boxes[{n}]': this model segments slice by slice along axis {slice_axis}; a 2D box "
                    f"must be drawn on one of its slices (min[{slice_axis}] == max[{slice_axis}]), this one is flat "
                    f"along axis {flat[0]}; a 3D box is taken as a box on every slice it spans")
        out.boxes[label].append((lo, hi))
    for n, scribble in enumerate(_shapes(params.get("scribbles"), "scribbles")):
        label = _label_of(scribble, f"scribbles[{n}]", labels, allow_background=True)
        out.points[label] += _points(scribble.get("points"), f"scribbles[{n}].points", shape, MAX_SHAPE_POINTS)
    for n, lasso in enumerate(_shapes(params.get("lassos"), "lassos")):
        label = _label_of(lasso, f"lassos[{n}]", labels, allow_background=True)
        pts = _points(lasso.get("points"), f"lassos[{n}].points", shape, MAX_SHAPE_POINTS)
        axis = lasso.get("axis", 2)
        if axis not in (0, 1, 2) or isinstance(axis, bool):
            raise LabelZooError(f"parameter 'lassos[{n}].axis': must be 0, 1 or 2, got {axis!r:.20}")
        if len(pts) < 3:
            raise LabelZooError(f"parameter 'lassos[{n}].points': a contour needs at least 3 points")
        if len(pts[0]) == 3 and len({p[axis] for p in pts}) != 1:
            raise LabelZooError(f"parameter 'lassos[{n}].points': all points must lie on one slice (axis {axis})")
        filled = fill_lasso(pts, axis, shape or [max(p[a] for p in pts) + 1 for a in range(len(pts[0]))])
        out.points[label] += filled[:: max(1, len(filled) // MAX_SHAPE_POINTS)]
    return out


def prior_labels(params: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    """The labels whose current mask the request sends as prior guidance (``prior``; empty when none).

    Raises:
        LabelZooError: ``prior`` is not a boolean or a list of known labels, or no label file came with it.
    """
    labels = [str(n) for n in labels if str(n) != "background"]
    value = params.get("prior")
    if value is None or value is False:
        return []
    if value is True:
        chosen = list(labels)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v in labels for v in value):
        chosen = [n for n in labels if n in value]
    else:
        raise LabelZooError(f"parameter 'prior': true or a list of labels among {labels}, got {value!r:.80}")
    if not isinstance(params.get("label_file"), str):
        raise LabelZooError("parameter 'prior': upload the current mask as the request's label file")
    return chosen


def load_prior(path: str, labels: Sequence[str], chosen: Sequence[str], shape: Sequence[int]) -> np.ndarray:
    """The uploaded current mask: an integer label map of the image's voxel grid, valued 0..K (the model's answer).

    Returns:
        The label map with only the ``chosen`` labels kept (value ``1 + index in labels``), others set to 0.

    Raises:
        LabelZooError: unreadable, another shape than the image, not integer, or values outside 0..K.
    """
    import nibabel as nib

    labels = [str(n) for n in labels if str(n) != "background"]
    try:
        img = nib.load(path)
    except Exception as e:  # noqa: BLE001 (any reader error is the client's file)
        raise LabelZooError(f"parameter 'prior': the label file is not a readable NIfTI image ({e})") from None
    got = tuple(int(s) for s in img.shape)
    while len(got) > len(shape) and got[-1] == 1:
        got = got[:-1]
    if got != tuple(int(s) for s in shape):
        raise LabelZooError(f"parameter 'prior': the label file has shape {list(got)}, the image {list(shape)}")
    if not np.issubdtype(img.get_data_dtype(), np.integer):
        raise LabelZooError(f"parameter 'prior': the label file must hold integers, not {img.get_data_dtype()}")
    arr = np.asarray(img.dataobj).reshape(got)
    bad = np.setdiff1d(np.unique(arr), np.arange(len(labels) + 1))
    if bad.size:
        raise LabelZooError(f"parameter 'prior': label values {bad[:5].tolist()} are not the model's 0..{len(labels)}")
    keep = np.zeros(len(labels) + 1, dtype=np.uint8)
    for name in chosen:
        keep[labels.index(name) + 1] = labels.index(name) + 1
    return keep[arr.astype(np.int64)]
