"""The messages on the bus, as orderbus sees them without kombu: what is
published (:class:`OutgoingMessage`), what is received (:class:`Delivery`),
the headers orderbus adds, the batch handler's contract; and reading a
delivery: its envelope (the headers every orderbus
message carries) and, for an order, the canonical order in its JSON body.
What cannot be read is a :class:`MalformedMessage` naming what is wrong, a
permanent error: it is dead-lettered, never retried."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from canonical.envelope import HEADER_PREFIX, Envelope, EnvelopeError
from canonical.errors import MalformedMessage, TransientError
from canonical.order import CanonicalOrder

H_ORIGINAL_EXCHANGE = HEADER_PREFIX + "original-exchange"
H_ORIGINAL_ROUTING_KEY = HEADER_PREFIX + "original-routing-key"
H_EXCEPTION = HEADER_PREFIX + "exception"
H_DELIVERIES = HEADER_PREFIX + "deliveries"
H_CORRELATION = HEADER_PREFIX + "correlation-id"

CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A received message, as handlers see it: raw bytes, never decoded by kombu."""

    queue: str
    body: bytes
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    exchange: str
    routing_key: str
    redelivered: bool
    content_type: str | None
    deliveries: int

    def body_key(self) -> str:
        return message_key(self.message_id, self.body)


Handler = Callable[[Delivery], None]
# What a batch handler says about each delivery, in order: None (done: ack),
# a PermanentError (dead-letter it), or another exception (transient: retried
# in place, then requeued). Raising instead fails the whole batch.
Results = list[BaseException | None]
BatchHandler = Callable[[list[Delivery]], Results]


def one_at_a_time(handler: Handler) -> BatchHandler:
    """A batch handler that calls ``handler`` for each delivery in turn.

    After a transient failure the rest of the batch is not tried (a database
    or endpoint that is down is down for all of them): each gets the same
    error and is retried with it.
    """

    def handle(deliveries: list[Delivery]) -> Results:
        results: Results = []
        for delivery in deliveries:
            if results and isinstance(results[-1], TransientError):
                results.append(results[-1])
                continue
            try:
                handler(delivery)
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    return handle


def message_key(message_id: str | None, body: bytes) -> str:
    """A message's identity: its id, or for a sender that set none, its body's hash."""
    return message_id or "sha256:" + hashlib.sha256(body).hexdigest()


def envelope_of(delivery: Delivery) -> Envelope:
    """A JSON delivery's envelope, or MalformedMessage saying what is wrong."""
    if delivery.content_type and delivery.content_type.split(";")[0].strip() != "application/json":
        raise MalformedMessage(f"content type {delivery.content_type!r} is not application/json")
    try:
        return Envelope.from_message(delivery.message_id, delivery.correlation_id, delivery.headers)
    except EnvelopeError as exc:
        raise MalformedMessage(str(exc), reason="missing_envelope") from exc


def parse_delivery(delivery: Delivery) -> tuple[Envelope, CanonicalOrder]:
    """Envelope and order of a delivery, or MalformedMessage saying what is wrong."""
    envelope = envelope_of(delivery)
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"body is not UTF-8: {exc}", reason="invalid_encoding") from exc
    try:
        order = CanonicalOrder.model_validate_json(text)
    except ValidationError as exc:
        reason = (
            "malformed_json" if exc.errors()[0]["type"] == "json_invalid" else "schema_mismatch"
        )
        raise MalformedMessage(_summarise(exc), reason=reason) from exc
    if order.channel != envelope.channel:
        raise MalformedMessage(
            f"order channel {order.channel!r} differs from envelope channel {envelope.channel!r}",
            reason="schema_mismatch",
        )
    return envelope, order


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
