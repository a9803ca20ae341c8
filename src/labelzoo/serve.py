"""``labelzoo serve``: start the MONAI Label server with the LabelZoo app, offline, after checking the input."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from labelzoo.appconf import parse_conf
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


def server_args(studies: str, host: str, port: int, conf: dict[str, str], app: str, log_level: str) -> list[str]:
    """The ``monailabel start_server`` argument list for these settings."""
    args = ["start_server", "--app", app, "--studies", studies, "--host", host, "--port", str(port),
            "--log_level", log_level]
    for key, value in conf.items():
        args += ["--conf", key, value]
    return args


def serve(studies: str = "data/sample", host: str = "127.0.0.1", port: int = 8000, conf: dict | str | None = None,
          app: str | None = None, log_level: str = "info", dry_run: bool = False) -> int:
    """Start the MONAI Label server with the LabelZoo app (offline: no SAM2, no zoo or weight downloads).

    Paste the printed URL into 3D Slicer's MONAI Label (or LabelZoo) module. The server runs until
    Ctrl-C. Example: labelzoo serve --studies data/sample --port 8000

    Args:
        studies: folder of images (a MONAI Label local datastore), or a DICOMweb URL.
        host: address to listen on; 127.0.0.1 keeps the server local, 0.0.0.0 opens it to the network.
        port: TCP port.
        conf: app settings as key=value pairs separated by commas, e.g. --conf models=all,skip_scoring=true.
            Known keys: models, bundles, skip_trainers, skip_scoring, device, scoring_model, epistemic_samples,
            epistemic_dropout, tta_samples, strategy_k, hybrid_alpha, scoring_interval, save_original.
        app: MONAI Label app folder (default: apps/labelzoo of this checkout).
        log_level: uvicorn log level (debug, info, warning, error).
        dry_run: check the arguments and print the server command without starting it.
    """
    app_path = str(Path(app).expanduser().resolve()) if app else str(app_dir())
    if not (Path(app_path) / "main.py").is_file():
        raise LabelZooError(f"--app {app_path} is not a MONAI Label app folder (no main.py)")
    studies_path = check_studies(str(studies))
    app_conf = parse_conf(conf)
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
