"""Make the Slicer module's plain-Python Lib importable (``import LabelZooLib``) without 3D Slicer."""

from __future__ import annotations

import sys
from pathlib import Path

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "slicer_extension"
MODULE_DIR = EXTENSION_DIR / "LabelZoo"

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))
