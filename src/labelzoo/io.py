"""Small file helpers: atomic writes (temp file in the same folder + rename), so nothing stored is lost."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) across processes, released on exit."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_target(path: Path, suffix: str) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``array`` as a (gzipped) NIfTI file atomically; a reader never sees a half-written file."""
    import nibabel as nib

    path = Path(path)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    fd, tmp = _atomic_target(path, suffix)
    os.close(fd)
    try:
        nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=float)), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    path = Path(path)
    fd, tmp = _atomic_target(path, ".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=4)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replace_file_atomic(src: str | Path, dest: str | Path) -> Path:
    """Copy ``src`` over ``dest`` through a temp file beside ``dest`` and a rename (readers see old or new)."""
    import shutil

    dest = Path(dest)
    fd, tmp = _atomic_target(dest, ".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
