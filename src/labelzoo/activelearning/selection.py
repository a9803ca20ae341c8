"""Selection rules that go beyond "most uncertain image": region uncertainty, foreground-aware random,
stochastic power sampling and class-stratified selection. Pure functions, unit-tested on fixed inputs.

Why these (see the README's *Does LabelZoo save annotation effort?*):

- **Boundary-region uncertainty.** Mean entropy over a whole volume is dominated by the large, easy
  background; the errors an annotator corrects sit on the structures' boundaries. Averaging the entropy
  over a band around each predicted structure measures what matters.
- **Foreground-aware random** (nnActive, Lüth et al., TMLR 2025): random selection biased to where the
  structures are; the baseline no method in that benchmark reliably beat.
- **Power sampling** (stochastic batch acquisition, Kirsch et al., TMLR 2023): draw with probability
  proportional to ``score ** beta`` instead of taking the top-k, so a batch is not k near-duplicates
  and noisy scores are not over-trusted.
- **Class-stratified selection** (ClaSP PE, class-stratified scheduled power predictive entropy): take
  turns between classes, ranking images by the uncertainty on that class's region, with power sampling
  whose exponent grows with the number of labels (explore first, exploit later). LabelZoo's version
  approximates the paper's schedule with a linear ramp of ``beta`` (``power_beta``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from labelzoo.activelearning.ranking import Choice
from labelzoo.activelearning.uncertainty import entropy_map


def _morph(mask: torch.Tensor, width: int, dilate: bool) -> torch.Tensor:
    """Binary dilation (or erosion) of a [*spatial] mask by a cube of half-width ``width`` (max-pooling)."""
    nd = mask.ndim
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    x = mask.float()[None, None]
    if not dilate:
        x = 1.0 - x
    y = pool(x, kernel_size=2 * width + 1, stride=1, padding=width)[0, 0]
    return y > 0.5 if dilate else y < 0.5


def boundary_band(mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Voxels within ``width`` voxels of the boundary of a binary [*spatial] mask (inside or outside).

    Example:
        >>> m = torch.zeros(7, 7, dtype=torch.bool); m[2:5, 2:5] = True
        >>> int(boundary_band(m, 1).sum())  # 5x5 dilation minus the 1-voxel erosion
        24
    """
    mask = torch.as_tensor(mask).bool()
    if mask.ndim not in (1, 2, 3):
        raise ValueError(f"mask must have 1 to 3 spatial dims, got shape {tuple(mask.shape)}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return _morph(mask, width, True) & ~_morph(mask, width, False)


@dataclass(frozen=True)
class RegionScores:
    """Where one image's uncertainty is: overall boundary score, per class, and predicted volumes."""

    score: float
    foreground: float
    classes: dict[int, float] = field(default_factory=dict)
    volumes: dict[int, float] = field(default_factory=dict)
    slices: list[int] = field(default_factory=list)
    slice_scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"score": self.score, "foreground": self.foreground,
                "classes": {str(k): v for k, v in self.classes.items()},
                "volumes": {str(k): v for k, v in self.volumes.items()}, "slices": list(self.slices),
                "slice_scores": [round(float(v), 5) for v in self.slice_scores]}


def region_uncertainty(probs: torch.Tensor, multilabel: bool = False, width: int = 2,
                       n_slices: int = 3, slice_axis: int = -1) -> RegionScores:
    """Uncertainty on the predicted structures' boundaries, overall and per class, from one probability map.

    Args:
        probs: ``[C, *spatial]`` probabilities (the mean of Monte-Carlo samples, or one prediction).
        multilabel: independent sigmoid channels (class ``c`` is channel ``c``, present where p > 0.5);
            otherwise a softmax whose channel 0 is background and class ``c`` is channel ``c``.
        width: half-width of the boundary band in voxels.
        n_slices: how many slices (along ``slice_axis``) to name as the most uncertain.
        slice_axis: spatial axis the slices are taken across (-1: the last).

    Returns:
        :class:`RegionScores`: ``score`` is the mean normalised entropy over the union of every class's
        band; when nothing is predicted it is the mean entropy of the whole image (the model sees nothing
        yet: as uncertain as it says it is). ``classes`` maps each class to the mean entropy in its own band
        (0 when the class is not predicted), ``volumes`` to its predicted volume fraction, ``foreground``
        is the predicted foreground fraction, ``slice_scores`` the mean band entropy of every slice and ``slices``
        the ``n_slices`` most uncertain ones.
    """
    probs = torch.as_tensor(probs, dtype=torch.float32)
    if probs.ndim < 2 or probs.ndim > 4:
        raise ValueError(f"probs must be [C, *spatial] with 1 to 3 spatial dims, got shape {tuple(probs.shape)}")
    ent = entropy_map(probs, multilabel=multilabel)
    if multilabel or probs.shape[0] == 1:
        masks = {c: probs[c] > 0.5 for c in range(probs.shape[0])}
        if probs.shape[0] == 1:
            masks = {1: probs[0] > 0.5}
    else:
        arg = probs.argmax(0)
        masks = {c: arg == c for c in range(1, probs.shape[0])}
    union = torch.zeros_like(ent, dtype=torch.bool)
    classes, volumes = {}, {}
    fg = torch.zeros_like(union)
    for c, m in masks.items():
        volumes[c] = float(m.float().mean())
        fg |= m
        if not m.any():
            classes[c] = 0.0
            continue
        band = boundary_band(m, width)
        union |= band
        classes[c] = float(ent[band].mean())
    score = float(ent[union].mean()) if union.any() else float(ent.mean())
    weight = union if union.any() else torch.ones_like(union)
    axis = slice_axis % ent.ndim
    others = tuple(d for d in range(ent.ndim) if d != axis)
    per_slice = (ent * weight).sum(others) / weight.sum(others).clamp(min=1)
    order = sorted(range(per_slice.numel()), key=lambda i: (-float(per_slice[i]), i))
    return RegionScores(score, float(fg.float().mean()), classes, volumes, sorted(order[:max(0, n_slices)]),
                        [float(v) for v in per_slice])


# ---- stochastic and weighted selection --------------------------------------------------------------------
def power_weights(scores: Mapping[str, float], beta: float) -> dict[str, float]:
    """Selection probabilities proportional to ``score ** beta`` (beta 0: uniform; large beta: the top image).

    Negative scores count as 0; when every score is 0 the probabilities are uniform.

    Raises:
        ValueError: for a negative ``beta`` or an empty mapping.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if not scores:
        raise ValueError("no scores to weight")
    ids = sorted(scores)
    vals = np.clip(np.array([float(scores[i]) for i in ids]), 0.0, None)
    if vals.max() <= 0:
        return {i: 1.0 / len(ids) for i in ids}
    logw = beta * np.log(np.maximum(vals / vals.max(), 1e-300))
    w = np.exp(logw - logw.max())
    w = w / w.sum()
    return {i: float(p) for i, p in zip(ids, w, strict=True)}


def _draw(probs: Mapping[str, float], rng: random.Random) -> str:
    ids = sorted(probs)
    return rng.choices(ids, weights=[probs[i] for i in ids], k=1)[0]


def choose_power(scores: Mapping[str, float], beta: float, rng: random.Random | None = None,
                 strategy: str = "power") -> Choice | None:
    """Draw one image with probability proportional to ``score ** beta``; ``None`` for an empty pool."""
    if not scores:
        return None
    probs = power_weights(scores, beta)
    pick = _draw(probs, rng or random.Random())
    rank = sorted(scores, key=lambda i: (-float(scores[i]), i)).index(pick) + 1
    return Choice(pick, strategy, float(scores[pick]),
                  f"drawn with probability {probs[pick]:.3f} (score {float(scores[pick]):.4g} ** beta {beta:.2f}), "
                  f"rank {rank} of {len(scores)}")


def choose_foreground_random(pool: Sequence[str], foreground: Mapping[str, float], rng: random.Random | None = None,
                             floor: float = 0.05, strategy: str = "fg_random") -> Choice | None:
    """Random image, biased to predicted foreground: probability proportional to ``floor + foreground fraction``.

    Images without a foreground estimate get the mean weight of the others (uniform when none has one),
    so an image is never excluded.

    Raises:
        ValueError: for a negative ``floor``.
    """
    if floor < 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    ids = sorted(pool)
    if not ids:
        return None
    known = {i: max(0.0, float(foreground[i])) for i in ids if i in foreground}
    mean = float(np.mean(list(known.values()))) if known else 0.0
    weights = {i: floor + known.get(i, mean) for i in ids}
    total = sum(weights.values())
    probs = {i: (w / total if total > 0 else 1.0 / len(ids)) for i, w in weights.items()}
    pick = _draw(probs, rng or random.Random())
    fg = f"predicted foreground {known[pick]:.3f}" if pick in known else "no foreground estimate yet"
    return Choice(pick, strategy, known.get(pick),
                  f"random, biased to foreground: {fg}, probability {probs[pick]:.3f} among {len(ids)} images")


def power_beta(n_labelled: int, beta_min: float = 1.0, beta_max: float = 4.0, ramp: int = 20) -> float:
    """The scheduled power exponent: ``beta_min`` at 0 labels rising linearly to ``beta_max`` at ``ramp`` labels."""
    if ramp < 1:
        raise ValueError(f"ramp must be >= 1, got {ramp}")
    return beta_min + (beta_max - beta_min) * min(1.0, max(0, n_labelled) / ramp)


def choose_class_stratified(class_scores: Mapping[str, Mapping[int, float]], n_labelled: int,
                            rng: random.Random | None = None, beta: float | None = None,
                            strategy: str = "clasp") -> Choice | None:
    """Class-stratified power selection: classes take turns; within the turn's class, power-sample by its uncertainty.

    Args:
        class_scores: image id -> {class -> uncertainty on that class's region}.
        n_labelled: labels submitted so far (picks whose turn it is, and the scheduled ``beta``).
        rng: random source.
        beta: power exponent (default :func:`power_beta` of ``n_labelled``).
        strategy: name in the :class:`Choice`.

    Returns:
        The chosen image (its reason names the class), or ``None`` for an empty pool.
    """
    if not class_scores:
        return None
    classes = sorted({int(c) for s in class_scores.values() for c in s})
    beta = power_beta(n_labelled) if beta is None else beta
    if not classes:
        return choose_power({i: 1.0 for i in class_scores}, 0.0, rng, strategy)
    turn = classes[n_labelled % len(classes)]
    scores = {i: float(s.get(turn, s.get(str(turn), 0.0))) for i, s in class_scores.items()}  # type: ignore[call-overload]
    choice = choose_power(scores, beta, rng, strategy)
    assert choice is not None
    return Choice(choice.id, strategy, choice.score, f"class {turn}'s turn ({len(classes)} classes): {choice.reason}")


def top_slices_reason(slices: Sequence[int], axis_name: str = "last axis") -> str:
    """How a strategy names the slices to annotate first."""
    return f"most uncertain slices across the {axis_name}: {', '.join(str(s) for s in slices)}" if slices else ""

