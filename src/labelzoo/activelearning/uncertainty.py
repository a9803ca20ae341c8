"""Per-image uncertainty, features and agreement, computed from network outputs.

Shapes follow MONAI: one image's probabilities are ``[C, *spatial]`` (2D or 3D); repeated
predictions of one image (Monte-Carlo dropout samples, test-time augmentations) are stacked as
``[S, C, *spatial]``. ``multilabel=True`` means independent sigmoid channels (e.g. BraTS regions),
otherwise channels are a softmax over exclusive classes; a single channel is always sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

_EPS = 1e-8


def _check_samples(samples: torch.Tensor, name: str) -> torch.Tensor:
    samples = torch.as_tensor(samples, dtype=torch.float32)
    if samples.ndim < 3:
        raise ValueError(f"{name} must be [S, C, *spatial] with 1 to 3 spatial dims, got shape {tuple(samples.shape)}")
    if samples.shape[0] < 1:
        raise ValueError(f"{name} holds no samples (shape {tuple(samples.shape)})")
    return samples


def entropy_map(probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """Voxel-wise predictive entropy of one probability map, scaled to [0, 1].

    Args:
        probs: ``[C, *spatial]`` probabilities.
        multilabel: channels are independent sigmoids (binary entropy averaged over channels).

    Returns:
        ``[*spatial]`` entropy; 0 is certain, 1 is uniform (``log C`` nats for softmax, ``log 2`` per sigmoid).

    Example:
        >>> float(entropy_map(torch.tensor([[0.5], [0.5]]))[0])
        1.0
    """
    probs = torch.as_tensor(probs, dtype=torch.float32).clamp(0.0, 1.0)
    if probs.ndim < 2:
        raise ValueError(f"probs must be [C, *spatial], got shape {tuple(probs.shape)}")
    if multilabel or probs.shape[0] == 1:
        binary = -(probs * torch.log(probs + _EPS) + (1 - probs) * torch.log(1 - probs + _EPS))
        return binary.mean(dim=0) / math.log(2.0)
    ent = -(probs * torch.log(probs + _EPS)).sum(dim=0)
    return ent / math.log(probs.shape[0])


def mean_entropy(samples: torch.Tensor, multilabel: bool = False) -> float:
    """Epistemic uncertainty of one image: mean voxel entropy of the mean of ``S`` stochastic predictions.

    With Monte-Carlo dropout the ``S`` samples come from forward passes with dropout active; with a
    single sample this is the plain predictive entropy.

    Args:
        samples: ``[S, C, *spatial]`` probabilities.
        multilabel: channels are independent sigmoids.

    Returns:
        A value in [0, 1]; higher means the model is less sure.
    """
    samples = _check_samples(samples, "samples")
    return float(entropy_map(samples.mean(dim=0), multilabel=multilabel).mean())


def tta_variance(samples: torch.Tensor) -> float:
    """Disagreement between test-time augmentations: voxel-wise variance across ``T`` predictions, averaged.

    Args:
        samples: ``[T, C, *spatial]`` probabilities, each already mapped back to the original geometry.

    Returns:
        Mean (over channels and voxels) of the population variance across the ``T`` predictions; 0 when
        ``T == 1`` or all agree, at most 0.25 for probabilities.
    """
    samples = _check_samples(samples, "samples")
    return float(samples.var(dim=0, unbiased=False).mean())


def feature_vector(probs: torch.Tensor, grid: int = 4) -> np.ndarray:
    """A small descriptor of what the model sees in one image, for diversity: pooled class maps.

    The ``[C, *spatial]`` probabilities are average-pooled to ``grid`` cells per axis, flattened and
    L2-normalised, so two images with the same organs in the same places are close.

    Args:
        probs: ``[C, *spatial]`` probabilities (2D or 3D).
        grid: cells per spatial axis.

    Returns:
        ``float32`` vector of length ``C * grid ** ndim``.
    """
    probs = torch.as_tensor(probs, dtype=torch.float32)
    nd = probs.ndim - 1
    if nd not in (1, 2, 3):
        raise ValueError(f"probs must be [C, *spatial] with 1 to 3 spatial dims, got shape {tuple(probs.shape)}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[nd]
    vec = pool(probs[None], grid)[0].flatten()
    norm = torch.linalg.vector_norm(vec)
    if norm > 0:
        vec = vec / norm
    return vec.numpy().astype(np.float32)


def dice_score(label: np.ndarray, pred: np.ndarray, labels: Iterable[int] | None = None) -> float:
    """Mean Dice between a submitted label map and a suggestion, over the foreground classes.

    Args:
        label: integer label map (the annotator's final label).
        pred: integer label map of the same shape (the model's original suggestion).
        labels: classes to score (default: every non-zero class in either map).

    Returns:
        Mean Dice over the classes present in either map; 1.0 when both maps are empty.

    Raises:
        ValueError: when the shapes differ.
    """
    label = np.asarray(label)
    pred = np.asarray(pred)
    if label.shape != pred.shape:
        raise ValueError(f"label shape {label.shape} differs from prediction shape {pred.shape}")
    classes = sorted(set(labels) if labels is not None else set(np.unique(label)) | set(np.unique(pred)))
    scores = []
    for c in classes:
        if c == 0:
            continue
        a = label == c
        b = pred == c
        total = int(a.sum()) + int(b.sum())
        if total == 0:
            continue
        scores.append(2.0 * int(np.logical_and(a, b).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0
