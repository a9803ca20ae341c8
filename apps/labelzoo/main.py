"""The LabelZoo MONAI Label app: serves LabelZoo's bundles offline.

Started by ``labelzoo serve`` (or ``monailabel start_server --app apps/labelzoo --studies DIR``).
It never downloads anything: no SAM2, no model-zoo list, no weights.
"""

from __future__ import annotations

import logging

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import labelzoo
from labelzoo.appconf import APP_CONF, parse_conf

logger = logging.getLogger(__name__)


class LabelZooApp(MONAILabelApp):
    """MONAI Label app over every bundle in ``bundles/``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        conf = {**{k: v.default for k, v in APP_CONF.items()}, **parse_conf(conf or {})}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="LabelZoo",
            description="LabelZoo: MONAI bundles for medical image segmentation, with active learning",
            version=labelzoo.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        return {}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {}

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {}

