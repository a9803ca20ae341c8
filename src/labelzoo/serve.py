"""``labelzoo serve``: start the MONAI Label server with the LabelZoo app, offline, after checking the input."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

from labelzoo.appconf import check_conf, conf_value, parse_conf
from labelzoo.errors import LabelZooError
from labelzoo.paths import app_dir

logger = logging.getLogger(__name__)


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`LabelZooError` if ``host:port`` cannot be bound (in use, or not an address here).

    The probe uses ``SO_REUSEADDR`` as uvicorn does, so a port in TIME_WAIT counts as free.
    """
    if not isinstance(port, int) or not 0 < port < 65536:
        raise LabelZooError(f"--port must be an integer between 1 and 65535, got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise LabelZooError(f"port {port} on {host} is in use: stop the other server or pass --port") from None
            raise LabelZooError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_enabled() -> bool:
    """Whether MONAI Label's authentication (``MONAI_LABEL_AUTH_ENABLE``, OIDC via Keycloak) is on."""
    from monailabel.config import settings

    return bool(settings.MONAI_LABEL_AUTH_ENABLE)


def check_exposure(host: str, insecure: bool) -> None:
    """Refuse to listen beyond loopback without authentication, unless the user says so explicitly.

    Anyone who can reach the port could then read every image, replace labels and start training.
    """
    if is_loopback(host) or insecure or auth_enabled():
        return
    raise LabelZooError(
        f"--host {host} opens the server to the network without authentication: anyone who reaches it can read "
        "and change the data. Turn on MONAI Label's auth (MONAI_LABEL_AUTH_ENABLE=true with an OIDC server, see "
        "the README), keep --host 127.0.0.1 behind a proxy that authenticates, or pass --insecure to accept it"
    )


def check_studies(studies: str) -> str:
    """Validate the studies argument: a DICOMweb URL, or an existing folder (returned absolute)."""
    if studies.startswith(("http://", "https://")):
        return studies
    path = Path(studies).expanduser()
    if not path.exists():
        raise LabelZooError(
            f"--studies {studies}: no such folder (build the demo with `labelzoo sample-data {studies}`)"
        )
    if not path.is_dir():
        raise LabelZooError(f"--studies {studies} is not a folder: give the folder that holds the images")
    return str(path.resolve())


def ensure_dicom_tools() -> None:
    """Put this environment's scripts on PATH and check that dcmqi's ``itkimage2segimage`` is there.

    MONAI Label's DICOMweb datastore converts labels to DICOM SEG with dcmqi and downloads dcmqi
    from the internet when the tool is not on PATH; the ``dcmqi`` package (a LabelZoo dependency)
    installs it next to the Python executable, which is not on PATH unless the venv is activated.
    """
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    if not shutil.which("itkimage2segimage"):
        raise LabelZooError(
            "a DICOMweb --studies needs dcmqi's itkimage2segimage on PATH (install it with `pip install dcmqi`)"
        )


def check_bundles(conf: dict[str, str]) -> list[str]:
    """The bundles the app will serve for ``conf`` (``models``, ``bundles``); raises on unknown names or folders."""
    from labelzoo.discovery import find_bundles
    from labelzoo.paths import bundles_dir
    from labelzoo.zoo.cache import served_bundles

    dirs = [bundles_dir()] if bundles_dir().is_dir() else []
    dirs += [Path(p.strip()).expanduser() for p in conf_value(conf, "bundles").split(",") if p.strip()]
    # zoo bundles are pulled into the cache here, so a bad name or version fails before the server starts
    selected, _ = served_bundles(find_bundles(dirs), conf_value(conf, "models"), conf_value(conf, "zoo"),
                                 conf_value(conf, "zoo_cache"))
    return list(selected)


def server_args(studies: str, host: str, port: int, conf: dict[str, str], app: str, log_level: str) -> list[str]:
    """The ``monailabel start_server`` argument list for these settings."""
    args = ["start_server", "--app", app, "--studies", studies, "--host", host, "--port", str(port),
            "--log_level", log_level]
    for key, value in conf.items():
        args += ["--conf", key, value]
    return args


def serve(studies: str = "data/sample", host: str = "127.0.0.1", port: int = 8000, conf: dict | str | None = None,
          app: str | None = None, log_level: str = "info", dry_run: bool = False, insecure: bool = False) -> int:
    """Start the MONAI Label server with the LabelZoo app (offline: no SAM2, no zoo or weight downloads).

    Paste the printed URL into 3D Slicer's MONAI Label (or LabelZoo) module. The server runs until
    Ctrl-C. Example: labelzoo serve --studies data/sample --port 8000

    Args:
        studies: folder of images (a MONAI Label local datastore), or a DICOMweb URL.
        host: address to listen on; 127.0.0.1 keeps the server local, 0.0.0.0 opens it to the network (refused
            without MONAI Label's authentication unless --insecure is given).
        port: TCP port.
        conf: app settings as key=value pairs separated by commas, e.g. --conf models=all,skip_scoring=true;
            zoo bundles: --conf zoo=http://host:8000,models=NAME@VERSION+OTHER (pulled and cached at start).
            Known keys: models, bundles, zoo, zoo_cache, skip_trainers, skip_scoring, device, scoring_model,
            epistemic_samples, epistemic_dropout, tta_samples, strategy_k, hybrid_alpha, scoring_interval,
            save_original, max_upload_mb, max_image_voxels, infer_concurrency, infer_queue, allow_model_upload.
        app: MONAI Label app folder (default: apps/labelzoo of this checkout).
        log_level: uvicorn log level (debug, info, warning, error).
        dry_run: check the arguments and print the server command without starting it.
        insecure: allow a non-loopback --host without authentication (anyone on the network can use the server).
    """
    app_path = str(Path(app).expanduser().resolve()) if app else str(app_dir())
    if not (Path(app_path) / "main.py").is_file():
        raise LabelZooError(f"--app {app_path} is not a MONAI Label app folder (no main.py)")
    studies_path = check_studies(str(studies))
    if studies_path.startswith(("http://", "https://")):
        ensure_dicom_tools()
    app_conf = check_conf(parse_conf(conf))
    if app is None:
        check_bundles(app_conf)
    check_exposure(str(host), bool(insecure))
    check_port_free(host, port)
    args = server_args(studies_path, host, port, app_conf, app_path, log_level)

    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{url_host}:{port}"
    print(f"LabelZoo server: {url}  (3D Slicer: MONAI Label or LabelZoo module -> server address {url})", flush=True)
    if dry_run:
        print("monailabel " + " ".join(args))
        return 0

    from monailabel.main import Main

    main = Main()
    parsed = main.args_parser().parse_args(args)
    main.action_start_server(parsed)
    return 0
