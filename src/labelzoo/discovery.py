"""Find the MONAI bundles the app serves and read what the app needs from their metadata.

A bundle is a folder with ``configs/metadata.json``. Everything the app does per bundle (input
channels, 2D or 3D, softmax or sigmoid outputs, label names, trained or not) comes from the bundle's
own files, never from code that names a bundle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)

WEIGHTS = ("model.pt", "model.ts")


@dataclass(frozen=True)
class BundleInfo:
    """What the app needs to know about one bundle."""

    name: str
    path: Path
    spatial_dims: int = 3
    channels: int = 1
    labels: dict[str, int] = field(default_factory=dict)
    multilabel: bool = False
    has_infer: bool = True
    has_train: bool = True
    version: str = ""
    description: str = ""
    #: input channels made from prompts (interactive bundles, served as MONAI Label DeepEdit models); 0 otherwise
    guidance_channels: int = 0
    #: a 2D network run slice by slice on volumes along this axis (metadata ``labelzoo.slice_axis``: the planner's
    #: interactive ``2d`` variant); its images and prompts are then 3D (``spatial_dims`` 3). ``None`` otherwise
    slice_axis: int | None = None

    @property
    def weights(self) -> Path | None:
        """The trained weights file (``models/model.pt`` or ``models/model.ts``), or ``None`` when untrained."""
        for name in WEIGHTS:
            path = self.path / "models" / name
            if path.is_file():
                return path
        return None


def is_bundle(path: Path) -> bool:
    """True for a folder holding ``configs/metadata.json``."""
    return (path / "configs" / "metadata.json").is_file()


def find_bundles(dirs: Iterable[str | Path]) -> dict[str, Path]:
    """Bundle name -> folder, for every bundle in ``dirs`` (each a bundle itself or a folder of bundles).

    Later folders take precedence: an extra folder given with ``--conf bundles=...`` replaces a bundle
    of the same name in the repository's ``bundles/``.

    Raises:
        LabelZooError: for a folder that does not exist.
    """
    found: dict[str, Path] = {}
    for d in dirs:
        d = Path(d).expanduser()
        if not d.is_dir():
            raise LabelZooError(f"bundle folder {d} does not exist (check --conf bundles=...)")
        candidates = [d] if is_bundle(d) else sorted(p for p in d.iterdir() if p.is_dir() and is_bundle(p))
        for path in candidates:
            if path.name in found and found[path.name] != path.resolve():
                logger.info("bundle %s: %s replaces %s", path.name, path, found[path.name])
            found[path.name] = path.resolve()
    return dict(sorted(found.items()))


def select_bundles(found: dict[str, Path], models: str | Sequence[str]) -> dict[str, Path]:
    """The bundles named by ``models`` (``"all"``, or names separated by commas, ``+`` or spaces).

    Raises:
        LabelZooError: naming an unknown bundle and listing the available ones.
    """
    if isinstance(models, str):
        names = [n for n in models.replace("+", ",").replace(" ", ",").split(",") if n.strip()]
    else:
        names = list(models)
    names = [n.strip() for n in names]
    if not names or names == ["all"]:
        return dict(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise LabelZooError(f"--conf models: no bundle named {', '.join(map(repr, unknown))}; "
                            f"available: {', '.join(found) or 'none'}")
    return {n: found[n] for n in names}


def _targets(node: Any) -> Iterable[dict]:
    """Every dict with a ``_target_`` in a parsed JSON config."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield node
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def uses_sigmoid(inference_config: dict) -> bool:
    """True when the inference post-processing applies a sigmoid (independent region channels)."""
    post = inference_config.get("postprocessing", inference_config.get("post_transforms", {}))
    for item in _targets(post):
        if str(item["_target_"]).split(".")[-1] in ("Activationsd", "Activations") and item.get("sigmoid") in (
            True, "true", "True"
        ):
            return True
    return False


def read_bundle_info(path: str | Path, name: str | None = None) -> BundleInfo:
    """Read a bundle's metadata (and inference config) into a :class:`BundleInfo`.

    Raises:
        LabelZooError: when ``configs/metadata.json`` is missing or not JSON.
    """
    path = Path(path)
    meta_file = path / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise LabelZooError(f"{meta_file}: cannot read bundle metadata ({e})") from None
    fmt = meta.get("network_data_format", {})
    inputs = fmt.get("inputs", {})
    outputs = fmt.get("outputs", {})
    image = next(iter(inputs.values()), {}) if inputs else {}
    pred = next(iter(outputs.values()), {}) if outputs else {}
    spatial = image.get("spatial_shape") or [0, 0, 0]
    extra = meta.get("labelzoo") if isinstance(meta.get("labelzoo"), dict) else {}
    slice_axis = extra.get("slice_axis")
    slice_axis = int(slice_axis) if isinstance(slice_axis, int) and not isinstance(slice_axis, bool) \
        and 0 <= slice_axis <= 2 else None
    labels = {}
    # region (sigmoid) bundles: channel_def names the network's channels (model-zoo meaning); the label map their
    # postprocessing writes, which MONAI Label shows, is named in metadata "labelzoo": {"label_map": {...}}
    label_map = (meta.get("labelzoo") or {}).get("label_map") if isinstance(meta.get("labelzoo"), dict) else None
    for k, v in (label_map or pred.get("channel_def") or {}).items():
        if str(v).lower() != "background":
            try:
                labels[str(v).lower()] = int(k)
            except ValueError:
                continue
    infer_file = path / "configs" / "inference.json"
    multilabel = False
    if infer_file.is_file():
        try:
            multilabel = uses_sigmoid(json.loads(infer_file.read_text()))
        except ValueError:
            logger.warning("%s is not valid JSON", infer_file)
    return BundleInfo(
        name=name or path.name,
        path=path,
        # a slice-wise 2D network takes 3D images (its patch, spatial_shape, is 2D)
        spatial_dims=3 if slice_axis is not None else
        len(spatial) if isinstance(spatial, list) and len(spatial) in (2, 3) else 3,
        # interactive bundles: the network also takes guidance channels the request's prompts make
        channels=int(image.get("num_channels", 1) or 1) - int(image.get("guidance_channels", 0) or 0),
        labels=labels,
        multilabel=multilabel,
        has_infer=any((path / "configs" / f).is_file() for f in ("inference.json", "inference.yaml")),
        has_train=any((path / "configs" / f).is_file() for f in ("train.json", "train.yaml")),
        version=str(meta.get("version", "")),
        guidance_channels=int(image.get("guidance_channels", 0) or 0),
        description=str(meta.get("description", "")),
        slice_axis=slice_axis,
    )
