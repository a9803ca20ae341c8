"""T-AutoML search space and integer-vector encoding (pure Python, no torch)."""

from __future__ import annotations

import random

import pytest

from labelzoo.automl import Block, Config, InvalidVectorError, check_vector, decode, encode, sample_vector, space
from labelzoo.automl.encoding import output_blocks, sample_unique
from labelzoo.errors import LabelZooError

TAIL = [1, 0, 0, 1, 0, 0, 0, 1, 2, 3]  # flip_x, rot90_xy, intensity_scale_shift; lr 0.001; loss dice_ce
VALID = [0, 0, 0, -1, -1, 1, 1, 1, 0, -1, 2, 2, 3, 1, 0, 3, 0, 0, 2, 1] + TAIL


def test_decode_names_every_field():
    config = decode(VALID)
    assert config.blocks[0] == Block(id=0, type="residual", scale=0, input_a=-1, input_b=-1)
    assert config.blocks[2] == Block(id=2, type="axial_attention", scale=3, input_a=1, input_b=0)
    assert config.augmentations == ("flip_x", "rot90_xy", "intensity_scale_shift")
    assert config.lr == 0.001 and config.loss == "dice_ce"
    assert config.output_blocks == (3,)


def test_round_trip_on_many_random_vectors():
    rng = random.Random(0)
    lengths = set()
    for _ in range(500):
        v = sample_vector(rng)
        assert encode(decode(v)) == v
        lengths.add(len(v))
    # every block count of the space is drawn
    assert lengths == {5 * n + space.TAIL_LENGTH for n in range(space.MIN_BLOCKS, space.MAX_BLOCKS + 1)}


def test_sampling_covers_the_space():
    rng = random.Random(1)
    configs = [decode(sample_vector(rng)) for _ in range(300)]
    assert {b.type for c in configs for b in c.blocks} == set(space.BLOCK_TYPES)
    assert {b.scale for c in configs for b in c.blocks} == set(range(space.NUM_SCALES))
    assert {c.lr for c in configs} == set(space.LEARNING_RATES)
    assert {c.loss for c in configs} == set(space.LOSSES)
    assert {a for c in configs for a in c.augmentations} == set(space.AUGMENTATIONS)
    # not only a chain: some block reads a block other than its predecessor, some have two inputs
    assert any(b.input_a not in (b.id - 1, -1) for c in configs for b in c.blocks)
    assert any(b.input_b >= 0 for c in configs for b in c.blocks)


def test_sample_is_reproducible_and_unique():
    assert sample_vector(random.Random(5)) == sample_vector(random.Random(5))
    vs = sample_unique(random.Random(2), 50, exclude=[VALID])
    assert len({tuple(v) for v in vs}) == 50 and VALID not in vs


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (0, 1, "position 0 (block 0 id): expected 0"),
        (1, 3, "position 1 (block 0 type): expected 0..2 (residual, bottleneck, axial_attention), got 3"),
        (2, 4, "position 2 (block 0 spatial scale): expected 0..3, got 4"),
        (3, 0, "position 3 (block 0 first input): expected -1"),
        (8, 1, "position 8 (block 1 first input): expected 0"),
        (9, 0, "position 9 (block 1 second input): expected -1"),
        (13, 2, "position 13 (block 2 first input): expected an earlier block id in 0..1, got 2"),
        (14, 1, "position 14 (block 2 second input): expected -1 (none) or an earlier block id in 0..1 other than"),
        (20, 2, "position 20 (augmentation 'flip_x'): expected 0 (off) or 1 (on), got 2"),
        (28, 5, "position 28 (learning-rate code): expected 0..4"),
        (29, -1, "position 29 (loss code): expected 0..4"),
    ],
)
def test_invalid_vectors_name_the_position(position, value, message):
    bad = list(VALID)
    bad[position] = value
    with pytest.raises(InvalidVectorError, match=None) as info:
        check_vector(bad)
    assert message in str(info.value)
    assert isinstance(info.value, LabelZooError)


def test_invalid_lengths_and_types():
    with pytest.raises(InvalidVectorError, match="expected a length of 5\\*n\\+10 between 20 and 50, got 21"):
        check_vector(VALID[:-9])
    with pytest.raises(InvalidVectorError, match="position 4: expected an integer, got 'x'"):
        check_vector(VALID[:4] + ["x"] + VALID[5:])
    with pytest.raises(InvalidVectorError, match="sequence of integers"):
        check_vector("0,0,0")
    assert check_vector([float(v) for v in VALID]) == VALID  # JSON may hold 1.0


def test_encode_rejects_values_outside_the_space():
    config = decode(VALID)
    with pytest.raises(InvalidVectorError, match="lr: expected one of"):
        encode(Config(config.blocks, config.augmentations, 0.02, config.loss))
    with pytest.raises(InvalidVectorError, match="augmentations: expected names"):
        encode(Config(config.blocks, ("elastic",), config.lr, config.loss))
    with pytest.raises(InvalidVectorError, match="loss: expected one of"):
        encode(Config(config.blocks, config.augmentations, config.lr, "hinge"))


def test_output_blocks_are_the_unread_ones():
    blocks = decode([0, 0, 0, -1, -1, 1, 0, 1, 0, -1, 2, 0, 2, 0, -1] + TAIL).blocks
    assert output_blocks(blocks) == (1, 2)
