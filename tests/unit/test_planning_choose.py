"""Post-processing and best-configuration decisions (pure functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelzoo.planning.choose import (
    candidate_ensembles,
    choose_best,
    decide_postprocessing,
    dice,
    keep_largest_component,
    lcc_candidates,
    mean_dice,
    postprocessing_tables,
)


def _organ(shape=(24, 24, 12)) -> np.ndarray:
    ref = np.zeros(shape, np.uint8)
    ref[4:14, 4:14, 2:10] = 1  # one organ, one component
    return ref


def test_lcc_kept_where_it_helps() -> None:
    """Predictions with a false-positive island: keeping the largest component removes it."""
    pairs = []
    for i in range(4):
        ref = _organ()
        pred = ref.copy()
        pred[18 + i % 2:22, 18:22, 3:7] = 1  # spurious island away from the organ
        pairs.append((f"c{i}", pred, ref))
    without, with_lcc = postprocessing_tables(pairs, [1], candidates=[1])
    assert all(s[1] < 1.0 for s in without.values()) and all(s[1] == 1.0 for s in with_lcc[1].values())
    assert decide_postprocessing(without, with_lcc, [1]) == [1]


def test_lcc_rejected_where_it_hurts() -> None:
    """A class made of two true parts: keeping only the largest drops the smaller true part."""
    pairs = []
    for i in range(4):
        ref = _organ()
        ref[17:23, 17:23, 2:10] = 1  # a second, real part
        pairs.append((f"c{i}", ref.copy(), ref))
    without, with_lcc = postprocessing_tables(pairs, [1], candidates=[1])
    assert decide_postprocessing(without, with_lcc, [1]) == []


def test_per_class_decision_and_candidates() -> None:
    without = {"a": {1: 0.8, 2: 0.7}, "b": {1: 0.6, 2: 0.7}}
    with_lcc = {1: {"a": {1: 0.85, 2: 0.7}, "b": {1: 0.65, 2: 0.7}},
                2: {"a": {1: 0.8, 2: 0.6}, "b": {1: 0.6, 2: 0.7}}}
    assert decide_postprocessing(without, with_lcc, [1, 2]) == [1]
    assert decide_postprocessing(without, with_lcc, [1, 2], min_improvement=0.1) == []
    cases = [{"connected_components": {"1": 1, "3": 1, "6": 2}}, {"connected_components": {"1": 1, "3": 1}}]
    assert lcc_candidates(cases, [1, 3, 6]) == [1, 3]  # class 6 has two components somewhere


def test_dice_and_means() -> None:
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))
    assert mean_dice({"a": {1: 1.0, 2: float("nan")}, "b": {1: 0.5, 2: 0.5}}) == pytest.approx((0.75 + 0.5) / 2)
    seg = np.zeros((10, 10), np.uint8)
    seg[0:3, 0:3] = 2
    seg[6:8, 6:8] = 2
    seg[5, 0] = 1
    out = keep_largest_component(seg, 2)
    assert (out == 2).sum() == 9 and out[5, 0] == 1


def test_choose_best_and_ensembles() -> None:
    assert candidate_ensembles(["3d_fullres", "2d", "3d_lowres"]) == [
        ("2d", "3d_fullres"), ("2d", "3d_lowres"), ("3d_fullres", "3d_lowres")]
    assert choose_best({"2d": 0.7, "3d_fullres": 0.8, "ensemble__2d__3d_fullres": 0.82}) == "ensemble__2d__3d_fullres"
    assert choose_best({"2d": 0.7, "3d_fullres": float("nan")}) == "2d"
    with pytest.raises(ValueError, match="train-cv"):
        choose_best({})
