"""The ingest HTTP app: ``POST /ingest/{channel}``, ``POST /shipments`` and
the customers' own lookup (``/track``, connectors/order_lookup.py).

The channel's connector (``ORDERBUS_CHANNELS``; the generic signed JSON one by
default) checks the signature and reads the platform's payload. The app answers
202 (or the platform's own success body, with 200, for platforms that require
one) only after the broker confirmed every order in the request (or, for a
push that only names orders, every fetch request); 503 with Retry-After
when the broker is unavailable; 400/401/404/413/415/422 with an
``application/problem+json`` body for bad input; 200 for a request that
carries no order (a ping, an event orderbus does not read). Every refused or
ignored request is recorded in ``rejected_requests``; requests to a channel
that does not exist (anyone can send one) briefly, at most 60 a minute, the
next record counting the ones past that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from canonical.tracking import TrackingReport
from connectors import ingest_shipments, ingest_stock, ingest_webhooks, kuaidi100, order_lookup
from connectors.ingest_http import ConfirmGroups, RecordBudget
from connectors.rejections import RejectionSpool
from infra.bus import Publisher
from infra.settings import Settings
from infra.topology import Topology


@dataclass
class IngestDeps:
    settings: Settings
    engine: Engine
    publisher: Publisher
    topology: Topology
    # A warehouse's shipment report (its body) becomes the order's shipped
    # revision; the router's ShipmentIntake.accept_body, passed in by the
    # composition root. Returns the message id; raises UnknownOrder,
    # OrderClosed, MalformedMessage or TransientError.
    accept_shipment: Callable[[bytes], str] | None = None
    # A parcel's tracking events become the order's next revision (the
    # router's TrackingIntake.accept); raises UnknownOrder, OrderClosed or
    # TransientError.
    accept_tracking: Callable[[TrackingReport], str] | None = None
    # Stock levels from the warehouse (the router's StockIntake.accept_body):
    # how many channel listings change; raises MalformedMessage or TransientError.
    accept_stock: Callable[[bytes], int] | None = None
    clock: Callable[[], float] = time.time
    # records of requests to channels that do not exist (anyone can send them)
    unknown_channels: RecordBudget = field(default_factory=RecordBudget)
    # where refusals are kept while the database is away (connectors/rejections.py)
    rejection_spool: RejectionSpool | None = None
    # keeps the platform's own order (message ids, channel, headers, body);
    # None: at once, before the answer (infra/raw_payloads.py)
    keep_raw: Callable[[list[str], str, dict[str, str], bytes], None] | None = None
    # the requests' messages published in shared batches (connectors/ingest_http.py)
    confirms: ConfirmGroups = field(init=False)

    def __post_init__(self) -> None:
        self.confirms = ConfirmGroups(self.publisher)


def create_ingest_app(deps: IngestDeps) -> FastAPI:
    """The webhook routes (connectors/ingest_webhooks.py) and the shipment
    route (connectors/ingest_shipments.py), sharing ``deps`` on the app."""
    app = FastAPI(
        title="orderbus ingest",
        description="Signed webhooks from sales channels. See docs/channels/index.md.",
        version="1",
    )
    app.state.ingest = deps
    app.add_middleware(WebhookLane)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ingest_webhooks.router)
    app.include_router(ingest_shipments.router)
    if deps.settings.stock.channels:  # stock back to the channels (connectors/ingest_stock.py)
        app.include_router(ingest_stock.router)
    if deps.settings.tracking.kuaidi100 is not None:  # 快递100's push (connectors/kuaidi100.py)
        app.include_router(kuaidi100.router)
    if deps.settings.lookup.enabled:  # the customers' own lookup (connectors/order_lookup.py)
        app.include_router(order_lookup.router)
    return app


WEBHOOK_PREFIX = "/ingest/"


class WebhookLane:
    """``POST /ingest/{channel}`` straight to its handler
    (:func:`connectors.ingest_webhooks.ingest`), past FastAPI's routing,
    exception middleware and per-request dependency solving, which were a
    fifth of the ingest's CPU a webhook (py-spy). The route stays declared on
    the app, so the OpenAPI document shows it; every other request, and a
    path the route would not match (empty channel, a further ``/``), goes
    through FastAPI as before. An error the handler does not answer itself
    reaches the server-error middleware, as from the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = _route_path(scope)
            channel = path[len(WEBHOOK_PREFIX) :]
            if path.startswith(WEBHOOK_PREFIX) and channel and "/" not in channel:
                response = await ingest_webhooks.ingest(channel, Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path within the app: without the root path a proxy serves it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path
