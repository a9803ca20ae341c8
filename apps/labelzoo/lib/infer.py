"""Bundle inference that keeps untrained bundles and gives the scoring worker raw probabilities.

MONAI Label's ``BundleInferTask`` silently drops a bundle without ``models/model.pt``; here such a
bundle is served with randomly initialised weights and ``/info/`` says ``"trained": false`` until
training writes the weights (then they are picked up on the next request). Config parsing is
guarded by a lock, because the scoring worker thread shares the task with request handlers.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import sys
import threading
from typing import Any

import torch
from monai.transforms import SaveImaged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.tasks.infer.bundle import BundleConstants, BundleInferTask
from monailabel.utils.others.class_utils import unload_module

from labelzoo.discovery import BundleInfo
from labelzoo.zoo import registry

logger = logging.getLogger(__name__)


def weights_version(info: BundleInfo) -> str:
    """A string that changes whenever the bundle's weights file changes (``"untrained"`` without one)."""
    path = info.weights
    if path is None:
        return "untrained"
    st = path.stat()
    return f"{st.st_mtime_ns}-{st.st_size}"


def check_state_dict(task: LabelZooInferTask, checkpoint: Any) -> None:
    """Raise :class:`LabelZooError` unless ``checkpoint`` loads strictly into ``task``'s network.

    Accepts a state dict, or a dict holding one under ``"model"`` (MONAI's ``CheckpointSaver`` layout).
    """
    from labelzoo.errors import LabelZooError

    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LabelZooError("the uploaded file is not a state dict (a mapping of parameter names to tensors, "
                            "optionally under 'model')")
    with task._parse_lock:
        network = task.bundle_config.get_parsed_content(task.const.key_network_def(), instantiate=True)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:3]
        raise LabelZooError(f"the uploaded weights do not fit the network of {task.bundle_info.name}: "
                            + " ".join(first)[:600]) from None


class LabelZooInferTask(BundleInferTask):
    """Inference for one bundle, trained or not.

    Args:
        info: the bundle, from :func:`labelzoo.discovery.read_bundle_info`.
        conf: the app's ``--conf`` values.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``: the default device offered to clients.
    """

    def __init__(self, info: BundleInfo, conf: dict[str, str], device: str = "auto"):
        self.valid = False
        self.const = BundleConstants()
        self.pre_filter = None
        self.post_filter = [SaveImaged]
        self.extend_load_image = True
        self.dropout = 0.0
        self.bundle_info = info
        self._parse_lock = threading.RLock()
        path = str(info.path)

        config_paths = [c for c in self.const.configs() if os.path.exists(os.path.join(path, "configs", c))]
        if not config_paths:
            raise ValueError(f"bundle {info.name} ({path}) has no configs/inference.json")
        self.bundle_path = path
        self.bundle_config_path = os.path.join(path, "configs", config_paths[0])
        sys.path.insert(0, path)
        unload_module("scripts")
        try:
            self.bundle_config = self._load_bundle_config(self.bundle_path, self.bundle_config_path)
            self.bundle_config.config["use_click"] = info.guidance_channels > 0
            torchscript = os.path.join(path, "models", self.const.model_torchscript())
            pytorch = os.path.join(path, "models", self.const.model_pytorch())
            if os.path.exists(torchscript) and not os.path.exists(pytorch):
                network, model_path = None, torchscript
            else:
                # model.pt may not exist yet: the network starts from random weights until training writes it
                network = self.bundle_config.get_parsed_content(self.const.key_network_def(), instantiate=True)
                model_path = pytorch
        finally:
            sys.path.remove(path)
        self.key_image, self.key_pred = "image", "pred"
        self.add_post_restore = True
        BasicInferTask.__init__(
            self,
            path=model_path,
            network=network,
            # interactive bundles are MONAI Label DeepEdit models (labels include background, as MONAI Label's own)
            type=InferType.DEEPEDIT if info.guidance_channels else InferType.SEGMENTATION,
            labels={**info.labels, "background": 0} if info.guidance_channels else dict(info.labels),
            dimension=info.spatial_dims,
            description=info.description,
            preload=False,
            load_strict=False,
            config={"device": [device]} if device in ("cpu", "cuda") else None,
        )
        pytorch_models = sorted((os.path.basename(p) for p in glob.glob(os.path.join(path, "models", "*.pt"))), key=len)
        if pytorch_models:
            self._config.update({"model_filename": pytorch_models})
        self.valid = True
        self.version = info.version

    def __call__(self, request, callbacks=None):
        """MONAI Label's inference; the result params also name the weights that made it (``model_version``)."""
        result_file, result_json = super().__call__(request, callbacks)
        if isinstance(result_json, dict):
            result_json["model_version"] = self.weights_version()
            result_json["bundle_version"] = self.bundle_info.version
            result_json["weights_id"] = registry.active_id(self.bundle_info.path)  # labelzoo.zoo.registry id
        return result_file, result_json

    # ---- what clients see -------------------------------------------------------------------------
    @property
    def trained(self) -> bool:
        return self.bundle_info.weights is not None

    def weights_version(self) -> str:
        return weights_version(self.bundle_info)

    def info(self) -> dict[str, Any]:
        i = super().info()
        i.update({
            "trained": self.trained,
            "weights": "models/" + self.bundle_info.weights.name if self.trained else None,
            "bundle": self.bundle_info.name,
            "channels": self.bundle_info.channels,
            "multilabel": self.bundle_info.multilabel,
        })
        if not self.trained:
            i["description"] = f"{self.description} [untrained: random weights until it is trained]".strip()
        return i

    def run_pre_transforms(self, data, transforms):
        """Interactive bundles: the prompt-independent preprocessing runs once per image (see PreprocessCache)."""
        if not self.bundle_info.guidance_channels:
            return super().run_pre_transforms(data, transforms)
        from lib.interactive import PreprocessCache

        if getattr(self, "_pre_cache", None) is None:
            self._pre_cache = PreprocessCache()
        prefix, rest = PreprocessCache.split(transforms)
        data = self._pre_cache.run(data, prefix, lambda d, ts: super(LabelZooInferTask, self).run_pre_transforms(d, ts))
        return super().run_pre_transforms(data, rest)

    def request_options(self) -> dict[str, Any]:
        """The option schema of this model's requests (interactive bundles add their prompts)."""
        from lib.interactive import prompt_options

        return prompt_options(self.bundle_info)

    # ---- config parsing is not thread-safe: one at a time ------------------------------------------
    def pre_transforms(self, data=None):
        with self._parse_lock:
            return super().pre_transforms(data)

    def inferer(self, data=None):
        with self._parse_lock:
            return super().inferer(data)

    def post_transforms(self, data=None):
        with self._parse_lock:
            post = super().post_transforms(data)
        if self.bundle_info.guidance_channels:  # interactive: an answer may be the prompt region only
            from lib.interactive import region_restored

            post = region_restored(post)
        return post

    def _get_network(self, device, data):
        with self._parse_lock:
            try:
                return super()._get_network(device, data)
            except (RuntimeError, EOFError, OSError) as e:
                # weights being rewritten by a training run right now: keep serving the previous ones
                cached = self._networks.get(device)
                if cached is None:
                    raise
                logger.warning("%s: cannot load new weights yet (%s); using the previous ones", self.bundle_path, e)
                return cached[0]

    # ---- raw outputs for scoring ------------------------------------------------------------------
    def preprocess(self, image: str, device: str) -> torch.Tensor:
        """The bundle's preprocessing of ``image`` (a file path): the network input ``[C, *spatial]``."""
        data = {"image": image, "image_path": image, "device": device}
        data = self.run_pre_transforms(data, self.pre_transforms(data))
        return torch.as_tensor(data[self.input_key])

    def scoring_network(self, device: str, dropout: float) -> tuple[torch.nn.Module, int]:
        """A private copy of the network in eval mode with its dropout layers active at rate ``dropout``.

        Norm layers stay in eval mode (MONAI Label's ``train_mode`` flips the whole network, which
        also changes batch-norm statistics). Returns the copy and how many dropout layers it has.
        """
        network = copy.deepcopy(self._get_network(device, None))
        network.eval()
        count = 0
        for module in network.modules():
            if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                module.p = max(float(module.p), dropout)
                module.train()
                count += 1
        return network, count

    def probabilities(self, x: torch.Tensor, network: torch.nn.Module, inferer: Any, device: str) -> torch.Tensor:
        """Softmax (or sigmoid, for region bundles) of the network output for one input ``[C, *spatial]``."""
        with torch.no_grad():
            out = inferer(x[None].to(device), network)
        if isinstance(out, (list, tuple)):
            out = out[0]
        out = torch.as_tensor(out)[0].float().cpu()
        if self.bundle_info.multilabel or out.shape[0] == 1:
            return torch.sigmoid(out)
        return torch.softmax(out, dim=0)
