"""The README's "Sharing bundles" path with real parts: a zoo on a loopback ``http.server``; pack -> publish ->
``monai.bundle download`` -> ``bundle verify --norun`` on the download -> ``labelzoo serve --conf zoo=...`` serves
it (pulled into a cache, checksum-verified) -> ``/infer`` answers; the same server starts offline from the cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from labelzoo.bundle.verify import verify_bundle
from labelzoo.errors import LabelZooError
from labelzoo.serve import serve
from labelzoo.zoo import cache, core
from tests.zoo.conftest import NAME, bump

VERSION = "0.2.0"


def _trained_copy(bundle: Path, dest: Path) -> Path:
    """A copy of the shrunk bundle at VERSION with (randomly initialised) weights in models/model.pt."""
    import torch
    from monai.bundle import ConfigParser

    copy = Path(shutil.copytree(bundle, dest / NAME))
    bump(copy, VERSION)
    parser = ConfigParser()
    parser.read_config(str(copy / "configs" / "inference.json"))
    (copy / "models").mkdir()
    torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, copy / "models" / "model.pt")
    return copy


def test_publish_download_serve_infer_offline(bundle: Path, served: tuple[Path, str], sample_studies: Path,
                                              server_factory, tmp_path: Path) -> None:
    zoo, url = served
    copy = _trained_copy(bundle, tmp_path / "src")
    key = core.publish(copy, zoo, base_url=url)["key"]
    assert key == f"{NAME}_v{VERSION}"
    dl = tmp_path / "dl"
    subprocess.run([sys.executable, "-m", "monai.bundle", "download", "--name", NAME, "--version", VERSION,
                    "--url", f"{url}/{key}.zip", "--bundle_dir", str(dl)], check=True, capture_output=True)
    assert verify_bundle(dl / NAME, run=False) == []

    zoo_cache = tmp_path / "cache"
    conf = f"zoo={url},models={NAME}@{VERSION},zoo_cache={zoo_cache},skip_scoring=true,skip_trainers=true"
    server = server_factory(sample_studies, conf=conf)
    info = server.client().info()
    entry = info["labelzoo"]["bundles"][NAME]
    assert entry["version"] == VERSION and entry["source"] == "zoo" and entry["zoo_ref"] == f"{NAME}@{VERSION}"
    assert entry["trained"] is True and entry["offline"] is False
    assert entry["checksum"] == core.sha256_file(zoo / f"{key}.zip")
    image = sorted(server.client().datastore()["objects"])[0]
    _, params = server.client().infer(NAME, image, {})
    assert params["bundle_version"] == VERSION and params["model_version"]
    stamp = json.loads((zoo_cache / key / cache.STAMP).read_text())
    assert stamp["checksum"] == entry["checksum"] and "scripts/labelzoo/transforms.py" in stamp["files"]

    # the zoo goes away: the next start serves the cached, checked copy
    for path in zoo.iterdir():
        if path.is_file():
            path.unlink()
    offline = server_factory(sample_studies, conf=conf)
    entry = offline.client().info()["labelzoo"]["bundles"][NAME]
    assert entry["offline"] is True and entry["version"] == VERSION


def test_cache_offline_and_tampered(bundle: Path, served: tuple[Path, str], tmp_path: Path) -> None:
    zoo, url = served
    core.publish(bundle, zoo, base_url=url, check=False)
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    store = tmp_path / "cache"
    got = cache.resolve_models(f"{NAME}@{version}", url, store, {})
    assert got[NAME].path.is_dir() and not got[NAME].offline
    # unreachable zoo (closed port): served from the cache, newest cached version for a bare name
    dead = "http://127.0.0.1:9"
    assert cache.resolve_models(NAME, dead, store, {})[NAME].offline
    with pytest.raises(LabelZooError, match="--conf zoo .* not in the cache"):
        cache.resolve_models(f"{NAME}@9.9.9", dead, store, {})
    # an edited cached config is refused offline, and pulled again online
    infer = got[NAME].path / "configs" / "inference.json"
    infer.write_text(infer.read_text().replace("scripts.labelzoo", "os"))
    with pytest.raises(LabelZooError, match="differ from the download"):
        cache.resolve_models(NAME, dead, store, {})
    again = cache.resolve_models(NAME, url, store, {})[NAME]
    assert "scripts.labelzoo" in (again.path / "configs" / "inference.json").read_text()


@pytest.mark.parametrize(("conf", "message"), [
    ("models=foo@1.0.0", "--conf models: foo@1.0.0 name zoo versions .* --conf zoo is not set"),
    ("zoo=s3://bucket/zoo,models=foo@1", "--conf zoo 's3://bucket/zoo'"),
    ("zoo=http://127.0.0.1:9,models=foo@1,zoo_cache={tmp}", "--conf zoo http://127.0.0.1:9 is unreachable"),
    ("zoo={tmp},models=foo@bad/version", "--conf models: bad bundle reference"),
])
def test_bad_zoo_conf_names_the_key(sample_studies: Path, tmp_path: Path, conf: str, message: str) -> None:
    with pytest.raises(LabelZooError, match=message):
        serve(str(sample_studies), conf=conf.format(tmp=tmp_path), dry_run=True)


@pytest.mark.slow
def test_train_in_app_release_then_serve_from_the_zoo_url(bundle: Path, served: tuple[Path, str],
                                                           sample_studies: Path, server_factory,
                                                           tmp_path: Path) -> None:
    """The README's story: a bundle trained in the app is released to the zoo; another server (only the URL)
    pulls and serves that version, and its infer results name it."""
    from tests.app.test_labelzoo_app import wait_for

    zoo, url = served
    local = Path(shutil.copytree(bundle, tmp_path / "bundles" / NAME))
    conf = f"models={NAME},bundles={local.parent},skip_scoring=true,zoo={url},zoo_publish={zoo}"
    trainer = server_factory(sample_studies, conf=conf)
    client = trainer.client()
    client.train_start(NAME, {"max_epochs": 1, "val_split": 0.5, "pretrained": False, "multi_gpu": False})
    task = wait_for(lambda: (lambda t: t if t["status"] in ("DONE", "ERROR", "STOPPED") and t.get("progress", {})
                    .get("status") in ("finished", "failed") else None)(client.train_status()), 600, "training")
    assert task["status"] == "DONE", task
    listing = requests.get(f"{trainer.url}/labelzoo/models/{NAME}/versions", timeout=30).json()
    [version] = listing["versions"]
    assert version["source"] == "train" and version["n_train"] == 1 and version["n_val"] == 1
    assert isinstance(version["best_metric"], float)
    r = requests.post(f"{trainer.url}/labelzoo/models/{NAME}/release", timeout=600)
    assert r.status_code == 200, r.text
    released = r.json()
    new = released["version"]
    assert released["eval_metrics"]
    # another machine: nothing but the zoo URL
    other = server_factory(sample_studies, conf=f"zoo={url},models={NAME}@{new},zoo_cache={tmp_path / 'cache'},"
                                                "skip_scoring=true,skip_trainers=true")
    entry = other.client().info()["labelzoo"]["bundles"][NAME]
    assert entry["version"] == new and entry["trained"] and entry["source"] == "zoo"
    image = sorted(other.client().datastore()["objects"])[0]
    params = other.client().infer(NAME, image, {})[1]
    assert params["bundle_version"] == new
    served_weights = Path(tmp_path / "cache" / f"{NAME}_v{new}" / NAME / "models" / "model.pt")
    assert core.sha256_file(served_weights) == version["sha256"]
