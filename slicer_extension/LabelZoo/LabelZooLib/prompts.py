"""Interactive prompts of the LabelZoo module: bookkeeping per segment, request building, merging the answer.

Plain Python (no ``slicer`` / ``qt``): ``LabelZoo.py`` converts the markups the annotator places (RAS) to
voxel indices of the image (IJK) and calls these; the tests drive them against a live server.

- :class:`PromptBook`: the prompts of every segment (foreground / background points, boxes, scribbles,
  lassos), kept so a new prompt refines rather than restarts; undo of the last prompt.
- :meth:`PromptBook.params`: the request params of one segment, in the format the interactive bundle reads
  (DeepEdit clicks per label name, ``boxes``, ``scribbles``, ``lassos``; see ``labelzoo.interactive.prompts``).
- :func:`resample_to`: a label map in the answer's geometry brought onto the segmentation's grid (nearest
  neighbour through both IJK-to-RAS matrices), so a result is merged by geometry, never by array shape alone.
- :func:`merge_segment`: the segment's voxels replaced by the answer's voxels of that label; other segments
  stay.
- :func:`merge_region`: the same for an answer that covers only a region (``result_region: true``: the server
  returns the prompt region with its own geometry): only the voxels the answer covers change, placed by the
  answer's IJK-to-RAS matrix; a whole-volume answer is the special case covering everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import LabelZooLibError

KINDS = ("foreground", "background", "box", "scribble", "lasso")


@dataclass
class Prompt:
    """One prompt: its kind, and its voxel points (a box: two corners; a lasso: the contour; ``axis`` its slice)."""

    kind: str
    points: list[list[int]]
    axis: int = 2
    background: bool = False  # a background scribble / lasso


def stroke_voxels(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """The voxels of a painted stroke: the polyline through ``points`` (IJK, may be fractional) rasterised with
    one voxel per step, in drawing order, without repeats.

    Example:
        >>> stroke_voxels([[0, 0, 0], [3, 1, 0]])
        [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 1, 0]]
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        raise LabelZooLibError("a scribble needs at least one point")
    out: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for a, b in zip(pts[:-1], pts[1:], strict=True) if len(pts) > 1 else [(pts[0], pts[0])]:
        steps = int(np.ceil(np.abs(b - a).max())) + 1
        for p in np.rint(np.linspace(a, b, max(steps, 1))).astype(int):
            key = tuple(int(c) for c in p)
            if key not in seen:
                seen.add(key)
                out.append(list(key))
    return out


def lasso_contour(points: Sequence[Sequence[float]]) -> tuple[list[list[int]], int]:
    """A closed contour drawn on one slice: its voxel points and the slice axis (the axis it does not vary along;
    that coordinate is snapped to the contour's median slice).

    Raises:
        LabelZooLibError: fewer than 3 points, or the contour is not on one slice (spread over more than one voxel
            on every axis).

    Example:
        >>> lasso_contour([[1, 1, 4.2], [1, 5, 3.9], [5, 5, 4.0]])
        ([[1, 1, 4], [1, 5, 4], [5, 5, 4]], 2)
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) < 3:
        raise LabelZooLibError("a lasso needs at least 3 contour points")
    spread = pts.max(0) - pts.min(0)
    axis = int(np.argmin(spread))
    if spread[axis] > 1.0:
        raise LabelZooLibError("a lasso must be drawn on one slice (its points span several slices on every axis)")
    out = np.rint(pts).astype(int)
    out[:, axis] = int(np.rint(np.median(pts[:, axis])))
    return out.tolist(), axis


@dataclass
class PromptBook:
    """The prompts placed on each segment, in order (what a request for that segment sends), and whether a
    request refines the segment's current mask (``refine``: the mask is uploaded as the prior)."""

    prompts: dict[str, list[Prompt]] = field(default_factory=dict)
    refine: dict[str, bool] = field(default_factory=dict)

    def set_refine(self, segment: str, on: bool) -> None:
        """Refine ``segment``'s current mask (sent as ``prior`` with the upload of :func:`prior_labelmap`) or not."""
        self.refine[segment] = bool(on)

    def add(self, segment: str, kind: str, points: Sequence[Sequence[float]], axis: int = 2,
            background: bool = False) -> Prompt:
        """Record a prompt on ``segment``; points are voxel indices (rounded).

        Raises:
            LabelZooLibError: for an unknown kind or a malformed prompt (a box needs 2 corners, a lasso 3+ points).
        """
        if kind not in KINDS:
            raise LabelZooLibError(f"prompt kind {kind!r} is not one of {KINDS}")
        pts = [[int(round(float(c))) for c in p] for p in points]
        if not pts or any(len(p) != 3 for p in pts):
            raise LabelZooLibError(f"a {kind} prompt needs [i, j, k] voxel points, got {points!r:.80}")
        if kind in ("foreground", "background") and len(pts) != 1:
            raise LabelZooLibError(f"a {kind} click is one point, got {len(pts)}")
        if kind == "box" and len(pts) != 2:
            raise LabelZooLibError("a box is given by 2 opposite corners")
        if kind == "lasso" and len(pts) < 3:
            raise LabelZooLibError("a lasso needs at least 3 contour points")
        prompt = Prompt(kind, pts, int(axis), bool(background))
        self.prompts.setdefault(segment, []).append(prompt)
        return prompt

    def undo(self, segment: str) -> Prompt | None:
        """Remove and return the last prompt of ``segment`` (``None`` when it has none)."""
        items = self.prompts.get(segment) or []
        return items.pop() if items else None

    def clear(self, segment: str | None = None) -> None:
        """Forget the prompts of ``segment`` (all segments when ``None``)."""
        if segment is None:
            self.prompts.clear()
        else:
            self.prompts.pop(segment, None)

    def count(self, segment: str) -> int:
        return len(self.prompts.get(segment, []))

    def params(self, segment: str, label: str | None = None) -> dict[str, Any]:
        """The request params of ``segment``'s prompts; ``label`` is the model's label name (default: the segment's).

        Example:
            >>> book = PromptBook()
            >>> _ = book.add("liver", "foreground", [[10, 20, 5]]); _ = book.add("liver", "background", [[1, 2, 3]])
            >>> book.params("liver")
            {'liver': [[10, 20, 5]], 'background': [[1, 2, 3]]}
        """
        label = (label or segment).strip().lower()
        out: dict[str, Any] = {label: [], "background": []}
        if self.refine.get(segment):
            out["prior"] = [label]
        for p in self.prompts.get(segment, []):
            if p.kind in ("foreground", "background"):
                out[label if p.kind == "foreground" else "background"].append(p.points[0])
            elif p.kind == "box":
                lo = np.minimum(p.points[0], p.points[1]).tolist()
                hi = np.maximum(p.points[0], p.points[1]).tolist()
                out.setdefault("boxes", []).append({"label": label, "min": lo, "max": hi})
            elif p.kind == "scribble":
                out.setdefault("scribbles", []).append({"label": "background" if p.background else label,
                                                        "points": p.points})
            else:
                out.setdefault("lassos", []).append({"label": "background" if p.background else label,
                                                     "axis": p.axis, "points": p.points})
        return out


def resample_to(labelmap: np.ndarray, src_ijk_to_ras: np.ndarray, dst_ijk_to_ras: np.ndarray,
                dst_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling of ``labelmap`` (grid ``src_ijk_to_ras``) onto the grid ``dst``.

    Identical geometries return a copy; voxels outside the source are 0.

    Example:
        >>> a = np.arange(8).reshape(2, 2, 2)
        >>> flip = np.diag([-1.0, 1, 1, 1]); flip[0, 3] = 1
        >>> resample_to(a, flip, np.eye(4), (2, 2, 2))[:, 0, 0].tolist()
        [4, 0]
    """
    labelmap = np.asarray(labelmap)
    src, dst = np.asarray(src_ijk_to_ras, float), np.asarray(dst_ijk_to_ras, float)
    if tuple(labelmap.shape) == tuple(dst_shape) and np.allclose(src, dst, atol=1e-4):
        return labelmap.copy()
    grid = np.indices(tuple(int(s) for s in dst_shape)).reshape(3, -1)
    homo = np.concatenate([grid, np.ones((1, grid.shape[1]))], 0)
    ijk = np.rint((np.linalg.inv(src) @ dst @ homo)[:3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(labelmap.shape)[:, None]), axis=0)
    out = np.zeros(grid.shape[1], dtype=labelmap.dtype)
    out[inside] = labelmap[ijk[0, inside], ijk[1, inside], ijk[2, inside]]
    return out.reshape(tuple(int(s) for s in dst_shape))


def merge_segment(current: np.ndarray | None, answer: np.ndarray, answer_value: int, segment_value: int) -> np.ndarray:
    """Redraw one segment: its voxels become those of ``answer == answer_value``; other segments stay,
    except where the new segment covers them (the answer is on the segmentation's grid, see :func:`resample_to`).

    Raises:
        LabelZooLibError: if the shapes differ.
    """
    answer = np.asarray(answer)
    current = np.zeros(answer.shape, dtype=np.uint8) if current is None else np.asarray(current)
    if current.shape != answer.shape:
        raise LabelZooLibError(f"the answer has shape {answer.shape}, the segmentation {current.shape}: resample the "
                               "answer with its geometry first (resample_to)")
    dtype = np.promote_types(current.dtype, np.min_scalar_type(segment_value))
    merged = current.astype(dtype, copy=True)
    merged[merged == segment_value] = 0
    merged[answer == answer_value] = segment_value
    return merged


def resample_region(labelmap: np.ndarray, src_ijk_to_ras: np.ndarray, dst_ijk_to_ras: np.ndarray,
                    dst_shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """``labelmap`` (grid ``src``) brought onto the grid ``dst`` within its footprint only.

    Only the box of the destination grid that the source's corners map into is visited (a small region answer
    on a large volume costs the region, not the volume).

    Returns:
        ``(slices, values, covered)``: the destination box (slices into a ``dst_shape`` array), the resampled
        values there (nearest neighbour) and which of them the source covers.

    Example:
        >>> shift = np.eye(4); shift[:3, 3] = [2, 3, 0]   # a 2x2x1 region starting at voxel (2, 3, 0)
        >>> sl, values, covered = resample_region(np.ones((2, 2, 1), int), shift, np.eye(4), (8, 8, 4))
        >>> [(s.start, s.stop) for s in sl], int(values.sum()), bool(covered.all())
        ([(2, 4), (3, 5), (0, 1)], 4, True)
    """
    labelmap = np.asarray(labelmap)
    src, dst = np.asarray(src_ijk_to_ras, float), np.asarray(dst_ijk_to_ras, float)
    size = np.asarray(labelmap.shape, dtype=float) - 1
    corners = np.array([[a, b, c] for a in (-0.5, size[0] + 0.5) for b in (-0.5, size[1] + 0.5)
                        for c in (-0.5, size[2] + 0.5)])
    mapped = (np.linalg.inv(dst) @ src @ np.c_[corners, np.ones(8)].T).T[:, :3]
    lo = np.clip(np.ceil(mapped.min(0) - 1e-6), 0, np.asarray(dst_shape)).astype(int)
    hi = np.clip(np.floor(mapped.max(0) + 1e-6) + 1, 0, np.asarray(dst_shape)).astype(int)
    slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    box = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    if min(box) <= 0:
        return slices, np.zeros(box, labelmap.dtype), np.zeros(box, bool)
    grid = np.indices(box).reshape(3, -1) + lo[:, None]
    ijk = np.rint((np.linalg.inv(src) @ dst @ np.concatenate([grid, np.ones((1, grid.shape[1]))], 0))[:3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(labelmap.shape)[:, None]), axis=0)
    values = np.zeros(grid.shape[1], dtype=labelmap.dtype)
    values[inside] = labelmap[ijk[0, inside], ijk[1, inside], ijk[2, inside]]
    return slices, values.reshape(box), inside.reshape(box)


def merge_region(current: np.ndarray, answer: np.ndarray, answer_ijk_to_ras: np.ndarray,
                 current_ijk_to_ras: np.ndarray, answer_value: int, segment_value: int) -> np.ndarray:
    """Redraw one segment from an answer that may cover only a region, placed by its geometry.

    Inside the answer's footprint the segment becomes ``answer == answer_value`` (other segments stay, except
    where the new segment covers them, as :func:`merge_segment`); outside it nothing changes.

    Args:
        current: the segmentation's label map (its grid is ``current_ijk_to_ras``).
        answer: the server's label map, whole volume or region, with its IJK-to-RAS matrix ``answer_ijk_to_ras``.
        answer_value: the label's value in the answer; segment_value: the segment's value in ``current``.
    """
    current = np.asarray(current)
    slices, values, covered = resample_region(answer, answer_ijk_to_ras, current_ijk_to_ras, current.shape)
    dtype = np.promote_types(current.dtype, np.min_scalar_type(segment_value))
    merged = current.astype(dtype, copy=True)
    block = merged[slices]
    block[covered & (block == segment_value)] = 0
    block[covered & (values == answer_value)] = segment_value
    return merged


def prior_labelmap(mask: np.ndarray, answer_value: int) -> np.ndarray:
    """The current mask of a segment as the label map a ``prior`` request uploads: ``answer_value`` (the model's
    value of the label, as its answers hold it) inside, 0 elsewhere, on the image's grid.

    Raises:
        LabelZooLibError: for a value outside 1..255.
    """
    if not 0 < int(answer_value) < 256:
        raise LabelZooLibError(f"label value {answer_value} is outside 1..255")
    return np.where(np.asarray(mask) > 0, np.uint8(answer_value), np.uint8(0))
