"""Liveness, readiness (every dependency answers) and Prometheus metrics.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from admin_api import metrics
from admin_api.routes.deps import Context, Viewer

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: Context) -> JSONResponse:
    """200 when every dependency answers (the database, the broker) and every
    component that has run is alive (a process beating, consuming its queues),
    else 503 naming what is not; checked at most every few seconds
    (admin_api/readiness.py, infra/heartbeats.py)."""
    results = ctx.readiness.results()
    ready = all(v == "ok" for v in results.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": results}
    body.update(ctx.readiness.details())  # e.g. "components": each one's processes and queues
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
def prometheus(ctx: Context, _who: Viewer) -> PlainTextResponse:
    """Prometheus metrics (admin_api/metrics.py); a viewer key as the
    scraper's bearer token."""
    return PlainTextResponse(metrics.render(ctx.collector), media_type=CONTENT_TYPE_LATEST)
