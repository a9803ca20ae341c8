"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.axial_attention import AxialAttention, AxialSelfAttention1d

__all__ = ["AxialAttention", "AxialSelfAttention1d"]
