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

from sqlalchemy import func, or_, select

from canonical.tracking import PARCEL_NOTICE_SUFFIX
from infra.database import translate_db_errors
from infra.tables import orders
from targets.notify.notices import Watch, tell_once

log = logging.getLogger(__name__)


class ParcelWatch(Watch):
    name = "stall watch"

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
            for order in conn.execute(due).all():
                if tell_once(
                    conn, self.topology, tuple(order), "parcel_noticed_at", PARCEL_NOTICE_SUFFIX,
                    now,
                ):  # fmt: skip
                    told += 1  # (else the router, an exception, or another watch told them)
        if told:
            log.info("stall watch: %d parcels without news; customers told", told)
            if self.on_commit is not None:
                self.on_commit()
        return told
