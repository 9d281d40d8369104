"""A parcel's tracking events become the order's next revision.

A carrier's events (from a tracking aggregator's push or a poll of its query
API: connectors/kuaidi100.py) name a tracking number; the intake finds the
order that shipped with it (``orders.tracking_number``), adds the events it
does not have (newest first), sets where the parcel is, and publishes that
revision, with publisher confirms, as an input message of the order's
channel. From there the router treats it as any other revision:

- the same events again are the same revision: recorded once, no effect;
- ``delivered`` makes the order ``delivered`` (its status never goes back,
  and a parcel once delivered stays delivered);
- a change of tracking alone goes to no system (the warehouse, finance and
  the channel heard of the shipment already); the first ``exception`` tells
  the customer, once (router/batch.py, targets/notify/), and the stall watch
  (targets/notify/parcels.py) does the same for a parcel the carrier has said
  nothing of for too long.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Engine, select

from canonical.errors import MalformedMessage, OrderClosed, UnknownOrder
from canonical.order import CanonicalOrder, OrderStatus
from canonical.tracking import ParcelState, Tracking, TrackingEvent, TrackingReport
from infra.bus import Publisher
from infra.database import translate_db_errors
from infra.tables import orders
from infra.topology import Topology
from router.revisions import publish_revision

log = logging.getLogger(__name__)
MAX_EVENTS = 200
__all__ = ["TrackingIntake", "TrackingReport", "merged_tracking", "only_tracking_changed"]


def merged_tracking(current: Tracking | None, report: TrackingReport) -> Tracking:
    """The events of both, newest first, each once; a parcel once delivered stays so."""
    seen: dict[tuple[str, str], TrackingEvent] = {}
    for event in [*(current.events if current else []), *report.events]:
        seen.setdefault((event.at.isoformat(), event.description), event)
    events = sorted(seen.values(), key=lambda e: e.at, reverse=True)[:MAX_EVENTS]
    state = report.state
    if current is not None and current.state == ParcelState.DELIVERED:
        state = ParcelState.DELIVERED
    newest = events[0].at if events else (current.updated_at if current else None)
    if newest is None:
        raise MalformedMessage(f"tracking {report.tracking_number}: no event, and none before")
    return Tracking(state=state, updated_at=newest, events=events)


class TrackingIntake:
    def __init__(self, engine: Engine, publisher: Publisher, topology: Topology) -> None:
        self.engine = engine
        self.publisher = publisher
        self.topology = topology

    def revision(self, report: TrackingReport) -> tuple[CanonicalOrder, str]:
        """The order's revision with the parcel's events, and its message id."""
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(orders.c.order_number, orders.c.body).where(
                    orders.c.tracking_number == report.tracking_number
                )
            ).all()
        if not rows:
            raise UnknownOrder(
                f"no order shipped with tracking number {report.tracking_number}: "
                "was its shipment reported?"
            )
        if len(rows) > 1:
            names = ", ".join(r.order_number for r in rows)
            raise UnknownOrder(
                f"tracking number {report.tracking_number} names {len(rows)} orders ({names})"
            )
        number, body = rows[0]
        current = CanonicalOrder.model_validate_json(body)
        if current.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
            raise OrderClosed(
                f"order {number} is {current.status.value}: its parcel's events are not "
                "applied (a return is tracked by the warehouse)"
            )
        tracking = merged_tracking(current.tracking, report)
        status = current.status
        if tracking.state == ParcelState.DELIVERED and status.rank < OrderStatus.DELIVERED.rank:
            status = OrderStatus.DELIVERED
        stamp = max(tracking.updated_at, current.updated_at or tracking.updated_at)
        revised = current.model_copy(
            update={
                "order_number": None,
                "status": status,
                "tracking": tracking,
                "updated_at": stamp,
            }
        )
        stamp_text = tracking.updated_at.isoformat()
        key = f"{number}|{tracking.state.value}|{stamp_text}|{len(tracking.events)}"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return CanonicalOrder.model_validate(revised.model_dump()), f"tracking.{digest}"

    def accept(self, report: TrackingReport) -> str:
        """Publish the revision (confirmed by the broker); its message id."""
        order, message_id = self.revision(report)
        publish_revision(self.publisher, self.topology, order, message_id)
        log.info(
            "tracking: %s/%s %s (%s) as %s",
            order.channel,
            order.external_id,
            report.tracking_number,
            order.tracking.state.value if order.tracking else "-",
            message_id,
        )
        return message_id


def only_tracking_changed(before_body: str, after: CanonicalOrder) -> bool:
    """Whether ``after`` differs from the stored revision only in its parcel's
    tracking (and the time that came with it)."""
    before = CanonicalOrder.model_validate_json(before_body)
    same = before.model_copy(update={"tracking": after.tracking, "updated_at": after.updated_at})
    return same.model_dump() == after.model_dump()
