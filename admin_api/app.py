"""The admin API: orders and their timelines, dead letters (list, show, retry,
retry by filter or cause, edit-and-retry, discard, background retry jobs),
orders held for approval, rejected requests, customer notifications, the
audit log, reconciliation, alerts, API keys, health, readiness and metrics.
OpenAPI at ``/docs``. Roles and masking: admin_api/auth.py.

Each resource's routes are one ``APIRouter`` in admin_api/routes/; this
factory puts the shared context on the app and includes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from admin_api import metrics
from admin_api.auth import KeyAuth
from admin_api.readiness import Readiness
from admin_api.routes import (
    alerts,
    dead_letter_causes,
    dead_letters,
    health,
    holds,
    keys,
    mappings,
    orders,
    reconciliation,
    records,
)
from admin_api.routes.deps import AdminContext
from canonical.errors import TransientError
from infra.topology import Topology
from router.fanout import Fanout

STATIC = Path(__file__).parent / "static"
ROUTERS = (
    health,
    dead_letters,
    dead_letter_causes,
    holds,
    records,
    reconciliation,
    alerts,
    orders,
    keys,
    mappings,
)
DESCRIPTION = (
    "Find an order and its timeline; inspect and retry dead letters; release or "
    "reject orders held as suspected duplicates; inspect rejected webhook requests "
    "and the audit log; manage API keys. Authenticate with "
    "`Authorization: Bearer <key>`; roles: viewer (read, personal data masked), "
    "operator (retry, discard, release, reject), admin (keys)."
)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TransientError)
    return JSONResponse(
        {"detail": exc.detail, "reason": exc.reason},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_admin_app(
    engine: Engine,
    auth: KeyAuth,
    topology: Topology,
    checks: Mapping[str, Callable[[], Any]] | None = None,
    queue_depths: Callable[[], Iterable[tuple[str, int]]] | None = None,
    fanout: Fanout | None = None,
    mapping_required: frozenset[str] = frozenset(),
    replay: Callable[[str, Any, bytes], list[Any]] | None = None,
    mapping_targets: frozenset[str] = frozenset({"warehouse", "finance"}),
    queue_consumers: Callable[[Iterable[str]], Iterable[tuple[str, int]]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="orderbus admin",
        description=DESCRIPTION,
        version="1",
        docs_url=None,  # served below from the package's own files, not a CDN
        redoc_url=None,
    )
    app.state.admin = AdminContext(
        engine=engine,
        auth=auth,
        topology=topology,
        readiness=Readiness(checks or {}),
        collector=metrics.DatabaseCollector(engine, queue_depths, queue_consumers=queue_consumers),
        fanout=fanout,
        mapping_required=mapping_required,
        replay=replay,
        mapping_targets=mapping_targets,
    )
    app.add_exception_handler(TransientError, _unavailable)
    for module in ROUTERS:
        app.include_router(module.router)
    _local_docs(app)
    return app


def _local_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from admin_api/static/swagger (version and licence:
    console/static/LICENSES.md), so it works with no network beyond the host."""
    app.mount("/static", StaticFiles(directory=STATIC), name="admin-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="orderbus admin API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )
