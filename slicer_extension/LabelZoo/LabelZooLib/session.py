"""The annotation session as a small state machine, plus pure readers of the server's answers.

The session knows what the annotator is doing (the server, the current image, the chosen model, whether
the segmentation has unsaved edits, the training task) and refuses the moves that would lose work or
make no sense, with a :class:`~LabelZooLib.errors.SessionError` that says why and what to do instead.
The Slicer widget enables its buttons from :meth:`Session.allowed`.

States::

    DISCONNECTED --connect--> CONNECTED --open_image--> IMAGE --segmentation/edit--> EDITED
         ^                        ^                       |  ^                          |
         +------disconnect--------+-------close_image-----+  +---submitted/discard------+
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SessionError
from .labels import BACKGROUND_NAMES, LabelTable, normalize_name, value_mapping


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    IMAGE = "image"
    EDITED = "edited"


#: Actions the widget may ask about with :meth:`Session.allowed`.
ACTIONS = ("connect", "disconnect", "next_sample", "upload", "infer", "submit", "train", "stop_train")

_EPOCH_LOG = re.compile(r"Epoch[:\[ ]\s*(\d+)\s*/\s*(\d+)")


@dataclass
class TrainingStatus:
    """What the annotator sees about training: state, epoch progress and best validation metric."""

    state: str = "IDLE"
    model: str | None = None
    epoch: int | None = None
    total_epochs: int | None = None
    best_metric: float | None = None
    best_metric_epoch: int | None = None
    loss: float | None = None
    last_line: str = ""

    @property
    def running(self) -> bool:
        return self.state in ("SUBMITTED", "RUNNING")

    @property
    def percent(self) -> int | None:
        """Epoch progress in percent, or ``None`` when unknown."""
        if not self.total_epochs or self.epoch is None:
            return None
        return max(0, min(100, round(100 * self.epoch / self.total_epochs)))

    def describe(self) -> str:
        """One line for the status label, e.g. ``RUNNING: epoch 3/10, best metric 0.812 (epoch 2)``."""
        parts = [self.state if not self.model else f"{self.state} ({self.model})"]
        if self.epoch is not None and self.total_epochs:
            parts.append(f"epoch {self.epoch}/{self.total_epochs}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.best_metric is not None:
            best = f"best metric {self.best_metric:.4f}"
            if self.best_metric_epoch is not None:
                best += f" (epoch {self.best_metric_epoch})"
            parts.append(best)
        return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def training_status(task: Mapping[str, Any] | None, stats: Mapping[str, Any] | None = None) -> TrainingStatus:
    """Read ``GET /train/`` (``task``) and the trainer's ``info()["train_stats"][model]`` (``stats``).

    Epoch progress comes from the stats when they are fresher, else from the task's last log lines
    (``Epoch: 3/10``), so progress moves while an epoch's statistics are not yet written.
    """
    status = TrainingStatus()
    if task:
        status.state = str(task.get("status") or "UNKNOWN").upper()
        request = task.get("request") or {}
        status.model = request.get("model") if isinstance(request, Mapping) else None
        details = [str(x) for x in (task.get("details") or [])]
        status.last_line = details[-1] if details else ""
        for line in reversed(details):
            match = _EPOCH_LOG.search(line)
            if match:
                status.epoch, status.total_epochs = int(match.group(1)), int(match.group(2))
                break
    progress = (task or {}).get("progress") if isinstance((task or {}).get("progress"), Mapping) else None
    for source in (stats, progress):
        if source:
            _read_stats(status, source)
    return status


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value != int(value):
        return None
    return int(value)


def _read_stats(status: TrainingStatus, stats: Mapping[str, Any]) -> None:
    """Fold MONAI Label trainer stats (``epoch``, ``total_epochs``, ``best_metric``, ``eval.best_metric_epoch``)
    or a progress record (``epoch``, ``max_epochs``, ``best_metric``, ``best_metric_epoch``, ``loss``) into
    ``status``; later, more advanced epochs win."""
    epoch = _int(stats.get("epoch", stats.get("current_epoch")))
    total = _int(stats.get("total_epochs", stats.get("max_epochs")))
    if epoch is not None and total and (status.epoch is None or epoch >= status.epoch):
        status.epoch, status.total_epochs = epoch, total
    best = stats.get("best_metric")
    if isinstance(best, (int, float)) and not isinstance(best, bool) and math.isfinite(best) and best > -1:
        status.best_metric = float(best)
    candidates = [stats.get("best_metric_epoch")] + [(stats.get(g) or {}).get("best_metric_epoch")
                                                     for g in ("eval", "train") if isinstance(stats.get(g), Mapping)]
    for epoch_of_best in candidates:
        if _int(epoch_of_best) and _int(epoch_of_best) > 0:
            status.best_metric_epoch = _int(epoch_of_best)
            break
    loss = stats.get("loss")
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        status.loss = float(loss)


def app_label_table(info: Mapping[str, Any]) -> LabelTable:
    """The session's label table from ``/info/``: the values the models predict, so submitted label maps
    train them correctly.

    MONAI Label flattens ``info["labels"]`` to a list of names, losing the values; the models' own
    ``{name: value}`` dicts are used first (in model-name order), then any remaining names get free values.
    """
    labels = info.get("labels")
    if isinstance(labels, Mapping):
        return LabelTable.from_server(labels)
    table = LabelTable()
    models = info.get("models") or {}
    for name in sorted(models):
        model_labels = (models[name] or {}).get("labels")
        if model_labels:
            value_mapping(LabelTable.from_server(model_labels), table)
    for name in labels or []:
        if normalize_name(name) not in BACKGROUND_NAMES:
            table.add(str(name))
    return table


def best_metric(info: Mapping[str, Any], model: str) -> float | None:
    """The best validation metric a trained model reached, from ``info()["train_stats"]``."""
    return training_status(None, (info.get("train_stats") or {}).get(model)).best_metric


@dataclass
class SampleChoice:
    """Why the strategy chose an image: its id, the strategy, and the score when the server reports one."""

    image_id: str
    strategy: str
    score: float | None = None
    score_name: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        text = f"{self.image_id} chosen by '{self.strategy}'"
        if self.score is not None:
            text += f" ({self.score_name or 'score'} {self.score:.4g})"
        if self.reason:
            text += f": {self.reason}"
        return text


def sample_choice(sample: Mapping[str, Any], strategy: str) -> SampleChoice:
    """Read ``POST /activelearning/{strategy}``: the image id and the score that ranked it.

    The score is looked up in this order: ``sample["score"]``, ``sample["selection"]["score"]``,
    ``sample["strategy"][strategy]["score"]``, then any numeric field whose name holds ``score``,
    ``entropy`` or ``uncertainty`` (what MONAI Label scoring methods store in the image info). The reason
    is ``sample["reason"]`` or ``sample["selection"]["reason"]`` when the strategy gives one.

    Raises:
        SessionError: when the answer has no image id (no unlabelled image left).
    """
    image_id = sample.get("id") if isinstance(sample, Mapping) else None
    if not image_id:
        raise SessionError(f"strategy '{strategy}' returned no image: every image may already be labelled")

    def number(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    selection = sample.get("selection") if isinstance(sample.get("selection"), Mapping) else {}
    reason = sample.get("reason") or selection.get("reason")
    reason = str(reason) if reason else None
    per_strategy = (sample.get("strategy") or {}).get(strategy) if isinstance(sample.get("strategy"), Mapping) else {}
    per_strategy = per_strategy if isinstance(per_strategy, Mapping) else {}
    for source in (sample, selection, per_strategy):
        if number(source.get("score")) is not None:
            return SampleChoice(image_id, strategy, number(source["score"]), "score", reason)
    for key in sorted(sample):
        if any(word in key.lower() for word in ("score", "entropy", "uncertainty")):
            if number(sample[key]) is not None:
                return SampleChoice(image_id, strategy, number(sample[key]), key, reason)
    return SampleChoice(image_id, strategy, reason=reason)


@dataclass
class Session:
    """One annotator's session with one server. All fields are read-only outside the move methods."""

    state: State = State.DISCONNECTED
    server_url: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    image_id: str | None = None
    choice: SampleChoice | None = None
    model: str | None = None
    strategy: str | None = None
    labels: LabelTable = field(default_factory=LabelTable)
    has_label: bool = False
    training: TrainingStatus = field(default_factory=TrainingStatus)
    submitted_count: int = 0

    # -- queries ---------------------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether the segmentation has edits the server has not received."""
        return self.state is State.EDITED

    @property
    def connected(self) -> bool:
        return self.state is not State.DISCONNECTED

    @property
    def models(self) -> list[str]:
        """Models the server can run now (a LabelZoo server also lists untrained ones, ``"trained": false``)."""
        return sorted((self.info.get("models") or {}).keys())

    @property
    def all_models(self) -> list[str]:
        """Every model the server knows: the ones it can run and those that only have a trainer so far."""
        return sorted(set(self.models) | set(self.trainers))

    def is_trained(self, model: str) -> bool:
        """Whether ``model`` runs with trained weights (plain MONAI Label lists only trained models)."""
        entry = (self.info.get("models") or {}).get(model)
        return entry is not None and entry.get("trained", True) is not False

    def model_status(self, model: str) -> str:
        """``trained`` (with its best metric when known), ``untrained`` or ``unknown``, for the status label."""
        if self.is_trained(model):
            best = best_metric(self.info, model)
            return "trained" if best is None else f"trained, best metric {best:.4f}"
        if model in self.models:
            return "untrained: random weights until it is trained"
        return "untrained: train it first" if model in self.trainers else "unknown"

    @property
    def trainers(self) -> list[str]:
        return sorted((self.info.get("trainers") or {}).keys())

    @property
    def strategies(self) -> list[str]:
        return sorted((self.info.get("strategies") or {}).keys())

    def progress(self) -> tuple[int, int]:
        """``(labelled, total)`` images in the server's datastore."""
        store = self.info.get("datastore") or {}
        return int(store.get("completed", 0) or 0), int(store.get("total", 0) or 0)

    def allowed(self, action: str) -> bool:
        """Whether ``action`` (one of :data:`ACTIONS`) is legal now: the widget enables buttons with it."""
        try:
            self._check(action)
        except SessionError:
            return False
        return True

    def _check(self, action: str, **kwargs: Any) -> None:
        if action not in ACTIONS:
            raise SessionError(f"unknown action {action!r}; expected one of {ACTIONS}")
        if action == "connect":
            return
        if self.state is State.DISCONNECTED:
            raise SessionError(f"cannot {action.replace('_', ' ')}: connect to a server first")
        if action == "disconnect" and self.dirty and not kwargs.get("discard"):
            raise SessionError(self._unsaved("disconnect"))
        if action == "next_sample":
            if not self.strategies:
                raise SessionError("the server offers no active-learning strategy")
            if self.dirty and not kwargs.get("discard"):
                raise SessionError(self._unsaved("fetch the next sample"))
        if action == "infer":
            if self.image_id is None:
                raise SessionError("cannot auto-segment: no image is open; press Next sample or upload one")
            if not self.model:
                raise SessionError(f"cannot auto-segment: choose a model first (the server offers {self.models})")
            if self.model not in self.models:
                raise SessionError(f"cannot auto-segment with {self.model!r}: the server cannot run it until it is "
                                   f"trained; press Train, or choose one of {self.models}")
        if action == "submit":
            if self.image_id is None:
                raise SessionError("cannot submit a label: no image is open")
            if not self.has_label:
                raise SessionError(f"cannot submit a label for {self.image_id}: the segmentation is empty")
        if action == "train":
            if not self.trainers:
                raise SessionError("the server offers no trainable model")
            if self.training.running:
                raise SessionError(f"training is already {self.training.state.lower()}; stop it first")
        if action == "stop_train" and not self.training.running:
            raise SessionError("no training is running")

    def _unsaved(self, what: str) -> str:
        return (f"cannot {what}: the segmentation of {self.image_id} has unsaved edits; "
                "submit the label or discard the edits first")

    # -- moves -----------------------------------------------------------------------------------------

    def connect(self, server_url: str, info: Mapping[str, Any]) -> None:
        """Connected (or refreshed) with the server's ``/info/``; keeps the open image on a refresh.

        Raises:
            SessionError: when switching to another server with unsaved edits.
        """
        if self.dirty and server_url != self.server_url:
            raise SessionError(self._unsaved(f"switch to server {server_url}"))
        same_server = server_url == self.server_url and self.state is not State.DISCONNECTED
        self.server_url = server_url
        self.info = dict(info)
        if not same_server:
            self.image_id, self.choice, self.has_label = None, None, False
            self.state = State.CONNECTED
            self.labels = app_label_table(self.info)
        if self.model not in self.all_models:
            trained = [m for m in self.models if self.is_trained(m)]
            self.model = (trained or self.models or self.all_models or [None])[0]
        if self.strategy not in self.strategies:
            self.strategy = self.strategies[0] if self.strategies else None

    def disconnect(self, discard: bool = False) -> None:
        self._check("disconnect", discard=discard)
        self.__init__()  # type: ignore[misc]

    def select_model(self, model: str) -> None:
        if model not in self.all_models:
            raise SessionError(f"model {model!r} is not on the server; it offers {self.all_models}")
        self.model = model

    def select_strategy(self, strategy: str) -> None:
        if strategy not in self.strategies:
            raise SessionError(f"strategy {strategy!r} is not on the server; it offers {self.strategies}")
        self.strategy = strategy

    def check(self, action: str, discard: bool = False) -> None:
        """Raise :class:`SessionError` when ``action`` is not legal now."""
        self._check(action, discard=discard)

    def open_image(self, image_id: str, choice: SampleChoice | None = None, discard: bool = False) -> None:
        """An image (from Next sample, an upload, or the datastore) is now the one being annotated."""
        if self.state is State.DISCONNECTED:
            raise SessionError("cannot open an image: connect to a server first")
        if self.dirty and not discard:
            raise SessionError(self._unsaved(f"open {image_id}"))
        self.image_id, self.choice, self.has_label = image_id, choice, False
        self.state = State.IMAGE

    def close_image(self, discard: bool = False) -> None:
        if self.dirty and not discard:
            raise SessionError(self._unsaved("close the image"))
        self.image_id, self.choice, self.has_label = None, None, False
        self.state = State.CONNECTED if self.state is not State.DISCONNECTED else self.state

    def begin_infer(self) -> tuple[str, str]:
        """Check auto-segmentation is legal; returns ``(image_id, model)`` to send."""
        self._check("infer")
        return self.image_id, self.model  # type: ignore[return-value]

    def segmentation_received(self, model_labels: Mapping[str, Any] | list[str] | None) -> dict[int, int]:
        """The model's label map arrived: returns the model-value -> session-value mapping to merge with.

        The session's table gains the model's label names it lacked; the segmentation is now unsaved.
        """
        if self.image_id is None:
            raise SessionError("a segmentation arrived but no image is open")
        mapping = value_mapping(LabelTable.from_server(model_labels), self.labels)
        self.has_label = True
        self.state = State.EDITED
        return mapping

    def edited(self, has_label: bool = True) -> None:
        """The annotator changed the segmentation (Segment Editor)."""
        if self.image_id is None:
            raise SessionError("cannot edit: no image is open")
        self.has_label = has_label
        self.state = State.EDITED

    def begin_submit(self) -> tuple[str, dict[str, Any]]:
        """Check submitting is legal; returns ``(image_id, params)`` for ``save_label``.

        ``params["label_info"]`` lists every label's name, value and colour; ``params["label_names"]`` is
        the ``{name: value}`` form the MONAI Label trainers read.
        """
        self._check("submit")
        params = {"label_info": self.labels.to_label_info(), "label_names": self.labels.to_names()}
        return self.image_id, params  # type: ignore[return-value]

    def submitted(self, info: Mapping[str, Any] | None = None) -> None:
        """The server stored the label: nothing is unsaved any more; ``info`` refreshes the progress."""
        if self.image_id is None:
            raise SessionError("a label was stored but no image is open")
        self.state = State.IMAGE
        self.submitted_count += 1
        if info is not None:
            self.info = dict(info)

    def discard(self, cleared: bool = False) -> None:
        """Forget unsaved edits; ``cleared`` when the widget emptied the segmentation (nothing to submit)."""
        if self.state is State.EDITED:
            self.state = State.IMAGE
        if cleared:
            self.has_label = False

    def labels_outside(self, model: str) -> list[str]:
        """Session labels ``model`` does not predict: training it on them fails or ignores them, so the
        widget warns before submitting or training. Empty when the server does not list the model's labels."""
        entry = (self.info.get("models") or {}).get(model) or {}
        known = LabelTable.from_server(entry.get("labels"))
        if not len(known):
            return []
        return [lb.name for lb in self.labels if known.get(lb.name) is None or known.value_of(lb.name) != lb.value]

    def begin_train(self, model: str | None = None) -> str:
        """Check training is legal; returns the trainer to start (``model``, the chosen model, or the first)."""
        self._check("train")
        model = model or (self.model if self.model in self.trainers else self.trainers[0])
        if model not in self.trainers:
            raise SessionError(f"model {model!r} cannot be trained on this server; trainers: {self.trainers}")
        return model

    def training_update(self, task: Mapping[str, Any] | None, model: str | None = None) -> TrainingStatus:
        """Refresh the training status from ``GET /train/`` and the trainer statistics in ``info``."""
        model = model or ((task or {}).get("request") or {}).get("model") or self.model
        stats = (self.info.get("train_stats") or {}).get(model) if model else None
        self.training = training_status(task, stats)
        if self.training.model is None:
            self.training.model = model
        return self.training

    def begin_stop_train(self) -> None:
        self._check("stop_train")
