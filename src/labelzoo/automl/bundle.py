"""Write a T-AutoML search winner as a MONAI bundle in the model-zoo layout.

The bundle's network is :class:`labelzoo.networks.tautoml.TAutoMLNet` referenced by dotted path with the
winning vector as its ``arch`` argument; its augmentations, loss and learning rate come from
:mod:`labelzoo.automl.components` (the same items the search trained with). Configs follow the model
zoo's spleen bundle: tunables at the top, ``train#...`` / ``validate#...`` groups (every knob overridable
from the command line and by MONAI Label), ``network_def`` apart from ``network``, ``evaluate.json`` and
``multi_gpu_train.json`` override ``train.json`` only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelzoo.automl import components
from labelzoo.automl.encoding import check_vector, decode
from labelzoo.automl.train import DatasetInfo
from labelzoo.bundle.emit import (
    LICENSE_TEXT,
    LOGGING_CONF,
    large_files_yml,
    mean_dice_key_metric,
    multi_gpu_train_config,
    package_version,
    slug,
    train_handlers,
    validate_handlers,
)
from labelzoo.bundle.zoochecks import ZOO_SCHEMA_URL
from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

BUNDLE_VERSION = "0.1.0"
NETWORK_TARGET = "labelzoo.networks.tautoml.TAutoMLNet"
DEVICE = "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"
IMPORTS = ["$import glob", "$import json", "$import os", "$import numpy", "$import torch",
           "$import labelzoo.networks.tautoml"]

def default_bundle_name(info: DatasetInfo) -> str:
    """Model-zoo name ``<anatomy>_<modality>_tautoml_segmentation`` from the dataset folder and modality."""
    return f"{slug(info.root.name)}_{slug(info.modality)}_tautoml_segmentation"


def _common(vector: list[int], info: DatasetInfo, patch_size: list[int], base_channels: int) -> dict[str, Any]:
    return {
        "imports": IMPORTS,
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": str(info.root),
        "device": DEVICE,
        "patch_size": patch_size,
        "num_classes": info.num_classes,
        "arch": vector,
        "network_def": {
            "_target_": NETWORK_TARGET,
            "arch": "@arch",
            "in_channels": info.in_channels,
            "out_channels": "@num_classes",
            "base_channels": base_channels,
        },
        "network": "$@network_def.to(@device)",
    }


def train_config(vector: list[int], info: DatasetInfo, patch_size: list[int], base_channels: int,
                 max_epochs: int) -> dict[str, Any]:
    """``train.json``: ignite ``SupervisedTrainer`` with the searched augmentations, loss and learning rate."""
    config = decode(vector)
    pre = components.preprocessing_configs(info.label_values)
    random_transforms = components.crop_configs("@patch_size") + components.augmentation_configs(config.augmentations)
    return {
        **_common(vector, info, patch_size, base_channels),
        "datalist": "$[{k: os.path.normpath(os.path.join(@dataset_dir, v)) for k, v in d.items()} "
                    "for d in json.load(open(os.path.join(@dataset_dir, 'dataset.json')))['training']]",
        "num_val": len(info.val),
        "learning_rate": config.lr,
        "val_interval": 1,
        "loss": components.loss_config(config.loss),
        "optimizer": components.optimizer_config("@learning_rate"),
        "train": {
            "deterministic_transforms": pre,
            "random_transforms": random_transforms,
            "preprocessing": {"_target_": "Compose",
                              "transforms": "$@train#deterministic_transforms + @train#random_transforms"},
            "dataset": {"_target_": "CacheDataset", "data": "$@datalist[:-@num_val]",
                        "transform": "@train#preprocessing", "cache_rate": 1.0, "num_workers": 0},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 1,
                           "shuffle": True, "num_workers": 0},
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": {"_target_": "Compose", "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False],
                 "to_onehot": "$[@num_classes, @num_classes]"},
            ]},
            "handlers": train_handlers(),
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": max_epochs,
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "@train#inferer",
                "postprocessing": "@train#postprocessing",
                "train_handlers": "@train#handlers",
                "amp": False,
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "%train#deterministic_transforms"},
            "dataset": {"_target_": "CacheDataset", "data": "$@datalist[-@num_val:]",
                        "transform": "@validate#preprocessing", "cache_rate": 1.0, "num_workers": 0},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1,
                           "shuffle": False, "num_workers": 0},
            "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@patch_size", "sw_batch_size": 4,
                        "overlap": 0.5},
            "postprocessing": "%train#postprocessing",
            "handlers": validate_handlers(),
            "key_metric": mean_dice_key_metric(),
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "val_handlers": "@validate#handlers",
                "amp": False,
            },
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@train#trainer.run()"],
    }


def evaluate_config() -> dict[str, Any]:
    """``evaluate.json`` (overrides ``train.json``): load ``models/model.pt``, Dice per class, save CSV and masks."""
    return {
        "validate#postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": ["pred", "label"], "transform": "@validate#preprocessing",
             "orig_keys": "image", "meta_key_postfix": "meta_dict", "nearest_interp": [False, True],
             "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "resample": False, "separate_folder": False, "output_dtype": "$numpy.uint8"},
            {"_target_": "AsDiscreted", "keys": ["pred", "label"], "to_onehot": "$[@num_classes, @num_classes]"},
        ]},
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@ckpt_dir + '/model.pt'",
             "load_dict": {"model": "@network"}},
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "MetricsSaver", "save_dir": "@output_dir", "metrics": ["val_mean_dice"],
             "metric_details": ["val_mean_dice"], "batch_transform": "$lambda x: [xx['image'].meta for xx in x]",
             "summary_ops": "*"},
        ],
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)"],
        "run": ["$@validate#evaluator.run()"],
    }


def inference_config(vector: list[int], info: DatasetInfo, patch_size: list[int], base_channels: int
                     ) -> dict[str, Any]:
    """``inference.json``: sliding-window inference on ``imagesTs``, masks written back in input geometry."""
    return {
        **_common(vector, info, patch_size, base_channels),
        "datalist": "$list(sorted(glob.glob(os.path.join(@dataset_dir, 'imagesTs', '*.nii*'))))",
        "preprocessing": {"_target_": "Compose",
                          "transforms": components.preprocessing_configs(with_label=False)},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@patch_size", "sw_batch_size": 4,
                    "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False},
        ]},
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
             "load_dict": {"model": "@network"}},
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)"],
        "run": ["$@evaluator.run()"],
    }


def smoke_config(info: DatasetInfo, patch_size: list[int]) -> dict[str, Any]:
    """``smoke.json``: how ``labelzoo bundle verify`` runs the bundle small (see :mod:`labelzoo.bundle.smoke`)."""
    small = [min(int(p), 32) for p in patch_size]
    return {
        "data": {"spatial_size": [max(s, 32) for s in small], "label_values": info.label_values, "num_training": 3,
                 "num_test": 1, "patch_size": small},
        "all": {"patch_size": small},
        "train": {"train#trainer#max_epochs": 1, "val_interval": 1},
        "evaluate": {},
        "inference": {},
    }


def metadata(vector: list[int], info: DatasetInfo, patch_size: list[int], dice: float | None,
             search_summary: dict[str, Any]) -> dict[str, Any]:
    """``metadata.json`` in the model-zoo schema; pins ``labelzoo`` (the network is referenced by dotted path)."""
    import monai
    import numpy
    import torch

    import labelzoo

    config = decode(vector)
    return {
        "schema": ZOO_SCHEMA_URL,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: "network, augmentations, loss and learning rate found by labelzoo search"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"labelzoo": labelzoo.__version__, "nibabel": package_version("nibabel"),
                                      "pytorch-ignite": package_version("pytorch-ignite"),
                                      "tensorboard": package_version("tensorboard")},
        "supported_apps": {"monailabel": "0.8.5"},
        "name": "T-AutoML segmentation (" + info.root.name + ")",
        "task": f"{info.modality} segmentation of {', '.join(info.label_names[1:])}",
        "description": (
            "3D segmentation network, augmentations, loss and learning rate found by a T-AutoML search "
            f"(labelzoo search): {len(config.blocks)} blocks ({', '.join(b.type for b in config.blocks)}), "
            f"augmentations {list(config.augmentations) or 'none'}, loss {config.loss}, lr {config.lr}"
        ),
        "authors": "LabelZoo T-AutoML search",
        "copyright": "Copyright (c) LabelZoo contributors",
        "data_source": f"the dataset the search ran on ({info.root.name})",
        "data_type": "nibabel",
        "image_classes": f"{info.in_channels} channel(s): {info.modality}, z-scored per channel",
        "label_classes": ", ".join(f"{i}: {n}" for i, n in enumerate(info.label_names)),
        "pred_classes": ", ".join(f"{i}: {n}" for i, n in enumerate(info.label_names)),
        "eval_metrics": {"mean_dice": round(float(dice), 4) if dice is not None else None},
        "search": search_summary,
        "intended_use": "Research; a starting point found by automated search, not for clinical use",
        "references": [
            "Yang, D. et al. T-AutoML: Automated Machine Learning for Lesion Segmentation using Transformers "
            "in 3D Medical Imaging. ICCV 2021.",
        ],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": info.modality, "num_channels": info.in_channels,
                "spatial_shape": patch_size, "dtype": "float32", "value_range": [], "is_patch_data": True,
                "channel_def": {str(i): m for i, m in enumerate(info.modality.split(", "))},
            }},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": info.num_classes,
                "spatial_shape": patch_size, "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                "channel_def": {str(i): n for i, n in enumerate(info.label_names)},
            }},
        },
    }


def readme(name: str, vector: list[int], info: DatasetInfo, dice: float | None, summary: dict[str, Any]) -> str:
    """``docs/README.md``: what was searched, what was found, how to run it."""
    config = decode(vector)
    blocks = "\n".join(f"| {b.id} | {b.type} | 1/{2**b.scale} | {', '.join(map(str, b.inputs)) or 'input'} |"
                       for b in config.blocks)
    dice_text = f"{dice:.4f}" if dice is not None else "not measured"
    return f"""# {name}

A 3D segmentation bundle found by the LabelZoo T-AutoML search (`labelzoo search`) on `{info.root.name}`:
labels {', '.join(f'{i} = {n}' for i, n in enumerate(info.label_names))} ({info.modality}).

## What the search found

The configuration vector (network, augmentations, learning rate, loss) is `arch` in the configs:

`{vector}`

| block | type | spatial scale | inputs |
| --- | --- | --- | --- |
{blocks}

Outputs of blocks nobody reads ({', '.join(map(str, config.output_blocks))}) are summed at full resolution.
Augmentations (each with p = 0.15): {', '.join(config.augmentations) or 'none'}. Loss: {config.loss}.
Optimiser: AdamW, lr {config.lr}.

Validation mean foreground Dice of the shipped weights: {dice_text} (measured by the search on its
validation cases; the search budget and predictor quality are in `metadata.json` under `search`).
Search summary: {json.dumps(summary)}

## Run it

The network is `labelzoo.networks.tautoml.TAutoMLNet` (dotted path; the `labelzoo` package must be
installed). Data are in Medical Segmentation Decathlon layout (`dataset.json`, `imagesTr`, `labelsTr`,
`imagesTs`); `dataset_dir` defaults to the folder the search ran on.

```bash
python -m monai.bundle run --config_file configs/train.json --bundle_root . --dataset_dir DATA
python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" --bundle_root .
python -m monai.bundle run --config_file configs/inference.json --bundle_root . --dataset_dir DATA
torchrun --nproc_per_node=2 -m monai.bundle run \\
    --config_file "['configs/train.json','configs/multi_gpu_train.json']" --bundle_root .
```

`labelzoo bundle verify .` checks the bundle (model-zoo layout, MONAI Label contract, a 1-epoch run on
synthetic data with the small-run overrides of `configs/smoke.json`); `labelzoo serve --conf
bundles=<folder holding this bundle>` serves it in the LabelZoo MONAI Label app.

## Recipe and deviations

T-AutoML (Yang et al., ICCV 2021): configurations are sampled at random, each proxy-trained briefly; a
transformer predicts which of two configurations scores higher; it ranks a large pool of unseen
configurations and the best are trained longer. This bundle is the winner. Where the paper is silent
LabelZoo chose: AdamW (weight decay 1e-5), z-score intensity normalisation, label values mapped to
contiguous channels ({', '.join(f'{v}->{i}' for i, v in enumerate(info.label_values))}), zoom 0.9..1.1,
noise std 0.1, intensity shift/scale 0.1 (see `labelzoo.automl.components`).
"""


def emit_bundle(out_dir: str | Path, vector: Sequence[int], info: DatasetInfo, patch_size: Sequence[int],
                base_channels: int, state_dict: dict[str, Any] | None = None, dice: float | None = None,
                max_epochs: int = 100, name: str | None = None, search_summary: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write the bundle folder for ``vector``; returns it.

    Args:
        out_dir: the bundle folder to create (must not exist unless ``overwrite``).
        vector: the configuration.
        info: the dataset (channels, labels, where ``dataset_dir`` points).
        patch_size: training patch and sliding-window size.
        base_channels: network width at full resolution.
        state_dict: trained weights, saved as ``models/model.pt`` (listed in ``large_files.yml``).
        dice: validation Dice of those weights (``metadata.json`` ``eval_metrics``).
        max_epochs: ``train#trainer#max_epochs``.
        name: bundle name for the docs (default: the folder name).
        search_summary: facts about the search (budget, predictor accuracy) for metadata and docs.
        overwrite: replace an existing folder.

    Raises:
        LabelZooError: if ``out_dir`` exists and ``overwrite`` is false.
    """
    import torch

    out = Path(out_dir).expanduser()
    vec = check_vector(vector)
    patch = [int(p) for p in patch_size]
    summary = search_summary or {}
    if out.exists():
        if not overwrite:
            raise LabelZooError(f"bundle folder {out} already exists: choose another --out or remove it")
        shutil.rmtree(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    configs = tmp / "configs"
    configs.mkdir(parents=True)
    write_json_atomic(configs / "metadata.json", metadata(vec, info, patch, dice, summary))
    write_json_atomic(configs / "train.json", train_config(vec, info, patch, base_channels, max_epochs))
    write_json_atomic(configs / "evaluate.json", evaluate_config())
    write_json_atomic(configs / "inference.json", inference_config(vec, info, patch, base_channels))
    write_json_atomic(configs / "multi_gpu_train.json", multi_gpu_train_config())
    write_json_atomic(configs / "smoke.json", smoke_config(info, patch))
    (configs / "logging.conf").write_text(LOGGING_CONF)
    (tmp / "docs").mkdir()
    (tmp / "docs" / "README.md").write_text(readme(name or out.name, vec, info, dice, summary))
    (tmp / "LICENSE").write_text(LICENSE_TEXT)
    (tmp / "models").mkdir()
    if state_dict is not None:
        torch.save(state_dict, tmp / "models" / "model.pt")
    (tmp / "large_files.yml").write_text(large_files_yml(weights=state_dict is not None))
    tmp.rename(out)
    return out
