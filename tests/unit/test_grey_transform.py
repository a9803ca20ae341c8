"""labelzoo.transforms.ToGrey2D(d): grey / RGB / RGBA / single-frame volumes in, one grey channel out."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from labelzoo.errors import LabelZooError
from labelzoo.transforms import LUMA_WEIGHTS, ToGrey2D, ToGrey2Dd


def _img(*shape: int, name: str = "case.png") -> MetaTensor:
    return MetaTensor(torch.rand(*shape), meta={"filename_or_obj": name})


def test_grey_passes_through_and_rgb_uses_luma():
    grey = _img(1, 5, 4)
    assert ToGrey2D()(grey) is grey
    rgb = _img(3, 5, 4)
    expected = sum(w * rgb[i] for i, w in enumerate(LUMA_WEIGHTS))
    out = ToGrey2D()(rgb)
    assert out.shape == (1, 5, 4)
    assert torch.allclose(out[0], expected)
    assert out.meta["filename_or_obj"] == "case.png"


def test_alpha_is_dropped():
    rgba = _img(4, 5, 4)
    assert torch.allclose(ToGrey2D()(rgba), ToGrey2D()(rgba[:3]))
    grey_alpha = _img(2, 5, 4)
    assert torch.equal(ToGrey2D()(grey_alpha), grey_alpha[:1])


def test_single_frame_volume_is_squeezed():
    dicom_like = _img(1, 6, 5, 1)
    assert ToGrey2D()(dicom_like).shape == (1, 6, 5)


def test_integer_rgb_keeps_values():
    rgb = MetaTensor(torch.full((3, 2, 2), 200, dtype=torch.uint8))
    assert torch.allclose(ToGrey2D()(rgb).float(), torch.full((1, 2, 2), 200.0))


@pytest.mark.parametrize(("shape", "match"), [((1, 6, 5, 3), "2D image in scan.nii.gz"),
                                               ((5, 6, 5), "scan.nii.gz, got 5 channels"),
                                               ((6, 5), "channel-first")])
def test_volumes_and_odd_channels_name_the_file(shape, match):
    with pytest.raises(LabelZooError, match=match):
        ToGrey2D()(_img(*shape, name="scan.nii.gz"))


def test_dictionary_version():
    data = {"image": _img(3, 4, 4), "label": _img(1, 4, 4), "other": 1}
    out = ToGrey2Dd(keys=["image", "label"])(data)
    assert out["image"].shape == (1, 4, 4) and out["other"] == 1
