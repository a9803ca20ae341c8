"""Shared fixtures: synthetic data, free ports and a live MONAI Label server running the LabelZoo app.

Markers (registered in pyproject.toml, ``--strict-markers``): ``slow`` (excluded from ``make test``),
``server`` (starts a real server), ``gpu`` (skipped with a reason without CUDA), ``slicer`` (skipped with
a reason without the ``Slicer`` executable).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without CUDA and ``slicer`` tests without 3D Slicer, saying why."""
    cuda = None
    slicer = shutil.which("Slicer")
    for item in items:
        # get_closest_marker, not `in item.keywords`: keywords also hold folder names (tests/slicer/...).
        if item.get_closest_marker("gpu"):
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False"))
        if item.get_closest_marker("slicer") and not slicer:
            item.add_marker(pytest.mark.skip(reason="needs the 3D Slicer executable `Slicer` on PATH"))


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return find_free_port()


@pytest.fixture(scope="session")
def sample_studies_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic CT datastore (6 cases, 2 labelled, 64x64x48), built once per session. Do not modify."""
    from labelzoo.data import build_sample_studies

    out = tmp_path_factory.mktemp("studies-template") / "studies"
    return build_sample_studies(out, n_images=6, n_labeled=2, shape=(64, 64, 48), seed=0)


@pytest.fixture
def sample_studies(sample_studies_template: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the synthetic CT datastore."""
    dst = tmp_path / "studies"
    shutil.copytree(sample_studies_template, dst)
    return dst


@pytest.fixture(scope="session")
def msd_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic CT dataset in Medical Segmentation Decathlon layout (dataset.json, imagesTr, labelsTr)."""
    from labelzoo.data import build_sample_studies

    out = tmp_path_factory.mktemp("msd") / "Task00_Synthetic"
    return build_sample_studies(out, n_images=4, n_labeled=3, shape=(48, 48, 32), seed=10, layout="msd")


class LiveServer:
    """A MONAI Label server process running the LabelZoo app on 127.0.0.1."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path, studies: Path):
        self.url = url
        self.process = process
        self.log = log
        self.studies = studies

    def client(self):
        """A ``monailabel.client.MONAILabelClient`` (the client the Slicer plugin uses) for this server."""
        from monailabel.client import MONAILabelClient

        return MONAILabelClient(self.url)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def run_server(studies: Path, log: Path, conf: str | None = None, timeout: float = 180.0,
               extra_env: dict[str, str] | None = None, ready_status: tuple[int, ...] = (200,)) -> Iterator[LiveServer]:
    """Start ``labelzoo serve`` as a real process, wait until ``GET /info/`` answers (with one of ``ready_status``:
    401 for a server with auth on), stop it afterwards."""
    import requests

    port = find_free_port()
    cmd = [sys.executable, "-m", "labelzoo.cli", "serve", "--studies", str(studies), "--host", "127.0.0.1",
           "--port", str(port)]
    if conf:
        cmd += ["--conf", conf]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(url, proc, log, studies)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code in ready_status:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer within {timeout}s:\n{server.log_text()[-4000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers on given studies folders (``factory(studies, conf=None)``); all are stopped at the end."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        counter = iter(range(1000))

        def factory(studies: Path, conf: str | None = None, **kwargs) -> LiveServer:
            log = tmp_path / f"server-{next(counter)}.log"
            return stack.enter_context(run_server(studies, log, conf=conf, **kwargs))

        yield factory


ORTHANC_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


class Orthanc:
    """A real Orthanc PACS (Debian packages ``orthanc`` + ``orthanc-dicomweb``) on 127.0.0.1."""

    def __init__(self, url: str):
        self.url = url
        self.dicomweb = f"{url}/dicom-web"

    def upload(self, paths: list[Path]) -> None:
        """Store DICOM files through Orthanc's REST API."""
        import requests

        for path in paths:
            requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), timeout=30).raise_for_status()

    def series_modalities(self) -> list[str]:
        import requests

        ids = requests.get(f"{self.url}/series", timeout=30).json()
        tags = [requests.get(f"{self.url}/series/{i}", timeout=30).json()["MainDicomTags"] for i in ids]
        return sorted(t["Modality"] for t in tags)


def _orthanc_plugin() -> str | None:
    for folder in ORTHANC_PLUGIN_DIRS:
        hits = sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []
        if hits:
            return str(hits[0])
    return None


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """An empty Orthanc with the DICOMweb plugin on a free loopback port, stopped afterwards.

    Installed by ``make system-deps`` (part of ``make test``). Outside CI a machine without Orthanc
    skips the DICOMweb tests with a reason; in CI (``CI`` set) a missing Orthanc is an error.
    """
    import json

    import requests

    binary, plugin = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin"), _orthanc_plugin()
    if not binary or not plugin:
        message = "Orthanc + DICOMweb plugin not installed (Debian: orthanc, orthanc-dicomweb; `make system-deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = find_free_port()
    config = {
        "Name": "labelzoo-test", "StorageDirectory": str(tmp_path / "orthanc-db"),
        "IndexDirectory": str(tmp_path / "orthanc-db"), "HttpPort": port, "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    with open(tmp_path / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([binary, str(tmp_path / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/dicom-web/studies", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start:\n{(tmp_path / 'orthanc.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield Orthanc(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, sample_studies_template: Path) -> Iterator[LiveServer]:
    """A live LabelZoo server on a private copy of the sample studies, shared by one test module."""
    base = tmp_path_factory.mktemp("live")
    studies = base / "studies"
    shutil.copytree(sample_studies_template, studies)
    with run_server(studies, base / "server.log") as server:
        yield server
