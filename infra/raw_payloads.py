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
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text

from infra.database import insert_all_absent, translate_db_errors
from infra.masking import redact_headers
from infra.stored_bodies import encode_body
from infra.tables import raw_payloads

log = logging.getLogger(__name__)
SOURCE = "x-orderbus-source"  # "fetched": the platform API's answer, not a webhook body


def keep(
    engine: Engine,
    message_ids: Iterable[str],
    channel: str,
    headers: Mapping[str, Any],
    body: bytes,
) -> None:
    """Store ``body`` once under each message id it was published as."""
    stored, encoding = encode_body(body)
    now = datetime.now(UTC)
    rows = [
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
    try:
        with translate_db_errors(), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # A best-effort copy need not wait for its WAL flush: a crash
                # in the next moment may lose it (never the order); the
                # request does not wait on the disk for it.
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            insert_all_absent(conn, raw_payloads, rows)
    except Exception as exc:  # the order went through; only the copy is lost
        log.warning("raw payload of %s not kept: %s", channel, exc)


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
