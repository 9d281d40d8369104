"""The envelope: what travels beside an order as AMQP properties and headers.

The body is always the JSON order; everything about the *message* (who sent it,
what caused it, how often it was tried) lives here, so a body can be retried
byte for byte.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from canonical.order import SCHEMA_VERSION

HEADER_PREFIX = "x-orderbus-"
H_CAUSATION = HEADER_PREFIX + "causation-id"
H_CHANNEL = HEADER_PREFIX + "channel"
H_RECEIVED_AT = HEADER_PREFIX + "received-at"
H_SCHEMA = HEADER_PREFIX + "schema-version"
H_ATTEMPT = HEADER_PREFIX + "attempt"
H_ORDER_NUMBER = HEADER_PREFIX + "order-number"
H_ORDER_VERSION = HEADER_PREFIX + "order-version"
H_TARGET = HEADER_PREFIX + "target"
# an after-sale's document (router/aftersales.py): intercept, reversal, refund, return
H_DOCUMENT = HEADER_PREFIX + "document"
H_AFTER_SALE = HEADER_PREFIX + "after-sale"
H_REASON = HEADER_PREFIX + "reason"
H_DETAIL = HEADER_PREFIX + "detail"
H_SOURCE_QUEUE = HEADER_PREFIX + "source-queue"
# W3C trace context (infra/tracing.py): the span that made the message
H_TRACEPARENT = "traceparent"


# the channel of the made-up order and message the router and the consumers
# rehearse with at start (router.rehearsal, DeliveryConsumer.rehearse): no platform has it
REHEARSAL_CHANNEL = "orderbus-rehearsal"


def new_message_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class EnvelopeError(ValueError):
    """A message arrived without the envelope fields every message must carry."""


@dataclass(frozen=True)
class Envelope:
    message_id: str
    channel: str
    correlation_id: str
    causation_id: str | None = None
    received_at: datetime = field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION
    attempt: int = 1
    order_number: str | None = None
    order_version: int | None = None
    target: str | None = None
    traceparent: str | None = None  # the span that made this message (W3C), when traced

    @classmethod
    def new(cls, channel: str, message_id: str | None = None) -> Envelope:
        mid = message_id or new_message_id()
        return cls(message_id=mid, channel=channel, correlation_id=mid)

    def caused(
        self,
        message_id: str,
        *,
        order_number: str | None = None,
        order_version: int | None = None,
        target: str | None = None,
    ) -> Envelope:
        """The envelope of a message this one caused (same correlation and
        channel; the order and target named anew). Made field by field:
        ``dataclasses.replace`` took 5.5 us against 3.0, three times an order."""
        return Envelope(
            message_id,
            self.channel,
            self.correlation_id,
            self.message_id,
            self.received_at,
            self.schema_version,
            1,
            order_number,
            order_version,
            target,
            self.traceparent,
        )

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            H_CHANNEL: self.channel,
            H_RECEIVED_AT: self.received_at.isoformat(),
            H_SCHEMA: self.schema_version,
            H_ATTEMPT: self.attempt,
        }
        if self.causation_id:
            headers[H_CAUSATION] = self.causation_id
        if self.order_number:
            headers[H_ORDER_NUMBER] = self.order_number
        if self.order_version is not None:
            headers[H_ORDER_VERSION] = self.order_version
        if self.target:
            headers[H_TARGET] = self.target
        if self.traceparent:
            headers[H_TRACEPARENT] = self.traceparent
        return headers

    @classmethod
    def from_message(
        cls, message_id: str | None, correlation_id: str | None, headers: dict[str, Any] | None
    ) -> Envelope:
        headers = headers or {}
        if not message_id:
            raise EnvelopeError("message has no message_id property")
        channel = headers.get(H_CHANNEL)
        if not isinstance(channel, str) or not channel:
            raise EnvelopeError(f"message has no {H_CHANNEL} header")
        try:
            received_raw = headers.get(H_RECEIVED_AT)
            received_at = datetime.fromisoformat(received_raw) if received_raw else utcnow()
            schema_version = int(headers.get(H_SCHEMA, SCHEMA_VERSION))
            attempt = int(headers.get(H_ATTEMPT, 1))
            raw_version = headers.get(H_ORDER_VERSION)
            order_version = None if raw_version is None else int(raw_version)
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed envelope header: {exc}") from exc
        if received_at.tzinfo is None:
            raise EnvelopeError(f"{H_RECEIVED_AT} must carry a timezone")
        return cls(
            message_id=message_id,
            channel=channel,
            correlation_id=correlation_id or message_id,
            causation_id=headers.get(H_CAUSATION),
            received_at=received_at,
            schema_version=schema_version,
            attempt=attempt,
            order_number=headers.get(H_ORDER_NUMBER),
            order_version=order_version,
            target=headers.get(H_TARGET),
            traceparent=_traceparent(headers.get(H_TRACEPARENT)),
        )


def _traceparent(value: object) -> str | None:
    """A W3C traceparent as sent (version-trace-parent-flags), else None: a
    malformed one is dropped, never an error (tracing is advisory)."""
    if isinstance(value, str) and len(value) == 55 and value.count("-") == 3:
        return value
    return None
