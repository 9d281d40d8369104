"""Shipments reported by the warehouse: each becomes the order's next revision.

The warehouse system reports ``{order_number, carrier, tracking_number,
shipped_at, event_id}`` by API (``POST /shipments`` on the ingest, signed like
a channel's webhook with ``ORDERBUS_SHIPMENT_SECRETS``) or by queue (JSON on
``{ns}.shipments``, routing key ``shipment.report``). The intake reads the
order's accepted revision, makes it ``shipped`` with the shipment attached
and its ``updated_at`` the time it was shipped, and publishes it, with
publisher confirms, as an input message of the order's channel. From there
the router treats it as any other revision:

- a report sent again has the same message id (the order number with the
  event id, else with the tracking number): recorded once, no second effect;
- the status never goes backwards: an order already delivered keeps its
  status, and the report is recorded as stale;
- the fan-out sends it to the finance and notification systems, to the
  channel (write-back, targets/writeback.py) and to the customer
  (targets/notify/), as configured.

An unknown order, or one cancelled or refunded, is refused with a reason a
person can act on (404 / 409 by API; a dead letter by queue); except an order
cancelled whose intercept went to the warehouse: shipped all the same, it
gets the shipment and a ``return`` after-sale (no money: the sale was
reversed already), so the warehouse is told the goods come back.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine, select

from canonical.aftersales import AfterSale, AfterSaleKind, AfterSaleStatus
from canonical.errors import MalformedMessage, OrderClosed, PermanentError, UnknownOrder
from canonical.order import CanonicalOrder, OrderStatus, Shipment
from infra.bus import Publisher
from infra.database import translate_db_errors
from infra.messages import Delivery
from infra.tables import orders
from infra.topology import SHIPMENT_ROUTING_KEY, Topology
from router.revisions import publish_revision

log = logging.getLogger(__name__)

__all__ = ["SHIPMENT_ROUTING_KEY", "ShipmentIntake", "ShipmentReport", "read_report"]


class ShipmentReport(BaseModel):
    """What the warehouse says: which order left, with which carrier."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order_number: str | None = Field(default=None, max_length=32)
    channel: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, max_length=200)
    carrier: str = Field(min_length=1, max_length=200)
    carrier_code: str | None = Field(default=None, max_length=200)
    tracking_number: str = Field(pattern=r"^[A-Za-z0-9-]{4,40}$")
    shipped_at: AwareDatetime | None = None
    event_id: str | None = Field(
        default=None, max_length=80, description="the warehouse's id of this report"
    )

    @model_validator(mode="after")
    def _names_an_order(self) -> ShipmentReport:
        if not self.order_number and not (self.channel and self.external_id):
            raise ValueError("name the order: order_number, or channel and external_id")
        return self


def read_report(body: bytes) -> ShipmentReport:
    try:
        return ShipmentReport.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedMessage(f"not a shipment report: {problems}") from exc


def too_late_for(order: CanonicalOrder) -> AfterSale | None:
    """The cancel of a cancelled order whose intercept went to the warehouse
    (it took effect), with no return yet: a shipment reported now means the
    warehouse shipped before the intercept reached it."""
    if order.status != OrderStatus.CANCELLED:
        return None
    known = {s.id for s in order.after_sales}
    for sale in order.after_sales:
        if sale.kind == AfterSaleKind.CANCEL and sale.status.takes_effect:
            return None if f"{sale.id}-return" in known else sale
    return None


class ShipmentIntake:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        topology: Topology,
        clock: Any = None,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.topology = topology
        self.clock = clock or (lambda: datetime.now(UTC))

    def revision(self, report: ShipmentReport) -> tuple[CanonicalOrder, str]:
        """The order's shipped revision, and the message id of this report."""
        if report.order_number:
            where = orders.c.order_number == report.order_number
        else:
            where = (orders.c.channel == report.channel) & (
                orders.c.external_id == report.external_id
            )
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(orders.c.order_number, orders.c.body).where(where)).all()
        if not rows:
            named = report.order_number or f"{report.channel}/{report.external_id}"
            raise UnknownOrder(
                f"no order {named} is known to orderbus: check the number the warehouse sent"
            )
        if len(rows) > 1:  # channel + external id in two shops
            raise UnknownOrder(
                f"{report.channel}/{report.external_id} names {len(rows)} orders "
                f"({', '.join(r.order_number for r in rows)}): send the order_number"
            )
        number, body = rows[0]
        current = CanonicalOrder.model_validate_json(body)
        cancel = too_late_for(current)
        if current.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED) and cancel is None:
            raise OrderClosed(
                f"order {number} is {current.status.value}: the warehouse shipped an order "
                "that must not ship; a person must call it back or reopen the order"
            )
        shipped_at = report.shipped_at or self.clock()
        shipment = Shipment(
            carrier=report.carrier,
            carrier_code=report.carrier_code,
            tracking_number=report.tracking_number,
            shipped_at=shipped_at,
        )
        status = current.status
        if status.rank < OrderStatus.SHIPPED.rank:
            status = OrderStatus.SHIPPED
        sales = list(current.after_sales)
        if cancel is not None:  # shipped before the intercept reached it: the goods come back
            sales.append(
                AfterSale(
                    id=f"{cancel.id}-return",
                    kind=AfterSaleKind.RETURN,
                    status=AfterSaleStatus.AGREED,
                    amount=Decimal("0"),
                    reason=f"cancelled, but shipped before the intercept: {report.carrier} "
                    f"{report.tracking_number}",
                    updated_at=shipped_at,
                )
            )
        stamp = max(shipped_at, current.updated_at or shipped_at)
        if cancel is not None and current.updated_at is not None:
            # the status stays cancelled: the revision must be the newer one
            stamp = max(shipped_at, current.updated_at + timedelta(seconds=1))
        revised = current.model_copy(
            update={
                "order_number": None,
                "status": status,
                "shipment": shipment,
                "after_sales": sales,
                "updated_at": stamp,
            }
        )
        # The order number is always part of it: a warehouse whose event ids
        # repeat across orders must not have one order's report taken for
        # a copy of another's.
        key = f"{number}|{report.event_id or report.tracking_number}"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return CanonicalOrder.model_validate(revised.model_dump()), f"shipment.{digest}"

    def accept_body(self, body: bytes) -> str:
        """A report as the warehouse sent it: read, then :meth:`accept`."""
        return self.accept(read_report(body))

    def accept(self, report: ShipmentReport) -> str:
        """Publish the shipped revision (confirmed by the broker); its message id."""
        order, message_id = self.revision(report)
        publish_revision(self.publisher, self.topology, order, message_id)
        log.info(
            "shipment: %s/%s shipped with %s %s as %s",
            order.channel,
            order.external_id,
            report.carrier,
            report.tracking_number,
            message_id,
        )
        return message_id

    def handle_batch(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        """Bus handler for ``{ns}.shipments``: bad reports and unknown orders are
        dead letters with their reason; a broker or database outage is retried."""
        results: list[BaseException | None] = []
        for delivery in deliveries:
            try:
                self.accept(read_report(delivery.body))
                results.append(None)
            except PermanentError as exc:
                results.append(exc)
        return results
