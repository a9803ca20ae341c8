"""The network decoded from a T-AutoML vector and its search blocks (shapes on random CPU tensors)."""

from __future__ import annotations

import random

import pytest
import torch

from labelzoo.automl import sample_vector
from labelzoo.networks import AxialAttention, TAutoMLNet
from labelzoo.networks.tautoml import (
    AxialAttentionSearchBlock,
    BottleneckSearchBlock,
    ResidualSearchBlock,
    resample,
    scale_size,
)

TAIL = [0] * 8 + [2, 3]


@pytest.mark.parametrize("block", [ResidualSearchBlock(16), BottleneckSearchBlock(16), AxialAttentionSearchBlock(16)])
def test_blocks_keep_shape(block):
    x = torch.rand(2, 16, 6, 5, 4)
    assert block(x).shape == x.shape


def test_axial_block_is_the_shared_one():
    block = AxialAttentionSearchBlock(32)
    assert isinstance(block.attention, AxialAttention)
    assert block.attention.num_heads == 4 and block.attention.head_dim == 8


def test_every_block_type_and_scale_decodes_and_runs():
    # a non encoder-decoder graph: block 3 reads blocks 2 (scale 3) and 0 (scale 0) at scale 1
    arch = [0, 2, 0, -1, -1, 1, 1, 2, 0, -1, 2, 0, 3, 1, -1, 3, 1, 1, 2, 0, 4, 2, 2, 3, 1] + TAIL
    net = TAutoMLNet(arch, in_channels=2, out_channels=3, base_channels=8)
    types = [type(n.body).__name__ for n in net.nodes]
    assert types == ["AxialAttentionSearchBlock", "BottleneckSearchBlock", "ResidualSearchBlock",
                     "BottleneckSearchBlock", "AxialAttentionSearchBlock"]
    x = torch.rand(2, 2, 16, 16, 16)
    y = net(x)
    assert y.shape == (2, 3, 16, 16, 16)
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters())  # every block is on the path to the output


def test_mismatched_scales_and_odd_sizes_are_resampled():
    # input sizes not divisible by 8; blocks at scales 0..3 read each other across scales
    arch = [0, 0, 3, -1, -1, 1, 0, 0, 0, -1, 2, 1, 2, 1, 0, 3, 0, 1, 2, 1] + TAIL
    net = TAutoMLNet(arch, in_channels=1, out_channels=2, base_channels=4)
    for size in [(17, 9, 13), (16, 16, 16), (9, 10, 11)]:
        assert net(torch.rand(1, 1, *size)).shape == (1, 2, *size)
    assert scale_size([17, 9, 13], 3) == [3, 2, 2]
    x = torch.rand(1, 4, 8, 8, 8)
    assert resample(x, [4, 4, 4]).shape[2:] == (4, 4, 4)
    assert resample(x, [16, 8, 4]).shape[2:] == (16, 8, 4)
    assert resample(x, [8, 8, 8]) is x


def test_random_vectors_all_build_and_run():
    rng = random.Random(3)
    for _ in range(8):
        net = TAutoMLNet(sample_vector(rng), out_channels=2, base_channels=4)
        assert net(torch.rand(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_torchscript_round_trip(tmp_path):
    arch = [0, 2, 0, -1, -1, 1, 1, 1, 0, -1, 2, 0, 2, 1, 0] + TAIL
    net = TAutoMLNet(arch, base_channels=8, out_channels=2).eval()
    x = torch.rand(1, 1, 8, 12, 8)
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, tmp_path / "net.ts")
    loaded = torch.jit.load(tmp_path / "net.ts")
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": [0, 0, 0, -1, -1]}, "arch: a T-AutoML vector has 5 integers per block"),
        ({"arch": [0, 0, 0, -1, -1, 1, 0, 0, 1, -1] + TAIL}, "arch: position 8 \\(block 1 first input\\)"),
        ({"base_channels": 6}, "base_channels must be a positive multiple of 4"),
        ({"out_channels": 0}, "out_channels must be a positive integer"),
        ({"max_channels": 4}, "max_channels \\(4\\) must be at least base_channels"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"arch": [0, 0, 0, -1, -1, 1, 0, 0, 0, -1] + TAIL, "base_channels": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        TAutoMLNet(**args)
    with pytest.raises(ValueError, match="divisible by 4"):
        BottleneckSearchBlock(6)
