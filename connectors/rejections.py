"""A record of every request a connector refused, for inspection (admin API).

Every non-2xx answer is recorded, even while the database is away: a record
that cannot be written is kept in a spool file (one JSON line each, flushed
to disk) and written to ``rejected_requests`` when the database answers again
(:class:`RejectionSpool`, flushed every few seconds by the ingest). Each kept
record carries a key (``spool_key``, unique in the table), so a crash after the
write and before the file is emptied records nothing twice."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from canonical.envelope import utcnow
from infra.database import insert_all_absent
from infra.masking import redact_headers
from infra.stored_bodies import encode_body
from infra.tables import rejected_requests

log = logging.getLogger(__name__)

EXCERPT_BYTES = 4096


def record_rejection(
    engine: Engine,
    *,
    channel: str,
    status_code: int,
    reason: str,
    detail: str,
    headers: Mapping[str, str],
    body: bytes,
    body_size: int,
    remote_addr: str | None,
    spool: RejectionSpool | None = None,
) -> None:
    excerpt, encoding = encode_body(body[:EXCERPT_BYTES])
    if encoding != "utf-8":
        excerpt = f"base64:{excerpt}"
    row = {
        "channel": channel[:64],
        "status_code": status_code,
        "reason": reason,
        "detail": detail[:4000],
        "remote_addr": remote_addr,
        "headers": redact_headers(headers),
        "body_excerpt": excerpt,
        "body_size": body_size,
        "received_at": utcnow(),
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(rejected_requests).values(**row))
        return
    except Exception:
        if spool is not None and spool.keep(row):
            log.warning(
                "database away: refused request (channel=%s status=%s reason=%s) kept in %s "
                "until it answers",
                channel, status_code, reason, spool.path,
            )  # fmt: skip
            return
        # The answer to the sender does not depend on this record; the log keeps it.
        log.exception(
            "could not record rejected request: channel=%s status=%s reason=%s detail=%s",
            channel,
            status_code,
            reason,
            detail,
        )


class RejectionSpool:
    """Records of refused requests the database could not take, kept in a
    file (one JSON line each, fsynced) until :meth:`flush` writes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def keep(self, row: dict[str, Any]) -> bool:
        """Append a record; False when even the file cannot be written."""
        kept = {
            **row,
            "received_at": row["received_at"].isoformat(),
            "spool_key": str(uuid.uuid4()),
        }
        line = json.dumps(kept) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as spool:
                    spool.write(line)
                    spool.flush()
                    os.fsync(spool.fileno())
        except OSError:
            log.exception("could not keep a refused request in %s", self.path)
            return False
        return True

    def flush(self, engine: Engine) -> int:
        """Write the kept records to ``rejected_requests`` in one transaction
        (those already there by their ``spool_key`` skipped) and empty the
        file; the database still away keeps them. How many were read."""
        with self._lock:
            if not self.path.exists() or self.path.stat().st_size == 0:
                return 0
            rows = []
            for line in self.path.read_text("utf-8").splitlines():
                try:
                    row = json.loads(line)
                    row["received_at"] = datetime.fromisoformat(row["received_at"])
                    rows.append(row)
                except (ValueError, KeyError):
                    log.error(
                        "rejection spool %s: an unreadable line left out: %r", self.path, line
                    )
            try:
                with engine.begin() as conn:
                    insert_all_absent(conn, rejected_requests, rows)
            except Exception as exc:
                log.info("rejection spool: the database is still away (%s)", exc)
                return 0
            self.path.unlink()
        log.info("rejection spool: %d refused request(s) recorded from %s", len(rows), self.path)
        return len(rows)

    def run(self, engine: Engine, stop: threading.Event, interval: float = 5.0) -> None:
        while not stop.is_set():
            try:
                self.flush(engine)
            except Exception:
                log.exception("rejection spool: flush failed")
            stop.wait(interval)
