"""What a T-AutoML configuration means in MONAI terms: augmentation transforms, loss and optimiser.

Each is returned as a MONAI bundle config item (a dict with ``_target_``), so the same description is
written into an emitted bundle's ``train.json`` and instantiated in-process (with
:class:`monai.bundle.ConfigParser`) by the search's proxy training: one definition, two uses.

Choices where the T-AutoML paper gives only a name (documented in the emitted bundle's README):

- zoom: ``RandZoomd`` 0.9..1.1; Gaussian noise: std 0.1; intensity shift: offsets +-0.1 (on z-scored
  images); intensity scale shift: ``RandScaleIntensityd`` factors +-0.1 (``v * (1 + f)``);
  rot90: ``RandRotate90d`` in the X-Y plane, up to 3 quarter turns. Every selected augmentation runs with
  probability :data:`~labelzoo.automl.space.AUGMENTATION_PROB` (0.15).
- losses are on softmax outputs with one-hot targets; cross-entropy alone is MONAI's ``DiceCELoss`` with
  ``lambda_dice=0``.
- optimiser: ``torch.optim.AdamW`` (weight decay 1e-5) at the searched learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labelzoo.automl import space
from labelzoo.errors import LabelZooError

IMAGE, LABEL = "image", "label"


def augmentation_config(name: str, prob: float = space.AUGMENTATION_PROB) -> dict[str, Any]:
    """The MONAI dictionary transform (bundle config item) for augmentation ``name``.

    Raises:
        LabelZooError: for a name not in :data:`~labelzoo.automl.space.AUGMENTATIONS`.
    """
    both = [IMAGE, LABEL]
    table: dict[str, dict[str, Any]] = {
        "flip_x": {"_target_": "RandFlipd", "keys": both, "prob": prob, "spatial_axis": 0},
        "flip_y": {"_target_": "RandFlipd", "keys": both, "prob": prob, "spatial_axis": 1},
        "flip_z": {"_target_": "RandFlipd", "keys": both, "prob": prob, "spatial_axis": 2},
        "rot90_xy": {"_target_": "RandRotate90d", "keys": both, "prob": prob, "max_k": 3, "spatial_axes": [0, 1]},
        "zoom": {"_target_": "RandZoomd", "keys": both, "prob": prob, "min_zoom": 0.9, "max_zoom": 1.1,
                 "mode": ["trilinear", "nearest"], "keep_size": True},
        "gaussian_noise": {"_target_": "RandGaussianNoised", "keys": IMAGE, "prob": prob, "mean": 0.0, "std": 0.1},
        "intensity_shift": {"_target_": "RandShiftIntensityd", "keys": IMAGE, "prob": prob, "offsets": 0.1},
        "intensity_scale_shift": {"_target_": "RandScaleIntensityd", "keys": IMAGE, "prob": prob, "factors": 0.1},
    }
    if name not in table:
        raise LabelZooError(f"augmentation: expected one of {list(space.AUGMENTATIONS)}, got {name!r}")
    return table[name]


def augmentation_configs(names: Sequence[str]) -> list[dict[str, Any]]:
    """Bundle config items for the selected augmentations, in the search-space order."""
    return [augmentation_config(n) for n in space.AUGMENTATIONS if n in names]


def loss_config(name: str) -> dict[str, Any]:
    """The MONAI loss (bundle config item) for loss ``name``; inputs are logits, targets label maps.

    Raises:
        LabelZooError: for a name not in :data:`~labelzoo.automl.space.LOSSES`.
    """
    common = {"to_onehot_y": True, "softmax": True}
    table: dict[str, dict[str, Any]] = {
        "dice": {"_target_": "DiceLoss", **common},
        "dice_squared_pred": {"_target_": "DiceLoss", **common, "squared_pred": True},
        "ce": {"_target_": "DiceCELoss", **common, "lambda_dice": 0.0, "lambda_ce": 1.0},
        "dice_ce": {"_target_": "DiceCELoss", **common},
        "dice_focal": {"_target_": "DiceFocalLoss", **common},
    }
    if name not in table:
        raise LabelZooError(f"loss: expected one of {list(space.LOSSES)}, got {name!r}")
    return table[name]


def optimizer_config(lr: float | str, params: str = "$@network.parameters()") -> dict[str, Any]:
    """The optimiser (bundle config item): AdamW at ``lr`` over ``params`` (a config reference)."""
    return {"_target_": "torch.optim.AdamW", "params": params, "lr": lr, "weight_decay": 1e-5}


def instantiate(item: Any, **refs: Any) -> Any:
    """Instantiate one bundle config item in-process; ``refs`` become ids it can reference with ``@``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser({**refs, "_item_": item})
    return parser.get_parsed_content("_item_")


def preprocessing_configs(label_values: Sequence[int] | None = None, with_label: bool = True) -> list[dict[str, Any]]:
    """Deterministic preprocessing: load, channel first, RAS orientation, per-channel z-score.

    With ``with_label``, the label is loaded too and, when ``label_values`` (the dataset's label values,
    background first) are not already ``0..n-1``, mapped to the contiguous class indices the network predicts.
    """
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    items: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"},
        {"_target_": "NormalizeIntensityd", "keys": IMAGE, "nonzero": False, "channel_wise": True},
    ]
    values = [int(v) for v in (label_values or [])]
    if with_label and values and values != list(range(len(values))):
        items.append({"_target_": "MapLabelValued", "keys": LABEL, "orig_labels": values,
                      "target_labels": list(range(len(values)))})
    items.append({"_target_": "EnsureTyped", "keys": keys, "dtype": ["$torch.float32", "$torch.int64"][: len(keys)]})
    return items


def crop_configs(patch_size: Sequence[int] | str, num_samples: int = 2) -> list[dict[str, Any]]:
    """Random training patches: pad to the patch size, then crops centred on foreground or background 1:1."""
    return [
        {"_target_": "SpatialPadd", "keys": [IMAGE, LABEL], "spatial_size": patch_size},
        {"_target_": "RandCropByPosNegLabeld", "keys": [IMAGE, LABEL], "label_key": LABEL,
         "spatial_size": patch_size, "pos": 1, "neg": 1, "num_samples": num_samples, "image_key": IMAGE,
         "image_threshold": -1e9},
    ]
