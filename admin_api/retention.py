"""Retention, run by the admin component in small batches (no long lock on a
table): the records of refused requests (anyone can make one: a request to
a channel that does not exist, a forged signature) are kept
``ORDERBUS_REJECTED_RETENTION_DAYS`` days; the history rows (arrivals,
outbox, inbox) ``ORDERBUS_HISTORY_RETENTION_DAYS`` when set, each day's
reconciliation kept before its rows go."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, func, select

from admin_api import reconcile
from infra import raw_payloads
from infra.database import translate_db_errors
from infra.tables import arrivals, inbox, outbox, reconciled_days, rejected_requests

log = logging.getLogger(__name__)


class RejectedRetention:
    def __init__(
        self,
        engine: Engine,
        days: float,
        batch: int = 500,
        interval: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        raw_days: float | None = None,
    ) -> None:
        self.raw_days = raw_days  # the platforms' own orders (infra/raw_payloads.py), if kept
        self.engine = engine
        self.days = days
        self.batch = batch
        self.interval = interval
        self.clock = clock

    def purge_once(self) -> int:
        """Delete every record older than the retention, a batch per
        transaction; how many were deleted."""
        cutoff = self.clock() - timedelta(days=self.days)
        c = rejected_requests.c
        deleted = 0
        while True:
            with translate_db_errors(), self.engine.begin() as conn:
                ids = list(
                    conn.scalars(
                        select(c.id).where(c.received_at < cutoff).order_by(c.id).limit(self.batch)
                    )
                )
                if ids:
                    conn.execute(delete(rejected_requests).where(c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < self.batch:
                return deleted

    def purge_raw_once(self) -> int:
        """Delete the platforms' own orders older than their retention."""
        if self.raw_days is None:
            return 0
        deleted = 0
        while True:
            with translate_db_errors(), self.engine.begin() as conn:
                done = raw_payloads.purge(conn, self.raw_days, self.batch)
            deleted += done
            if done < self.batch:
                return deleted

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.purge_raw_once()
                deleted = self.purge_once()
                if deleted:
                    log.info("retention: %d refused-request records past %s days deleted",
                             deleted, self.days)  # fmt: skip
            except Exception:  # logged; tried again at the next interval
                log.exception("retention of refused-request records failed")
            stop.wait(self.interval)


class HistoryRetention:
    """Deletes the history rows older than ``days``: arrivals, published
    outbox rows and inbox rows, a batch per transaction (no long lock on a
    table the router writes), after keeping the reconciliation of each whole
    day they belong to (admin_api/reconcile.py :func:`~admin_api.reconcile.keep`).

    The orders themselves (their state and latest body), holds and dead
    letters stay: an order is still found by its number and its fate is still
    told, from the kept day. The raw platform orders have their own
    retention (``ORDERBUS_RAW_RETENTION_DAYS``)."""

    def __init__(
        self,
        engine: Engine,
        days: float,
        timezone: str = "Asia/Shanghai",
        router_queue: str | None = None,
        batch: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.days = days
        self.timezone = timezone
        self.router_queue = router_queue
        self.batch = batch
        self.clock = clock
        # how long each delete transaction took, by table
        self.batch_seconds: dict[str, list[float]] = {}

    def keep_days(self, now: datetime) -> datetime | None:
        """Keep the reconciliation of every whole day before the cutoff not
        kept yet; the end of the last day kept (rows before it may go)."""
        zone = ZoneInfo(self.timezone)
        cutoff = now - timedelta(days=self.days)
        with translate_db_errors(), self.engine.connect() as conn:
            oldest = conn.scalar(select(func.min(arrivals.c.received_at)))
            last_kept = conn.scalar(
                select(func.max(reconciled_days.c.day)).where(
                    reconciled_days.c.timezone == self.timezone
                )
            )
        horizon = reconcile.window(last_kept, zone)[1] if last_kept is not None else None
        if oldest is None:
            return horizon
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        day = oldest.astimezone(zone).date()
        while (end := reconcile.window(day, zone)[1]) <= cutoff:
            with translate_db_errors(), self.engine.begin() as conn:
                if reconcile.kept_report(conn, day, self.timezone, None) is None:
                    report = reconcile.reconcile(
                        conn, day, timezone=self.timezone, router_queue=self.router_queue, now=now
                    )
                    reconcile.keep(conn, report, now)
                    log.info("retention: the reconciliation of %s kept (%d orders)",
                             day, len(report.entries))  # fmt: skip
            horizon = end
            day += timedelta(days=1)
        return horizon

    def purge_once(self) -> dict[str, int]:
        """Keep the days, then delete their rows; how many of each went."""
        horizon = self.keep_days(self.clock())
        if horizon is None:
            return {}
        a, o, i = arrivals.c, outbox.c, inbox.c
        return {
            "arrivals": self._delete_in_batches(
                "arrivals", arrivals, a.received_at < horizon, a.received_at, a.message_id
            ),
            "outbox": self._delete_in_batches(
                "outbox",
                outbox,
                (o.created_at < horizon) & o.published_at.is_not(None),
                o.created_at,
                o.id,
            ),
            # the inbox's key is (consumer, message id): each batch's rows
            # deleted a consumer at a time, by that key
            "inbox": self._delete_in_batches(
                "inbox", inbox, i.delivered_at < horizon, i.delivered_at, i.message_id, i.consumer
            ),
        }

    def _delete_in_batches(
        self, name: str, table: Any, old: Any, at: Any, key: Any, part: Any = None
    ) -> int:
        """Delete the rows ``old`` picks, oldest first (by ``at``, indexed), a
        batch per transaction, each row by its ``key`` (within its ``part``,
        when the table's key has two columns).

        Each batch's read starts at the time the previous one ended: a read
        from the oldest row each time would walk past every row deleted
        before it (and, with a condition, every row kept), and a purge of
        millions of rows would slow down batch after batch."""
        deleted = 0
        since = None
        columns = [key, at] if part is None else [key, at, part]
        while True:
            began = time.perf_counter()
            chosen = select(*columns).where(old)
            if since is not None:
                chosen = chosen.where(at >= since)  # ties: the deleted ones are gone
            with translate_db_errors(), self.engine.begin() as conn:
                rows = conn.execute(chosen.order_by(at).limit(self.batch)).all()
                by_part: dict[Any, list[Any]] = {}
                for row in rows:
                    by_part.setdefault(row[2] if part is not None else None, []).append(row[0])
                for value, keys in by_part.items():
                    matching = key.in_(keys) if part is None else (part == value) & key.in_(keys)
                    conn.execute(delete(table).where(matching))
            self.batch_seconds.setdefault(name, []).append(time.perf_counter() - began)
            deleted += len(rows)
            if rows:
                since = rows[-1][1]
            if len(rows) < self.batch:
                return deleted

    def run(self, stop: threading.Event, interval: float = 3600.0) -> None:
        while not stop.is_set():
            try:
                deleted = self.purge_once()
                if any(deleted.values()):
                    log.info("retention: history rows past %s days deleted: %s",
                             self.days, deleted)  # fmt: skip
            except Exception:  # logged; tried again at the next interval
                log.exception("history retention failed")
            stop.wait(interval)
