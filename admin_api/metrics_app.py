"""``GET /metrics`` on a port of its own, without a key
(``ORDERBUS_METRICS_PORT``): for a Prometheus that cannot hold a bearer token,
on a network only it reaches. Nothing else is served there, and the metrics
hold no personal data (counts by channel, queue, reason, component)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from admin_api import metrics


def create_metrics_app(collector: metrics.DatabaseCollector) -> FastAPI:
    app = FastAPI(title="orderbus metrics", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(collector), media_type=CONTENT_TYPE_LATEST)

    return app
