"""The T-AutoML search space: block types, spatial scales, augmentations, learning rates and losses.

Everything here is a constant table: the integer code of a choice is its index in the tuple. The tables
are the single source of truth for :mod:`labelzoo.automl.encoding` (vector layout and validity),
:mod:`labelzoo.networks.tautoml` (the network built from a vector) and :mod:`labelzoo.automl.components`
(the MONAI transforms, losses and optimiser a configuration maps to).

Recipe: T-AutoML (Yang et al., "T-AutoML: Automated Machine Learning for Lesion Segmentation using
Transformers in 3D Medical Imaging", ICCV 2021), LabelZoo SPEC section 5.
"""

from __future__ import annotations

#: Block types; the code of a type is its index.
BLOCK_TYPES: tuple[str, ...] = ("residual", "bottleneck", "axial_attention")

#: Spatial scales a block can run at: code ``s`` means the feature map is the input size divided by ``2**s``.
NUM_SCALES: int = 4

#: Fewest and most blocks in a network (the second block is fixed to take the first as input).
MIN_BLOCKS: int = 2
MAX_BLOCKS: int = 8

#: Integers per block: id, type, spatial scale, first input id, second input id.
BLOCK_FIELDS: tuple[str, ...] = ("id", "type", "scale", "input_a", "input_b")

#: Augmentations; each has one 0/1 code in the vector (selected or not). Selected ones run with
#: probability :data:`AUGMENTATION_PROB`.
AUGMENTATIONS: tuple[str, ...] = (
    "flip_x",
    "flip_y",
    "flip_z",
    "rot90_xy",
    "zoom",
    "gaussian_noise",
    "intensity_shift",
    "intensity_scale_shift",
)

#: Probability with which each selected augmentation is applied to a training sample.
AUGMENTATION_PROB: float = 0.15

#: Learning rates; the code is the index.
LEARNING_RATES: tuple[float, ...] = (0.01, 0.005, 0.001, 0.0005, 0.0001)

#: Losses; the code is the index.
LOSSES: tuple[str, ...] = ("dice", "dice_squared_pred", "ce", "dice_ce", "dice_focal")

#: Integers after the blocks: one per augmentation, then the learning-rate code, then the loss code.
TAIL_LENGTH: int = len(AUGMENTATIONS) + 2
