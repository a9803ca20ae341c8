"""Pure decisions after cross-validation (stage 4): post-processing per class and the best configuration.

Arrays and score tables in, decisions out; no files. Follows nnU-Net v2
(``nnunetv2/postprocessing/remove_connected_components.py: determine_postprocessing`` and
``nnunetv2/evaluation/find_best_configuration.py``) and the paper's rule for which classes to try.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: A score table: case id -> class index -> Dice (NaN when the class is absent from both).
Scores = Mapping[str, Mapping[int, float]]


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty (nnU-Net ignores such cases in the mean).

    Example:
        >>> dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool))
        0.6666666666666666
    """
    p, r = np.asarray(pred, bool), np.asarray(ref, bool)
    denom = p.sum() + r.sum()
    return float("nan") if denom == 0 else float(2.0 * np.logical_and(p, r).sum() / denom)


def dice_per_class(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int]) -> dict[int, float]:
    """Dice of each class of two label maps (class indices)."""
    return {int(c): dice(pred == c, ref == c) for c in classes}


def keep_largest_component(seg: np.ndarray, cls: int) -> np.ndarray:
    """``seg`` with every component of ``cls`` but the largest set to background (full connectivity)."""
    from scipy.ndimage import generate_binary_structure, label

    mask = seg == cls
    lab, n = label(mask, structure=generate_binary_structure(seg.ndim, seg.ndim))
    if n <= 1:
        return seg
    sizes = np.bincount(lab.ravel())[1:]
    out = seg.copy()
    out[mask & (lab != int(np.argmax(sizes)) + 1)] = 0
    return out


def lcc_candidates(cases: Sequence[Mapping], classes: Iterable[int]) -> list[int]:
    """Classes worth trying largest-component post-processing on: every training label holding the class has
    it as exactly one connected component (the nnU-Net paper's rule).

    Args:
        cases: fingerprint ``cases`` entries with ``connected_components`` (``{"value": count}``), in the
            dataset's label values.
        classes: label values to consider.
    """
    out = []
    for c in classes:
        counts = [case["connected_components"][str(c)] for case in cases
                  if str(c) in case.get("connected_components", {})]
        if counts and all(n == 1 for n in counts):
            out.append(int(c))
    return out


def mean_over_cases(scores: Scores, cls: int) -> float:
    """Mean Dice of one class over the cases where it is defined (NaN when nowhere)."""
    vals = [s[cls] for s in scores.values() if cls in s and not math.isnan(s[cls])]
    return float(np.mean(vals)) if vals else float("nan")


def mean_dice(scores: Scores, classes: Iterable[int] | None = None) -> float:
    """Mean over classes of the per-class mean Dice over cases (NaN classes skipped)."""
    classes = sorted({c for s in scores.values() for c in s}) if classes is None else list(classes)
    per_class = [mean_over_cases(scores, c) for c in classes]
    per_class = [v for v in per_class if not math.isnan(v)]
    return float(np.mean(per_class)) if per_class else float("nan")


def decide_postprocessing(without: Scores, with_lcc: Mapping[int, Scores], candidates: Iterable[int],
                          min_improvement: float = 0.0) -> list[int]:
    """Classes whose largest-connected-component post-processing is kept: only where cross-validation improves.

    Args:
        without: cross-validation Dice per case and class of the raw predictions.
        with_lcc: for each candidate class, the same table after keeping only that class' largest component.
        candidates: classes to try (e.g. :func:`lcc_candidates`).
        min_improvement: how much the class' mean Dice must rise to keep the step (nnU-Net: any rise).

    Example:
        >>> before = {"a": {1: 0.8}, "b": {1: 0.6}}
        >>> decide_postprocessing(before, {1: {"a": {1: 0.9}, "b": {1: 0.7}}}, [1])
        [1]
        >>> decide_postprocessing(before, {1: {"a": {1: 0.8}, "b": {1: 0.2}}}, [1])
        []
    """
    kept = []
    for c in candidates:
        if c not in with_lcc:
            continue
        b, a = mean_over_cases(without, c), mean_over_cases(with_lcc[c], c)
        if not math.isnan(a) and not math.isnan(b) and a > b + min_improvement:
            kept.append(int(c))
    return kept


def postprocessing_tables(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], classes: Sequence[int],
                          candidates: Iterable[int]) -> tuple[dict[str, dict[int, float]], dict[int, dict]]:
    """Score tables for :func:`decide_postprocessing` from ``(case, prediction, reference)`` label maps."""
    without = {case: dice_per_class(p, r, classes) for case, p, r in pairs}
    with_lcc = {int(c): {case: dice_per_class(keep_largest_component(p, c), r, classes) for case, p, r in pairs}
                for c in candidates}
    return without, with_lcc


def ensemble_name(members: Sequence[str]) -> str:
    """Name of an ensemble, as nnU-Net writes it: ``ensemble__2d__3d_fullres``."""
    return "ensemble__" + "__".join(sorted(members))


def candidate_ensembles(configurations: Sequence[str], size: int = 2) -> list[tuple[str, ...]]:
    """Ensembles nnU-Net v2 compares: every pair of trained configurations."""
    return [tuple(c) for c in itertools.combinations(sorted(configurations), size)]


def choose_best(cv_mean_dice: Mapping[str, float]) -> str:
    """The configuration or ensemble with the highest cross-validation mean Dice.

    Ties go to a single configuration over an ensemble (cheaper to run), then to the name order.

    Example:
        >>> choose_best({"2d": 0.81, "3d_fullres": 0.85, "ensemble__2d__3d_fullres": 0.85})
        '3d_fullres'
    """
    valid = {k: v for k, v in cv_mean_dice.items() if v is not None and not math.isnan(v)}
    if not valid:
        raise ValueError("no configuration has a cross-validation score: run `labelzoo train-cv` first")
    return min(valid, key=lambda k: (-valid[k], k.startswith("ensemble__"), k))
