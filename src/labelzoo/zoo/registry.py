"""A weights registry per bundle: every trained (or uploaded) ``models/model.pt`` is kept, listed and restorable.

MONAI Label keeps one weights file per model and training overwrites it. The registry keeps each version:

    <bundle>/models/registry/registry.json   {"active": "2", "versions": [{"id": "1", ...}, {"id": "2", ...}]}
    <bundle>/models/registry/<id>/model.pt   a copy of the weights of version <id>

Each version records ``created`` (epoch seconds), ``sha256``, ``size``, ``source`` (``train``, ``upload``,
``existing``: weights found at start, ``zoo``: shipped in a zoo bundle), the ``base`` version it was trained
from, and what its training run measured (``metric_name``, ``best_metric``, ``best_metric_epoch``,
``n_train``, ``n_val``, ``epochs``). ``models/model.pt`` stays the file MONAI Label and ``monai.bundle run``
load; :func:`rollback` copies an earlier version over it (atomically) and makes it ``active``. Changes are
made under a file lock. :func:`sync` registers weights that changed since the registry last saw them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError
from labelzoo.io import file_lock, replace_file_atomic, write_json_atomic
from labelzoo.zoo.core import sha256_file

logger = logging.getLogger(__name__)

FOLDER = "registry"
INDEX = "registry.json"
WEIGHTS = "model.pt"
#: fields a caller may attach to a version (what the training run measured, where it came from)
INFO_FIELDS = ("metric_name", "best_metric", "best_metric_epoch", "n_train", "n_val", "epochs", "note")


def weights_file(bundle: str | Path) -> Path:
    return Path(bundle) / "models" / WEIGHTS


def registry_dir(bundle: str | Path) -> Path:
    return Path(bundle) / "models" / FOLDER


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def read(bundle: str | Path) -> dict[str, Any]:
    """The registry of ``bundle`` (``{"active": None, "versions": []}`` when there is none)."""
    path = registry_dir(bundle) / INDEX
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"active": None, "versions": []}
    except (OSError, ValueError) as e:
        raise LabelZooError(f"{path}: unreadable weights registry: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
        raise LabelZooError(f"{path}: expected {{'active': id, 'versions': [...]}}")
    return data


@contextmanager
def _locked(bundle: str | Path) -> Iterator[None]:
    if not (Path(bundle) / "configs" / "metadata.json").is_file():
        raise LabelZooError(f"{bundle}: not a bundle folder (configs/metadata.json missing)")
    folder = registry_dir(bundle)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        yield


def active_id(bundle: str | Path) -> str | None:
    """The id of the version ``models/model.pt`` holds now, or ``None`` (no weights, or not registered yet).

    Cheap (no hashing): the registry remembers the file's (mtime, size) when it registered or restored it.
    """
    try:
        data = read(bundle)
    except LabelZooError:
        return None
    stat = _stat(weights_file(bundle))
    if stat is None or data.get("active_stat") != stat:
        return None
    return data.get("active")


def _find(data: dict[str, Any], version: str) -> dict[str, Any] | None:
    return next((v for v in data["versions"] if str(v.get("id")) == str(version)), None)


def sync(bundle: str | Path, source: str = "existing", info: dict[str, Any] | None = None) -> str | None:
    """Register ``models/model.pt`` as a new version if it differs from the active one; the active id.

    Args:
        bundle: the bundle folder.
        source: how the weights came (``train``, ``upload``, ``existing``, ``zoo``).
        info: measured facts to record with a new version (keys in :data:`INFO_FIELDS`).

    Returns:
        The active version id, or ``None`` when the bundle has no weights.
    """
    weights = weights_file(bundle)
    with _locked(bundle):
        data = read(bundle)
        stat = _stat(weights)
        if stat is None:
            return None
        if data.get("active_stat") == stat and data.get("active") is not None:
            return data["active"]
        digest = sha256_file(weights)
        same = next((v for v in data["versions"] if v.get("sha256") == digest), None)
        if same is not None:  # the same bytes as a known version (a copy, a restored backup): no new version
            data.update(active=same["id"], active_stat=_stat(weights))
            write_json_atomic(registry_dir(bundle) / INDEX, data)
            return same["id"]
        new_id = str(max((int(v["id"]) for v in data["versions"] if str(v.get("id", "")).isdigit()), default=0) + 1)
        folder = registry_dir(bundle) / new_id
        folder.mkdir(parents=True, exist_ok=True)
        replace_file_atomic(weights, folder / WEIGHTS)
        if sha256_file(folder / WEIGHTS) != digest:  # the weights changed while being copied: try later
            (folder / WEIGHTS).unlink(missing_ok=True)
            logger.warning("%s changed while registering it; not registered yet", weights)
            return data.get("active")
        entry = {"id": new_id, "created": time.time(), "sha256": digest, "size": stat[1], "source": source,
                 "base": data.get("active")}
        entry.update({k: v for k, v in (info or {}).items() if k in INFO_FIELDS and v is not None})
        data["versions"].append(entry)
        data.update(active=new_id, active_stat=_stat(weights))
        write_json_atomic(registry_dir(bundle) / INDEX, data)
    logger.info("%s: weights version %s registered (%s)", Path(bundle).name, new_id, source)
    return new_id


def versions(bundle: str | Path) -> dict[str, Any]:
    """``{"active": id, "versions": [...]}`` after registering weights that changed since the last look."""
    sync(bundle)
    data = read(bundle)
    return {"active": active_id(bundle), "versions": data["versions"]}


def get(bundle: str | Path, version: str) -> dict[str, Any]:
    """The record of ``version``; raises :class:`LabelZooError` listing the known ids."""
    data = read(bundle)
    entry = _find(data, version)
    if entry is None:
        known = ", ".join(str(v["id"]) for v in data["versions"]) or "none"
        raise LabelZooError(f"{Path(bundle).name} has no weights version {version!r} (versions: {known})")
    return entry


def rollback(bundle: str | Path, version: str) -> dict[str, Any]:
    """Make ``version`` the served weights again: copy its file over ``models/model.pt`` (atomically).

    The weights now served are registered first (nothing is lost), then the copy is checked against the
    version's sha256.

    Returns:
        The version's record, with ``"active": true``.
    """
    sync(bundle)
    with _locked(bundle):
        data = read(bundle)
        entry = _find(data, version)
        if entry is None:
            known = ", ".join(str(v["id"]) for v in data["versions"]) or "none"
            raise LabelZooError(f"{Path(bundle).name} has no weights version {version!r} (versions: {known})")
        src = registry_dir(bundle) / str(entry["id"]) / WEIGHTS
        if not src.is_file() or sha256_file(src) != entry["sha256"]:
            raise LabelZooError(f"{src}: the stored weights of version {version} are missing or changed")
        replace_file_atomic(src, weights_file(bundle))
        data.update(active=str(entry["id"]), active_stat=_stat(weights_file(bundle)))
        data.setdefault("history", []).append({"ts": time.time(), "rollback_to": str(entry["id"])})
        write_json_atomic(registry_dir(bundle) / INDEX, data)
    logger.info("%s: rolled back to weights version %s", Path(bundle).name, version)
    return {**entry, "active": True}


def format_versions(listing: dict[str, Any]) -> str:
    """One line per version (``*`` marks the active one), for the CLI."""
    lines = []
    for v in listing["versions"]:
        mark = "*" if str(v["id"]) == str(listing.get("active")) else " "
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.get("created", 0)))
        metric = f"{v['metric_name']}={v['best_metric']:.4f}" if isinstance(v.get("best_metric"), float) else ""
        lines.append(f"{mark} {v['id']:>3}  {when}  {v.get('source', ''):8}  base={v.get('base') or '-':>3}  "
                     f"{v['sha256'][:12]}  {metric}".rstrip())
    return "\n".join(lines) or "no weights versions"
