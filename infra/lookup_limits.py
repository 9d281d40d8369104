"""Counters for the customers' own lookup (connectors/order_lookup.py), in
the database so the limits hold across ingest processes: one row per key
(``client:<address>``, ``order:<number>``) and fixed window, raised with an
upsert, read back in the same statement; old windows are deleted as they go.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select

from infra.database import dialect_insert
from infra.tables import lookup_attempts


def window_of(now: datetime, minutes: int) -> datetime:
    """The start of the fixed window ``now`` falls in."""
    span = minutes * 60
    return datetime.fromtimestamp(int(now.timestamp()) // span * span, now.tzinfo)


def raise_count(conn: Connection, key: str, window: datetime) -> int:
    """One more for ``key`` in ``window``; the count now."""
    c = lookup_attempts.c
    statement = (
        dialect_insert(conn, lookup_attempts)  # type: ignore[attr-defined]
        .values(key=key, window_start=window, count=1)
        .on_conflict_do_update(index_elements=["key", "window_start"], set_={"count": c.count + 1})
        .returning(c.count)
    )
    return int(conn.execute(statement).scalar_one())


def count_of(conn: Connection, key: str, window: datetime) -> int:
    c = lookup_attempts.c
    found = conn.scalar(select(c.count).where(c.key == key, c.window_start == window))
    return int(found or 0)


def forget_before(conn: Connection, window: datetime, minutes: int) -> None:
    """Delete the windows that ended before the one before ``window``."""
    c = lookup_attempts.c
    conn.execute(
        delete(lookup_attempts).where(c.window_start < window - timedelta(minutes=minutes))
    )
