"""A simulated annotator: the standard protocol of interactive segmentation papers, and its measures.

Start from the automatic result (no prompt), then click at the centre of the largest error region (a
foreground click in the largest missed region, a background click in the largest false one), keeping every
earlier click, up to ``max_clicks``. The measures: Dice after k clicks, NoC@85 / NoC@90 (clicks needed to
reach Dice 0.85 / 0.90; ``max_clicks`` when never reached) and the area under the Dice-per-click curve
(normalised to [0, 1], the measure of the CVPR 2025 interactive 3D segmentation challenge). Boxes,
scribbles and lassos are drawn from the ground truth too (:func:`box_prompt`, :func:`scribble_prompt`,
:func:`lasso_prompt`).

``predict(params) -> label map`` is any function: the benchmark and the tests send the params through the
live server with ``MONAILabelClient``, the same path the Slicer extension uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    total = pred.sum() + gt.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(pred, gt).sum() / total)


def error_click(pred: np.ndarray, gt: np.ndarray) -> tuple[list[int], bool] | None:
    """The next simulated click: the centre (deepest voxel) of the largest error region.

    Returns:
        ``(point, is_foreground)``: a foreground click in a missed region, a background click in a false
        positive; ``None`` when the prediction is perfect.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    best: tuple[int, np.ndarray, bool] | None = None
    for region, positive in ((gt & ~pred, True), (pred & ~gt, False)):
        comps, n = ndimage.label(region)
        if n == 0:
            continue
        sizes = ndimage.sum_labels(region, comps, index=np.arange(1, n + 1))
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), comps == k + 1, positive)
    if best is None:
        return None
    _, mask, positive = best
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    point = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return [int(p) for p in point], positive


def noc(dices: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Clicks needed to reach ``threshold`` (index into ``dices``, where ``dices[k]`` is after k clicks)."""
    for k, d in enumerate(dices):
        if k >= 1 and d >= threshold:
            return k
    return max_clicks


def auc(dices: Sequence[float]) -> float:
    """Normalised area under the Dice-per-click curve over clicks 1..N (trapezoid rule; one click: its Dice)."""
    curve = np.asarray(dices[1:], dtype=float)
    if len(curve) <= 1:
        return float(curve[0]) if len(curve) else 0.0
    return float(((curve[1:] + curve[:-1]) / 2).sum() / (len(curve) - 1))


@dataclass
class ClickRun:
    """One structure's simulated session: Dice after 0..N clicks and the round-trip time of each request."""

    label: str
    dices: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def summary(self, max_clicks: int) -> dict[str, float]:
        """Dice after 1/3/5/10 clicks, NoC@85/90 and AUC."""
        pad = self.dices + [self.dices[-1]] * (max_clicks + 1 - len(self.dices))
        out = {f"dice@{k}": pad[k] for k in (1, 3, 5, 10) if k <= max_clicks}
        out.update({"noc85": noc(pad, 0.85, max_clicks), "noc90": noc(pad, 0.90, max_clicks), "auc": auc(pad),
                    "auto": pad[0]})
        return out


def simulate_clicks(predict: Callable[[dict[str, Any]], np.ndarray], gt: np.ndarray, label: str, value: int,
                    max_clicks: int = 20, clock: Callable[[], float] | None = None) -> ClickRun:
    """Run the click protocol for one structure.

    Args:
        predict: params -> label map (the model's answer, in the image's voxel grid).
        gt: the ground-truth label map of the image.
        label: the structure's label name (its click list key in the request).
        value: the structure's value in the predicted label map.
        max_clicks: clicks at most.
        clock: a timer for the round-trip times (``time.perf_counter`` by default).
    """
    import time

    clock = clock or time.perf_counter
    truth = np.asarray(gt) if gt.dtype == bool else np.asarray(gt) == value
    run = ClickRun(label)
    params: dict[str, Any] = {label: [], "background": []}
    for k in range(max_clicks + 1):
        t0 = clock()
        pred = np.asarray(predict({n: list(v) for n, v in params.items()})) == value
        run.seconds.append(clock() - t0)
        run.dices.append(dice(pred, truth))
        if k == max_clicks:
            break
        click = error_click(pred, truth)
        if click is None:
            break
        point, positive = click
        params[label if positive else "background"].append(point)
    return run


def _middle_slice(mask: np.ndarray, axis: int = 2) -> int:
    idx = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    areas = [mask.take(i, axis=axis).sum() for i in idx]
    return int(idx[int(np.argmax(areas))])


def box_prompt(mask: np.ndarray, label: str, two_d: bool = False, axis: int = 2) -> dict[str, Any]:
    """A tight box around the structure: 3D, or 2D on its largest slice normal to ``axis``."""
    if two_d:
        z = _middle_slice(mask, axis)
        sl = np.zeros_like(mask)
        idx = [slice(None)] * 3
        idx[axis] = z
        sl[tuple(idx)] = mask[tuple(idx)]
        mask = sl
    pts = np.argwhere(mask)
    return {"label": label, "min": pts.min(0).tolist(), "max": pts.max(0).tolist()}


def scribble_prompt(mask: np.ndarray, label: str, axis: int = 2) -> dict[str, Any]:
    """A stroke through the structure's largest slice along its longest extent, kept inside the structure."""
    z = _middle_slice(mask, axis)
    idx = [slice(None)] * 3
    idx[axis] = z
    plane = mask[tuple(idx)]
    pts = np.argwhere(plane)
    spread = pts.max(0) - pts.min(0)
    along = int(np.argmax(spread))
    centre = np.rint(ndimage.center_of_mass(plane)).astype(int)
    line = []
    for t in range(pts[:, along].min(), pts[:, along].max() + 1):
        p = centre.copy()
        p[along] = t
        if plane[tuple(p)]:
            q = p.tolist()
            q.insert(axis, z)
            line.append(q)
    return {"label": label, "points": line}


def lasso_prompt(mask: np.ndarray, label: str, axis: int = 2) -> dict[str, Any]:
    """The outline of the structure on its largest slice, as a closed contour."""
    from skimage import measure

    z = _middle_slice(mask, axis)
    idx = [slice(None)] * 3
    idx[axis] = z
    contours = measure.find_contours(mask[tuple(idx)].astype(float), 0.5)
    contour = max(contours, key=len)
    pts = np.rint(contour).astype(int)[:: max(1, len(contour) // 64)]
    return {"label": label, "axis": axis, "points": [[*p[:axis], z, *p[axis:]] for p in pts.tolist()]}


def prompt_dice(predict: Callable[[dict[str, Any]], np.ndarray], gt: np.ndarray, label: str,
                value: int) -> dict[str, float]:
    """Dice of one structure after a single 3D box, 2D box, scribble and lasso (each on its own).

    Args:
        predict: params -> label map.
        gt: the structure's ground-truth mask (boolean), or a label map whose ``value`` voxels are the structure.
        label: the structure's label name.
        value: the structure's value in the predicted label map.
    """
    truth = np.asarray(gt) if np.asarray(gt).dtype == bool else np.asarray(gt) == value
    out = {}
    for name, params in (("box3d", {"boxes": [box_prompt(truth, label)]}),
                         ("box2d", {"boxes": [box_prompt(truth, label, two_d=True)]}),
                         ("scribble", {"scribbles": [scribble_prompt(truth, label)]}),
                         ("lasso", {"lassos": [lasso_prompt(truth, label)]})):
        out[name] = dice(np.asarray(predict(params)) == value, truth)
    return out


def spoiled_suggestion(mask: np.ndarray, cut: float = 0.3, grow: int = 1) -> np.ndarray:
    """A deterministic poor suggestion of a structure, to measure the refinement of a prior mask.

    The ground truth with its last ``cut`` share along the third axis missed and dilated by ``grow`` voxels
    elsewhere (a part missed, a loose border: what a weak automatic result or a quick edit looks like).

    Example:
        >>> m = np.zeros((9, 9, 10), bool); m[3:6, 3:6, 0:10] = True
        >>> s = spoiled_suggestion(m)
        >>> bool(s[4, 4, 9]), bool(s[4, 4, 2]), bool(s[2, 4, 2])
        (False, True, True)
    """
    mask = np.asarray(mask, bool)
    out = ndimage.binary_dilation(mask, iterations=grow) if grow else mask.copy()
    idx = np.nonzero(mask.any(axis=(0, 1)))[0]
    if len(idx):
        stop = int(idx.max() + 1 - round(cut * (idx.max() + 1 - idx.min())))
        out[:, :, stop:] = False
    return out
