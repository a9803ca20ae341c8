"""Interactive (DeepEdit-type) bundles in the app: prompt validation before any work is spent.

The prompt format is documented in :mod:`labelzoo.interactive.prompts`; MONAI Label merges the client's
params into the request, so the prompts are top-level request keys (per-label click lists, ``foreground`` /
``background`` / ``label``, ``boxes``, ``scribbles``, ``lassos``). Any malformed value is a 422 naming the
parameter; nothing of it reaches a bundle config (the values only become voxel indices in the data dict).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labelzoo.discovery import BundleInfo
from labelzoo.interactive.prompts import Prompts, parse_prompts
from labelzoo.options import INFER_OPTIONS, Option, data, points
from labelzoo.validation import squeeze_trailing
from lib.errors import as_http, unprocessable


def check_prompts(request: Mapping[str, Any], info: BundleInfo, shape: Sequence[int]) -> Prompts:
    """Validate the prompts of ``request`` for the interactive bundle ``info`` on an image of array ``shape``.

    Raises:
        HTTPException: 422 naming the parameter when a prompt is malformed or outside the image.
    """
    spatial = tuple(squeeze_trailing(shape, info.spatial_dims))[: info.spatial_dims]
    with as_http(unprocessable):
        return parse_prompts(request, [n for n in info.labels if n != "background"], spatial)


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
            "lassos": Option(data, "lassos: [{label, axis, points: [[i, j, k], ...]}] (a closed contour on one slice)")}
