"""Active learning for LabelZoo: pure ranking and uncertainty functions.

Everything here works on plain numbers, arrays and tensors, so it is unit-tested without files,
servers or GPUs. The MONAI Label strategies and scoring methods in ``apps/labelzoo/lib`` are thin
layers over these functions.
"""

from labelzoo.activelearning.ranking import (
    Choice,
    choose_first,
    choose_hybrid,
    choose_random,
    choose_uncertain,
    diverse_batch,
    rank_hybrid,
    rank_uncertain,
)
from labelzoo.activelearning.selection import (
    RegionScores,
    boundary_band,
    choose_class_stratified,
    choose_foreground_random,
    choose_power,
    power_beta,
    power_weights,
    region_uncertainty,
)
from labelzoo.activelearning.uncertainty import (
    dice_score,
    entropy_map,
    feature_vector,
    mean_entropy,
    tta_variance,
)

__all__ = [
    "Choice",
    "RegionScores",
    "boundary_band",
    "choose_class_stratified",
    "choose_foreground_random",
    "choose_power",
    "power_beta",
    "power_weights",
    "region_uncertainty",
    "choose_first",
    "choose_hybrid",
    "choose_random",
    "choose_uncertain",
    "dice_score",
    "diverse_batch",
    "entropy_map",
    "feature_vector",
    "mean_entropy",
    "rank_hybrid",
    "rank_uncertain",
    "tta_variance",
]
