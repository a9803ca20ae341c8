"""BraTS conventions: label maps <-> overlapping tumour regions, and the challenge's region metrics.

BraTS label maps (2021 and earlier): 0 background, 1 necrotic / non-enhancing tumour core (NCR), 2 peritumoral
oedema (ED), 4 GD-enhancing tumour (ET). BraTS 2023 and later number the enhancing tumour 3. Methods since
nnU-Net's BraTS 2020 entry train on three nested *regions* with sigmoid outputs instead:

=====  =====================================  ======================
index  region                                 labels (2021 / 2023+)
=====  =====================================  ======================
0      ET, enhancing tumour                   4 / 3
1      TC, tumour core = ET + necrosis        1, 4 / 1, 3
2      WT, whole tumour = TC + oedema         1, 2, 4 / 1, 2, 3
=====  =====================================  ======================

MONAI's ``ConvertToMultiChannelBasedOnBratsClassesd`` does not fit: it orders the channels TC, WT, ET and
knows only label 4, so BraTS 2023 labels would lose their enhancing tumour. :class:`BratsLabelsToRegionsd`
accepts both numberings (3 and 4 are both enhancing; a map holding both is rejected) and
:class:`RegionsToBratsLabelsd` writes the numbering chosen with ``enhancing_label``.

Metrics follow the BraTS evaluation: Dice and the 95th-percentile Hausdorff distance per region; a region
empty in both reference and prediction scores Dice 1 and HD95 0 mm, one empty in only one of them Dice 0
and HD95 :data:`EMPTY_HD95` (373.13 mm, the challenge's value: the diagonal of a 240x240x155 mm volume).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.metrics import CumulativeIterationMetric
from monai.metrics.hausdorff_distance import compute_hausdorff_distance
from monai.metrics.utils import do_metric_reduction
from monai.transforms import MapTransform

from labelzoo.data.brats import BRATS_LABELS, ENHANCING_LABELS
from labelzoo.errors import LabelZooError
from labelzoo.metrics import spacing_of

__all__ = ["BRATS_LABELS", "EMPTY_HD95", "ENHANCING_LABELS", "REGIONS", "BratsLabelsToRegionsd", "BratsRegionMetric",
           "RegionsToBratsLabelsd", "labels_to_regions", "region_dice", "region_hd95", "regions_to_labels"]

#: Region names in channel order of the networks' outputs.
REGIONS: tuple[str, ...] = ("ET", "TC", "WT")
#: HD95 (mm) the BraTS evaluation gives a region present in only one of reference and prediction.
EMPTY_HD95: float = 373.13

Array = np.ndarray | torch.Tensor


def _isin(x: Array, values: Sequence[int]) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.isin(x, torch.as_tensor(values, device=x.device, dtype=x.dtype))
    return np.isin(x, values)


def _unique(x: Array) -> list[int]:
    if isinstance(x, torch.Tensor):
        return [int(v) for v in torch.unique(x.detach()).tolist()]
    return [int(v) for v in np.unique(x)]


def labels_to_regions(label: Array, source: str = "label") -> Array:
    """BraTS label map ``(1, *spatial)`` or ``(*spatial)`` to float regions ``(3, *spatial)``: ET, TC, WT.

    Args:
        label: the label map (numpy or torch; a MetaTensor keeps its meta data).
        source: what to call the map in error messages (a file name).

    Raises:
        LabelZooError: on values other than 0, 1, 2, 3, 4, on both 3 and 4 in one map, or on several channels.

    Example:
        >>> labels_to_regions(np.array([[0, 1, 2, 4]]))[:, 0].tolist()
        [[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    """
    if label.ndim >= 3 and label.shape[0] == 1:
        label = label[0]
    elif label.ndim == 4:
        raise LabelZooError(f"{source}: expected a single-channel BraTS label map, got shape {tuple(label.shape)}")
    values = _unique(label)
    unknown = [v for v in values if v not in (0, 1, 2, 3, 4)]
    if unknown:
        raise LabelZooError(
            f"{source}: label values {unknown} are not BraTS labels: expected 0 background, 1 necrosis, 2 oedema, "
            f"4 (BraTS 2021) or 3 (BraTS 2023+) enhancing tumour"
        )
    if 3 in values and 4 in values:
        raise LabelZooError(
            f"{source}: holds both 3 and 4: BraTS 2021 numbers the enhancing tumour 4, BraTS 2023+ numbers it 3; "
            f"one map must use one convention"
        )
    et = _isin(label, ENHANCING_LABELS)
    tc = et | (label == 1)
    wt = tc | (label == 2)
    if isinstance(label, torch.Tensor):
        return torch.stack([et, tc, wt]).float()
    return np.stack([et, tc, wt]).astype(np.float32)


def regions_to_labels(regions: Array, enhancing_label: int = 4) -> Array:
    """Binary regions ``(3, *spatial)`` (ET, TC, WT) to a BraTS label map ``(1, *spatial)`` (uint8).

    Nested painting, as nnU-Net's BraTS conversion: WT -> 2 (oedema), TC -> 1 (necrosis), ET -> ``enhancing_label``,
    each overwriting the previous, so an ET voxel outside the predicted TC is still enhancing tumour.

    Args:
        regions: binary (0/1 or bool) regions; thresholded sigmoid outputs.
        enhancing_label: 4 (BraTS 2021) or 3 (BraTS 2023+).

    Raises:
        LabelZooError: on a number of channels other than 3 or an ``enhancing_label`` other than 3 or 4.

    Example:
        >>> regions_to_labels(np.array([[0, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 1]])).tolist()
        [[0, 1, 2, 4]]
    """
    if enhancing_label not in ENHANCING_LABELS:
        raise LabelZooError(f"enhancing_label must be 4 (BraTS 2021) or 3 (BraTS 2023+), got {enhancing_label!r}")
    if regions.shape[0] != len(REGIONS):
        raise LabelZooError(f"expected {len(REGIONS)} region channels (ET, TC, WT), got shape {tuple(regions.shape)}")
    et, tc, wt = (regions[i : i + 1] > 0.5 for i in range(3))
    if isinstance(regions, torch.Tensor):
        out = torch.zeros_like(regions[:1], dtype=torch.uint8)
    else:
        out = np.zeros(regions[:1].shape, dtype=np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = enhancing_label
    return out


class BratsLabelsToRegionsd(MapTransform):
    """Dictionary transform: BraTS label map to ET / TC / WT region channels (see :func:`labels_to_regions`)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = getattr(d[key], "meta", {}) or {}
            source = str(meta.get("filename_or_obj") or key)
            d[key] = labels_to_regions(d[key], source=source)
        return d


class RegionsToBratsLabelsd(MapTransform):
    """Dictionary transform: binary ET / TC / WT regions to a BraTS label map (see :func:`regions_to_labels`).

    Args:
        keys: keys of the region tensors.
        enhancing_label: label value written for the enhancing tumour: 4 (BraTS 2021) or 3 (BraTS 2023+).
        allow_missing_keys: do not raise for missing keys.
    """

    def __init__(self, keys: KeysCollection, enhancing_label: int = 4, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if enhancing_label not in ENHANCING_LABELS:
            raise LabelZooError(f"enhancing_label must be 4 (BraTS 2021) or 3 (BraTS 2023+), got {enhancing_label!r}")
        self.enhancing_label = enhancing_label

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = regions_to_labels(d[key], self.enhancing_label)
        return d


_spacing_of = spacing_of  # one reading of the voxel size for every HD95 (labelzoo.metrics)


def region_dice(pred: Array, ref: Array) -> float:
    """Dice of two binary masks, 1.0 when both are empty (BraTS rule)."""
    p, r = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    total = int(p.sum()) + int(r.sum())
    return 1.0 if total == 0 else 2.0 * int((p & r).sum()) / total


def region_hd95(pred: Array, ref: Array, spacing: Sequence[float] | float | None = None) -> float:
    """95th-percentile Hausdorff distance (mm) of two binary masks with the BraTS rule for empty masks."""
    p, r = torch.as_tensor(np.asarray(pred, dtype=bool)), torch.as_tensor(np.asarray(ref, dtype=bool))
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return EMPTY_HD95
    value = compute_hausdorff_distance(p[None, None].float(), r[None, None].float(), include_background=True,
                                       percentile=95, spacing=spacing)
    return float(value.reshape(-1)[0])


class BratsRegionMetric(CumulativeIterationMetric):
    """Dice or HD95 per BraTS region with the challenge's empty-region rule, as a MONAI cumulative metric.

    ``y_pred`` and ``y`` are binary ``(B, 3, *spatial)`` regions (ET, TC, WT), e.g. thresholded sigmoid outputs
    and :class:`BratsLabelsToRegionsd` labels. Each call adds ``(B, 3)`` scores; :meth:`aggregate` returns the
    mean over cases of one region (``region="ET"``) or of the mean over regions (``region=None``), so one
    instance feeds one ignite metric handler (``monai.handlers.IgniteMetricHandler``).

    Args:
        metric: ``"dice"`` or ``"hd95"``.
        region: ``"ET"``, ``"TC"``, ``"WT"`` or ``None`` for the mean of the three.
        spacing: voxel size in mm for HD95; ``None`` reads it from ``y``'s affine (MetaTensor), else 1 mm.

    Raises:
        ValueError: on an unknown ``metric`` or ``region``.
    """

    def __init__(self, metric: str = "dice", region: str | None = None,
                 spacing: Sequence[float] | float | None = None) -> None:
        super().__init__()
        if metric not in ("dice", "hd95"):
            raise ValueError(f"metric must be 'dice' or 'hd95', got {metric!r}")
        if region is not None and region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS} or None, got {region!r}")
        self.metric = metric
        self.region = region
        self.spacing = spacing

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if y_pred.shape != y.shape or y_pred.ndim < 4 or y_pred.shape[1] != len(REGIONS):
            raise ValueError(f"expected y_pred and y of shape (B, 3, *spatial), got {tuple(y_pred.shape)} and "
                             f"{tuple(y.shape)}")
        pred = y_pred.detach().cpu().numpy() > 0.5
        ref = y.detach().cpu().numpy() > 0.5
        scores = torch.zeros(y.shape[0], len(REGIONS), dtype=torch.float32)
        for b in range(y.shape[0]):
            spacing = self.spacing if self.spacing is not None else _spacing_of(y, b)
            for c in range(len(REGIONS)):
                if self.metric == "dice":
                    scores[b, c] = region_dice(pred[b, c], ref[b, c])
                else:
                    scores[b, c] = region_hd95(pred[b, c], ref[b, c], spacing)
        return scores

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("BratsRegionMetric has no results: call it on predictions first")
        per_region, _ = do_metric_reduction(data, "mean_batch")
        if self.region is None:
            return per_region.mean()
        return per_region[REGIONS.index(self.region)]
