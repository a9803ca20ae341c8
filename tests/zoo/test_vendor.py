"""Vendoring: a packed bundle carries the labelzoo code its configs name and runs where labelzoo is not installed.

The round trip: pack (with tiny trained weights) -> publish to a zoo served by a real ``http.server`` ->
``python -m monai.bundle download`` -> ``python -m monai.bundle run`` inference from the bundle folder, in a
virtual environment where ``import labelzoo`` fails but MONAI and its dependencies import (see ``no_labelzoo``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
import venv
import zipfile
from pathlib import Path

import nibabel as nib
import pytest

from labelzoo.bundle.smoke import data_format, load_smoke, write_synthetic_dataset
from labelzoo.zoo import core, vendor
from tests.zoo.conftest import NAME

BARE = re.compile(r"(?<![\w.])labelzoo\.")


@pytest.fixture(scope="module")
def no_labelzoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose python imports this environment's packages but not labelzoo.

    Its site-packages holds a ``.pth`` naming this environment's site-packages folder: Python adds that folder
    to ``sys.path`` but does not process the ``.pth`` files inside it, so labelzoo's editable install (a
    ``.pth`` there) is not seen. It approximates a fresh venv with ``pip install monai[all]``: the same
    packages, without labelzoo.
    """
    root = tmp_path_factory.mktemp("venv") / "nolz"
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABELZOO_ROOT")}


def test_vendored_copy_names_no_bare_labelzoo(bundle: Path, tmp_path: Path) -> None:
    before = {p: p.read_text() for p in vendor.config_files(bundle)}
    zip_path = core.pack_bundle(bundle, tmp_path, check=False)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        configs = {n: zf.read(n).decode() for n in names if n.startswith(f"{NAME}/configs/") and n.endswith(".json")}
        scripts = {n: zf.read(n).decode() for n in names if n.startswith(f"{NAME}/scripts/") and n.endswith(".py")}
    assert {p: p.read_text() for p in vendor.config_files(bundle)} == before  # the source bundle is untouched
    for name, text in configs.items():
        if not name.endswith("metadata.json"):
            assert not BARE.search(text), f"{name} still names labelzoo"
    assert "scripts.labelzoo.transforms.ValidateImaged" in configs[f"{NAME}/configs/inference.json"]
    assert "labelzoo" not in json.loads(configs[f"{NAME}/configs/metadata.json"])["required_packages_version"]
    assert f"{NAME}/scripts/__init__.py" in scripts and f"{NAME}/scripts/labelzoo/transforms.py" in scripts
    for name, text in scripts.items():  # the vendored code imports itself only
        assert not re.search(r"^\s*(from|import)\s+labelzoo\b", text, re.M), name


def test_closure_follows_imports() -> None:
    mods = vendor.module_closure({"labelzoo.transforms"})
    assert {"labelzoo", "labelzoo.transforms", "labelzoo.errors"} <= set(mods)
    assert "labelzoo.zoo.core" not in mods and "labelzoo.cli" not in mods
    src = "from labelzoo.errors import X\nfrom labelzoo import __version__\n"
    assert vendor.relative_imports(src, "labelzoo.networks.unetplusplus", False) == (
        "from ..errors import X\nfrom .. import __version__\n")
    assert vendor.rewrite_config('"$import labelzoo.brats", "labelzoo.nope.X", "mylabelzoo.a"') == (
        '"$import scripts.labelzoo.brats", "labelzoo.nope.X", "mylabelzoo.a"')


def test_downloaded_bundle_runs_without_labelzoo(bundle: Path, served: tuple[Path, str],
                                                 no_labelzoo: Path, tmp_path: Path) -> None:
    import shutil

    import torch
    from monai.bundle import ConfigParser

    check = subprocess.run([str(no_labelzoo), "-c", "import monai, torch, nibabel; import labelzoo"], env=_env(),
                           cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode != 0 and "No module named 'labelzoo'" in check.stderr, check.stderr[-2000:]
    # tiny trained weights, so the inference handlers' CheckpointLoader has something to load
    copy = Path(shutil.copytree(bundle, tmp_path / "src" / NAME))
    parser = ConfigParser()
    parser.read_config(str(copy / "configs" / "inference.json"))
    (copy / "models").mkdir()
    torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, copy / "models" / "model.pt")
    zoo, url = served
    key = core.publish(copy, zoo, base_url=url, check=False)["key"]
    version = key.rsplit("_v", 1)[1]
    dl = tmp_path / "dl"
    subprocess.run([str(no_labelzoo), "-m", "monai.bundle", "download", "--name", NAME, "--version", version,
                    "--url", f"{url}/{key}.zip", "--bundle_dir", str(dl)], check=True, capture_output=True,
                   env=_env(), cwd=tmp_path)
    downloaded = dl / NAME
    assert (downloaded / "models" / "model.pt").is_file()
    meta = json.loads((downloaded / "configs" / "metadata.json").read_text())
    smoke, _ = load_smoke(downloaded)
    data = write_synthetic_dataset(tmp_path / "data", data_format(meta, {**smoke.data, "num_training": 0}))
    out = tmp_path / "out"
    proc = subprocess.run([str(no_labelzoo), "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                           "--dataset_dir", str(data), "--output_dir", str(out)],
                          cwd=downloaded, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [pred] = sorted(out.glob("*_seg.nii.gz"))
    [image] = sorted((data / "imagesTs").glob("*.nii.gz"))
    assert nib.load(pred).shape[:3] == nib.load(image).shape[:3]
