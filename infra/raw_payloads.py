"""The platform's own order beside ours (原始单 beside 系统单): each webhook
body the ingest accepted, kept under the message id it was published with,
so the order's timeline can show what the platform said, and a connector or
mapping change can be replayed over it before anything is sent.

Keeping it is best effort: the order is already published and confirmed
when its body is stored, so a database that does not answer costs the copy,
never the order (the log says so). Old copies are deleted after
``ORDERBUS_RAW_RETENTION_DAYS`` (admin_api/retention.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from infra.database import insert_pipelined, translate_db_errors
from infra.masking import redact_headers
from infra.stored_bodies import encode_body
from infra.tables import raw_payloads

log = logging.getLogger(__name__)
SOURCE = "x-orderbus-source"  # "fetched": the platform API's answer, not a webhook body


def rows_of(
    message_ids: Iterable[str], channel: str, headers: Mapping[str, Any], body: bytes
) -> list[dict[str, Any]]:
    """The rows that keep ``body`` once under each message id it was published as."""
    stored, encoding = encode_body(body)
    now = datetime.now(UTC)
    return [
        {
            "message_id": message_id,
            "channel": channel,
            "headers": redact_headers(dict(headers)),
            "body": stored,
            "body_encoding": encoding,
            "received_at": now,
        }
        for message_id in message_ids
    ]


def keep(
    engine: Engine,
    message_ids: Iterable[str],
    channel: str,
    headers: Mapping[str, Any],
    body: bytes,
) -> None:
    """Store ``body`` once under each message id it was published as, now."""
    _write(engine, rows_of(message_ids, channel, headers, body))


NO_FLUSH_WAIT = "SET LOCAL synchronous_commit TO OFF"


def _write(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """The copies in one transaction; on PostgreSQL one prepared INSERT run
    for each row in one round trip with the commit (SQLAlchemy's many-row
    INSERT, with its compiling and JSON encoding, cost 68 us of the client's
    CPU a row against 54)."""
    try:
        with translate_db_errors(), engine.begin() as conn:
            # A best-effort copy need not wait for its WAL flush (PostgreSQL;
            # in the rows' round trip: on its own it was a fifth of the
            # keeper's time at 126 webhooks/s): a crash in the next moment may
            # lose it, never the order.
            insert_pipelined(
                conn, [(raw_payloads, rows)], absent=True, commit=True, first=[NO_FLUSH_WAIT]
            )
    except Exception as exc:  # the order went through; only the copy is lost
        log.warning("%d raw payload(s) not kept: %s", len(rows), exc)


class BatchedKeeper:
    """Keeps the copies from a thread of its own, many in one transaction, so
    a webhook's answer does not wait for its copy's round trips (the ingest's
    daemon runs :meth:`run`; ``python -m bench`` measured the difference).

    Best effort like :func:`keep`: the copies waiting in memory (at most
    ``most`` rows; more are dropped with a warning) are lost if the process
    dies, never the orders."""

    def __init__(self, engine: Engine, most: int = 10_000, batch: int = 500) -> None:
        self.engine = engine
        self.most = most
        self.batch = batch
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def keep(
        self, message_ids: Iterable[str], channel: str, headers: Mapping[str, Any], body: bytes
    ) -> None:
        rows = rows_of(message_ids, channel, headers, body)
        with self._lock:
            room = self.most - len(self._rows)
            if room < len(rows):
                log.warning("raw payloads: %d copies waiting; %s's not kept", self.most, channel)
                rows = rows[: max(room, 0)]
            self._rows += rows
        self._ready.set()

    def flush(self) -> int:
        """Write what waits, a batch per transaction; how many were written."""
        written = 0
        while True:
            with self._lock:
                rows, self._rows = self._rows[: self.batch], self._rows[self.batch :]
                if not self._rows:
                    self._ready.clear()
            if not rows:
                return written
            _write(self.engine, rows)
            written += len(rows)

    def run(self, stop: threading.Event, linger: float = 0.05) -> None:
        while not stop.is_set():
            if self._ready.wait(0.5):
                stop.wait(linger)  # let a burst gather into one transaction
                self.flush()
        self.flush()


def of_messages(conn: Connection, message_ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = sorted(set(message_ids))
    if not wanted:
        return []
    rows = conn.execute(
        select(raw_payloads)
        .where(raw_payloads.c.message_id.in_(wanted))
        .order_by(raw_payloads.c.received_at)
    )
    return [dict(r) for r in rows.mappings()]


def purge(conn: Connection, days: float, batch: int = 500) -> int:
    """Delete one batch of copies older than ``days``; how many."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    c = raw_payloads.c
    ids = list(conn.scalars(select(c.message_id).where(c.received_at < cutoff).limit(batch)))
    if ids:
        conn.execute(delete(raw_payloads).where(c.message_id.in_(ids)))
    return len(ids)
