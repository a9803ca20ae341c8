"""Network calls off the UI thread: a background call the module polls from a Qt timer, with cancel.

Slicer's UI runs on the Qt thread; a request that waits there (inference, training) freezes the application.
:class:`BackgroundCall` runs one call in a daemon thread; the module starts it, shows a busy state, polls
:attr:`BackgroundCall.done` from a timer and takes :meth:`BackgroundCall.result` on the UI thread (where MRML
nodes may be touched). :meth:`BackgroundCall.cancel` stops waiting: the HTTP request cannot be interrupted, so
its answer, when it comes, is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
