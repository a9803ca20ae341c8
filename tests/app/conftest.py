"""Fixtures for the app tests: a real bundle from ``bundles/``, shrunk so a CPU server trains it in seconds.

The bundle is copied into a temporary folder and its smoke overrides (``configs/smoke.json``: a tiny
UNETR, 32^3 ROI, 1 epoch, validation every epoch) are written into its JSON configs; the server is
then started with ``--conf models=<name>,bundles=<tmp>`` so it serves the copy instead of the original.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from labelzoo.simulate.loop import set_config_id as _set

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The bundle the live-server tests serve (override with $LABELZOO_TEST_BUNDLE, a bundle folder).
BUNDLE_NAME = "btcv_ct_unetr_segmentation"


def shrink_bundle(src: Path, dst_root: Path) -> Path:
    """Copy bundle ``src`` under ``dst_root`` (without weights or outputs) and apply its smoke overrides."""
    dst = dst_root / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    smoke_file = dst / "configs" / "smoke.json"
    smoke = json.loads(smoke_file.read_text()) if smoke_file.is_file() else {}
    for config in ("inference", "train"):
        path = dst / "configs" / f"{config}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        for key, value in {**smoke.get("all", {}), **smoke.get(config, {})}.items():
            _set(data, key, value)
        _set(data, "num_workers", 0)
        if config == "train":
            _set(data, "cache_rate", 0.0)
        path.write_text(json.dumps(data, indent=4) + "\n")
    return dst


def bundle_source() -> Path:
    env = os.environ.get("LABELZOO_TEST_BUNDLE")
    return Path(env) if env else REPO_ROOT / "bundles" / BUNDLE_NAME


@pytest.fixture(scope="session")
def small_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the shrunk test bundle (served with ``--conf bundles=<this folder>``)."""
    src = bundle_source()
    assert (src / "configs" / "metadata.json").is_file(), f"test bundle missing: {src}"
    root = tmp_path_factory.mktemp("bundles")
    shrink_bundle(src, root)
    return root
