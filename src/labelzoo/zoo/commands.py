"""``labelzoo zoo pack|publish|list|info|pull``."""

from __future__ import annotations

import json
from pathlib import Path

from labelzoo.zoo import core


def pack(bundle: str, out: str = ".", weights_url: str = "", check: bool = True) -> str:
    """Pack a bundle folder as ``OUT/<name>_v<version>.zip`` (MONAI model-zoo layout).

    Refuses a bundle failing ``labelzoo bundle verify --norun`` or whose changelog lacks its version.
    Example: labelzoo zoo pack bundles/btcv_ct_unetr_segmentation --out dist/
    """
    return str(core.pack_bundle(bundle, out, weights_url=weights_url, check=check))


def publish(bundle: str, zoo: str, base_url: str = "", check: bool = True) -> str:
    """Pack a bundle into the zoo folder ZOO and add it to ``model_info.json`` (file-locked, atomic).

    BASE_URL is where a web server serves ZOO (the index ``source``). A version already there is refused.
    Example: labelzoo zoo publish bundles/btcv_ct_unetr_segmentation --zoo /srv/zoo --base_url http://host/zoo
    """
    entry = core.publish(bundle, zoo, base_url=base_url, check=check)
    return f"published {entry['key']} sha256={entry['checksum']} source={entry['source']}"


def _line(key: str, entry: dict) -> str:
    meta = entry.get("meta") or {}
    metrics = ", ".join(f"{k}={v}" for k, v in (meta.get("eval_metrics") or {}).items() if not k.endswith("_data"))
    parts = [key, meta.get("modality", ""), meta.get("task", ""), ", ".join(meta.get("labels", [])), metrics]
    return "  |  ".join(p for p in parts if p) + f"  |  sha256 {str(entry.get('checksum', ''))[:12]}"


def list_bundles(zoo: str) -> str:
    """List the bundles and versions in the zoo at ZOO (URL or folder): modality, task, labels, measured metrics."""
    index = core.read_index(zoo)
    return "\n".join(_line(k, v) for k, v in sorted(index.items()) if isinstance(v, dict)) or "the zoo is empty"


def search(query: str, zoo: str) -> str:
    """Bundles in ZOO whose name, task, modality or labels contain QUERY (case-insensitive).

    Example: labelzoo zoo search spleen --zoo http://host:8000
    """
    q = str(query).lower()
    index = core.read_index(zoo)
    hits = []
    for key, entry in sorted(index.items()):
        meta = (entry.get("meta") or {}) if isinstance(entry, dict) else {}
        text = " ".join([key, meta.get("name", ""), meta.get("task", ""), meta.get("modality", ""),
                         *meta.get("labels", [])]).lower()
        if q in text:
            hits.append(_line(key, entry))
    return "\n".join(hits) or f"no bundle in {zoo} matches {query!r}"


def info(ref: str, zoo: str) -> str:
    """Show the index entries of NAME (or NAME@VERSION) in the zoo at ZOO as JSON."""
    name, version = core.parse_ref(ref)
    index = core.read_index(zoo)
    found = core.versions(index, name) if version is None else [version]
    return json.dumps({core.index_key(name, v): index.get(core.index_key(name, v)) for v in found}, indent=2)


def pull(ref: str, zoo: str, dest: str = ".") -> str:
    """Download NAME[@VERSION] (newest by default) from ZOO into DEST/NAME; the sha256 is always verified.

    Example: labelzoo zoo pull btcv_ct_unetr_segmentation@0.1.0 --zoo http://host/zoo --dest bundles/
    """
    return str(core.pull(ref, zoo, dest))


def versions(bundle: str) -> str:
    """List the weights versions of the bundle folder BUNDLE (``*`` marks the one served; the app's registry).

    Example: labelzoo zoo versions bundles/btcv_ct_unetr_segmentation
    """
    from labelzoo.zoo import registry

    return registry.format_versions(registry.versions(bundle))


def rollback(bundle: str, version: str) -> str:
    """Serve weights version VERSION of BUNDLE again (copied over models/model.pt; a running server reloads it).

    Example: labelzoo zoo rollback bundles/btcv_ct_unetr_segmentation 2
    """
    from labelzoo.zoo import registry

    entry = registry.rollback(bundle, str(version))
    return f"{Path(bundle).name}: serving weights version {entry['id']} (sha256 {entry['sha256'][:12]})"


def release(bundle: str, zoo: str, base_url: str = "", bump: str = "patch", force: bool = False,
            check: bool = True) -> str:
    """Publish the weights BUNDLE serves now to the zoo folder ZOO as a new version (retrained in the app).

    Refused unless the served weights come from a training run whose best validation metric beats every earlier
    weights version (FORCE releases anyway). The version is bumped (BUMP: patch, minor or major) above the
    bundle's and the zoo's newest, with a changelog entry, eval_metrics from that run and a model card in
    docs/README.md; the bundle folder itself is not changed (weights never go into git).
    Example: labelzoo zoo release bundles/btcv_ct_unetr_segmentation --zoo /srv/zoo --base_url http://host:8000
    """
    from labelzoo.zoo.release import release as do_release

    out = do_release(bundle, zoo, base_url=base_url, part=bump, force=force, check=check)
    return f"released {out['key']} (weights version {out['weights_version']}) eval_metrics={out['eval_metrics']}"


COMMANDS = {"pack": pack, "publish": publish, "list": list_bundles, "search": search, "info": info, "pull": pull,
            "versions": versions, "rollback": rollback, "release": release}
