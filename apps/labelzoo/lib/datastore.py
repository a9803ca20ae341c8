"""MONAI Label's local datastore with atomic writes, a thread lock and input checks.

``LocalDatastore`` copies labels with ``shutil.copy`` straight onto the destination and rewrites
``datastore_v2.json`` in place: a crash or a concurrent reader can see a half-written file, and a
background thread updating image info can race a request saving a label. Here every file lands by
temp file + ``os.replace``, every change holds one re-entrant lock, and uploads and labels are
checked (id, readable image, geometry) before anything is stored.
"""

from __future__ import annotations

import contextvars
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
from labelzoo.partial import PARTIAL_KEY, check_annotated_slices
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

#: images the strategy now choosing may not hand out (leased to other annotators, already read by this one);
#: set by the app around one ``next_sample`` call
POOL_EXCLUDE: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("pool_exclude", default=frozenset())


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

    def label_records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Image id -> label tag -> the label's stored info (annotator, ts, ...)."""
        with self._rlock:
            return {i: {t: dict(m.info or {}) for t, m in o.labels.items()} for i, o in self._datastore.objects.items()}

    def get_unlabeled_images(self, label_tag=None, labels=None):
        images = super().get_unlabeled_images(label_tag, labels)
        exclude = POOL_EXCLUDE.get()
        return [i for i in images if i not in exclude] if exclude else images

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

    def _commit(self, staged: Path | list[tuple[Path, str]], dest: str | None, update: Callable[[], None],
                undo: Callable[[], None]) -> None:
        """Put staged files in place and record them in ``datastore_v2.json``, all or nothing.

        ``staged`` is one temp file (with ``dest``) or a list of ``(temp file, destination)``. ``update`` changes
        the in-memory datastore, ``undo`` reverts it. The new JSON is written (to a temp file) before anything is
        replaced; if any step fails, every previous file and the previous JSON are restored. Caller holds the
        locks.
        """
        pairs = [(staged, dest)] if isinstance(staged, Path) else list(staged)
        backups: dict[str, Path | None] = {}
        json_tmp: Path | None = None
        try:
            update()
            json_tmp = self._stage_datastore_file()
            for tmp, target in pairs:
                backup = None
                if os.path.exists(target):
                    backup = Path(f"{tmp}.prev")
                    os.link(target, backup)
                os.replace(tmp, target)
                backups[target] = backup
            self._ignore_event_config = True
            os.replace(json_tmp, self._datastore_config_path)
            json_tmp = None
            self._config_ts = os.stat(self._datastore_config_path).st_mtime
        except BaseException:
            undo()
            for target, backup in backups.items():
                if backup is not None:
                    os.replace(backup, target)
                else:
                    Path(target).unlink(missing_ok=True)
            backups = {}
            raise
        finally:
            for tmp, _ in pairs:
                tmp.unlink(missing_ok=True)
            if json_tmp is not None:
                json_tmp.unlink(missing_ok=True)
            for backup in backups.values():
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

    def check_label(self, image_id: str, label_filename: str, label_tag: str,
                    label_info: dict[str, Any] | None = None) -> tuple[Any, str]:
        """Check a label for ``image_id`` (ids, type, shape, grid, values, annotated slices of a partial label);
        returns the image record and extension."""
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
        if label_info and PARTIAL_KEY in label_info:  # a slice-level annotation names slices that exist
            with as_http(unprocessable):
                check_annotated_slices(label_info[PARTIAL_KEY], label_shape,
                                       f"params of the label for {image_id!r}:")
        return obj, ext

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        obj, ext = self.check_label(image_id, label_filename, label_tag, label_info)
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

    # ---- several annotators --------------------------------------------------------------------------------------
    def versions_dir(self, image_id: str) -> Path:
        """Where replaced labels of ``image_id`` are kept (``.labelzoo/versions/<image>/``, never scanned as labels)."""
        return Path(self._datastore_path) / ".labelzoo" / "versions" / image_id

    def save_annotation(self, image_id: str, label_filename: str, annotator: str, info: dict[str, Any],
                        reads: int = 1, replace: bool = False, consensus_method: str = "majority") -> dict[str, Any]:
        """Save an annotator's ``final`` label: refuse to overwrite another's (409) unless ``replace``, keep every
        replaced label as a prior version, and with ``reads`` > 1 store each reader's label under
        ``read-<annotator>`` and, once ``reads`` labels exist, their consensus as ``consensus`` and ``final``.

        Returns ``{"tag", "versions", "consensus"}``: where the label went, the prior versions, and whether a
        consensus was (re)computed.
        """
        from labelzoo.annotators import CONSENSUS_TAG, READ_PREFIX, read_tag

        tag = "final" if reads <= 1 else read_tag(annotator)
        obj, ext = self.check_label(image_id, label_filename, tag, info)
        staged_files: list[tuple[Path, str]] = []
        try:
            with self._rlock, FileLock(self._lock_file):
                old = obj.labels.get(tag)
                owner = (old.info or {}).get("annotator") if old else None
                if reads <= 1 and old is not None and owner != annotator and not replace:
                    who = repr(owner) if owner else "an unattributed annotator"
                    raise conflict(f"image {image_id!r} already has a final label by {who}: send params "
                                   '{"replace": true} to replace it (the current label is kept as a prior version)')
                now = time.time()
                label_info = {**info, "annotator": annotator, "ts": int(now)}
                name = self._filename(image_id, ext)
                dest = os.path.join(self._datastore.label_path(tag), name)
                staged_files.append((stage_copy(label_filename, dest), dest))
                image_info = obj.image.info
                versions = list(image_info.get("label_versions", []))
                new_versions = list(versions)
                if old is not None:
                    old_path = self._datastore.label_path(tag)
                    old_file = os.path.join(old_path, self._filename(image_id, old.ext))
                    if os.path.exists(old_file):
                        vname = f"{int(now * 1000)}-{tag}-{(owner or 'unknown')}{old.ext}"
                        vdest = str(self.versions_dir(image_id) / vname)
                        staged_files.append((stage_copy(old_file, vdest), vdest))
                        new_versions.append({"tag": tag, "annotator": owner, "ts": (old.info or {}).get("ts"),
                                             "replaced_ts": int(now), "replaced_by": annotator,
                                             "file": os.path.relpath(vdest, self._datastore_path)})
                new_labels = {tag: DataModel(info=label_info, ext=ext)}
                consensus_done = False
                if reads > 1:
                    reads_now = {t: m for t, m in obj.labels.items() if t.startswith(READ_PREFIX)}
                    reads_now[tag] = new_labels[tag]
                    if len(reads_now) >= reads:
                        files = {t: (label_filename if t == tag else
                                     os.path.join(self._datastore.label_path(t), self._filename(image_id, m.ext)))
                                 for t, m in reads_now.items()}
                        cons_file, agreement = self._consensus(image_id, files, reads_now, consensus_method)
                        for ctag in (CONSENSUS_TAG, "final"):
                            cdest = os.path.join(self._datastore.label_path(ctag), self._filename(image_id, ".nii.gz"))
                            staged_files.append((stage_copy(cons_file, cdest), cdest))
                            new_labels[ctag] = DataModel(info={"ts": int(now), "method": consensus_method,
                                                               "annotators": sorted(m.info.get("annotator", "?")
                                                                                    for m in reads_now.values())},
                                                         ext=".nii.gz")
                        Path(cons_file).unlink(missing_ok=True)
                        consensus_done = True
                    else:
                        agreement = None
                before_labels = dict(obj.labels)
                before_info = dict(image_info)

                def update() -> None:
                    obj.labels.update(new_labels)
                    if new_versions != versions:
                        image_info["label_versions"] = new_versions
                    if reads > 1 and agreement is not None:
                        image_info["agreement"] = agreement

                def undo() -> None:
                    obj.labels.clear()
                    obj.labels.update(before_labels)
                    image_info.clear()
                    image_info.update(before_info)

                self._commit(staged_files, None, update, undo)
                staged_files = []
        finally:
            for tmp, _ in staged_files:
                tmp.unlink(missing_ok=True)
        logger.info("saved %s label of %s by %s", tag, image_id, annotator)
        return {"tag": tag, "versions": new_versions, "consensus": consensus_done}

    def _consensus(self, image_id: str, files: dict[str, str], reads: dict[str, Any],
                   method: str) -> tuple[str, dict[str, Any]]:
        """Consensus label file (temp) and the agreement record for ``image_id``'s reader labels."""
        import nibabel as nib
        import numpy as np

        from labelzoo.annotators import consensus, pairwise_dice

        arrays, affine = {}, None
        for tag, path in files.items():
            img = nib.load(path)
            affine = img.affine if affine is None else affine
            arrays[reads[tag].info.get("annotator", tag)] = np.asarray(img.dataobj).astype(np.int32)
        classes = sorted(set().union(*(np.unique(a).tolist() for a in arrays.values())) - {0})
        pairs = {f"{a}|{b}": {str(c): round(d, 4) for c, d in scores.items()}
                 for (a, b), scores in pairwise_dice(arrays, classes).items()}
        vs_model = {}
        original = self._datastore.objects[image_id].labels.get("original")
        if original is not None:
            opath = os.path.join(self._datastore.label_path("original"), self._filename(image_id, original.ext))
            if os.path.exists(opath):
                suggestion = np.asarray(nib.load(opath).dataobj).astype(np.int32)
                if suggestion.shape == next(iter(arrays.values())).shape:
                    from labelzoo.annotators import class_dice

                    vs_model = {who: {str(c): round(d, 4) for c, d in class_dice(a, suggestion, classes).items()}
                                for who, a in arrays.items()}
        merged = consensus(list(arrays.values()), method).astype(np.uint8 if max(classes or [0]) < 256 else np.uint16)
        fd, tmp = tempfile.mkstemp(suffix=".nii.gz", prefix="labelzoo-consensus-")
        os.close(fd)
        nib.save(nib.Nifti1Image(merged, affine), tmp)
        labels = [{"annotator": m.info.get("annotator"), "ts": m.info.get("ts"), "seconds": m.info.get("seconds")}
                  for m in reads.values()]
        return tmp, {"pairs": pairs, "vs_model": vs_model, "labels": labels, "method": method,
                     "classes": [int(c) for c in classes]}
