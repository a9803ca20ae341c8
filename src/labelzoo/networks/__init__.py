"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.axial_attention import AxialAttention, AxialSelfAttention1d
from labelzoo.networks.axial_dynunet import AxialDynUNet, AxialUpBlock
from labelzoo.networks.native_heads_dynunet import NativeHeadsDynUNet
from labelzoo.networks.tautoml import (
    AxialAttentionSearchBlock,
    BottleneckSearchBlock,
    ResidualSearchBlock,
    TAutoMLNet,
)
from labelzoo.networks.unetplusplus import FlexibleUNetPlusPlus, UNetPlusPlus, encoder_parameter_names

__all__ = [
    "AxialAttention",
    "AxialAttentionSearchBlock",
    "AxialDynUNet",
    "AxialSelfAttention1d",
    "AxialUpBlock",
    "BottleneckSearchBlock",
    "FlexibleUNetPlusPlus",
    "NativeHeadsDynUNet",
    "ResidualSearchBlock",
    "TAutoMLNet",
    "UNetPlusPlus",
    "encoder_parameter_names",
]
