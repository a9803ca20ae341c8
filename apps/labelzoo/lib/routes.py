"""LabelZoo's front door: MONAI Label's routes, with every client value checked before any work starts.

MONAI Label 0.8.5's endpoints pass request options straight into tasks (and from there into bundle
configs, where ``$...`` strings are Python), copy uploads into the temp folder before looking at them,
answer malformed ``params`` with 500 and run inference on the event loop. The routes here are matched
before MONAI Label's (same paths, parameters and answers, so its Slicer plugin, OHIF and
``MONAILabelClient`` keep working) and add, for each request:

- typed options checked against the task's schema (:mod:`labelzoo.options`): HTTP 422 naming the option;
- uploads written to a private folder, their size read from the header before any voxel (HTTP 413), and
  removed when the request ends, whatever happens;
- inference in worker threads, a bounded number at once per model with a bounded queue (HTTP 429 beyond),
  so ``/info/``, ``/datastore/*`` and ``/activelearning/*`` answer while models run;
- admin-only dataset export when auth is on, weights upload only when enabled and loadable.

:class:`BodyLimit` caps every request body (``max_upload_mb``) while it streams in (HTTP 413).
``POST /scoring/...`` goes to the in-process scoring worker (MONAI Label would start a subprocess).
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from monailabel.config import RBAC_ADMIN, RBAC_ANNOTATOR, RBAC_USER, settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.datastore import DefaultLabelTag

from labelzoo.errors import LabelZooError
from labelzoo.options import (
    BATCH_OPTIONS,
    INFER_OPTIONS,
    STRATEGY_OPTIONS,
    TRAIN_OPTIONS,
    as_bool,
    check_inert,
    check_info,
    check_options,
    parse_json_object,
)
from labelzoo.validation import check_id, check_image_size
from lib.errors import (
    AppError,
    as_http,
    bad_request,
    forbidden,
    not_found,
    too_large,
    too_many,
    unprocessable,
    unsupported,
)

logger = logging.getLogger(__name__)

#: MONAI Label's role checks (module-level, as FastAPI dependencies are declared)
ADMIN = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))
ANNOTATOR = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
USER = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))

UPLOAD_PREFIX = "labelzoo-uploads-"
#: upload file types: the suffix of the client's file name must be one of these (HTTP 415 otherwise)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


# ---- request bodies: capped while they stream in -----------------------------------------------------------------
class BodyLimit:
    """ASGI wrapper refusing request bodies over ``max_bytes`` with 413, before they are stored anywhere.

    A declared ``Content-Length`` over the cap is refused at once; a body without one (chunked) is counted
    as it arrives and the request is cut off with 413 when it passes the cap.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _refuse(self, send: Callable, size: str) -> None:
        body = json.dumps({"detail": f"request body {size} is larger than this server accepts "
                                     f"({self.max_bytes / 2**20:g} MiB, setting max_upload_mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers") or []:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send, f"({declared:,} bytes)")
                    return
        state = {"count": 0, "over": False, "started": False}

        class _TooLarge(Exception):
            pass

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["count"] += len(message.get("body", b""))
                if state["count"] > self.max_bytes:
                    state["over"] = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"]:
                return  # the inner app's error answer to the cut-off body: ours goes instead
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send, f"(over {state['count']:,} bytes)")


def install_body_limit(fastapi_app: Any, max_bytes: int) -> bool:
    """Wrap the running app's middleware stack (built when the server started) with :class:`BodyLimit`."""
    stack = getattr(fastapi_app, "middleware_stack", None)
    if stack is None:
        stack = fastapi_app.build_middleware_stack()
    if isinstance(stack, BodyLimit):
        stack.max_bytes = int(max_bytes)
        return True
    fastapi_app.middleware_stack = BodyLimit(stack, max_bytes)
    return True


# ---- uploads -----------------------------------------------------------------------------------------------------
class Uploads:
    """A private folder for this server's uploads; every file is removed when its request ends.

    The folder name carries the server's process id, so a server that starts removes the folders of
    servers that died (``kill -9``) without touching those of servers still running.
    """

    def __init__(self, max_bytes: int, max_voxels: int):
        self.max_bytes = max_bytes
        self.max_voxels = max_voxels
        self.remove_stale()
        self.root = Path(tempfile.mkdtemp(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-"))

    @staticmethod
    def remove_stale() -> list[str]:
        removed = []
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), UPLOAD_PREFIX + "*")):
            try:
                pid = int(os.path.basename(folder)[len(UPLOAD_PREFIX):].split("-")[0])
            except ValueError:
                continue
            if pid == os.getpid() or _alive(pid):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        if removed:
            logger.info("removed %d upload folder(s) of stopped servers", len(removed))
        return removed

    def owns(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real.startswith(os.path.realpath(self.root) + os.sep)

    def adopt_result(self, result: dict[str, Any]) -> dict[str, Any]:
        """Move an inference result file from the shared temp folder into the private one.

        The response names the file by its base name; a client on the same machine that saves it into the
        temp folder (``MONAILabelClient``'s default) would otherwise write the very path the server deletes
        after answering.
        """
        file = result.get("file")
        if isinstance(file, str) and os.path.isfile(file) and not self.owns(file):
            moved = str(self.root / os.path.basename(file))
            shutil.move(file, moved)
            result = {**result, "file": moved}
            if result.get("label") == file:
                result["label"] = moved
        return result

    @staticmethod
    def suffix(filename: str | None, default: str, what: str) -> str:
        name = os.path.basename(filename or "")
        if not name:
            return default
        lower = name.lower()
        for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
            if lower.endswith(suffix):
                return suffix
        shown = name if len(name) <= 60 else name[:28] + "..." + name[-28:]
        raise unsupported(f"{what} {shown!r} is not an image type this server accepts; expected one of "
                          f"{', '.join(IMAGE_SUFFIXES)}")

    def save(self, upload: UploadFile, what: str, default_suffix: str = ".nii.gz", image: bool = True) -> Path:
        """Copy an upload into the private folder and check its declared size (HTTP 413 over a limit)."""
        suffix = self.suffix(upload.filename, default_suffix, what) if image else default_suffix
        fd, tmp = tempfile.mkstemp(suffix=suffix, dir=self.root)
        path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                copied = 0
                while chunk := upload.file.read(1 << 20):
                    copied += len(chunk)
                    if copied > self.max_bytes:
                        raise too_large(f"{what} is larger than {self.max_bytes / 2**20:g} MiB (setting max_upload_mb)")
                    out.write(chunk)
            if image:
                try:
                    check_image_size(path, self.max_voxels, self.max_bytes, name=what)
                except LabelZooError as e:
                    status = 413 if "max_image_voxels" in str(e) or "max_upload_mb" in str(e) else 422
                    raise AppError(status, str(e)) from None
            return path
        except BaseException:
            path.unlink(missing_ok=True)
            raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(*paths: Path | str | None) -> None:
    for p in paths:
        if p:
            Path(p).unlink(missing_ok=True)


# ---- long work: off the event loop, and abandoned when the server stops ---------------------------------------------
#: set on SIGTERM / Ctrl-C: requests waiting on long work answer 503 so the server can stop at once
STOPPING = threading.Event()


async def run_detached(fn: Callable[[], Any], what: str = "request") -> Any:
    """Run ``fn`` in a daemon thread and wait for it without blocking the event loop.

    When the server is told to stop, the waiting request answers 503 at once; the thread is a daemon, so
    unfinished model work does not hold the process (MONAI Label's thread pools are joined at exit).
    """
    done = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the waiting request
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name=f"labelzoo-{what}", daemon=True).start()
    delay = 0.005
    while not done.is_set():
        if STOPPING.is_set():
            raise AppError(503, f"the server is stopping: {what} abandoned")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    if "error" in box:
        raise box["error"]
    return box.get("result")


# ---- inference: worker threads, bounded per model -----------------------------------------------------------------
class InferPool:
    """At most ``concurrency`` inferences per model at once, at most ``queue`` waiting; more get HTTP 429.

    The work runs in its own thread (:func:`run_detached`), never on the event loop.
    """

    def __init__(self, concurrency: int, queue: int):
        self.concurrency = max(1, int(concurrency))
        self.queue = max(0, int(queue))
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._running: dict[str, int] = {}

    def status(self) -> dict[str, dict[str, int]]:
        return {m: {"running": self._running.get(m, 0), "waiting": self._waiting.get(m, 0)} for m in self._sems}

    async def run(self, model: str, fn: Callable[[], Any]) -> Any:
        sem = self._sems.setdefault(model, asyncio.Semaphore(self.concurrency))
        if sem.locked() and self._waiting.get(model, 0) >= self.queue:
            raise too_many(f"model {model!r} is busy: {self.concurrency} inference(s) running and {self.queue} "
                           "waiting (settings infer_concurrency, infer_queue); try again shortly")
        self._waiting[model] = self._waiting.get(model, 0) + 1
        try:
            await sem.acquire()
        finally:
            self._waiting[model] -= 1
        self._running[model] = self._running.get(model, 0) + 1
        try:
            return await run_detached(fn, f"inference with {model}")
        finally:
            self._running[model] -= 1
            sem.release()


# ---- the routes --------------------------------------------------------------------------------------------------
def _params(text: Any, name: str = "params") -> dict[str, Any]:
    with as_http(unprocessable):
        return parse_json_object(text, name)


def _options(params: Any, schema: dict, what: str) -> dict[str, Any]:
    with as_http(unprocessable):
        return check_options(params, schema, what)


def _id(value: Any, what: str = "image id") -> str:
    with as_http():
        return check_id(value, what)


def identity(user: User | None, options: dict[str, Any]) -> str:
    """Who is asking: the signed-in user with auth on, else the ``annotator`` / ``client_id`` the client sends."""
    from labelzoo.annotators import ANONYMOUS

    if settings.MONAI_LABEL_AUTH_ENABLE and user is not None and user.username:
        return str(user.username)
    return str(options.get("annotator") or options.get("client_id") or ANONYMOUS)


def gateway_router(app: Any) -> APIRouter:
    """Routes in front of MONAI Label's for ``app`` (a :class:`LabelZooApp`)."""
    api = settings.MONAI_LABEL_API_STR
    router = APIRouter(prefix=api)
    uploads: Uploads = app.uploads
    pool: InferPool = app.infer_pool

    def datastore():
        return app.datastore()

    # -- inference ------------------------------------------------------------------------------------------------
    @router.post("/infer/{model}", summary=f"{RBAC_USER}Run Inference for supported model", tags=["Infer"])
    async def infer(background_tasks: BackgroundTasks, model: str, image: str = "", session_id: str = "",
                    params: str = Form("{}"), file: UploadFile = File(None),  # noqa: B008 (FastAPI form parts)
                    label: UploadFile = File(None), output: str | None = None, user: User = USER):  # noqa: B008
        from monailabel.endpoints.infer import send_response

        task = app._infers.get(model)
        if task is None:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(app._infers) or 'none'}")
        if output not in (None, "image", "json", "all", "dicom_seg"):
            raise unprocessable(f"parameter 'output' must be one of image, json, all, dicom_seg; got {output!r}")
        schema = getattr(task, "request_options", lambda: INFER_OPTIONS)()
        options = _options(_params(params), schema, f"inference with model {model!r}")
        saved: list[Path] = []
        try:
            request: dict[str, Any] = {"model": model}
            if file is not None:
                path = await run_in_threadpool(uploads.save, file, "uploaded image")
                saved.append(path)
                request["image"] = str(path)
            elif session_id:
                sessions = app.sessions()
                session = sessions.get_session(_id(session_id, "session id")) if sessions else None
                if session is None:
                    raise not_found(f"session {session_id!r} does not exist (or expired): "
                                    "create one with PUT /session/")
                request["image"] = session.image
                request["session"] = session.to_json()
            elif image:
                request["image"] = _id(image)
                app.leases.renew(request["image"], identity(user, options))
            else:
                raise bad_request("give an image id ('image'), an image file ('file') or a session ('session_id')")
            if label is not None:
                path = await run_in_threadpool(uploads.save, label, "uploaded label")
                saved.append(path)
                request["label"] = request["label_file"] = str(path)  # "label" may be an option (a label name)
            request.update(options)
            result = await pool.run(model, lambda: app.infer(request, trusted=True))
            if result is None:
                raise AppError(500, "inference returned nothing")
            result = uploads.adopt_result(result)
            if output == "dicom_seg":
                result = await run_in_threadpool(_dicom_seg, app, image, options, result)
            return send_response(datastore(), result, output, background_tasks)
        finally:
            background_tasks.add_task(_remove, *saved)

    @router.post("/batch/infer/{model}", summary=f"{RBAC_ADMIN}Run Batch Inference Task", tags=["Infer"])
    async def batch_infer(model: str, images: str = "all", params: dict | None = None, run_sync: bool = False,
                          user: User = ADMIN):
        from monailabel.endpoints import batch_infer as ml_batch

        if model not in app._infers:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(app._infers) or 'none'}")
        if images not in ("all", "unlabeled"):
            raise unprocessable(f"parameter 'images' must be 'all' or 'unlabeled', got {images!r}")
        options = _options(params, BATCH_OPTIONS, f"batch inference with model {model!r}")
        return await run_detached(lambda: ml_batch.run(model, images, options, bool(run_sync)), "batch inference")

    # -- training -------------------------------------------------------------------------------------------------
    def check_train(model: str, params: Any) -> dict[str, Any]:
        if model not in app._trainers:
            raise not_found(f"unknown model {model!r} to train; trainable: {', '.join(app._trainers) or 'none'}")
        options = _options(params, TRAIN_OPTIONS, f"training of model {model!r}")
        err = app.training_data_error(model)
        if err:
            raise unprocessable(err)
        return options

    @router.post("/train/{model}", summary=f"{RBAC_ADMIN} Run Training Task for specific model", tags=["Train"])
    async def train_model(model: str, params: dict | None = None, run_sync: bool = False, enqueue: bool = False,
                          user: User = ADMIN):
        from monailabel.endpoints import train as ml_train

        options = await run_in_threadpool(check_train, model, params)
        return await run_detached(lambda: ml_train.run_model(model, options, bool(run_sync), bool(enqueue)), "training")

    @router.post("/train/", summary=f"{RBAC_ADMIN}Run All Training Tasks", include_in_schema=False, tags=["Train"])
    async def train_all(params: dict | None = None, run_sync: bool = False, user: User = ADMIN):
        from monailabel.endpoints import train as ml_train

        params = params or {}
        if not isinstance(params, dict):
            raise unprocessable("params must be a JSON object of model name: options")
        unknown = sorted(set(params) - set(app._trainers))
        if unknown:
            raise not_found(f"unknown model(s) {unknown} to train; trainable: {', '.join(app._trainers) or 'none'}")
        checked = {m: await run_in_threadpool(check_train, m, params.get(m)) for m in app._trainers}
        result = {}
        for m, options in checked.items():
            res, detail = None, None
            try:
                res = await run_detached(lambda m=m, o=options: ml_train.run_model(m, o, bool(run_sync), True),
                                         "training")
            except AppError:
                raise
            except Exception as e:  # a model that cannot start is reported, the others still run
                detail = str(e)
            result[m] = {"result": res, "detail": detail}
        return result

    # -- active learning --------------------------------------------------------------------------------------------
    @router.post("/activelearning/{strategy}", summary=f"{RBAC_USER}Run Active Learning strategy to get next sample",
                 tags=["ActiveLearning"])
    async def next_sample(strategy: str, params: dict | None = None, user: User = USER):
        from monailabel.endpoints import activelearning as ml_al

        chosen = app._strategies.get(strategy)
        if chosen is None:
            raise not_found(f"unknown strategy {strategy!r}; available: {', '.join(app._strategies)}")
        schema = {**STRATEGY_OPTIONS, **getattr(chosen, "request_options", lambda: {})()}
        options = _options(params, schema, f"strategy {strategy!r}")
        options["annotator"] = identity(user, options)
        return await run_in_threadpool(ml_al.sample, strategy, options, options["annotator"])

    # -- scoring (the in-process worker) ------------------------------------------------------------------------------
    def worker_or_404(method: str | None):
        worker = app.scoring_worker
        if worker is None or (method is not None and method not in worker.methods):
            available = ", ".join(worker.methods) if worker is not None else "none (scoring is off)"
            raise not_found(f"unknown scoring method {method!r}; available: {available}")
        return worker

    @router.post("/scoring/", summary=f"{RBAC_ANNOTATOR}Run All Scoring Tasks (in-process worker)",
                 include_in_schema=False, tags=["Scoring"])
    async def run_all_scoring(params: dict | None = None, run_sync: bool = False, user: User = ANNOTATOR):
        with as_http(unprocessable):
            check_inert(params or {}, "params")
        worker = worker_or_404(None)
        runs = await run_detached(lambda: worker.run(None, bool(run_sync)), "scoring")
        return {m: {"result": r, "detail": None} for m, r in runs.items()}

    @router.post("/scoring/{method}", summary=f"{RBAC_ANNOTATOR}Run Scoring Task for specific method "
                 "(in-process worker)", tags=["Scoring"])
    async def run_scoring(method: str, params: dict | None = None, run_sync: bool = False, user: User = ANNOTATOR):
        with as_http(unprocessable):
            check_inert(params or {}, "params")
        worker = worker_or_404(method)
        runs = await run_detached(lambda: worker.run(method, bool(run_sync)), "scoring")
        return runs[method]

    # -- datastore ----------------------------------------------------------------------------------------------------
    @router.put("/datastore/image", summary=f"{RBAC_ANNOTATOR}Upload new Image", tags=["Datastore"])
    @router.put("/datastore/", summary=f"{RBAC_ANNOTATOR}Upload new Image", include_in_schema=False,
                tags=["Datastore"])
    async def add_image(image: str | None = None, params: str = Form("{}"),
                        file: UploadFile = File(...), user: User = ANNOTATOR):  # noqa: B008 (FastAPI form part)
        with as_http(unprocessable):
            info = check_info(parse_json_object(params, "params"), "params")
        suffix = uploads.suffix(file.filename, ".nii.gz", "uploaded image")
        image_id = _id(image if image else os.path.basename(file.filename or "")[: -len(suffix)])
        if user and user.username:
            info["user"] = user.username
        path = await run_in_threadpool(uploads.save, file, f"uploaded image {image_id!r}")
        try:
            image_id = await run_in_threadpool(datastore().add_image, image_id, str(path), info)
        finally:
            _remove(path)
        return {"image": image_id}

    @router.put("/datastore/label", summary=f"{RBAC_ANNOTATOR}Save Finished Label", tags=["Datastore"])
    async def save_label(image: str, params: str = Form("{}"), tag: str = DefaultLabelTag.FINAL.value,
                         label: UploadFile = File(...), user: User = ANNOTATOR):  # noqa: B008 (form part)
        with as_http(unprocessable):
            info = check_info(parse_json_object(params, "params"), "params")
            replace = as_bool(info.pop("replace", False), "replace")
        image = _id(image)
        tag = _id(tag or DefaultLabelTag.FINAL.value, "label tag")
        who = identity(user, info)
        info.pop("annotator", None)
        path = await run_in_threadpool(uploads.save, label, f"label for {image!r}")
        try:
            if tag == DefaultLabelTag.FINAL.value:
                saved = await run_in_threadpool(app.save_annotation, image, str(path), who, info, replace)
            else:
                info.setdefault("annotator", who)
                await run_in_threadpool(datastore().save_label, image, str(path), tag, info)
                saved = {"tag": tag}
        finally:
            _remove(path)
        res = app.on_save_label(image, image) or {}
        res.update({"image": image, "label": image, "annotator": who, **saved})
        return res

    @router.put("/datastore/image/info", summary=f"{RBAC_ANNOTATOR}Update Image Info", tags=["Datastore"])
    async def put_image_info(image: str, info: str = Form("{}"), user: User = ANNOTATOR):
        with as_http(unprocessable):
            clean = check_info(parse_json_object(info, "info"), "info")
        image = _id(image)
        if user and user.username:
            clean["user"] = user.username
        return await run_in_threadpool(datastore().update_image_info, image, clean)

    async def _label_info(label: str, tag: str, info: str, user: User):
        with as_http(unprocessable):
            clean = check_info(parse_json_object(info, "info"), "info")
        label, tag = _id(label), _id(tag, "label tag")
        if user and user.username:
            clean["user"] = user.username
        return await run_in_threadpool(datastore().update_label_info, label, tag, clean)

    @router.put("/datastore/label/info", summary=f"{RBAC_ANNOTATOR}Update Label Info", tags=["Datastore"])
    async def put_label_info(label: str, tag: str, info: str = Form("{}"), user: User = ANNOTATOR):
        return await _label_info(label, tag, info, user)

    @router.put("/datastore/updatelabelinfo", include_in_schema=False, tags=["Datastore"])
    async def update_label_info(label: str, tag: str, params: str = Form("{}"), user: User = ANNOTATOR):
        return await _label_info(label, tag, params, user)

    @router.get("/datastore/dataset", summary=f"{RBAC_ADMIN}Download full dataset as ZIP archive",
                tags=["Datastore"])
    async def download_dataset(background_tasks: BackgroundTasks, limit_cases: int | None = None,
                               user: User = ADMIN):
        store = datastore()
        if not store.datalist():
            raise not_found("the datastore has no labelled image to export")
        path = await run_in_threadpool(store.get_dataset_archive, limit_cases)
        background_tasks.add_task(_remove, path)  # MONAI Label leaves every archive in the temp folder
        return FileResponse(path, media_type="application/zip", filename="dataset.zip",
                            background=background_tasks)

    # -- weights ------------------------------------------------------------------------------------------------------
    def model_upload_allowed(model: str) -> None:
        if not app.allow_model_upload:
            raise forbidden("replacing or deleting model weights over HTTP is off on this server "
                            "(start it with --conf allow_model_upload=true to allow it)")
        if model not in app._infers and model not in app._trainers:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(app._infers) or 'none'}")

    @router.put("/model/{model}", summary=f"{RBAC_ADMIN}Upload/Update Model File", tags=["Model"])
    async def put_model(model: str, file: UploadFile, user: User = ADMIN):
        model_upload_allowed(model)
        path = await run_in_threadpool(uploads.save, file, f"weights for {model!r}", ".pt", False)
        try:
            return await run_in_threadpool(app.replace_weights, model, path)
        finally:
            _remove(path)

    @router.delete("/model/{model}", summary=f"{RBAC_ADMIN}Delete Model File", tags=["Model"])
    async def delete_model(model: str, user: User = ADMIN):
        model_upload_allowed(model)
        return await run_in_threadpool(app.delete_weights, model)

    # -- several annotators -------------------------------------------------------------------------------------------
    @router.get("/labelzoo/annotations", summary=f"{RBAC_USER}Who labelled an image, prior versions, leases",
                tags=["LabelZoo"])
    async def annotations(image: str, user: User = USER):
        return await run_in_threadpool(app.annotations, _id(image))

    @router.get("/labelzoo/version", summary=f"{RBAC_USER}Download a prior (replaced) version of a label",
                tags=["LabelZoo"])
    async def version(image: str, index: int, user: User = USER):
        versions = (await run_in_threadpool(app.annotations, _id(image)))["versions"]
        if not 0 <= index < len(versions):
            raise not_found(f"image {image!r} has {len(versions)} prior label version(s); no index {index}")
        path = os.path.join(app.studies, versions[index]["file"])
        if not os.path.isfile(path):
            raise not_found(f"prior version {index} of {image!r} is missing on disk")
        return FileResponse(path, media_type="application/gzip", filename=os.path.basename(path))

    @router.get("/labelzoo/leases", summary=f"{RBAC_USER}Images handed out to annotators now", tags=["LabelZoo"])
    async def leases(user: User = USER):
        now = time.time()
        images = list(app.datastore().list_images())
        return [le.as_dict(now) for i in images for le in app.leases.holders(i)]

    @router.post("/labelzoo/lease/{image}", summary=f"{RBAC_USER}Keep working on an image (renew or take the lease)",
                 tags=["LabelZoo"])
    async def renew_lease(image: str, annotator: str = "", user: User = USER):
        who = identity(user, {"annotator": annotator})
        image = _id(image)
        if image not in app.datastore().list_images():
            raise not_found(f"image {image!r} is not in the datastore")
        others = app.leases.held_by_other(image, who)
        if others and len(others) >= app.reads:
            raise AppError(409, f"image {image!r} is leased to {', '.join(others)}")
        return app.leases.acquire(image, who).as_dict(time.time())

    @router.get("/labelzoo/agreement", summary=f"{RBAC_USER}Annotators' counts, agreement per class, disputed images",
                tags=["LabelZoo"])
    async def agreement(threshold: float = 0.8, user: User = USER):
        from labelzoo.annotators import agreement_report

        if not 0.0 <= threshold <= 1.0:
            raise unprocessable(f"parameter 'threshold' must be in [0, 1], got {threshold}")
        return await run_in_threadpool(agreement_report, app.agreement_records(), threshold)

    @router.get("/labelzoo/agreement/plot", summary=f"{RBAC_USER}Agreement per class as a PNG plot",
                tags=["LabelZoo"])
    async def agreement_plot(background_tasks: BackgroundTasks, threshold: float = 0.8, user: User = USER):
        from labelzoo.annotators import agreement_report, plot_agreement

        report = await run_in_threadpool(agreement_report, app.agreement_records(), threshold)
        if not report["classes"]:
            raise not_found("no image has two or more reads yet: nothing to plot")
        path = uploads.root / f"agreement-{time.monotonic_ns()}.png"
        await run_in_threadpool(plot_agreement, report, str(path))
        background_tasks.add_task(_remove, path)
        return FileResponse(path, media_type="image/png", filename="agreement.png", background=background_tasks)

    @router.get("/labelzoo/limits", summary=f"{RBAC_USER}This server's limits and inference queue",
                tags=["LabelZoo"])
    async def limits(user: User = USER):
        return {"max_upload_mb": uploads.max_bytes / 2**20, "max_image_voxels": uploads.max_voxels,
                "infer_concurrency": pool.concurrency, "infer_queue": pool.queue, "infer": pool.status(),
                "allow_model_upload": app.allow_model_upload}

    return router


def _dicom_seg(app: Any, image: str, options: dict, result: dict) -> dict:
    from monailabel.datastore.dicom import DICOMWebDatastore
    from monailabel.datastore.utils.convert import nifti_to_dicom_seg

    store = app.datastore()
    if not isinstance(store, DICOMWebDatastore):
        raise unprocessable("output=dicom_seg needs a DICOMweb datastore")
    if options.get("label_info") is None:
        raise unprocessable("output=dicom_seg needs 'label_info' in params")
    image_uri = store.get_image_uri(image)
    base = next((image_uri[: -len(s)] for s in (".nii.gz", ".nii", ".nrrd") if image_uri.endswith(s)), image_uri)
    res_img = result.get("file") or result.get("label")
    result["dicom_seg"] = nifti_to_dicom_seg(base, res_img, options.get("label_info"), use_itk=True)
    return result


# ---- shutdown: a pending request does not keep the server alive -----------------------------------------------------
def chain_sigterm(on_term: Callable[[], None], grace_s: float = 6.0) -> None:
    """On SIGTERM/SIGINT: call ``on_term`` (wake waiters), then let uvicorn stop; after ``grace_s`` force it.

    uvicorn waits for open requests before it stops; a ``run_sync`` scoring request or a long inference would
    keep it alive for minutes. A second signal makes uvicorn exit without waiting: sent after ``grace_s``.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum, frame, _previous=previous):
            STOPPING.set()
            on_term()
            _previous(signum, frame)

            def force():
                time.sleep(grace_s)
                logger.warning("still running %.0f s after the stop signal: stopping without waiting", grace_s)
                _previous(signum, None)
                time.sleep(1.5)
                os._exit(0)

            threading.Thread(target=force, name="labelzoo-stop", daemon=True).start()

        signal.signal(sig, handler)


def prepend_routes(router: APIRouter) -> Any | None:
    """Put ``router``'s routes in front of MONAI Label's (the same paths answer here first).

    Returns:
        The running server's FastAPI app, or ``None`` outside a server (nothing installed).
    """
    server = sys.modules.get("monailabel.app")
    fastapi_app = getattr(server, "app", None)
    if fastapi_app is None:
        return None
    fastapi_app.router.routes[0:0] = router.routes
    fastapi_app.openapi_schema = None
    return fastapi_app


def install(app: Any) -> bool:
    """Put LabelZoo's routes in front of MONAI Label's and cap request bodies (only inside a running server)."""
    fastapi_app = prepend_routes(gateway_router(app))
    if fastapi_app is None:
        return False
    install_body_limit(fastapi_app, app.uploads.max_bytes)
    logger.info("LabelZoo routes installed: checked options, capped uploads (%g MiB), inference pool",
                app.uploads.max_bytes / 2**20)
    return True


__all__ = ["BodyLimit", "InferPool", "Uploads", "chain_sigterm", "install"]
