"""The pure planner: fingerprint dict -> plans dict (nnU-Net v2's ``ExperimentPlanner``).

No file is read, no network is built, no GPU is queried: the GPU memory budget is a parameter and the
memory a configuration needs is estimated by :func:`labelzoo.planning.rules.estimate_feature_map_voxels`.
Every constant is a class attribute, named as in nnU-Net v2
(``nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py``), so a subclass can
retune it::

    class BigGPUPlanner(ExperimentPlanner):
        UNet_max_features_3d = 512

    plans = BigGPUPlanner(gpu_memory_gb=24).plan(fingerprint)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError
from labelzoo.planning import rules

logger = logging.getLogger(__name__)

PLANS_FORMAT = "labelzoo-plans/1"


class ExperimentPlanner:
    """nnU-Net v2's default experiment planner (plain-convolution U-Net), for MONAI DynUNet.

    Args:
        gpu_memory_gb: GPU memory budget the configurations must fit, in GB (nnU-Net's
            ``gpu_memory_target_in_gb``, default 8).
        overwrite_target_spacing: use this full-resolution spacing instead of the rule.

    Example:
        >>> from labelzoo.planning.planner import ExperimentPlanner
        >>> fp = {"format": "labelzoo-fingerprint/1", "dataset_name": "demo", "channel_names": {"0": "CT"},
        ...       "labels": {"0": "background", "1": "liver"}, "num_training": 10,
        ...       "spacings": [[1.0, 1.0, 1.0]] * 10, "shapes_after_crop": [[64, 64, 64]] * 10,
        ...       "median_relative_size_after_cropping": 1.0,
        ...       "foreground_intensity_properties_per_channel": {"0": {"mean": 100.0, "std": 50.0,
        ...           "percentile_00_5": -50.0, "percentile_99_5": 300.0}}}
        >>> plans = ExperimentPlanner().plan(fp)
        >>> sorted(plans["configurations"]), plans["configurations"]["3d_fullres"]["patch_size"]
        (['2d', '3d_fullres'], [64, 64, 64])
    """

    #: ``nnunetv2/configuration.py: ANISO_THRESHOLD``: an axis this many times coarser is "anisotropic".
    anisotropy_threshold: float = 3.0
    #: Percentile of the thick axis' spacings used as its target when the anisotropy rule fires.
    aniso_spacing_percentile: float = 10.0
    #: Features of the first stage (``UNet_base_num_features``; the paper's 30 became 32 in v2).
    UNet_base_num_features: int = 32
    #: Feature-map count (static estimate) that fits ``UNet_reference_val_corresp_GB`` at the reference
    #: batch size, 3D (``UNet_reference_val_3d``; "arbitrary, set to reproduce v1's configurations").
    UNet_reference_val_3d: float = 560_000_000
    #: The same for 2D (``UNet_reference_val_2d``).
    UNet_reference_val_2d: float = 85_000_000
    #: GPU memory (GB) the reference values correspond to.
    UNet_reference_val_corresp_GB: float = 8
    #: Batch size the 2D reference value corresponds to.
    UNet_reference_val_corresp_bs_2d: int = 12
    #: Batch size the 3D reference value corresponds to.
    UNet_reference_val_corresp_bs_3d: int = 2
    #: Smallest edge of a bottleneck feature map (``UNet_featuremap_min_edge_length``).
    UNet_featuremap_min_edge_length: int = 4
    #: Convolutions per encoder stage (``UNet_blocks_per_stage_encoder``).
    UNet_blocks_per_stage_encoder: int = 2
    #: Convolutions per decoder stage (``UNet_blocks_per_stage_decoder``).
    UNet_blocks_per_stage_decoder: int = 2
    #: Smallest batch size (``UNet_min_batch_size``).
    UNet_min_batch_size: int = 2
    #: Cap on features per stage in 2D (``UNet_max_features_2d``).
    UNet_max_features_2d: int = 512
    #: Cap on features per stage in 3D (``UNet_max_features_3d``).
    UNet_max_features_3d: int = 320
    #: Most pooling operations per axis (nnU-Net v2 passes 999999: unlimited, the feature-map edge decides).
    max_numpool: int = 999999
    #: Voxels per optimiser step are capped at this fraction of the dataset (``max_dataset_covered``).
    max_dataset_covered: float = 0.05
    #: A 3d_lowres (+ cascade) is planned when the fullres patch covers less than this fraction of the
    #: median image (``lowres_creation_threshold``).
    lowres_creation_threshold: float = 0.25
    #: Factor the lowres spacing grows by per step (``spacing_increase_factor``: 1.03 in v2's current
    #: planner, "used to be 1.01 but that is slow with new GPU memory estimation").
    lowres_spacing_increase_factor: float = 1.03
    #: Lowres is dropped when the fullres median image has fewer than this many times its voxels.
    lowres_min_voxel_ratio: float = 2.0
    #: Initial 3D patch volume before shrinking (``256 ** 3``).
    initial_patch_volume_3d: int = 256**3
    #: Initial 2D patch area before shrinking (``2048 ** 2``).
    initial_patch_area_2d: int = 2048**2
    #: Nonzero-mask normalisation when the median crop keeps less than this (``3 / 4.``).
    mask_for_norm_threshold: float = 0.75
    #: nnU-Net's ``oversample_foreground_percent``: the bundles centre a patch on foreground with nnU-Net's
    #: per-batch share of the planned batch size (``labelzoo.planning.emit.foreground_share``: 0.5 at batch 2).
    foreground_sampling_ratio: float = 0.33

    def __init__(self, gpu_memory_gb: float = 8.0, overwrite_target_spacing: list[float] | None = None):
        if not gpu_memory_gb or float(gpu_memory_gb) <= 0:
            raise LabelZooError(f"--gpu_memory_gb must be a positive number of GB, got {gpu_memory_gb!r}")
        self.gpu_memory_gb = float(gpu_memory_gb)
        self.overwrite_target_spacing = overwrite_target_spacing

    # ------------------------------------------------------------------------------------------ pieces

    def reference(self, dim: int) -> tuple[float, int]:
        """Feature-map budget for ``gpu_memory_gb`` and the batch size it corresponds to."""
        val = self.UNet_reference_val_2d if dim == 2 else self.UNet_reference_val_3d
        bs = self.UNet_reference_val_corresp_bs_2d if dim == 2 else self.UNet_reference_val_corresp_bs_3d
        return val * self.gpu_memory_gb / self.UNet_reference_val_corresp_GB, bs

    def topology(self, spacing: list[float], patch: list[float]) -> dict[str, Any]:
        """Strides, kernels, padded patch and features for a patch (see :func:`rules.pool_and_conv_props`)."""
        num_pool, strides, kernels, patch_size, divisible = rules.pool_and_conv_props(
            spacing, patch, self.UNet_featuremap_min_edge_length, self.max_numpool)
        max_f = self.UNet_max_features_2d if len(spacing) == 2 else self.UNet_max_features_3d
        return {
            "patch_size": [int(p) for p in patch_size],
            "num_pool_per_axis": num_pool,
            "strides": strides,
            "kernel_sizes": kernels,
            "features_per_stage": rules.features_per_stage(len(strides), self.UNet_base_num_features, max_f),
            "must_be_divisible_by": divisible,
        }

    def estimate(self, topo: dict[str, Any], num_classes: int) -> int:
        """Static feature-map count of the network for ``topo`` (the VRAM proxy)."""
        return rules.estimate_feature_map_voxels(topo["patch_size"], topo["strides"], topo["features_per_stage"],
                                                 num_classes, self.UNet_blocks_per_stage_encoder,
                                                 self.UNet_blocks_per_stage_decoder)

    def configuration(self, spacing: list[float], median_shape: list[float], n_voxels_dataset: float,
                      num_classes: int, axis_order: list[int] | None = None) -> dict[str, Any]:
        """Patch, topology and batch size of one configuration (``get_plans_for_configuration``).

        Starts from :func:`rules.initial_patch_size` and, while the estimate exceeds the budget, shrinks
        the axis that is largest relative to the median shape by one divisibility step; equal ratios are
        broken as nnU-Net does, in its transposed axis order ``axis_order`` (positions of this
        configuration's axes, see :func:`rules.nnunet_axis_order`; default: reversed file order, i.e.
        nnU-Net's z, y, x).
        """
        dim = len(spacing)
        order = list(axis_order) if axis_order is not None else list(range(dim))[::-1]
        patch = rules.initial_patch_size(spacing, median_shape, self.initial_patch_volume_3d,
                                         self.initial_patch_area_2d)
        topo = self.topology(spacing, patch)
        reference, ref_bs = self.reference(dim)
        estimate = self.estimate(topo, num_classes)
        while estimate / ref_bs * 2 > reference:
            ps = topo["patch_size"]
            axis = rules.axis_to_shrink(ps, median_shape, order)
            tmp = list(ps)
            tmp[axis] -= topo["must_be_divisible_by"][axis]
            step = rules.pool_and_conv_props(spacing, tmp, self.UNet_featuremap_min_edge_length,
                                             self.max_numpool)[4]
            new = list(ps)
            new[axis] -= step[axis]
            if new[axis] < 1:
                raise LabelZooError(
                    f"no patch fits {self.gpu_memory_gb} GB for spacing {spacing}: raise --gpu_memory_gb")
            topo = self.topology(spacing, new)
            estimate = self.estimate(topo, num_classes)
        batch = rules.batch_size_from_estimate(estimate, reference, ref_bs, topo["patch_size"], n_voxels_dataset,
                                               self.max_dataset_covered, self.UNet_min_batch_size)
        return {
            "spacing": [float(s) for s in spacing],
            "median_image_size_in_voxels": [float(m) for m in median_shape],
            "batch_size": batch,
            **topo,
            "n_conv_per_stage_encoder": [self.UNet_blocks_per_stage_encoder] * len(topo["strides"]),
            "n_conv_per_stage_decoder": [self.UNet_blocks_per_stage_decoder] * (len(topo["strides"]) - 1),
            "estimated_feature_map_voxels": estimate,
            "feature_map_budget": reference,
        }

    def normalization(self, fingerprint: dict) -> list[dict[str, Any]]:
        """Per-channel normalisation: scheme, mask use and (for CT) the clipping window and statistics."""
        names = fingerprint["channel_names"]
        schemes = [rules.normalization_scheme(names[str(c)]) for c in range(len(names))]
        masks = rules.use_mask_for_norm(schemes, fingerprint["median_relative_size_after_cropping"],
                                        self.mask_for_norm_threshold)
        props = fingerprint["foreground_intensity_properties_per_channel"]
        out = []
        for c, (scheme, mask) in enumerate(zip(schemes, masks, strict=True)):
            entry: dict[str, Any] = {"channel": c, "name": names[str(c)], "scheme": scheme, "use_mask": mask}
            if scheme == "CTNormalization":
                p = props[str(c)]
                entry.update({"clip_low": p["percentile_00_5"], "clip_high": p["percentile_99_5"],
                              "mean": p["mean"], "std": max(p["std"], 1e-8)})
            out.append(entry)
        return out

    # ------------------------------------------------------------------------------------------ the plan

    def plan(self, fingerprint: dict) -> dict[str, Any]:
        """Plans for every configuration of ``fingerprint`` (``ExperimentPlanner.plan_experiment``).

        Returns:
            A JSON-able dict: ``configurations`` maps ``2d``, ``3d_fullres`` and, when the fullres patch
            covers less than :attr:`lowres_creation_threshold` of the median image, ``3d_lowres`` and
            ``3d_cascade_fullres`` to their settings; plus labels, channels and normalisation.

        Raises:
            LabelZooError: on a fingerprint without cases or with inconsistent dimensions.
        """
        spacings = np.asarray(fingerprint.get("spacings") or [], dtype=float)
        shapes = np.asarray(fingerprint.get("shapes_after_crop") or [], dtype=float)
        if spacings.ndim != 2 or len(spacings) == 0 or spacings.shape != shapes.shape or spacings.shape[1] != 3:
            raise LabelZooError("fingerprint: 'spacings' and 'shapes_after_crop' must be equal-length lists of "
                                "three numbers per case; re-run `labelzoo plan fingerprint`")
        labels = {int(k): v for k, v in fingerprint["labels"].items()}
        num_classes = len(labels)
        n_cases = int(fingerprint.get("num_training", len(spacings)))

        target = (list(map(float, self.overwrite_target_spacing)) if self.overwrite_target_spacing
                  else rules.fullres_target_spacing(spacings, shapes, self.anisotropy_threshold,
                                                    self.aniso_spacing_percentile))
        new_shapes = [rules.compute_new_shape(sh, sp, target) for sh, sp in zip(shapes, spacings, strict=True)]
        median_shape = [float(x) for x in np.median(np.asarray(new_shapes, dtype=float), axis=0)]
        axis = rules.slice_axis(target)
        is_3d = median_shape[axis] > 1
        n_vox = float(np.prod(median_shape, dtype=np.float64) * n_cases)

        configs: dict[str, dict[str, Any]] = {}
        order3d = rules.nnunet_axis_order(axis, 3)
        if is_3d:
            fullres = self.configuration(target, median_shape, n_vox, num_classes, order3d)
            lowres = self._lowres(fullres, median_shape, n_cases, num_classes, order3d)
            fullres["batch_dice"] = lowres is not None
            configs["3d_fullres"] = fullres
            if lowres is not None:
                lowres["batch_dice"] = False
                lowres["next_stage"] = "3d_cascade_fullres"
                configs["3d_lowres"] = lowres
                configs["3d_cascade_fullres"] = {**fullres, "inherits_from": "3d_fullres",
                                                 "previous_stage": "3d_lowres"}
        in_plane = [i for i in range(3) if i != axis]
        order2d = [in_plane.index(a) for a in rules.nnunet_axis_order(axis, 2)]
        c2d = self.configuration([target[i] for i in in_plane], [median_shape[i] for i in in_plane], n_vox,
                                 num_classes, order2d)
        c2d["batch_dice"] = True
        c2d["slice_axis"] = axis
        configs["2d"] = c2d
        for name, cfg in configs.items():
            cfg["configuration"] = name
            cfg["spatial_dims"] = 2 if name == "2d" else 3

        median_spacing = np.median(spacings, axis=0)
        return {
            "format": PLANS_FORMAT,
            "dataset_name": fingerprint.get("dataset_name", "dataset"),
            "planner": type(self).__name__,
            "gpu_memory_gb": self.gpu_memory_gb,
            "channel_names": fingerprint["channel_names"],
            "labels": {str(k): v for k, v in sorted(labels.items())},
            "num_training": n_cases,
            "original_median_spacing": [float(x) for x in median_spacing],
            "original_median_shape": [int(round(x)) for x in np.median(shapes, axis=0)],
            "fullres_target_spacing": target,
            "slice_axis": axis,
            "is_3d": is_3d,
            "file_ndim": int(fingerprint.get("file_ndim", 3)),
            "normalization": self.normalization(fingerprint),
            "foreground_sampling_ratio": self.foreground_sampling_ratio,
            "foreground_intensity_properties_per_channel": fingerprint["foreground_intensity_properties_per_channel"],
            "configurations": configs,
        }

    def _lowres(self, fullres: dict, median_shape: list[float], n_cases: int, num_classes: int,
                axis_order: list[int] | None = None) -> dict | None:
        """Grow the spacing (thick-axis first) until the patch covers the threshold, or give up (v2 rule)."""
        fullres_spacing = np.asarray(fullres["spacing"], dtype=float)
        lowres_spacing = fullres_spacing.copy()
        median = np.asarray(median_shape, dtype=float)
        median_vox = float(np.prod(median, dtype=np.float64))
        patch_vox = float(np.prod(fullres["patch_size"], dtype=np.float64))
        lowres = None
        while patch_vox / median_vox < self.lowres_creation_threshold:
            max_spacing = lowres_spacing.max()
            coarse = (max_spacing / lowres_spacing) > 2
            if coarse.any():
                lowres_spacing[coarse] *= self.lowres_spacing_increase_factor
            else:
                lowres_spacing *= self.lowres_spacing_increase_factor
            shape = fullres_spacing / lowres_spacing * median
            median_vox = float(np.prod(shape, dtype=np.float64))
            lowres = self.configuration([float(s) for s in lowres_spacing], [float(round(s)) for s in shape],
                                        median_vox * n_cases, num_classes, axis_order)
            patch_vox = float(np.prod(lowres["patch_size"], dtype=np.float64))
        if lowres is None or float(np.prod(median, dtype=np.float64)) / median_vox < self.lowres_min_voxel_ratio:
            return None
        return lowres


def plan_from_fingerprint(fingerprint: dict, gpu_memory_gb: float = 8.0,
                          planner: type[ExperimentPlanner] = ExperimentPlanner) -> dict[str, Any]:
    """Convenience wrapper: ``planner(gpu_memory_gb).plan(fingerprint)``."""
    return planner(gpu_memory_gb=gpu_memory_gb).plan(fingerprint)
