"""The pure planner on synthetic fingerprints: no files, no GPU."""

from __future__ import annotations

import numpy as np
import pytest

from labelzoo.errors import LabelZooError
from labelzoo.planning import rules
from labelzoo.planning.planner import ExperimentPlanner


def fingerprint(spacings, shapes, channels=None, n_labels=2, relative_size=1.0) -> dict:
    channels = channels or {"0": "CT"}
    return {
        "format": "labelzoo-fingerprint/1", "dataset_name": "synthetic", "channel_names": channels,
        "labels": {str(i): f"c{i}" for i in range(n_labels)}, "num_training": len(spacings),
        "spacings": [list(map(float, s)) for s in spacings], "shapes_after_crop": [list(s) for s in shapes],
        "median_relative_size_after_cropping": relative_size,
        "foreground_intensity_properties_per_channel": {
            c: {"mean": 80.0, "std": 40.0, "percentile_00_5": -20.0, "percentile_99_5": 250.0} for c in channels},
    }


def test_anisotropic_ct_thick_axis_uses_10th_percentile() -> None:
    # 20 cases at 0.7 mm in-plane, slices 5 mm in most cases, 1.5-2.5 mm in a few; few slices.
    rng = np.random.default_rng(0)
    thick = [5.0] * 14 + [1.5, 2.0, 2.5, 2.5, 3.0, 3.0]
    spacings = [[0.7, 0.7, t] for t in thick]
    shapes = [[512, 512, int(rng.integers(30, 50))] for _ in thick]
    plans = ExperimentPlanner().plan(fingerprint(spacings, shapes))
    target = plans["fullres_target_spacing"]
    assert target[:2] == [0.7, 0.7]
    assert target[2] == pytest.approx(np.percentile(thick, 10))  # not the 5 mm median
    assert plans["slice_axis"] == 2 and plans["configurations"]["2d"]["slice_axis"] == 2
    full = plans["configurations"]["3d_fullres"]
    # kernels along the thick axis start at 1 and become 3 only once in-plane pooling catches up
    assert full["kernel_sizes"][0] == [3, 3, 1]
    assert full["strides"][1] == [2, 2, 1]
    norm = plans["normalization"][0]
    assert norm["scheme"] == "CTNormalization" and norm["use_mask"] is False
    assert (norm["clip_low"], norm["clip_high"], norm["mean"], norm["std"]) == (-20.0, 250.0, 80.0, 40.0)
    # 512x512 slices: the fullres patch covers < 25% of the median image -> lowres + cascade
    assert {"3d_lowres", "3d_cascade_fullres"} <= set(plans["configurations"])
    low = plans["configurations"]["3d_lowres"]
    assert all(lo >= fu for lo, fu in zip(low["spacing"], full["spacing"], strict=True))
    assert plans["configurations"]["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    assert low["next_stage"] == "3d_cascade_fullres"


def test_anisotropy_rule_needs_few_voxels_too() -> None:
    # thick spacing but as many voxels along that axis: the median stays
    spacings = [[0.5, 0.5, 5.0]] * 5 + [[0.5, 0.5, 2.0]] * 5
    assert rules.fullres_target_spacing(spacings, [[100, 100, 100]] * 10)[2] == pytest.approx(3.5)


def test_isotropic_mri_four_channels() -> None:
    ch = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    fp = fingerprint([[1.0, 1.0, 1.0]] * 30, [[140, 170, 140]] * 30, channels=ch, n_labels=4, relative_size=0.6)
    plans = ExperimentPlanner().plan(fp)
    assert [n["scheme"] for n in plans["normalization"]] == ["ZScoreNormalization"] * 4
    assert all(n["use_mask"] for n in plans["normalization"])  # cropping removed > 25% (BraTS-like)
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [1.0, 1.0, 1.0] and full["batch_size"] == 2
    assert all(k == [3, 3, 3] for k in full["kernel_sizes"])
    assert full["features_per_stage"][0] == 32 and max(full["features_per_stage"]) == 320
    assert full["features_per_stage"] == sorted(full["features_per_stage"])
    assert "3d_lowres" not in plans["configurations"]
    # without heavy cropping no mask is used
    plans = ExperimentPlanner().plan({**fp, "median_relative_size_after_cropping": 0.9})
    assert not any(n["use_mask"] for n in plans["normalization"])


def test_tiny_volumes_patch_is_median_shape_and_batch_capped() -> None:
    fp = fingerprint([[1.5, 1.5, 2.0]] * 3, [[48, 48, 32]] * 3, n_labels=4)
    full = ExperimentPlanner().plan(fp)["configurations"]["3d_fullres"]
    assert full["patch_size"] == [48, 48, 32]
    assert full["batch_size"] == 2  # 5% of 3 tiny cases is < 1 patch; never below 2
    # bottleneck edges stay >= 4 voxels
    size = np.array(full["patch_size"])
    for s in full["strides"]:
        size = size // np.array(s)
    assert size.min() >= 4


def test_two_d_only_data() -> None:
    fp = fingerprint([[0.5, 0.5, 999.0]] * 40, [[256, 320, 1]] * 40, channels={"0": "XR"})
    plans = ExperimentPlanner().plan(fp)
    assert list(plans["configurations"]) == ["2d"] and plans["is_3d"] is False
    c = plans["configurations"]["2d"]
    assert c["spatial_dims"] == 2 and c["slice_axis"] == 2 and c["patch_size"] == [256, 320]
    assert max(c["features_per_stage"]) <= 512 and c["batch_size"] >= 2


def test_few_versus_many_cases_batch_cap() -> None:
    shape = [[64, 64, 48]]
    few = ExperimentPlanner().plan(fingerprint([[1.0] * 3] * 4, shape * 4))["configurations"]["2d"]
    many = ExperimentPlanner().plan(fingerprint([[1.0] * 3] * 400, shape * 400))["configurations"]["2d"]
    assert few["patch_size"] == many["patch_size"] == [64, 64]
    # few cases: 5% of the dataset (4 * 64*64*48 voxels) / 64^2 = 9.6 -> 10 slices per step
    assert few["batch_size"] == 10
    assert many["batch_size"] > few["batch_size"]


def test_gpu_budget_is_a_parameter() -> None:
    fp = fingerprint([[0.8, 0.8, 0.8]] * 50, [[300, 300, 300]] * 50)
    small = ExperimentPlanner(gpu_memory_gb=4).plan(fp)["configurations"]["3d_fullres"]
    big = ExperimentPlanner(gpu_memory_gb=40).plan(fp)["configurations"]["3d_fullres"]
    assert np.prod(small["patch_size"]) < np.prod(big["patch_size"]) or small["batch_size"] < big["batch_size"]
    for c in (small, big):
        assert c["estimated_feature_map_voxels"] / 2 * 2 <= c["feature_map_budget"]
    with pytest.raises(LabelZooError, match="gpu_memory_gb"):
        ExperimentPlanner(gpu_memory_gb=0)


def test_constants_are_retunable_by_subclass() -> None:
    class Wider(ExperimentPlanner):
        UNet_base_num_features = 16
        UNet_max_features_3d = 64

    c = Wider().plan(fingerprint([[1.0] * 3] * 10, [[96, 96, 96]] * 10))["configurations"]["3d_fullres"]
    assert c["features_per_stage"][0] == 16 and max(c["features_per_stage"]) == 64


def test_reproduces_nnunet_v2_heart_plan() -> None:
    # MSD Task02 Heart as nnU-Net v2 fingerprints it (z, y, x): its published plans are
    # 3d_fullres patch [80, 192, 160], batch 2, 6 stages; 2d patch [320, 256], batch 40.
    fp = fingerprint([[1.37, 1.25, 1.25]] * 20, [[115, 320, 232]] * 20, channels={"0": "MRI"})
    plans = ExperimentPlanner().plan(fp)["configurations"]
    assert plans["3d_fullres"]["patch_size"] == [80, 192, 160] and plans["3d_fullres"]["batch_size"] == 2
    assert len(plans["3d_fullres"]["strides"]) == 6
    assert plans["2d"]["patch_size"] == [320, 256] and plans["2d"]["batch_size"] == 40


def test_estimate_matches_dynunet_feature_maps() -> None:
    """The static count equals the conv outputs MONAI's DynUNet really produces (counted on CPU)."""
    import torch
    from monai.networks.nets import DynUNet

    fp = fingerprint([[1.0, 1.0, 2.0]] * 5, [[40, 48, 24]] * 5, n_labels=3)
    c = ExperimentPlanner().plan(fp)["configurations"]["3d_fullres"]
    net = DynUNet(3, 1, 3, c["kernel_sizes"], c["strides"], c["strides"][1:], filters=c["features_per_stage"])
    total = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: total.append(o.numel())) for m in net.modules()
             if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, *c["patch_size"]))
    for h in hooks:
        h.remove()
    assert sum(total) == c["estimated_feature_map_voxels"]


def test_pool_and_conv_props_examples() -> None:
    num_pool, strides, kernels, patch, div = rules.pool_and_conv_props([1.0, 1.0, 1.0], [128, 128, 128])
    assert num_pool == [5, 5, 5] and len(strides) == 6 and patch == [128, 128, 128] and div == [32, 32, 32]
    assert rules.pad_shape([47.5, 33, 32], [16, 16, 16]) == [48, 48, 32]
    assert rules.compute_new_shape([10, 10], [1.0, 2.0], [2.0, 2.0]) == [5, 10]


def test_bad_fingerprint() -> None:
    fp = fingerprint([[1.0, 1.0]], [[10, 10]])
    with pytest.raises(LabelZooError, match="spacings"):
        ExperimentPlanner().plan(fp)


def test_patch_shrink_ties_break_in_nnunet_order_prostate() -> None:
    # MSD Prostate-like: 0.625 x 0.625 x 3.6 mm, median 320 x 320 x 20 (x, y, z). Once z is reduced, x and y
    # tie; nnU-Net's argsort over its (z, y, x) axes shrinks x and plans (z, y, x) 20 x 320 x 256, which keeps
    # the 20-slice median depth. Ties broken in file order gave 320 x 320 x 16.
    fp = fingerprint([[0.625, 0.625, 3.6]] * 32, [[320, 320, 20]] * 32, channels={"0": "T2", "1": "ADC"},
                     n_labels=3)
    plans = ExperimentPlanner().plan(fp)["configurations"]
    assert plans["3d_fullres"]["patch_size"] == [256, 320, 20] and plans["3d_fullres"]["batch_size"] == 2
    # the same geometry written in nnU-Net's own (z, y, x) order, planned with nnU-Net's plain argsort order
    nn = ExperimentPlanner().configuration([3.6, 0.625, 0.625], [20.0, 320.0, 320.0], 32 * 320 * 320 * 20, 3,
                                           axis_order=[0, 1, 2])
    assert nn["patch_size"][::-1] == plans["3d_fullres"]["patch_size"]


def test_patch_shrink_ties_break_in_nnunet_order_2d() -> None:
    # Square 2048^2 X-rays: x and y tie at every other step; nnU-Net's 2D axes are (y, x), so x shrinks first.
    plans = ExperimentPlanner().plan(fingerprint([[0.5, 0.5, 999.0]] * 40, [[2048, 2048, 1]] * 40))
    c = plans["configurations"]["2d"]
    assert c["patch_size"] == [1024, 1280]
    nn = ExperimentPlanner().configuration([0.5, 0.5], [2048.0, 2048.0], 40 * 2048 * 2048, 2, axis_order=[0, 1])
    assert nn["patch_size"][::-1] == c["patch_size"]


def test_nnunet_axis_order() -> None:
    assert rules.nnunet_axis_order(2) == [2, 1, 0]  # slices along z: nnU-Net's (z, y, x)
    assert rules.nnunet_axis_order(0) == [0, 2, 1]  # coarsest x moved first, then z, y
    assert rules.nnunet_axis_order(1, ndim=2) == [2, 0]
    assert rules.axis_to_shrink([2, 2, 1], [1, 1, 1], [2, 1, 0]) == 0
    assert rules.axis_to_shrink([2, 2, 1], [1, 1, 1], [0, 1, 2]) == 1
    with pytest.raises(ValueError, match="permutation"):
        rules.axis_to_shrink([1, 1], [1, 1], [0, 0])
