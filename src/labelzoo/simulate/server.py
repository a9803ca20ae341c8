"""A LabelZoo server for one simulation run: ``labelzoo serve`` in a subprocess on a free loopback port.

The simulator talks to it only over HTTP with ``monailabel.client.MONAILabelClient`` (the client the
Slicer plugin uses), exactly as it would talk to a server started by hand (``--server URL``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float, process: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
    """Poll ``GET /info/`` until it answers 200; raise with the server log's tail if it exits or times out."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.is_file() else ""
            raise LabelZooError(f"the LabelZoo server exited with code {process.returncode}:\n{tail}")
        try:
            if requests.get(f"{url}/info/", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.is_file() else ""
            raise LabelZooError(f"the LabelZoo server at {url} did not answer within {timeout:.0f} s:\n{tail}")
        time.sleep(0.5)


@contextlib.contextmanager
def local_server(studies: Path, conf: dict[str, str], log: Path, timeout: float = 300.0,
                 env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``labelzoo serve`` on ``studies`` with ``conf`` until the block ends; yields the server URL."""
    port = free_port()
    conf_arg = ",".join(f"{k}={v}" for k, v in conf.items())
    cmd = [sys.executable, "-m", "labelzoo.cli", "serve", "--studies", str(studies), "--host", "127.0.0.1",
           "--port", str(port), "--conf", conf_arg, "--log_level", "warning"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        # its own process group, so stopping it also stops a training or scoring child it started
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    logger.info("started LabelZoo server pid %d at %s (log %s)", proc.pid, url, log)
    try:
        wait_until_up(url, timeout, proc, log)
        yield url
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a training child that outlived the server
