"""Pack, publish and pull bundles in MONAI's model-zoo layout.

A zoo is a folder (served as is by any static web server) holding ``<name>_v<version>.zip`` files, each
with one top-level ``<name>/`` bundle folder (what ``python -m monai.bundle download --url`` extracts),
and ``model_info.json``: ``{"<name>_v<version>": {"checksum": "<sha256 of the zip>", "source": "<url>"}}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml

from labelzoo.errors import LabelZooError
from labelzoo.io import file_lock, replace_file_atomic, write_json_atomic

logger = logging.getLogger(__name__)

INDEX = "model_info.json"
#: Largest zip ``pull`` accepts (bounded before memory or disk is spent).
MAX_ZIP_BYTES = 2 * 1024**3
#: never packed: outputs, caches, the app's weights registry (models/registry) and training progress
_SKIP = shutil.ignore_patterns("eval", "logs", "__pycache__", "*.pyc", ".ipynb_checkpoints", "registry",
                               "train_progress.json", ".*.tmp")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def index_key(name: str, version: str) -> str:
    """``<name>_v<version>``: the zip stem and the index key."""
    return f"{name}_v{version}"


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _metadata(bundle: Path) -> dict[str, Any]:
    path = bundle / "configs" / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LabelZooError(f"{path}: cannot read the bundle metadata: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), str):
        raise LabelZooError(f"{path}: `version` must be a string")
    return meta


def summary(meta: dict[str, Any]) -> dict[str, Any]:
    """What a zoo user filters on, copied from metadata.json into the index entry (``meta``; MONAI's own
    readers of ``model_info.json`` use only ``checksum`` / ``source`` and ignore it)."""
    fmt = meta.get("network_data_format") or {}
    image = next(iter((fmt.get("inputs") or {}).values()), {}) or {}
    pred = next(iter((fmt.get("outputs") or {}).values()), {}) or {}
    label_map = (meta.get("labelzoo") or {}).get("label_map") if isinstance(meta.get("labelzoo"), dict) else None
    labels = [str(v) for v in (label_map or pred.get("channel_def") or {}).values() if str(v).lower() != "background"]
    return {"name": meta.get("name", ""), "task": meta.get("task", ""), "modality": image.get("modality", ""),
            "labels": labels, "eval_metrics": meta.get("eval_metrics") or {}}


def pack_bundle(bundle: str | Path, out_dir: str | Path, weights_url: str = "", check: bool = True,
                existing: set[str] | None = None, vendor: bool = True) -> Path:
    """Pack the bundle folder ``bundle`` as ``out_dir/<name>_v<version>.zip`` in MONAI's zoo layout.

    Args:
        bundle: the bundle folder (its name is the bundle name).
        out_dir: where the zip goes.
        weights_url: the URL the weights will be served from; with ``models/model.pt`` present, the packed
            ``large_files.yml`` gets this url and the weights' sha256.
        check: refuse a bundle failing ``labelzoo bundle verify --norun``.
        existing: index keys already in the target zoo (their versions are refused).
        vendor: copy the ``labelzoo`` modules the configs reference into the packed ``scripts/labelzoo`` and
            point the packed configs at them (:mod:`labelzoo.zoo.vendor`), so the zip runs without labelzoo.

    Returns:
        The zip path.

    Raises:
        LabelZooError: the bundle fails verification, its changelog lacks its version, or the version exists.
    """
    root = Path(bundle).expanduser().resolve()
    if not (root / "configs" / "metadata.json").is_file():
        raise LabelZooError(f"{bundle}: not a bundle folder (configs/metadata.json missing)")
    name, meta = root.name, _metadata(root)
    version = meta["version"]
    if version not in (meta.get("changelog") or {}):
        raise LabelZooError(f"{root}/configs/metadata.json: `changelog` has no entry for version {version}")
    key = index_key(name, version)
    if existing is not None and key in existing:
        raise LabelZooError(f"{key} is already in the zoo: bump `version` (and add a changelog entry) first")
    if check:
        from labelzoo.bundle.verify import format_report, verify_bundle

        problems = verify_bundle(root, run=False)
        if problems:
            raise LabelZooError("the bundle fails `labelzoo bundle verify --norun`:\n" + format_report(root, problems))
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labelzoo-pack-") as tmp:
        copy = Path(shutil.copytree(root, Path(tmp) / name, ignore=_SKIP))
        if vendor:
            from labelzoo.zoo.vendor import vendor_bundle

            vendor_bundle(copy)
        weights = copy / "models" / "model.pt"
        if weights.is_file():
            entry = {"path": "models/model.pt", "url": weights_url, "hash_type": "sha256",
                     "hash_val": sha256_file(weights)}
            (copy / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}, sort_keys=False))
        fd, tmp_zip = tempfile.mkstemp(dir=out, prefix=f".{key}.", suffix=".zip")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(copy.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(copy.parent).as_posix())
            target = out / f"{key}.zip"
            os.replace(tmp_zip, target)
        except BaseException:
            Path(tmp_zip).unlink(missing_ok=True)
            raise
    logger.info("packed %s", target)
    return target


def _locked(zoo: Path) -> AbstractContextManager[None]:
    return file_lock(zoo / ".model_info.lock")


def _read_local_index(zoo: Path) -> dict[str, Any]:
    path = zoo / INDEX
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LabelZooError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise LabelZooError(f"{path}: expected an object of <name>_v<version> entries")
    return data


def publish(bundle: str | Path, zoo: str | Path, base_url: str = "", check: bool = True) -> dict[str, Any]:
    """Pack ``bundle`` into the zoo folder ``zoo`` and add it to ``model_info.json``, under a file lock.

    With weights (``models/model.pt``), they are also copied to ``<zoo>/<key>/models/model.pt``, the url the
    packed ``large_files.yml`` names with their sha256.

    Args:
        bundle: the bundle folder.
        zoo: the zoo folder (created if missing).
        base_url: the URL the zoo folder is served at; the index ``source`` is ``<base_url>/<key>.zip``
            (the bare file name when empty).
        check: verify the bundle (``--norun``) first.

    Returns:
        The new index entry with its ``key``.
    """
    zoo_dir = Path(zoo).expanduser()
    zoo_dir.mkdir(parents=True, exist_ok=True)
    name, version = Path(bundle).resolve().name, _metadata(Path(bundle).resolve())["version"]
    key = index_key(name, version)
    base = base_url.rstrip("/")
    weights_url = f"{base}/{key}/models/model.pt" if base else ""
    with _locked(zoo_dir):
        index = _read_local_index(zoo_dir)
        zip_path = pack_bundle(bundle, zoo_dir, weights_url=weights_url, check=check, existing=set(index))
        weights = Path(bundle).resolve() / "models" / "model.pt"
        if weights.is_file():  # served at the url written into the packed large_files.yml
            served = zoo_dir / key / "models" / "model.pt"
            served.parent.mkdir(parents=True, exist_ok=True)
            replace_file_atomic(weights, served)
        entry = {"checksum": sha256_file(zip_path), "source": f"{base}/{zip_path.name}" if base else zip_path.name,
                 "meta": summary(_metadata(Path(bundle).resolve()))}
        index[key] = entry
        write_json_atomic(zoo_dir / INDEX, dict(sorted(index.items())))
    return {"key": key, **entry}


def _is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https", "file")


def _fetch(location: str, dest: Path, limit: int = MAX_ZIP_BYTES) -> None:
    """Copy ``location`` (http(s)/file URL or path) to ``dest``, refusing more than ``limit`` bytes."""
    try:
        src = urllib.request.urlopen(location, timeout=60) if _is_url(location) else open(location, "rb")  # noqa: S310
    except (OSError, ValueError) as e:
        raise LabelZooError(f"cannot read {location}: {e}") from e
    with src, open(dest, "wb") as out:
        total = 0
        for chunk in iter(lambda: src.read(1 << 20), b""):
            total += len(chunk)
            if total > limit:
                raise LabelZooError(f"{location}: larger than {limit} bytes")
            out.write(chunk)


def _join(zoo: str, rel: str) -> str:
    if _is_url(zoo):
        return zoo.rstrip("/") + "/" + rel
    return str(Path(zoo).expanduser() / rel)


def read_index(zoo: str) -> dict[str, Any]:
    """The ``model_info.json`` of the zoo at ``zoo`` (URL or folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        _fetch(_join(zoo, INDEX), Path(tmp) / INDEX, limit=64 * 1024**2)
        try:
            data = json.loads((Path(tmp) / INDEX).read_text())
        except json.JSONDecodeError as e:
            raise LabelZooError(f"{_join(zoo, INDEX)}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise LabelZooError(f"{_join(zoo, INDEX)}: expected an object of <name>_v<version> entries")
    return data


def versions(index: dict[str, Any], name: str) -> list[str]:
    """The versions of ``name`` in ``index``, oldest first."""
    found = [k[len(name) + 2:] for k in index if k.startswith(f"{name}_v")]
    return sorted(found, key=lambda v: [int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", v)])


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``NAME[@VERSION]`` -> (name, version or None)."""
    name, _, version = ref.partition("@")
    if not _NAME.match(name) or (version and not _NAME.match(version)):
        raise LabelZooError(f"bad bundle reference {ref!r}: expected NAME or NAME@VERSION")
    return name, version or None


def pull(ref: str, zoo: str, dest: str | Path) -> Path:
    """Download bundle ``NAME[@VERSION]`` (newest version by default) from ``zoo`` into ``dest/NAME``.

    The zip's sha256 must match the index's ``checksum``; the bundle is extracted to a temporary folder and
    renamed into place, so ``dest`` never holds a half-written bundle. An existing ``dest/NAME`` is replaced.

    Returns:
        The bundle folder.
    """
    name, version = parse_ref(ref)
    index = read_index(zoo)
    found = versions(index, name)
    if not found:
        raise LabelZooError(f"bundle {name} is not in the zoo {zoo} (has: {', '.join(sorted(index)) or 'nothing'})")
    version = version or found[-1]
    key = index_key(name, version)
    if key not in index:
        raise LabelZooError(f"bundle {name} has no version {version} in the zoo {zoo} (has: {', '.join(found)})")
    entry = index[key]
    if not isinstance(entry, dict) or not isinstance(entry.get("checksum"), str):
        raise LabelZooError(f"{zoo}/{INDEX}: entry {key} has no checksum")
    dest_dir = Path(dest).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=f".{key}.") as tmp:
        zip_path = Path(tmp) / f"{key}.zip"
        _fetch(_join(zoo, f"{key}.zip"), zip_path)
        digest = sha256_file(zip_path)
        if digest != entry["checksum"].lower():
            raise LabelZooError(f"{key}.zip from {zoo}: sha256 {digest} differs from the index checksum "
                                f"{entry['checksum']}: refusing a tampered or corrupt download")
        out = Path(tmp) / "x"
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                parts = Path(member).parts
                if not parts or parts[0] != name or ".." in parts or Path(member).is_absolute():
                    raise LabelZooError(f"{key}.zip: member {member!r} lies outside the {name}/ folder")
            zf.extractall(out)
        target = dest_dir / name
        old = Path(tmp) / "old"
        if target.exists():
            os.replace(target, old)
        os.replace(out / name, target)
    logger.info("pulled %s into %s", key, target)
    return target
