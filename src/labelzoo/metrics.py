"""Segmentation metrics in physical units that bundles reference by dotted path (``labelzoo.metrics``).

One implementation of the 95th-percentile Hausdorff distance in mm for every bundle: MONAI's
``compute_hausdorff_distance`` with ``spacing=`` the voxel size of the grid the masks are on, read from the
label's MetaTensor affine (MONAI's own ``HausdorffDistance`` handler passes no spacing, so it reports voxels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.hausdorff_distance import compute_hausdorff_distance
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction


def spacing_of(y: torch.Tensor, index: int = 0) -> list[float] | None:
    """Voxel size in mm from a MetaTensor's affine (batched or not), else ``None``.

    Example:
        >>> from monai.data import MetaTensor
        >>> spacing_of(MetaTensor(torch.zeros(1, 1, 4, 4, 4), affine=torch.diag(torch.tensor([2.0, 1.0, 3.0, 1]))))
        [2.0, 1.0, 3.0]
    """
    affine = getattr(y, "affine", None)
    if not isinstance(affine, torch.Tensor):
        return None
    if affine.ndim == 3:
        affine = affine[index]
    dims = y.ndim - 2
    return [float(v) for v in torch.linalg.norm(affine[:dims, :dims].double(), dim=0)]


def hd95_mm(y_pred: torch.Tensor, y: torch.Tensor, spacing: Sequence[float] | float | None = None,
            include_background: bool = False) -> torch.Tensor:
    """(B, C) HD95 in mm of one-hot ``y_pred`` and ``y`` (B, C, *spatial); NaN where a class is empty in either.

    ``spacing``: voxel size (one per spatial axis, or one number); ``None`` reads it per case from ``y``'s
    affine (MetaTensor), falling back to 1 mm.
    """
    rows = []
    for b in range(y_pred.shape[0]):
        sp = spacing if spacing is not None else spacing_of(y, b)
        rows.append(compute_hausdorff_distance(y_pred[b:b + 1].float(), y[b:b + 1].float(),
                                               include_background=include_background, percentile=95,
                                               spacing=sp if sp is not None else 1.0))
    return torch.cat(rows, dim=0)


class HD95Metric(CumulativeIterationMetric):
    """HD95 in mm as a MONAI cumulative metric; wrap it in ``monai.handlers.IgniteMetricHandler``::

        "val_hd95": {"_target_": "IgniteMetricHandler",
                     "metric_fn": {"_target_": "labelzoo.metrics.HD95Metric"},
                     "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}

    Args:
        include_background: score channel 0 too.
        spacing: fixed voxel size in mm; ``None`` (default) reads it from the label's affine.
        reduction: MONAI reduction over cases and classes (NaN, i.e. empty, entries are skipped).
    """

    def __init__(self, include_background: bool = False, spacing: Sequence[float] | float | None = None,
                 reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.include_background = include_background
        self.spacing = spacing
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape (one-hot), got {y_pred.shape} and {y.shape}")
        return hd95_mm(y_pred, y, self.spacing, self.include_background)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("HD95Metric: nothing accumulated")
        f, _ = do_metric_reduction(data, reduction or self.reduction)
        return f
