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
import tempfile
import time
from pathlib import Path
from typing import Any

from lib import strategies as region_al  # issue 14: region-aware scoring and strategies
from lib.datastore import LabelZooDatastore
from lib.errors import as_http, bad_request, not_found, unprocessable
from lib.infer import LabelZooInferTask
from lib.routes import install as install_routes
from lib.scoring import SERVED_KEY, DiceScoring, ScoreBoard, Scorer, ScoringWorker, TrainWatcher, UncertaintyScoring
from lib.strategies import FirstStrategy, HybridStrategy, RandomStrategy, UncertaintyStrategy
from lib.train import LabelZooTrainTask
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.others.generic import name_to_device

import labelzoo
from labelzoo.appconf import APP_CONF, check_conf, conf_bool, conf_number, conf_value, parse_conf
from labelzoo.discovery import BundleInfo, find_bundles, read_bundle_info, select_bundles
from labelzoo.errors import LabelZooError
from labelzoo.paths import bundles_dir
from labelzoo.validation import check_id, geometry_error, read_shape

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
        selected = select_bundles(found, conf_value(conf, "models"))
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
                                                             "strategy_k", "hybrid_alpha", "scoring_interval")}
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
        inferable = [n for n, b in self.bundles.items() if b.has_infer]
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
        return strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return dict(self._scoring_parts()["methods"])

    # ---- lifecycle --------------------------------------------------------------------------------------
    def on_init_complete(self) -> None:
        super().on_init_complete()
        worker = self._scoring_parts()["worker"]
        if worker is not None:
            install_routes(worker)
            worker.start()
            worker.wake()
        self._watcher = TrainWatcher(self._trainers)
        self._watcher.start()

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
                            "multilabel": b.multilabel, "version": b.version} for n, b in self.bundles.items()},
        }
        return meta

    # ---- checked requests -------------------------------------------------------------------------------
    def _allowed_path(self, path: str) -> bool:
        """Absolute files the server itself wrote: uploads (temp folder) and sessions."""
        roots = [tempfile.gettempdir()]
        sessions = self.sessions()
        if sessions is not None and getattr(sessions, "store_path", None):
            roots.append(sessions.store_path)
        real = os.path.realpath(path)
        return any(real.startswith(os.path.realpath(r) + os.sep) for r in roots)

    def infer(self, request, datastore=None):
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(self._infers) or 'none'}")
        image = request.get("image")
        if isinstance(image, str):
            datastore = datastore or self.datastore()
            if os.path.isabs(image) and os.path.exists(image) and self._allowed_path(image):
                path, name = image, "uploaded image"
            else:
                with as_http():
                    check_id(image)
                path, name = datastore.get_image_uri(image), f"image {image!r}"
                if not path or not os.path.exists(path):
                    raise not_found(f"image {image!r} is not in the datastore")
                if self.save_original:
                    request = copy.deepcopy(request)
                    request.setdefault("save_label", True)
                    request.setdefault("label_tag", DefaultLabelTag.ORIGINAL.value)
            if os.path.isfile(path):
                with as_http(unprocessable):
                    shape = read_shape(path)
                info = self.bundles[model]
                err = geometry_error(shape, info.spatial_dims, info.channels, name=name, model=f"model {model!r}")
                if err:
                    raise unprocessable(err)
        return super().infer(request, datastore)

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise not_found(f"unknown strategy {strategy!r}; available: {', '.join(self._strategies)}")
        if request.get("label_tag") is not None:
            with as_http():
                check_id(request["label_tag"], "label tag")
        res = super().next_sample(request)
        if res and res.get("id"):
            self.datastore().update_image_info(res["id"], {SERVED_KEY: time.time()})
        return res

    def train(self, request):
        model = request.get("model")
        if model not in self._trainers:
            raise bad_request(f"unknown model {model!r} to train; trainable: {', '.join(self._trainers) or 'none'}")
        return super().train(request)
