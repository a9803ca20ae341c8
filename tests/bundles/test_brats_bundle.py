"""The BraTS axial-attention bundle: its paper and baseline networks, and the baseline variant's real run.

``tests/bundles/test_verify.py`` verifies every bundle (the paper variant included) with a real 1-epoch run;
here the ablation baseline (``configs/baseline.json``) gets the same real run, and the outputs are checked
for the BraTS label convention.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import DynUNet

from labelzoo.bundle.verify import format_report, verify_bundle
from labelzoo.networks import AxialAttention, AxialDynUNet

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "brats_mri_axialattention_segmentation"


def network(*files: str, overrides: dict | None = None, config: str = "train.json") -> AxialDynUNet:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / config)] + [str(BUNDLE / "configs" / f) for f in files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def test_train_config_builds_the_paper_network() -> None:
    net = network()
    assert isinstance(net, AxialDynUNet) and net.deep_supervision and net.deep_supr_num == 3
    assert net.encoder_filters == [64, 128, 256, 512, 512, 512]
    assert net.decoder_filters == [32, 64, 128, 256, 320, 320]
    assert [net.attention_shape(level) for level in range(5)] == [None, (4, 16), (8, 32), (16, 64), (32, 128)]
    assert {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__} == {"GroupNorm"}
    # inference.json: the same network without deep-supervision outputs, and the same state dict
    infer = network(config="inference.json")
    assert not infer.deep_supervision
    infer.load_state_dict(net.state_dict(), strict=True)


def test_baseline_override_is_monais_plain_dynunet() -> None:
    torch.manual_seed(0)
    base = network("baseline.json").eval()
    assert not any(isinstance(m, AxialAttention) for m in base.modules())
    assert base.encoder_filters == base.decoder_filters == [32, 64, 128, 256, 320, 320]
    assert {type(m).__name__ for m in base.modules() if "Norm" in type(m).__name__} == {"BatchNorm3d"}
    plain = DynUNet(3, 4, 3, kernel_size=[3] * 6, strides=[1, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 5,
                    filters=[32, 64, 128, 256, 320, 320], norm_name=("BATCH", {"affine": True}),
                    deep_supervision=True, deep_supr_num=3).eval()
    plain.load_state_dict(base.state_dict(), strict=True)  # same modules, same names
    x = torch.rand(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), base(x))


def test_baseline_variant_verifies_and_writes_brats_labels(tmp_path: Path) -> None:
    problems = verify_bundle(BUNDLE, run=True, variant="configs/baseline.json", workdir=tmp_path)
    assert problems == [], format_report(BUNDLE.name, problems)
    smoke = tmp_path / "smoke"
    # the run really used the baseline network (the smoke overrides do not touch the variant's ids)
    overrides = json.loads((smoke / "overrides" / "train.json").read_text())
    assert overrides["network_def#attention_levels"] == 0 and overrides["network_def#norm_name"][0] == "BATCH"
    # inference: one BraTS label map per test image, on the input grid, values in the BraTS convention
    dataset = json.loads((smoke / "data" / "dataset.json").read_text())
    source = nib.load(smoke / "data" / dataset["test"][0])
    (pred_file,) = (smoke / "out_inference").glob("*_seg.nii.gz")
    pred = nib.load(pred_file)
    assert pred.shape[:3] == source.shape[:3] and np.allclose(pred.affine, source.affine)
    assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 4}
    # evaluation: Dice and HD95 per region, per case
    with open(smoke / "out_evaluate" / "metrics.csv") as f:
        names = {row[0] for row in csv.reader(f)}
    assert {f"val_{m}_{r}" for m in ("dice", "hd95") for r in ("ET", "TC", "WT")} <= names
    assert list((smoke / "out_evaluate" / "predictions").glob("*_seg.nii.gz"))


def test_region_def_must_name_every_network_channel(tmp_path: Path) -> None:
    """Region bundles name the network channels in region_def and the label values in channel_def."""
    import shutil

    broken = tmp_path / BUNDLE.name
    shutil.copytree(BUNDLE, broken, ignore=shutil.ignore_patterns("models", "eval"))
    meta_file = broken / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred["region_def"].pop("2")
    pred["channel_def"].pop("0")
    meta_file.write_text(json.dumps(meta, indent=4))
    problems = verify_bundle(broken, run=False)
    where = {p.id: p.message for p in problems if p.check == "monailabel"}
    assert "region_def must name each network output channel 0..2" in where[
        "network_data_format#outputs#pred#region_def"]
    assert "must include 0 (background)" in where["network_data_format#outputs#pred#channel_def"]


def test_every_training_augmentation_runs(tmp_path: Path) -> None:
    """With every augmentation's probability at 1, the training transforms give image/region patches."""
    from labelzoo.data import build_brats_studies

    data = build_brats_studies(tmp_path / "data", n_images=1, n_labeled=1, shape=(40, 40, 32), layout="msd")
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"aug_prob": 1.0, "patch_size": [32, 32, 32], "num_samples": 2})
    transform = parser.get_parsed_content("train#preprocessing")
    case = {"image": str(data / "imagesTr" / "case_000.nii.gz"), "label": str(data / "labelsTr" / "case_000.nii.gz")}
    patches = transform(case)
    assert len(patches) == 2
    for patch in patches:
        assert patch["image"].shape == (4, 32, 32, 32) and patch["label"].shape == (3, 32, 32, 32)
        assert set(torch.unique(patch["label"]).tolist()) <= {0.0, 1.0}
        assert bool((patch["label"][0] <= patch["label"][1]).all())  # ET inside TC survives nearest resampling
