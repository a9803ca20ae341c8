"""Pure rules of nnU-Net v2's experiment planner: numbers in, numbers out, no files, no torch, no GPU.

Each function names the nnU-Net v2 source it follows (paths under ``nnunetv2/``). Axes are in the
order of the fingerprint (file order, x y z); nothing is transposed, the slice axis of a 2D
configuration is named explicitly instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def compute_new_shape(old_shape: Sequence[float], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> list[int]:
    """Shape after resampling from ``old_spacing`` to ``new_spacing``.

    ``preprocessing/resampling/default_resampling.py: compute_new_shape``.

    Example:
        >>> compute_new_shape([100, 100, 50], [1.0, 1.0, 2.0], [2.0, 2.0, 2.0])
        [50, 50, 50]
    """
    return [int(round(s / n * o)) for o, s, n in zip(old_shape, old_spacing, new_spacing, strict=True)]


def fullres_target_spacing(spacings: Sequence[Sequence[float]], shapes_after_crop: Sequence[Sequence[float]],
                           anisotropy_threshold: float = 3.0, aniso_percentile: float = 10.0) -> list[float]:
    """Target spacing of ``3d_fullres``: the per-axis median, except on a strongly anisotropic thick axis.

    ``ExperimentPlanner.determine_fullres_target_spacing``: when the axis with the largest median
    spacing is more than ``anisotropy_threshold`` times coarser than the others *and* has fewer than
    1/``anisotropy_threshold`` of their voxels, its target is the 10th percentile of its spacings
    (but not finer than the other axes' largest spacing), to avoid interpolation artefacts from
    upsampling few thick slices.

    Example:
        >>> fullres_target_spacing([[0.7, 0.7, 5.0], [0.8, 0.8, 3.0], [0.7, 0.7, 5.0]], [[512, 512, 40]] * 3)
        [0.7, 0.7, 3.4]
    """
    sp = np.asarray(spacings, dtype=float)
    target = np.percentile(sp, 50, axis=0)
    target_size = np.percentile(np.asarray(shapes_after_crop, dtype=float), 50, axis=0)
    worst = slice_axis(target)
    others = [i for i in range(len(target)) if i != worst]
    other_spacings = [target[i] for i in others]
    other_sizes = [target_size[i] for i in others]
    has_aniso_spacing = target[worst] > anisotropy_threshold * max(other_spacings)
    has_aniso_voxels = target_size[worst] * anisotropy_threshold < min(other_sizes)
    if has_aniso_spacing and has_aniso_voxels:
        t = float(np.percentile(sp[:, worst], aniso_percentile))
        if t < max(other_spacings):
            t = max(max(other_spacings), t) + 1e-5
        target[worst] = t
    return [float(x) for x in target]


def slice_axis(target_spacing: Sequence[float]) -> int:
    """Axis a 2D configuration slices along: the coarsest one (``ExperimentPlanner.determine_transpose``).

    Ties go to the last axis (z in MONAI's x, y, z order), as nnU-Net's ``argmax`` over its z, y, x
    order gives z.
    """
    sp = np.asarray(target_spacing, dtype=float)
    return int(len(sp) - 1 - np.argmax(sp[::-1]))


def nnunet_axis_order(slice_axis_: int, ndim: int = 3) -> list[int]:
    """Our axes (file order x, y, z) listed in nnU-Net v2's transposed order.

    nnU-Net's arrays are (z, y, x) (SimpleITK order, the reverse of the file's x, y, z) and
    ``determine_transpose`` moves the coarsest axis first, keeping the others in (z, y, x) order.
    Where nnU-Net breaks a tie by position (the ``argsort(...)[-1]`` of the patch-shrink loop), LabelZoo
    must break it in this order to plan the same patch. A 2D configuration (``ndim=2``) keeps the
    in-plane axes of that order.

    Example:
        >>> nnunet_axis_order(2), nnunet_axis_order(0), nnunet_axis_order(2, ndim=2)
        ([2, 1, 0], [0, 2, 1], [1, 0])
    """
    order = [int(slice_axis_)] + [a for a in (2, 1, 0) if a != slice_axis_]
    return order if ndim == 3 else order[1:]


def axis_to_shrink(patch_size: Sequence[float], median_shape: Sequence[float], order: Sequence[int]) -> int:
    """The axis the patch-shrink loop reduces: the largest patch/median ratio, ties to the last in ``order``.

    nnU-Net runs ``np.argsort(ratios)[-1]`` on its transposed axes; for three or fewer values numpy's
    sort is an insertion sort (stable), so among equal ratios the one last in nnU-Net's order wins.
    ``order`` lists the positions of ``patch_size`` in that order (:func:`nnunet_axis_order`, re-indexed
    to the configuration's axes).

    Example:
        >>> axis_to_shrink([320, 320, 16], [320, 320, 20], [2, 1, 0])  # x and y tie: nnU-Net shrinks x
        0
    """
    ratios = [float(p) / float(m) for p, m in zip(patch_size, median_shape, strict=True)]
    if sorted(order) != list(range(len(ratios))):
        raise ValueError(f"order {list(order)} is not a permutation of the {len(ratios)} axes")
    best = max(ratios)
    return [a for a in order if ratios[a] == best][-1]


def pad_shape(shape: Sequence[float], must_be_divisible_by: Sequence[int]) -> list[int]:
    """Round ``shape`` up to a multiple of ``must_be_divisible_by`` (``network_topology.pad_shape``)."""
    out = []
    for s, d in zip(shape, must_be_divisible_by, strict=True):
        s = int(np.ceil(s)) if not float(s).is_integer() else int(s)
        out.append(s if s % d == 0 else s + d - s % d)
    return out


def pool_and_conv_props(spacing: Sequence[float], patch_size: Sequence[float], min_feature_map_size: int = 4,
                        max_numpool: int = 999999) -> tuple[list[int], list[list[int]], list[list[int]], list[int],
                                                                list[int]]:
    """Network topology for a patch: per-stage strides and kernel sizes, and the padded patch size.

    ``experiment_planning/experiment_planners/network_topology.py: get_pool_and_conv_props``. An axis
    is pooled (stride 2) while its feature map stays at least ``2 * min_feature_map_size`` and its
    spacing is within a factor 2 of the finest spacing; a single remaining axis needs
    ``3 * min_feature_map_size``. Kernels are 1 along an axis until its spacing comes within a factor 2
    of the finest, then 3. The bottleneck kernel is always 3.

    Deviation: nnU-Net indexes the kernel rule with the spacing of the *pool-able* axes
    (``spacings_of_axes[d]``), which misaligns axes once one is excluded; here the current spacing
    of axis ``d`` itself is used.

    Returns:
        ``(num_pool_per_axis, strides, kernel_sizes, patch_size, must_be_divisible_by)`` where
        ``strides[0]`` is all ones (the first stage does not downsample), ``len(strides) ==
        len(kernel_sizes)`` is the number of stages.
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    strides: list[list[int]] = [[1] * dim]
    kernels: list[list[int]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        min_sp = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / min_sp < 2]
        valid = [i for i in valid if num_pool[i] < max_numpool]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = float(np.ceil(current_size[v] / 2))
        strides.append(stride)
        kernels.append(list(kernel))
    divisible = [2**n for n in num_pool]
    patch = pad_shape(patch_size, divisible)
    kernels.append([3] * dim)
    return num_pool, strides, kernels, patch, divisible


def features_per_stage(num_stages: int, base: int, max_features: int) -> list[int]:
    """Feature maps per stage: ``base`` doubling per stage, capped (``_features_per_stage``)."""
    return [min(max_features, base * 2**i) for i in range(num_stages)]


def estimate_feature_map_voxels(patch_size: Sequence[int], strides: Sequence[Sequence[int]], features: Sequence[int],
                                num_classes: int, conv_per_stage_encoder: Sequence[int] | int = 2,
                                conv_per_stage_decoder: Sequence[int] | int = 2,
                                deep_supervision: bool = False) -> int:
    """Static count of the feature-map elements a U-Net stores for one sample (nnU-Net's VRAM proxy).

    The sum of ``compute_conv_feature_map_size`` of dynamic_network_architectures' ``PlainConvUNet``:
    encoder stage ``s`` contributes ``n_conv * features[s] * prod(size_s)``; decoder stage ``s``
    (from the bottom) its convolutions plus the transposed convolution at the skip resolution, plus
    the segmentation output (at every level with deep supervision, else only the last). nnU-Net v2
    estimates with ``deep_supervision=False`` (the network's default); the planner compares the count
    against ``UNet_reference_val_*`` instead of measuring GPU memory.

    Example:
        >>> estimate_feature_map_voxels([8, 8], [[1, 1], [2, 2]], [4, 8], num_classes=2)
        1664
    """
    n = len(strides)
    enc = [conv_per_stage_encoder] * n if isinstance(conv_per_stage_encoder, int) else list(conv_per_stage_encoder)
    dec = [conv_per_stage_decoder] * n if isinstance(conv_per_stage_decoder, int) else list(conv_per_stage_decoder)
    sizes = []
    size = [int(s) for s in patch_size]
    for st in strides:
        size = [a // b for a, b in zip(size, st, strict=True)]
        sizes.append(size)
    total = 0
    for s in range(n):
        total += enc[s] * features[s] * int(np.prod(sizes[s], dtype=np.int64))
    for s in range(n - 1):
        level = n - 2 - s
        vox = int(np.prod(sizes[level], dtype=np.int64))
        total += dec[s] * features[level] * vox  # decoder convolutions
        total += features[level] * vox  # transposed convolution output
        if deep_supervision or s == n - 2:
            total += num_classes * vox
    return int(total)


def initial_patch_size(spacing: Sequence[float], median_shape: Sequence[float], volume_3d: int = 256**3,
                       area_2d: int = 2048**2) -> list[float]:
    """Starting patch: aspect ratio of 1/spacing (isotropic in mm), a 256^3 (3D) or 2048^2 (2D) volume,
    clipped to the median image shape (``get_plans_for_configuration``; v2 differs from v1 here)."""
    tmp = 1 / np.asarray(spacing, dtype=float)
    dim = len(spacing)
    target = volume_3d if dim == 3 else area_2d
    patch = [round(float(x)) for x in tmp * (target / np.prod(tmp)) ** (1 / dim)]
    return [min(p, float(m)) for p, m in zip(patch, median_shape, strict=True)]


def batch_size_from_estimate(estimate: float, reference: float, reference_batch: int, patch_size: Sequence[int],
                             n_voxels_dataset: float, max_dataset_covered: float, min_batch_size: int) -> int:
    """Batch size: fill the memory headroom, then cap voxels per step at a fraction of the dataset.

    ``get_plans_for_configuration``: ``round(reference / estimate * reference_batch)``, capped at
    ``round(max_dataset_covered * n_voxels_dataset / prod(patch))`` and never below ``min_batch_size``.

    Example:
        >>> batch_size_from_estimate(1e8, 5.6e8, 2, [64, 64, 64], 1e9, 0.05, 2)
        11
    """
    bs = round(reference / estimate * reference_batch)
    cap = round(n_voxels_dataset * max_dataset_covered / float(np.prod(patch_size, dtype=np.float64)))
    return int(max(min(bs, cap), min_batch_size))


#: nnU-Net v2 normalisation scheme per channel name (``preprocessing/normalization/
#: map_channel_name_to_normalization.py``); any other name is z-scored.
CHANNEL_NAME_TO_NORMALIZATION: dict[str, str] = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}

#: Schemes whose ``leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true`` is True
#: (``preprocessing/normalization/default_normalization_schemes.py``): only z-score.
MASKABLE_SCHEMES = frozenset({"ZScoreNormalization"})


def normalization_scheme(channel_name: str) -> str:
    """nnU-Net v2's normalisation scheme for a channel name such as ``CT``, ``T2`` or ``noNorm``."""
    return CHANNEL_NAME_TO_NORMALIZATION.get(str(channel_name).strip().lower(), "ZScoreNormalization")


def use_mask_for_norm(schemes: Sequence[str], median_relative_size_after_cropping: float,
                      threshold: float = 0.75) -> list[bool]:
    """Normalise on the nonzero mask when cropping removed a lot (median kept size < ``threshold``).

    ``determine_normalization_scheme_and_whether_mask_is_used_for_norm``: only schemes that leave
    voxels outside the mask at zero (z-score) use the mask; CT never does.
    """
    crop_removed_a_lot = median_relative_size_after_cropping < threshold
    return [bool(crop_removed_a_lot and s in MASKABLE_SCHEMES) for s in schemes]
