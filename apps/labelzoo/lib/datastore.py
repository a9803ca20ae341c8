"""MONAI Label's local datastore with atomic writes, a thread lock and input checks.

``LocalDatastore`` copies labels with ``shutil.copy`` straight onto the destination and rewrites
``datastore_v2.json`` in place: a crash or a concurrent reader can see a half-written file, and a
background thread updating image info can race a request saving a label. Here every file lands by
temp file + ``os.replace``, every change holds one re-entrant lock, and uploads and labels are
checked (id, readable image, geometry) before anything is stored.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.utils.others.generic import file_checksum

from labelzoo.errors import LabelZooError
from labelzoo.validation import (
    affine_error,
    check_id,
    geometry_error,
    label_shape_error,
    label_values_error,
    read_affine,
    read_label_values,
    read_shape,
)
from lib.errors import as_http, conflict, not_found, unprocessable, unsupported

logger = logging.getLogger(__name__)


def stage_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src`` to a temp file beside ``dest`` (fsynced); :func:`commit` puts it in place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def remove_stale_temp_files(root: str | os.PathLike, max_depth: int = 3) -> list[str]:
    """Remove ``.<name>.<random>.tmp`` files a crashed server left under ``root`` (the datastore, models/)."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for depth in range(max_depth + 1):
        for path in root.glob("/".join(["*"] * depth + [".*.tmp"])):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(str(path))
    if removed:
        logger.info("removed %d half-written file(s) left by a stopped server under %s", len(removed), root)
    return removed


class LabelZooDatastore(LocalDatastore):
    """A :class:`LocalDatastore` that never leaves half-written files and refuses bad input with HTTP 4xx.

    Args:
        geometries: ``(model name, spatial dims, channels)`` of the served models; an uploaded image
            must fit at least one of them (any 2D or 3D image when empty).
        **kwargs: passed to :class:`LocalDatastore`.
    """

    def __init__(self, datastore_path: str, geometries: Sequence[tuple[str, int, int]] = (),
                 label_values: Sequence[tuple[str, int, int, frozenset[int]]] = (), **kwargs: Any):
        self._rlock = threading.RLock()
        self._geometries = list(geometries)
        self._label_values = list(label_values)
        super().__init__(datastore_path, **kwargs)

    # ---- atomic, locked persistence -------------------------------------------------------------
    def _stage_datastore_file(self) -> Path:
        """Write the datastore's state to a temp file beside ``datastore_v2.json`` (fsynced), not yet in place."""
        text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
        path = Path(self._datastore_config_path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def _update_datastore_file(self, lock: bool = True) -> None:
        def write() -> None:
            self._ignore_event_config = True
            tmp = self._stage_datastore_file()
            try:
                os.replace(tmp, self._datastore_config_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        with self._rlock:
            if lock:
                with FileLock(self._lock_file):
                    write()
            else:
                write()

    def refresh(self) -> None:
        with self._rlock:
            super().refresh()

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        with self._rlock:
            super()._init_from_datastore_file(throw_exception)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        with self._rlock:
            if not self._datastore.objects.get(image_id):
                raise not_found(f"image {image_id!r} is not in the datastore")
            super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        with self._rlock:
            if not self._datastore.label(label_id, label_tag):
                raise not_found(f"no label {label_tag!r} for image {label_id!r}")
            super().update_label_info(label_id, label_tag, info)

    def remove_image(self, image_id: str) -> None:
        with self._rlock:
            if not self._datastore.objects.get(image_id):
                raise not_found(f"image {image_id!r} is not in the datastore")
            super().remove_image(image_id)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        with self._rlock:
            if not self._datastore.label(label_id, label_tag):
                raise not_found(f"no label {label_tag!r} for image {label_id!r}")
            super().remove_label(label_id, label_tag)

    def _commit(self, staged: Path, dest: str, update: Callable[[], None], undo: Callable[[], None]) -> None:
        """Put ``staged`` at ``dest`` and record it in ``datastore_v2.json``, all or nothing.

        ``update`` changes the in-memory datastore, ``undo`` reverts it. The new JSON is written (to a temp
        file) before anything is replaced; if any step fails, the previous file and JSON are restored.
        Caller holds the locks.
        """
        backup: Path | None = None
        json_tmp: Path | None = None
        placed = False
        try:
            update()
            json_tmp = self._stage_datastore_file()
            if os.path.exists(dest):
                backup = Path(f"{staged}.prev")
                os.link(dest, backup)
            os.replace(staged, dest)
            placed = True
            self._ignore_event_config = True
            os.replace(json_tmp, self._datastore_config_path)
            json_tmp = None
            self._config_ts = os.stat(self._datastore_config_path).st_mtime
        except BaseException:
            undo()
            if placed:
                if backup is not None:
                    os.replace(backup, dest)
                    backup = None
                else:
                    Path(dest).unlink(missing_ok=True)
            raise
        finally:
            staged.unlink(missing_ok=True)
            if json_tmp is not None:
                json_tmp.unlink(missing_ok=True)
            if backup is not None:
                backup.unlink(missing_ok=True)

    # ---- checked writes ------------------------------------------------------------------------
    def _extension(self, filename: str) -> str:
        name = os.path.basename(filename)
        for pattern in self._extensions:
            if fnmatch.fnmatch(name, pattern):
                return pattern.replace("*", "")
        raise unsupported(f"{name} is not an image type this datastore stores; expected one of "
                          f"{', '.join(p.replace('*', '') for p in self._extensions)}")

    def check_image_file(self, image_file: str, name: str) -> tuple[int, ...]:
        """Shape of an uploaded image, after checking it is readable and fits a served model (HTTP 422)."""
        with as_http(unprocessable):
            shape = read_shape(image_file, full=True)
        if not self._geometries:
            if len([s for s in shape if s > 1]) not in (2, 3, 4):
                raise unprocessable(f"{name} has shape {shape}: expected a 2D or 3D image")
            return shape
        errors = [geometry_error(shape, dims, ch, name=name, model=f"model {model!r}")
                  for model, dims, ch in self._geometries]
        if all(errors):
            raise unprocessable("; ".join(e for e in errors if e))
        return shape

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        ext = self._extension(image_filename)
        image_id = image_id or os.path.basename(image_filename)[: -len(ext)]
        with as_http():
            check_id(image_id)
        self.check_image_file(image_filename, f"uploaded image {image_id!r}")
        with self._rlock:
            existing = self._datastore.objects.get(image_id)
            if existing:
                uri = self.get_image_uri(image_id)
                if uri and file_checksum(uri) == file_checksum(image_filename):
                    return image_id
                raise conflict(f"image {image_id!r} already exists with different content: "
                               "upload it under another id, or remove the old one first")
            name = self._filename(image_id, ext)
            dest = os.path.realpath(os.path.join(self._datastore.image_path(), name))
            info = dict(image_info or {})
            info["ts"] = int(time.time())
            info["name"] = name
            staged = stage_copy(image_filename, dest)
            with FileLock(self._lock_file):
                self._commit(
                    staged, dest,
                    lambda: self._datastore.objects.__setitem__(
                        image_id, ImageLabelModel(image=DataModel(info=info, ext=ext))),
                    lambda: self._datastore.objects.pop(image_id, None))
        logger.info("added image %s (%s)", image_id, name)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        with as_http():
            check_id(image_id)
            check_id(label_tag, "label tag")
        ext = self._extension(label_filename)
        with self._rlock:
            obj = self._datastore.objects.get(image_id)
        if not obj:
            raise not_found(f"image {image_id!r} is not in the datastore; upload it before saving a label")
        with as_http(unprocessable):
            label_shape = read_shape(label_filename, full=True)
            try:
                image_shape = read_shape(self.get_image_uri(image_id))
            except LabelZooError:
                image_shape = None
        if image_shape is not None:
            err = label_shape_error(label_shape, image_shape, name=f"label for {image_id!r}")
            if err:
                raise unprocessable(err)
        if image_shape is not None:
            with as_http(unprocessable):
                err = affine_error(read_affine(label_filename), read_affine(self.get_image_uri(image_id)),
                                   name=f"label for {image_id!r}")
            if err:
                raise unprocessable(err)
        if self._label_values:
            # a value no model predicts would only surface later, as a failed training run
            with as_http(unprocessable):
                values = read_label_values(label_filename)
            err = label_values_error(values, image_shape, self._label_values, name=f"label for {image_id!r}")
            if err:
                raise unprocessable(err)
        label_path = self._datastore.label_path(label_tag)
        name = self._filename(image_id, ext)
        dest = os.path.join(label_path, name)
        info = dict(label_info or {})
        info["ts"] = int(time.time())
        info["name"] = name
        staged = stage_copy(label_filename, dest)
        with self._rlock, FileLock(self._lock_file):
            old = obj.labels.get(label_tag)

            def undo() -> None:
                if old is None:
                    obj.labels.pop(label_tag, None)
                else:
                    obj.labels[label_tag] = old

            self._commit(staged, dest, lambda: obj.labels.__setitem__(label_tag, DataModel(info=info, ext=ext)), undo)
            # drop a label of the same tag stored with another extension, so one label per image and tag
            if old and old.ext != ext:
                Path(label_path, self._filename(image_id, old.ext)).unlink(missing_ok=True)
        logger.info("saved label %s for %s (%s)", label_tag, image_id, name)
        return image_id
