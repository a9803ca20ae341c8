"""The other places MONAI downloads bundles from, checked on files (neither is reachable here):

- GitHub releases: ``monai.bundle.download(name, version, source="github", repo="owner/repo/tag")`` fetches the
  release asset ``<name>_v<version>.zip``: our zoo zips, served by the loopback zoo in place of github.com
  (MONAI's ``_get_git_release_url`` pointed at it);
- the Hugging Face Hub: ``monai.bundle.push_to_hf_hub`` uploads the bundle folder with a ``README.md`` model
  card and tags the commit with the version; ``download(source="huggingface_hub")`` snapshots that tag into
  ``<bundle_dir>/<name>``. MONAI's own two functions run against a hub kept in a local folder (the
  ``huggingface_hub`` calls they make: ``HfApi.create_repo / upload_folder / create_tag``, ``snapshot_download``).
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest
from monai.bundle import download, push_to_hf_hub
from monai.bundle import scripts as monai_scripts

from labelzoo.bundle.verify import verify_bundle
from labelzoo.zoo import core
from tests.zoo.conftest import NAME


def _version(bundle: Path) -> str:
    return json.loads((bundle / "configs" / "metadata.json").read_text())["version"]


def test_github_release_layout(bundle: Path, served: tuple[Path, str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, url = served
    core.publish(bundle, zoo, check=False)
    asked = []

    def release_url(owner: str, repo: str, tag_name: str, filename: str) -> str:
        asked.append(f"https://github.com/{owner}/{repo}/releases/download/{tag_name}/{filename}")
        return f"{url}/{filename}"

    monkeypatch.setattr(monai_scripts, "_get_git_release_url", release_url)
    version = _version(bundle)
    download(name=NAME, version=version, source="github", repo="labelzoo/zoo/models", bundle_dir=str(tmp_path))
    assert asked == [f"https://github.com/labelzoo/zoo/releases/download/models/{NAME}_v{version}.zip"]
    assert verify_bundle(tmp_path / NAME, run=False) == []


class LocalHub:
    """The ``huggingface_hub`` calls MONAI makes, on a folder: one snapshot per tag."""

    def __init__(self, root: Path):
        self.root = root
        self.head: dict[str, Path] = {}

    def module(self) -> types.SimpleNamespace:
        hub = self

        class HfApi:
            def __init__(self, token=None):
                pass

            def create_repo(self, repo_id, private=True, exist_ok=False):
                (hub.root / repo_id).mkdir(parents=True, exist_ok=True)

            def upload_folder(self, repo_id, folder_path, **kwargs):
                head = hub.root / repo_id / "main"
                shutil.rmtree(head, ignore_errors=True)
                shutil.copytree(folder_path, head)
                hub.head[repo_id] = head
                return f"https://huggingface.co/{repo_id}"

            def create_tag(self, repo_id, tag, exist_ok=False):
                shutil.copytree(hub.head[repo_id], hub.root / repo_id / "tags" / tag, dirs_exist_ok=exist_ok)

        def snapshot_download(repo_id, revision=None, local_dir=None):
            src = hub.root / repo_id / ("tags/" + revision if revision else "main")
            if not src.is_dir():
                raise FileNotFoundError(f"{repo_id}@{revision}")
            shutil.copytree(src, local_dir, dirs_exist_ok=True)
            return local_dir

        return types.SimpleNamespace(HfApi=HfApi, snapshot_download=snapshot_download)


def test_hugging_face_hub_layout(bundle: Path, served: tuple[Path, str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, url = served
    core.publish(bundle, zoo, base_url=url, check=False)
    version = _version(bundle)
    # the README's steps: pull from the zoo, then MONAI's push_to_hf_hub on the pulled folder
    pulled = core.pull(f"{NAME}@{version}", url, tmp_path / "push")
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(monai_scripts, "huggingface_hub", hub.module())
    push_to_hf_hub(repo=f"labelzoo/{NAME}", name=NAME, bundle_dir=str(pulled.parent), version=version,
                   tag_as_latest_version=True)
    tagged = tmp_path / "hub" / "labelzoo" / NAME / "tags"
    assert sorted(p.name for p in tagged.iterdir()) == sorted([version, "latest_version"])
    repo = tagged / version
    card = (repo / "README.md").read_text()
    assert card.startswith("---\ntags:\n- monai\n- medical\nlibrary_name: monai\nlicense: apache-2.0\n---\n")
    assert card.endswith((pulled / "docs" / "README.md").read_text())
    assert {"configs", "docs", "scripts", "LICENSE", "large_files.yml"} <= {p.name for p in repo.iterdir()}
    # MONAI's downloader reads it back: the hub repo root is the bundle folder
    dl = tmp_path / "dl"
    download(name=NAME, version=version, source="huggingface_hub", repo=f"labelzoo/{NAME}", bundle_dir=str(dl))
    assert verify_bundle(dl / NAME, run=False) == []
