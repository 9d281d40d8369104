"""The delay watch: a paid order the warehouse has not shipped within
``ORDERBUS_NOTIFY.delay_after_hours`` gets one ``delay`` message to the
customer target, written to the outbox like any fan-out message.

The order is marked (``orders.delay_noticed_at``) in the transaction that
writes the message, so each order is told once, and the watch reads only
paid orders not yet marked (a partial index), and only those that became
late within ``horizon`` (7 days): turning notifications on, or upgrading,
does not write to every customer of an old order never reported shipped.
Its message id is ``{order number}-delay-customer``, so even two watches
racing give the customer consumer's inbox one message to let through. It
carries the order's current version, so once the order has moved on (shipped,
cancelled) and the customer was told that, the consumer passes it over as
superseded. Held orders are left alone until a person decides.
"""

from __future__ import annotations

import logging

from sqlalchemy import or_, select

from infra.database import translate_db_errors
from infra.tables import orders
from targets.notify.notices import Watch, tell_once
from targets.notify.notifier import DELAY_SUFFIX

log = logging.getLogger(__name__)


class DelayWatch(Watch):
    name = "delay watch"

    def check_once(self, limit: int = 500) -> int:
        """Queue the delay messages due; how many."""
        now = self.clock()
        late = now - self.after
        due = (
            select(orders.c.id, orders.c.order_number, orders.c.channel, orders.c.version)
            .where(
                orders.c.status == "paid",
                orders.c.delay_noticed_at.is_(None),
                orders.c.updated_at < late,
                orders.c.updated_at >= late - self.horizon,
                or_(orders.c.hold_status.is_(None), orders.c.hold_status == "released"),
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        told = 0
        with translate_db_errors(), self.engine.begin() as conn:
            for order in conn.execute(due).all():
                if tell_once(
                    conn, self.topology, tuple(order), "delay_noticed_at", DELAY_SUFFIX, now
                ):
                    told += 1  # (else another router's watch took it)
        if told:
            log.info("delay watch: %d paid orders not shipped in time; customers told", told)
            if self.on_commit is not None:
                self.on_commit()
        return told
