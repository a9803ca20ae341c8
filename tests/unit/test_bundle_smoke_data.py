"""The verify run's synthetic data follows any bundle's network_data_format: 2D/3D, channels, classes.

Each dataset is read back with MONAI's own ``LoadImaged`` + ``EnsureChannelFirstd`` (what bundles use),
so a 2D PNG bundle, a 4-channel MRI bundle and a 3D CT bundle all get data their configs can load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from labelzoo.bundle.smoke import SmokeSpec, data_format, default_label_values, load_smoke, write_synthetic_dataset


def _meta(channels: int, shape: list, channel_def: dict, modality: str = "CT") -> dict:
    return {"network_data_format": {
        "inputs": {"image": {"num_channels": channels, "spatial_shape": shape, "modality": modality}},
        "outputs": {"pred": {"num_channels": len(channel_def), "channel_def": channel_def}},
    }}


def _load(root: Path, record: dict) -> dict:
    keys = [k for k in ("image", "label") if k in record]
    load = Compose([LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys)])
    fix = {k: ([str(root / p) for p in v] if isinstance(v, list) else str(root / v)) for k, v in record.items()}
    return load(fix)


def test_default_label_values() -> None:
    assert default_label_values({0: "background", 1: "a", 2: "b"}) == (0, 1, 2)
    assert default_label_values({0: "TC", 1: "WT", 2: "ET"}) == (0, 1, 2, 3)


def test_3d_ct_softmax(tmp_path: Path) -> None:
    fmt = data_format(_meta(1, [96, 96, 96], {"0": "background", "1": "spleen", "2": "liver"}),
                      {"spatial_size": [32, 32, 24], "num_training": 2, "num_test": 1})
    root = write_synthetic_dataset(tmp_path, fmt)
    ds = json.loads((root / "dataset.json").read_text())
    assert (ds["numTraining"], ds["numTest"], ds["labels"]) == (2, 1, {"0": "background", "1": "spleen",
                                                                       "2": "liver"})
    item = _load(root, ds["training"][0])
    assert tuple(item["image"].shape) == (1, 32, 32, 24) and tuple(item["label"].shape) == (1, 32, 32, 24)
    assert set(np.unique(item["label"].numpy()).astype(int)) == {0, 1, 2}
    assert float(item["image"].min()) < -900  # Hounsfield units: air


def test_4_channel_mri_regions_one_file(tmp_path: Path) -> None:
    """BraTS-style: 4 MRI channels in one 4D NIfTI, sigmoid regions, raw labels 0/1/2/4 declared."""
    fmt = data_format(_meta(4, [128, 128, 128], {"0": "TC", "1": "WT", "2": "ET"}, "MRI"),
                      {"spatial_size": [24, 24, 16], "label_values": [0, 1, 2, 4]})
    root = write_synthetic_dataset(tmp_path, fmt)
    ds = json.loads((root / "dataset.json").read_text())
    item = _load(root, ds["training"][0])
    assert tuple(item["image"].shape) == (4, 24, 24, 16)
    assert set(np.unique(item["label"].numpy()).astype(int)) == {0, 1, 2, 4}
    assert float(item["image"].min()) >= -100  # not CT


def test_4_channel_mri_channels_as_files(tmp_path: Path) -> None:
    fmt = data_format(_meta(4, [128, 128, 128], {"0": "TC", "1": "WT", "2": "ET"}, "MRI"),
                      {"spatial_size": [24, 24, 16], "channels_as_files": True})
    root = write_synthetic_dataset(tmp_path, fmt)
    ds = json.loads((root / "dataset.json").read_text())
    assert isinstance(ds["training"][0]["image"], list) and len(ds["training"][0]["image"]) == 4
    item = _load(root, ds["training"][0])
    assert tuple(item["image"].shape) == (4, 24, 24, 16)
    assert set(np.unique(item["label"].numpy()).astype(int)) == {0, 1, 2, 3}


@pytest.mark.parametrize("suffix", [".png", ".nii.gz"])
def test_2d_binary_sigmoid(tmp_path: Path, suffix: str) -> None:
    """UNet++-style: 2D, one sigmoid output channel; PNG or NIfTI."""
    fmt = data_format(_meta(1, [256, 256], {"0": "lung"}, "XR"), {"suffix": suffix})
    assert (fmt.spatial_dims, fmt.spatial_size, fmt.label_values) == (2, (64, 64), (0, 1))
    root = write_synthetic_dataset(tmp_path, fmt)
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["training"][0]["image"].endswith(suffix) and ds["tensorImageSize"] == "2D"
    item = _load(root, ds["training"][0])
    assert tuple(item["image"].shape) == (1, 64, 64) and tuple(item["label"].shape) == (1, 64, 64)
    assert set(np.unique(item["label"].numpy()).astype(int)) == {0, 1}


def test_smoke_overrides_per_workflow(tmp_path: Path) -> None:
    spec = SmokeSpec(sections={"all": {"roi_size": [32, 32]}, "train": {"max_epochs": 1},
                               "inference": {"sw_overlap": 0.1}, "evaluate": {"x": 1}})
    assert spec.overrides("inference") == {"roi_size": [32, 32], "sw_overlap": 0.1}
    assert spec.overrides("evaluate") == {"roi_size": [32, 32], "max_epochs": 1, "x": 1}
    assert spec.overrides("multi_gpu") == {"roi_size": [32, 32], "max_epochs": 1}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.json").write_text(json.dumps({"data": {"sise": 1}, "train": [],
                                                                 "variants": ["configs/nope.json"]}))
    _, problems = load_smoke(tmp_path)
    assert {(p.file, p.id) for p in problems} == {("configs/smoke.json", "data#sise"),
                                                  ("configs/smoke.json", "train"),
                                                  ("configs/smoke.json", "variants")}
    (tmp_path / "configs" / "nope.json").write_text("{}")
    spec, problems = load_smoke(tmp_path)
    assert spec.variants == ["configs/nope.json"] and all(p.id != "variants" for p in problems)
