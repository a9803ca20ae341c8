"""The model zoo end to end: pack -> publish to a folder served by a real ``python -m http.server`` on
127.0.0.1 -> ``python -m monai.bundle download`` and ``labelzoo zoo pull`` -> ``labelzoo bundle verify --norun``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labelzoo.bundle.verify import verify_bundle
from labelzoo.errors import LabelZooError
from labelzoo.zoo import core
from tests.zoo.conftest import NAME, bump


def test_pack_publish_download_verify(bundle: Path, served: tuple[Path, str], tmp_path: Path) -> None:
    zoo, url = served
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    entry = core.publish(bundle, zoo, base_url=url)
    key = f"{NAME}_v{version}"
    assert entry["key"] == key and entry["source"] == f"{url}/{key}.zip"
    index = core.read_index(url)
    assert index[key]["checksum"] == core.sha256_file(zoo / f"{key}.zip")
    assert index[key]["meta"]["modality"] == "CT" and "spleen" in index[key]["meta"]["labels"]
    from labelzoo.zoo import commands

    assert key in commands.search("SPLEEN", url) and "CT" in commands.list_bundles(url)
    assert "no bundle" in commands.search("brain", url)
    with zipfile.ZipFile(zoo / f"{key}.zip") as zf:
        assert f"{NAME}/configs/metadata.json" in zf.namelist()
        assert all(n.startswith(f"{NAME}/") for n in zf.namelist())
    # MONAI's own downloader reads the zoo.
    dl = tmp_path / "monai_dl"
    subprocess.run([sys.executable, "-m", "monai.bundle", "download", "--name", NAME, "--version", version,
                    "--url", f"{url}/{key}.zip", "--bundle_dir", str(dl)], check=True, capture_output=True)
    assert verify_bundle(dl / NAME, run=False) == []
    # labelzoo's pull: checksum verified, by name alone (newest) and by version.
    pulled = core.pull(NAME, url, tmp_path / "pulled")
    assert verify_bundle(pulled, run=False) == []
    assert core.pull(f"{NAME}@{version}", url, tmp_path / "pulled") == pulled
    # The same version twice is refused; a missing version is refused.
    with pytest.raises(LabelZooError, match="already in the zoo"):
        core.publish(bundle, zoo, base_url=url)
    with pytest.raises(LabelZooError, match="no version 9.9.9"):
        core.pull(f"{NAME}@9.9.9", url, tmp_path / "pulled")


def test_tampered_zip_refused(bundle: Path, served: tuple[Path, str], tmp_path: Path) -> None:
    zoo, url = served
    key = core.publish(bundle, zoo, base_url=url)["key"]
    with zipfile.ZipFile(zoo / f"{key}.zip", "a") as zf:
        zf.writestr(f"{NAME}/scripts/evil.py", "raise SystemExit")
    dest = tmp_path / "dest"
    with pytest.raises(LabelZooError, match="tampered"):
        core.pull(NAME, url, dest)
    assert list(dest.iterdir()) == []  # nothing half-written


def test_pack_refuses_a_changelog_without_the_version(bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(bundle, tmp_path / NAME))
    meta = json.loads((copy / "configs" / "metadata.json").read_text())
    meta["version"] = "7.7.7"
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(LabelZooError, match="no entry for version 7.7.7"):
        core.pack_bundle(copy, tmp_path / "out", check=False)


def test_concurrent_publishes_keep_a_valid_index(bundle: Path, tmp_path: Path) -> None:
    import shutil

    copies = []
    for i in range(4):
        copy = Path(shutil.copytree(bundle, tmp_path / f"c{i}" / NAME))
        bump(copy, f"1.0.{i}")
        copies.append(copy)
    zoo = tmp_path / "zoo"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: core.publish(c, zoo, check=False), copies))
    index = json.loads((zoo / core.INDEX).read_text())
    assert sorted(index) == [f"{NAME}_v1.0.{i}" for i in range(4)]
    assert core.versions(index, NAME)[-1] == "1.0.3"


def test_weights_listed_with_url_and_sha256(bundle: Path, served: tuple[Path, str], tmp_path: Path) -> None:
    import hashlib
    import shutil

    import yaml

    copy = Path(shutil.copytree(bundle, tmp_path / "w" / NAME))
    (copy / "models").mkdir()
    payload = b"weights-bytes" * 100
    (copy / "models" / "model.pt").write_bytes(payload)
    zoo, url = served
    key = core.publish(copy, zoo, base_url=url, check=False)["key"]
    with zipfile.ZipFile(zoo / f"{key}.zip") as zf:
        [entry] = yaml.safe_load(zf.read(f"{NAME}/large_files.yml"))["large_files"]
    assert entry["hash_type"] == "sha256" and entry["hash_val"] == hashlib.sha256(payload).hexdigest()
    assert urllib.request.urlopen(entry["url"], timeout=10).read() == payload
    assert "url: \"\"" in (bundle / "large_files.yml").read_text()  # the source bundle is untouched
