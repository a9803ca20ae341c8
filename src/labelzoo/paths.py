"""Where the repository's parts live, found from the package location (never from machine paths)."""

from __future__ import annotations

import os
from pathlib import Path

from labelzoo.errors import LabelZooError

#: Environment variable that overrides the repository root (for an installed, non-editable package).
ROOT_ENV = "LABELZOO_ROOT"


def repo_root() -> Path:
    """Return the LabelZoo checkout that holds ``apps/`` and ``bundles/``.

    The root is ``$LABELZOO_ROOT`` when set, else the folder three levels above this file
    (``src/labelzoo/paths.py`` in a checkout installed with ``pip install -e .``).

    Raises:
        LabelZooError: when no folder with ``apps/labelzoo`` is found.
    """
    env = os.environ.get(ROOT_ENV)
    root = Path(env).expanduser().resolve() if env else Path(__file__).resolve().parents[2]
    if not (root / "apps" / "labelzoo" / "main.py").is_file():
        raise LabelZooError(
            f"cannot find the LabelZoo checkout (apps/labelzoo/main.py) under {root}: "
            f"install with `pip install -e .` from a clone, or set {ROOT_ENV} to the clone"
        )
    return root


def app_dir() -> Path:
    """The MONAI Label app folder ``apps/labelzoo``."""
    return repo_root() / "apps" / "labelzoo"


def bundles_dir() -> Path:
    """The folder holding one MONAI bundle per network."""
    return repo_root() / "bundles"
