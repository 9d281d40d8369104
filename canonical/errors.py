"""orderbus's exception tree.

OrderbusError
├── PermanentError        bad data: retrying cannot help -> dead letter with its reason
│   ├── MalformedMessage  not JSON, wrong schema, missing envelope
│   ├── ValidationFailed  business rules (carries machine-readable reasons)
│   ├── SkuNotMapped      a platform SKU with no mapping where one is required
│   ├── DeliveryRejected  the target system answered 4xx
│   ├── UnknownOrder      a report (a shipment) names no order orderbus has
│   └── OrderClosed       ... or one that is cancelled or refunded
└── TransientError        something is down: retry with backoff, then dead letter
    ├── BrokerUnavailable
    ├── PublishNotConfirmed   nacked, unroutable, or confirm timed out
    ├── DatabaseUnavailable
    ├── DeliveryInProgress    another consumer process is sending the same message now
    └── EndpointUnavailable   connection error, timeout, 5xx or 429
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OrderbusError(Exception):
    reason: str = "error"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class PermanentError(OrderbusError):
    reason = "permanent_error"


class TransientError(OrderbusError):
    reason = "transient_error"


class MalformedMessage(PermanentError):
    reason = "malformed_message"


@dataclass(frozen=True)
class Violation:
    """One broken rule, for machines (code, field) and people (message)."""

    code: str
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


class ValidationFailed(PermanentError):
    reason = "validation_failed"

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))


class DeliveryRejected(PermanentError):
    reason = "delivery_rejected"

    def __init__(self, detail: str, *, status_code: int, response_body: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.response_body = response_body


class SkuNotMapped(PermanentError):
    """A line's platform SKU has no mapping where mapping is required: the
    detail names the channel, shop and SKU, so adding that mapping fixes it."""

    reason = "sku_not_mapped"


class DocumentNotSupported(PermanentError):
    """An after-sale's document (an intercept, a reversal, a refund, a return)
    for a system whose adapter cannot make it yet: a person makes it there by
    hand, then discards the dead letter."""

    reason = "document_not_supported"


class UnknownOrder(PermanentError):
    reason = "unknown_order"


class OrderClosed(PermanentError):
    reason = "order_closed"


class BrokerUnavailable(TransientError):
    reason = "broker_unavailable"


class PublishNotConfirmed(TransientError):
    reason = "publish_not_confirmed"


class DatabaseUnavailable(TransientError):
    reason = "database_unavailable"


class DeliveryInProgress(TransientError):
    """A copy of this message (a re-publish after a crash, a redelivery after
    a lost connection) is being sent by another consumer process right now:
    this copy waits, then finds the other's inbox row and has no effect."""

    reason = "delivery_in_progress"


class EndpointUnavailable(TransientError):
    reason = "endpoint_unavailable"


class EndpointTimedOut(EndpointUnavailable):
    """No answer in time: unlike a refused connection, the system may have
    done it (a slow system that commits after we gave up). A retry carries
    the same Idempotency-Key; a person checks the system before retrying."""

    reason = "endpoint_timeout"
