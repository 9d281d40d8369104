"""The ingest HTTP app: ``POST /ingest/{channel}``.

The channel's connector (``ORDERBUS_CHANNELS``; the generic signed JSON one by
default) checks the signature and reads the platform's payload. The app answers
202 (or the platform's own success body, with 200, for platforms that require
one) only after the broker confirmed every order in the request (or, for a
push that only names orders, every fetch request); 503 with Retry-After
when the broker is unavailable; 400/401/404/413/415/422 with an
``application/problem+json`` body for bad input; 200 for a request that
carries no order (a ping, an event orderbus does not read). Every refused or
ignored request is recorded in ``rejected_requests``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from canonical.errors import (
    MalformedMessage,
    OrderbusError,
    OrderClosed,
    TransientError,
    UnknownOrder,
)
from connectors.base import Arrival, ChannelConfig, ConnectorError, WebhookRequest
from connectors.publishing import fetch_message, order_message
from connectors.registry import connector_for, fetching_channels
from connectors.rejections import record_rejection
from connectors.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)
from infra.bus import Publisher
from infra.crashpoints import crash_point
from infra.settings import Settings
from infra.topology import Topology

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


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
    clock: Callable[[], float] = time.time


def problem(status: int, reason: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:orderbus:problem:{reason}",
        "title": reason,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


async def _read_limited(request: Request, limit: int) -> tuple[bytes, int, bool]:
    """The body, its size, and whether it went over ``limit`` (reading stops there)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", int(declared), True
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), size, True
        chunks.append(chunk)
    return b"".join(chunks), size, False


def channel_config_of(settings: Settings, channel: str) -> ChannelConfig:
    spec = settings.channels.get(channel)
    return ChannelConfig(
        name=channel,
        connector=spec.connector if spec else "generic-json",
        secrets=tuple(settings.channel_secrets.get(channel, ())),
        shop=spec.shop if spec else None,
        app_key=spec.app_key if spec else None,
        fetch=channel in fetching_channels(settings),
    )


def delivery_message_id(channel: str, arrival: Arrival) -> str | None:
    """A message id that is the same for every redelivery of one platform
    delivery (None: the platform gives no delivery id; a fresh one is made)."""
    if not arrival.delivery_id:
        return None
    delivery = arrival.delivery_id.strip()
    if len(channel) + len(delivery) + 1 > 100 or not delivery.isprintable():
        delivery = hashlib.sha256(delivery.encode("utf-8")).hexdigest()[:40]
    return f"{channel}.{delivery}"


def _as_error(status: int, exc: SignatureError | OrderbusError) -> ConnectorError:
    return ConnectorError(status, exc.reason, exc.detail)


def create_ingest_app(deps: IngestDeps) -> FastAPI:
    app = FastAPI(
        title="orderbus ingest",
        description="Signed webhooks from sales channels. See README: 'Sending orders'.",
        version="1",
    )
    settings = deps.settings

    async def record(
        request: Request,
        channel: str,
        body: bytes,
        size: int,
        status: int,
        reason: str,
        detail: str,
    ) -> None:
        await run_in_threadpool(
            record_rejection,
            deps.engine,
            channel=channel,
            status_code=status,
            reason=reason,
            detail=detail,
            headers=dict(request.headers),
            body=body,
            body_size=size,
            remote_addr=request.client.host if request.client else None,
        )

    async def refuse(
        request: Request, channel: str, body: bytes, size: int, error: ConnectorError
    ) -> JSONResponse:
        await record(request, channel, body, size, error.status, error.reason, error.detail)
        log.warning("ingest %s: %d %s: %s", channel, error.status, error.reason, error.detail)
        extra: dict[str, Any] = {"errors": error.errors} if error.errors else {}
        return problem(error.status, error.reason, error.detail, **extra)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/ingest/{channel}",
        status_code=202,
        responses={
            400: {"description": "Not UTF-8 or not valid JSON"},
            401: {"description": "Missing, stale or wrong signature"},
            404: {"description": "Unknown channel"},
            413: {"description": "Body larger than ORDERBUS_MAX_BODY_BYTES"},
            415: {"description": "Not application/json in UTF-8"},
            422: {"description": "JSON that is not a canonical order"},
            503: {"description": "Broker unavailable; retry after Retry-After seconds"},
        },
    )
    async def ingest(channel: str, request: Request) -> JSONResponse:
        body, size, too_large = await _read_limited(request, settings.max_body_bytes)
        if channel not in settings.channel_secrets:
            return await refuse(
                request,
                channel,
                body,
                size,
                ConnectorError(404, "unknown_channel", f"no channel {channel!r} is configured"),
            )
        if too_large:
            return await refuse(
                request,
                channel,
                body,
                size,
                ConnectorError(
                    413, "payload_too_large", f"body over {settings.max_body_bytes} bytes"
                ),
            )
        channel_config = channel_config_of(settings, channel)
        connector = connector_for(channel_config.connector)
        content_type = request.headers.get("content-type", "")
        media, _, params = content_type.partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
        if media.strip().lower() not in connector.media_types or charset not in ("utf-8", "utf8"):
            wanted = " or ".join(sorted(t for t in connector.media_types if t))
            return await refuse(
                request,
                channel,
                body,
                size,
                ConnectorError(
                    415,
                    "unsupported_media_type",
                    f"send {wanted} in UTF-8, not {content_type!r}",
                ),
            )
        webhook = WebhookRequest(
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            received_at=deps.clock(),
        )
        try:
            connector.authenticate(webhook, channel_config, settings.signature_tolerance)
            result = connector.read(webhook, channel_config)
        except ConnectorError as exc:
            return await refuse(request, channel, body, size, exc)

        if not result.arrivals and not result.references:
            # Not an order (a ping, an event orderbus does not read): answered
            # as the platform expects, and recorded, so nothing vanishes unseen.
            reason = result.ignored or "no orders in the request"
            await record(request, channel, body, size, 200, "ignored", reason)
            log.info("ingest %s: nothing to route (%s)", channel, reason)
            if connector.reply is not None:
                return JSONResponse(connector.reply, status_code=200)
            return JSONResponse({"status": "ignored", "reason": reason}, status_code=200)

        accepted: list[dict[str, str]] = []
        outgoing = [
            (
                order_message(deps.topology, channel, a.order, delivery_message_id(channel, a)),
                a.order.external_id,
            )
            for a in result.arrivals
        ]
        # Orders the push only names: a fetch request each, on the channel's
        # fetch queue; the worker there gets the order from the platform's API.
        outgoing += [
            (fetch_message(deps.topology, channel, r), r.external_id) for r in result.references
        ]
        for message, external_id in outgoing:
            try:
                await run_in_threadpool(deps.publisher.publish, message)
                crash_point("ingest.after_confirm")
            except TransientError as exc:
                # The platform sends the whole request again; what was already
                # published carries the same message id and is recorded once.
                return await refuse(
                    request,
                    channel,
                    body,
                    size,
                    ConnectorError(503, exc.reason, f"the order was not accepted: {exc.detail}"),
                )
            log.info("ingest %s: accepted %s as %s", channel, external_id, message.message_id)
            accepted.append({"message_id": message.message_id, "external_id": external_id})
        if connector.reply is not None:
            ids = ",".join(a["message_id"] for a in accepted)
            return JSONResponse(
                connector.reply, status_code=200, headers={"X-Orderbus-Message-Ids": ids}
            )
        answer: dict[str, Any] = {"status": "accepted", "channel": channel, **accepted[0]}
        if len(accepted) > 1:
            answer["orders"] = accepted
        return JSONResponse(answer, status_code=202)

    @app.post(
        "/shipments",
        status_code=202,
        responses={
            401: {"description": "Missing, stale or wrong signature"},
            404: {"description": "No such order"},
            409: {"description": "The order is cancelled or refunded"},
            413: {"description": "Body larger than ORDERBUS_MAX_BODY_BYTES"},
            422: {"description": "Not a shipment report"},
            503: {"description": "Broker or database unavailable; send it again later"},
        },
    )
    async def shipment(request: Request) -> JSONResponse:
        """A warehouse reports a shipment (router/shipments.py), signed like a
        channel's webhook with one of ORDERBUS_SHIPMENT_SECRETS."""
        where = "shipments"
        body, size, too_large = await _read_limited(request, settings.max_body_bytes)
        if too_large:
            error = ConnectorError(413, "payload_too_large", f"body over {settings.max_body_bytes}")
            return await refuse(request, where, body, size, error)
        try:
            verify(
                settings.shipment_secrets,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                deps.clock(),
                settings.signature_tolerance,
            )
        except SignatureError as exc:
            return await refuse(request, where, body, size, _as_error(401, exc))
        try:
            if deps.accept_shipment is None:
                raise UnknownOrder("this ingest takes no shipment reports")
            message_id = await run_in_threadpool(deps.accept_shipment, body)
        except UnknownOrder as exc:
            return await refuse(request, where, body, size, _as_error(404, exc))
        except OrderClosed as exc:
            return await refuse(request, where, body, size, _as_error(409, exc))
        except MalformedMessage as exc:
            return await refuse(request, where, body, size, _as_error(422, exc))
        except TransientError as exc:
            return await refuse(request, where, body, size, _as_error(503, exc))
        return JSONResponse({"status": "accepted", "message_id": message_id}, status_code=202)

    return app
