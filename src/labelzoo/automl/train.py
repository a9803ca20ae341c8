"""In-process training of one T-AutoML configuration (the search's proxy and full training).

The data are read once (:func:`prepare_data`: deterministic preprocessing, kept in memory) and shared by
every trial. :func:`train_config` trains the network decoded from a vector for a fixed number of
iterations on random patches with the configuration's augmentations, loss and learning rate, then
returns the mean foreground Dice on the validation cases (sliding-window inference). The transforms,
loss and optimiser come from :mod:`labelzoo.automl.components`, the same items an emitted bundle's
``train.json`` holds.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelzoo.automl import components
from labelzoo.automl.encoding import decode
from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run with ``num_threads`` torch CPU threads (``None``: leave as is), restoring the setting afterwards.

    Small networks train much faster on one thread when the cores are shared: measured on 2 busy cores,
    a proxy trial took 3 s with 1 thread and 65 s with 2 (threads spin-waiting for each other).
    """
    import torch

    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(max(1, int(num_threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class DatasetInfo:
    """An MSD-layout dataset: training / validation cases (absolute paths) and its labels."""

    root: Path
    train: list[dict[str, str]]
    val: list[dict[str, str]]
    label_values: list[int]
    label_names: list[str]
    in_channels: int
    modality: str

    @property
    def num_classes(self) -> int:
        """Output channels of the network: one per label value, background included."""
        return len(self.label_values)


def read_msd_dataset(dataset_dir: str | Path, val_fraction: float = 0.25) -> DatasetInfo:
    """Read a Medical Segmentation Decathlon dataset folder (``dataset.json``, ``imagesTr``, ``labelsTr``).

    The last ``max(1, round(val_fraction * n))`` training cases are the validation cases.

    Raises:
        LabelZooError: naming the folder, file or field that is missing or wrong.
    """
    root = Path(dataset_dir).expanduser().resolve()
    meta_path = root / "dataset.json"
    if not root.is_dir():
        raise LabelZooError(f"DATASET {root} is not a folder: expected an MSD dataset folder with dataset.json")
    if not meta_path.is_file():
        raise LabelZooError(f"{meta_path} not found: DATASET must be a folder in MSD layout (dataset.json, "
                            "imagesTr, labelsTr); `labelzoo sample-data DIR --layout msd` makes one")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise LabelZooError(f"{meta_path} is not valid JSON: {e}") from None
    for key in ("labels", "training"):
        if key not in meta:
            raise LabelZooError(f"{meta_path}: field {key!r} is missing")
    try:
        labels = sorted((int(k), str(v)) for k, v in meta["labels"].items())
    except (AttributeError, ValueError):
        raise LabelZooError(f"{meta_path}: field 'labels' must map integer label values to names") from None
    if len(labels) < 2 or labels[0][0] != 0:
        raise LabelZooError(f"{meta_path}: field 'labels' must name background (0) and at least one label")
    cases = []
    for i, item in enumerate(meta["training"]):
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not isinstance(
                item.get("label"), str):
            raise LabelZooError(f"{meta_path}: training[{i}] must have 'image' and 'label' paths")
        case = {k: str((root / item[k]).resolve()) for k in ("image", "label")}
        for k, p in case.items():
            if not Path(p).is_file():
                raise LabelZooError(f"{meta_path}: training[{i}] {k} file {p} does not exist")
        cases.append(case)
    if len(cases) < 2:
        raise LabelZooError(f"{meta_path}: at least 2 training cases are needed (train + validation), got {len(cases)}")
    n_val = min(len(cases) - 1, max(1, round(val_fraction * len(cases))))
    modality = meta.get("modality", {"0": "image"})
    return DatasetInfo(root=root, train=cases[:-n_val], val=cases[-n_val:], label_values=[v for v, _ in labels],
                       label_names=[n for _, n in labels], in_channels=max(1, len(modality)),
                       modality=", ".join(str(v) for v in modality.values()))


@dataclass
class PreparedData:
    """Preprocessed training and validation volumes, in memory, shared by all trials."""

    info: DatasetInfo
    train: list[dict[str, Any]] = field(repr=False)
    val: list[dict[str, Any]] = field(repr=False)


def prepare_data(info: DatasetInfo) -> PreparedData:
    """Load and preprocess every case once (see :func:`labelzoo.automl.components.preprocessing_configs`)."""
    from monai.transforms import Compose

    pre = Compose([components.instantiate(t) for t in components.preprocessing_configs(info.label_values)])
    try:
        train = [pre(dict(c)) for c in info.train]
        val = [pre(dict(c)) for c in info.val]
    except Exception as e:  # a broken file: say which
        raise LabelZooError(f"cannot load the dataset {info.root}: {e}") from e
    return PreparedData(info=info, train=train, val=val)


@dataclass
class TrainResult:
    """Outcome of training one configuration."""

    dice: float
    iterations: int
    seconds: float
    diverged: bool
    state_dict: dict[str, Any] | None = field(default=None, repr=False)


def build_network(vector: Sequence[int], info: DatasetInfo, base_channels: int) -> Any:
    """The :class:`~labelzoo.networks.tautoml.TAutoMLNet` of ``vector`` for this dataset's channels."""
    from labelzoo.networks.tautoml import TAutoMLNet

    return TAutoMLNet(list(vector), in_channels=info.in_channels, out_channels=info.num_classes,
                      base_channels=base_channels)


def train_config(vector: Sequence[int], data: PreparedData, iterations: int, patch_size: Sequence[int],
                 base_channels: int = 8, seed: int = 0, keep_weights: bool = False,
                 device: str = "cpu") -> TrainResult:
    """Train the configuration ``vector`` for ``iterations`` steps and return its validation Dice.

    Args:
        vector: a valid T-AutoML vector (network, augmentations, lr, loss).
        data: the prepared dataset.
        iterations: optimiser steps (each on ``2`` random patches).
        patch_size: training patch and sliding-window size.
        base_channels: network width at full resolution.
        seed: seeds weights, crops and augmentations.
        keep_weights: return the trained ``state_dict`` (for the winner).
        device: torch device.

    Returns:
        The mean foreground Dice over validation cases (0 when training diverged).
    """
    import time

    import torch
    from monai.data import DataLoader, Dataset
    from monai.inferers import sliding_window_inference
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot
    from monai.transforms import Compose
    from monai.utils import set_determinism

    config = decode(vector)
    start = time.perf_counter()
    set_determinism(seed=seed)
    try:
        net = build_network(vector, data.info, base_channels).to(device)
        loss_fn = components.instantiate(components.loss_config(config.loss))
        optimizer = components.instantiate(components.optimizer_config(config.lr), network=net)
        transforms = [components.instantiate(t) for t in components.crop_configs(list(patch_size))]
        transforms += [components.instantiate(t) for t in components.augmentation_configs(config.augmentations)]
        loader = DataLoader(Dataset(data.train, transform=Compose(transforms)), batch_size=1, shuffle=True,
                            num_workers=0)
        step, diverged = 0, False
        net.train()
        while step < iterations and not diverged:
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(batch["image"].to(device)), batch["label"].to(device))
                if not torch.isfinite(loss):
                    diverged = True
                    break
                loss.backward()
                optimizer.step()
                step += 1
                if step >= iterations:
                    break
        dice = 0.0
        if not diverged:
            net.eval()
            metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=True)
            n = data.info.num_classes
            with torch.no_grad():
                for case in data.val:
                    image = case["image"].unsqueeze(0).to(device)
                    logits = sliding_window_inference(image, list(patch_size), 4, net, overlap=0.25)
                    pred = one_hot(logits.argmax(1, keepdim=True), n)
                    metric(pred, one_hot(case["label"].unsqueeze(0).to(device), n))
            value = float(metric.aggregate().item())
            dice = value if math.isfinite(value) else 0.0
    finally:
        set_determinism(seed=None)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()} if keep_weights else None
    return TrainResult(dice=dice, iterations=step, seconds=time.perf_counter() - start, diverged=diverged,
                       state_dict=state)
