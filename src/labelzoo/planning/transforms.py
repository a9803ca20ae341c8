"""MONAI transforms and losses the planned bundles reference by dotted path (``labelzoo.planning.transforms``).

Only what MONAI lacks: per-channel nnU-Net normalisation (a different scheme per channel, CT statistics
from the fingerprint), nnU-Net's label interpolation under rotation and scaling (label values as indicator maps,
resampled by MONAI's own transforms), and a deep-supervision loss for DynUNet's stacked training output.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.losses import DiceCELoss
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_tensor

from labelzoo.losses import nnunet_deep_supervision

SCHEMES = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization",
           "RGBTo01Normalization")


def normalize_channel(x: torch.Tensor, entry: Mapping[str, Any], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalise one channel as nnU-Net v2's ``default_normalization_schemes.py`` does.

    - ``CTNormalization``: clip to the dataset's foreground percentiles 0.5 / 99.5, subtract the
      foreground mean, divide by the foreground std (all from the fingerprint).
    - ``ZScoreNormalization``: per-image mean / std; with ``use_mask`` only over ``mask`` (the nonzero
      region), leaving voxels outside it at 0.
    - ``RescaleTo01Normalization``: min-max to [0, 1]; ``RGBTo01Normalization``: divide by 255.
    """
    scheme = entry["scheme"]
    x = x.float()
    if scheme == "CTNormalization":
        x = x.clamp(float(entry["clip_low"]), float(entry["clip_high"]))
        return (x - float(entry["mean"])) / max(float(entry["std"]), 1e-8)
    if scheme == "ZScoreNormalization":
        if entry.get("use_mask") and mask is not None and mask.any():
            values = x[mask]
            out = (x - values.mean()) / values.std(unbiased=False).clamp_min(1e-8)
            return torch.where(mask, out, torch.zeros_like(out))
        return (x - x.mean()) / x.std(unbiased=False).clamp_min(1e-8)
    if scheme == "RescaleTo01Normalization":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp_min(1e-8)
    if scheme == "RGBTo01Normalization":
        return x / 255.0
    if scheme == "NoNormalization":
        return x
    raise ValueError(f"unknown normalisation scheme {scheme!r}; expected one of {SCHEMES}")


class PlannedNormalized(MapTransform):
    """Apply the planner's per-channel normalisation (``plans.json`` ``normalization``) to ``keys``.

    Args:
        keys: keys of channel-first images.
        channels: one entry per channel: ``{"scheme": ..., "use_mask": bool, "clip_low", "clip_high",
            "mean", "std"}`` (the last four for ``CTNormalization``).
        allow_missing_keys: do not fail when a key is absent.

    Example:
        >>> t = PlannedNormalized("image", [{"scheme": "CTNormalization", "clip_low": -100, "clip_high": 200,
        ...                                  "mean": 50, "std": 50}])
        >>> t({"image": torch.tensor([[[-1000.0, 100.0]]])})["image"].tolist()
        [[[-3.0, 1.0]]]
    """

    def __init__(self, keys: KeysCollection, channels: Sequence[Mapping[str, Any]], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        for c in channels:
            if c.get("scheme") not in SCHEMES:
                raise ValueError(f"channels: unknown scheme {c.get('scheme')!r}; expected one of {SCHEMES}")
        self.channels = list(channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            x = convert_to_tensor(img, track_meta=False).float()
            if x.shape[0] != len(self.channels):
                raise ValueError(f"{key}: {x.shape[0]} channel(s), the plan normalises {len(self.channels)}")
            mask = (x != 0).any(dim=0)
            out = torch.stack([normalize_channel(x[c], e, mask) for c, e in enumerate(self.channels)])
            if hasattr(img, "copy_meta_from"):
                out = img.__class__(out, meta=img.meta, applied_operations=img.applied_operations)
            d[key] = out
        return d


class TrackMetad(Randomizable, MapTransform):
    """Turn MONAI's MetaTensor tracking off (``track=False``) or back on (``track=True``) for the transforms after it.

    The planned training pipeline brackets its random part with ``TrackMetad(track=False)`` ... ``TrackMetad(
    track=True)``: in between, ``keys`` are plain tensors and MONAI's transforms record no metadata or applied
    operations (training never inverts them, nnU-Net's augmentation carries none). The bookkeeping was most of the
    augmentation's CPU time on small 2D patches (~22 vs ~8 ms per 40x48 sample with every transform of the
    pipeline, ``benchmarks/planned_bundle_profile.py``). The flag is per process (``monai.data.set_track_meta``): in
    a DataLoader worker it only affects that worker; with ``num_workers=0`` the closing ``TrackMetad`` restores it
    before the main process goes on. It is ``Randomizable`` (with nothing to draw) so that ``CacheDataset`` stops
    caching before it and never runs it at caching time.

    Args:
        keys: keys whose MetaTensors become plain tensors when tracking is turned off.
        track: the tracking state to set.
        allow_missing_keys: do not fail when a key is absent.

    Example:
        >>> from monai.data import MetaTensor, get_track_meta
        >>> d = TrackMetad("image", track=False)({"image": MetaTensor(torch.zeros(1, 2))})
        >>> type(d["image"]).__name__, get_track_meta()
        ('Tensor', False)
        >>> _ = TrackMetad("image", track=True)(d); get_track_meta()
        True
    """

    def __init__(self, keys: KeysCollection, track: bool, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.track = bool(track)

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw (``Randomizable`` only keeps ``CacheDataset`` from running it at caching time)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.data import set_track_meta

        d = dict(data)
        if not self.track:
            for key in self.key_iterator(d):
                value = d[key]
                d[key] = value.as_tensor() if hasattr(value, "as_tensor") else value
        set_track_meta(self.track)
        return d


#: suffix of the key that carries the label values between :class:`LabelToIndicatorsd` and
#: :class:`IndicatorsToLabeld`
VALUES_POSTFIX = "_values"


class LabelToIndicatorsd(MapTransform):
    """Label map -> one float indicator channel per label value present, for nnU-Net's label interpolation.

    nnU-Net resamples a label under rotation and scaling linearly, one indicator map per label, and keeps the
    label with the largest interpolated value (batchgeneratorsv2 ``SpatialTransform``, ``mode_seg="bilinear"``):
    smoother edges than nearest neighbour. Put this before the spatial transforms (with a linear ``mode`` for the
    label) and :class:`IndicatorsToLabeld` after them. Values rather than class indices, so any value survives
    (e.g. the partial-label ignore value 255); ``background`` is always channel 0, so what the spatial transforms
    pad with zeros comes back as background, as nnU-Net pads. The values travel in ``<key>_values``.

    Args:
        keys: label keys (one channel each).
        background: the value of channel 0 (added when the label does not hold it).

    Example:
        >>> d = LabelToIndicatorsd("label")({"label": torch.tensor([[[0., 2.], [255., 2.]]])})
        >>> d["label"].shape, d["label_values"].tolist()
        (torch.Size([3, 2, 2]), [0.0, 2.0, 255.0])
        >>> IndicatorsToLabeld("label")(d)["label"].tolist()
        [[[0.0, 2.0], [255.0, 2.0]]]
    """

    def __init__(self, keys: KeysCollection, background: float = 0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.background = float(background)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = convert_to_tensor(d[key], track_meta=False)
            if label.shape[0] != 1:
                raise ValueError(f"{key}: expected one label channel, got {label.shape[0]}")
            values = torch.unique(label)
            bg = torch.tensor([self.background], dtype=values.dtype, device=values.device)
            values = torch.cat([bg, values[values != bg]])  # background first, the rest ascending
            d[key] = (label == values.view(-1, *[1] * (label.ndim - 1))).to(torch.float32)
            d[f"{key}{VALUES_POSTFIX}"] = values
        return d


class IndicatorsToLabeld(MapTransform):
    """Indicator channels (:class:`LabelToIndicatorsd`, after resampling) -> one label channel: at each voxel the
    value whose channel is largest (ties: the earlier channel; all zero: background)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            values = d.pop(f"{key}{VALUES_POSTFIX}")
            channels = convert_to_tensor(d[key], track_meta=False)
            d[key] = values.to(channels.device)[torch.argmax(channels, dim=0, keepdim=True)].to(torch.float32)
        return d


class DeepSupervisionDiceCELoss(torch.nn.Module):
    """Dice + cross-entropy over DynUNet's deep-supervision heads, weighted as nnU-Net v2 does.

    In training mode the planned :class:`labelzoo.networks.NativeHeadsDynUNet` returns ``[main, head_1, ...]``,
    each head at its own resolution: the target is downsampled to each head (nearest-exact, nnU-Net's
    ``DownsampleSegForDSTransform``). MONAI's ``DynUNet(deep_supervision=True)`` output, one tensor
    ``(B, 1 + k, C, ...)`` with every head upsampled to the input size, is taken too. Head ``i`` gets weight
    ``1 / 2**i``, normalised to sum 1 (``nnUNetTrainer._build_loss``; nnU-Net also drops its lowest head, which
    the planned ``deep_supr_num`` leaves out); see :func:`labelzoo.losses.nnunet_deep_supervision`. A plain
    ``(B, C, ...)`` prediction gets the plain loss.

    Args:
        **kwargs: passed to :class:`monai.losses.DiceCELoss` (e.g. ``to_onehot_y``, ``softmax``, ``batch``).
    """

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.loss = DiceCELoss(**kwargs)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nnunet_deep_supervision(self.loss, pred, target)


class SplitPreviousStaged(MapTransform):
    """Cascade stage 2 in training: the stage-1 segmentation travels as a second ``label`` channel; move it,
    one-hot encoded, to the end of ``image``'s channels and keep the ground truth in ``label``.

    Carrying the stage-1 map inside ``label`` keeps the data keys to ``image`` / ``label`` and lets every
    spatial transform (nearest resampling, crops, flips) treat it exactly like the label.

    Args:
        keys: the label key (``label``); its channel 0 is the ground truth, channel 1 the stage-1 map, both
            in contiguous class indices.
        image_key: the image the one-hot channels are appended to.
        num_classes: classes of the one-hot encoding (background included).
        image_channels: image channels kept before appending (``None``: all); extra channels are dropped.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", num_classes: int = 2,
                 image_channels: int | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.num_classes = int(num_classes)
        self.image_channels = image_channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.networks.utils import one_hot

        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if label.shape[0] != 2:
                raise ValueError(f"{key}: expected 2 channels (ground truth, stage-1 segmentation), got "
                                 f"{label.shape[0]}; give 'label' as [label file, stage-1 prediction file]")
            prev = one_hot(torch.as_tensor(label[1:2]).round().long(), self.num_classes, dim=0)
            d[key] = label[0:1]
            image = d[self.image_key][: self.image_channels] if self.image_channels else d[self.image_key]
            d[self.image_key] = torch.cat([image, prev.to(torch.as_tensor(image).dtype)], 0)
        return d


def num_workers(max_workers: int = 8) -> int:
    """DataLoader workers for this machine: one per CPU core this process may use, less one for the main
    process, at most ``max_workers`` (nnU-Net's ``get_allowed_n_proc_DA`` caps at 12 by default).

    Computed where the bundle runs (``"num_workers": "$labelzoo.planning.transforms.num_workers()"``), so a
    bundle planned on a workstation does not ask a 2-core annotation server for 4 workers.

    Example:
        >>> 0 <= num_workers() <= 8
        True
    """
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(int(max_workers), cores - 1))


#: State-dict prefixes of DynUNet's training-only deep-supervision heads (registered twice: as
#: ``deep_supervision_heads`` and as the ``super_head`` of the skip layers).
DEEP_SUPERVISION_PREFIXES = ("deep_supervision_heads.",)
DEEP_SUPERVISION_PARTS = (".super_head.",)


def _is_head(key: str) -> bool:
    return key.startswith(DEEP_SUPERVISION_PREFIXES) or any(p in key for p in DEEP_SUPERVISION_PARTS)


def load_inference_weights(network: torch.nn.Module, path: str, map_location: Any = "cpu",
                           strict: bool = True) -> torch.nn.Module:
    """Load a training checkpoint (``{"model": state}`` or a bare state dict) into an inference network.

    The inference ``DynUNet`` is built without deep-supervision heads (so it exports to TorchScript); their
    weights, and only those, are dropped from the checkpoint. Everything else loads with ``strict``: a
    checkpoint of another configuration (missing, unexpected or mis-shaped weights) fails loudly instead of
    leaving layers at their random initialisation.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        RuntimeError: naming ``path`` when the weights do not fit the network.
    """
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train the bundle first (models/model.pt)")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not any(_is_head(k) for k in network.state_dict()):
        state = {k: v for k, v in state.items() if not _is_head(k)}
    try:
        network.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise RuntimeError(f"checkpoint {path} does not fit the bundle's network: {e}") from None
    return network


class PlannedCheckpointLoader:
    """Ignite handler: :func:`load_inference_weights` when the engine starts (MONAI ``CheckpointLoader``
    with ``strict`` loading that tolerates only the missing deep-supervision heads).

    Args:
        load_path: checkpoint file.
        network: the network to load into.
        map_location: ``torch.load`` map location.
        strict: refuse missing, unexpected or mis-shaped weights (deep-supervision heads excepted).
    """

    def __init__(self, load_path: str, network: torch.nn.Module, map_location: Any = "cpu",
                 strict: bool = True) -> None:
        self.load_path = str(load_path)
        self.network = network
        self.map_location = map_location
        self.strict = bool(strict)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any = None) -> None:
        load_inference_weights(self.network, self.load_path, self.map_location, self.strict)
