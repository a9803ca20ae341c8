"""Plans -> MONAI bundles (stage 3): one DynUNet bundle per planned configuration, model-zoo layout.

Each bundle is plain MONAI bundle JSON (``python -m monai.bundle run --config_file configs/train.json``)
that MONAI Label serves like any other (data keys ``image`` / ``label`` / ``pred``; fixed config ids).
The builders below are pure (dicts in, dicts out); :func:`emit_bundles` writes them.

What the bundles carry from the plan: target spacing (``Spacingd``), per-channel normalisation
(:class:`labelzoo.planning.transforms.PlannedNormalized`), patch size (random crops and the sliding
window), batch size, DynUNet strides / kernels / features, deep supervision, foreground oversampling
(``RandCropByLabelClassesd``: a crop is centred on a random foreground class with probability
nnU-Net's per-batch share: 1 of 2 at batch 2, 7 of 20 at batch 20; :func:`foreground_share`),
cross-validation folds, and for ``3d_cascade_fullres`` the stage-1 (``3d_lowres``) segmentation, resampled to
full resolution and one-hot encoded, as extra input
channels: in training it is read from stage 1's cross-validation predictions as a second ``label`` channel
(:class:`~labelzoo.planning.transforms.SplitPreviousStaged`), at inference stage 1 runs inside the inferer
(:class:`~labelzoo.planning.cascade.CascadeInferer`), so the data keys stay ``image`` / ``label`` / ``pred``.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import labelzoo
from labelzoo.bundle.emit import (
    LICENSE_TEXT,
    LOGGING_CONF,
    large_files_yml,
    mean_dice_key_metric,
    multi_gpu_train_for,
    package_version,
    slug,
    train_handlers,
    validate_handlers,
)
from labelzoo.bundle.zoochecks import ZOO_SCHEMA_URL
from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.planning.choose import lcc_candidates

logger = logging.getLogger(__name__)

#: Model-zoo metadata schema the emitted metadata.json follows.
META_SCHEMA = ZOO_SCHEMA_URL
BUNDLE_VERSION = "0.1.0"
#: nnU-Net v2 trains 1000 epochs of 250 iterations with SGD (lr 0.01, Nesterov momentum 0.99, poly decay).
DEFAULT_EPOCHS = 1000
ITERATIONS_PER_EPOCH = 250
NUM_FOLDS = 5
#: nnU-Net v2 splits with ``KFold(n_splits=5, shuffle=True, random_state=12345)``.
SPLIT_SEED = 12345
#: Voxel locations kept per class for foreground-centred crops (nnU-Net's preprocessor samples 10000 per class).
CLASS_LOCATIONS = 10000
#: Largest one-hot label patch (classes x patch voxels x 4 bytes) for which rotation and scaling resample the label
#: linearly per class as nnU-Net does; above it (many classes, large patches) they fall back to nearest neighbour.
ONEHOT_LABEL_BYTES = 256 * 2**20

#: The emitted training / inference recipe against nnU-Net v2's default ``nnUNetTrainer`` (v2.8.1), item by
#: item: (item, nnU-Net v2, this bundle, status, why). Written into every bundle's ``docs/README.md``.
RECIPE: list[tuple[str, str, str, str, str]] = [
    ("rotation", "p 0.2; +-30 deg per axis (3D), +-180 deg (2D)", "`RandRotated` p 0.2, same ranges",
     "fixed", "was one `RandAffined` for rotation and scaling together (p 0.2 for both)"),
    ("scaling", "p 0.2; factor 0.7-1.4, same for all axes", "`RandZoomd` p 0.2, zoom 0.7-1.4, one factor",
     "fixed", "separate probability as nnU-Net; MONAI zooms (1/scale), range equal to within the reciprocal"),
    ("elastic deformation", "off", "off", "kept", "nnU-Net v2 disables it"),
    ("anisotropic patches (dummy 2D)", "rotation / low-res in-plane only when the patch is flat",
     "3D rotation and low-res on all axes", "kept", "no MONAI per-plane switch; affects only very flat patches"),
    ("Gaussian noise", "p 0.1, `noise_variance=(0, 0.1)`, which batchgeneratorsv2 uses as the std: std U(0, 0.1)",
     "`RandGaussianNoised` p 0.1, std U(0, 0.1) (`sample_std`)", "fixed",
     "was std U(0, 0.316) (the square root of the argument, read as a variance): 3x nnU-Net's noise"),
    ("Gaussian blur", "p 0.2, sigma 0.5-1 per axis, then each channel p 0.5", "`RandGaussianSmoothd` p 0.1 "
     "(= 0.2 x 0.5), sigma 0.5-1 per axis", "fixed", "was p 0.2: twice nnU-Net's rate per channel; MONAI has no "
     "per-channel probability, so multi-channel images are blurred together, each channel at nnU-Net's rate"),
    ("brightness", "p 0.15, multiply by 0.75-1.25", "`RandScaleIntensityd` p 0.15, factors 0.25", "kept", "same"),
    ("contrast", "p 0.15, 0.75-1.25 around the mean, range preserved",
     "`RandScaleIntensityFixedMeand` p 0.15, factors 0.25, preserve_range", "fixed", "was missing"),
    ("low-resolution simulation", "p 0.25, zoom 0.5-1 (nearest down, linear up), then each channel p 0.5",
     "`RandSimulateLowResolutiond` p 0.125 (= 0.25 x 0.5), zoom 0.5-1 (nearest down, linear up)", "fixed",
     "was missing, then p 0.25 (twice nnU-Net's rate per channel); no per-channel probability in MONAI: channels "
     "together"),
    ("inverted gamma", "p 0.1, gamma 0.7-1.5 on the inverted image, statistics retained",
     "`RandAdjustContrastd` p 0.1, invert_image, retain_stats", "fixed", "was missing"),
    ("gamma", "p 0.3, gamma 0.7-1.5, statistics retained", "`RandAdjustContrastd` p 0.3, retain_stats", "fixed",
     "statistics were not retained"),
    ("gamma distribution", "`BGContrast`: gamma U(0.7, 1) or U(1, 1.5), each half the time",
     "gamma U(0.7, 1.5) (below 1 with p 0.375)", "kept", "MONAI samples one range; slightly fewer gammas below 1"),
    ("mirroring (training)", "p 0.5 per axis", "`RandFlipd` p 0.5 per axis", "kept", "same"),
    ("foreground oversampling", "last 33% of each batch forced to contain foreground (batch 2: 1 of 2; batch 20: "
     "7 of 20)", "each patch centred on a random foreground class with nnU-Net's share of the planned batch as "
     "probability (`RandCropByLabelClassesd`)", "fixed", "was 0.5 for every batch size (more foreground than "
     "nnU-Net in `2d`, batch 20); per-sample rather than per-batch"),
    ("patch placement", "patch drawn from a larger region (room for rotation) that may extend past the image: "
     "a foreground patch is centred on the chosen voxel (never starting before the image) and padded past its far end",
     "`SpatialPadd` to the patch, then the crop stays inside the (padded) image: a foreground patch is moved "
     "inside it", "kept", "MONAI's crops keep the centre where the whole patch fits; differs only for objects near "
     "the border (nnU-Net then sees them off-centre with padding); on the parity dataset an emulation of nnU-Net's "
     "placement moved the mean Dice by -2.2 and +0.5 points at two training seeds: not separable from the seed"),
    ("label interpolation (rotation, scaling)", "each label value resampled linearly as its own indicator map, the "
     "largest kept (batchgeneratorsv2 `SpatialTransform`, `mode_seg` bilinear)", "the same: "
     "`labelzoo.planning.transforms.LabelToIndicatorsd` -> `RandRotated` / `RandZoomd` (label bilinear) -> "
     "`IndicatorsToLabeld`; nearest neighbour when classes x patch x 4 bytes exceeds 256 MiB", "fixed",
     "was nearest neighbour: on the parity benchmark's `3d_fullres` +0.2 to +2.1 points mean Dice at each of five "
     "training seeds; label values, not class indices, so the partial-label ignore value passes"),
    ("gradient clipping", "global gradient norm clipped to 12 before every step",
     "`labelzoo.optim.ClipGradNorm` (max_norm 12) in `train#handlers`", "fixed", "was missing (MONAI's trainer has "
     "no clipping option)"),
    ("training seed", "none (nnUNetv2_train is not seeded)", "`seed` (0): `set_determinism(seed=@seed)`; "
     "`--seed N` for a repeat", "added", "reproducible runs; repeats with other seeds show the spread of a "
     "budget"),
    ("class locations", "10000 voxels per class sampled once in preprocessing",
     "`ClassesToIndicesd` (max 10000 per class), cached with the case", "fixed",
     "were recomputed from the whole label for every patch"),
    ("augmentation bookkeeping", "plain tensors, no metadata", "MetaTensor tracking off around the random part "
     "(`TrackMetad`)", "fixed", "MONAI's metadata and applied-operation records were ~2/3 of the augmentation's CPU "
     "on small 2D patches; training inverts nothing"),
    ("loss", "Dice (no background, batch Dice if planned) + CE, weights 1:1", "`DiceCELoss` the same", "kept", "same"),
    ("deep supervision", "weights 1/2^i normalised, lowest head dropped; heads at their own resolution, targets "
     "downsampled (nearest-exact)", "same (`NativeHeadsDynUNet` + `DeepSupervisionDiceCELoss`)", "fixed",
     "MONAI's DynUNet upsamples every head to the patch and the loss ran at full resolution for each"),
    ("optimiser", "SGD lr 0.01, Nesterov momentum 0.99, weight decay 3e-5, poly 0.9 per epoch",
     "the same (`PolynomialLR` per epoch)", "kept", "same"),
    ("budget", "1000 epochs x 250 iterations", "`num_epochs` 1000 x `iterations_per_epoch` 250", "kept", "same"),
    ("data-loading workers", "`nnUNet_n_proc_DA` (default 12)", "`labelzoo.planning.transforms.num_workers()`: "
     "usable cores - 1, at most 8", "fixed", "was a fixed 4, more than a 2-core machine has"),
    ("CPU threads of the training process", "`nnUNetv2_train -device cpu`: `torch.set_num_threads(cpu_count)`",
     "`num_threads` = `$torch.get_num_threads()`: PyTorch's one per core, or `OMP_NUM_THREADS`", "kept",
     "on cores other work already uses, `--num_threads 1` avoids oversubscription (3-5x faster per iteration "
     "on a loaded 2-core machine; 1.25-1.8x slower on an idle one)"),
    ("resampling", "cubic (image), linear one-hot (label); separate z for anisotropic data",
     "`Spacingd` bilinear / nearest", "kept", "MONAI transform; differs at label edges and for thick slices"),
    ("validation during training", "pseudo Dice on patches, every epoch", "sliding-window Dice every "
     "`val_interval` epochs", "kept", "whole-image validation picks the checkpoint saved as `models/model.pt`"),
    ("test-time mirroring", "mean logits over all 2^dims flips", "`labelzoo.inferers.MirroringInferer` over the "
     "configuration's axes (`use_mirroring`)", "fixed", "was missing; off for the cascade, whose stage 1 would run "
     "2^3 times"),
    ("checkpoint loading", "strict", "strict except the training-only deep-supervision heads "
     "(`PlannedCheckpointLoader`)", "fixed", "was `strict: false`: a wrong checkpoint loaded silently"),
    ("ensembles", "mean softmax of configurations / folds", "`EnsembleInferer`, mean softmax (`find-best`)",
     "kept", "same"),
    ("post-processing", "largest component per class if CV Dice improves", "same (`find-best`)", "kept", "same"),
    ("HD95", "not reported", "`labelzoo.metrics.HD95Metric` in mm in `evaluate.json`", "added",
     "distances in mm of the evaluated grid, one implementation for every bundle"),
]

METHOD_NAMES = {"2d": "nnunet2d", "3d_fullres": "nnunet3dfullres", "3d_lowres": "nnunet3dlowres",
                "3d_cascade_fullres": "nnunet3dcascade"}


# --------------------------------------------------------------------------------------------- small pure helpers


def modality_slug(channel_names: dict[str, str]) -> str:
    """``ct`` for CT data, ``mri`` for several MR sequences, else the channel name."""
    names = [slug(v) for v in channel_names.values()]
    if all(n == "ct" for n in names):
        return "ct"
    if len(set(names)) == 1:
        return names[0]
    return "mri" if not any(n == "ct" for n in names) else "multimodal"


def bundle_name(plans: dict, configuration: str, anatomy: str | None = None) -> str:
    """Zoo name ``<anatomy>_<modality>_<method>_segmentation`` for one configuration."""
    return "_".join([slug(anatomy or plans["dataset_name"]), modality_slug(plans["channel_names"]),
                     METHOD_NAMES[configuration], "segmentation"])


def assign_folds(case_ids: list[str], num_folds: int = NUM_FOLDS, seed: int = SPLIT_SEED) -> dict[str, int]:
    """Case -> fold, shuffled with a fixed seed (nnU-Net's 5-fold split; fewer folds for fewer cases)."""
    k = max(1, min(num_folds, len(case_ids)))
    order = np.random.RandomState(seed).permutation(sorted(case_ids))
    return {str(c): int(i % k) for i, c in enumerate(order)}


def label_maps(plans: dict) -> tuple[list[int], list[int]]:
    """Dataset label values and the contiguous class indices the network predicts."""
    values = sorted(int(k) for k in plans["labels"])
    return values, list(range(len(values)))


def channel_def(plans: dict) -> dict[str, str]:
    """Output channel -> class name. The network predicts contiguous class indices in the order of the
    dataset's label values (nnU-Net requires consecutive labels; other values are mapped on loading)."""
    return {str(i): plans["labels"][str(v)] for i, v in enumerate(label_maps(plans)[0])}


def foreground_share(plans: dict, cfg: dict) -> float:
    """Share of a configuration's patches centred on a random foreground class: nnU-Net v2's per-batch share.

    nnU-Net forces the last samples of each batch to contain foreground: all but the first
    ``round(batch * (1 - p))``, ``p = oversample_foreground_percent`` (0.33; the plans' ``foreground_sampling_ratio``),
    so 1 of 2 at batch 2 (0.5) and 7 of 20 at batch 20 (0.35). The bundle samples it per patch with that
    probability. A batch of 1 (nnU-Net: no forced foreground) gets ``p`` per patch (nnU-Net's probabilistic mode).
    Plans written before this rule hold 0.5, a per-patch probability: used as it is.
    """
    p = float(plans.get("foreground_sampling_ratio", 0.33))
    if p >= 0.5:
        return p
    batch = int(cfg.get("batch_size", 2))
    forced = batch - round(batch * (1 - p))
    return forced / batch if forced > 0 else p


def deep_supr_num(num_stages: int) -> int:
    """Deep-supervision heads beside the main output: every decoder level but the lowest (nnU-Net v2)."""
    return max(1, min(num_stages - 3, num_stages - 2))


# --------------------------------------------------------------------------------------------- transform builders


def _crop_size(plans: dict, cfg: dict) -> tuple[list[int], int | None]:
    """3D crop size of a configuration and the axis squeezed to make 2D slices (None for 3D)."""
    if cfg["spatial_dims"] == 3:
        return list(cfg["patch_size"]), None
    if plans.get("file_ndim", 3) == 2:
        return list(cfg["patch_size"]), None
    axis = cfg["slice_axis"]
    size = list(cfg["patch_size"])
    size.insert(axis, 1)
    return size, axis


def _pixdim(plans: dict, cfg: dict) -> list[float]:
    """Target spacing for ``Spacingd``; a 2D configuration keeps the slice axis as it is (non-positive)."""
    if cfg["spatial_dims"] == 3 or plans.get("file_ndim", 3) == 2:
        return [float(s) for s in cfg["spacing"]]
    pix = [float(s) for s in cfg["spacing"]]
    pix.insert(cfg["slice_axis"], -1.0)
    return pix


def deterministic_transforms(plans: dict, cfg: dict, keys: list[str], cascade: bool) -> list[dict]:
    """Load, crop to nonzero (training), resample, normalise, map labels to class indices."""
    values, classes = label_maps(plans)
    has_label = "label" in keys
    seg_keys = [k for k in keys if k != "image"]
    t: list[dict] = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32"},
    ]
    if has_label:  # nnU-Net crops every training case to its nonzero region
        t.append({"_target_": "CropForegroundd", "keys": keys, "source_key": "image",
                  "select_fn": "$lambda x: x != 0", "allow_smaller": True})
    pixdim = _pixdim(plans, cfg)
    t.append({"_target_": "Spacingd", "keys": keys, "pixdim": "@spacing" if pixdim == cfg["spacing"] else pixdim,
              "mode": ["bilinear" if k == "image" else "nearest" for k in keys]})
    t.append({"_target_": "labelzoo.planning.transforms.PlannedNormalized", "keys": "image",
              "channels": "@normalization"})
    if cascade and has_label:  # stage-1 segmentation (label channel 1, class indices) -> one-hot image channels
        t.append({"_target_": "labelzoo.planning.transforms.SplitPreviousStaged", "keys": "label",
                  "image_key": "image", "num_classes": len(classes),
                  "image_channels": len(plans["channel_names"])})
    if seg_keys and values != classes:  # dataset label values -> contiguous class indices
        t.append({"_target_": "MapLabelValued", "keys": seg_keys, "orig_labels": values, "target_labels": classes})
    return t


def random_transforms(plans: dict, cfg: dict) -> list[dict]:
    """Foreground-oversampled patch crops and nnU-Net-like augmentation (rotation, scaling, noise, blur,
    brightness, contrast / gamma, mirroring)."""
    keys = ["image", "label"]
    n = len(plans["labels"])
    crop, squeeze_axis = _crop_size(plans, cfg)
    f = foreground_share(plans, cfg)
    n_fg = n - 1
    ratios = [round(n_fg * (1 - f) / f, 6)] + [1] * n_fg
    size: Any = "@patch_size" if squeeze_axis is None else crop
    t: list[dict] = [
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": size},
        # Where each class is, computed once per case (deterministic: CacheDataset caches it with the case),
        # at most CLASS_LOCATIONS voxels per class as nnU-Net's preprocessing does; without it the crop scans the
        # whole label for every patch (the largest share of the data pipeline's time per iteration).
        {"_target_": "ClassesToIndicesd", "keys": "label", "indices_postfix": "_cls_indices", "num_classes": n,
         "max_samples_per_class": CLASS_LOCATIONS},
        # the random part runs on plain tensors, without MetaTensor bookkeeping (training inverts nothing; see
        # TrackMetad); tracking is back on after the last random transform
        {"_target_": "labelzoo.planning.transforms.TrackMetad", "keys": keys, "track": False},
        {"_target_": "RandCropByLabelClassesd", "keys": keys, "label_key": "label", "spatial_size": size,
         "num_classes": n, "ratios": ratios, "num_samples": 1, "warn": False, "indices_key": "label_cls_indices"},
        # the locations (one array per class, lengths differ between cases) must not reach the collate
        {"_target_": "SelectItemsd", "keys": keys},
    ]
    dims = cfg["spatial_dims"]
    if squeeze_axis is not None:
        t.append({"_target_": "SqueezeDimd", "keys": keys, "dim": squeeze_axis + 1})
    angle = math.radians(30) if dims == 3 else math.pi
    linear = "trilinear" if dims == 3 else "bilinear"
    # nnU-Net resamples the label linearly as one map per class and keeps the largest (batchgeneratorsv2
    # SpatialTransform, mode_seg "bilinear"): smoother organ edges than nearest neighbour after a rotation or zoom
    onehot = onehot_labels(n, crop)
    rotate: dict[str, Any] = {"_target_": "RandRotated", "keys": keys, "prob": 0.2, "range_x": angle,
                              "mode": ["bilinear", "bilinear" if onehot else "nearest"], "padding_mode": "zeros",
                              "keep_size": True}
    if dims == 3:
        rotate.update({"range_y": angle, "range_z": angle})
    zoom = {"_target_": "RandZoomd", "keys": keys, "prob": 0.2, "min_zoom": 0.7, "max_zoom": 1.4,
            "mode": [linear, linear if onehot else "nearest"], "padding_mode": "constant", "keep_size": True}
    # nnU-Net v2 nnUNetTrainer.get_training_transforms, in its order and with its probabilities (see RECIPE)
    if onehot:  # label values, not class indices: the partial-label ignore value passes too
        t += [{"_target_": "labelzoo.planning.transforms.LabelToIndicatorsd", "keys": "label"}, rotate, zoom,
              {"_target_": "labelzoo.planning.transforms.IndicatorsToLabeld", "keys": "label"}]
    else:
        t += [rotate, zoom]
    t += [
        # batchgeneratorsv2's GaussianNoiseTransform(noise_variance=(0, 0.1)) draws the *std* from (0, 0.1)
        {"_target_": "RandGaussianNoised", "keys": "image", "prob": 0.1, "std": 0.1, "sample_std": True},
        # nnU-Net: p 0.2, then each channel p 0.5 (p_per_channel): each channel is blurred with p 0.1
        {"_target_": "RandGaussianSmoothd", "keys": "image", "prob": 0.1, "sigma_x": [0.5, 1.0],
         "sigma_y": [0.5, 1.0], "sigma_z": [0.5, 1.0]},
        {"_target_": "RandScaleIntensityd", "keys": "image", "prob": 0.15, "factors": 0.25},
        {"_target_": "RandScaleIntensityFixedMeand", "keys": "image", "prob": 0.15, "factors": 0.25,
         "preserve_range": True},
        # nnU-Net: p 0.25, then each channel p 0.5
        {"_target_": "RandSimulateLowResolutiond", "keys": "image", "prob": 0.125, "zoom_range": [0.5, 1.0],
         "downsample_mode": "nearest", "upsample_mode": linear},
        {"_target_": "RandAdjustContrastd", "keys": "image", "prob": 0.1, "gamma": [0.7, 1.5],
         "invert_image": True, "retain_stats": True},
        {"_target_": "RandAdjustContrastd", "keys": "image", "prob": 0.3, "gamma": [0.7, 1.5],
         "invert_image": False, "retain_stats": True},
    ]
    t += [{"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": a} for a in range(dims)]
    t.append({"_target_": "labelzoo.planning.transforms.TrackMetad", "keys": keys, "track": True})
    return t


def onehot_labels(n_classes: int, crop: list[int]) -> bool:
    """Whether rotation and scaling resample the label one-hot (linear per class, then argmax) rather than by
    nearest neighbour: when the one-hot float32 patch stays within ``ONEHOT_LABEL_BYTES``."""
    return n_classes * math.prod(crop) * 4 <= ONEHOT_LABEL_BYTES


def mirror_axes(plans: dict, cfg: dict) -> list[int]:
    """Spatial axes of the inferer's input that test-time mirroring flips (nnU-Net: every axis of the
    configuration; for slice-wise 2D inference of a volume, the two in-plane axes)."""
    _, squeeze_axis = _crop_size(plans, cfg)
    if squeeze_axis is None:
        return list(range(cfg["spatial_dims"]))
    return [a for a in range(3) if a != squeeze_axis]


def _inferer(plans: dict, cfg: dict) -> dict:
    crop, squeeze_axis = _crop_size(plans, cfg)
    if squeeze_axis is not None:
        return {"_target_": "SliceInferer", "roi_size": cfg["patch_size"], "spatial_dim": squeeze_axis,
                "sw_batch_size": "@sw_batch_size", "overlap": 0.5, "mode": "gaussian", "progress": False}
    return {"_target_": "SlidingWindowInferer", "roi_size": "@patch_size", "sw_batch_size": "@sw_batch_size",
            "overlap": 0.5, "mode": "gaussian"}


def network_def(plans: dict, cfg: dict, cascade: bool) -> dict:
    """MONAI ``DynUNet`` with the planned topology, instance norm, leaky ReLU and deep supervision.

    Training builds :class:`labelzoo.networks.NativeHeadsDynUNet` (DynUNet whose deep-supervision heads stay at
    their own resolution, as nnU-Net's; same state dict); ``inference_config`` sets ``DynUNet`` back."""
    n_classes = len(plans["labels"])
    in_ch = len(plans["channel_names"]) + (n_classes if cascade else 0)
    stages = len(cfg["strides"])
    net = {
        "_target_": "labelzoo.networks.NativeHeadsDynUNet",
        "spatial_dims": cfg["spatial_dims"],
        "in_channels": in_ch,
        "out_channels": n_classes,
        "kernel_size": cfg["kernel_sizes"],
        "strides": cfg["strides"],
        "upsample_kernel_size": cfg["strides"][1:],
        "filters": cfg["features_per_stage"],
        "norm_name": ["INSTANCE", {"affine": True}],
        "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
        "deep_supervision": stages >= 3,
        "deep_supr_num": deep_supr_num(stages),
        "res_block": False,
    }
    return net


# --------------------------------------------------------------------------------------------- config builders


def _common(plans: dict, cfg: dict, dataset_dir: str, cascade: bool) -> dict:
    values, _ = label_maps(plans)
    common: dict[str, Any] = {
        "imports": ["$import glob", "$import os", "$import json", "$import ignite", "$import labelzoo",
                    "$import labelzoo.planning.transforms", "$import labelzoo.inferers", "$import labelzoo.metrics"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": dataset_dir,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "patch_size": cfg["patch_size"],
        "spacing": cfg["spacing"],
        "normalization": plans["normalization"],
        "label_values": values,
        "sw_batch_size": 4,
        "num_workers": "$labelzoo.planning.transforms.num_workers()",
        "network_def": network_def(plans, cfg, cascade),
        "network": "$@network_def.to(@device)",
    }
    if cascade:
        common["previous_stage_dir"] = "$@bundle_root + '/../' + @previous_stage_bundle + '/cv/predictions'"
    return common


def train_config(plans: dict, cfg: dict, dataset_dir: str, cascade: bool = False,
                 previous_stage_bundle: str | None = None) -> dict:
    """``train.json``: SGD + poly LR, Dice+CE with deep supervision, fold-based train / validation split."""
    keys = ["image", "label"]
    n = len(plans["labels"])
    conf = _common(plans, cfg, dataset_dir, cascade)
    # cascade: 'label' = [ground truth, stage-1 cross-validation prediction] (see SplitPreviousStaged)
    prev = ("$[dict(d, label=[d['label'], os.path.join(@previous_stage_dir, d['case_id'] + '_seg.nii.gz')]) "
            "for d in monai.data.load_decathlon_datalist(@datalist_file, True, 'training', @dataset_dir)]")
    conf.update({
        "previous_stage_bundle": previous_stage_bundle,
        "datalist_file": "$@bundle_root + '/configs/datalist.json'",
        "datalist": prev if cascade else
        "$monai.data.load_decathlon_datalist(@datalist_file, True, 'training', @dataset_dir)",
        "fold": 0,
        "train_datalist": "$[d for d in @datalist if d.get('fold', -1) != @fold] or @datalist",
        "val_datalist": "$[d for d in @datalist if d.get('fold', -1) == @fold] or @datalist[:1]",
        "num_epochs": DEFAULT_EPOCHS,
        "iterations_per_epoch": ITERATIONS_PER_EPOCH,
        "batch_size": cfg["batch_size"],
        "learning_rate": 0.01,
        # random seed of the training (weights, patch sampling, augmentation): `--seed N` for a repeat
        "seed": 0,
        "num_threads": "$torch.get_num_threads()",
        "val_interval": 50,
        "cache_rate": 1.0,
        "amp": "$torch.cuda.is_available()",
        "loss": {"_target_": "labelzoo.planning.transforms.DeepSupervisionDiceCELoss", "to_onehot_y": True,
                 "softmax": True, "batch": bool(cfg.get("batch_dice", False)), "include_background": False},
        "optimizer": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": "@learning_rate",
                      "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5},
        "lr_scheduler": {"_target_": "torch.optim.lr_scheduler.PolynomialLR", "optimizer": "@optimizer",
                         "total_iters": "@num_epochs", "power": 0.9},
        "train": {
            "deterministic_transforms": deterministic_transforms(plans, cfg, keys, cascade),
            "random_transforms": random_transforms(plans, cfg),
            "preprocessing": {"_target_": "Compose",
                              "transforms": "$@train#deterministic_transforms + @train#random_transforms"},
            "dataset": {"_target_": "CacheDataset", "data": "@train_datalist", "transform": "@train#preprocessing",
                        "cache_rate": "@cache_rate", "num_workers": "@num_workers"},
            "sampler": {"_target_": "torch.utils.data.RandomSampler", "data_source": "@train#dataset",
                        "replacement": True,
                        "num_samples": "$@iterations_per_epoch * @batch_size"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size",
                           "sampler": "@train#sampler", "num_workers": "@num_workers"},
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": [{"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": True},
                         # nnU-Net clips the gradient norm to 12 before every SGD step
                         {"_target_": "labelzoo.optim.ClipGradNorm", "max_norm": 12.0},
                         *train_handlers()],
            "trainer": {"_target_": "SupervisedTrainer", "max_epochs": "@num_epochs", "device": "@device",
                        "train_data_loader": "@train#dataloader", "network": "@network", "loss_function": "@loss",
                        "optimizer": "@optimizer", "inferer": "@train#inferer", "train_handlers": "@train#handlers",
                        "amp": "@amp"},
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "%train#deterministic_transforms"},
            "dataset": {"_target_": "CacheDataset", "data": "@val_datalist", "transform": "@validate#preprocessing",
                        "cache_rate": "@cache_rate", "num_workers": "@num_workers"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 1,
                           "shuffle": False, "num_workers": "@num_workers"},
            "inferer": _inferer(plans, cfg),
            "postprocessing": {"_target_": "Compose", "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False], "to_onehot": n},
            ]},
            "handlers": validate_handlers(),
            "key_metric": mean_dice_key_metric(),
            "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                          "val_data_loader": "@validate#dataloader", "network": "@network",
                          "inferer": "@validate#inferer", "postprocessing": "@validate#postprocessing",
                          "key_val_metric": "@validate#key_metric", "val_handlers": "@validate#handlers",
                          "amp": "@amp"},
        },
        # torch's threads as the process has them (one per core, or OMP_NUM_THREADS); `--num_threads 1` on cores
        # other work already uses (README, "Parity benchmark")
        "initialize": ["$monai.utils.set_determinism(seed=@seed)", "$torch.set_num_threads(@num_threads)"],
        "run": ["$@train#trainer.run()"],
    })
    if not cascade:
        conf.pop("previous_stage_bundle")
    return conf


def inference_config(plans: dict, cfg: dict, dataset_dir: str, cascade: bool = False,
                     previous_stage_bundle: str | None = None, stage1_cfg: dict | None = None) -> dict:
    """``inference.json``: sliding-window (or slice-wise) softmax, inverted to the input geometry, argmax,
    optional largest-component post-processing, saved. The prediction holds class indices (``channel_def``)."""
    keys = ["image"]
    conf = _common(plans, cfg, dataset_dir, cascade)
    # Inference needs no deep-supervision heads; without them DynUNet is TorchScript-able. The training
    # checkpoint's head weights, and only those, are skipped; the rest loads strictly (PlannedCheckpointLoader).
    conf["network_def"].update({"_target_": "DynUNet", "deep_supervision": False})
    data = "$[{'image': i} for i in sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii*'))]"
    inferer: dict[str, Any] = {"_target_": "labelzoo.inferers.MirroringInferer", "inferer": _inferer(plans, cfg),
                               "spatial_axes": mirror_axes(plans, cfg), "enabled": "@use_mirroring"}
    if cascade:  # stage 1 runs inside the inferer: the bundle takes only 'image'
        if stage1_cfg is None:
            raise LabelZooError("the cascade needs the 3d_lowres configuration in the plans")
        conf.pop("previous_stage_dir", None)
        stage1 = network_def(plans, stage1_cfg, cascade=False)
        stage1.update({"_target_": "DynUNet", "deep_supervision": False})
        ratio = [lo / fu for lo, fu in zip(stage1_cfg["spacing"], cfg["spacing"], strict=True)]
        conf.update({
            "previous_stage_bundle": previous_stage_bundle,
            "stage1_network_def": stage1,
            "stage1_checkpoint": "$@bundle_root + '/../' + @previous_stage_bundle + '/models/model.pt'",
            "stage1_patch_size": stage1_cfg["patch_size"],
        })
        inferer = {"_target_": "labelzoo.planning.cascade.CascadeInferer", "stage1_network": "@stage1_network_def",
                   "stage1_checkpoint": "@stage1_checkpoint", "roi_size": "@patch_size",
                   "stage1_roi_size": "@stage1_patch_size", "spacing_ratio": ratio,
                   "num_classes": len(plans["labels"]), "sw_batch_size": "@sw_batch_size", "overlap": 0.5,
                   "mode": "gaussian", "image_channels": len(plans["channel_names"])}
    post: list[dict] = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    ]
    post.append({"_target_": "KeepLargestConnectedComponentd", "keys": "pred",
                 "applied_labels": "@postprocessing_lcc_classes", "independent": True, "connectivity": None})
    post.append({"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
                 "separate_folder": False, "resample": False, "output_dtype": "$numpy.uint8", "print_log": False})
    conf.update({
        "imports": conf["imports"] + ["$import numpy"],
        "datalist": data,
        "postprocessing_lcc_classes": "$[]",
        # nnU-Net's test-time augmentation: mean of the logits of every mirroring (2^dims predictions)
        "use_mirroring": not cascade,
        "preprocessing": {"_target_": "Compose", "transforms": deterministic_transforms(plans, cfg, keys, cascade)},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": "@num_workers"},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post},
        "handlers": [{"_target_": "labelzoo.planning.transforms.PlannedCheckpointLoader",
                      "load_path": "$@ckpt_dir + '/model.pt'", "network": "@network", "map_location": "@device",
                      "strict": True},
                     {"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": "$torch.cuda.is_available()"},
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    })
    return conf


def hd95_metric_handler() -> dict:
    """Ignite handler config of :class:`labelzoo.metrics.HD95Metric` (HD95 in mm over foreground classes)."""
    return {"_target_": "IgniteMetricHandler",
            "metric_fn": {"_target_": "labelzoo.metrics.HD95Metric", "include_background": False},
            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}


def evaluate_config() -> dict:
    """``evaluate.json``: overrides train.json to score ``models/model.pt`` on the validation fold."""
    return {
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@ckpt_dir + '/model.pt'",
             "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "MetricsSaver", "save_dir": "@output_dir", "metrics": ["val_mean_dice", "val_hd95"],
             "metric_details": ["val_mean_dice", "val_hd95"],
             "batch_transform": "$lambda x: [xx['image'].meta for xx in x]", "summary_ops": "*"},
        ],
        # HD95 in mm (spacing from the label's affine), labelzoo's one implementation
        "validate#additional_metrics": {"val_hd95": hd95_metric_handler()},
        "validate#evaluator#additional_metrics": "@validate#additional_metrics",
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@validate#evaluator.run()"],
    }


def smoke_config(plans: dict, cfg: dict, cascade: bool, stage1_strides: list | None = None) -> dict:
    """``configs/smoke.json`` for ``labelzoo bundle verify``: synthetic data one patch large at the planned
    spacing, a narrow network (same topology), one iteration. The cascade uses a label as stand-in for the
    stage-1 prediction."""
    values, _ = label_maps(plans)
    crop, squeeze_axis = _crop_size(plans, cfg)
    size, spacing = list(crop), [float(s) for s in cfg["spacing"]]
    if squeeze_axis is not None:
        size[squeeze_axis] = 4
        spacing.insert(squeeze_axis, float(plans["fullres_target_spacing"][squeeze_axis]))
    decathlon = "monai.data.load_decathlon_datalist(@dataset_dir + '/dataset.json', True, 'training', @dataset_dir)"
    train: dict[str, Any] = {"num_epochs": 1, "iterations_per_epoch": 1, "val_interval": 1, "batch_size": 2,
                             "cache_rate": 0.0, "datalist_file": "$@dataset_dir + '/dataset.json'"}
    inference: dict[str, Any] = {}
    every: dict[str, Any] = {"network_def#filters": [8 * 2 ** min(i, 3) for i in range(len(cfg["strides"]))],
                             "num_workers": 0, "sw_batch_size": 1}
    if cascade:
        # verify writes images with the network's input channels (image + one-hot stage 1); the extra
        # channels pass the normalisation and are dropped before the stage-1 one-hot is appended
        # (image_channels); the label stands in for the stage-1 prediction; an untrained stage 1 runs.
        n_img, n_cls = len(plans["channel_names"]), len(values)
        every["normalization"] = plans["normalization"] + [
            {"channel": n_img + i, "name": "smoke", "scheme": "NoNormalization", "use_mask": False}
            for i in range(n_cls)]
        train["datalist"] = f"$[dict(d, label=[d['label'], d['label']]) for d in {decathlon}]"
        inference["stage1_checkpoint"] = "$None"
        inference["stage1_network_def#filters"] = [8 * 2 ** min(i, 3) for i in range(len(stage1_strides or []))]
    return {
        # the cascade's stand-in stage-1 map must hold class indices: paint those
        "data": {"spatial_size": size, "spacing": spacing,
                 "label_values": list(range(len(values))) if cascade else values, "num_training": 3,
                 "num_test": 1, "patch_size": cfg["patch_size"]},
        "all": every,
        "train": train,
        "evaluate": {},
        "inference": inference,
    }


def metadata(plans: dict, configuration: str, cfg: dict, name: str, cascade: bool) -> dict:
    """``metadata.json`` (model-zoo schema); ``channel_def`` of ``pred`` holds the dataset's label values."""
    import monai
    import torch

    n_classes = len(plans["labels"])
    n_in = len(plans["channel_names"]) + (n_classes if cascade else 0)
    channel_def_in = {str(k): v for k, v in plans["channel_names"].items()}
    if cascade:
        channel_def_in.update({str(len(plans["channel_names"]) + i): f"stage-1 one-hot {lab}"
                               for i, lab in enumerate(plans["labels"].values())})
    ct = all(v.lower() == "ct" for v in plans["channel_names"].values())
    return {
        "schema": META_SCHEMA,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"planned by labelzoo plan ({plans['planner']}, "
                                      f"{plans['gpu_memory_gb']:g} GB budget), configuration {configuration}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"labelzoo": labelzoo.__version__, "nibabel": package_version("nibabel"),
                                      "pytorch-ignite": package_version("pytorch-ignite"),
                                      "tensorboard": package_version("tensorboard")},
        "supported_apps": {"monailabel": ""},
        "name": name,
        "task": f"{plans['dataset_name']} segmentation, nnU-Net {configuration} configuration",
        "description": (f"DynUNet planned by LabelZoo's self-configuring planner (nnU-Net v2 rules) for "
                        f"{plans['dataset_name']}: configuration {configuration}, spacing {cfg['spacing']}, "
                        f"patch {cfg['patch_size']}, batch {cfg['batch_size']}."),
        "authors": "LabelZoo planner",
        "copyright": "Copyright (c) LabelZoo contributors",
        "data_source": f"{plans['dataset_name']} ({plans['num_training']} training cases)",
        "data_type": "nibabel",
        "image_classes": ", ".join(f"channel {k}: {v}" for k, v in channel_def_in.items()),
        "label_classes": ", ".join(f"{k}: {v}" for k, v in plans["labels"].items()),
        "pred_classes": ", ".join(f"{k}: {v}" for k, v in channel_def(plans).items())
        + ("" if label_maps(plans)[0] == label_maps(plans)[1] else
           " (class indices; dataset label values " + ", ".join(map(str, label_maps(plans)[0])) + " in this order)"),
        "intended_use": "Research; train on your own data with `labelzoo train-cv` before use.",
        "references": [
            "Isensee F. et al. nnU-Net: a self-configuring method for deep learning-based biomedical image "
            "segmentation. Nature Methods 18, 203-211 (2021).",
        ],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "hounsfield" if ct else "magnitude",
                "modality": "/".join(plans["channel_names"].values()), "num_channels": n_in,
                "spatial_shape": cfg["patch_size"], "dtype": "float32", "value_range": [],
                "is_patch_data": True, "channel_def": channel_def_in,
            }},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": n_classes,
                "spatial_shape": cfg["patch_size"], "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": True, "channel_def": channel_def(plans),
            }},
        },
    }


def recipe_table() -> str:
    """:data:`RECIPE` as a Markdown table."""
    rows = ["| item | nnU-Net v2 | this bundle | status | why |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {' | '.join(r)} |" for r in RECIPE]
    return "\n".join(rows)


def readme(plans: dict, configuration: str, cfg: dict, name: str, cascade: bool, previous: str | None) -> str:
    """``docs/README.md`` of a planned bundle: what was planned and how to train, validate and infer."""
    norm = "; ".join(f"channel {n['channel']} ({n['name']}): {n['scheme']}"
                     + (" on the nonzero mask" if n["use_mask"] else "") for n in plans["normalization"])
    cascade_txt = ""
    if cascade:
        cascade_txt = (f"\n## Cascade\n\nStage 2 of the cascade: the input is the image plus the one-hot segmentation "
                       f"of stage 1 (`{previous}`), resampled to this bundle's spacing. Train `{previous}` "
                       "first: training reads its cross-validation predictions from "
                       "`../<stage-1>/cv/predictions/<case>_seg.nii.gz` (written by `labelzoo train-cv`); inference "
                       "runs stage 1 itself (`CascadeInferer`, weights `../<stage-1>/models/model.pt`).\n")
    return f"""# {name}

DynUNet for **{plans['dataset_name']}**, configuration `{configuration}`, planned by LabelZoo's self-configuring
planner (`labelzoo plan`, nnU-Net v2 rules; see the LabelZoo README, section "Self-configuring planner").

| setting | value |
| --- | --- |
| spacing (mm) | {cfg['spacing']} |
| patch size | {cfg['patch_size']} |
| batch size | {cfg['batch_size']} |
| stages / strides | {len(cfg['strides'])} / {cfg['strides']} |
| kernel sizes | {cfg['kernel_sizes']} |
| features per stage | {cfg['features_per_stage']} |
| normalisation | {norm} |
| GPU memory budget | {plans['gpu_memory_gb']:g} GB (estimated, not measured) |

Training follows nnU-Net v2 where MONAI allows: SGD (lr 0.01, Nesterov momentum 0.99, weight decay 3e-5,
polynomial decay 0.9, gradient norm clipped to 12), {DEFAULT_EPOCHS} epochs of {ITERATIONS_PER_EPOCH} iterations,
Dice + cross-entropy with deep supervision, {round(foreground_share(plans, cfg) * 100)}% of patches centred on a
random foreground class (nnU-Net's share of a batch of {cfg.get('batch_size')}), 5-fold cross-validation (`fold` in
`configs/datalist.json`); mirrored test-time augmentation at inference. `--seed N` repeats a training with another
random seed (default 0).
{cascade_txt}
## Recipe against nnU-Net v2 (`nnUNetTrainer`, v2.8.1), item by item

{recipe_table()}

## Commands

```bash
python -m monai.bundle run --config_file configs/train.json --bundle_root . --fold 0
python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" --bundle_root .
python -m monai.bundle run --config_file configs/inference.json --bundle_root .
```

`dataset_dir` points at the dataset the plan was made from; override it with `--dataset_dir`. Weights
(`models/model.pt`) come from training and are not shipped.
"""


# --------------------------------------------------------------------------------------------- writing


def emit_bundle(plans: dict, configuration: str, out_dir: str | Path, dataset_dir: str,
                cases: list[str], anatomy: str | None = None, overwrite: bool = False) -> Path:
    """Write the bundle of one configuration into ``out_dir / <bundle name>`` and return its folder."""
    configs = plans["configurations"]
    if configuration not in configs:
        raise LabelZooError(f"configuration {configuration!r} is not in the plans (planned: {', '.join(configs)})")
    cfg = dict(configs[configuration])
    cascade = configuration == "3d_cascade_fullres"
    previous = bundle_name(plans, "3d_lowres", anatomy) if cascade else None
    name = bundle_name(plans, configuration, anatomy)
    root = Path(out_dir) / name
    if root.exists():
        if not overwrite:
            raise LabelZooError(f"{root} exists: choose another --out or pass --overwrite")
        shutil.rmtree(root / "configs", ignore_errors=True)
    folds = assign_folds(cases)
    datalist = {"training": [{"case_id": c["case_id"], "image": c["image"] if len(c["image"]) > 1 else c["image"][0],
                              "label": c["label"], "fold": folds[c["case_id"]]} for c in plans.get("cases", [])]}
    train = train_config(plans, cfg, dataset_dir, cascade, previous)
    write_json_atomic(root / "configs" / "train.json", train)
    stage1 = configs.get("3d_lowres") if cascade else None
    write_json_atomic(root / "configs" / "inference.json",
                      inference_config(plans, cfg, dataset_dir, cascade, previous, stage1))
    write_json_atomic(root / "configs" / "evaluate.json", evaluate_config())
    write_json_atomic(root / "configs" / "multi_gpu_train.json", multi_gpu_train_for(train))
    write_json_atomic(root / "configs" / "metadata.json", metadata(plans, configuration, cfg, name, cascade))
    write_json_atomic(root / "configs" / "datalist.json", datalist)
    write_json_atomic(root / "configs" / "smoke.json",
                      smoke_config(plans, cfg, cascade, stage1["strides"] if stage1 else None))
    values = label_maps(plans)[0]
    write_json_atomic(root / "configs" / "plan.json", {
        "configuration": configuration, **cfg,
        # classes whose every training label is one connected component: largest-component post-processing
        # is tried on them after cross-validation (labelzoo find-best)
        "lcc_candidates": lcc_candidates(plans.get("cases", []), values[1:])})
    (root / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "README.md").write_text(readme(plans, configuration, cfg, name, cascade, previous))
    (root / "models").mkdir(exist_ok=True)
    (root / "large_files.yml").write_text(large_files_yml())
    (root / "LICENSE").write_text(LICENSE_TEXT)
    return root


def emit_bundles(plans: dict, fingerprint: dict, out_dir: str | Path, dataset_dir: str | Path,
                 configurations: list[str] | None = None, anatomy: str | None = None,
                 overwrite: bool = False) -> list[Path]:
    """Write one bundle per configuration (default: all planned) and ``plans.json`` into ``out_dir``.

    ``dataset_dir`` becomes the bundles' ``dataset_dir`` (the fingerprint's case paths are relative to it).
    """
    out_dir = Path(out_dir).expanduser()
    plans = {**plans, "cases": fingerprint.get("cases", [])}
    wanted = configurations or list(plans["configurations"])
    unknown = [c for c in wanted if c not in plans["configurations"]]
    if unknown:
        raise LabelZooError(f"--configurations {unknown} not planned for this dataset "
                            f"(planned: {', '.join(plans['configurations'])})")
    cases = [c["case_id"] for c in plans["cases"]]
    ds = str(Path(dataset_dir).expanduser().resolve())
    written = [emit_bundle(plans, c, out_dir, ds, cases, anatomy, overwrite) for c in wanted]
    logger.info("wrote %d bundle(s) to %s", len(written), out_dir)
    return written
