"""Bundle training that reports progress and failures.

Fixes over MONAI Label's ``BundleTrainTask``: ``pretrained=false`` no longer crashes
(``os.path.exists(None)``); a run with no weights yet starts from random weights; a multi-GPU run
that exits non-zero fails the task instead of being reported done; every run writes progress
(epoch, total epochs, loss, metric, best metric, elapsed time) through
:class:`labelzoo.progress.TrainProgress`, which ``/info/`` ``train_stats`` and ``GET /train/`` show.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from monailabel.tasks.train.bundle import BundleTrainTask

from labelzoo.discovery import BundleInfo
from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.options import TRAIN_OPTIONS, check_options
from labelzoo.partial import (
    PARTIAL_KEY,
    check_annotated_slices,
    identity_label_maps,
    mask_unannotated,
    masked_loss_config,
)
from labelzoo.progress import PROGRESS_FILE, read_progress, update_progress
from labelzoo.validation import geometry_error, read_shape
from labelzoo.zoo import registry

logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}


def truthy(value: Any) -> bool:
    """A request flag that may arrive as a bool, a number or a string."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    if isinstance(value, (list, tuple)):
        return truthy(value[0]) if value else False
    return bool(value)


def split_datalist(datalist: list[dict], val_split: float) -> tuple[list[dict], list[dict] | None]:
    """Deterministic train / validation split: the last ``round(n * val_split)`` items (at least one) validate.

    ``val_split < 0`` keeps the bundle's own validation list (``None``); ``0`` validates on nothing; a
    single labelled image is used for both (so the metric moves even on the first label).
    """
    items = sorted(datalist, key=lambda d: str(d.get("image")))
    if val_split < 0:
        return items, None
    if val_split == 0 or not items:
        return items, []
    if len(items) == 1:
        return items, list(items)
    n_val = min(len(items) - 1, max(1, round(len(items) * val_split)))
    return items[:-n_val], items[-n_val:]


class LabelZooTrainTask(BundleTrainTask):
    """Training for one bundle, with progress reporting."""

    def __init__(self, info: BundleInfo, conf: dict[str, str], device: str = "auto"):
        super().__init__(str(info.path), conf)
        self.bundle_info = info
        self.device = device
        self.progress_path = info.path / "models" / PROGRESS_FILE
        self._val_interval: int | None = None
        self._partial_dir: Path | None = None  # this run's training labels of partial annotations
        self._partial: set[str] = set()

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["trained"] = self.bundle_info.weights is not None
        return i

    def config(self) -> dict[str, Any]:
        c = super().config()
        c["max_epochs"] = 10
        c["pretrained"] = self.bundle_info.weights is not None
        c["multi_gpu"] = False
        # MONAI Label lists the weights files it finds: none before the first training, and a client that sends
        # the options back (the Slicer plugin) then sends an empty list. Offer the file training will write.
        c["model_filename"] = list(c.get("model_filename") or []) or ["model.pt"]
        if "val_interval" in self.bundle_config.config:
            c["val_interval"] = 1
        if self.device in ("cpu", "cuda"):
            c["device"] = [self.device]
        return c

    def stats(self) -> dict[str, Any]:
        """The last run's progress, with the key names MONAI Label clients read."""
        p = read_progress(self.progress_path)
        if not p:
            return {}
        return {
            **p,
            "total_epochs": p.get("max_epochs"),
            "train_loss": p.get("loss"),
            "total_time": f"{p.get('elapsed_s', 0)}s",
        }

    # ---- MONAI Label defects -------------------------------------------------------------------------
    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if not truthy(pretrained) or not model_pytorch or not os.path.exists(model_pytorch):
            logger.info("training %s from %s", self.bundle_info.name,
                        "random weights (pretrained=false)" if not truthy(pretrained) else "random weights (none yet)")
            return
        super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _fetch_datalist(self, request, datastore):
        """The labelled images this bundle can read (another model's 4-channel MRI is not training data for CT)."""
        datalist = super()._fetch_datalist(request, datastore)
        info = self.bundle_info
        fitting = []
        for item in datalist:
            try:
                if geometry_error(read_shape(item["image"]), info.spatial_dims, info.channels) is None:
                    fitting.append(item)
            except LabelZooError as e:
                logger.warning("skipping %s: %s", item.get("image"), e)
        if len(fitting) < len(datalist):
            logger.info("training %s on %d of %d labelled images (the others do not fit its input)",
                        info.name, len(fitting), len(datalist))
        if not fitting:
            raise ValueError(f"no labelled image fits model {info.name!r} (needs {info.channels} channel(s), "
                             f"{info.spatial_dims}D)")
        return self._mask_partial(fitting, datastore)

    def _mask_partial(self, datalist: list[dict], datastore) -> list[dict]:
        """Partial labels (label info ``annotated_slices``) train from a copy whose unannotated voxels are ignored."""
        import nibabel as nib
        import numpy as np
        from monailabel.interfaces.datastore import DefaultLabelTag

        by_label = {}
        for image_id in datastore.get_labeled_images(DefaultLabelTag.FINAL):
            info = datastore.get_label_info(image_id, DefaultLabelTag.FINAL) or {}
            if PARTIAL_KEY in info:
                by_label[os.path.realpath(datastore.get_label_uri(image_id, DefaultLabelTag.FINAL))] = (image_id, info)
        self._partial = set()
        if not by_label:
            return datalist
        self._partial_dir = Path(tempfile.mkdtemp(prefix="labelzoo-partial-"))
        out = []
        for item in datalist:
            found = by_label.get(os.path.realpath(str(item.get("label"))))
            if found is None:
                out.append(item)
                continue
            image_id, info = found
            img = nib.load(str(item["label"]))
            data = np.rint(np.asarray(img.dataobj)).astype(np.int64)
            axis, slices = check_annotated_slices(info[PARTIAL_KEY], data.shape, f"label of {image_id!r}")
            path = self._partial_dir / f"{image_id}.nii.gz"
            nib.save(nib.Nifti1Image(mask_unannotated(data, axis, slices), img.affine, img.header), str(path))
            self._partial.add(str(path))
            out.append({**item, "label": str(path)})
        logger.info("training %s: %d of %d labels are partial (%s), unannotated voxels ignored",
                    self.bundle_info.name, len(self._partial), len(out), PARTIAL_KEY)
        update_progress(self.progress_path, partial_labels=len(self._partial))  # shown by GET /train/
        return out

    def _partition_datalist(self, datalist, request, shuffle=False):
        val_split = float(request.get("val_split", 0.2))
        train, val = split_datalist(datalist, val_split)
        if val and self._partial:  # a validation Dice needs every voxel labelled: partial labels train
            moved = [v for v in val if str(v.get("label")) in self._partial]
            val = [v for v in val if str(v.get("label")) not in self._partial]
            train = [t for t in train if t not in moved] + moved
        n_val = "the bundle's own list" if val is None else len(val)
        logger.info("training on %d images, validating on %s", len(train), n_val)
        # recorded with the weights version this run makes (labelzoo.zoo.registry) and in a release's model card
        update_progress(self.progress_path, n_train=len(train), n_val=None if val is None else len(val))
        return train, val

    def _run_command(self, cmd, env):
        logger.info("running %s", " ".join(map(str, cmd)))
        process = subprocess.run(cmd, env=env)
        if process.returncode != 0:
            raise RuntimeError(f"multi-GPU training ({cmd[0]}) exited with code {process.returncode}")

    def _update_overrides(self, overrides):
        path = str(self.progress_path)
        train_handlers = list(overrides.get(self.const.key_train_handlers()) or [])
        train_handlers.append({"_target_": "labelzoo.progress.TrainProgress", "path": path, "phase": "train"})
        overrides[self.const.key_train_handlers()] = train_handlers
        val_handlers = self.bundle_config.get("validate#handlers")
        if val_handlers is not None:
            overrides["validate#handlers"] = [
                *val_handlers, {"_target_": "labelzoo.progress.TrainProgress", "path": path, "phase": "validate"}
            ]
        if self._val_interval is not None:
            overrides["val_interval"] = self._val_interval
        # the datastore holds labels in the model's values: a map from the bundle's dataset values must not apply
        overrides.update(identity_label_maps(self.bundle_config.config))
        if self._partial:
            overrides["loss"] = masked_loss_config(self.bundle_config.get("loss"))
        return overrides

    def _register(self, source: str, info: dict[str, Any] | None = None) -> str | None:
        """Register the weights in the bundle's registry; a registry problem is logged, never fails the run."""
        try:
            return registry.sync(self.bundle_info.path, source, info)
        except (LabelZooError, OSError) as e:
            logger.warning("%s: cannot register the weights: %s", self.bundle_info.name, e)
            return None

    def __call__(self, request, datastore):
        # The server checked the options (HTTP 422) before starting this task; check again here, where they
        # become config overrides, so no other path can pass a config expression through.
        internal = {k: request[k] for k in ("model", "bundle_path", "local_rank") if k in request}
        options = check_options({k: v for k, v in request.items() if k not in internal}, TRAIN_OPTIONS,
                                f"training of model {self.bundle_info.name!r}")
        request = {**options, **internal}
        if self.device in ("cpu", "cuda"):
            request["device"] = self.device
        self._val_interval = int(request["val_interval"]) if "val_interval" in request else None
        max_epochs = int(request.get("max_epochs", 50))
        request["max_epochs"] = max_epochs
        self.progress_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.progress_path, {
            "status": "starting", "model": self.bundle_info.name, "epoch": 0, "max_epochs": max_epochs,
            "start_ts": time.time(), "updated_ts": time.time(), "elapsed_s": 0.0, "loss": None, "metric": None,
            "best_metric": None, "best_metric_epoch": None,
        })
        try:
            labelled = datastore.datalist()
            if not labelled:
                raise ValueError(f"no labelled images to train {self.bundle_info.name} on: submit a label first")
            self._register("existing")  # the weights this run starts from, kept
            result = super().__call__(request, datastore)
        except BaseException as e:
            update_progress(self.progress_path, status="failed", error=f"{type(e).__name__}: {e}")
            raise
        finally:
            if self._partial_dir is not None:
                shutil.rmtree(self._partial_dir, ignore_errors=True)
                self._partial_dir = None
        final = read_progress(self.progress_path)
        if final.get("status") != "finished":
            update_progress(self.progress_path, status="finished")
        # each run that wrote weights becomes a new version in the bundle's registry (nothing is overwritten)
        version = self._register("train", {**final, "epochs": max_epochs})
        update_progress(self.progress_path, weights_version=version)
        return result or {"model": self.bundle_info.name, **read_progress(self.progress_path)}
