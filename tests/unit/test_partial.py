"""Partial (slice-level) annotation and the one label mapping: pure functions, the masked loss, a planned bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from labelzoo.errors import LabelZooError
from labelzoo.losses import MaskedDiceCELoss
from labelzoo.partial import (
    IGNORE_VALUE,
    check_annotated_slices,
    identity_label_maps,
    mask_unannotated,
    masked_loss_config,
    partial_label,
    slice_mask,
    slices_to_grid,
    top_slices,
)
from labelzoo.simulate.loop import annotate, n_trainings
from labelzoo.simulate.report import summarize


def test_slices_to_grid_and_top_slices() -> None:
    assert slices_to_grid([0.1, 0.9], 4) == [0.1, 0.1, 0.9, 0.9]
    assert slices_to_grid([0.1, 0.5, 0.9, 0.2], 2) == [0.5, 0.2]  # centre of each image slice
    with pytest.raises(ValueError):
        slices_to_grid([], 3)
    scores = [0.0, 0.9, 0.8, 0.7, 0.1, 0.6]
    assert top_slices(scores, 2) == [1, 2]
    assert top_slices(scores, 2, min_gap=2) == [1, 3]  # 2 is next to 1
    assert top_slices(scores, 3, min_gap=5) == [1, 2, 3]  # too little room: filled by score
    assert top_slices([0.5, 0.5, 0.5], 5) == [0, 1, 2]
    with pytest.raises(ValueError):
        top_slices(scores, 0)


def test_check_annotated_slices_names_the_field() -> None:
    assert check_annotated_slices({"axis": 2, "slices": [5, 1]}, (4, 4, 8)) == (2, [1, 5])
    assert check_annotated_slices({"slices": [0]}, (4, 4, 8)) == (2, [0])  # default: the last axis
    assert check_annotated_slices({"axis": -1, "slices": [7]}, (4, 4, 8)) == (2, [7])
    for bad, match in [([1], "must be an object"), ({"axis": 3, "slices": [0]}, "axis"),
                       ({"axis": 2, "slices": [8]}, "0 to 7"), ({"axis": 2, "slices": []}, "non-empty"),
                       ({"axis": 2, "slices": [1, 1]}, "duplicates"), ({"axis": 2, "slices": ["$x"]}, "slice indices"),
                       ({"axis": True, "slices": [0]}, "axis"), ({"slices": [0], "_target_": "x"}, "object")]:
        with pytest.raises(LabelZooError, match=match):
            check_annotated_slices(bad, (4, 4, 8), "label")


def test_partial_labels_and_their_training_copy() -> None:
    truth = np.zeros((3, 3, 4), dtype=np.int64)
    truth[1, 1, :] = 2
    submitted = partial_label(truth, 2, [1, 3])
    assert submitted[1, 1].tolist() == [0, 2, 0, 2]
    train = mask_unannotated(submitted, 2, [1, 3])
    assert train[1, 1].tolist() == [IGNORE_VALUE, 2, IGNORE_VALUE, 2] and train.dtype == np.uint8
    assert int(slice_mask(truth.shape, 0, [0]).sum()) == 12


def test_masked_loss_equals_dicece_without_ignored_voxels_and_ignores_them() -> None:
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 6, 6, 4)
    target = torch.randint(0, 3, (2, 1, 6, 6, 4)).float()
    ref = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)(pred, target)
    ours = MaskedDiceCELoss(to_onehot_y=True, softmax=True, include_background=False)(pred, target)
    assert float(ours) == pytest.approx(float(ref), rel=1e-4)
    # whatever the ignored voxels' predictions are, the loss is the same
    masked = target.clone()
    masked[..., 2:] = IGNORE_VALUE
    other = pred.clone()
    other[..., 2:] = torch.randn_like(other[..., 2:]) * 10
    loss = MaskedDiceCELoss(batch=True)
    assert float(loss(pred, masked)) == pytest.approx(float(loss(other, masked)), rel=1e-5)
    assert float(loss(pred, masked)) != pytest.approx(float(loss(pred, target)), rel=1e-3)
    # stacked deep-supervision output (B, 1 + k, C, ...): heads weighted 1, 1/2
    stacked = torch.stack([pred, other], dim=1)
    expect = (loss(pred, masked) + 0.5 * loss(other, masked)) / 1.5
    assert float(loss(stacked, masked)) == pytest.approx(float(expect), rel=1e-5)
    with pytest.raises(ValueError, match="unsupported"):
        MaskedDiceCELoss(sigmoid=True)


def test_masked_loss_config_replaces_dice_ce_only() -> None:
    cfg = masked_loss_config({"_target_": "labelzoo.planning.transforms.DeepSupervisionDiceCELoss",
                              "to_onehot_y": True, "softmax": True, "batch": True, "include_background": False})
    assert cfg["_target_"] == "labelzoo.losses.MaskedDiceCELoss" and cfg["batch"] and cfg["ignore_value"] == 255
    MaskedDiceCELoss(**{k: v for k, v in cfg.items() if k != "_target_"})
    inner = masked_loss_config({"_target_": "DeepSupervisionLoss", "loss": {"_target_": "DiceCELoss", "batch": True}})
    assert inner["batch"] is True
    with pytest.raises(LabelZooError, match="DiceFocalLoss"):
        masked_loss_config({"_target_": "DiceFocalLoss"})


def test_annotate_counts_effort_on_the_asked_slices_only() -> None:
    truth = np.zeros((4, 4, 10), dtype=np.int64)
    truth[1:3, 1:3, :] = 1
    suggestion = np.zeros_like(truth)
    whole = annotate(truth, suggestion, [1], {"id": "a"})
    assert whole["voxels_changed"] == 40 and whole["annotated_slices"] == 10 and whole["params"] == {}
    part = annotate(truth, suggestion, [1], {"id": "a", "partial": True, "slice_axis": 2, "slices": [0, 5]})
    assert part["voxels_changed"] == 8 and part["annotated_slices"] == 2 and part["annotated_voxels"] == 32
    assert part["params"] == {"annotated_slices": {"axis": 2, "slices": [0, 5]}}
    assert int(part["label"].sum()) == 8
    with pytest.raises(LabelZooError, match="unusable"):
        annotate(truth, suggestion, [1], {"id": "a", "partial": True, "slice_axis": 2, "slices": [10]})
    assert n_trainings(2, 8, 3) == 3 and n_trainings(1, 3, 2) == 2 and n_trainings(2, 2, 3) == 1


def test_summary_takes_the_target_from_the_full_data_reference() -> None:
    def run(strategy: str, dice: list[tuple[int, int, float]]) -> list[dict]:
        return [{"strategy": strategy, "round": i, "labels": n, "cum_annotated_slices": sl, "test_dice": d}
                for i, (n, sl, d) in enumerate(dice)]

    runs = {("full", 0): run("full", [(10, 320, 0.8)]), ("full", 1): run("full", [(10, 320, 0.6)]),
            ("boundary_slices", 0): run("boundary_slices", [(2, 64, 0.2), (5, 73, 0.67)]),
            ("random", 0): run("random", [(2, 64, 0.2), (5, 160, 0.5)])}
    s = summarize(runs)
    assert s["reference_dice"] == pytest.approx(0.7) and "full data" in s["reference_source"]
    assert "full" not in s["strategies"]
    b = s["strategies"]["boundary_slices"]
    assert b["labels_to_target"]["mean"] == 5 and b["slices_to_target"]["mean"] == 73
    assert s["strategies"]["random"]["reached"] == "0/1"


@pytest.fixture(scope="module")
def planned_train_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    import json

    from labelzoo.data import build_sample_studies
    from labelzoo.planning.emit import emit_bundles
    from labelzoo.planning.fingerprint import extract_fingerprint
    from labelzoo.planning.planner import ExperimentPlanner

    root = tmp_path_factory.mktemp("planned")
    data = build_sample_studies(root / "msd", n_images=2, n_labeled=2, shape=(24, 24, 16), seed=1, layout="msd")
    fp = extract_fingerprint(data)
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, root / "planned", data, configurations=["3d_fullres"])
    return bundle, json.loads((bundle / "configs" / "train.json").read_text())


def test_training_from_the_app_keeps_model_values(planned_train_config: tuple[Path, dict], tmp_path: Path) -> None:
    """A bundle planned on labels (1, 3, 6) predicts 1, 2, 3; the app stores labels in 1, 2, 3. Trained through its
    own map, a liver label (3) would become left kidney (2); with the app's overrides it stays 3."""
    import copy

    import nibabel as nib
    from monai.bundle import ConfigParser

    bundle, config = planned_train_config
    overrides = identity_label_maps(config)
    assert overrides and all(k.endswith("#orig_labels") for k in overrides)
    assert list(overrides.values())[0] == [0, 1, 2, 3]
    image = np.random.RandomState(0).rand(24, 24, 16).astype(np.float32) * 100
    label = np.zeros((24, 24, 16), dtype=np.uint8)
    label[2:8, 2:8, 2:8], label[10:16, 10:16, 4:10], label[16:22, 2:8, 8:14] = 1, 2, 3  # model values
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    nib.save(nib.Nifti1Image(image, affine), str(tmp_path / "i.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "l.nii.gz"))
    item = {"image": str(tmp_path / "i.nii.gz"), "label": str(tmp_path / "l.nii.gz")}

    def values(extra: dict) -> set[int]:
        parser = ConfigParser(copy.deepcopy(config))
        parser["bundle_root"] = str(bundle)
        parser.update(extra)
        out = parser.get_parsed_content("validate#preprocessing")(item)
        return set(np.unique(np.rint(np.asarray(out["label"]))).astype(int).tolist())

    assert values({}) == {0, 1, 2}  # the bug: 3 (liver) mapped as a dataset value to 2, 2 left unmapped
    assert values(overrides) == {0, 1, 2, 3}
    # a partial label's unannotated voxels (255) pass the planned training pipeline, rotation and scaling (one-hot
    # linear label resampling) forced on
    label[:, :, 12:] = IGNORE_VALUE
    nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "p.nii.gz"))
    forced = {f"train#random_transforms#{j}#prob": 1.0 for j, t in enumerate(config["train"]["random_transforms"])
              if t["_target_"] in ("RandRotated", "RandZoomd")}
    assert len(forced) == 2
    parser = ConfigParser(copy.deepcopy(config))
    parser["bundle_root"] = str(bundle)
    parser.update({**overrides, **forced})
    out = parser.get_parsed_content("train#preprocessing")({**item, "label": str(tmp_path / "p.nii.gz")})
    out = out[0] if isinstance(out, list) else out
    assert out["label"].shape[0] == 1 and IGNORE_VALUE in set(np.unique(np.asarray(out["label"])).astype(int))
    assert set(out) == {"image", "label"}  # nothing of the label's values left for the collate
    assert identity_label_maps({"train": {"x": [{"_target_": "MapLabelValued", "orig_labels": [1],
                                                 "target_labels": [1]}]}}) == {}
    with pytest.raises(LabelZooError, match="target_labels"):
        identity_label_maps({"train": {"_target_": "MapLabelValued", "target_labels": "@x"}})
