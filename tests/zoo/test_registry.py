"""Weights registry (every trained version kept, listed, restorable) and release of a retrained bundle to a zoo,
in files and through the app's routes on a live server."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import requests
import torch
import yaml

from labelzoo.errors import LabelZooError
from labelzoo.zoo import core, registry
from labelzoo.zoo.release import CARD_START, bump, release
from tests.zoo.conftest import NAME


def _weights(bundle: Path, seed: int) -> dict[str, torch.Tensor]:
    """Write network weights (seeded) to models/model.pt, as a training run's CheckpointSaver does."""
    from monai.bundle import ConfigParser

    torch.manual_seed(seed)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    state = parser.get_parsed_content("network_def").state_dict()
    (bundle / "models").mkdir(exist_ok=True)
    torch.save({"model": state}, bundle / "models" / "model.pt")
    return state


def _run(bundle: Path, seed: int, dice: float) -> str:
    """A training run's result: new weights registered with what the run measured."""
    _weights(bundle, seed)
    return registry.sync(bundle, "train", {"metric_name": "val_mean_dice", "best_metric": dice,
                                           "best_metric_epoch": 1, "n_train": 2, "n_val": 1, "epochs": 1})


@pytest.fixture()
def trained(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the shrunk bundle with two trained weights versions: 1 (dice 0.5), then 2 (dice 0.7)."""
    copy = Path(shutil.copytree(bundle, tmp_path / "bundles" / NAME))
    assert _run(copy, 0, 0.5) == "1"
    assert _run(copy, 1, 0.7) == "2"
    return copy


def test_registry_keeps_lists_and_rolls_back(trained: Path) -> None:
    listing = registry.versions(trained)
    assert listing["active"] == "2" and [v["id"] for v in listing["versions"]] == ["1", "2"]
    assert listing["versions"][1]["base"] == "1" and listing["versions"][1]["best_metric"] == 0.7
    first = (trained / "models" / "registry" / "1" / "model.pt").read_bytes()
    entry = registry.rollback(trained, "1")
    assert entry["id"] == "1" and (trained / "models" / "model.pt").read_bytes() == first
    assert registry.active_id(trained) == "1"
    assert registry.sync(trained) == "1"  # the same bytes: no new version
    with pytest.raises(LabelZooError, match="no weights version '7'"):
        registry.rollback(trained, "7")
    (trained / "models" / "registry" / "2" / "model.pt").write_bytes(b"changed")
    with pytest.raises(LabelZooError, match="missing or changed"):
        registry.rollback(trained, "2")
    assert "* " in registry.format_versions(registry.versions(trained))


def test_release_bumps_measures_and_documents(trained: Path, served: tuple[Path, str], tmp_path: Path) -> None:
    zoo, url = served
    base = json.loads((trained / "configs" / "metadata.json").read_text())["version"]
    before = {p: p.read_bytes() for p in (trained / "configs").iterdir()}
    out = release(trained, zoo, base_url=url)
    new = bump(base)
    assert out["key"] == f"{NAME}_v{new}" and out["weights_version"] == "2"
    assert {p: p.read_bytes() for p in (trained / "configs").iterdir()} == before  # the bundle is not changed
    pulled = core.pull(f"{NAME}@{new}", url, tmp_path / "pulled")
    meta = json.loads((pulled / "configs" / "metadata.json").read_text())
    assert meta["version"] == new and "from " + base in meta["changelog"][new]
    assert meta["eval_metrics"]["val_mean_dice"] == 0.7
    assert "1 validation and 2 training images" in meta["eval_metrics"]["val_mean_dice_data"]
    card = (pulled / "docs" / "README.md").read_text()
    assert CARD_START in card and "Training data: 2 labelled image(s)" in card and f"version {base}" in card
    [weights] = yaml.safe_load((pulled / "large_files.yml").read_text())["large_files"]
    assert weights["hash_val"] == core.sha256_file(trained / "models" / "model.pt")
    assert weights["url"] == f"{url}/{NAME}_v{new}/models/model.pt"
    with zipfile.ZipFile(zoo / f"{NAME}_v{new}.zip") as zf:
        assert not [n for n in zf.namelist() if "/registry/" in n]  # earlier versions stay on the server
    # version 1 does not improve on version 2: refused, unless forced; the version goes above the zoo's newest
    registry.rollback(trained, "1")
    with pytest.raises(LabelZooError, match="does not improve"):
        release(trained, zoo, base_url=url)
    assert release(trained, zoo, base_url=url, force=True)["version"] == bump(new)


def test_app_versions_rollback_release(trained: Path, served: tuple[Path, str], sample_studies: Path,
                                       server_factory) -> None:
    zoo, url = served
    conf = (f"models={NAME},bundles={trained.parent},skip_scoring=true,skip_trainers=true,"
            f"zoo={url},zoo_publish={zoo}")
    server = server_factory(sample_studies, conf=conf)
    entry = server.client().info()["labelzoo"]["bundles"][NAME]
    assert entry["weights_version"] == "2" and entry["weights_versions"] == ["1", "2"]
    listing = requests.get(f"{server.url}/labelzoo/models/{NAME}/versions", timeout=30).json()
    assert listing["active"] == "2" and len(listing["versions"]) == 2
    image = sorted(server.client().datastore()["objects"])[0]
    assert server.client().infer(NAME, image, {})[1]["weights_id"] == "2"
    r = requests.post(f"{server.url}/labelzoo/models/{NAME}/rollback", params={"version": "1"}, timeout=60)
    assert r.status_code == 200 and r.json()["id"] == "1"
    assert server.client().infer(NAME, image, {})[1]["weights_id"] == "1"
    r = requests.post(f"{server.url}/labelzoo/models/{NAME}/rollback", params={"version": "9"}, timeout=60)
    assert r.status_code == 404 and "versions: 1, 2" in r.text
    r = requests.post(f"{server.url}/labelzoo/models/{NAME}/release", timeout=120)
    assert r.status_code == 409 and "does not improve" in r.text
    requests.post(f"{server.url}/labelzoo/models/{NAME}/rollback", params={"version": "2"}, timeout=60)
    r = requests.post(f"{server.url}/labelzoo/models/{NAME}/release", timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["key"] in core.read_index(url)
    r = requests.post(f"{server.url}/labelzoo/models/nope/versions", timeout=30)
    assert r.status_code in (404, 405)


def test_registry_routes_need_a_login_when_auth_is_on(trained: Path, sample_studies: Path, tmp_path: Path) -> None:
    from tests.conftest import run_server

    conf = f"models={NAME},bundles={trained.parent},skip_scoring=true,skip_trainers=true,zoo_publish={tmp_path}"
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": "http://127.0.0.1:9/realms/labelzoo"}
    with run_server(sample_studies, tmp_path / "server.log", conf=conf, extra_env=env,
                    ready_status=(200, 401)) as live:
        base = f"{live.url}/labelzoo/models/{NAME}"
        calls = {"versions": requests.get(f"{base}/versions", timeout=30),
                 "rollback": requests.post(f"{base}/rollback", params={"version": "1"}, timeout=30),
                 "release": requests.post(f"{base}/release", timeout=30)}
        for name, response in calls.items():
            assert response.status_code == 401, (name, response.status_code, response.text)
    assert registry.active_id(trained) == "2"  # nothing rolled back
