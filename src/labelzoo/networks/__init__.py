"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.axial_attention import AxialAttention, AxialSelfAttention1d
from labelzoo.networks.axial_dynunet import AxialDynUNet, AxialUpBlock

__all__ = ["AxialAttention", "AxialDynUNet", "AxialSelfAttention1d", "AxialUpBlock"]
