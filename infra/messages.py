"""Reading a delivery from the bus: its envelope (the headers every orderbus
message carries) and, for an order, the canonical order in its JSON body.
What cannot be read is a :class:`MalformedMessage` naming what is wrong, a
permanent error: it is dead-lettered, never retried."""

from __future__ import annotations

from pydantic import ValidationError

from canonical.envelope import Envelope, EnvelopeError
from canonical.errors import MalformedMessage
from canonical.order import CanonicalOrder
from infra.bus import Delivery


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
