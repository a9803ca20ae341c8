"""Axial attention: multi-head self-attention along one spatial axis at a time.

Full self-attention over a 3D feature map of ``N = H * W * D`` voxels costs ``O(N^2)``. Axial attention
(Ho et al., "Axial Attention in Multidimensional Transformers", arXiv:1912.12180; Wang et al.,
"Axial-DeepLab", ECCV 2020) attends along one axis at a time: every voxel attends to the voxels on
its own line along that axis, and the axes are visited in turn, so after one pass over all axes
every voxel has (indirectly) seen the whole volume. The cost is ``O(N * (H + W + D))``: linear in the
number of voxels for a given axis length. Luu & Park used it in the decoder of their BraTS 2021
winning nnU-Net extension (see :class:`labelzoo.networks.AxialDynUNet`).

Stable API (other LabelZoo modules build on it; keep it backwards compatible):

``AxialAttention(spatial_dims, channels, num_heads=4, head_dim=16, qkv_bias=False, dropout_rate=0.0)``
    ``forward(x)`` takes ``(B, channels, *spatial)`` with ``len(spatial) == spatial_dims`` (2 or 3) and
    returns a tensor of the same shape: the attention features only, without a residual connection
    (the caller adds ``x`` when it wants one, as AxialDynUNet does). Any spatial size works: there is
    no positional embedding tied to a patch size.

    Attributes: ``spatial_dims``, ``channels``, ``num_heads``, ``head_dim``, ``inner_dim``
    (``num_heads * head_dim``) and ``axes`` (one :class:`AxialSelfAttention1d` per spatial axis, applied
    in order ``0 .. spatial_dims - 1``; the output of one is the input of the next, as in the
    reference implementation's ``sum_axial_out=False`` mode).

``AxialSelfAttention1d(channels, axis, num_heads=4, head_dim=16, qkv_bias=False, dropout_rate=0.0)``
    multi-head self-attention along spatial axis ``axis`` (0-based, not counting batch and channel).

Both are TorchScript-scriptable (``torch.jit.script``).

Example:
    >>> import torch
    >>> block = AxialAttention(spatial_dims=3, channels=32, num_heads=4, head_dim=16)
    >>> block(torch.rand(2, 32, 8, 8, 8)).shape
    torch.Size([2, 32, 8, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AxialAttention", "AxialSelfAttention1d"]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"dropout_rate must be a number in [0, 1), got {value!r}")
    return float(value)


class AxialSelfAttention1d(nn.Module):
    """Multi-head self-attention along one spatial axis of a ``(B, C, *spatial)`` feature map.

    Every line of voxels parallel to ``axis`` is one sequence; the other spatial axes and the batch are
    folded into the batch of the attention. Queries, keys and values are linear projections of the
    ``C`` channels to ``num_heads * head_dim``; the heads are concatenated and projected back to ``C``.

    Args:
        channels: number of input (and output) channels ``C``.
        axis: spatial axis to attend along, 0-based (0 is the first axis after the channel axis).
        num_heads: number of attention heads.
        head_dim: dimension of each head.
        qkv_bias: whether the query/key/value projection has a bias.
        dropout_rate: dropout on the attention weights (training only).

    Raises:
        ValueError: if an argument is not a positive integer (``axis``: non-negative) or the dropout rate
            is outside ``[0, 1)``.
    """

    def __init__(
        self,
        channels: int,
        axis: int,
        num_heads: int = 4,
        head_dim: int = 16,
        qkv_bias: bool = False,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("head_dim", head_dim)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
            raise ValueError(f"axis must be a non-negative integer (a spatial axis), got {axis!r}")
        self.channels = channels
        self.axis = axis
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.inner_dim = num_heads * head_dim
        self.dropout_rate = _check_dropout(dropout_rate)
        self.to_qkv = nn.Linear(channels, 3 * self.inner_dim, bias=qkv_bias)
        self.to_out = nn.Linear(self.inner_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend along ``self.axis``; returns a tensor of the shape of ``x``."""
        if x.dim() < self.axis + 3:
            raise ValueError(
                f"expected a (B, C, *spatial) tensor with spatial axis {self.axis}, got shape {list(x.shape)}"
            )
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got input of shape {list(x.shape)}")
        channels_last = x.movedim(1, -1)  # (B, *spatial, C)
        seq = channels_last.movedim(self.axis + 1, -2)  # (B, *other spatial, L, C)
        folded_shape = seq.shape
        length = seq.shape[-2]
        seq = seq.reshape(-1, length, self.channels)  # (B', L, C)
        q, k, v = self.to_qkv(seq).chunk(3, dim=-1)
        q = q.reshape(-1, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B', h, L, d)
        k = k.reshape(-1, length, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(-1, length, self.num_heads, self.head_dim).transpose(1, 2)
        p = self.dropout_rate if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B', h, L, d)
        out = out.transpose(1, 2).reshape(-1, length, self.inner_dim)
        out = self.to_out(out).reshape(folded_shape)
        return out.movedim(-2, self.axis + 1).movedim(-1, 1)


class AxialAttention(nn.Module):
    """Axial attention over a 2D or 3D feature map: self-attention along each spatial axis in turn.

    Shape contract: input ``(B, channels, *spatial)`` with ``len(spatial) == spatial_dims``; output of the
    same shape (the attention features, no residual). Cost ``O(N * sum(spatial))`` for ``N`` voxels.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        channels: number of input (and output) channels.
        num_heads: number of attention heads per axis.
        head_dim: dimension of each head.
        qkv_bias: whether the query/key/value projections have a bias.
        dropout_rate: dropout on the attention weights (training only).

    Raises:
        ValueError: on a ``spatial_dims`` other than 2 or 3, a non-positive ``channels``, ``num_heads``
            or ``head_dim``, or a dropout rate outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> AxialAttention(2, channels=8, num_heads=2, head_dim=4)(torch.rand(1, 8, 16, 12)).shape
        torch.Size([1, 8, 16, 12])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int = 4,
        head_dim: int = 16,
        qkv_bias: bool = False,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims
        self.channels = _check_positive_int("channels", channels)
        self.num_heads = _check_positive_int("num_heads", num_heads)
        self.head_dim = _check_positive_int("head_dim", head_dim)
        self.inner_dim = num_heads * head_dim
        self.axes = nn.ModuleList(
            [
                AxialSelfAttention1d(channels, axis, num_heads, head_dim, qkv_bias=qkv_bias, dropout_rate=dropout_rate)
                for axis in range(spatial_dims)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the per-axis attentions in order; returns a tensor of the shape of ``x``."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a (B, C, *spatial) tensor with {self.spatial_dims} spatial dims, got shape {list(x.shape)}"
            )
        for attention in self.axes:
            x = attention(x)
        return x
