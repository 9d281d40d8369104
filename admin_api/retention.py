"""Retention of the records of refused requests: anyone can make one (a
request to a channel that does not exist, a forged signature), so they are
kept ``ORDERBUS_REJECTED_RETENTION_DAYS`` days, then deleted by the admin
component in small batches (no long lock on the table)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select

from infra import raw_payloads
from infra.database import translate_db_errors
from infra.tables import rejected_requests

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
