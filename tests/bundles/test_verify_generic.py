"""`verify_bundle` is generic: a 2D, PNG, single-channel sigmoid bundle (UNet++-style) passes it unchanged.

The bundle is written by the test (a tiny MONAI UNet; the same layout and ids as the real bundles) so the
verify run covers the 2D branch (PNG data, 2D geometry check) and a ``--variant`` override file.
Slow: three ``python -m monai.bundle run`` subprocesses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labelzoo.bundle.verify import format_report, verify_bundle

REPO = Path(__file__).resolve().parents[2]
UNETR = REPO / "bundles" / "btcv_ct_unetr_segmentation"

LOAD = [{"_target_": "LoadImaged", "keys": ["image", "label"]},
        {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
        {"_target_": "ScaleIntensityd", "keys": "image"},
        {"_target_": "ScaleIntensityRanged", "keys": "label", "a_min": 0, "a_max": 1, "b_min": 0, "b_max": 1,
         "clip": True},
        {"_target_": "EnsureTyped", "keys": ["image", "label"]}]
POST = {"_target_": "Compose", "transforms": [
    {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
    {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}]}
NET = {"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 16],
       "strides": [2], "num_res_units": 0}
COMMON = {"imports": ["$import os", "$from labelzoo.data.msd import msd_datalist"], "bundle_root": ".",
          "ckpt_dir": "$@bundle_root + '/models'", "output_dir": "$@bundle_root + '/eval'", "dataset_dir": "data",
          "device": "$torch.device('cpu')", "network_def": NET, "network": "$@network_def.to(@device)"}


def _write_2d_bundle(root: Path) -> Path:
    configs = root / "configs"
    configs.mkdir(parents=True)
    for name in ("LICENSE", "large_files.yml", "configs/logging.conf"):
        shutil.copy(UNETR / name, root / name)
    (root / "docs").mkdir()
    (root / "docs" / "README.md").write_text("# test bundle\n")
    meta = json.loads((UNETR / "configs" / "metadata.json").read_text())
    meta["required_packages_version"] = {"labelzoo": "0.1.0"}
    meta["network_data_format"] = {
        "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "XR", "num_channels": 1,
                             "spatial_shape": [64, 64], "dtype": "float32", "value_range": [0, 1],
                             "is_patch_data": False, "channel_def": {"0": "image"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": [64, 64],
                             "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                             "channel_def": {"0": "lung"}}}}
    train = {**COMMON, "val_interval": 1,
             "loss": {"_target_": "DiceCELoss", "sigmoid": True},
             "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.001},
             "train": {
                 "preprocessing": {"_target_": "Compose", "transforms": LOAD},
                 "dataset": {"_target_": "Dataset", "data": "$msd_datalist(@dataset_dir, 'training')",
                             "transform": "@train#preprocessing"},
                 "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 2},
                 "inferer": {"_target_": "SimpleInferer"},
                 "handlers": [{"_target_": "ValidationHandler", "validator": "@validate#evaluator",
                               "epoch_level": True, "interval": "@val_interval"}],
                 "trainer": {"_target_": "SupervisedTrainer", "max_epochs": 50, "device": "@device",
                             "train_data_loader": "@train#dataloader", "network": "@network",
                             "loss_function": "@loss", "optimizer": "@optimizer", "inferer": "@train#inferer",
                             "train_handlers": "@train#handlers"}},
             "validate": {
                 "preprocessing": {"_target_": "Compose", "transforms": LOAD},
                 "dataset": {"_target_": "Dataset", "data": "$msd_datalist(@dataset_dir, 'validation')",
                             "transform": "@validate#preprocessing"},
                 "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1},
                 "inferer": {"_target_": "SimpleInferer"},
                 "postprocessing": POST,
                 "handlers": [{"_target_": "CheckpointSaver", "save_dir": "@ckpt_dir",
                               "save_dict": {"model": "@network"}, "save_key_metric": True,
                               "key_metric_filename": "model.pt"}],
                 "key_metric": {"val_mean_dice": {
                     "_target_": "MeanDice", "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}},
                 "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                               "val_data_loader": "@validate#dataloader", "network": "@network",
                               "inferer": "@validate#inferer", "postprocessing": "@validate#postprocessing",
                               "key_val_metric": "@validate#key_metric", "val_handlers": "@validate#handlers"}},
             "run": ["$@train#trainer.run()"]}
    evaluate = {
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@ckpt_dir + '/model.pt'",
             "load_dict": {"model": "@network"}},
            {"_target_": "MetricsSaver", "save_dir": "@output_dir", "metrics": ["val_mean_dice"]}],
        "run": ["$@validate#evaluator.run()"]}
    inference = {**COMMON,
                 "preprocessing": {"_target_": "Compose", "transforms": [
                     {"_target_": "LoadImaged", "keys": "image"},
                     {"_target_": "EnsureChannelFirstd", "keys": "image"},
                     {"_target_": "labelzoo.transforms.ValidateImaged", "keys": "image", "num_channels": 1,
                      "spatial_dims": 2},
                     {"_target_": "ScaleIntensityd", "keys": "image"}]},
                 "dataset": {"_target_": "Dataset", "data": "$msd_datalist(@dataset_dir, 'test')",
                             "transform": "@preprocessing"},
                 "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1},
                 "inferer": {"_target_": "SimpleInferer"},
                 "postprocessing": {"_target_": "Compose", "transforms": POST["transforms"] + [
                     {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": ".png",
                      "output_postfix": "seg", "output_dtype": "$numpy.uint8", "scale": 255,
                      "separate_folder": False},
                     {"_target_": "SqueezeDimd", "keys": "pred", "dim": 0}]},
                 "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                               "load_dict": {"model": "@network"}}],
                 "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                               "val_data_loader": "@dataloader", "network": "@network", "inferer": "@inferer",
                               "postprocessing": "@postprocessing", "val_handlers": "@handlers"},
                 "run": ["$@evaluator.run()"]}
    multi = {"run": ["$@train#trainer.run()"]}
    smoke = {"data": {"suffix": ".png", "spatial_size": [64, 64], "num_training": 4},
             "train": {"train#trainer#max_epochs": 1}}
    baseline = {"network_def#channels": [4, 8], "train#dataloader#batch_size": 1}
    for name, cfg in (("metadata", meta), ("train", train), ("evaluate", evaluate), ("inference", inference),
                      ("multi_gpu_train", multi), ("smoke", smoke), ("baseline", baseline)):
        (configs / f"{name}.json").write_text(json.dumps(cfg, indent=4) + "\n")
    return root


@pytest.mark.slow
def test_2d_png_sigmoid_bundle_verifies_with_variant(tmp_path: Path) -> None:
    bundle = _write_2d_bundle(tmp_path / "chest_xr_unet_segmentation")
    problems = verify_bundle(bundle, run=True, variant="configs/baseline.json", workdir=tmp_path / "work")
    assert problems == [], format_report(bundle.name, problems)
    outputs = list((tmp_path / "work" / "smoke" / "out_inference").glob("*_seg.png"))
    assert len(outputs) == 1
    # the variant reached training (batch 1, smaller UNet) and inference (same smaller UNet, else loading fails)
    overrides = json.loads((tmp_path / "work" / "smoke" / "overrides" / "inference.json").read_text())
    assert overrides == {"network_def#channels": [4, 8]}
