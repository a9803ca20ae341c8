"""labelzoo.metrics: HD95 in mm from the label's affine."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from labelzoo.metrics import HD95Metric, hd95_mm


def _onehot(mask: torch.Tensor) -> torch.Tensor:
    return torch.stack([~mask, mask]).float()[None]


def test_hd95_in_mm_follows_the_spacing() -> None:
    ref = torch.zeros(20, 20, 20, dtype=torch.bool)
    ref[5:15, 5:15, 5:15] = True
    pred = torch.zeros_like(ref)
    pred[5:15, 5:15, 8:18] = True  # shifted 3 voxels along z
    affine = torch.diag(torch.tensor([1.0, 1.0, 2.5, 1.0]))
    y = MetaTensor(_onehot(ref), affine=affine)
    vox = hd95_mm(_onehot(pred), _onehot(ref), spacing=1.0)
    mm = hd95_mm(_onehot(pred), y)  # spacing read from the affine
    assert vox.shape == (1, 1) and vox.item() == pytest.approx(3.0)
    assert mm.item() == pytest.approx(7.5)
    metric = HD95Metric()
    metric(_onehot(pred), y)
    metric(_onehot(ref), y)
    assert metric.aggregate().item() == pytest.approx(7.5 / 2)
    with pytest.raises(ValueError, match="same shape"):
        metric(_onehot(pred)[:, :1], y)
