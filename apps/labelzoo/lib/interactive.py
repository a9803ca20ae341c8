"""Interactive (DeepEdit-type) bundles in the app: prompt validation before any work is spent.

The prompt format is documented in :mod:`labelzoo.interactive.prompts`; MONAI Label merges the client's
params into the request, so the prompts are top-level request keys (per-label click lists, ``foreground`` /
``background`` / ``label``, ``boxes``, ``scribbles``, ``lassos``). Any malformed value is a 422 naming the
parameter; nothing of it reaches a bundle config (the values only become voxel indices in the data dict).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from labelzoo.discovery import BundleInfo
from labelzoo.interactive.prompts import Prompts, load_prior, parse_prompts, prior_labels
from labelzoo.options import INFER_OPTIONS, Option, as_bool, data, points
from labelzoo.validation import squeeze_trailing
from lib.errors import as_http, unprocessable


def check_prompts(request: Mapping[str, Any], info: BundleInfo, shape: Sequence[int]) -> Prompts:
    """Validate the prompts of ``request`` for the interactive bundle ``info`` on an image of array ``shape``.

    Raises:
        HTTPException: 422 naming the parameter when a prompt is malformed or outside the image.
    """
    spatial = tuple(squeeze_trailing(shape, info.spatial_dims))[: info.spatial_dims]
    labels = [n for n in info.labels if n != "background"]
    with as_http(unprocessable):
        prompts = parse_prompts(request, labels, spatial, slice_axis=info.slice_axis)
        chosen = prior_labels(request, labels)
        if chosen:  # the uploaded current mask: its shape and values, before any work
            load_prior(str(request["label_file"]), labels, chosen, spatial)
        return prompts


def prompt_options(info: BundleInfo) -> dict[str, Option]:
    """The inference option schema of a bundle: MONAI Label's options, plus the prompts of interactive bundles
    (one click list per label name, ``boxes``, ``scribbles``, ``lassos``), checked inert here and fully by
    :func:`check_prompts` once the image's shape is known."""
    if not info.guidance_channels:
        return INFER_OPTIONS
    clicks = {n: Option(points, f"clicks on {n}") for n in info.labels if n != "background"}
    return {**INFER_OPTIONS, **clicks,
            "boxes": Option(data, "boxes: [{label, min: [i, j, k], max: [i, j, k]}]"),
            "scribbles": Option(data, "scribbles: [{label, points: [[i, j, k], ...]}]"),
            "lassos": Option(data, "lassos: [{label, axis, points: [[i, j, k], ...]}] (a closed contour on one slice)"),
            "prior": Option(data, "refine the current mask: true or [labels]; the mask is the uploaded label file"),
            "prompt_roi": Option(as_bool, "predict only on a region around the prompts (background elsewhere)"),
            "result_region": Option(as_bool, "predict around the prompts and answer only that region: the file has "
                                             "the region's geometry, result params 'result_region' its voxel box")}


class PreprocessCache:
    """The prompt-independent part of an interactive bundle's preprocessing, cached per image file.

    An annotator sends many prompts on one image (one session): loading, reorienting, resampling and scaling
    the volume is the same for each, only the guidance changes. The transforms before the first
    :class:`~labelzoo.interactive.transforms.PromptGuidanced` run once per image file (keyed by path, size
    and modification time, so a changed file is preprocessed again); each request gets a private copy.
    A few images are kept (several annotators at once), each for ``ttl`` seconds after its last use.
    """

    def __init__(self, max_items: int = 4, ttl: float = 900.0):
        self.max_items, self.ttl = int(max_items), float(ttl)
        self._items: OrderedDict[tuple, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def split(transforms: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """(prompt-independent prefix, the rest) of a preprocessing list."""
        from labelzoo.interactive.transforms import PromptGuidanced

        for i, t in enumerate(transforms):
            if isinstance(t, PromptGuidanced):
                return list(transforms[:i]), list(transforms[i:])
        return [], list(transforms)

    @staticmethod
    def key(data: Mapping[str, Any]) -> tuple | None:
        image = data.get("image")
        if not isinstance(image, str) or not os.path.isfile(image):
            return None
        st = os.stat(image)
        return (os.path.realpath(image), st.st_size, st.st_mtime_ns)

    def run(self, data: dict[str, Any], prefix: list[Any], run: Callable[[dict[str, Any], list[Any]], dict]) -> dict:
        """``data`` after ``prefix``: from the cache, or by ``run(data, prefix)`` (then cached)."""
        key = self.key(data)
        if key is None or not prefix:
            return run(data, prefix)
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (t, _) in self._items.items() if now - t > self.ttl]:
                del self._items[k]
            hit = self._items.get(key)
            if hit is not None:
                self._items[key] = (now, hit[1])
                self._items.move_to_end(key)
                self.hits += 1
        if hit is not None:
            out = dict(data)
            out.update(copy.deepcopy(hit[1]))
            return out
        self.misses += 1
        before = dict(data)
        result = run(data, prefix)
        changed = {k: v for k, v in result.items() if k not in before or v is not before[k]}
        with self._lock:
            self._items[key] = (now, copy.deepcopy(changed))
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return result


def region_restored(post: list[Any]) -> list[Any]:
    """Interactive bundles: MONAI Label's final ``Restored`` made region-aware (see :class:`RegionRestored`)."""
    from monailabel.transform.post import Restored

    return [RegionRestored(t) if type(t) is Restored else t for t in post]


class RegionRestored:
    """MONAI Label's ``Restored``, except for an answer cropped to the prompt region ("return only what changed").

    :class:`~labelzoo.interactive.transforms.InvertToRegiond` leaves the prediction on a box of the image's voxel
    grid; ``Restored`` would resize it to the whole image. Here the box's own affine is written with it (so the
    file says where it lies) and the result params carry ``result_region``: ``{"min": [i, j, k], "max": [i, j, k],
    "shape": [...]}`` (inclusive voxel indices of the image). Any other answer goes through ``Restored``, which
    keeps the channel axis of a 2D answer (``(1, H, W)``, not the image's shape) and its writer drops the affine
    of a 2D array: the answer is written as a one-slice volume ``(H, W, 1)`` with the image's geometry.
    """

    def __init__(self, restored: Any):
        self.restored = restored

    def _drop_channel(self, d: dict[str, Any]) -> dict[str, Any]:
        """A 2D image's answer ``(1, H, W)`` as ``(H, W, 1)`` (the image's pixels; a NIfTI with its affine)."""
        from monai.data import MetaTensor

        ref = d.get(self.restored.ref_image)
        meta = ref.meta if isinstance(ref, MetaTensor) else d.get(f"{self.restored.ref_image}_"
                                                                  f"{self.restored.meta_key_postfix}", {})
        shape = (meta or {}).get("spatial_shape")
        if shape is None:
            return d
        dims = len(np.asarray(shape).ravel())
        for key in self.restored.keys:
            result = d.get(key)
            if getattr(result, "ndim", 0) == dims + 1 and result.shape[0] == 1:
                d[key] = result[0][..., None]
        return d

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from labelzoo.interactive.transforms import REGION_KEY

        d = dict(data)
        region = d.pop(REGION_KEY, None)
        if region is None:
            return self._drop_channel(self.restored(d))
        for key in self.restored.keys:
            result = d[key]
            affine = getattr(result, "affine", None)
            d[key] = result[0] if result.ndim > len(region["shape"]) and result.shape[0] == 1 else result
            if len(region["shape"]) == 2 and d[key].ndim == 2:  # a 2D image's region: a one-slice volume
                d[key] = d[key][..., None]
            meta = d.setdefault(f"{key}_{self.restored.meta_key_postfix}", {})
            meta["affine"] = affine
        d["result"] = {**(d.get("result") or {}), "result_region": region}
        return d
