"""Weights versions, rollback and zoo release over HTTP (the registry is :mod:`labelzoo.zoo.registry`).

- ``GET /labelzoo/models/{model}/versions`` (user): every weights version of a served model, the active one;
- ``POST /labelzoo/models/{model}/rollback?version=ID`` (admin): serve an earlier weights version again;
- ``POST /labelzoo/models/{model}/release`` (admin, only with ``--conf zoo_publish=FOLDER``): publish the
  served weights as a new bundle version to the zoo (:func:`labelzoo.zoo.release.release`).

Roles are MONAI Label's (with auth off every caller has every role, as for the other admin routes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from monailabel.config import RBAC_ADMIN, RBAC_USER
from monailabel.endpoints.user.auth import User

from labelzoo.errors import LabelZooError
from labelzoo.zoo import registry
from lib.errors import as_http, conflict, forbidden, not_found, unprocessable
from lib.routes import ADMIN, USER, prepend_routes

logger = logging.getLogger(__name__)


def registry_sync(bundle: Path, source: str) -> str | None:
    """Register the bundle's current weights (never fails a request: a registry error is logged)."""
    try:
        return registry.sync(bundle, source)
    except (LabelZooError, OSError) as e:
        logger.warning("%s: cannot register the weights: %s", bundle, e)
        return None


def weights_info(bundle: Path) -> dict[str, Any]:
    """``weights_version`` (active registry id) and ``weights_versions`` (all ids) for ``/info/``."""
    try:
        data = registry.read(bundle)
    except LabelZooError:
        return {"weights_version": None, "weights_versions": []}
    return {"weights_version": registry.active_id(bundle), "weights_versions": [v["id"] for v in data["versions"]]}


def router(app: Any) -> APIRouter:
    """The routes, over the running :class:`LabelZooApp` ``app``."""
    r = APIRouter()

    def bundle_of(model: str) -> Path:
        info = app.bundles.get(model)
        if info is None:
            raise not_found(f"unknown model {model!r}; served models: {', '.join(app.bundles) or 'none'}")
        return info.path

    @r.get("/labelzoo/models/{model}/versions", summary=f"{RBAC_USER}Weights versions of a model (registry)",
           tags=["LabelZoo"])
    async def versions(model: str, user: User = USER):
        with as_http(unprocessable):
            return await run_in_threadpool(registry.versions, bundle_of(model))

    @r.post("/labelzoo/models/{model}/rollback", summary=f"{RBAC_ADMIN}Serve an earlier weights version again",
            tags=["LabelZoo"])
    async def rollback(model: str, version: str, user: User = ADMIN):
        path = bundle_of(model)
        try:
            registry.get(path, version)
        except LabelZooError as e:
            raise not_found(str(e)) from None
        with as_http(unprocessable):
            return await run_in_threadpool(registry.rollback, path, version)

    @r.post("/labelzoo/models/{model}/release", summary=f"{RBAC_ADMIN}Publish the served weights to the zoo as a "
            "new bundle version", tags=["LabelZoo"])
    async def release(model: str, bump: str = "patch", force: bool = False, user: User = ADMIN):
        from labelzoo.appconf import conf_value
        from labelzoo.zoo.release import release as do_release

        target = conf_value(app.conf, "zoo_publish").strip()
        if not target:
            raise forbidden("releasing to a zoo is off on this server (start it with --conf zoo_publish=FOLDER, "
                            "the folder the zoo's web server serves, and zoo=URL where it is served)")
        path = bundle_of(model)
        base_url = conf_value(app.conf, "zoo").strip()
        base_url = base_url if base_url.startswith(("http://", "https://")) else ""
        with as_http(conflict):  # no weights, no improvement, a version already in the zoo
            return await run_in_threadpool(do_release, path, target, base_url, bump, force)

    return r


def install(app: Any) -> bool:
    """Register the bundles' current weights and put the routes in front of MONAI Label's (server only)."""
    for name, info in app.bundles.items():
        registry_sync(info.path, "zoo" if name in getattr(app, "zoo_bundles", {}) else "existing")
    return prepend_routes(router(app)) is not None
