"""HTTP client for the LabelZoo (MONAI Label 0.8.5) REST API, standard library only.

It replaces the client the stock MONAI Label Slicer plugin carries: multipart responses are parsed with
:mod:`email.parser` (the ``cgi`` module is deprecated and gone in Python 3.13), TLS certificates are
verified by default, and every failure is a :class:`~LabelZooLib.errors.ServerError` carrying the
server's own message and the HTTP status.

Every request goes through :data:`ROUTES`, the complete list of server routes this client calls; the
tests check each one against the live server's ``/openapi.json``.

Example::

    client = LabelZooClient("http://127.0.0.1:8000")
    info = client.info()
    sample = client.next_sample("random")
    image = client.download_image(sample["id"], "/tmp/work")
    result = client.infer("spleen_ct_unetr_segmentation", sample["id"])
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import mimetypes
import re
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabelZooLibError, ServerError

logger = logging.getLogger(__name__)

#: Every server route the client calls: name -> (HTTP method, path template).
ROUTES: dict[str, tuple[str, str]] = {
    "auth_enabled": ("GET", "/auth/"),
    "auth_token": ("POST", "/auth/token"),
    "info": ("GET", "/info/"),
    "datastore": ("GET", "/datastore/"),
    "next_sample": ("POST", "/activelearning/{strategy}"),
    "upload_image": ("PUT", "/datastore/image"),
    "download_image": ("GET", "/datastore/image"),
    "save_label": ("PUT", "/datastore/label"),
    "download_label": ("GET", "/datastore/label"),
    "infer": ("POST", "/infer/{model}"),
    "train_start": ("POST", "/train/{model}"),
    "train_stop": ("DELETE", "/train/"),
    "train_status": ("GET", "/train/"),
    # several annotators (LabelZoo's own routes)
    "annotations": ("GET", "/labelzoo/annotations"),
    "label_version": ("GET", "/labelzoo/version"),
    "renew_lease": ("POST", "/labelzoo/lease/{image}"),
    "agreement": ("GET", "/labelzoo/agreement"),
}

#: Routes a server only has when it runs with authentication (``MONAI_LABEL_AUTH_ENABLE``); without it
#: ``GET /auth/`` answers 404, which the client reads as "no login needed".
AUTH_ROUTES = frozenset({"auth_enabled", "auth_token"})

_SAFE_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,8}){1,3}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Response:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (a :class:`ServerError` when it is not JSON)."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ServerError(f"expected a JSON answer, got {self.body[:200]!r}", self.status) from e


@dataclass
class InferResult:
    """The answer of ``POST /infer/{model}``.

    Attributes:
        label_path: the label map the server returned, saved locally (``None`` if it sent only JSON).
        params: the JSON result (label names, latencies, ...).
    """

    label_path: Path | None
    params: dict[str, Any] = field(default_factory=dict)


def normalize_server_url(url: str) -> str:
    """Return ``url`` without surrounding blanks and trailing slashes, after checking it.

    Raises:
        LabelZooLibError: when the URL is not ``http://host[:port][/path]`` or ``https://...``.
    """
    url = (url or "").strip().rstrip("/")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LabelZooLibError(
            f"server URL {url!r} is not usable: expected http://HOST:PORT or https://HOST:PORT, "
            "e.g. http://127.0.0.1:8000"
        )
    if parsed.query or parsed.fragment:
        raise LabelZooLibError(f"server URL {url!r} must not carry a query or fragment (?... or #...)")
    return url


def encode_multipart(fields: dict[str, str], files: dict[str, str | Path]) -> tuple[str, bytes]:
    """Encode form ``fields`` and ``files`` (form name -> local path) as ``multipart/form-data``.

    Returns:
        ``(content_type, body)``.
    """
    boundary = f"labelzoo-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks += [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode(),
            value.encode("utf-8"),
            b"\r\n",
        ]
    for name, path in files.items():
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise LabelZooLibError(f"cannot read the file to upload {path}: {e.strerror}") from e
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = path.name.replace('"', "_")
        chunks += [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode(),
            f"Content-Type: {ctype}\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Split a ``multipart/form-data`` answer into text fields and files, with :mod:`email.parser`.

    Args:
        body: the raw HTTP body.
        content_type: the ``Content-Type`` header, with its ``boundary``.

    Returns:
        ``(fields, files)``: form name -> text, and form name -> ``(filename, bytes)``.

    Raises:
        LabelZooLibError: when the body is not multipart.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise LabelZooLibError(f"expected a multipart answer, got Content-Type {content_type!r}")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            files[name or filename] = (filename, payload)
        else:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8")
    return fields, files


def filename_from_disposition(disposition: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header (``filename*=utf-8''...`` or ``filename="..."``)."""
    if not disposition:
        return None
    star = re.search(r"filename\*\s*=\s*([^;]+)", disposition, flags=re.IGNORECASE)
    if star:
        value = star.group(1).strip().strip('"')
        if "''" in value:
            value = value.split("''", 1)[1]
        return urllib.parse.unquote(value)
    plain = re.search(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)', disposition, flags=re.IGNORECASE)
    if plain:
        return (plain.group(1) if plain.group(1) is not None else plain.group(2)).strip()
    return None


def safe_local_name(stem: str, server_filename: str | None, default_suffix: str = ".nii.gz") -> str:
    """A local file name ``<stem><suffix>``: the suffix comes from the server's file name when it is sane.

    The server's name is never used as a path, so a hostile name cannot write outside the target folder.
    """
    suffix = default_suffix
    if server_filename:
        base = Path(server_filename.replace("\\", "/")).name
        suffixes = "".join(Path(base).suffixes[-2:])
        if _SAFE_SUFFIX.match(suffixes):
            suffix = suffixes
    return (_SAFE_NAME.sub("_", stem).strip("._") or "file") + suffix


def _validation_message(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(x) for x in item.get("loc", []))
    return f"{where}: {item.get('msg', item)}"


class LabelZooClient:
    """Client for one LabelZoo / MONAI Label server.

    Args:
        server_url: e.g. ``http://127.0.0.1:8000``.
        token: an access token (``login`` fetches one), sent as ``Authorization: Bearer ...``.
        verify: ``True`` (default) verifies TLS certificates with the system store; a path to a CA
            bundle verifies with that; ``False`` disables verification (self-signed test servers only).
        timeout: seconds to wait for an answer (inference and uploads get ``long_timeout``).
        long_timeout: seconds to wait for inference, uploads and downloads.
        client_id: sent as ``client_id`` with sample and inference requests (MONAI Label logs it).
    """

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        long_timeout: float = 600.0,
        client_id: str | None = None,
    ):
        self.server_url = normalize_server_url(server_url)
        self.token = token
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.client_id = client_id
        if verify is False:
            logger.warning("TLS certificate verification is OFF for %s", self.server_url)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif isinstance(verify, (str, Path)):
            context = ssl.create_default_context(cafile=str(verify))
        else:
            context = ssl.create_default_context()
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        #: (method, path template) of every request sent, in order (the tests read it).
        self.calls: list[tuple[str, str]] = []

    # -- transport -----------------------------------------------------------------------------------

    def url_for(self, route: str, query: dict[str, Any] | None = None, **path_params: str) -> tuple[str, str]:
        """``(method, absolute URL)`` of a named route in :data:`ROUTES`."""
        if route not in ROUTES:
            raise LabelZooLibError(f"unknown route {route!r}; the client knows {sorted(ROUTES)}")
        method, template = ROUTES[route]
        path = template.format(**{k: urllib.parse.quote(str(v), safe="") for k, v in path_params.items()})
        url = self.server_url + path
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return method, url

    def request(
        self,
        route: str,
        query: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
        **path_params: str,
    ) -> Response:
        """Send one request to a named route; any status outside ``ok`` raises :class:`ServerError`."""
        method, url = self.url_for(route, query, **path_params)
        self.calls.append(ROUTES[route])
        headers = {"Accept": "application/json, multipart/form-data, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        logger.debug("%s %s", method, url)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as answer:
                response = Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
        except urllib.error.HTTPError as e:
            response = Response(e.code, {k.lower(): v for k, v in (e.headers or {}).items()}, e.read() or b"")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"cannot reach the server at {self.server_url} ({reason})", None, method, url) from e
        if response.status not in ok:
            raise ServerError(self._message(response), response.status, method, url)
        return response

    @staticmethod
    def _message(response: Response) -> str:
        """The server's explanation: FastAPI's ``detail`` when present, else the body's start."""
        text = response.body.decode("utf-8", errors="replace").strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return text[:500] or "(empty answer)"
        if isinstance(data, dict) and "detail" in data:
            detail = data["detail"]
            if isinstance(detail, list):  # FastAPI validation errors
                return "; ".join(_validation_message(d) for d in detail)
            return str(detail)
        return text[:500]

    def _json_body(self, data: dict[str, Any] | None) -> tuple[bytes, str]:
        return json.dumps(data or {}).encode("utf-8"), "application/json"

    def _with_client_id(self, params: dict[str, Any] | None) -> dict[str, Any]:
        params = dict(params or {})
        if self.client_id and "client_id" not in params:
            params["client_id"] = self.client_id
        return params

    # -- auth ------------------------------------------------------------------------------------------

    def auth_enabled(self) -> bool:
        """Whether the server asks for a login (``GET /auth/``; a server without auth answers 404)."""
        answer = self.request("auth_enabled", ok=(200, 404))
        return answer.status == 200 and bool((answer.json() or {}).get("enabled", False))

    def login(self, username: str, password: str) -> str:
        """Fetch an access token with a user name and password, keep it for later requests, return it."""
        form = urllib.parse.urlencode({"username": username, "password": password, "grant_type": "password"})
        answer = self.request("auth_token", body=form.encode(), content_type="application/x-www-form-urlencoded")
        self.token = answer.json()["access_token"]
        return self.token

    # -- app -------------------------------------------------------------------------------------------

    def info(self, timeout: float | None = None) -> dict[str, Any]:
        """The app's description: name, labels, models, trainers, strategies, scoring, train stats, datastore.

        Args:
            timeout: seconds to wait (default: the client's ``timeout``); status polls ask with a shorter one.
        """
        return self.request("info", timeout=timeout).json()

    def datastore(self, output: str = "stats") -> dict[str, Any]:
        """Datastore summary (``stats``: total / completed ...), or every entry (``all``) / the training list."""
        if output not in ("stats", "all", "train"):
            raise LabelZooLibError(f"datastore output {output!r} is not one of 'stats', 'all', 'train'")
        return self.request("datastore", query={"output": output}).json()

    def next_sample(self, strategy: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the strategy for the next image to annotate; ``{}`` when none is left.

        Returns:
            The image's datastore entry: ``id``, ``name``, ``strategy`` and any score the strategy stored.
        """
        body, ctype = self._json_body(self._with_client_id(params))
        return self.request("next_sample", body=body, content_type=ctype, strategy=strategy).json() or {}

    # -- datastore -------------------------------------------------------------------------------------

    def upload_image(self, path: str | Path, image_id: str | None = None, params: dict[str, Any] | None = None) -> str:
        """Add a local image to the server's datastore; returns its image id."""
        ctype, body = encode_multipart({"params": json.dumps(self._with_client_id(params))}, {"file": path})
        answer = self.request("upload_image", query={"image": image_id}, body=body, content_type=ctype,
                              timeout=self.long_timeout)
        return answer.json()["image"]

    def download_image(self, image_id: str, dest_dir: str | Path) -> Path:
        """Download an image of the datastore into ``dest_dir``; returns the local path."""
        answer = self.request("download_image", query={"image": image_id}, timeout=self.long_timeout)
        return self._save(answer, image_id, dest_dir)

    def save_label(
        self, image_id: str, label_path: str | Path, tag: str = "final", params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Submit a label map for ``image_id`` (``params`` carries ``label_info``: names, values, colours)."""
        ctype, body = encode_multipart({"params": json.dumps(self._with_client_id(params))}, {"label": label_path})
        answer = self.request("save_label", query={"image": image_id, "tag": tag}, body=body, content_type=ctype,
                              timeout=self.long_timeout)
        return answer.json()

    def annotations(self, image_id: str) -> dict[str, Any]:
        """Who labelled ``image_id`` (tag -> annotator, time), its prior label versions and current leases."""
        return self.request("annotations", query={"image": image_id}).json()

    def download_label_version(self, image_id: str, index: int, dest_dir: str | Path) -> Path:
        """Download prior (replaced) label version ``index`` of ``image_id``, e.g. to compare read-only."""
        answer = self.request("label_version", query={"image": image_id, "index": int(index)},
                              timeout=self.long_timeout)
        return self._save(answer, f"{image_id}_v{int(index)}", dest_dir)

    def renew_lease(self, image_id: str, annotator: str | None = None) -> dict[str, Any]:
        """Keep ``image_id`` handed to this annotator while they work on it; 409 when another holds it."""
        return self.request("renew_lease", query={"annotator": annotator or self.client_id}, image=image_id).json()

    def agreement(self, threshold: float = 0.8) -> dict[str, Any]:
        """Annotators' counts, agreement per class and disputed images (servers with several reads per image)."""
        return self.request("agreement", query={"threshold": threshold}).json()

    def download_label(self, label_id: str, dest_dir: str | Path, tag: str = "final") -> Path:
        """Download the stored label map ``label_id`` with ``tag`` into ``dest_dir``."""
        answer = self.request("download_label", query={"label": label_id, "tag": tag}, timeout=self.long_timeout)
        return self._save(answer, f"{label_id}_{tag}", dest_dir)

    def _save(self, answer: Response, stem: str, dest_dir: str | Path) -> Path:
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        name = safe_local_name(stem, filename_from_disposition(answer.headers.get("content-disposition")))
        path = dest_dir / name
        path.write_bytes(answer.body)
        return path

    # -- inference -------------------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        image_id: str,
        params: dict[str, Any] | None = None,
        label_path: str | Path | None = None,
        dest_dir: str | Path | None = None,
    ) -> InferResult:
        """Run ``model`` on a datastore image; the returned label map is saved under ``dest_dir``.

        Args:
            model: a name from ``info()["models"]``.
            image_id: a datastore image id.
            params: per-model options (``info()["models"][model]["config"]``).
            label_path: an input label map for models that take one (scribbles, interactive models).
            dest_dir: where to save the result (default: a new temporary folder).
        """
        fields = {"params": json.dumps(self._with_client_id(params))}
        ctype, body = encode_multipart(fields, {"label": label_path} if label_path else {})
        answer = self.request("infer", query={"image": image_id}, body=body, content_type=ctype,
                              timeout=self.long_timeout, model=model)
        answer_type = answer.headers.get("content-type", "")
        if not answer_type.startswith("multipart/"):
            data = answer.json()
            return InferResult(None, data if isinstance(data, dict) else {"result": data})
        form, files = parse_multipart(answer.body, answer_type)
        result_params = json.loads(form.get("params") or "{}")
        if not files:
            return InferResult(None, result_params)
        filename, data = next(iter(files.values()))
        dest = Path(dest_dir) if dest_dir else Path(tempfile.mkdtemp(prefix="labelzoo-infer-"))
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / safe_local_name(f"{image_id}_{model}", filename)
        path.write_bytes(data)
        return InferResult(path, result_params if isinstance(result_params, dict) else {"result": result_params})

    # -- training --------------------------------------------------------------------------------------

    def train_start(self, model: str, params: dict[str, Any] | None = None, enqueue: bool = False) -> dict[str, Any]:
        """Start training ``model`` in the background (``params`` override its train config).

        Raises:
            ServerError: HTTP 429 when a training task is already running (and ``enqueue`` is false).
        """
        body, ctype = self._json_body(params)
        query = {"enqueue": "true"} if enqueue else None
        return self.request("train_start", query=query, body=body, content_type=ctype, model=model).json()

    def train_stop(self) -> dict[str, Any]:
        """Stop the running training task (the answer describes the stopped task, ``{}`` if none ran)."""
        return self.request("train_stop").json() or {}

    def train_status(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The latest training task (``status``: SUBMITTED / RUNNING / DONE / ERROR / STOPPED, ``details``:
        the last log lines), or ``None`` when no training ran yet. ``timeout``: as in :meth:`info`."""
        answer = self.request("train_status", ok=(200, 404), timeout=timeout)
        return answer.json() if answer.status == 200 else None

    def train_running(self) -> bool:
        """Whether a training task is running now."""
        return self.request("train_status", query={"check_if_running": "true"}, ok=(200, 404)).status == 200
