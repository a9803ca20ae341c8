"""LabelZooLib.jobs: calls off the UI thread, polled, with errors re-raised on the caller's thread and cancel;
slots that keep conflicting requests apart and status polls from stacking; dead and silent servers."""

import socket
import threading
import time

import pytest
from LabelZooLib import (
    BackgroundCall,
    Jobs,
    LabelZooClient,
    LabelZooLibError,
    ServerError,
    TrainingWatch,
    fetch_next_sample,
)

from tests.conftest import find_free_port


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


def collect(jobs: Jobs, timeout: float = 30.0) -> list:
    """What the module's timer does: poll the jobs until every slot is free, delivering each answer in order."""
    delivered = []
    deadline = time.monotonic() + timeout
    while jobs.busy():
        assert time.monotonic() < deadline, f"jobs still running after {timeout}s"
        for finished in jobs.poll():
            delivered.append(finished.deliver())
        time.sleep(0.02)
    return delivered


def test_jobs_one_call_per_slot_raise_skip_replace():
    gate = threading.Event()
    jobs = Jobs()
    answers = []
    first = jobs.start("request", BackgroundCall(gate.wait, 5, what="fetching"), answers.append)
    assert jobs.busy("request") and jobs.running("request") is first and not jobs.busy("train")
    assert jobs.busy_text("request").startswith("fetching ...") and jobs.busy_text("train") == ""
    with pytest.raises(LabelZooLibError, match="fetching is still running: wait for it or press Cancel"):
        jobs.start("request", BackgroundCall(sum, [1]), answers.append)
    assert jobs.start("request", BackgroundCall(sum, [1]), answers.append, if_busy="skip") is None
    with pytest.raises(LabelZooLibError, match="if_busy"):
        jobs.start("request", BackgroundCall(sum, [1]), answers.append, if_busy="queue")
    newer = jobs.start("request", BackgroundCall(sum, [2, 3], what="newer"), answers.append, if_busy="replace")
    assert first.cancelled and jobs.running("request") is newer
    other = jobs.start("train", BackgroundCall(sum, [10]), answers.append)  # another slot runs beside it
    gate.set()
    first.wait(5)
    assert collect(jobs) == [None, None] and sorted(answers) == [5, 10]  # the superseded answer never arrives
    assert other.done and not jobs.busy()


def test_jobs_errors_go_to_on_error_or_are_raised_and_cancel_drops_the_answer():
    jobs = Jobs()
    errors = []

    def refuses():
        raise ServerError("Image NOT Found", 404, "GET", "http://x/datastore/image")

    jobs.start("status", BackgroundCall(refuses), on_done=pytest.fail, on_error=errors.append)
    collect(jobs)
    assert len(errors) == 1 and errors[0].status == 404  # handled quietly (the training line, no dialog)

    jobs.start("request", BackgroundCall(refuses), on_done=pytest.fail)
    with pytest.raises(ServerError, match="HTTP 404: Image NOT Found"):
        collect(jobs)  # no on_error: raised on the polling (UI) thread, where the module shows it

    jobs.start("request", BackgroundCall(lambda: 1 / 0), on_done=pytest.fail, on_error=errors.append)
    with pytest.raises(ZeroDivisionError):
        collect(jobs)  # a bug is never swallowed as a server message

    gate = threading.Event()
    call = jobs.start("request", BackgroundCall(gate.wait, 5, what="slow"), on_done=pytest.fail)
    assert jobs.cancel("request") is call and call.cancelled and not jobs.busy("request")
    assert jobs.cancel("request") is None
    gate.set()
    assert call.wait(5) and jobs.poll() == []  # finished, but its answer is dropped


def test_dead_and_silent_servers_surface_as_messages():
    """No server on the port (refused), then a server that accepts but never answers (timeout): the poll
    fails with a message, at most one poll is in flight, and polling stops after max_failures."""
    dead = LabelZooClient(f"http://127.0.0.1:{find_free_port()}")
    jobs, errors = Jobs(), []
    jobs.start("request", BackgroundCall(fetch_next_sample, dead, "random", "/nonexistent", "me"),
               on_done=pytest.fail, on_error=errors.append)
    collect(jobs)
    assert "cannot reach the server" in str(errors[0]) and errors[0].status is None

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing ever answers
    try:
        client = LabelZooClient(f"http://127.0.0.1:{silent.getsockname()[1]}")
        watch = TrainingWatch(timeout=0.5, max_failures=2)
        messages = []

        def failed(error):
            messages.append(watch.failed(error, running=True))

        started = time.monotonic()
        assert jobs.start("status", watch.job(client), on_done=pytest.fail, on_error=failed, if_busy="skip")
        for _ in range(5):  # the timer firing again while the poll hangs starts nothing
            assert jobs.start("status", watch.job(client), on_done=pytest.fail, on_error=failed, if_busy="skip") is None
        collect(jobs)
        assert time.monotonic() - started < 5 and client.calls == [("GET", "/train/")]
        (message, again), = messages
        assert again and "training status: no answer" in message and "(1/2)" in message
        jobs.start("status", watch.job(client), on_done=pytest.fail, on_error=failed, if_busy="skip")
        collect(jobs)
        message, again = messages[-1]
        assert not again and "did not answer 2 times in a row" in message and "press Connect" in message
        # not running: one failure is enough to stop asking
        assert TrainingWatch().failed(ServerError("x"), running=False)[1] is False
    finally:
        silent.close()
    with pytest.raises(LabelZooLibError, match="max_failures"):
        TrainingWatch(max_failures=0)
