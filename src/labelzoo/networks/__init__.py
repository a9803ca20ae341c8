"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.axial_attention import AxialAttention, AxialSelfAttention1d
from labelzoo.networks.axial_dynunet import AxialDynUNet, AxialUpBlock

__all__ = ["AxialAttention", "AxialDynUNet", "AxialSelfAttention1d", "AxialUpBlock"]

# T-AutoML: the search blocks and the network decoded from a T-AutoML vector (labelzoo.automl).
from labelzoo.networks.tautoml import (  # noqa: E402
    AxialAttentionSearchBlock,
    BottleneckSearchBlock,
    ResidualSearchBlock,
    TAutoMLNet,
)

__all__ += ["AxialAttentionSearchBlock", "BottleneckSearchBlock", "ResidualSearchBlock", "TAutoMLNet"]
