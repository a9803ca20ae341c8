"""BraTS conventions (labelzoo.brats), the deep-supervision loss, the mirroring inferer, the BraTS sample builder."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.losses import DeepSupervisionLoss, DiceFocalLoss, DiceLoss

from labelzoo.brats import (
    EMPTY_HD95,
    BratsLabelsToRegionsd,
    BratsRegionMetric,
    RegionsToBratsLabelsd,
    labels_to_regions,
    region_dice,
    region_hd95,
    regions_to_labels,
)
from labelzoo.cli import main
from labelzoo.data import BRATS_CHANNELS, build_brats_studies, make_brats_case
from labelzoo.errors import LabelZooError
from labelzoo.inferers import MirroringInferer
from labelzoo.losses import StackedDeepSupervisionLoss

# ---------------------------------------------------------------------------------------------------------
# labels <-> regions
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("enhancing", [4, 3])
def test_labels_to_regions_nesting(enhancing: int) -> None:
    label = np.array([[[0, 1, 2, enhancing]]])  # (1, 1, 4): channel-first, one row
    regions = labels_to_regions(label[None])
    assert regions.shape == (3, 1, 1, 4)
    et, tc, wt = regions[:, 0, 0]
    assert et.tolist() == [0, 0, 0, 1]  # ET: enhancing only
    assert tc.tolist() == [0, 1, 0, 1]  # TC: enhancing + necrosis
    assert wt.tolist() == [0, 1, 1, 1]  # WT: everything but background


@pytest.mark.parametrize("enhancing", [4, 3])
def test_round_trip_torch_keeps_meta(enhancing: int) -> None:
    _, label, affine = make_brats_case(1, shape=(24, 24, 24), enhancing_label=enhancing)
    meta_label = MetaTensor(torch.as_tensor(label[None]), affine=torch.as_tensor(affine))
    regions = labels_to_regions(meta_label)
    assert isinstance(regions, MetaTensor) and torch.equal(regions.affine, meta_label.affine)
    back = regions_to_labels(regions, enhancing_label=enhancing)
    assert back.dtype == torch.uint8 and back.shape == (1, 24, 24, 24)
    assert torch.equal(back, meta_label.to(torch.uint8))


def test_regions_to_labels_paints_et_outside_tc() -> None:
    # a non-nested prediction: ET where TC and WT say nothing is still enhancing tumour
    regions = np.zeros((3, 4))
    regions[:, 0] = [1, 0, 0]
    regions[:, 1] = [0, 1, 1]
    regions[:, 2] = [0, 0, 1]
    assert regions_to_labels(regions).tolist() == [[4, 1, 2, 0]]
    assert regions_to_labels(regions, enhancing_label=3).tolist() == [[3, 1, 2, 0]]


def test_label_errors_name_the_problem() -> None:
    with pytest.raises(LabelZooError, match=r"case_7.nii.gz: label values \[5\]"):
        labels_to_regions(np.array([[0, 1, 5]]), source="case_7.nii.gz")
    with pytest.raises(LabelZooError, match="both 3 and 4"):
        labels_to_regions(np.array([[0, 3, 4]]))
    with pytest.raises(LabelZooError, match="single-channel"):
        labels_to_regions(np.zeros((2, 4, 4, 4)))
    with pytest.raises(LabelZooError, match="enhancing_label"):
        regions_to_labels(np.zeros((3, 4)), enhancing_label=2)
    with pytest.raises(LabelZooError, match="3 region channels"):
        regions_to_labels(np.zeros((2, 4)))
    with pytest.raises(LabelZooError, match="enhancing_label"):
        RegionsToBratsLabelsd(keys="pred", enhancing_label=1)


def test_dict_transforms_name_the_file() -> None:
    label = MetaTensor(torch.tensor([[[[0, 9]]]]), meta={"filename_or_obj": "/data/bad_seg.nii.gz"})
    with pytest.raises(LabelZooError, match="bad_seg.nii.gz"):
        BratsLabelsToRegionsd(keys="label")({"label": label})
    out = RegionsToBratsLabelsd(keys="pred")(BratsLabelsToRegionsd(keys="label")(
        {"label": torch.tensor([[[[0, 1, 2, 4]]]]), "pred": torch.tensor([[[[1.0]]], [[[1.0]]], [[[1.0]]]])}))
    assert out["label"].shape == (3, 1, 1, 4) and out["pred"].tolist() == [[[[4]]]]


# ---------------------------------------------------------------------------------------------------------
# metrics with the BraTS empty-region rule
# ---------------------------------------------------------------------------------------------------------


def test_region_scores_and_empty_rule() -> None:
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.zeros_like(a)
    b[3:7, 2:6, 2:6] = True
    empty = np.zeros_like(a)
    assert region_dice(a, b) == pytest.approx(2 * 48 / 128)
    assert region_dice(empty, empty) == 1.0 and region_hd95(empty, empty) == 0.0
    assert region_dice(a, empty) == 0.0 and region_hd95(a, empty) == EMPTY_HD95 == region_hd95(empty, a)
    assert region_hd95(a, a) == 0.0
    assert region_hd95(a, b) == pytest.approx(1.0)
    assert region_hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(2.0)


def test_region_metric_aggregates_per_region() -> None:
    ref = torch.zeros(2, 3, 8, 8, 8)
    ref[:, 2, 2:6, 2:6, 2:6] = 1  # only WT present in the reference
    pred = ref.clone()
    pred[1, 0, 0, 0, 0] = 1  # case 1 predicts a spurious ET voxel
    dice = BratsRegionMetric("dice", region="ET")
    dice(y_pred=pred, y=ref)
    assert dice.aggregate().item() == pytest.approx(0.5)  # case 0: both empty = 1; case 1: 0
    mean = BratsRegionMetric("dice")
    mean(y_pred=list(pred), y=list(ref))  # decollated lists, as ignite handlers pass them
    assert mean.aggregate().item() == pytest.approx((0.5 + 1 + 1) / 3)
    hd = BratsRegionMetric("hd95", region="ET")
    hd(y_pred=pred, y=ref)
    assert hd.aggregate().item() == pytest.approx(EMPTY_HD95 / 2)
    with pytest.raises(ValueError, match="metric"):
        BratsRegionMetric("jaccard")
    with pytest.raises(ValueError, match="region"):
        BratsRegionMetric("dice", region="NCR")
    with pytest.raises(ValueError, match="no results"):
        BratsRegionMetric().aggregate()


def test_metric_reads_spacing_from_the_affine() -> None:
    ref = torch.zeros(1, 3, 10, 10, 10)
    ref[:, :, 2:6, 2:6, 2:6] = 1
    pred = torch.zeros_like(ref)
    pred[:, :, 3:7, 2:6, 2:6] = 1
    affine = torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0]))
    metric = BratsRegionMetric("hd95")
    metric(y_pred=pred, y=MetaTensor(ref, affine=affine))
    assert metric.aggregate().item() == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------------------
# loss and inferer
# ---------------------------------------------------------------------------------------------------------


def test_dice_focal_with_gamma_zero_is_dice_plus_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 6)
    target = (torch.rand(2, 3, 6, 6, 6) > 0.7).float()
    ours = DiceFocalLoss(sigmoid=True, batch=True, gamma=0.0)(logits, target)
    expected = DiceLoss(sigmoid=True, batch=True)(logits, target) + torch.nn.BCEWithLogitsLoss()(logits, target)
    torch.testing.assert_close(ours, expected)


def test_stacked_deep_supervision_loss_equals_the_list_form() -> None:
    torch.manual_seed(0)
    stacked = torch.randn(2, 4, 3, 8, 8, 8)  # (B, 1 + 3 heads, C, *spatial): DynUNet's training output
    target = (torch.rand(2, 3, 8, 8, 8) > 0.5).float()
    base = DiceLoss(sigmoid=True, batch=True)
    ours = StackedDeepSupervisionLoss(base)(stacked, target)
    listed = DeepSupervisionLoss(base)(list(torch.unbind(stacked, dim=1)), target)
    torch.testing.assert_close(ours, listed)
    # eval-mode output (no extra dimension) is the plain loss
    torch.testing.assert_close(StackedDeepSupervisionLoss(base)(stacked[:, 0], target), base(stacked[:, 0], target))


def test_mirroring_inferer_averages_all_flips() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 2, 4, 5, 6)
    weight = torch.rand(1, 2, 4, 5, 6)
    net = lambda t: t * weight  # noqa: E731 (not flip-equivariant: averaging is visible)
    got = MirroringInferer(SimpleInferer(), spatial_axes=(0, 2))(x, net)
    flips = [[], [2], [4], [2, 4]]
    want = sum(torch.flip(torch.flip(x, d) * weight, d) if d else x * weight for d in flips) / 4
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(MirroringInferer(SimpleInferer(), enabled=False)(x, net), x * weight)
    with pytest.raises(ValueError, match="spatial_axes"):
        MirroringInferer(SimpleInferer(), spatial_axes=(0, 0))
    with pytest.raises(ValueError, match="do not fit"):
        MirroringInferer(SimpleInferer(), spatial_axes=(0, 3))(x, net)


# ---------------------------------------------------------------------------------------------------------
# the synthetic BraTS-like builder
# ---------------------------------------------------------------------------------------------------------


def test_brats_case_regions_are_nested_and_contrasted() -> None:
    image, label, affine = make_brats_case(5, shape=(48, 48, 40))
    assert image.shape == (48, 48, 40, 4) and image.dtype == np.float32 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1, 2, 4}
    brain = image.sum(-1) > 0
    assert not (label > 0)[~brain].any()  # tumour inside the brain; background is exactly zero
    et, tc, wt = labels_to_regions(label[None])
    assert ((et <= tc) & (tc <= wt)).all() and et.sum() > 0 and (tc - et).sum() > 0 and (wt - tc).sum() > 0
    t1, t1gd, t2, flair = (image[..., c] for c in range(4))
    assert t1gd[label == 4].mean() > t1gd[label == 2].mean()  # enhancing tumour bright on T1Gd
    assert flair[label == 2].mean() > flair[brain & (label == 0)].mean()  # oedema bright on FLAIR
    assert t1[label == 1].mean() < t1[brain & (label == 0)].mean()  # necrosis dark on T1
    np.testing.assert_array_equal(make_brats_case(5, shape=(48, 48, 40))[1], label)  # deterministic
    assert np.allclose(np.diag(affine)[:3], 1.0)


def test_brats_case_bad_arguments() -> None:
    with pytest.raises(LabelZooError, match="shape"):
        make_brats_case(0, shape=(16, 32, 32))
    with pytest.raises(LabelZooError, match="spacing"):
        make_brats_case(0, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(LabelZooError, match="enhancing_label"):
        make_brats_case(0, enhancing_label=2)


def test_build_brats_msd_layout(tmp_path) -> None:
    out = build_brats_studies(tmp_path / "brats", n_images=3, n_labeled=2, shape=(32, 32, 24), layout="msd",
                              enhancing_label=3)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["modality"] == {str(i): c for i, c in enumerate(BRATS_CHANNELS)}
    assert dataset["labels"]["3"] == "enhancing tumor" and "4" not in dataset["labels"]
    assert len(dataset["training"]) == 2 and len(dataset["test"]) == 1
    img = nib.load(out / dataset["training"][0]["image"])
    assert img.shape == (32, 32, 24, 4)
    assert set(np.unique(np.asarray(nib.load(out / dataset["training"][0]["label"]).dataobj))) <= {0, 1, 2, 3}
    with pytest.raises(LabelZooError, match="not empty"):
        build_brats_studies(out, n_images=1, n_labeled=1)


def test_cli_sample_data_kind_brats(tmp_path, capsys) -> None:
    assert main(["sample-data", str(tmp_path / "s"), "--kind", "brats", "--n_images", "2", "--n_labeled", "1",
                 "--shape", "24,24,24"]) == 0
    assert (tmp_path / "s" / "case_000.nii.gz").is_file() and (tmp_path / "s" / "labels" / "final" /
                                                                "case_000.nii.gz").is_file()
    assert nib.load(tmp_path / "s" / "case_001.nii.gz").shape == (24, 24, 24, 4)
    assert main(["sample-data", str(tmp_path / "t"), "--kind", "mri"]) == 2
    assert "--kind must be 'ct', 'brats' or 'cxr'" in capsys.readouterr().err
