"""Pieces every bundle generator writes the same way (the planner's DynUNet bundles, T-AutoML's winner).

One place for the files whose content does not depend on the network or the data: ``logging.conf``,
``LICENSE``, ``large_files.yml``, the ``multi_gpu_train.json`` override, and the naming helpers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: ``configs/logging.conf`` of generated bundles (the model zoo's console logger).
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

#: ``LICENSE`` of generated bundles (the project's license, Apache-2.0).
LICENSE_TEXT = (
    "Copyright (c) LabelZoo contributors\n\nLicensed under the Apache License, Version 2.0 (the \"License\"); "
    "you may not use this file except in compliance with the License.\nYou may obtain a copy of the License "
    "at http://www.apache.org/licenses/LICENSE-2.0\n\nUnless required by applicable law or agreed to in "
    "writing, software distributed under the License is distributed on an \"AS IS\" BASIS, WITHOUT "
    "WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n"
)


def slug(text: str) -> str:
    """One part of a model-zoo name ``<anatomy>_<modality>_<method>_<task>``: lower-case alphanumerics only.

    A leading MSD / nnU-Net ``TaskNN_`` / ``DatasetNNN_`` is dropped (``Task09_Spleen`` -> ``spleen``,
    ``Dataset002_Heart`` -> ``heart``); an empty result becomes ``dataset``.
    """
    text = re.sub(r"^(task|dataset)\d+_", "", str(text), flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", text.lower()) or "dataset"


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``"unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def large_files_yml(weights: bool = True) -> str:
    """``large_files.yml`` listing ``models/model.pt`` (weights are never committed; the url is filled on release).

    The model zoo requires a non-empty list, so ``models/model.pt`` is listed even before any weights exist
    (``weights=False``): its ``url`` stays empty until ``labelzoo zoo pack`` or a release fills it.
    """
    del weights  # kept for callers; the entry is the same either way
    return 'large_files:\n  - path: "models/model.pt"\n    url: ""\n    hash_type: ""\n    hash_val: ""\n'


def multi_gpu_train_config(seed: int | str = 0) -> dict[str, Any]:
    """``multi_gpu_train.json`` overriding ``train.json`` for ``torchrun``: DDP on NCCL (GPUs) or gloo (CPUs).

    Every bundle's multi-GPU file comes from here (the planner's, the search's and the ones in ``bundles/``;
    a test checks the committed files are this output). Handlers are chosen per rank by type
    (:func:`labelzoo.distributed.ddp.rank_handlers`: validation, schedulers and metric savers on every rank,
    logging and checkpoint saving on rank 0), and the network is wrapped after freezing parameters it never
    uses (:func:`labelzoo.distributed.ddp.ddp_ready`). Ranks meet at a barrier before the process group is
    destroyed, so a fast rank cannot tear the group down under a slow one.

    Args:
        seed: ``set_determinism`` seed, a number or a config reference such as ``"@seed"``.
    """
    return {
        "device": "$torch.device('cuda:' + os.environ['LOCAL_RANK']) if torch.cuda.is_available() "
                  "else torch.device('cpu')",
        "network": {"_target_": "torch.nn.parallel.DistributedDataParallel",
                    "module": {"_target_": "labelzoo.distributed.ddp.ddp_ready", "module": "$@network_def.to(@device)"},
                    "device_ids": "$[@device] if torch.cuda.is_available() else None"},
        "train#sampler": {"_target_": "DistributedSampler", "dataset": "@train#dataset", "even_divisible": True,
                          "shuffle": True},
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "train#trainer#train_handlers": {"_target_": "labelzoo.distributed.ddp.rank_handlers",
                                         "handlers": "@train#handlers"},
        "validate#sampler": {"_target_": "DistributedSampler", "dataset": "@validate#dataset",
                             "even_divisible": False, "shuffle": False},
        "validate#dataloader#sampler": "@validate#sampler",
        "validate#evaluator#val_handlers": {"_target_": "labelzoo.distributed.ddp.rank_handlers",
                                            "handlers": "@validate#handlers"},
        "initialize": [
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() "
            "else 'gloo')",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            f"$monai.utils.set_determinism(seed={seed})",
        ],
        "run": ["$@train#trainer.run()"],
        "finalize": ["$dist.is_initialized() and dist.barrier()",
                     "$dist.is_initialized() and dist.destroy_process_group()"],
    }


def train_handlers() -> list[dict[str, Any]]:
    """``train#handlers`` of generated bundles: validation every ``@val_interval`` epochs, loss to log and
    TensorBoard (the multi-GPU config keeps the ``ValidationHandler`` on every rank, the others on rank 0)."""
    loss = "$monai.handlers.from_engine(['loss'], first=True)"
    return [
        {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
         "interval": "@val_interval"},
        {"_target_": "StatsHandler", "tag_name": "train_loss", "output_transform": loss},
        {"_target_": "TensorBoardStatsHandler", "log_dir": "@output_dir", "tag_name": "train_loss",
         "output_transform": loss},
    ]


def validate_handlers() -> list[dict[str, Any]]:
    """``validate#handlers``: metrics to log and TensorBoard, the best model to ``models/model.pt``."""
    return [
        {"_target_": "StatsHandler", "iteration_log": False},
        {"_target_": "TensorBoardStatsHandler", "log_dir": "@output_dir", "iteration_log": False},
        {"_target_": "CheckpointSaver", "save_dir": "@ckpt_dir", "save_dict": {"model": "@network"},
         "save_key_metric": True, "key_metric_filename": "model.pt"},
    ]


def mean_dice_key_metric() -> dict[str, Any]:
    """``validate#key_metric``: mean Dice over the foreground classes (one-hot ``pred`` and ``label``)."""
    return {"val_mean_dice": {"_target_": "MeanDice", "include_background": False,
                              "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}}


def multi_gpu_train_for(train: dict[str, Any]) -> dict[str, Any]:
    """The ``multi_gpu_train.json`` of a bundle with this ``train.json`` (its ``@seed`` when it defines one)."""
    return multi_gpu_train_config(seed="@seed" if "seed" in train else 0)


def write_multi_gpu_train(bundle_dir: str | Path) -> Path:
    """(Re)write ``BUNDLE/configs/multi_gpu_train.json`` from :func:`multi_gpu_train_for` its ``train.json``.

    The hand-written bundles in ``bundles/`` are refreshed with
    ``python -c "from labelzoo.bundle.emit import write_multi_gpu_train as w; w('bundles/NAME')"``;
    ``tests/bundles/test_multi_gpu.py`` checks that each committed file is this output.
    """
    from labelzoo.io import write_json_atomic

    configs = Path(bundle_dir) / "configs"
    train = json.loads((configs / "train.json").read_text())
    return write_json_atomic(configs / "multi_gpu_train.json", multi_gpu_train_for(train))
