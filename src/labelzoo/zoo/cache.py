"""Zoo bundles for the app: ``--conf zoo=URL,models=NAME@VERSION+OTHER`` pulls them into a local cache.

Each version lives in its own folder, ``<cache>/<name>_v<version>/<name>/``, next to ``zoo.json`` (the zoo,
the zip's sha256 from the index, and the sha256 of every file under ``configs/``, ``scripts/`` and ``docs/``:
the parts that become code or that a user reads). At start:

- zoo reachable: the index is read; a version not cached (or cached from a zip with another checksum) is
  pulled with :func:`labelzoo.zoo.core.pull` (checksum-verified, never half-written);
- zoo unreachable: the cached version is served after its files are checked against ``zoo.json`` (an edited or
  corrupt cache is refused); ``NAME`` without a version takes the newest cached one. Nothing cached: an error
  naming ``--conf zoo``.

Trained weights the app writes later (``models/``) are not part of the check: training a served zoo bundle
makes new versions of its weights, kept by the app's registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.zoo import core

logger = logging.getLogger(__name__)

CHECKED_DIRS = ("configs", "scripts", "docs")
STAMP = "zoo.json"
CACHE_ENV = "LABELZOO_ZOO_CACHE"


@dataclass(frozen=True)
class ZooBundle:
    """A zoo bundle ready to serve: its name, version, local folder and where it came from."""

    name: str
    version: str
    path: Path
    zoo: str
    checksum: str
    offline: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def default_cache() -> Path:
    """``$LABELZOO_ZOO_CACHE``, else ``~/.cache/labelzoo/zoo``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labelzoo" / "zoo"


def split_models(models: str) -> list[str]:
    """``--conf models`` entries (separated by ``+``, commas or spaces)."""
    return [n.strip() for n in models.replace("+", ",").replace(" ", ",").split(",") if n.strip()]


def file_hashes(bundle: Path) -> dict[str, str]:
    """sha256 of every file under the bundle's ``configs/``, ``scripts/`` and ``docs/`` (relative path -> hex)."""
    out = {}
    for folder in CHECKED_DIRS:
        for path in sorted((bundle / folder).rglob("*")) if (bundle / folder).is_dir() else []:
            if path.is_file() and "__pycache__" not in path.parts:
                out[path.relative_to(bundle).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stamp(folder: Path) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_cached(folder: Path, name: str) -> str | None:
    """Why the cached version in ``folder`` cannot be served (``None`` when its files match ``zoo.json``)."""
    stamp = _stamp(folder)
    bundle = folder / name
    if stamp is None or not (bundle / "configs" / "metadata.json").is_file():
        return f"{folder}: incomplete cache entry (no {STAMP} or no bundle)"
    want, have = stamp.get("files") or {}, file_hashes(bundle)
    changed = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if changed:
        return f"{folder}: cached files differ from the download ({', '.join(changed[:5])}): refusing to serve them"
    return None


def cached_versions(cache: Path, name: str) -> list[str]:
    """Versions of ``name`` in the cache, oldest first."""
    if not cache.is_dir():
        return []
    keys = {p.name: {} for p in cache.iterdir() if p.is_dir() and (p / STAMP).is_file()}
    return core.versions(keys, name)


def _pull(name: str, version: str, zoo: str, checksum: str, cache: Path) -> Path:
    """Pull ``name@version`` into ``cache/<key>`` (replacing an entry with another checksum); the folder."""
    cache.mkdir(parents=True, exist_ok=True)
    key = core.index_key(name, version)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{key}.") as tmp:
        staged = Path(tmp) / key
        staged.mkdir()
        bundle = core.pull(f"{name}@{version}", zoo, staged)
        write_json_atomic(staged / STAMP, {"zoo": zoo, "name": name, "version": version, "checksum": checksum,
                                           "files": file_hashes(bundle)})
        target = cache / key
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    logger.info("zoo: pulled %s@%s from %s into %s", name, version, zoo, target)
    return target


def resolve(ref: str, zoo: str, cache: Path, index: dict[str, Any] | None) -> ZooBundle:
    """The local folder serving zoo bundle ``ref`` (``NAME`` or ``NAME@VERSION``), pulled if needed.

    Args:
        ref: the bundle reference.
        zoo: the zoo URL or folder.
        cache: the cache folder.
        index: the zoo's ``model_info.json``, or ``None`` when the zoo is unreachable (offline: cache only).

    Raises:
        LabelZooError: naming ``--conf models`` or ``--conf zoo`` and what is available.
    """
    try:
        name, version = core.parse_ref(ref)
    except LabelZooError as e:
        raise LabelZooError(f"--conf models: {e}") from None
    if index is not None:
        found = core.versions(index, name)
        if not found:
            raise LabelZooError(f"--conf models: bundle {name!r} is not in the zoo {zoo} "
                                f"(--conf zoo; it has: {', '.join(sorted(index)) or 'nothing'})")
        version = version or found[-1]
        if version not in found:
            raise LabelZooError(f"--conf models: bundle {name!r} has no version {version} in the zoo {zoo} "
                                f"(has: {', '.join(found)})")
        checksum = str(index[core.index_key(name, version)].get("checksum", "")).lower()
        folder = cache / core.index_key(name, version)
        stamp = _stamp(folder)
        if stamp is None or stamp.get("checksum") != checksum or check_cached(folder, name) is not None:
            folder = _pull(name, version, zoo, checksum, cache)
        return ZooBundle(name, version, folder / name, zoo, checksum)
    versions = cached_versions(cache, name)
    if version is None and versions:
        version = versions[-1]
    if version is None or version not in versions:
        have = f"cached versions: {', '.join(versions)}" if versions else "nothing cached"
        raise LabelZooError(f"--conf zoo {zoo} is unreachable and {ref} is not in the cache {cache} ({have})")
    folder = cache / core.index_key(name, version)
    problem = check_cached(folder, name)
    if problem:
        raise LabelZooError(f"--conf zoo {zoo} is unreachable and the cached {ref} is not usable: {problem}")
    logger.warning("zoo %s unreachable: serving %s@%s from the cache %s", zoo, name, version, folder)
    return ZooBundle(name, version, folder / name, zoo, str(_stamp(folder).get("checksum", "")), offline=True)


def resolve_models(models: str, zoo: str, cache: str | Path, local: dict[str, Path]) -> dict[str, ZooBundle]:
    """The zoo bundles named by ``--conf models``: entries with ``@VERSION``, and names not found in ``local``.

    Args:
        models: the ``--conf models`` value.
        zoo: the ``--conf zoo`` value ("" when unset).
        cache: the cache folder (``--conf zoo_cache``; "" for :func:`default_cache`).
        local: the bundles found on disk (name -> folder).

    Returns:
        Bundle name -> :class:`ZooBundle`, in the order of ``models``.

    Raises:
        LabelZooError: a ``NAME@VERSION`` without ``--conf zoo``, an unknown name or version, a zoo that is
            unreachable with nothing usable cached.
    """
    entries = [e for e in split_models(models) if e != "all"]
    wanted = [e for e in entries if "@" in e or (zoo and e not in local)]
    if not wanted:
        return {}
    if not zoo.strip():
        raise LabelZooError(f"--conf models: {', '.join(wanted)} name zoo versions (NAME@VERSION) but --conf zoo "
                            "is not set (give the zoo URL: --conf zoo=http://host/zoo)")
    zoo = zoo.strip()
    cache_dir = Path(cache).expanduser() if str(cache).strip() else default_cache()
    try:
        index: dict[str, Any] | None = core.read_index(zoo)
    except LabelZooError as e:
        logger.warning("--conf zoo %s: cannot read the index (%s); using the cache %s", zoo, e, cache_dir)
        index = None
    out: dict[str, ZooBundle] = {}
    for ref in wanted:
        bundle = resolve(ref, zoo, cache_dir, index)
        if bundle.name in out and out[bundle.name].version != bundle.version:
            raise LabelZooError(f"--conf models names {bundle.name} twice ({out[bundle.name].ref}, {bundle.ref}): "
                                "one version per bundle name")
        out[bundle.name] = bundle
    return out


def check_zoo_location(zoo: str) -> None:
    """``--conf zoo`` must be an ``http(s)://`` or ``file://`` URL or a folder path."""
    import urllib.parse

    scheme = urllib.parse.urlparse(zoo).scheme
    if "://" in zoo and scheme not in ("http", "https", "file"):
        raise LabelZooError(f"--conf zoo {zoo!r}: expected an http(s):// or file:// URL or a folder, got {scheme}://")


def served_bundles(found: dict[str, Path], models: str, zoo: str = "", cache: str | Path = ""
                   ) -> tuple[dict[str, Path], dict[str, ZooBundle]]:
    """The bundles the app serves for ``--conf models`` / ``zoo`` / ``zoo_cache``, zoo bundles pulled first.

    Returns:
        (name -> folder of every served bundle, name -> :class:`ZooBundle` for those from the zoo).
    """
    from labelzoo.discovery import select_bundles

    if zoo.strip():
        check_zoo_location(zoo.strip())
    zoo_bundles = resolve_models(models, zoo, cache, found)
    every = {**found, **{n: b.path for n, b in zoo_bundles.items()}}
    names = [e.split("@", 1)[0] for e in split_models(models)]
    return select_bundles(every, "+".join(names) or "all"), zoo_bundles
