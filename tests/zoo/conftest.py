"""Zoo test fixtures: the shrunk BTCV bundle and a zoo folder served by a real ``python -m http.server``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import REPO_ROOT, shrink_bundle
from tests.conftest import find_free_port

NAME = "btcv_ct_unetr_segmentation"


def bump(bundle: Path, version: str) -> None:
    """Set the bundle's version to ``version`` with a changelog entry."""
    path = bundle / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["version"] = version
    meta["changelog"] = {version: "test release", **meta["changelog"]}
    path.write_text(json.dumps(meta, indent=4) + "\n")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shrunk BTCV bundle, its metadata shapes matching the smoke network's roi (32^3)."""
    small = shrink_bundle(REPO_ROOT / "bundles" / NAME, tmp_path_factory.mktemp("src"))
    path = small / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    roi = json.loads((small / "configs" / "inference.json").read_text())["roi_size"]
    for part in ("inputs", "outputs"):
        for spec in meta["network_data_format"][part].values():
            spec["spatial_shape"] = roi
    path.write_text(json.dumps(meta, indent=4) + "\n")
    return small


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A zoo folder and the URL a real ``python -m http.server`` on 127.0.0.1 serves it at."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    port = find_free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(zoo)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield zoo, url
    finally:
        proc.terminate()
        proc.wait(10)
