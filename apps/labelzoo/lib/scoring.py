"""Scoring: per-image uncertainty and agreement, computed by a background worker in the server process.

MONAI Label runs every scoring request as a subprocess that re-imports the whole app (about 10 s
before any work) and rescores every image. Here one worker thread in the server process keeps the
unlabelled pool scored: it wakes on start-up, after ``next_sample``, after a label is saved, when
``POST /scoring/{method}`` asks, and when the scoring model's weights file changes; it scores only
images whose stored score is missing or belongs to older weights. Scores live in the datastore's
image info::

    "scores": {"<model>": {"epistemic": {"score": 0.31, "version": "<weights version>", "ts": ...},
                           "tta": {...}, "features": {"value": [...], "version": "..."}}}
    "dice": {"score": 0.87, "model": "<model>", "final_ts": ..., "original_ts": ...}
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.utils.async_tasks import utils as async_utils

from labelzoo.activelearning import dice_score, feature_vector, mean_entropy, tta_variance
from labelzoo.partial import PARTIAL_KEY, check_annotated_slices, slice_mask
from labelzoo.progress import update_progress
from lib.infer import LabelZooInferTask

logger = logging.getLogger(__name__)

SCORES_KEY = "scores"
#: Image info key: when ``next_sample`` last handed the image out (float seconds; MONAI Label's own is whole seconds).
SERVED_KEY = "last_served"
FEATURES = "features"


def _now() -> str:
    return datetime.today().strftime("%Y-%m-%d %H:%M:%S")


def _started(task: dict) -> float:
    try:
        return datetime.strptime(task.get("start_ts", ""), "%Y-%m-%d %H:%M:%S").timestamp()
    except ValueError:
        return 0.0


def _lock(datastore: Datastore):
    return getattr(datastore, "_rlock", None) or threading.RLock()


class ScoreBoard:
    """Reads and writes one model's scores in the datastore's image info."""

    def __init__(self, model: str, version: Callable[[], str]):
        self.model = model
        self.version = version

    def _entry(self, info: dict, method: str) -> dict | None:
        entry = (info.get(SCORES_KEY) or {}).get(self.model, {}).get(method)
        return entry if isinstance(entry, dict) else None

    def is_current(self, info: dict, method: str, version: str | None = None) -> bool:
        entry = self._entry(info, method)
        return bool(entry) and entry.get("version") == (version or self.version())

    def scores(self, datastore: Datastore, ids: Iterable[str], method: str) -> dict[str, float]:
        """Image id -> score of ``method`` for the images scored with the current weights."""
        version = self.version()
        out = {}
        for i in ids:
            entry = self._entry(datastore.get_image_info(i), method)
            if entry and entry.get("version") == version and entry.get("score") is not None:
                out[i] = float(entry["score"])
        return out

    def features(self, datastore: Datastore, ids: Iterable[str], any_version: bool = False) -> dict[str, list]:
        version = self.version()
        out = {}
        for i in ids:
            entry = self._entry(datastore.get_image_info(i), FEATURES)
            if entry and entry.get("value") is not None and (any_version or entry.get("version") == version):
                out[i] = entry["value"]
        return out

    @staticmethod
    def last_served(datastore: Datastore, ids: Iterable[str]) -> dict[str, float]:
        """Image id -> last time (seconds, float) any strategy handed it out."""
        out = {}
        for i in ids:
            info = datastore.get_image_info(i)
            served = info.get("strategy") or {}  # MONAI Label's record: whole seconds
            times = [float(v.get("ts", 0)) for v in served.values() if isinstance(v, dict)]
            if isinstance(info.get(SERVED_KEY), (int, float)):
                times.append(float(info[SERVED_KEY]))
            if times:
                out[i] = max(times)
        return out

    def write(self, datastore: Datastore, image_id: str, values: dict[str, Any], version: str) -> None:
        """Store ``{method: score}`` (and ``features``) for one image, merging with what is there."""
        with _lock(datastore):
            info = datastore.get_image_info(image_id)
            if not info:
                return  # image removed meanwhile
            scores = dict(info.get(SCORES_KEY) or {})
            mine = dict(scores.get(self.model) or {})
            for method, value in values.items():
                key = "value" if method == FEATURES else "score"
                mine[method] = {key: value, "version": version, "ts": int(time.time())}
            scores[self.model] = mine
            datastore.update_image_info(image_id, {SCORES_KEY: scores})


# ---- per-image computations ----------------------------------------------------------------------------
def _tta_pairs(spatial_dims: int) -> list[tuple[str, Callable, Callable]]:
    """(name, forward on the input [C, *spatial], inverse on the output [C, *spatial]) test-time augmentations."""
    pairs: list[tuple[str, Callable, Callable]] = [("identity", lambda x: x, lambda y: y)]
    for axis in range(1, spatial_dims + 1):
        pairs.append((f"flip{axis}", lambda x, a=axis: torch.flip(x, (a,)), lambda y, a=axis: torch.flip(y, (a,))))
        if axis == 1:
            pairs.append(("rot90", lambda x: torch.rot90(x, 1, (1, 2)), lambda y: torch.rot90(y, -1, (1, 2))))
            pairs.append(("scale1.1", lambda x: x * 1.1, lambda y: y))
        if axis == 2:
            pairs.append(("shift", lambda x: x + 0.1 * x.std(), lambda y: y))
    return pairs


class Scorer:
    """Computes an image's epistemic uncertainty, TTA variance and feature vector with one bundle."""

    def __init__(self, task: LabelZooInferTask, device: str, samples: int = 5, dropout: float = 0.2,
                 tta_samples: int = 5):
        self.task = task
        self.device = device
        self.samples = max(1, samples)
        self.dropout = dropout
        self.tta_samples = max(2, tta_samples)
        self._cache: dict[str, Any] = {}

    def _networks(self) -> tuple[torch.nn.Module, torch.nn.Module, int, Any]:
        version = self.task.weights_version()
        if self._cache.get("version") != version:
            mc, n_dropout = self.task.scoring_network(self.device, self.dropout)
            plain = self.task._get_network(self.device, None)
            self._cache = {"version": version, "mc": mc, "plain": plain, "n_dropout": n_dropout,
                           "inferer": self.task.inferer({"device": self.device})}
            if not n_dropout:
                logger.warning("%s has no dropout layers: epistemic score is the entropy of one prediction",
                               self.task.bundle_info.name)
        c = self._cache
        return c["mc"], c["plain"], c["n_dropout"], c["inferer"]

    def epistemic(self, image: str) -> tuple[float, list[float]]:
        """Mean voxel entropy over Monte-Carlo dropout samples, and the feature vector of their mean."""
        mc, _, n_dropout, inferer = self._networks()
        x = self.task.preprocess(image, self.device)
        n = self.samples if n_dropout else 1
        probs = torch.stack([self.task.probabilities(x, mc, inferer, self.device) for _ in range(n)])
        score = mean_entropy(probs, multilabel=self.task.bundle_info.multilabel)
        feats = feature_vector(probs.mean(0), grid=2)
        return score, [round(float(v), 4) for v in feats]

    def tta(self, image: str) -> float:
        """Variance of the predictions across test-time flips, rot90 and intensity changes."""
        _, plain, _, inferer = self._networks()
        x = self.task.preprocess(image, self.device)
        pairs = _tta_pairs(x.ndim - 1)[: self.tta_samples]
        outs = []
        for _, fwd, inv in pairs:
            # rot90 of a non-square plane changes the shape; the inverse restores it
            outs.append(inv(self.task.probabilities(fwd(x), plain, inferer, self.device)))
        return tta_variance(torch.stack(outs))


# ---- MONAI Label scoring methods -------------------------------------------------------------------------
class LabelZooScoring(ScoringMethod):
    """A scoring method the worker runs image by image; calling it scores every pending image now."""

    name = ""

    def __init__(self, description: str):
        super().__init__(description)
        self.worker: ScoringWorker | None = None

    def pending(self, datastore: Datastore) -> list[str]:
        raise NotImplementedError

    def score_one(self, datastore: Datastore, image_id: str) -> Any:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        i = super().info()
        if self.worker is not None:
            i["status"] = self.worker.method_status(self.name)
        return i

    def __call__(self, request, datastore: Datastore):
        result = {}
        for image_id in self.pending(datastore):
            result[image_id] = self.score_one(datastore, image_id)
        return result


class UncertaintyScoring(LabelZooScoring):
    """``epistemic`` (Monte-Carlo dropout entropy, plus features) or ``tta`` (augmentation variance)."""

    def __init__(self, name: str, scorer: Scorer, board: ScoreBoard, description: str):
        super().__init__(description)
        self.name = name
        self.scorer = scorer
        self.board = board

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["model"] = self.board.model
        return i

    def pending(self, datastore: Datastore) -> list[str]:
        version = self.board.version()
        return [i for i in sorted(datastore.get_unlabeled_images())
                if not self.board.is_current(datastore.get_image_info(i), self.name, version)]

    def score_one(self, datastore: Datastore, image_id: str) -> float:
        version = self.board.version()
        image = datastore.get_image_uri(image_id)
        if self.name == "epistemic":
            score, feats = self.scorer.epistemic(image)
            self.board.write(datastore, image_id, {"epistemic": score, FEATURES: feats}, version)
        else:
            score = self.scorer.tta(image)
            self.board.write(datastore, image_id, {self.name: score}, version)
        logger.info("%s score of %s with %s: %.5f", self.name, image_id, self.board.model, score)
        return score


class DiceScoring(LabelZooScoring):
    """``dice``: agreement of the submitted label (``final``) with the model's suggestion (``original``)."""

    name = "dice"

    def __init__(self):
        super().__init__("Dice between the submitted label and the model's original suggestion")

    @staticmethod
    def _label_ts(datastore: Datastore, image_id: str, tag: str) -> int | None:
        info = datastore.get_label_info(image_id, tag) if datastore.get_label_by_image_id(image_id, tag) else None
        return int(info.get("ts", 0)) if info else None

    def pending(self, datastore: Datastore) -> list[str]:
        out = []
        for i in sorted(datastore.get_labeled_images(DefaultLabelTag.FINAL)):
            final = self._label_ts(datastore, i, DefaultLabelTag.FINAL)
            original = self._label_ts(datastore, i, DefaultLabelTag.ORIGINAL)
            if final is None or original is None:
                continue
            done = datastore.get_image_info(i).get("dice")
            if not isinstance(done, dict) or done.get("final_ts") != final or done.get("original_ts") != original:
                out.append(i)
        return out

    def score_one(self, datastore: Datastore, image_id: str) -> float | None:
        from monai.transforms import LoadImage

        load = LoadImage(image_only=True)
        final_uri = datastore.get_label_uri(image_id, DefaultLabelTag.FINAL)
        original_uri = datastore.get_label_uri(image_id, DefaultLabelTag.ORIGINAL)
        y, y_pred = np.asarray(load(final_uri)), np.asarray(load(original_uri))
        y, y_pred = np.squeeze(y), np.squeeze(y_pred)
        if y.shape != y_pred.shape:
            logger.warning("dice for %s skipped: final %s vs original %s", image_id, y.shape, y_pred.shape)
            return None
        partial = (datastore.get_label_info(image_id, DefaultLabelTag.FINAL) or {}).get(PARTIAL_KEY)
        if partial:  # a slice-level label: compare on the annotated slices only
            axis, slices = check_annotated_slices(partial, y.shape, f"label of {image_id!r}")
            keep = slice_mask(y.shape, axis, slices)
            y, y_pred = y[keep], y_pred[keep]
        score = dice_score(np.rint(y).astype(np.int64), np.rint(y_pred).astype(np.int64))
        model = datastore.get_label_info(image_id, DefaultLabelTag.ORIGINAL).get("model")
        with _lock(datastore):
            datastore.update_image_info(image_id, {"dice": {
                "score": score, "model": model,
                "final_ts": self._label_ts(datastore, image_id, DefaultLabelTag.FINAL),
                "original_ts": self._label_ts(datastore, image_id, DefaultLabelTag.ORIGINAL),
            }})
        logger.info("dice of %s (final vs %s suggestion): %.4f", image_id, model, score)
        return score


# ---- the worker ----------------------------------------------------------------------------------------
class ScoringWorker:
    """One background thread keeping every scoring method's pending images scored.

    Runs are listed in MONAI Label's task registry, so ``GET /scoring/`` reports them as it reports
    subprocess runs (``status``, ``start_ts``, ``end_ts``, ``details``), plus ``scored`` and ``pending``.
    """

    def __init__(self, datastore: Callable[[], Datastore], methods: dict[str, LabelZooScoring],
                 version: Callable[[], str], interval: float = 2.0):
        self._datastore = datastore
        self.methods = methods
        self._version = version
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._requested: set[str] = set(methods)
        self._thread: threading.Thread | None = None
        self._status: dict[str, dict[str, Any]] = {m: {"state": "idle", "scored": 0, "pending": None} for m in methods}
        self._last_version: str | None = None
        self._run_lock = threading.Lock()
        self._last_full_pass = time.monotonic()
        for m in methods.values():
            m.worker = self

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="labelzoo-scoring", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self, methods: Iterable[str] | None = None) -> None:
        """Ask for a pass over ``methods`` (default: all); returns at once."""
        self._requested.update(methods or self.methods)
        self._wake.set()

    def method_status(self, method: str) -> dict[str, Any]:
        return dict(self._status.get(method, {}))

    def run(self, method: str | None, sync: bool = False) -> dict[str, Any]:
        """What ``POST /scoring/{method}`` does: queue a pass (``sync``: run it now and return the task)."""
        methods = [method] if method else list(self.methods)
        if sync:
            return {m: self._run_method(m, force_record=True) for m in methods}
        self.wake(methods)
        return {m: {"id": None, "status": "SUBMITTED", "request": {"method": m}, "start_ts": _now()} for m in methods}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            version = self._version()
            if version != self._last_version:
                self._last_version = version
                self._requested.update(self.methods)
            if time.monotonic() - self._last_full_pass > 10 * self.interval:
                # images added behind the app's back (uploads, files copied into the folder)
                self._last_full_pass = time.monotonic()
                self._requested.update(self.methods)
            requested, self._requested = self._requested, set()
            for m in self.methods:
                if m in requested:
                    try:
                        self._run_method(m)
                    except Exception:
                        logger.exception("scoring method %s failed", m)

    def _record(self, method: str) -> dict[str, Any]:
        task = {"id": str(uuid.uuid4()), "status": "RUNNING", "request": {"method": method, "worker": True},
                "start_ts": _now(), "details": deque(maxlen=20), "scored": 0, "pending": 0}
        tasks = async_utils.background_tasks.setdefault("scoring", [])
        tasks.append(task)
        del tasks[:-50]
        return task

    def _run_method(self, method: str, force_record: bool = False) -> dict[str, Any] | None:
        with self._run_lock:
            return self._run_method_locked(method, force_record)

    def _run_method_locked(self, method: str, force_record: bool) -> dict[str, Any] | None:
        scoring = self.methods[method]
        datastore = self._datastore()
        pending = scoring.pending(datastore)
        status = self._status[method]
        status.update(pending=len(pending))
        if not pending and not force_record:
            status["state"] = "idle"
            return None
        task = self._record(method)
        task["pending"] = len(pending)
        status.update(state="scoring", scored=0, started=time.time())
        start = time.time()
        version = self._version()
        try:
            for image_id in pending:
                if self._stop.is_set() or self._version() != version:
                    task["details"].append("weights changed: restarting")
                    self._requested.add(method)
                    self._wake.set()
                    break
                scoring.score_one(datastore, image_id)
                task["scored"] += 1
                task["pending"] -= 1
                status.update(scored=task["scored"], pending=task["pending"])
                task["details"].append(f"{method}: scored {image_id}")
            task["status"] = "DONE"
        except Exception as e:
            task["status"] = "ERROR"
            task["details"].append(f"{type(e).__name__}: {e}")
            raise
        finally:
            task["end_ts"] = _now()
            status.update(state="idle", last_run_s=round(time.time() - start, 2))
        return task


# ---- training progress into GET /train/ -------------------------------------------------------------------
class TrainWatcher:
    """Copies each running training task's progress into its MONAI Label task record (``GET /train/``).

    Also marks the progress of a stopped or crashed run, which cannot write it itself.
    """

    def __init__(self, trainers: dict[str, Any], interval: float = 1.0):
        self.trainers = trainers
        self.interval = interval
        self._stop = threading.Event()
        self._final: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="labelzoo-train-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.update()
            except Exception:
                logger.exception("reading training progress failed")

    def update(self) -> None:
        for task in list(async_utils.background_tasks.get("train", [])):
            if task["id"] in self._final or task.get("status") == "SUBMITTED":
                continue
            trainer = self.trainers.get((task.get("request") or {}).get("model"))
            if trainer is None:
                continue
            ended = task.get("status") in ("DONE", "ERROR", "STOPPED")
            stats = trainer.stats()
            if float(stats.get("start_ts") or 0) < _started(task) - 2:
                stats = {"status": "starting", "model": task["request"].get("model")}  # the file is a previous run's
            if ended and stats.get("status") in ("starting", "running"):
                if task["status"] == "STOPPED":
                    update_progress(trainer.progress_path, status="stopped")
                else:
                    last = list(task.get("details") or [])[-1:] or ["training process exited"]
                    update_progress(trainer.progress_path, status="failed", error=last[0])
                stats = trainer.stats()
            task["progress"] = stats
            if ended:
                self._final.add(task["id"])
