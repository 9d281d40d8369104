"""The delay watch: a paid order the warehouse has not shipped within
``ORDERBUS_NOTIFY.delay_after_hours`` gets one ``delay`` message to the
customer target, written to the outbox like any fan-out message.

Its message id is ``{order number}-delay-customer``: the same however often
the watch looks, so the customer consumer's inbox lets one through. It
carries the order's current version, so once the order has moved on (shipped,
cancelled) and the customer was told that, the consumer passes it over as
superseded. Held orders are left alone until a person decides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, exists, insert, or_, select

from canonical.envelope import Envelope
from router.database import translate_db_errors
from router.notify.notifier import DELAY_SUFFIX
from router.tables import orders, outbox
from router.topology import Topology, delivery_routing_key

log = logging.getLogger(__name__)


class DelayWatch:
    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        after: timedelta,
        interval: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.topology = topology
        self.after = after
        self.interval = interval
        self.clock = clock
        self.on_commit = on_commit

    def check_once(self, limit: int = 500) -> int:
        """Queue the delay messages due; how many."""
        now = self.clock()
        delay_id = orders.c.order_number + DELAY_SUFFIX
        due = (
            select(orders.c.order_number, orders.c.channel, orders.c.version, orders.c.body)
            .where(
                orders.c.status == "paid",
                orders.c.updated_at < now - self.after,
                or_(orders.c.hold_status.is_(None), orders.c.hold_status == "released"),
                ~exists().where(and_(outbox.c.message_id == delay_id)),
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        with translate_db_errors(), self.engine.begin() as conn:
            rows = conn.execute(due).all()
            for number, channel, version, body in rows:
                message_id = f"{number}{DELAY_SUFFIX}"
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
                        body=body,
                        created_at=now,
                        attempts=0,
                    )
                )
        if rows:
            log.info("delay watch: %d paid orders not shipped in time; customers told", len(rows))
            if self.on_commit is not None:
                self.on_commit()
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check_once()
            except Exception:  # logged; the next look tries again
                log.exception("delay watch: the check failed")
            stop.wait(self.interval)
