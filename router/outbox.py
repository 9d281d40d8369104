"""The outbox relay: publishes committed outbox rows with publisher confirms.

A row is marked published only after the broker confirmed it (and routed it:
publishing is mandatory). Rows are claimed with ``FOR UPDATE SKIP LOCKED`` in
id order, never by "last id seen", so a row whose transaction committed late
is never skipped, and several relays can run at once. A crash after the
confirm and before the commit republishes the row: consumers' inboxes make
that copy harmless.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, func, insert, select, update

from canonical.envelope import (
    H_AFTER_SALE,
    H_CHANNEL,
    H_DOCUMENT,
    H_ORDER_NUMBER,
    Envelope,
    utcnow,
)
from canonical.errors import PublishNotConfirmed
from infra.bus import Publisher
from infra.crashpoints import crash_point
from infra.database import dialect_insert, pipelined, translate_db_errors
from infra.messages import OutgoingMessage
from infra.tables import dead_letters, outbox
from infra.topology import Topology, delivery_routing_key
from router.aftersales import Document

# The queue name a dead letter gets when the relay itself gave up on a row.
OUTBOX_QUEUE = "outbox"

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
            order_number=message.headers.get(H_ORDER_NUMBER),
        )
    )


def delivery_row(
    topology: Topology,
    cause: Envelope,
    number: str,
    version: int,
    target: str,
    body: str,
    now: datetime,
    message_id: str | None = None,
    order_id: int | None = None,
) -> dict[str, object]:
    """The outbox row that tells ``target`` of version ``version`` of the order.

    Its id is deterministic: the same change to the same target always has the
    same id, which is the consumers' inbox key, so it is applied once however
    often it is sent. (A message told once per order, such as a parcel's
    problem, passes its own ``message_id``.) ``order_id``: the order's row,
    when the caller knows it (a day's reconciliation finds the messages of
    a day's orders side by side by it); the router sets it as it writes.
    """
    message_id = message_id or f"{number}-v{version}-{target}"
    child = cause.caused(message_id, order_number=number, order_version=version, target=target)
    return {
        "message_id": message_id,
        "exchange": topology.exchange,
        "routing_key": delivery_routing_key(target),
        "headers": child.headers(),
        "correlation_id": child.correlation_id,
        "body": body,
        "created_at": now,
        "attempts": 0,
        "order_number": number,
        "order_id": order_id,
    }


def document_row(
    topology: Topology,
    cause: Envelope,
    number: str,
    version: int,
    document: Document,
    body: str,
    now: datetime,
    order_id: int | None = None,
) -> dict[str, object]:
    """The outbox row of an after-sale's document for its system (the order
    as of ``version``, the document and the after-sale named in headers).

    Its id names the order, the document and the after-sale, not the
    revision: the same after-sale reported again is the same message, which
    the system's inbox applies once."""
    sale = hashlib.sha256(document.after_sale.id.encode("utf-8")).hexdigest()[:12]
    message_id = f"{number}-{document.kind}-{sale}-{document.target}"
    child = cause.caused(
        message_id, order_number=number, order_version=version, target=document.target
    )
    headers = {
        **child.headers(),
        H_DOCUMENT: document.kind,
        H_AFTER_SALE: document.after_sale.id,
    }
    return {
        "message_id": message_id,
        "exchange": topology.exchange,
        "routing_key": delivery_routing_key(document.target),
        "headers": headers,
        "correlation_id": child.correlation_id,
        "body": body,
        "created_at": now,
        "attempts": 0,
        "order_number": number,
        "order_id": order_id,
    }


def _outgoing(row: Row[Any]) -> OutgoingMessage:
    return OutgoingMessage(
        exchange=row.exchange,
        routing_key=row.routing_key,
        body=row.body.encode("utf-8"),
        message_id=row.message_id,
        headers=dict(row.headers),
        correlation_id=row.correlation_id,
    )


def next_batch(size: int) -> Select[Any]:
    """The oldest unpublished rows not claimed by another relay (the partial
    index ``ix_outbox_unpublished`` answers it by reading ``size`` entries)."""
    return (
        select(outbox)
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )


# PostgreSQL: the relay's batch as next_batch reads it, and its marking.
NO_SORT = "SET LOCAL enable_sort = off"  # what prefer_index_order sets
NEXT_BATCH = (
    "SELECT id, message_id, exchange, routing_key, headers, correlation_id, body, attempts"
    " FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %(size)s FOR UPDATE SKIP LOCKED"
)
MARK_PUBLISHED = (
    "UPDATE outbox SET published_at = %(now)s, attempts = attempts + 1 WHERE id = ANY(%(ids)s)"
)


def prefer_index_order(conn: Connection) -> None:
    """Make PostgreSQL read the next batch in index order in this transaction.

    Without fresh statistics (autovacuum off, or a backlog that grew faster
    than autoanalyze runs) the planner may expect a handful of pending rows,
    fetch all of them and sort: with 150,000 pending that took 1 s a batch.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(NO_SORT)


class OutboxRelay:
    def __init__(
        self, engine: Engine, publisher: Publisher, batch: int = 100, max_attempts: int = 10
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.batch = batch
        self.max_attempts = max_attempts
        self._wake = threading.Event()

    def wake(self) -> None:
        """New rows were committed: publish now instead of at the next poll."""
        self._wake.set()

    def relay_once(self) -> int:
        """Publish up to one batch of pending rows; the number published.

        The batch is streamed to the broker and its confirms awaited together;
        each confirmed row is marked published in the same transaction that
        claimed it. A row the broker did not confirm stays pending (or, when
        unroutable too often, becomes a dead letter). The later rows of its
        stream (one order's changes to one system) share its routing key, so
        an unroutable row's stream waits with it while other streams go on.
        """
        with translate_db_errors(), self.engine.begin() as conn:
            rows = self._claim_batch(conn)
            if not rows:
                return 0
            results = self.publisher.publish_many([_outgoing(row) for row in rows])
            crash_point("relay.after_publish")
            published: list[int] = []
            failure: Exception | None = None
            for row, error in zip(rows, results, strict=True):
                if error is None:
                    published.append(row.id)
                    continue
                self._failed(conn, row, error)
                if not (isinstance(error, PublishNotConfirmed) and error.reason == "unroutable"):
                    failure = failure or error  # the broker's trouble, not the row's
            if published and conn.dialect.name == "postgresql":  # committed in its round trip
                marking = {"now": utcnow(), "ids": published}
                pipelined(conn, [(MARK_PUBLISHED, marking)], commit=True)
            elif published:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(published))
                    .values(published_at=utcnow(), attempts=outbox.c.attempts + 1)
                )
        # Committed: what was confirmed stays marked even when other rows failed.
        if failure is not None:
            raise _StopBatch(len(published)) from failure
        return len(published)

    def _claim_batch(self, conn: Connection) -> list[Any]:
        """The next batch's rows, claimed for this transaction: on PostgreSQL
        in one round trip with the index order asked for (psycopg's pipeline)."""
        if conn.dialect.name == "postgresql":
            _, rows = pipelined(conn, [(NO_SORT, {}), (NEXT_BATCH, {"size": self.batch})])
            return rows
        prefer_index_order(conn)
        return list(conn.execute(next_batch(self.batch)).all())

    def _failed(self, conn: Connection, row: Row[Any], exc: Exception) -> None:
        attempts = row.attempts + 1
        unroutable = isinstance(exc, PublishNotConfirmed) and exc.reason == "unroutable"
        if attempts < self.max_attempts or not unroutable:
            # A broker that is down, blocked or slow to confirm is not this
            # row's fault: it stays (durably) in the outbox until the broker is back.
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(attempts=attempts, last_error=str(exc)[:2000])
            )
            log.warning("relay: %s not published, will retry: %s", row.message_id, exc)
            return
        # Retried enough: a dead letter an operator can see and retry, instead
        # of a row retried for ever.
        now = utcnow()
        conn.execute(
            dialect_insert(conn, dead_letters)
            .values(
                message_id=row.message_id,
                queue=OUTBOX_QUEUE,
                exchange=row.exchange,
                routing_key=row.routing_key,
                channel=row.headers.get(H_CHANNEL),
                order_number=row.headers.get(H_ORDER_NUMBER),
                reason="unroutable",
                detail=f"not published after {attempts} attempts: {exc}",
                exception=repr(exc)[:4000],
                headers=dict(row.headers),
                body=row.body,
                body_encoding="utf-8",
                attempts=attempts,
                status="open",
                first_failed_at=now,
                last_failed_at=now,
            )
            .on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["queue", "message_id"],
                set_={
                    "status": "open",
                    "attempts": dead_letters.c.attempts + 1,
                    "last_failed_at": now,
                },
            )
        )
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(attempts=attempts, last_error=f"dead-lettered: {exc}"[:2000], published_at=now)
        )
        log.error("relay: %s dead-lettered after %d attempts: %s", row.message_id, attempts, exc)

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                ).scalar_one()
            )

    def _connect(self) -> None:
        """Connect to the broker before the first row, so that a start's
        first batch does not wait for it (its first publish took 35 ms on
        the machine of docs/performance.md). Not reachable yet: logged, and
        the first publish tries again, as after any failure."""
        try:
            self.publisher.connect()
        except Exception as exc:
            log.warning("relay: not connected to the broker yet (%s); publishing will retry", exc)

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Relay until ``stop``: at once when woken, else every ``interval``
        (rows committed by other processes, retried dead letters)."""
        self._connect()
        failures = 0
        while not stop.is_set():
            self._wake.clear()
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
                self._wake.wait(interval)


class _StopBatch(Exception):
    def __init__(self, published: int) -> None:
        super().__init__(f"stopped after {published}")
        self.published = published
