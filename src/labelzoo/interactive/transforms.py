"""Guidance transforms of the interactive bundle: prompts to network input channels, and simulated prompts.

The network input is ``[image, box_1 .. box_K, prior_1 .. prior_K, clicks_1 .. clicks_K, clicks_background]``
for the K labels of the bundle (``label_names`` order). Every transform works on 3D and on 2D data (the
planner's interactive ``2d`` variant trains on 2D slices with 2D guidance, and infers a volume slice by slice with
each prompt's guidance on the slice where it was drawn). Click channels are MONAI DeepEdit's (Gaussian maps made
by :class:`monai.apps.deepedit.transforms.AddGuidanceSignalDeepEditd` with ``number_intensity_ch = 1 + 2K``, so
the box and prior channels survive DeepEdit's click simulation); scribbles and filled lassos add points to their
label's click channel; a box sets its label's box channel to 1 inside the box; a prior channel holds the current
mask of its label when the request refines one (DeepEdit's "previous segmentation" idea: the automatic suggestion
or the annotator's edit, uploaded with ``prior``). With no prompt every guidance channel is zero: the model's
automatic mode.

- :class:`PromptGuidanced` (inference): validates the request's prompts (:func:`~labelzoo.interactive.prompts.
  parse_prompts`), maps them from the image file's voxel grid to the preprocessed grid with the image's
  affines, and writes the guidance dict and box channels.
- :class:`SimulatePromptsd` (training): draws clicks, boxes (2D or 3D), scribbles and lassos from the
  ground truth, for a random subset of labels, before DeepEdit's ``Interaction`` adds corrective clicks.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Randomizable

from labelzoo.errors import LabelZooError
from labelzoo.interactive.prompts import load_prior, parse_prompts, prior_labels


def _foreground_names(label_names: Mapping[str, int]) -> list[str]:
    return [n for n in label_names if n != "background"]


def _set_image(d: dict, key: Hashable, array: np.ndarray) -> None:
    if isinstance(d[key], MetaTensor):
        d[key].array = array
    else:
        d[key] = array


def _homogeneous(points: np.ndarray, size: int) -> np.ndarray:
    """``(n, d)`` voxel points as homogeneous coordinates for a ``size`` x ``size`` affine (a 2D point in a 4x4
    affine lies on slice 0)."""
    pts = np.asarray(points, dtype=float)
    out = np.zeros((len(pts), size))
    out[:, :pts.shape[1]] = pts
    out[:, -1] = 1.0
    return out


def map_points(points: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, dims: int = 3) -> np.ndarray:
    """Voxel points of the grid with affine ``src_affine`` to (rounded) voxels of the grid ``dst_affine``.

    ``dims`` is the grids' number of spatial axes (3, or 2 for 2D images, whose affines may be 3x3 or 4x4).

    Example:
        >>> map_points(np.array([[2, 4, 6]]), np.diag([1.0, 1, 1, 1]), np.diag([2.0, 2, 2, 1])).tolist()
        [[1, 2, 3]]
        >>> map_points(np.array([[2, 4]]), np.diag([1.0, 1, 1, 1]), np.diag([2.0, 2, 1, 1]), dims=2).tolist()
        [[1, 2]]
    """
    src, dst = np.asarray(src_affine, dtype=float), np.asarray(dst_affine, dtype=float)
    homo = _homogeneous(np.asarray(points, dtype=float).reshape(-1, dims), src.shape[0])
    out = (np.linalg.inv(dst) @ src @ homo.T).T[:, :dims]
    return np.rint(out).astype(int)


class PromptGuidanced(MapTransform):
    """Turn a request's prompts into the DeepEdit guidance dict and the box channels (inference).

    Args:
        keys: the image key (``"image"``), already preprocessed (oriented, resampled).
        label_names: name -> value of the bundle's labels (``background`` included); its order is the order
            of the guidance channels.
        guidance: key of the guidance dict written for ``AddGuidanceSignalDeepEditd``.
        image_channels: the image's own channels (kept in front of the guidance channels).
        slice_axis: for a 2D model run slice by slice on a volume (``SliceInferer``), the axis of its slices: a
            2D box must then be drawn on such a slice (a 3D box is a box on every slice it spans), see
            :func:`~labelzoo.interactive.prompts.parse_prompts`. ``None``: a 3D model, or a 2D image.
    """

    def __init__(self, keys: KeysCollection, label_names: Mapping[str, int], guidance: str = "guidance",
                 image_channels: int = 1, slice_axis: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_names = dict(label_names)
        self.guidance = guidance
        self.image_channels = int(image_channels)
        self.slice_axis = None if slice_axis is None else int(slice_axis)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            meta = image.meta if isinstance(image, MetaTensor) else d.get(f"{key}_meta_dict", {})
            spatial = tuple(int(s) for s in image.shape[1:])
            original = meta.get("spatial_shape")
            original = tuple(int(s) for s in np.asarray(original).ravel()) if original is not None else spatial
            original = original[:len(spatial)]
            prompts = parse_prompts(d, _foreground_names(self.label_names), original, slice_axis=self.slice_axis)
            dims = len(spatial)
            src = np.asarray(meta.get("original_affine", np.eye(4)), dtype=float)
            dst = np.asarray(image.affine if isinstance(image, MetaTensor) else meta.get("affine", np.eye(4)),
                             dtype=float)
            if "original_affine" not in meta:  # no geometry: scale by the shapes
                src = np.diag([*(np.asarray(spatial) / np.asarray(original)), 1.0])
                dst = np.eye(dims + 1)
            limit = np.asarray(spatial) - 1
            guidance: dict[str, list[list[int]]] = {}
            for name in self.label_names:
                pts = prompts.points.get(name, [])
                mapped = (np.clip(map_points(np.asarray(pts), src, dst, dims), 0, limit) if pts
                          else np.zeros((0, dims), int))
                guidance[name] = np.unique(mapped, axis=0).tolist()
            boxes = np.zeros((len(_foreground_names(self.label_names)), *spatial), dtype=np.float32)
            for c, name in enumerate(_foreground_names(self.label_names)):
                for lo, hi in prompts.boxes.get(name, []):
                    corners = map_points(np.array([lo, hi]), src, dst, dims)
                    a = np.clip(corners.min(0), 0, limit)
                    b = np.clip(corners.max(0), 0, limit)
                    boxes[(c, *(slice(int(i), int(j) + 1) for i, j in zip(a, b, strict=True)))] = 1.0
            priors = self._priors(d, original, src, dst, spatial)
            d[self.guidance] = guidance
            d["prompt_count"] = prompts.count() + int(priors.any())
            arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            _set_image(d, key, np.concatenate([arr[:self.image_channels].astype(np.float32), boxes, priors], 0))
        return d

    def _priors(self, d: Mapping[Hashable, Any], original: Sequence[int], src: np.ndarray, dst: np.ndarray,
                spatial: Sequence[int]) -> np.ndarray:
        """The K prior channels: the uploaded current mask (``prior``) on the preprocessed grid, one per label."""
        from monai.transforms import SpatialResample

        names = _foreground_names(self.label_names)
        out = np.zeros((len(names), *spatial), dtype=np.float32)
        chosen = prior_labels(d, names)
        if not chosen:
            return out
        prior = load_prior(str(d["label_file"]), names, chosen, original)
        if prior.ndim == 2 and src.shape[0] == 4:  # a 2D image in 4x4 affines: resample it as one slice
            prior = prior[..., None]
            spatial = (*spatial, 1)
        resample = SpatialResample(mode="nearest", padding_mode="zeros", dtype=torch.float32)
        with resample.trace_transform(False):
            source = MetaTensor(torch.as_tensor(prior[None], dtype=torch.float32), affine=torch.as_tensor(src))
            mapped = resample(source, dst_affine=torch.as_tensor(dst), spatial_size=list(spatial))
        mapped = np.rint(np.asarray(torch.as_tensor(mapped)[0])).astype(int).reshape(out.shape[1:])
        for c in range(len(names)):
            out[c] = mapped == c + 1
        return out


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return None
    return idx.min(0), idx.max(0)


class SimulatePromptsd(Randomizable, MapTransform):
    """Simulated annotator prompts from the ground truth (training): clicks, boxes, scribbles and lassos.

    Expects ``label`` normalised by ``NormalizeLabelsInDatasetd`` (values are ``label_names`` indices), 3D or 2D
    (a 2D training slice: its boxes, scribbles and lassos are drawn on it, its points are ``[i, j]``), and a
    one-channel image; appends the K box channels and the K prior channels to the image and writes the guidance
    dict (label name -> JSON list of ``[i, j, k]``, DeepEdit's format) for ``AddGuidanceSignalDeepEditd``.

    Args:
        keys: the label key.
        label_names: name -> index after normalisation (``background`` included), the channel order.
        image: the image key.
        guidance: the guidance key.
        max_clicks: at most this many random clicks per label (0 to ``max_clicks``).
        box_prob, scribble_prob, lasso_prob: probability of a box / scribble / lasso per present label.
        box_2d_prob: probability that a box is drawn on one slice (2D) rather than in 3D (3D labels).
        jitter: box corner jitter, voxels.
        prior_prob: probability of a prior mask per present label (a current mask to refine): the ground truth
            spoiled as an automatic suggestion or a quick edit would be (eroded or dilated, a part cut off, a
            false blob added), written to the label's prior channel.
        corrective_clicks: with a prior, 1 to this many clicks at the prior's errors, as the annotator places
            them (:meth:`_corrective`: a foreground click in a missed region, a background click in a false one,
            largest regions first), so that "keep the prior, fix it near the click" is learnt; 0: none.
        image_channels: the image's own channels (kept in front of the guidance channels).
    """

    def __init__(self, keys: KeysCollection, label_names: Mapping[str, int], image: str = "image",
                 guidance: str = "guidance", max_clicks: int = 2, box_prob: float = 0.3, scribble_prob: float = 0.2,
                 lasso_prob: float = 0.1, box_2d_prob: float = 0.5, jitter: int = 2, prior_prob: float = 0.0,
                 corrective_clicks: int = 0, image_channels: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.corrective_clicks = int(corrective_clicks)
        self.label_names = dict(label_names)
        self.image, self.guidance = image, guidance
        self.max_clicks, self.box_prob, self.scribble_prob = int(max_clicks), float(box_prob), float(scribble_prob)
        self.lasso_prob, self.box_2d_prob, self.jitter = float(lasso_prob), float(box_2d_prob), int(jitter)
        self.prior_prob, self.image_channels = float(prior_prob), int(image_channels)

    def _prior(self, mask: np.ndarray) -> np.ndarray:
        """A plausible current mask of the structure: the ground truth spoiled by one or two random edits."""
        from scipy import ndimage

        prior = mask.copy()
        dims = prior.ndim
        for _ in range(int(self.R.randint(1, 3))):
            kind = int(self.R.randint(0, 4))
            if kind == 0:  # under-segmented
                prior = ndimage.binary_erosion(prior, iterations=int(self.R.randint(1, 4)))
            elif kind == 1:  # over-segmented
                prior = ndimage.binary_dilation(prior, iterations=int(self.R.randint(1, 4)))
            elif kind == 2 and prior.any():  # a part missed: cut at a random plane through the structure
                axis = int(self.R.randint(0, dims))
                idx = np.nonzero(prior.any(axis=tuple(a for a in range(dims) if a != axis)))[0]
                cut = int(self.R.randint(idx.min(), idx.max() + 1))
                sl = [slice(None)] * dims
                sl[axis] = slice(cut, None) if self.R.rand() < 0.5 else slice(None, cut)
                prior[tuple(sl)] = False
            else:  # a false blob next to it
                centre = np.asarray([self.R.randint(0, s) for s in prior.shape])
                radius = int(self.R.randint(2, 6))
                grid = np.ogrid[tuple(slice(0, s) for s in prior.shape)]
                prior |= sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius ** 2
        return prior.astype(np.float32)

    def _corrective(self, prior: np.ndarray, mask: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
        """Clicks at the errors of ``prior``: ``(foreground, background)`` points.

        The error regions (missed: ``mask & ~prior``, false: ``prior & ~mask``) are taken largest first, one
        click each, 1 to ``corrective_clicks`` of them; the click is drawn inside the region with a probability
        growing with the distance to its border (``exp(depth) - 1``, as DeepEdit's
        ``AddRandomGuidanceDeepEditd``), so mostly near the centre the benchmark's annotator picks.
        """
        from scipy import ndimage

        fg: list[list[int]] = []
        bg: list[list[int]] = []
        regions = []
        for error, positive in ((mask & ~prior, True), (prior & ~mask, False)):
            comps, n = ndimage.label(error)
            if n:
                sizes = ndimage.sum_labels(error, comps, index=np.arange(1, n + 1))
                boxes = ndimage.find_objects(comps)
                regions += [(float(sizes[i]), comps, i + 1, boxes[i], positive) for i in range(n)]
        regions.sort(key=lambda r: -r[0])
        for _, comps, index, box, positive in regions[:int(self.R.randint(1, self.corrective_clicks + 1))]:
            region = comps[box] == index  # the region's bounding box only: the distance map stays small
            depth = ndimage.distance_transform_edt(np.pad(region, 1))[(slice(1, -1),) * region.ndim][region]
            weight = np.exp(np.minimum(depth, 30.0)) - 1.0 + 1e-6
            idx = np.argwhere(region) + np.asarray([b.start for b in box])
            point = idx[self.R.choice(len(idx), p=weight / weight.sum())].tolist()
            (fg if positive else bg).append([int(v) for v in point])
        return fg, bg

    def randomize(self, data: Any = None) -> None:  # randomness is drawn per label in __call__
        pass

    def _clicks(self, mask: np.ndarray) -> list[list[int]]:
        idx = np.argwhere(mask)
        n = int(self.R.randint(0, self.max_clicks + 1)) if len(idx) else 0
        return idx[self.R.choice(len(idx), size=n, replace=False)].tolist() if n and n <= len(idx) else []

    def _on_slice(self, mask: np.ndarray) -> np.ndarray:
        """The structure's voxels on one random slice of a 3D mask (normal to a random axis); all of a 2D one."""
        idx = np.argwhere(mask)
        if mask.ndim == 2 or len(idx) == 0:
            return idx
        axis = int(self.R.randint(0, 3))
        z = idx[self.R.randint(len(idx))][axis]
        return idx[idx[:, axis] == z]

    def _scribble(self, mask: np.ndarray) -> list[list[int]]:
        """A straight stroke between two voxels of the structure on one slice, kept inside it."""
        if int(mask.sum()) < 2:
            return []
        on = self._on_slice(mask)
        a, b = on[self.R.randint(len(on))], on[self.R.randint(len(on))]
        steps = int(np.abs(b - a).max()) + 1
        line = np.rint(np.linspace(a, b, steps)).astype(int)
        return [p.tolist() for p in line if mask[tuple(p)]]

    def _lasso(self, mask: np.ndarray) -> list[list[int]]:
        """The structure's cross-section on one slice (a filled lasso), sub-sampled."""
        on = self._on_slice(mask)
        if len(on) == 0:
            return []
        return on[:: max(1, len(on) // 200)].tolist()

    def _box(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        box = np.zeros(shape, dtype=np.float32)
        bb = _bbox(mask)
        if bb is None:
            return box
        lo, hi = bb
        dims = mask.ndim
        if dims == 3 and self.R.rand() < self.box_2d_prob:
            idx = np.argwhere(mask)
            axis = int(self.R.randint(0, 3))
            z = idx[self.R.randint(len(idx))][axis]
            lo2, hi2 = _bbox(np.take(mask, z, axis=axis))  # type: ignore[misc]
            lo, hi = np.insert(lo2, axis, z), np.insert(hi2, axis, z)
        j = self.R.randint(-self.jitter, self.jitter + 1, size=(2, dims)) if self.jitter else np.zeros((2, dims), int)
        a = np.clip(np.minimum(lo + j[0], hi), 0, np.asarray(shape) - 1)
        b = np.clip(np.maximum(hi + j[1], a), 0, np.asarray(shape) - 1)
        box[tuple(slice(int(i), int(k) + 1) for i, k in zip(a, b, strict=True))] = 1.0
        return box

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = np.asarray(d[key].detach().cpu() if isinstance(d[key], torch.Tensor) else d[key])
            if label.ndim not in (3, 4) or label.shape[0] != 1:
                raise LabelZooError(f"SimulatePromptsd: expected a one-channel 3D or 2D label, got shape {label.shape}")
            label = label[0]
            spatial = label.shape
            names = _foreground_names(self.label_names)
            boxes = np.zeros((len(names), *spatial), dtype=np.float32)
            priors = np.zeros((len(names), *spatial), dtype=np.float32)
            found: dict[str, list[list[int]]] = {name: [] for name in self.label_names}
            # NormalizeLabelsInDatasetd writes the normalised values; without it the configured ones apply
            values = {n: int(v) for n, v in dict(d.get("label_names") or self.label_names).items()}
            for name in self.label_names:
                mask = label == values[name]
                points = self._clicks(mask)
                if name != "background" and mask.any():
                    if self.R.rand() < self.box_prob:
                        boxes[names.index(name)] = self._box(mask, spatial)
                    if self.R.rand() < self.lasso_prob:
                        points += self._lasso(mask)
                    if self.R.rand() < self.prior_prob:
                        prior = self._prior(mask)
                        priors[names.index(name)] = prior
                        if self.corrective_clicks > 0:
                            fg, bg = self._corrective(prior > 0, mask)
                            points += fg
                            found.setdefault("background", []).extend(bg)
                if mask.any() and self.R.rand() < self.scribble_prob:
                    points += self._scribble(mask)
                found[name] = found.get(name, []) + points
            guidance = {name: json.dumps([[int(v) for v in p] for p in pts]) for name, pts in found.items()}
            image = d[self.image]
            arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            _set_image(d, self.image, np.concatenate([arr[:self.image_channels].astype(np.float32), boxes, priors], 0))
            d[self.guidance] = guidance
        return d


def _as_points(value: Any, dims: int = 3) -> list[list[int]]:
    """Guidance of one label, whatever collation made of it, as a list of integer points of ``dims`` coordinates
    (the last ``dims`` of each: DeepEdit's ``AddRandomGuidanceDeepEditd`` puts a distance in front)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist()
    out = []
    for p in value if isinstance(value, (list, tuple)) else []:
        if p is None:
            continue
        if isinstance(p, (torch.Tensor, np.ndarray)):
            p = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p).ravel().tolist()
        flat = np.asarray([np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v).ravel()[0]
                           for v in p]) if isinstance(p, (list, tuple)) and p else np.asarray([])
        if flat.size >= dims and np.all(flat >= 0):
            out.append([int(v) for v in flat[-dims:]])
    return out


def _spatial_dims(array: Any) -> int:
    """Spatial axes of a channel-first array (3 when it cannot tell)."""
    ndim = getattr(array, "ndim", None)
    return int(ndim) - 1 if ndim in (3, 4) else 3


class NormalizeGuidanced(MapTransform):
    """Make the guidance dict survive batching: label name -> JSON list of ``[i, j, k]`` (DeepEdit's format).

    DeepEdit's ``Interaction`` collates and decollates the data between simulated clicks; lists of points
    come back as tensors, nested lists or ``None``. This puts them back into the JSON form
    ``AddRandomGuidanceDeepEditd`` and ``AddGuidanceSignalDeepEditd`` read, in ``label_names`` order, with as many
    coordinates per point as the label has spatial axes (3, or 2 for a 2D configuration's slices).

    Args:
        keys: the key whose presence triggers it (``"label"``, as DeepEdit's click transforms).
        label_names: the bundle's label names (the channel order).
        guidance: the guidance key.
    """

    def __init__(self, keys: KeysCollection, label_names: Mapping[str, int], guidance: str = "guidance",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_names = dict(label_names)
        self.guidance = guidance

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            guidance = d.get(self.guidance) if isinstance(d.get(self.guidance), Mapping) else {}
            dims = _spatial_dims(d[key])
            d[self.guidance] = {n: json.dumps(_as_points(guidance.get(n), dims)) for n in self.label_names}
            break
        return d


class PriorFromPredictiond(Randomizable, MapTransform):
    """During DeepEdit's click simulation, make the model's own prediction the prior mask (training).

    In ``Interaction``'s click transforms (after ``AsDiscreted`` made ``pred`` a label map and
    ``AddRandomGuidanceDeepEditd`` placed clicks at its errors), with probability ``prob`` per sample the K prior
    channels of the image are set to the prediction's masks (label ``c + 1`` in prior channel ``c``), so the next
    round sees what a refining annotator sends: the current mask (``prior``) and clicks at its errors. The
    nnInteractive / DeepEdit-with-previous-segmentation recipe; without it a prior in training is always a
    spoiled ground truth and a nearly right current mask gets "repaired" for the worse. Measured on the
    benchmark's short CPU training (40 epochs, 12 synthetic cases) it slowed learning (automatic validation Dice
    0.53 against 0.85 at epoch 20 with ``prob`` 0.5), so the bundle ships it off (``prior_from_prediction_prob``
    0); it is meant for the long (GPU) trainings where the early, poor predictions are a small share.

    Args:
        keys: the image key.
        label_names: the bundle's label names (``background`` included): the prior channel order.
        pred: the prediction key (a label map of the normalised label values).
        prob: probability per sample.
        image_channels: the image's own channels (the K box channels, then the K prior channels, follow them).
    """

    def __init__(self, keys: KeysCollection, label_names: Mapping[str, int], pred: str = "pred", prob: float = 0.5,
                 image_channels: int = 1, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.names = _foreground_names(label_names)
        self.pred, self.prob, self.image_channels = pred, float(prob), int(image_channels)

    def randomize(self, data: Any = None) -> None:  # drawn in __call__
        pass

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.pred not in d or self.R.rand() >= self.prob:
            return d
        pred = np.asarray(d[self.pred].detach().cpu() if isinstance(d[self.pred], torch.Tensor) else d[self.pred])
        k = len(self.names)
        for key in self.key_iterator(d):
            image = d[key]
            arr = np.array(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
            if pred.ndim == arr.ndim and pred.shape[0] == 1:  # channel-first label map, 3D or 2D
                pred = pred[0]
            first = self.image_channels + k
            if arr.shape[0] < first + k or arr.shape[1:] != pred.shape:
                raise LabelZooError(f"PriorFromPredictiond: image {arr.shape} has no {k} prior channels after "
                                    f"{first} channels on the prediction's grid {pred.shape}")
            for c in range(k):
                arr[first + c] = pred == c + 1
            _set_image(d, key, arr)
        return d


class CropToPromptsd(MapTransform, InvertibleTransform):
    """Predict on a region around the prompts (opt-in per request with ``prompt_roi: true``): latency.

    After :class:`PromptGuidanced`, the image (with its box and prior channels) is cropped to the bounding box of
    every click and box plus ``margin`` voxels and the guidance points are shifted to the crop, so that
    ``AddGuidanceSignalDeepEditd`` after it makes the click maps on the crop alone; ``Invertd`` pads the
    prediction back (background outside the region), so the answer has the image's geometry, or
    :class:`InvertToRegiond` answers with the region alone (``result_region: true``). Without prompts, or without
    either flag, it does nothing. Clients that merge one segment at a time (LabelZoo's extension, the benchmark)
    use it; a client that replaces every label with the answer should not.

    Args:
        keys: the image key.
        guidance: the guidance dict key (DeepEdit format, label name -> points).
        num_boxes: number of box channels after the intensity channel.
        margin: voxels added around the prompts on each side, per axis.
        flag: the request key that enables it.
        region_flag: the request key asking for the region alone as the answer (:class:`InvertToRegiond`); it
            enables the crop too.
        image_channels: the image's own channels (the box channels follow them).
        min_size: the region is grown (around its centre, inside the image) to at least this size, voxels: the
            network's patch size (``roi_size``), so that the network sees as much context as on the whole volume
            (a smaller field of view changes its instance-norm statistics and, padded, its borders: on the
            benchmark's 64x64x40 cases a 40-voxel crop cost 0.1 Dice per click); ``None``: the margin alone.
    """

    def __init__(self, keys: KeysCollection, guidance: str = "guidance", num_boxes: int = 0,
                 margin: Sequence[int] = (32, 32, 16), flag: str = "prompt_roi", region_flag: str = "result_region",
                 image_channels: int = 1, min_size: Sequence[int] | None = None,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.min_size = None if min_size is None else np.asarray([int(m) for m in min_size])
        self.guidance, self.num_boxes, self.flag, self.region_flag = guidance, int(num_boxes), flag, region_flag
        self.image_channels = int(image_channels)
        self.margin = np.asarray([int(m) for m in margin])

    def _bounds(self, d: Mapping[Hashable, Any], image: Any) -> tuple[np.ndarray, np.ndarray] | None:
        dims = len(image.shape) - 1
        points = [np.asarray(p) for v in (d.get(self.guidance) or {}).values() for p in _as_points(v, dims)]
        first = self.image_channels
        boxes = np.asarray(image[first:first + self.num_boxes].detach().cpu() if isinstance(image, torch.Tensor)
                           else image[first:first + self.num_boxes])
        if boxes.size and boxes.any():
            idx = np.argwhere(boxes.any(0))
            points += [idx.min(0), idx.max(0)]
        if not points:
            return None
        pts = np.stack(points)
        return pts.min(0), pts.max(0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.transforms.croppad.functional import crop_func

        d = dict(data)
        if not (_truthy(d.get(self.flag)) or _truthy(d.get(self.region_flag))):
            return d
        for key in self.key_iterator(d):
            image = d[key]
            bounds = self._bounds(d, image)
            if bounds is None:
                continue
            shape = np.asarray(image.shape[1:])
            if len(self.margin) != len(shape) or (self.min_size is not None and len(self.min_size) != len(shape)):
                raise LabelZooError(f"CropToPromptsd: margin {self.margin.tolist()} / min_size do not match the "
                                    f"image's {len(shape)} spatial axes")
            lo = np.clip(bounds[0] - self.margin, 0, shape)
            hi = np.clip(bounds[1] + self.margin + 1, 0, shape)
            if self.min_size is not None:  # grow to the patch size around the region, kept inside the image
                size = np.maximum(hi - lo, np.minimum(self.min_size, shape))
                lo = np.clip(lo - (size - (hi - lo)) // 2, 0, shape - size)
                hi = lo + size
            slices = (slice(None), *(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)))
            d[key] = crop_func(image, slices, False, self.get_transform_info())
            # placed before AddGuidanceSignalDeepEditd, the click maps are then made on the crop alone
            d[self.guidance] = {name: (np.asarray(pts) - lo).tolist() if len(pts) else []
                                for name, pts in ((n, _as_points(v, len(shape)))
                                                  for n, v in (d.get(self.guidance) or {}).items())}
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.transforms import BorderPad

        d = dict(data)
        for key in self.key_iterator(d):
            ops = getattr(d[key], "applied_operations", None)
            if not ops or ops[-1].get("id") != id(self):
                continue  # nothing was cropped for this request
            transform = self.pop_transform(d[key])
            pad = BorderPad(transform["extra_info"]["cropped"])
            with pad.trace_transform(False):
                d[key] = pad(d[key])
        return d


#: The key :class:`InvertToRegiond` writes the region of a cropped answer under (read by the app's writer).
REGION_KEY = "result_region_box"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def region_in_original(crop_affine: np.ndarray, crop_shape: Sequence[int], original_affine: np.ndarray,
                       original_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The voxel box ``[lo, hi]`` (inclusive) of the original image grid that a crop of the preprocessed grid covers.

    The crop's corner voxel centres are mapped to the original grid through both affines; the box is rounded
    inwards (every voxel of it lies inside the crop, so resampling needs no padding) and clipped to the image.

    Example:
        >>> lo, hi = region_in_original(np.diag([2.0, 2, 2, 1]), (4, 4, 4), np.eye(4), (20, 20, 20))
        >>> lo.tolist(), hi.tolist()
        ([0, 0, 0], [6, 6, 6])
    """
    import itertools

    size = np.asarray(crop_shape, dtype=float) - 1
    dims = len(size)
    corners = np.array(list(itertools.product(*((0.0, s) for s in size))))
    original_affine, crop_affine = np.asarray(original_affine, float), np.asarray(crop_affine, float)
    homo = _homogeneous(corners, original_affine.shape[0])
    mapped = (np.linalg.inv(original_affine) @ crop_affine @ homo.T).T[:, :dims]
    lo = np.clip(np.ceil(mapped.min(0) - 1e-3), 0, np.asarray(original_shape) - 1).astype(int)
    hi = np.clip(np.floor(mapped.max(0) + 1e-3), 0, np.asarray(original_shape) - 1).astype(int)
    return lo, np.maximum(hi, lo)


class InvertToRegiond(MapTransform):
    """``Invertd``, or, when the request asks for it, the answer on the prompt region only ("return what changed").

    With ``result_region: true`` in the request (and the image cropped to the prompts by :class:`CropToPromptsd`),
    the prediction of the crop is resampled straight onto the matching box of the original image grid
    (:func:`region_in_original`), skipping the whole-volume inversion (padding back, un-resampling and
    re-orienting every voxel: most of a large volume's latency). ``d[REGION_KEY]`` then holds ``{"min", "max",
    "shape"}`` (voxel indices of the original image, inclusive, and its shape) and the prediction's affine is
    the region's, so the written file carries its own geometry. A request that saves its label
    (``save_label``) always gets the whole volume. Otherwise it is MONAI's ``Invertd`` with the same arguments.

    Args:
        keys: the prediction key.
        transform: the preprocessing (as for ``Invertd``).
        orig_keys: the image key.
        flag: the request key that asks for a region answer.
        mode: interpolation of the region resampling (``bilinear`` for probabilities, ``nearest`` for labels).
        kwargs: the rest of ``Invertd``'s arguments.
    """

    def __init__(self, keys: KeysCollection, transform: Any, orig_keys: str = "image", flag: str = "result_region",
                 mode: str = "bilinear", allow_missing_keys: bool = False, **kwargs: Any) -> None:
        from monai.transforms import Invertd

        super().__init__(keys, allow_missing_keys)
        self.invert = Invertd(keys=keys, transform=transform, orig_keys=orig_keys,
                              allow_missing_keys=allow_missing_keys, **kwargs)
        self.orig_key, self.flag, self.mode = orig_keys, flag, mode

    def _cropped(self, image: Any) -> bool:
        ops = getattr(image, "applied_operations", None) or []
        return any(op.get("class") == CropToPromptsd.__name__ for op in ops)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.transforms import SpatialResample

        d = dict(data)
        image = d.get(self.orig_key)
        if (not _truthy(d.get(self.flag)) or _truthy(d.get("save_label")) or not isinstance(image, MetaTensor)
                or not self._cropped(image) or "original_affine" not in image.meta):
            return self.invert(d)
        original_affine = np.asarray(image.meta["original_affine"], dtype=float)
        original_shape = [int(s) for s in np.asarray(image.meta["spatial_shape"]).ravel()]
        crop_affine = np.asarray(image.affine, dtype=float)
        lo, hi = region_in_original(crop_affine, image.shape[1:], original_affine, original_shape)
        shift = np.eye(original_affine.shape[0])
        shift[:len(lo), -1] = lo
        dst_affine = original_affine @ shift
        resample = SpatialResample(mode=self.mode, padding_mode="border", dtype=torch.float32)
        for key in self.key_iterator(d):
            pred = d[key]
            pred = MetaTensor(torch.as_tensor(pred).detach().cpu().float(), affine=torch.as_tensor(crop_affine))
            with resample.trace_transform(False):
                out = resample(pred, dst_affine=torch.as_tensor(dst_affine),
                               spatial_size=(hi - lo + 1).tolist())
            d[key] = MetaTensor(torch.as_tensor(out), affine=torch.as_tensor(dst_affine))
        d[REGION_KEY] = {"min": lo.tolist(), "max": hi.tolist(), "shape": original_shape}
        return d
