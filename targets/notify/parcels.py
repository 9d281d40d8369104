"""The stall watch: a shipped parcel the carrier has said nothing of for
``ORDERBUS_NOTIFY.stall_after_hours`` (since its last tracking event, or its
shipment when it has none) gets the one ``parcel_problem`` message to the
customer target, written to the outbox like any fan-out message.

It is the same message the router writes for a carrier's first exception
(router/tracking.py): its id is ``{order number}-parcel-customer``, and the
order is marked (``orders.parcel_noticed_at``) in the transaction that writes
it, so a customer hears of a parcel's problem once, whichever saw it first.
Only parcels that stalled within ``horizon`` (7 days) are looked at: turning
the watch on does not write to every customer of an old order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, or_, select, update

from canonical.envelope import Envelope
from canonical.tracking import PARCEL_NOTICE_SUFFIX
from infra.database import translate_db_errors
from infra.tables import orders, outbox
from infra.topology import Topology, delivery_routing_key

log = logging.getLogger(__name__)


class ParcelWatch:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        after: timedelta,
        interval: float = 300.0,
        horizon: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.topology = topology
        self.after = after
        self.interval = interval
        self.horizon = horizon
        self.clock = clock
        self.on_commit = on_commit

    def check_once(self, limit: int = 500) -> int:
        """Queue the messages of the parcels that stalled; how many."""
        now = self.clock()
        late = now - self.after
        last_news = func.coalesce(orders.c.parcel_updated_at, orders.c.updated_at)
        due = (
            select(orders.c.id, orders.c.order_number, orders.c.channel, orders.c.version)
            .where(
                orders.c.status == "shipped",
                orders.c.parcel_noticed_at.is_(None),
                or_(orders.c.parcel_state.is_(None), orders.c.parcel_state != "delivered"),
                last_news < late,
                last_news >= late - self.horizon,
            )
            .order_by(last_news)
            .limit(limit)
        )
        told = 0
        with translate_db_errors(), self.engine.begin() as conn:
            for order_id, number, channel, version in conn.execute(due).all():
                marked = conn.execute(
                    update(orders)
                    .where(orders.c.id == order_id, orders.c.parcel_noticed_at.is_(None))
                    .values(parcel_noticed_at=now)
                    .returning(orders.c.body)
                ).scalar_one_or_none()
                if marked is None:
                    continue  # the router (an exception) or another watch told them
                message_id = f"{number}{PARCEL_NOTICE_SUFFIX}"
                envelope = Envelope.new(channel, message_id).caused(
                    message_id, order_number=number, order_version=version, target="customer"
                )
                conn.execute(
                    insert(outbox).values(
                        message_id=message_id,
                        exchange=self.topology.exchange,
                        routing_key=delivery_routing_key("customer"),
                        headers=envelope.headers(),
                        correlation_id=envelope.correlation_id,
                        body=marked,
                        created_at=now,
                        attempts=0,
                    )
                )
                told += 1
        if told:
            log.info("stall watch: %d parcels without news; customers told", told)
            if self.on_commit is not None:
                self.on_commit()
        return told

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check_once()
            except Exception:  # logged; the next look tries again
                log.exception("stall watch: the check failed")
            stop.wait(self.interval)
