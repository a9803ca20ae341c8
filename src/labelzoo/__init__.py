"""LabelZoo: MONAI bundles, a MONAI Label app and a 3D Slicer extension for medical image segmentation."""

__version__ = "0.1.0"

__all__ = ["__version__"]
