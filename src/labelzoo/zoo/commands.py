"""``labelzoo zoo pack|publish|list|info|pull``."""

from __future__ import annotations

import json

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


def list_bundles(zoo: str) -> str:
    """List the bundles and versions in the zoo at ZOO (URL or folder)."""
    index = core.read_index(zoo)
    return "\n".join(f"{k}  {v.get('checksum', '')}  {v.get('source', '')}" for k, v in sorted(index.items()))


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


COMMANDS = {"pack": pack, "publish": publish, "list": list_bundles, "info": info, "pull": pull}
