"""``POST /ingest/{channel}``: a platform's webhook, in the steps every
request goes through: the channel is known and the body within the limit;
the media type is the connector's; the connector checks the signature and
reads the orders; each order (or fetch request) is published and confirmed;
then the platform gets the answer it expects. Any step may refuse, and every
refusal is recorded (connectors/ingest_http.py)."""

from __future__ import annotations

import hashlib
import logging
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from canonical.errors import TransientError
from canonical.order import CanonicalOrder
from canonical.validation import violations
from connectors.base import (
    Arrival,
    ChannelConfig,
    ConnectorError,
    StatusChange,
    WebhookConnector,
    WebhookRequest,
    WebhookResult,
)
from connectors.ingest_http import Received, deps_of
from connectors.known_orders import stored_order, with_after_sale
from connectors.publishing import fetch_message, order_message
from connectors.registry import channel_config_of, connector_for
from infra import raw_payloads
from infra.crashpoints import crash_point
from infra.logs import about
from infra.messages import OutgoingMessage
from infra.tracing import span

log = logging.getLogger(__name__)
router = APIRouter()
ACCEPTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not UTF-8 or not valid JSON"},
    401: {"description": "Missing, stale or wrong signature"},
    404: {"description": "Unknown channel"},
    413: {"description": "Body larger than ORDERBUS_MAX_BODY_BYTES"},
    415: {"description": "Not application/json in UTF-8"},
    422: {"description": "JSON that is not a canonical order"},
    503: {"description": "Broker unavailable; retry after Retry-After seconds"},
}


class Refused(Exception):
    """A step said no; the request is answered with :attr:`error` (``brief``:
    recorded briefly, within a budget: anyone can send it)."""

    def __init__(self, error: ConnectorError, *, brief: bool = False) -> None:
        super().__init__(error.detail)
        self.error = error
        self.brief = brief


@router.post("/ingest/{channel}", status_code=202, responses=ACCEPTED_RESPONSES)
async def ingest(channel: str, request: Request) -> JSONResponse:
    """One span for the request (infra/tracing.py): the orders it publishes
    carry it to the router and on to each system."""
    with span("ingest", channel=channel[:64]):
        return await _ingest(channel, request)


async def _ingest(channel: str, request: Request) -> JSONResponse:
    deps = deps_of(request)
    received = await Received.read(request, channel, deps.settings.max_body_bytes)
    try:
        config, connector = _channel(received)
        result = _read(received, config, connector)
        if result.changes or result.after_sales:
            result, notes = await run_in_threadpool(_applied, received, result)
            for note in notes:  # answered 200 all the same: recorded for a person
                await received.record(200, "amounts_not_applied", note)
        if not result.arrivals and not result.references:
            return await _ignored(received, connector, result)
        accepted = await _publish(received, _messages(received, result))
        if result.arrivals:  # the platform's own order, beside ours
            ids = [a["message_id"] for a in accepted[: len(result.arrivals)]]
            if deps.keep_raw is not None:  # kept by a thread of its own
                deps.keep_raw(ids, channel, dict(request.headers), received.body)
            else:
                await run_in_threadpool(
                    raw_payloads.keep, deps.engine, ids, channel, dict(request.headers),
                    received.body,
                )  # fmt: skip
    except Refused as refused:
        return await received.refuse(refused.error, brief=refused.brief)
    return _accepted(channel, connector, accepted)


def _channel(received: Received) -> tuple[ChannelConfig, WebhookConnector]:
    """The channel's configuration and connector, once the channel is known,
    the body within the limit and of the connector's media type in UTF-8."""
    settings = deps_of(received.request).settings
    channel = received.where
    if channel not in settings.channel_secrets:
        detail = f"no channel {channel[:64]!r} is configured"
        raise Refused(ConnectorError(404, "unknown_channel", detail), brief=True)
    problem = received.body_problem()
    if problem is not None:
        raise Refused(problem)
    config = channel_config_of(settings, channel)
    connector = connector_for(config.connector)
    content_type = received.request.headers.get("content-type", "")
    media, _, params = content_type.partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
    if media.strip().lower() not in connector.media_types or charset not in ("utf-8", "utf8"):
        wanted = " or ".join(sorted(t for t in connector.media_types if t))
        detail = f"send {wanted} in UTF-8, not {content_type!r}"
        raise Refused(ConnectorError(415, "unsupported_media_type", detail))
    return config, connector


def _read(received: Received, config: ChannelConfig, connector: WebhookConnector) -> WebhookResult:
    """The connector checks the signature, then reads the platform's payload."""
    deps = deps_of(received.request)
    webhook = WebhookRequest(
        headers={k.lower(): v for k, v in received.request.headers.items()},
        body=received.body,
        received_at=deps.clock(),
    )
    try:
        connector.authenticate(webhook, config, deps.settings.signature_tolerance)
        return connector.read(webhook, config)
    except ConnectorError as exc:
        raise Refused(exc) from exc


async def _ignored(
    received: Received, connector: WebhookConnector, result: WebhookResult
) -> JSONResponse:
    """Not an order (a ping, an event orderbus does not read): answered as the
    platform expects, and recorded, so nothing vanishes unseen."""
    reason = result.ignored or "no orders in the request"
    await received.record(200, "ignored", reason)
    log.info("ingest %s: nothing to route (%s)", received.where, reason)
    if connector.reply is not None:
        return JSONResponse(connector.reply, status_code=200)
    return JSONResponse({"status": "ignored", "reason": reason}, status_code=200)


def _applied(received: Received, result: WebhookResult) -> tuple[WebhookResult, list[str]]:
    """Each status change applied to the order orderbus has (its lines as
    stored; its status, update time and the amounts that still add up with
    those lines as the platform says): an arrival like any other, which the
    router checks (a status never goes back). A change to an order orderbus
    does not have is recorded, not routed: its full payload will come. With
    what to record about amounts that could not be applied."""
    engine = deps_of(received.request).engine
    arrivals = list(result.arrivals)
    unknown, notes = [], []

    def stored(shop: str, external_id: str) -> dict[str, Any] | None:
        return stored_order(engine, received.where, shop, external_id)

    for change in result.changes:
        known = stored(change.shop, change.external_id)
        if known is None:
            unknown.append(change.external_id)
            continue
        revised, note = revised_from(known, change)
        if note:
            notes.append(note)
        arrivals.append(Arrival(revised, change.delivery_id))
    for sale in result.after_sales:
        known = stored(sale.shop, sale.external_id)
        if known is None:
            unknown.append(sale.external_id)
            continue
        arrivals.append(Arrival(with_after_sale(known, sale), sale.delivery_id))
    ignored = (
        f"status change of order(s) {', '.join(unknown)} orderbus does not have yet: recorded; "
        "their full payload brings them"
        if unknown and not arrivals
        else result.ignored
    )
    return WebhookResult(tuple(arrivals), ignored, result.references), notes


def revised_from(stored: dict[str, Any], change: StatusChange) -> tuple[CanonicalOrder, str | None]:
    """The stored order with ``change``'s status, time and amounts; when its
    amounts do not add up with the stored lines (the lines changed, and did
    not come), the stored amounts stay and the note says why."""
    for assigned in ("order_number", "accounts", "mapping_version"):
        stored.pop(assigned, None)
    stored["status"] = change.status
    if change.updated_at is not None:
        stored["updated_at"] = change.updated_at.isoformat()
    kept = CanonicalOrder.model_validate(stored)
    new_amounts = {k: str(v) for k, v in change.amounts.items()}
    if not new_amounts or all(
        Decimal(str(stored.get(k, "0"))) == v for k, v in change.amounts.items()
    ):
        return kept, None
    if change.currency not in (None, kept.currency):
        return kept, (
            f"order {change.external_id}: the update is in {change.currency}, the order in "
            f"{kept.currency}: its amounts were not applied, only its status"
        )
    revised = CanonicalOrder.model_validate({**stored, **new_amounts})
    if violations(revised):
        told = ", ".join(f"{k} {v}" for k, v in sorted(new_amounts.items()))
        return kept, (
            f"order {change.external_id}: the update says {told}, which does not add up with "
            "the lines orderbus has (the lines did not come): its status was applied, its "
            "amounts were not; the order's full payload will bring them"
        )
    return revised, None


def _messages(received: Received, result: WebhookResult) -> list[tuple[OutgoingMessage, str]]:
    """Each order as its message, and each order the push only names as a
    fetch request on the channel's fetch queue (the worker there gets the
    order from the platform's API); with the order's external id."""
    topology = deps_of(received.request).topology
    channel = received.where
    outgoing = [
        (
            order_message(topology, channel, a.order, delivery_message_id(channel, a)),
            a.order.external_id,
        )
        for a in result.arrivals
    ]
    outgoing += [(fetch_message(topology, channel, r), r.external_id) for r in result.references]
    return outgoing


async def _publish(
    received: Received, outgoing: list[tuple[OutgoingMessage, str]]
) -> list[dict[str, str]]:
    """Publish each message and wait for the broker's confirm; a broker that
    cannot confirm is a 503. The platform then sends the whole request again:
    what was already published carries the same message id and is recorded once."""
    confirms = deps_of(received.request).confirms
    accepted: list[dict[str, str]] = []
    for message, external_id in outgoing:
        try:
            await confirms.publish(message)
            crash_point("ingest.after_confirm")
        except TransientError as exc:
            detail = f"the order was not accepted: {exc.detail}"
            raise Refused(ConnectorError(503, exc.reason, detail)) from exc
        log.info(
            "ingest %s: accepted %s as %s",
            received.where,
            external_id,
            message.message_id,
            extra=about(
                channel=received.where,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
            ),
        )
        accepted.append({"message_id": message.message_id, "external_id": external_id})
    return accepted


def _accepted(
    channel: str, connector: WebhookConnector, accepted: list[dict[str, str]]
) -> JSONResponse:
    """202 with the message ids, or the platform's own success body with 200."""
    if connector.reply is not None:
        ids = ",".join(a["message_id"] for a in accepted)
        return JSONResponse(
            connector.reply, status_code=200, headers={"X-Orderbus-Message-Ids": ids}
        )
    answer: dict[str, Any] = {"status": "accepted", "channel": channel, **accepted[0]}
    if len(accepted) > 1:
        answer["orders"] = accepted
    return JSONResponse(answer, status_code=202)


def delivery_message_id(channel: str, arrival: Arrival) -> str | None:
    """A message id that is the same for every redelivery of one platform
    delivery (None: the platform gives no delivery id; a fresh one is made)."""
    if not arrival.delivery_id:
        return None
    delivery = arrival.delivery_id.strip()
    if len(channel) + len(delivery) + 1 > 100 or not delivery.isprintable():
        delivery = hashlib.sha256(delivery.encode("utf-8")).hexdigest()[:40]
    return f"{channel}.{delivery}"
