"""Network building blocks and networks that LabelZoo's bundles reference by dotted path."""

from labelzoo.networks.unetplusplus import FlexibleUNetPlusPlus, UNetPlusPlus, encoder_parameter_names

__all__ = ["FlexibleUNetPlusPlus", "UNetPlusPlus", "encoder_parameter_names"]
