"""An order read by a connector, as the message the router receives; and the
two things every non-webhook source (file import, poller) needs: publish a
batch of orders under given message ids, and record an input it cannot read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from canonical.envelope import Envelope
from canonical.errors import MalformedMessage, TransientError
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, OrderReference
from connectors.rejections import record_rejection
from infra.bus import Publisher
from infra.messages import Delivery, OutgoingMessage, Results
from infra.topology import Topology, fetch_routing_key, ingest_routing_key
from infra.tracing import current_traceparent

PublishMany = Callable[[list[CanonicalOrder], list[str]], list[Exception | None]]


def order_message(
    topology: Topology, channel: str, order: CanonicalOrder, message_id: str | None = None
) -> OutgoingMessage:
    """The input message for ``order``; a fresh message id unless one is given
    (a platform's delivery id, a file import's content id)."""
    envelope = replace(
        Envelope.new(channel, message_id=message_id), traceparent=current_traceparent()
    )
    return OutgoingMessage(
        exchange=topology.exchange,
        routing_key=ingest_routing_key(channel),
        body=order.to_wire(),
        message_id=envelope.message_id,
        headers=envelope.headers(),
        correlation_id=envelope.correlation_id,
    )


def scoped_id(channel: str, kind: str, key: str) -> str:
    """``{channel}.{kind}.{key}``, the key hashed when it is too long or not printable."""
    key = key.strip()
    if len(channel) + len(kind) + len(key) + 2 > 100 or not key.isprintable():
        key = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"{channel}.{kind}.{key}" if kind else f"{channel}.{key}"


def fetch_message(topology: Topology, channel: str, reference: OrderReference) -> OutgoingMessage:
    """The request to fetch the order ``reference`` names (for the channel's
    fetch worker, connectors/order_fetch.py); the same message id on every
    redelivery of the push."""
    envelope = Envelope.new(channel, message_id=scoped_id(channel, "fetch", reference.delivery_id))
    body: dict[str, Any] = {
        "external_id": reference.external_id,
        "delivery_id": reference.delivery_id,
        "shop": reference.shop,
    }
    if reference.version is not None:
        body["version"] = reference.version
    return OutgoingMessage(
        exchange=topology.exchange,
        routing_key=fetch_routing_key(channel),
        body=json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8"),
        message_id=envelope.message_id,
        headers=envelope.headers(),
        correlation_id=envelope.correlation_id,
    )


def fetch_publisher(
    publisher: Publisher, topology: Topology, channel: str
) -> Callable[[list[OrderReference]], list[Exception | None]]:
    """Publish fetch requests; for each, None once the broker confirmed it, else the error."""

    def publish_many(references: list[OrderReference]) -> list[Exception | None]:
        return publisher.publish_many([fetch_message(topology, channel, r) for r in references])

    return publish_many


def order_publisher(publisher: Publisher, topology: Topology, channel: str) -> PublishMany:
    """Publish orders under the given message ids; for each, None once the
    broker confirmed it, else the error."""

    def publish_many(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        return publisher.publish_many(
            [order_message(topology, channel, o, i) for o, i in zip(orders, ids, strict=True)]
        )

    return publish_many


def record_unreadable(
    engine: Engine,
    channel: str,
    reason: str,
    detail: str,
    text: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Record an input a source could not read (a file's row, a polled order)
    in ``rejected_requests``, with its text, for a person to act on."""
    body = text.encode("utf-8")
    record_rejection(
        engine,
        channel=channel,
        status_code=422,
        reason=reason,
        detail=detail,
        headers=dict(headers or {}),
        body=body,
        body_size=len(body),
        remote_addr=None,
    )


def as_malformed(exc: ConnectorError, about: str = "") -> MalformedMessage:
    """A connector's refusal of an input as the bus's permanent error: a dead
    letter whose detail lists the fields at fault."""
    errors = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors[:10])
    detail = f"{exc.detail} ({errors})" if errors else exc.detail
    return MalformedMessage(f"{about}{detail}", reason=exc.reason)


def translate_and_publish(
    deliveries: list[Delivery],
    translate: Callable[[Delivery], OutgoingMessage],
    publisher: Publisher,
) -> Results:
    """A bus batch handler's work for an inbound queue (legacy AMQP, fetch
    requests): each delivery translated into its order's message, then all
    published with confirms; a delivery is acknowledged (None) only once its
    order is. What cannot be translated is its result (permanent: a dead
    letter; transient: tried again)."""
    results: Results = [None] * len(deliveries)
    outgoing: list[tuple[int, OutgoingMessage]] = []
    for index, delivery in enumerate(deliveries):
        try:
            outgoing.append((index, translate(delivery)))
        except (MalformedMessage, TransientError) as exc:
            results[index] = exc
    if outgoing:
        try:
            confirmed = publisher.publish_many([m for _, m in outgoing])
        except TransientError as exc:
            confirmed = [exc] * len(outgoing)
        for (index, _), error in zip(outgoing, confirmed, strict=True):
            results[index] = error
    return results
