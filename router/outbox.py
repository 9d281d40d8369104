"""The outbox relay: publishes committed outbox rows with publisher confirms.

A row is marked published only after the broker confirmed it (and routed it:
publishing is mandatory). Rows are claimed with ``FOR UPDATE SKIP LOCKED`` in
id order, never by "last id seen", so a row whose transaction committed late
is never skipped, and several relays can run at once. A crash after the
confirm and before the commit republishes the row: consumers' inboxes make
that copy harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, insert, select, update

from canonical.envelope import utcnow
from router.bus import OutgoingMessage, Publisher
from router.crashpoints import crash_point
from router.database import translate_db_errors
from router.tables import outbox

log = logging.getLogger(__name__)


def enqueue(conn: Connection, message: OutgoingMessage, now: datetime | None = None) -> None:
    """Add a message to the outbox inside the caller's transaction."""
    conn.execute(
        insert(outbox).values(
            message_id=message.message_id,
            exchange=message.exchange,
            routing_key=message.routing_key,
            headers=message.headers,
            correlation_id=message.correlation_id,
            body=message.body.decode("utf-8"),
            created_at=now or utcnow(),
            attempts=0,
        )
    )


def _outgoing(row: Row[Any]) -> OutgoingMessage:
    return OutgoingMessage(
        exchange=row.exchange,
        routing_key=row.routing_key,
        body=row.body.encode("utf-8"),
        message_id=row.message_id,
        headers=dict(row.headers),
        correlation_id=row.correlation_id,
    )


class OutboxRelay:
    def __init__(self, engine: Engine, publisher: Publisher, batch: int = 100) -> None:
        self.engine = engine
        self.publisher = publisher
        self.batch = batch

    def relay_once(self) -> int:
        """Publish up to one batch of pending rows; the number published."""
        published = 0
        failure: Exception | None = None
        with translate_db_errors(), self.engine.begin() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                try:
                    self.publisher.publish(_outgoing(row))
                    crash_point("relay.after_publish")
                except Exception as exc:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000])
                    )
                    log.warning("relay: %s not published, will retry: %s", row.message_id, exc)
                    failure = exc
                    break
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(published_at=utcnow(), attempts=outbox.c.attempts + 1)
                )
                published += 1
        # Committed: what was confirmed stays marked even when a later row failed.
        if failure is not None:
            raise _StopBatch(published) from failure
        return published

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                ).scalar_one()
            )

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        failures = 0
        while not stop.is_set():
            try:
                count = self.relay_once()
                failures = 0
            except _StopBatch:
                failures += 1
                stop.wait(min(15.0, 0.5 * 2 ** min(failures, 5)))
                continue
            except Exception as exc:
                failures += 1
                wait = min(15.0, 0.5 * 2 ** min(failures, 5))
                log.warning("relay: %s; retrying in %.1fs", exc, wait)
                stop.wait(wait)
                continue
            if count < self.batch:
                stop.wait(interval)


class _StopBatch(Exception):
    def __init__(self, published: int) -> None:
        super().__init__(f"stopped after {published}")
        self.published = published
