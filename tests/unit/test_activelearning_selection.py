"""Region uncertainty, foreground-aware random, power sampling and class-stratified selection (pure)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from labelzoo.activelearning import (
    boundary_band,
    choose_class_stratified,
    choose_foreground_random,
    choose_power,
    power_beta,
    power_weights,
    region_uncertainty,
)


def test_boundary_band_is_a_shell_around_the_mask() -> None:
    m = torch.zeros(9, 9, 9, dtype=torch.bool)
    m[3:6, 3:6, 3:6] = True
    band = boundary_band(m, 1)
    assert band[4, 4, 2] and band[4, 4, 3] and band[4, 4, 6]  # outside face, inside face, outside
    assert not band[4, 4, 4]  # the centre is deep inside
    assert not band[0, 0, 0]  # far outside
    assert int(boundary_band(torch.zeros(5, 5, dtype=torch.bool), 1).sum()) == 0
    with pytest.raises(ValueError, match="width"):
        boundary_band(m, 0)


def _probs_with_object(shape=(16, 16, 16), edge_p=0.6, background_p=0.999) -> torch.Tensor:
    """2-class softmax: a cube of class 1 whose face voxels are unsure, background very sure."""
    p1 = torch.full(shape, 1 - background_p)
    p1[4:12, 4:12, 4:12] = 0.99
    p1[4:12, 4:12, 4] = edge_p
    return torch.stack([1 - p1, p1])


def test_region_uncertainty_is_not_diluted_by_background() -> None:
    small = _probs_with_object((16, 16, 16))
    big = torch.full((2, 48, 48, 48), 0.0)
    big[0] = 0.999
    big[1] = 0.001
    big[:, :16, :16, :16] = small
    r_small, r_big = region_uncertainty(small), region_uncertainty(big)
    # the same object with 26x more empty background: the whole-volume mean drops, the boundary score does not
    assert r_big.score == pytest.approx(r_small.score, rel=0.05)
    whole_small = float(torch.special.entr(small).sum(0).mean())
    whole_big = float(torch.special.entr(big).sum(0).mean())
    assert whole_big < whole_small / 2
    assert r_small.classes[1] == pytest.approx(r_small.score)
    assert r_small.volumes[1] == pytest.approx(8**3 / 16**3)
    assert r_small.foreground == pytest.approx(r_small.volumes[1])
    assert 4 in r_small.slices  # the unsure face is slice 4 across the last axis


def test_region_uncertainty_ranks_the_unsure_boundary_higher() -> None:
    sure = region_uncertainty(_probs_with_object(edge_p=0.95))
    unsure = region_uncertainty(_probs_with_object(edge_p=0.5))
    assert unsure.score > sure.score


def test_region_uncertainty_without_prediction_is_the_whole_image_entropy() -> None:
    probs = torch.stack([torch.full((8, 8), 0.7), torch.full((8, 8), 0.3)])
    r = region_uncertainty(probs)
    assert r.foreground == 0.0 and r.classes == {1: 0.0}
    assert r.score == pytest.approx(float(-(0.7 * torch.log(torch.tensor(0.7)) + 0.3 * torch.log(torch.tensor(0.3)))
                                         / torch.log(torch.tensor(2.0))), rel=1e-4)
    with pytest.raises(ValueError, match="probs"):
        region_uncertainty(torch.zeros(4))


def test_region_uncertainty_multilabel_and_single_channel() -> None:
    probs = torch.zeros(3, 8, 8, 8)
    probs[0, 2:6, 2:6, 2:6] = 0.9   # region 0 present
    probs[2, 3:5, 3:5, 3:5] = 0.6   # region 2 present, unsure
    r = region_uncertainty(probs, multilabel=True, width=1)
    assert set(r.classes) == {0, 1, 2} and r.classes[1] == 0.0 and r.volumes[1] == 0.0
    single = region_uncertainty(probs[:1], width=1)
    assert set(single.classes) == {1} and single.volumes[1] > 0


def test_power_weights() -> None:
    w = power_weights({"a": 1.0, "b": 0.5, "c": 0.0}, beta=1.0)
    assert w["a"] == pytest.approx(2 / 3) and w["b"] == pytest.approx(1 / 3) and w["c"] == pytest.approx(0.0, abs=1e-12)
    assert power_weights({"a": 1.0, "b": 0.5}, beta=0.0) == {"a": 0.5, "b": 0.5}
    sharp = power_weights({"a": 1.0, "b": 0.5}, beta=10.0)
    assert sharp["a"] > 0.99
    assert power_weights({"a": 0.0, "b": 0.0}, beta=2.0) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="beta"):
        power_weights({"a": 1.0}, -1)
    with pytest.raises(ValueError, match="no scores"):
        power_weights({}, 1)


def test_choose_power_draws_in_proportion() -> None:
    rng = random.Random(0)
    counts = Counter(choose_power({"a": 1.0, "b": 0.5}, 1.0, rng).id for _ in range(3000))
    assert counts["a"] / 3000 == pytest.approx(2 / 3, abs=0.03)
    c = choose_power({"a": 1.0}, 2.0, rng)
    assert c.id == "a" and "rank 1 of 1" in c.reason
    assert choose_power({}, 1.0) is None


def test_foreground_random_prefers_foreground_but_excludes_nothing() -> None:
    rng = random.Random(1)
    pool = ["a", "b", "c"]
    fg = {"a": 0.30, "b": 0.0}  # c has no estimate: gets the mean (0.15)
    counts = Counter(choose_foreground_random(pool, fg, rng, floor=0.05).id for _ in range(4000))
    total = 0.35 + 0.05 + 0.20
    assert counts["a"] / 4000 == pytest.approx(0.35 / total, abs=0.03)
    assert counts["b"] / 4000 == pytest.approx(0.05 / total, abs=0.02)
    assert counts["c"] / 4000 == pytest.approx(0.20 / total, abs=0.03)
    uniform = Counter(choose_foreground_random(pool, {}, rng).id for _ in range(3000))
    assert all(abs(v / 3000 - 1 / 3) < 0.04 for v in uniform.values())
    assert choose_foreground_random([], {}) is None
    with pytest.raises(ValueError, match="floor"):
        choose_foreground_random(pool, fg, rng, floor=-1)


def test_power_beta_schedule() -> None:
    assert power_beta(0) == 1.0 and power_beta(10) == pytest.approx(2.5) and power_beta(100) == 4.0
    with pytest.raises(ValueError, match="ramp"):
        power_beta(1, ramp=0)


def test_class_stratified_takes_turns_between_classes() -> None:
    scores = {"a": {1: 0.9, 2: 0.0}, "b": {1: 0.0, 2: 0.8}, "c": {1: 0.1, 2: 0.1}}
    rng = random.Random(0)
    turn1 = choose_class_stratified(scores, n_labelled=0, rng=rng, beta=50)
    turn2 = choose_class_stratified(scores, n_labelled=1, rng=rng, beta=50)
    assert turn1.id == "a" and "class 1's turn" in turn1.reason
    assert turn2.id == "b" and "class 2's turn" in turn2.reason
    assert choose_class_stratified({}, 0) is None
    plain = choose_class_stratified({"x": {}, "y": {}}, 0, random.Random(0))
    assert plain.id in {"x", "y"}
