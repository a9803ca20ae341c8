"""What each button of the module asks of the server, as functions one background job runs.

Every network call of the Slicer module goes through one of these (or one client method) inside a
:class:`~LabelZooLib.jobs.BackgroundCall`, never on the Qt thread. A function chains the client calls of one
step (e.g. next sample = choose + download + who else labelled it) so the UI waits once, then gets one answer
on its timer. Questions to the annotator (login, "replace their label?", which label to compare with) are
asked on the UI thread *between* two such jobs. Nothing here touches Slicer, Qt or MRML.

:class:`TrainingWatch` is the training-status poll: one ``GET /train/`` (plus ``/info/`` once a task ends,
for the fresh best metric) per job, a short timeout, and a clear message, then giving up, when the server
stops answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import LabelZooClient
from .errors import LabelZooLibError
from .jobs import BackgroundCall
from .session import SampleChoice, sample_choice
from .team import ImageTeam, image_team

#: Training states of ``GET /train/`` after which polling may stop.
RUNNING_STATES = ("SUBMITTED", "RUNNING")


def connect_probe(client: LabelZooClient) -> dict[str, Any] | None:
    """The server's ``/info/``, or ``None`` when it asks for a login first (no token given, auth enabled).

    The module then asks for a user name and password and runs :func:`login_info`.
    """
    if not client.token and client.auth_enabled():
        return None
    return client.info()


def login_info(client: LabelZooClient, username: str, password: str) -> dict[str, Any]:
    """Log in (the client keeps the token), then read ``/info/``."""
    client.login(username, password)
    return client.info()


@dataclass
class NextSample:
    """The answer of :func:`fetch_next_sample`."""

    choice: SampleChoice
    image_path: Path
    team: ImageTeam


def fetch_next_sample(client: LabelZooClient, strategy: str, dest_dir: str | Path, annotator: str) -> NextSample:
    """Next sample in one job: the strategy's choice, its image downloaded to ``dest_dir``, who else labelled it.

    Raises:
        SessionError: when the strategy has no image left.
        ServerError: when a request fails.
    """
    choice = sample_choice(client.next_sample(strategy), strategy)
    path = client.download_image(choice.image_id, dest_dir)
    team = image_team(client.annotations(choice.image_id), annotator)
    return NextSample(choice, path, team)


def submit_label(client: LabelZooClient, image_id: str, label_path: str | Path,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Store the label map, then read ``/info/`` (the progress moved). Returns the fresh info."""
    client.save_label(image_id, label_path, params=params)
    return client.info()


def upload_volume(client: LabelZooClient, path: str | Path, image_id: str) -> tuple[str, dict[str, Any]]:
    """Add a local volume to the datastore, then read ``/info/``. Returns ``(image id, info)``."""
    stored = client.upload_image(path, image_id=image_id)
    return stored, client.info()


def download_for_compare(client: LabelZooClient, image_id: str, kind: str, key: str | int,
                         dest_dir: str | Path) -> Path:
    """Download the label chosen with :func:`~LabelZooLib.team.compare_choices`: ``("tag", tag)`` or
    ``("version", index)``."""
    if kind == "tag":
        return client.download_label(image_id, dest_dir, tag=str(key))
    if kind == "version":
        return client.download_label_version(image_id, int(key), dest_dir)
    raise LabelZooLibError(f"cannot compare with {kind!r}: expected 'tag' or 'version'")


@dataclass
class TrainingAnswer:
    """One training-status poll: ``GET /train/`` (``None``: no training ran yet) and, once the task is no
    longer running, the fresh ``/info/`` (its train stats hold the best metric), else ``None``."""

    task: dict[str, Any] | None
    info: dict[str, Any] | None = None
    generation: int = 0  # of the TrainingWatch that asked (see TrainingWatch.current)

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.get("status") in RUNNING_STATES


def poll_training(client: LabelZooClient, timeout: float | None = None, generation: int = 0) -> TrainingAnswer:
    """One training-status poll (see :class:`TrainingAnswer`), each request waiting at most ``timeout`` s."""
    task = client.train_status(timeout=timeout)
    answer = TrainingAnswer(task, generation=generation)
    if task is not None and not answer.running:
        answer.info = client.info(timeout=timeout)
    return answer


class TrainingWatch:
    """The module's training-status poll: what to start, and what to say when the server stops answering.

    The module starts :meth:`job` in its own :class:`~LabelZooLib.jobs.Jobs` slot with ``if_busy="skip"``,
    so one poll is in flight at most however slow the server; it reports each answer with :meth:`answered`
    and each error with :meth:`failed`, which says whether to poll again. Training started or stopped while a
    poll was in flight makes that poll's answer stale (:meth:`reset`, :meth:`current`): the module then asks
    again instead of believing a status from before the change.

    Args:
        timeout: seconds one poll request may wait (shorter than the client's default).
        max_failures: consecutive failed polls after which polling stops until :meth:`reset`
            (the module resets it on Connect and on Train).
    """

    def __init__(self, timeout: float = 10.0, max_failures: int = 3) -> None:
        if max_failures < 1:
            raise LabelZooLibError(f"max_failures must be at least 1, got {max_failures}")
        self.timeout = timeout
        self.max_failures = max_failures
        self.failures = 0
        self.generation = 0

    def job(self, client: LabelZooClient) -> BackgroundCall:
        """A poll, not started yet."""
        return BackgroundCall(poll_training, client, self.timeout, self.generation, what="training status")

    def reset(self) -> None:
        """Training was started / stopped, or another server connected: polls in flight become stale."""
        self.failures = 0
        self.generation += 1

    def current(self, answer: TrainingAnswer) -> bool:
        """Whether ``answer`` was asked after the last :meth:`reset` (else ask again; it may predate the change)."""
        return answer.generation == self.generation

    def answered(self, answer: TrainingAnswer) -> bool:
        """A current poll was answered; returns whether to poll again (the task is still running)."""
        self.failures = 0
        return answer.running

    def failed(self, error: LabelZooLibError, running: bool = True) -> tuple[str, bool]:
        """A poll failed (the server did not answer or said no).

        Args:
            error: the poll's error.
            running: whether training was running as far as the module knows (no retry when not).

        Returns:
            ``(message for the training status line, whether to poll again)``.
        """
        self.failures += 1
        if running and self.failures < self.max_failures:
            return (f"training status: no answer ({error}); asking again "
                    f"({self.failures}/{self.max_failures})"), True
        tries = f" {self.failures} times in a row" if self.failures > 1 else ""
        return (f"training status unknown: the server did not answer{tries} ({error}); stopped asking, "
                "press Connect to ask again"), False
