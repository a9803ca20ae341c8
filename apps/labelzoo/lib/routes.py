"""Route changes: ``POST /scoring/`` and ``POST /scoring/{method}`` go to the in-process scoring worker.

Same paths, parameters and answer shape as MONAI Label 0.8.5 (a task record per method), so
existing clients keep working; only the work moves from a subprocess that re-imports the app to the
worker thread. ``GET /scoring/`` is MONAI Label's own and lists the worker's runs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import APIRouter, Depends
from monailabel.config import RBAC_ANNOTATOR, settings
from monailabel.endpoints.user.auth import RBAC, User

from lib.errors import not_found
from lib.scoring import ScoringWorker

logger = logging.getLogger(__name__)


#: MONAI Label's own role check for annotators (module-level, as FastAPI dependencies are declared).
ANNOTATOR = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))


def scoring_router(worker: ScoringWorker) -> APIRouter:
    router = APIRouter(prefix=f"{settings.MONAI_LABEL_API_STR}/scoring", tags=["Scoring"])

    @router.post("/", summary=f"{RBAC_ANNOTATOR}Run All Scoring Tasks (in-process worker)", include_in_schema=False)
    def run_all(params: dict | None = None, run_sync: bool = False,
                user: User = ANNOTATOR) -> dict[str, Any]:
        return {m: {"result": r, "detail": None} for m, r in worker.run(None, sync=bool(run_sync)).items()}

    @router.post("/{method}", summary=f"{RBAC_ANNOTATOR}Run Scoring Task for specific method (in-process worker)")
    def run_method(method: str, params: dict | None = None, run_sync: bool = False,
                   user: User = ANNOTATOR) -> Any:
        if method not in worker.methods:
            raise not_found(f"unknown scoring method {method!r}; available: {', '.join(worker.methods) or 'none'}")
        return worker.run(method, sync=bool(run_sync))[method]

    return router


def install(worker: ScoringWorker) -> bool:
    """Put the worker's scoring routes in front of MONAI Label's (only inside a running server)."""
    server = sys.modules.get("monailabel.app")
    fastapi_app = getattr(server, "app", None)
    if fastapi_app is None:
        return False
    routes = scoring_router(worker).routes
    fastapi_app.router.routes[0:0] = routes
    fastapi_app.openapi_schema = None
    logger.info("scoring routes served by the in-process worker")
    return True
