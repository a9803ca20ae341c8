"""Network calls off the UI thread: background calls the module polls from a Qt timer, with cancel.

Slicer's UI runs on the Qt thread; a request that waits there (inference, training, a slow or dead server)
freezes the application. :class:`BackgroundCall` runs one call (often a sequence of client calls, see
:mod:`.remote`) in a daemon thread. :class:`Jobs` holds the calls in flight by *slot* (the module uses one
slot for the annotator's image work, one for starting / stopping training and one for training-status
polls): a slot holds one call at a time, which is what keeps conflicting requests apart and status polls
from stacking up. The module's timer calls :meth:`Jobs.poll` on the UI thread and hands each finished
call's answer (or error) to its callbacks there, where MRML nodes may be touched and dialogs shown.
:meth:`Jobs.cancel` stops waiting: the HTTP request cannot be interrupted, so its answer, when it comes,
is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import LabelZooLibError


class BackgroundCall:
    """``fn(*args, **kwargs)`` in a daemon thread.

    Args:
        fn: the call (e.g. ``client.infer``); it must not touch Slicer / Qt objects.
        what: a short description for the busy state (``"liver: redrawing"``).

    Example:
        >>> call = BackgroundCall(sum, [1, 2, 3], what="adding").start()
        >>> call.wait(5) and call.result()
        6
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs, self.what = fn, args, kwargs, what
        self._value: Any = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self.cancelled = False
        self.started: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"labelzoo-{what or 'call'}", daemon=True)

    def _run(self) -> None:
        try:
            self._value = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # noqa: BLE001 (re-raised on the UI thread by result())
            self._error = e
        finally:
            self._finished.set()

    def start(self) -> BackgroundCall:
        """Start the call; returns ``self``."""
        self.started = time.monotonic()
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        """True once the call returned or raised (what the UI timer polls)."""
        return self._finished.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def busy_text(self) -> str:
        """What the busy state shows: ``"liver: redrawing ... 1.2 s"``."""
        return f"{self.what or 'working'} ... {self.elapsed:.1f} s"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (tests and scripts only; the module polls). Returns :attr:`done`."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Stop waiting for this call: its answer will be ignored."""
        self.cancelled = True

    def result(self) -> Any:
        """The call's return value; re-raises its exception.

        Raises:
            LabelZooLibError: if called before the call is done, or after :meth:`cancel`.
        """
        if self.cancelled:
            raise LabelZooLibError(f"{self.what or 'the call'} was cancelled")
        if not self.done:
            raise LabelZooLibError(f"{self.what or 'the call'} is still running")
        if self._error is not None:
            raise self._error
        return self._value


#: What :meth:`Jobs.start` does when the slot already has a call in flight.
IF_BUSY = ("raise", "skip", "replace")


@dataclass
class Finished:
    """A call that finished and was not cancelled, with what to do with its answer (see :meth:`deliver`)."""

    slot: str
    call: BackgroundCall
    on_done: Callable[[Any], Any]
    on_error: Callable[[LabelZooLibError], Any] | None = None

    def deliver(self) -> Any:
        """Hand the answer to ``on_done`` (on the caller's thread, i.e. the UI's); returns what it returns.

        A :class:`LabelZooLibError` of the call (a server that said no or did not answer) goes to ``on_error``
        when there is one, else it is raised for the caller to show. Any other exception is a bug: raised.
        """
        try:
            value = self.call.result()
        except LabelZooLibError as e:
            if self.on_error is None:
                raise
            return self.on_error(e)
        return self.on_done(value)


class Jobs:
    """The background calls of one UI, at most one per slot, collected by :meth:`poll` on the UI thread.

    Only the UI thread touches this object (the calls' threads only run their functions).

    Example:
        >>> jobs = Jobs()
        >>> call = jobs.start("main", BackgroundCall(sum, [1, 2], what="adding"), on_done=print)
        >>> call.wait(5)
        True
        >>> for finished in jobs.poll():
        ...     finished.deliver()
        3
    """

    def __init__(self) -> None:
        self._slots: dict[str, Finished] = {}

    def start(
        self,
        slot: str,
        call: BackgroundCall,
        on_done: Callable[[Any], Any],
        on_error: Callable[[LabelZooLibError], Any] | None = None,
        if_busy: str = "raise",
    ) -> BackgroundCall | None:
        """Start ``call`` in ``slot``; :meth:`poll` later hands its answer to ``on_done`` (errors: ``on_error``).

        Args:
            slot: a name; one call per slot is in flight at most.
            call: not started yet.
            on_done: called with the answer on the thread that calls :meth:`poll`.
            on_error: called with the call's :class:`LabelZooLibError` instead of raising it there.
            if_busy: when the slot has a call in flight: ``"raise"`` (a :class:`LabelZooLibError` saying what
                runs), ``"skip"`` (start nothing, return ``None``: a periodic poll never stacks) or
                ``"replace"`` (cancel the call in flight; the newer request supersedes it).

        Returns:
            The started call, or ``None`` when skipped.
        """
        if if_busy not in IF_BUSY:
            raise LabelZooLibError(f"if_busy={if_busy!r} is not one of {IF_BUSY}")
        running = self.running(slot)
        if running is not None:
            if if_busy == "skip":
                return None
            if if_busy == "raise":
                raise LabelZooLibError(f"{running.what or 'a request'} is still running: wait for it or press Cancel")
            self.cancel(slot)
        self._slots[slot] = Finished(slot, call, on_done, on_error)
        return call.start()

    def running(self, slot: str) -> BackgroundCall | None:
        """The call in flight in ``slot`` (also when it finished but :meth:`poll` has not collected it yet)."""
        entry = self._slots.get(slot)
        return entry.call if entry is not None else None

    def busy(self, slot: str | None = None) -> bool:
        """Whether ``slot`` (or any slot, without one) has a call in flight."""
        return bool(self._slots) if slot is None else slot in self._slots

    def cancel(self, slot: str) -> BackgroundCall | None:
        """Stop waiting for ``slot``'s call: the slot is free at once and the answer will be dropped.

        Returns:
            The cancelled call, or ``None`` when the slot was idle.
        """
        entry = self._slots.pop(slot, None)
        if entry is None:
            return None
        entry.call.cancel()
        return entry.call

    def cancel_all(self) -> None:
        """Cancel every slot (the module is closing)."""
        for slot in list(self._slots):
            self.cancel(slot)

    def poll(self) -> list[Finished]:
        """Collect the calls that finished (their slots are free again), in start order; the caller runs
        :meth:`Finished.deliver` on each (the UI thread)."""
        finished = [entry for entry in self._slots.values() if entry.call.done]
        for entry in finished:
            del self._slots[entry.slot]
        return finished

    def busy_text(self, slot: str) -> str:
        """The busy state of ``slot`` (``"next sample ... 1.2 s"``), or ``""`` when idle."""
        call = self.running(slot)
        return call.busy_text() if call is not None else ""
