"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.axial_attention import AxialAttention, AxialSelfAttention1d

__all__ = ["AxialAttention", "AxialSelfAttention1d"]

# T-AutoML: the search blocks and the network decoded from a T-AutoML vector (labelzoo.automl).
from labelzoo.networks.tautoml import (  # noqa: E402
    AxialAttentionSearchBlock,
    BottleneckSearchBlock,
    ResidualSearchBlock,
    TAutoMLNet,
)

__all__ += ["AxialAttentionSearchBlock", "BottleneckSearchBlock", "ResidualSearchBlock", "TAutoMLNet"]
