"""The pure active-learning maths on fixed numbers: ranking, ties, k, empty pools, uncertainty."""

import math
import random

import numpy as np
import pytest
import torch

from labelzoo.activelearning import (
    choose_first,
    choose_hybrid,
    choose_random,
    choose_uncertain,
    dice_score,
    diverse_batch,
    entropy_map,
    feature_vector,
    mean_entropy,
    rank_hybrid,
    rank_uncertain,
    tta_variance,
)

SCORES = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.9, "e": 0.0}


def test_rank_uncertain_orders_by_score_and_breaks_ties_by_id():
    assert rank_uncertain(SCORES) == ["b", "d", "c", "a", "e"]
    assert rank_uncertain(SCORES, k=2) == ["b", "d"]


def test_rank_uncertain_k_larger_than_pool_and_empty_pool():
    assert rank_uncertain(SCORES, k=50) == ["b", "d", "c", "a", "e"]
    assert rank_uncertain({}, k=3) == []
    with pytest.raises(ValueError, match="k must be at least 1"):
        rank_uncertain(SCORES, k=0)


def test_choose_uncertain_takes_most_uncertain_never_served_first():
    choice = choose_uncertain(SCORES, k=3)
    assert choice.id == "b" and choice.score == 0.9 and choice.strategy == "epistemic"
    assert "rank 1 of 5" in choice.reason


def test_choose_uncertain_rotates_through_top_k_by_least_recently_served():
    # b was served just now, d a while ago, c never: c (rank 3) is chosen, it is within the top 3
    choice = choose_uncertain(SCORES, k=3, last_served={"b": 100.0, "d": 50.0})
    assert choice.id == "c"
    # with k=2 c is outside the group: the older of b and d wins
    assert choose_uncertain(SCORES, k=2, last_served={"b": 100.0, "d": 50.0}).id == "d"
    # k honoured (the stock Epistemic strategy ignores it): k=1 always gives the top image
    assert choose_uncertain(SCORES, k=1, last_served={"b": 100.0}).id == "b"


def test_choose_on_empty_pool_is_none():
    assert choose_uncertain({}, k=3) is None
    assert choose_first([]) is None
    assert choose_random([]) is None
    assert choose_hybrid({}, {}) is None


def test_choose_first_and_random():
    assert choose_first(["c", "a", "b"]).id == "a"
    picks = {choose_random(["a", "b", "c"], random.Random(s)).id for s in range(30)}
    assert picks == {"a", "b", "c"}


def test_rank_hybrid_without_reference_is_uncertainty_order():
    feats = {i: [float(n), 0.0] for n, i in enumerate(SCORES)}
    ranked = [i for i, _ in rank_hybrid(SCORES, feats, alpha=0.5)]
    assert ranked == ["b", "d", "c", "a", "e"]


def test_rank_hybrid_prefers_far_image_over_near_duplicate_of_reference():
    unc = {"near": 1.0, "far": 0.8}
    feats = {"near": [0.0, 0.0], "far": [10.0, 0.0]}
    ranked = rank_hybrid(unc, feats, reference=[[0.1, 0.0]], alpha=0.5)
    assert ranked[0][0] == "far"
    # alpha 1: uncertainty only
    assert rank_hybrid(unc, feats, reference=[[0.1, 0.0]], alpha=1.0)[0][0] == "near"
    with pytest.raises(ValueError, match="alpha"):
        rank_hybrid(unc, feats, alpha=1.5)


def test_diverse_batch_avoids_near_duplicates():
    # three near-identical very uncertain images and one different, slightly less uncertain one
    unc = {"a1": 1.0, "a2": 0.99, "a3": 0.98, "b": 0.7}
    feats = {"a1": [0.0, 0.0], "a2": [0.01, 0.0], "a3": [0.0, 0.01], "b": [5.0, 5.0]}
    batch = diverse_batch(unc, feats, k=2)
    assert batch == ["a1", "b"]
    # a plain uncertainty ranking would pick the duplicates
    assert rank_uncertain(unc, 2) == ["a1", "a2"]
    assert diverse_batch(unc, feats, k=10) [:2] == ["a1", "b"] and len(diverse_batch(unc, feats, k=10)) == 4
    assert diverse_batch({}, {}, k=3) == []


def test_rank_hybrid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="length"):
        rank_hybrid({"a": 1.0, "b": 0.5}, {"a": [1.0], "b": [1.0, 2.0]})


def test_entropy_map_bounds():
    certain = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # C=2, 2 voxels
    uniform = torch.full((4, 3), 0.25)
    assert torch.allclose(entropy_map(certain), torch.zeros(2), atol=1e-5)
    assert torch.allclose(entropy_map(uniform), torch.ones(3), atol=1e-5)
    # sigmoid channels: p=0.5 is maximal, independent of channel count
    assert torch.allclose(entropy_map(torch.full((3, 2), 0.5), multilabel=True), torch.ones(2), atol=1e-5)


def test_mean_entropy_of_disagreeing_samples_is_higher():
    agree = torch.stack([torch.tensor([[0.9, 0.9], [0.1, 0.1]])] * 4)  # S=4, C=2, 2 voxels
    disagree = torch.stack([torch.tensor([[0.9, 0.9], [0.1, 0.1]]), torch.tensor([[0.1, 0.1], [0.9, 0.9]])] * 2)
    assert mean_entropy(disagree) > mean_entropy(agree)
    assert math.isclose(mean_entropy(disagree), 1.0, abs_tol=1e-4)
    with pytest.raises(ValueError, match=r"\[S, C"):
        mean_entropy(torch.zeros(2, 2))


def test_tta_variance():
    same = torch.ones(3, 2, 4, 4) * 0.3
    assert tta_variance(same) == pytest.approx(0.0)
    flip = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    assert tta_variance(flip) == pytest.approx(0.25)
    assert tta_variance(same[:1]) == pytest.approx(0.0)


def test_feature_vector_is_normalised_and_sized():
    probs = torch.rand(3, 8, 8, 8)
    vec = feature_vector(probs, grid=2)
    assert vec.shape == (3 * 8,) and np.isclose(np.linalg.norm(vec), 1.0)
    assert feature_vector(torch.rand(2, 16, 16), grid=4).shape == (32,)
    assert np.all(feature_vector(torch.zeros(2, 4, 4)) == 0)


def test_dice_score():
    a = np.array([0, 1, 1, 3, 3, 0])
    assert dice_score(a, a) == 1.0
    b = np.array([0, 1, 0, 3, 3, 3])
    # class 1: 2*1/(2+1); class 3: 2*2/(2+3)
    assert dice_score(a, b) == pytest.approx(np.mean([2 / 3, 4 / 5]))
    assert dice_score(np.zeros(4), np.zeros(4)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        dice_score(np.zeros(3), np.zeros(4))
