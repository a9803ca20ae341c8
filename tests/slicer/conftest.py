"""Make the Slicer module's plain-Python Lib importable (``import LabelZooLib``) without 3D Slicer."""

from __future__ import annotations

import sys
from pathlib import Path

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "slicer_extension"
MODULE_DIR = EXTENSION_DIR / "LabelZoo"

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def tiny_unetr_server(tmp_path_factory, sample_studies_template, name: str, conf: str):
    """Start the LabelZoo app serving the shrunk (tiny UNETR) bundle, untrained, on a copy of the sample studies.

    A context manager yielding the live server (``tests.conftest.run_server``); ``conf`` adds app settings to
    ``models=...,bundles=...`` (scoring, ...).
    """
    import shutil

    from tests.app.conftest import BUNDLE_NAME, bundle_source, shrink_bundle
    from tests.conftest import run_server

    base = tmp_path_factory.mktemp(name)
    studies = base / "studies"
    shutil.copytree(sample_studies_template, studies)
    bundles = base / "bundles"
    bundles.mkdir()
    shrink_bundle(bundle_source(), bundles)
    return run_server(studies, base / "server.log", conf=f"models={BUNDLE_NAME},bundles={bundles},{conf}")
