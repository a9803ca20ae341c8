"""LabelZooLib.jobs: calls off the UI thread, polled, with errors re-raised on the caller's thread and cancel."""

import threading
import time

import pytest
from LabelZooLib import BackgroundCall, LabelZooLibError


def test_result_error_and_cancel():
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        return x * 2

    call = BackgroundCall(slow, 21, what="doubling").start()
    assert not call.done and "doubling ..." in call.busy_text()
    with pytest.raises(LabelZooLibError, match="still running"):
        call.result()
    gate.set()
    assert call.wait(5) and call.result() == 42 and call.elapsed > 0

    def fails():
        raise ValueError("server said no")

    failing = BackgroundCall(fails).start()
    failing.wait(5)
    with pytest.raises(ValueError, match="server said no"):
        failing.result()  # the worker's error, raised where the answer is taken

    stuck = BackgroundCall(time.sleep, 0.2, what="waiting").start()
    stuck.cancel()
    stuck.wait(5)
    with pytest.raises(LabelZooLibError, match="cancelled"):
        stuck.result()  # a cancelled answer is dropped
