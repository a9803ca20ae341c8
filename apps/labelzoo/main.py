"""The LabelZoo MONAI Label app: every bundle served offline, with active learning that ranks.

Started by ``labelzoo serve`` (or ``monailabel start_server --app apps/labelzoo --studies DIR``).
It never downloads anything: no SAM2, no model-zoo list, no weights. Every bundle under
``bundles/`` (plus the folders named by ``--conf bundles=...``) gets an infer task and a train task,
trained or not; the strategies rank on scores a background worker keeps up to date. The REST API
is MONAI Label 0.8.5's, so its Slicer plugin, OHIF and ``MONAILabelClient`` work unchanged.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lib import strategies as region_al  # region-aware scoring and strategies
from lib.datastore import POOL_EXCLUDE, LabelZooDatastore, remove_stale_temp_files
from lib.errors import as_http, bad_request, not_found, unprocessable
from lib.infer import LabelZooInferTask
from lib.interactive import check_prompts
from lib.routes import InferPool, Uploads, chain_sigterm
from lib.routes import install as install_routes
from lib.scoring import SERVED_KEY, DiceScoring, ScoreBoard, Scorer, ScoringWorker, TrainWatcher, UncertaintyScoring
from lib.strategies import FirstStrategy, HybridStrategy, RandomStrategy, UncertaintyStrategy
from lib.train import LabelZooTrainTask
from lib.zoo_routes import install as install_zoo_routes
from lib.zoo_routes import registry_sync, weights_info
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.others.generic import name_to_device

import labelzoo
from labelzoo.annotators import ANONYMOUS, READ_PREFIX, LeaseBook
from labelzoo.appconf import APP_CONF, check_conf, conf_bool, conf_number, conf_value, parse_conf
from labelzoo.discovery import BundleInfo, find_bundles, read_bundle_info
from labelzoo.errors import LabelZooError
from labelzoo.paths import bundles_dir
from labelzoo.validation import check_id, check_image_size, geometry_error, read_shape
from labelzoo.zoo.cache import served_bundles

logger = logging.getLogger(__name__)


def _bundle_dirs(extra: str) -> list[Path]:
    dirs = []
    try:
        repo = bundles_dir()
        if repo.is_dir():
            dirs.append(repo)
    except LabelZooError as e:
        logger.warning("no repository bundles folder: %s", e)
    dirs += [Path(p.strip()).expanduser() for p in extra.split(",") if p.strip()]
    return dirs


class LabelZooApp(MONAILabelApp):
    """MONAI Label app over every bundle in ``bundles/`` and the ``--conf bundles`` folders."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        conf = check_conf({**{k: v.default for k, v in APP_CONF.items()}, **parse_conf(conf or {})})
        self.device = conf_value(conf, "device").strip().lower()
        if self.device not in ("auto", "cpu", "cuda"):
            raise LabelZooError(f"--conf device must be auto, cpu or cuda, got {self.device!r}")
        found = find_bundles(_bundle_dirs(conf_value(conf, "bundles")))
        # zoo bundles (models=NAME@VERSION with zoo=URL) are pulled into the cache first (labelzoo.zoo.cache)
        selected, self.zoo_bundles = served_bundles(found, conf_value(conf, "models"), conf_value(conf, "zoo"),
                                                    conf_value(conf, "zoo_cache"))
        self.bundles: dict[str, BundleInfo] = {n: read_bundle_info(p, n) for n, p in selected.items()}
        scoring_model = conf_value(conf, "scoring_model").strip()
        inferable = [n for n, b in self.bundles.items() if b.has_infer]
        if scoring_model and scoring_model not in inferable:
            raise LabelZooError(f"--conf scoring_model {scoring_model!r} is not a served bundle with inference; "
                                f"served: {', '.join(inferable) or 'none'}")
        self.scoring_model = scoring_model or None  # default chosen from the studies in _scoring_parts
        self.skip_scoring = conf_bool(conf, "skip_scoring")
        self.skip_trainers = conf_bool(conf, "skip_trainers")
        self.save_original = conf_bool(conf, "save_original")
        self._scoring: dict[str, Any] | None = None
        self._watcher: TrainWatcher | None = None
        self._numbers = {k: conf_number(conf, k) for k in ("epistemic_samples", "epistemic_dropout", "tta_samples",
                                                             "strategy_k", "hybrid_alpha", "scoring_interval",
                                                             "max_upload_mb", "max_image_voxels", "infer_concurrency",
                                                             "infer_queue")}
        self.allow_model_upload = conf_bool(conf, "allow_model_upload")
        self.max_upload_bytes = int(self._numbers["max_upload_mb"]) * 2**20
        self.max_image_voxels = int(self._numbers["max_image_voxels"])
        self.uploads: Uploads | None = None  # made in the server process (on_init_complete), not in task processes
        self.infer_pool = InferPool(self._numbers["infer_concurrency"], self._numbers["infer_queue"])
        self.reads = int(conf_number(conf, "reads_per_image"))
        self.leases = LeaseBook(idle_s=60.0 * float(conf_number(conf, "lease_minutes")))
        self.consensus_method = conf_value(conf, "consensus").strip().lower()
        if self.consensus_method not in ("majority", "staple"):
            raise LabelZooError(f"--conf consensus must be majority or staple, got {self.consensus_method!r}")
        self._sample_lock = threading.Lock()
        logger.info("LabelZoo bundles: %s", {n: str(b.path) for n, b in self.bundles.items()})
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="LabelZoo",
            description="LabelZoo: MONAI bundles for medical image segmentation, with active learning",
            version=labelzoo.__version__,
        )

    # ---- tasks -----------------------------------------------------------------------------------------
    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        logger.info("Init Datastore for: %s", self.studies)
        # A task subprocess (training, stock scoring) must not rewrite datastore_v2.json from its start-up
        # snapshot while the server updates it: it skips the reconcile pass when the server already wrote it.
        in_task_process = "monailabel.app" not in sys.modules
        config_exists = os.path.exists(os.path.join(self.studies, "datastore_v2.json"))
        return LabelZooDatastore(
            self.studies,
            geometries=[(n, b.spatial_dims, b.channels) for n, b in self.bundles.items() if b.has_infer],
            label_values=[(n, b.spatial_dims, b.channels, frozenset(b.labels.values()))
                          for n, b in self.bundles.items() if b.has_train and b.labels],
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY or (in_task_process and config_exists),
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, info in self.bundles.items():
            if info.has_infer:
                infers[name] = LabelZooInferTask(info, self.conf, self.device)
                logger.info("+++ infer %s (%s)", name, "trained" if info.weights else "untrained: random weights")
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if self.skip_trainers:
            return {}
        return {n: LabelZooTrainTask(b, self.conf, self.device) for n, b in self.bundles.items() if b.has_train}

    def _default_scoring_model(self) -> str | None:
        """The first served bundle whose input fits the studies' first image (else the first served bundle).

        With ``models=all`` the CT demo studies are served next to 4-channel MRI and 2D bundles: scoring
        must rank with a model that can read the images.
        """
        # interactive (prompted) bundles last: scoring ranks with a segmentation model when there is one
        inferable = sorted((n for n, b in self.bundles.items() if b.has_infer),
                           key=lambda n: self.bundles[n].guidance_channels > 0)
        try:
            images = sorted(self._datastore.list_images())
            path = self._datastore.get_image_uri(images[0]) if images else ""
            shape = read_shape(path) if path and os.path.exists(path) else None
        except (LabelZooError, OSError, ValueError) as e:
            logger.warning("cannot read the first image to choose the scoring model: %s", e)
            shape = None
        if shape is not None:
            for name in inferable:
                info = self.bundles[name]
                if geometry_error(shape, info.spatial_dims, info.channels) is None:
                    return name
        return inferable[0] if inferable else None

    def _scoring_parts(self) -> dict[str, Any]:
        """Score board, worker and scoring methods, built once (strategies and scoring methods share them)."""
        if self._scoring is None:
            parts: dict[str, Any] = {"board": None, "worker": None, "methods": {}}
            methods: dict[str, Any] = {}
            self.scoring_model = self.scoring_model or self._default_scoring_model()
            task = self._infers.get(self.scoring_model) if self.scoring_model else None
            if task is not None:
                board = ScoreBoard(self.scoring_model, task.weights_version)
                device = name_to_device(None if self.device == "auto" else self.device)
                scorer = Scorer(task, device, samples=self._numbers["epistemic_samples"],
                                dropout=self._numbers["epistemic_dropout"], tta_samples=self._numbers["tta_samples"])
                parts["board"] = board
                if not self.skip_scoring:
                    methods["epistemic"] = UncertaintyScoring(
                        "epistemic", scorer, board,
                        f"Monte-Carlo dropout: mean voxel entropy of {scorer.samples} samples ({self.scoring_model})")
                    methods["tta"] = UncertaintyScoring(
                        "tta", scorer, board,
                        f"Test-time augmentation: prediction variance over {scorer.tta_samples} flips / rot90 / "
                        f"intensity changes ({self.scoring_model})")
                    methods["boundary"] = region_al.BoundaryScoring(scorer, board)
            if not self.skip_scoring:
                methods["dice"] = DiceScoring()
                version = task.weights_version if task is not None else (lambda: "none")
                parts["worker"] = ScoringWorker(self.datastore, methods, version, self._numbers["scoring_interval"])
            parts["methods"] = methods
            self._scoring = parts
        return self._scoring

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {"random": RandomStrategy(), "first": FirstStrategy()}
        parts = self._scoring_parts()
        board, worker, k = parts["board"], parts["worker"], self._numbers["strategy_k"]
        if board is not None and worker is not None:
            strategies["epistemic"] = UncertaintyStrategy(
                "epistemic", "Most uncertain under Monte-Carlo dropout (top k, least recently served first)",
                "epistemic", board, worker, k)
            strategies["tta"] = UncertaintyStrategy(
                "tta", "Largest disagreement across test-time augmentations (top k, least recently served first)",
                "tta", board, worker, k)
            strategies["hybrid"] = HybridStrategy(board, worker, self._numbers["hybrid_alpha"])
            strategies["fg_random"] = region_al.ForegroundRandomStrategy(board)
            strategies["boundary"] = region_al.PowerBoundaryStrategy(board, worker)
            strategies["clasp"] = region_al.ClassStratifiedStrategy(board, worker)
            if self.bundles[board.model].spatial_dims == 3:  # slice-level queries need volumes
                strategies["boundary_slices"] = region_al.SliceStrategy(board, worker)
        if {b.spatial_dims for b in self.bundles.values()} == {3}:
            strategies["random_slices"] = region_al.RandomSliceStrategy(3)
        return strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return dict(self._scoring_parts()["methods"])

    # ---- lifecycle --------------------------------------------------------------------------------------
    @property
    def scoring_worker(self) -> ScoringWorker | None:
        return self._scoring_parts()["worker"]

    def on_init_complete(self) -> None:
        super().on_init_complete()
        # a server killed mid-write (kill -9) leaves temp files: they are never valid data
        if not self.studies.startswith(("http://", "https://")):
            remove_stale_temp_files(self.studies)
        for info in self.bundles.values():
            remove_stale_temp_files(info.path / "models", max_depth=0)
        self.uploads = Uploads(self.max_upload_bytes, self.max_image_voxels)
        install_routes(self)
        install_zoo_routes(self)  # weights versions, rollback, release (lib/zoo_routes.py)
        worker = self.scoring_worker
        if worker is not None:
            worker.start()
            worker.wake()
        self._watcher = TrainWatcher(self._trainers)
        self._watcher.start()
        chain_sigterm(self.on_stop_signal)

    def on_stop_signal(self) -> None:
        """SIGTERM / Ctrl-C: stop background work so pending requests end and the server exits promptly."""
        logger.info("stop signal: stopping the scoring worker")
        worker = self._scoring.get("worker") if self._scoring else None
        if worker is not None:
            worker.stop()
        if self._watcher is not None:
            self._watcher.stop()

    def async_scoring(self, method, params=None):
        """Wake the in-process scoring worker (MONAI Label would spawn a subprocess per method)."""
        worker = self._scoring_parts()["worker"] if self._server_mode else None
        if worker is not None:
            worker.wake([method] if method else None)
        return {}

    def on_save_label(self, image_id, label_id):
        self.async_scoring(None)
        return {}

    def bundle_path(self, model):
        if model and model not in self._trainers and model not in self._infers:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(self._infers) or 'none'}")
        return super().bundle_path(model)

    def info(self):
        meta = super().info()
        meta["labelzoo"] = {
            "version": labelzoo.__version__,
            "scoring_model": self.scoring_model,
            "bundles": {n: {"trained": b.weights is not None, "spatial_dims": b.spatial_dims, "channels": b.channels,
                            "multilabel": b.multilabel, "version": b.version, **self._zoo_info(n),
                            **weights_info(b.path)}
                        for n, b in self.bundles.items()},
        }
        return meta

    def _zoo_info(self, name: str) -> dict[str, Any]:
        """Where a served bundle came from: ``{"source": "zoo", "zoo": URL, ...}`` or ``{"source": "local"}``."""
        zb = self.zoo_bundles.get(name)
        if zb is None:
            return {"source": "local"}
        return {"source": "zoo", "zoo": zb.zoo, "zoo_ref": zb.ref, "checksum": zb.checksum, "offline": zb.offline}

    # ---- checked requests -------------------------------------------------------------------------------
    def _allowed_path(self, path: str) -> bool:
        """Absolute files the server itself wrote for a request: this server's uploads and sessions."""
        roots = [str(self.uploads.root)] if self.uploads is not None else []
        sessions = self.sessions()
        if sessions is not None and getattr(sessions, "store_path", None):
            roots.append(sessions.store_path)
        real = os.path.realpath(path)
        return any(real.startswith(os.path.realpath(r) + os.sep) for r in roots)

    def infer(self, request, datastore=None, trusted: bool = False):
        """Inference on a datastore image (by id); ``trusted`` (LabelZoo's own routes only) also allows the
        server's upload and session files. Any other path is refused: clients name images by id."""
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(self._infers) or 'none'}")
        image = request.get("image")
        if image is not None and not isinstance(image, str):
            raise unprocessable(f"parameter 'image' must be an image id (text), got {type(image).__name__}")
        if isinstance(image, str):
            datastore = datastore or self.datastore()
            if trusted and os.path.isabs(image) and os.path.exists(image) and self._allowed_path(image):
                path, name = image, "uploaded image"
            else:
                with as_http():
                    check_id(image)
                path, name = datastore.get_image_uri(image), f"image {image!r}"
                if not path or not os.path.exists(path):
                    raise not_found(f"image {image!r} is not in the datastore")
                if self.save_original and not request.get("result_region"):  # a region answer is not saved
                    request = copy.deepcopy(request)
                    request.setdefault("save_label", True)
                    request.setdefault("label_tag", DefaultLabelTag.ORIGINAL.value)
            if os.path.isfile(path):
                with as_http(unprocessable):
                    check_image_size(path, self.max_image_voxels, self.max_upload_bytes, name=name)
                    shape = read_shape(path)
                info = self.bundles[model]
                err = geometry_error(shape, info.spatial_dims, info.channels, name=name, model=f"model {model!r}")
                if err:
                    raise unprocessable(err)
                if info.guidance_channels:  # interactive: prompts checked before any work (422 on bad values)
                    check_prompts(request, info, shape)
        return super().infer(request, datastore)

    def readers(self) -> dict[str, set[str]]:
        """Image id -> annotators who saved a label of it (their reads, or the final label's author)."""
        out: dict[str, set[str]] = {}
        store = self.datastore()
        if not hasattr(store, "label_records"):  # a DICOMweb PACS: labels are DICOM SEG series there
            return out
        for image_id, labels in store.label_records().items():
            for tag, info in labels.items():
                if tag.startswith(READ_PREFIX) or (tag == "final" and self.reads <= 1):
                    who = (info or {}).get("annotator")
                    if who:
                        out.setdefault(image_id, set()).add(who)
        return out

    def next_sample(self, request):
        """The strategy's choice among images this annotator may take now; the image is then leased to them."""
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise not_found(f"unknown strategy {strategy!r}; available: {', '.join(self._strategies)}")
        if request.get("label_tag") is not None:
            with as_http():
                check_id(request["label_tag"], "label tag")
        annotator = request.get("annotator") or ANONYMOUS
        with self._sample_lock:
            done = self.readers()
            exclude = self.leases.unavailable(annotator, self.reads, done)
            if self.reads > 1:
                exclude |= {image for image, who in done.items() if annotator in who}
            token = POOL_EXCLUDE.set(frozenset(exclude))
            try:
                res = super().next_sample(request)
            finally:
                POOL_EXCLUDE.reset(token)
            if res and res.get("id"):
                lease = self.leases.acquire(res["id"], annotator, strategy)
                res["lease"] = lease.as_dict(time.time())
        if res and res.get("id"):
            self.datastore().update_image_info(res["id"], {SERVED_KEY: time.time()})
        return res

    def save_annotation(self, image_id: str, path: str, annotator: str, info: dict[str, Any],
                        replace: bool = False) -> dict[str, Any]:
        """An annotator's final label: who, when, how long, from which suggestion and strategy (see the datastore)."""
        store = self.datastore()
        if not hasattr(store, "save_annotation"):  # a DICOMweb PACS stores a DICOM SEG per save, nothing is replaced
            store.save_label(image_id, path, "final", {**info, "annotator": annotator})
            self.leases.release(image_id, annotator)
            return {"tag": "final"}
        lease = self.leases.last(image_id, annotator)  # the lease, or the last one (expired) this annotator had
        info = dict(info)
        if lease is not None:
            info.setdefault("seconds", round(time.time() - lease.start, 1))
            info.setdefault("strategy", lease.strategy)
        original = store.label_records().get(image_id, {}).get("original") or {}
        params = original.get("params") or {}
        if isinstance(params, dict) and params.get("model_version"):
            info.setdefault("model", original.get("model"))
            info.setdefault("model_version", params.get("model_version"))
        result = store.save_annotation(image_id, path, annotator, info, reads=self.reads, replace=replace,
                                       consensus_method=self.consensus_method)
        self.leases.release(image_id, annotator)
        return result

    def agreement_records(self) -> dict[str, dict[str, Any]]:
        """Image id -> its agreement record (images with at least two reads), for the report."""
        store = self.datastore()
        out = {}
        for image_id in store.list_images():
            record = (store.get_image_info(image_id) or {}).get("agreement")
            if record:
                out[image_id] = record
        return out

    def annotations(self, image_id: str) -> dict[str, Any]:
        """Who labelled ``image_id`` (each tag's annotator and time), prior versions, leases, agreement."""
        store = self.datastore()
        info = store.get_image_info(image_id)
        if not info:
            raise not_found(f"image {image_id!r} is not in the datastore")
        records = store.label_records().get(image_id, {}) if hasattr(store, "label_records") else {}
        labels = {tag: {k: v.get(k) for k in ("annotator", "ts", "seconds", "model_version", "strategy")}
                  for tag, v in records.items()}
        now = time.time()
        return {"image": image_id, "reads_per_image": self.reads, "labels": labels,
                "versions": info.get("label_versions", []), "agreement": info.get("agreement"),
                "leases": [le.as_dict(now) for le in self.leases.holders(image_id)]}

    def train(self, request):
        model = request.get("model")
        if model not in self._trainers:
            raise bad_request(f"unknown model {model!r} to train; trainable: {', '.join(self._trainers) or 'none'}")
        return super().train(request)

    def training_data_error(self, model: str) -> str | None:
        """Why ``model`` cannot train on the datastore's labelled images (``None`` when at least one fits)."""
        info = self.bundles[model]
        datalist = self.datastore().datalist()
        if not datalist:
            return f"no labelled image to train model {model!r} on: submit a label first"
        for item in datalist:
            try:
                shape = read_shape(item["image"])
            except (LabelZooError, OSError, KeyError):
                continue
            if geometry_error(shape, info.spatial_dims, info.channels) is None:
                return None
        plural = "s" if info.channels != 1 else ""
        return (f"no labelled image fits model {model!r} (needs {info.channels} channel{plural}, "
                f"{info.spatial_dims}D); {len(datalist)} labelled image(s) of other geometry")

    # ---- weights (PUT/DELETE /model/<name>, only with allow_model_upload) ----------------------------------------
    def replace_weights(self, model: str, path: str | os.PathLike) -> dict[str, Any]:
        """Install uploaded weights for ``model`` after checking they load into its network (strict)."""
        import torch
        from lib.infer import check_state_dict

        info = self.bundles[model]
        task = self._infers.get(model)
        if task is None:
            raise unprocessable(f"model {model!r} has no inference config to check the weights against")
        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # any loader error: not a weights file
            raise unprocessable(f"the uploaded file is not a PyTorch weights file ({type(e).__name__}: {e})") from None
        with as_http(unprocessable):
            check_state_dict(task, checkpoint)
        dest = info.path / "models" / "model.pt"
        from labelzoo.io import replace_file_atomic

        replace_file_atomic(path, dest)
        logger.info("weights of %s replaced by an upload", model)
        registry_sync(info.path, "upload")
        st = dest.stat()
        return {"model": model, "weights": "models/model.pt", "size": st.st_size, "modified_time": int(st.st_mtime)}

    def delete_weights(self, model: str) -> dict[str, Any]:
        """Move ``model``'s weights aside (``model.pt.<time>.deleted``); it serves random weights until trained."""
        dest = self.bundles[model].path / "models" / "model.pt"
        if not dest.exists():
            raise not_found(f"model {model!r} has no weights to delete")
        os.replace(dest, f"{dest}.{time.strftime('%Y%m%d_%H%M%S')}.deleted")
        return {}
