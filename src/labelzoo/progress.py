"""Training progress as a small JSON file, written by an ignite handler and read by the app.

A bundle trained from the MONAI Label app runs in a separate process; the app attaches
:class:`TrainProgress` to the bundle's trainer (``train#handlers``) and evaluator
(``validate#handlers``), and the server reads the file to report epoch, total epochs, loss, best
metric and elapsed time in ``GET /train/`` and ``/info/`` ``train_stats``. Bundles may also list the
handler themselves::

    {"_target_": "labelzoo.progress.TrainProgress", "path": "$@bundle_root + '/models/train_progress.json'"}
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from labelzoo.io import write_json_atomic

logger = logging.getLogger(__name__)

#: File name the app uses under the bundle's ``models/`` folder.
PROGRESS_FILE = "train_progress.json"


def read_progress(path: str | Path) -> dict[str, Any]:
    """The progress record at ``path``; ``{}`` when absent or unreadable (a run that has not started)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def update_progress(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the record at ``path`` (atomically) and return the new record."""
    record = read_progress(path)
    record.update(fields)
    record["updated_ts"] = time.time()
    if "start_ts" in record and "elapsed_s" not in fields:
        record["elapsed_s"] = round(record["updated_ts"] - record["start_ts"], 2)
    write_json_atomic(path, record)
    return record


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _loss_of(output: Any) -> float | None:
    """The loss in an ignite engine output: MONAI trainers give a list of dicts (or a dict) with ``loss``."""
    if isinstance(output, (list, tuple)) and output:
        output = output[0]
    if isinstance(output, dict):
        output = output.get("loss")
    if hasattr(output, "item"):
        try:
            output = output.item()
        except (RuntimeError, ValueError):
            return None
    return _number(output)


class TrainProgress:
    """ignite handler writing training progress to a JSON file after every epoch.

    Attach one to the trainer (``phase="train"``: epoch, total epochs, loss, elapsed time) and one to
    the evaluator (``phase="validate"``: metric, best metric and its epoch); both merge into one file.

    Args:
        path: the JSON file to write (its folder is created).
        phase: ``"train"`` or ``"validate"``.
    """

    def __init__(self, path: str, phase: str = "train"):
        if phase not in ("train", "validate"):
            raise ValueError(f"phase must be 'train' or 'validate', got {phase!r}")
        self.path = Path(path)
        self.phase = phase
        self._losses: list[float] = []

    def attach(self, engine: Any) -> None:
        """Register with an ignite engine (called by MONAI workflows for every handler)."""
        from ignite.engine import Events

        if self.phase == "train":
            engine.add_event_handler(Events.STARTED, self.started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
            engine.add_event_handler(Events.COMPLETED, self.completed)
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.validated)

    def started(self, engine: Any) -> None:
        previous = read_progress(self.path)
        start = previous.get("start_ts") if previous.get("status") == "starting" else None
        update_progress(self.path, status="running", start_ts=start or time.time(), epoch=0,
                        max_epochs=int(engine.state.max_epochs or 0),
                        iterations_per_epoch=_number(getattr(engine.state, "epoch_length", None)))

    def iteration_completed(self, engine: Any) -> None:
        loss = _loss_of(engine.state.output)
        if loss is not None:
            self._losses.append(loss)

    def epoch_completed(self, engine: Any) -> None:
        loss = sum(self._losses) / len(self._losses) if self._losses else None
        self._losses = []
        update_progress(self.path, status="running", epoch=int(engine.state.epoch),
                        max_epochs=int(engine.state.max_epochs or 0), loss=loss)

    def validated(self, engine: Any) -> None:
        metrics = dict(getattr(engine.state, "metrics", {}) or {})
        name = getattr(engine.state, "key_metric_name", None) or next(iter(metrics), None)
        metric = _number(metrics.get(name)) if name else None
        epoch = int(getattr(engine.state, "epoch", 0) or 0)  # a MONAI evaluator runs at the trainer's epoch
        fields: dict[str, Any] = {"metric_name": name, "metric": metric, "metric_epoch": epoch,
                                  "metrics": {k: _number(v) for k, v in metrics.items() if _number(v) is not None}}
        previous = read_progress(self.path)
        best, best_epoch = _number(previous.get("best_metric")), previous.get("best_metric_epoch")
        engine_best = _number(getattr(engine.state, "best_metric", None))
        engine_best_epoch = int(getattr(engine.state, "best_metric_epoch", -1) or -1)
        if engine_best is not None and engine_best_epoch > 0:
            best, best_epoch = engine_best, engine_best_epoch
        if metric is not None and (best is None or metric > best):  # MONAI's default: higher is better
            best, best_epoch = metric, epoch
        fields.update(best_metric=best, best_metric_epoch=best_epoch)
        update_progress(self.path, **fields)

    def completed(self, engine: Any) -> None:
        update_progress(self.path, status="finished", epoch=int(engine.state.epoch))

    def exception_raised(self, engine: Any, e: BaseException) -> None:
        update_progress(self.path, status="failed", error=f"{type(e).__name__}: {e}")
        raise e


def progress_bar(total: int, desc: str = "", unit: str = "step") -> Any:
    """A terminal progress bar (``tqdm``) for long CLI work; ``.update(n)``, ``.set_postfix_str(s)``, ``.close()``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
