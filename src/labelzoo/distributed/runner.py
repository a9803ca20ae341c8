"""Independent trainings as Ray tasks: the trials of ``labelzoo search`` and the folds of ``labelzoo train-cv``.

Ray does the scheduling (where a task runs, with which CPUs / GPUs); this module only submits the tasks,
records each outcome as it arrives and retries failures:

* :func:`run_tasks` submits at most ``max_concurrent`` tasks at a time, each asking for ``cpus_per_trial`` /
  ``gpus_per_trial`` (so N GPUs run N trials at once); each finished task is handed to ``on_done`` at once
  (the callers append it to ``trials.jsonl`` / ``cv/folds.jsonl``, so an interrupted run resumes);
* a failed attempt (an exception in the task, a killed worker, Ray's out-of-memory kill) is handed to
  ``on_failed`` with its error and resubmitted until ``max_retries`` retries are spent; the run goes on with
  the other tasks and the caller decides what a task that never succeeded means;
* :class:`TrialProgress` is the one progress line: done / running / failed, the best score so far, and the
  Ray dashboard link when a cluster is used.

``RayOptions(address=None)`` (the default) starts a private Ray instance inside this process
(``ray.init(address="local", num_cpus=..., include_dashboard=False)``, no usage statistics, nothing to set up)
and stops it at the end; ``address="auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` (or ``RAY_ADDRESS`` in the
environment) joins an existing cluster. ``executor="inline"`` runs the same
tasks one after another in this process without Ray (the benchmark's baseline, and for debugging).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)

#: Environment defaults for an embedded Ray: offline, no usage statistics, quiet.
RAY_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a finished or failed task), flushed and fsynced before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (``[]`` when absent); a torn line (a crash while writing) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            logger.warning("%s: an incomplete line (interrupted while writing) is ignored", path)
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


@dataclass
class RayOptions:
    """How trials are scheduled (the ``--ray_address`` / ``--*_per_trial`` / ``--max_*`` flags).

    Attributes:
        address: ``None`` for a Ray instance started in this process (or the cluster in ``RAY_ADDRESS`` when that
            is set), ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` for an existing cluster.
        cpus_per_trial: CPUs each trial asks for (also its torch threads when none are set).
        gpus_per_trial: GPUs each trial asks for (fractions share a GPU); ``None``: 1 when the Ray cluster has GPUs
            and the trials can use one (``wants_gpu``), else 0. Ray hides the GPUs from a task that asks for none.
        max_concurrent: trials running at once; ``None``: 1 when training on the CPUs of an embedded Ray
            (today's speed: small trials do not gain from sharing 2 cores), else as many as the resources allow.
        max_retries: how often a failed trial is retried before it is recorded as failed for good.
        num_cpus: CPUs of an embedded Ray (default: this machine's).
        executor: ``"ray"`` or ``"inline"`` (in this process, no Ray).
        wants_gpu: whether the trials would use a GPU they are given (``--device cpu`` says no).
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    max_retries: int = 1
    num_cpus: int | None = None
    executor: str = "ray"
    wants_gpu: bool = True

    def validate(self) -> None:
        """Raise :class:`LabelZooError` naming the first bad option."""
        if self.executor not in ("ray", "inline"):
            raise LabelZooError(f"--executor must be ray or inline, got {self.executor!r}")
        if self.address is not None and not (self.address == "auto" or str(self.address).startswith("ray://")
                                             or ":" in str(self.address)):
            raise LabelZooError(f"--ray_address must be auto, ray://HOST:PORT or HOST:PORT, got {self.address!r}")
        for name, low in (("cpus_per_trial", 0.0), ("gpus_per_trial", 0.0)):
            value = getattr(self, name)
            if value is None and name == "gpus_per_trial":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low:
                raise LabelZooError(f"--{name} must be a number of at least {low:g}, got {value!r}")
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise LabelZooError("--cpus_per_trial and --gpus_per_trial cannot both be 0")
        for name, low in (("max_concurrent", 1), ("max_retries", 0), ("num_cpus", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise LabelZooError(f"--{name} must be an integer of at least {low}, got {value!r}")

    @property
    def embedded(self) -> bool:
        """Whether Ray is started in this process (no ``--ray_address``, no ``RAY_ADDRESS``)."""
        return self.executor == "ray" and not (self.address or os.environ.get("RAY_ADDRESS"))

    def concurrency(self) -> int | None:
        """Trials submitted at once (``None``: no limit but the cluster's resources)."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        if self.executor == "inline" or (self.embedded and not self.gpus_per_trial):
            return 1
        return None

    def torch_threads(self) -> int:
        """Torch CPU threads of one trial: its CPUs, at least 1."""
        return max(1, int(self.cpus_per_trial))


@dataclass
class Task:
    """One independent training: ``fn(*args, **kwargs)`` (``fn`` importable by workers: a module-level function).

    ``attempt_kwargs(attempt)`` may return extra keyword arguments for an attempt (attempt 1 is the first).
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt_kwargs: Callable[[int], dict[str, Any]] | None = None


@dataclass
class Outcome:
    """A finished attempt: ``result`` on success, ``error`` (one line + traceback tail) on failure."""

    key: str
    attempt: int
    seconds: float
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class TrialProgress:
    """One progress line on stderr: ``label [####....] done/total | running R | failed F | best ...``.

    Redrawn in place on a terminal; elsewhere (logs, CI) one line per finished or failed attempt.
    """

    def __init__(self, label: str, total: int, done: int = 0, best: float | None = None,
                 dashboard: str | None = None, stream: Any = None) -> None:
        self.label, self.total, self.done, self.best = label, total, done, best
        self.running = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        if dashboard:
            self.stream.write(f"Ray dashboard: {dashboard}\n")

    def line(self) -> str:
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        best = "-" if self.best is None else f"{self.best:.4f}"
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} done | running "
                f"{self.running} | failed {self.failed} | best {best} | {time.monotonic() - self.start:.0f}s")

    def update(self, done: int | None = None, running: int | None = None, failed: int | None = None,
               score: float | None = None, event: bool = False) -> None:
        """Change the counters (``score``: a finished trial's score, kept when best) and redraw."""
        if done is not None:
            self.done = done
        if running is not None:
            self.running = running
        if failed is not None:
            self.failed = failed
        if score is not None and (self.best is None or score > self.best):
            self.best = score
        if self.tty:
            self.stream.write("\r" + self.line())
        elif event:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _error_text(e: BaseException, limit: int = 4000) -> str:
    """``Type: message`` of the original error (a Ray task error carries it as ``cause``), at most ``limit``
    characters: the first line (what failed) and the end (where)."""
    cause = getattr(e, "cause", None)
    err = cause if isinstance(cause, BaseException) else e
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    if err is not e and not isinstance(err, LabelZooError):
        text += "\n" + "".join(traceback.format_exception_only(type(e), e)).strip()
    if len(text) > limit:
        first = text.splitlines()[0][:500]
        text = first + "\n...\n" + text[-(limit - len(first) - 5):]
    return text


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


_dashboard: str | None = None


def ray_init(options: RayOptions) -> tuple[bool, str | None]:
    """Start or join Ray; returns (whether this call started it, the dashboard URL when a cluster is used)."""
    global _dashboard
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return False, _dashboard
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if options.embedded:
        # address="local": always a new private instance, never a cluster `ray start` left on this machine
        ray.init(address="local", num_cpus=options.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
        return True, None
    try:
        context = ray.init(address=address, configure_logging=False, log_to_driver=False)
    except Exception as e:  # a cluster that is not there: say which address
        raise LabelZooError(f"--ray_address {address}: cannot connect to a Ray cluster ({e})") from None
    url = getattr(context, "dashboard_url", None)
    _dashboard = f"http://{url}" if url and not str(url).startswith("http") else (url or None)
    return True, _dashboard


@contextmanager
def ray_session(options: RayOptions) -> Iterator[str | None]:
    """Ray started (or joined) once for several :func:`run_tasks` calls, shut down at the end if started here.

    Yields the dashboard URL when a cluster is used. Does nothing for ``executor="inline"``.
    """
    global _dashboard
    if options.executor == "inline":
        yield None
        return
    options.validate()
    started, dashboard = ray_init(options)
    try:
        yield dashboard
    finally:
        if started:
            import ray

            ray.shutdown()
            _dashboard = None


def run_tasks(tasks: Sequence[Task], options: RayOptions, on_done: Callable[[Task, Outcome], None],
              on_failed: Callable[[Task, Outcome, bool], None] | None = None,
              progress: TrialProgress | None = None, shared: dict[str, Any] | None = None) -> dict[str, Outcome]:
    """Run ``tasks`` (Ray tasks, or in this process with ``executor="inline"``) and return their last outcomes.

    Args:
        tasks: the independent trainings; keys must be unique.
        options: scheduling options.
        on_done: called in this process as soon as a task succeeds (record it: append to a log, save weights).
        on_failed: called for every failed attempt with ``final=True`` when no retry is left.
        progress: redrawn as tasks start, finish and fail.
        shared: large read-only values (the search's data) passed to every task by keyword: put once into
            Ray's object store instead of being copied with each task.

    Returns:
        ``key -> Outcome`` of each task's last attempt (failed ones have ``error`` set).
    """
    options.validate()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    if options.executor == "inline":
        return _run_inline(tasks, options, on_done, on_failed, progress, shared or {})
    return _run_ray(tasks, options, on_done, on_failed, progress, shared or {})


def _finish(task: Task, outcome: Outcome, options: RayOptions, on_done, on_failed, counts: dict[str, int],
            progress: TrialProgress | None, event: bool = True) -> bool:
    """Record an attempt; returns whether the task should be retried. ``event=False``: the caller prints the
    progress line (after it has refilled the running tasks)."""
    if outcome.ok:
        counts["done"] += 1
        on_done(task, outcome)
        score = outcome.result.get("score") if isinstance(outcome.result, dict) else None
        if progress:
            progress.update(done=progress.done + 1, running=counts["running"], score=score, event=event)
        return False
    final = outcome.attempt > options.max_retries
    logger.warning("%s: attempt %d failed%s: %s", task.key, outcome.attempt,
                   "" if final else " (will retry)", outcome.error.splitlines()[0] if outcome.error else "")
    if final:
        counts["failed"] += 1
    if on_failed:
        on_failed(task, outcome, final)
    if progress:
        progress.update(running=counts["running"], failed=counts["failed"], event=event)
    return not final


def _kwargs(task: Task, attempt: int, shared: dict[str, Any]) -> dict[str, Any]:
    extra = task.attempt_kwargs(attempt) if task.attempt_kwargs else {}
    return {**shared, **task.kwargs, **extra}


def _run_inline(tasks, options, on_done, on_failed, progress, shared) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    counts = {"done": 0, "failed": 0, "running": 0}
    for task in tasks:
        attempt = 1
        while True:
            counts["running"] = 1
            if progress:
                progress.update(running=1)
            start = time.perf_counter()
            try:
                result, seconds = _call(task.fn, task.args, _kwargs(task, attempt, shared))
                outcome = Outcome(task.key, attempt, seconds, result=result)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a failed trial is recorded, never silently dropped
                outcome = Outcome(task.key, attempt, time.perf_counter() - start, error=_error_text(e))
            counts["running"] = 0
            outcomes[task.key] = outcome
            if not _finish(task, outcome, options, on_done, on_failed, counts, progress):
                break
            attempt += 1
    return outcomes


def _run_ray(tasks, options, on_done, on_failed, progress, shared) -> dict[str, Outcome]:
    import ray

    started, dashboard = ray_init(options)
    if progress and dashboard:
        progress.stream.write(f"Ray dashboard: {dashboard}\n")
        progress.stream.flush()
    try:
        if options.gpus_per_trial is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) > 0
            options.gpus_per_trial = 1.0 if (has_gpu and options.wants_gpu) else 0.0
            if options.gpus_per_trial:
                logger.info("the Ray cluster has GPUs: each trial asks for 1 (--gpus_per_trial to change)")
        names = list(shared)
        refs = [ray.put(shared[n]) for n in names]  # put once, resolved inside each worker
        remote = ray.remote(_call_shared).options(num_cpus=options.cpus_per_trial, num_gpus=options.gpus_per_trial,
                                                  max_retries=0)
        limit = options.concurrency() or len(tasks) or 1
        queue: list[tuple[Task, int]] = [(t, 1) for t in tasks]
        pending: dict[Any, tuple[Task, int, float]] = {}
        outcomes: dict[str, Outcome] = {}
        counts = {"done": 0, "failed": 0, "running": 0}
        event = False
        while queue or pending:
            while queue and len(pending) < limit:
                task, attempt = queue.pop(0)
                ref = remote.remote(task.fn, task.args, _kwargs(task, attempt, {}), names, *refs)
                pending[ref] = (task, attempt, time.perf_counter())
            counts["running"] = len(pending)
            if progress:
                progress.update(running=counts["running"], event=event)
            event = False
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            task, attempt, start = pending.pop(ref)
            counts["running"] = len(pending)
            try:
                result, seconds = ray.get(ref)
                outcome = Outcome(task.key, attempt, seconds, result=result)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # RayTaskError, WorkerCrashedError, OutOfMemoryError, ...
                outcome = Outcome(task.key, attempt, time.perf_counter() - start, error=_error_text(e))
            outcomes[task.key] = outcome
            if _finish(task, outcome, options, on_done, on_failed, counts, progress, event=False):
                queue.insert(0, (task, attempt + 1))
            event = True
        if progress and event:
            progress.update(running=0, event=True)
        return outcomes
    finally:
        if started:
            ray.shutdown()
            global _dashboard
            _dashboard = None


def _call_shared(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], shared_names: list[str],
                 *shared_values: Any) -> tuple[Any, float]:
    """Worker side: the shared values arrive as top-level arguments (Ray resolves their references)."""
    return _call(fn, args, {**dict(zip(shared_names, shared_values, strict=True)), **kwargs})

