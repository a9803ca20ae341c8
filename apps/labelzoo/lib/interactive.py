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
