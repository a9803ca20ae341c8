"""AxialAttention: shapes, the axial receptive field, bad arguments, TorchScript round-trip."""

from __future__ import annotations

import pytest
import torch

from labelzoo.networks import AxialAttention, AxialSelfAttention1d


@pytest.mark.parametrize(
    "spatial_dims, shape, heads, head_dim",
    [(3, (2, 16, 8, 6, 4), 4, 8), (3, (1, 8, 5, 7, 3), 1, 4), (2, (2, 12, 9, 11), 3, 5)],
)
def test_shape_is_preserved(spatial_dims: int, shape: tuple[int, ...], heads: int, head_dim: int) -> None:
    block = AxialAttention(spatial_dims, channels=shape[1], num_heads=heads, head_dim=head_dim)
    out = block(torch.rand(shape))
    assert out.shape == shape
    assert block.inner_dim == heads * head_dim
    assert len(block.axes) == spatial_dims
    assert [a.axis for a in block.axes] == list(range(spatial_dims))


def test_one_axis_mixes_only_along_that_axis() -> None:
    torch.manual_seed(0)
    att = AxialSelfAttention1d(channels=4, axis=1, num_heads=2, head_dim=3).eval()
    x = torch.rand(1, 4, 5, 6, 7)
    y = x.clone()
    y[0, :, 2, 3, 4] += 1.0
    diff = (att(y) - att(x)).abs().sum(dim=(0, 1))  # (5, 6, 7)
    changed = diff > 1e-6
    # only the line through (2, *, 4), i.e. along spatial axis 1, may change
    expected = torch.zeros_like(changed)
    expected[2, :, 4] = True
    assert torch.equal(changed, expected)


def test_all_axes_reach_the_whole_volume() -> None:
    torch.manual_seed(0)
    block = AxialAttention(3, channels=4, num_heads=2, head_dim=3).eval()
    x = torch.rand(1, 4, 4, 5, 3)
    y = x.clone()
    y[0, :, 1, 2, 0] += 1.0
    diff = (block(y) - block(x)).abs().sum(dim=(0, 1))
    assert bool((diff > 1e-7).all())


def test_gradients_flow() -> None:
    block = AxialAttention(3, channels=8, num_heads=2, head_dim=4)
    x = torch.rand(1, 8, 4, 4, 4, requires_grad=True)
    block(x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert all(p.grad is not None for p in block.parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 1, "channels": 8}, "spatial_dims"),
        ({"spatial_dims": 4, "channels": 8}, "spatial_dims"),
        ({"spatial_dims": 3, "channels": 0}, "channels"),
        ({"spatial_dims": 3, "channels": 8, "num_heads": 0}, "num_heads"),
        ({"spatial_dims": 3, "channels": 8, "head_dim": -2}, "head_dim"),
        ({"spatial_dims": 3, "channels": 8, "head_dim": 2.5}, "head_dim"),
        ({"spatial_dims": 3, "channels": 8, "dropout_rate": 1.0}, "dropout_rate"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AxialAttention(**kwargs)


def test_bad_axis_and_bad_input() -> None:
    with pytest.raises(ValueError, match="axis"):
        AxialSelfAttention1d(channels=4, axis=-1)
    block = AxialAttention(3, channels=8, num_heads=2, head_dim=4)
    with pytest.raises(ValueError, match="spatial dims"):
        block(torch.rand(1, 8, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        block(torch.rand(1, 6, 4, 4, 4))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript_round_trip(spatial_dims: int, tmp_path) -> None:
    torch.manual_seed(0)
    block = AxialAttention(spatial_dims, channels=8, num_heads=2, head_dim=4).eval()
    x = torch.rand((2, 8) + (5,) * spatial_dims)
    scripted = torch.jit.script(block)
    path = tmp_path / "axial.ts"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(x), block(x))
