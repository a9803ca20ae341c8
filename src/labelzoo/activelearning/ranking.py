"""Which image to annotate next: pure ranking functions over per-image scores.

The inputs are plain mappings (image id -> score, image id -> last time it was served, image id ->
feature vector), so every rule is unit-tested on fixed numbers. Ties are always broken by image id,
so the same inputs give the same answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Choice:
    """The image a strategy picked and why: what the client shows the annotator."""

    id: str
    strategy: str
    score: float | None
    reason: str

    def as_dict(self) -> dict:
        """The fields ``next_sample`` returns: ``id``, ``strategy``, ``score``, ``reason``."""
        return {"id": self.id, "strategy": self.strategy, "score": self.score, "reason": self.reason}


def choose_first(pool: Iterable[str], strategy: str = "first") -> Choice | None:
    """The first image id in sorted order, or ``None`` for an empty pool."""
    ids = sorted(pool)
    if not ids:
        return None
    return Choice(ids[0], strategy, None, f"first of {len(ids)} unlabelled images in name order")


def choose_random(pool: Iterable[str], rng: random.Random | None = None, strategy: str = "random") -> Choice | None:
    """A uniformly random image id, or ``None`` for an empty pool (``rng`` makes it reproducible)."""
    ids = sorted(pool)
    if not ids:
        return None
    rng = rng or random.Random()
    return Choice(rng.choice(ids), strategy, None, f"random pick among {len(ids)} unlabelled images")


def rank_uncertain(scores: Mapping[str, float], k: int | None = None) -> list[str]:
    """Image ids by descending score (ties: ascending id), cut to the top ``k``.

    Args:
        scores: image id -> uncertainty (higher is more uncertain).
        k: how many to keep; ``None`` or a ``k`` larger than the pool keeps all.

    Raises:
        ValueError: for ``k < 1``.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ranked = sorted(scores, key=lambda i: (-float(scores[i]), i))
    return ranked if k is None else ranked[:k]


def choose_uncertain(scores: Mapping[str, float], k: int = 5, last_served: Mapping[str, float] | None = None,
                     strategy: str = "epistemic") -> Choice | None:
    """Top ``k`` by uncertainty, then the least recently served among them.

    Images never served come first; among equally old ones the more uncertain wins, then the id.
    So two annotators asking one after the other get different images from the same top-``k``.

    Args:
        scores: image id -> uncertainty for the unlabelled pool.
        k: size of the top group to rotate through.
        last_served: image id -> time it was last handed out (absent: never).
        strategy: name reported in the :class:`Choice`.

    Returns:
        The chosen image, or ``None`` when ``scores`` is empty.
    """
    top = rank_uncertain(scores, k)
    if not top:
        return None
    served = last_served or {}
    best = min(top, key=lambda i: (float(served.get(i, float("-inf"))), -float(scores[i]), i))
    rank = top.index(best) + 1
    when = "never served" if best not in served else "least recently served"
    return Choice(best, strategy, float(scores[best]),
                  f"uncertainty {float(scores[best]):.4g}, rank {rank} of {len(scores)} (top {len(top)}, {when})")


def _scale_by_max(values: np.ndarray) -> np.ndarray:
    """Divide non-negative values by their maximum (zeros stay zeros).

    Not min-max: that would blow tiny differences between near-duplicates up to the full [0, 1] range.
    """
    if values.size == 0:
        return values
    hi = float(values.max())
    return values / hi if hi > 0 else np.zeros_like(values)


def _min_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to its nearest reference point (zeros without references)."""
    if reference.size == 0:
        return np.zeros(len(points))
    diff = points[:, None, :] - reference[None, :, :]
    return np.sqrt((diff**2).sum(-1)).min(axis=1)


def _as_matrix(ids: Sequence[str], features: Mapping[str, Sequence[float]]) -> np.ndarray:
    rows = [np.asarray(features[i], dtype=np.float64).ravel() for i in ids]
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"feature vectors differ in length: {sorted(lengths)}")
    return np.stack(rows) if rows else np.zeros((0, 0))


def rank_hybrid(uncertainty: Mapping[str, float], features: Mapping[str, Sequence[float]],
                reference: Sequence[Sequence[float]] = (), alpha: float = 0.5) -> list[tuple[str, float]]:
    """Rank by a mix of uncertainty and novelty: ``alpha * u + (1 - alpha) * d``.

    ``u`` is the uncertainty divided by the pool's largest; ``d`` is the distance from an image's
    features to the nearest ``reference`` feature vector (images already labelled or recently
    served), scaled by the largest such distance. Without references ``d`` is 0 and the order is
    by uncertainty alone. Only images having both a score and features are ranked.

    Returns:
        ``(id, combined score)`` pairs, best first (ties: ascending id).

    Raises:
        ValueError: for ``alpha`` outside [0, 1] or feature vectors of different lengths.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    ids = sorted(i for i in uncertainty if i in features)
    if not ids:
        return []
    points = _as_matrix(ids, features)
    ref = np.asarray([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    if ref.size and ref.shape[1] != points.shape[1]:
        raise ValueError(f"reference features have length {ref.shape[1]}, pool features {points.shape[1]}")
    u = _scale_by_max(np.clip(np.asarray([float(uncertainty[i]) for i in ids]), 0.0, None))
    d = _min_distances(points, ref.reshape(-1, points.shape[1]) if ref.size else ref)
    d = _scale_by_max(d)
    combined = alpha * u + (1 - alpha) * d
    order = sorted(range(len(ids)), key=lambda j: (-combined[j], ids[j]))
    return [(ids[j], float(combined[j])) for j in order]


def diverse_batch(uncertainty: Mapping[str, float], features: Mapping[str, Sequence[float]], k: int,
                  reference: Sequence[Sequence[float]] = (), alpha: float = 0.5) -> list[str]:
    """Pick ``k`` images greedily: each pick is the best :func:`rank_hybrid` image given the earlier picks.

    Every picked image joins the references, so the batch spreads over feature space instead of
    holding near-duplicates of the single most uncertain image.

    Returns:
        Up to ``k`` image ids in pick order (fewer when the pool is smaller).

    Raises:
        ValueError: for ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    refs = [np.asarray(r, dtype=np.float64).ravel() for r in reference]
    remaining = {i: uncertainty[i] for i in uncertainty if i in features}
    picked: list[str] = []
    while remaining and len(picked) < k:
        best, _ = rank_hybrid(remaining, features, refs, alpha)[0]
        picked.append(best)
        refs.append(np.asarray(features[best], dtype=np.float64).ravel())
        del remaining[best]
    return picked


def choose_hybrid(uncertainty: Mapping[str, float], features: Mapping[str, Sequence[float]],
                  reference: Sequence[Sequence[float]] = (), alpha: float = 0.5,
                  strategy: str = "hybrid") -> Choice | None:
    """The best :func:`rank_hybrid` image, with its combined score and why; ``None`` for an empty pool."""
    ranked = rank_hybrid(uncertainty, features, reference, alpha)
    if not ranked:
        return None
    best, combined = ranked[0]
    return Choice(best, strategy, combined,
                  f"uncertainty {float(uncertainty[best]):.4g} and distance to {len(reference)} labelled or "
                  f"recently served images combined (alpha {alpha}): {combined:.4g}, best of {len(ranked)}")
