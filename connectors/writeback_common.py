"""What every channel's write-back shares: the shipment on the revision, the
carrier's id, and a connector client's errors read as the consumer's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from canonical.errors import DeliveryRejected, EndpointUnavailable
from connectors.base import ConnectorError


def shipment_of(order: dict[str, Any]) -> dict[str, Any]:
    shipment = order.get("shipment")
    if not isinstance(shipment, dict):
        raise DeliveryRejected(
            "no shipment on this revision: nothing to write back", status_code=0, response_body=""
        )
    return shipment


ALREADY_SHIPPED = ("已发货", "已经发货", "不能重复发货", "已出库")


def carrier_id(shipment: dict[str, Any], platform: str) -> str:
    code = str(shipment.get("carrier_code") or "")
    if not code.isdigit():
        raise DeliveryRejected(
            f"shipment.carrier_code must be {platform}'s numeric id of the carrier "
            f"({shipment.get('carrier')!r} came with {code or 'none'})",
            status_code=0,
            response_body="",
        )
    return code


def as_delivery_error(platform: str, exc: ConnectorError | EndpointUnavailable) -> Exception | None:
    """A connector's error as the consumer's: None when it says shipped already;
    a transient one as it is (tried again); a refusal as a dead letter."""
    if any(w in exc.detail for w in ALREADY_SHIPPED):
        return None
    if isinstance(exc, EndpointUnavailable):
        return exc
    return DeliveryRejected(f"{platform} refused: {exc.detail}", status_code=0, response_body="")


def through_connector(platform: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """A connector client's call; None when the platform says the order was
    shipped already (an earlier delivery of this shipment: done)."""
    try:
        return call()
    except (ConnectorError, EndpointUnavailable) as exc:
        problem = as_delivery_error(platform, exc)
        if problem is None:
            return None
        if problem is exc:
            raise  # transient: tried again
        raise problem from exc
