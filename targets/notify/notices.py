"""What the delay watch (delays.py) and the stall watch (parcels.py) share:
mark an order told, and queue its one message to the customer target, in
the caller's transaction; and the loop that looks every ``interval``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, update

from canonical.envelope import Envelope
from infra.tables import orders, outbox
from infra.topology import Topology, delivery_routing_key

log = logging.getLogger(__name__)


def tell_once(
    conn: Connection,
    topology: Topology,
    order: tuple[int, str, str, int],
    mark: str,
    suffix: str,
    now: datetime,
) -> bool:
    """Mark the order (``orders.<mark>``, if not marked yet) and queue the
    message ``{number}{suffix}`` for the customer, carrying the order as it
    is; False when it was marked already (another watch, or the router)."""
    order_id, number, channel, version = order
    column = orders.c[mark]
    body = conn.execute(
        update(orders)
        .where(orders.c.id == order_id, column.is_(None))
        .values({mark: now})
        .returning(orders.c.body)
    ).scalar_one_or_none()
    if body is None:
        return False
    message_id = f"{number}{suffix}"
    envelope = Envelope.new(channel, message_id).caused(
        message_id, order_number=number, order_version=version, target="customer"
    )
    conn.execute(
        insert(outbox).values(
            message_id=message_id,
            exchange=topology.exchange,
            routing_key=delivery_routing_key("customer"),
            headers=envelope.headers(),
            correlation_id=envelope.correlation_id,
            body=body,
            created_at=now,
            attempts=0,
            order_number=number,
        )
    )
    return True


class Watch:
    """A look every ``interval`` seconds (``check_once``) until stopped; a
    failed look is logged and the next one tries again. What it looks for
    became due ``after`` ago, and no longer than ``horizon`` before that."""

    name = "watch"

    def __init__(
        self,
        engine: Engine,
        topology: Topology,
        after: timedelta,
        interval: float = 60.0,
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
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check_once()
            except Exception:  # logged; the next look tries again
                log.exception("%s: the check failed", self.name)
            stop.wait(self.interval)
