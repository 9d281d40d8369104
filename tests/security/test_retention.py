"""Defect 8 of the security review, retention: the records of refused
requests (which anyone can make) were kept for ever. They are deleted after
``ORDERBUS_REJECTED_RETENTION_DAYS`` by the admin component, a small batch
per transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, func, insert, select

from admin_api.retention import RejectedRetention
from infra.tables import rejected_requests

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def rows(n: int, age_days: float) -> list[dict[str, Any]]:
    at = NOW - timedelta(days=age_days)
    return [
        {
            "channel": "nope",
            "status_code": 404,
            "reason": "unknown_channel",
            "detail": "no channel",
            "headers": {},
            "body_excerpt": "",
            "body_size": 0,
            "received_at": at,
        }
        for _ in range(n)
    ]


def test_old_records_go_in_small_batches_and_recent_ones_stay(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(insert(rejected_requests), rows(1_200, 31))
        conn.execute(insert(rejected_requests), rows(3, 29))
    deletes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    event.listen(sqlite_engine, "before_cursor_execute", seen)
    try:
        deleted = RejectedRetention(
            sqlite_engine, days=30, batch=500, clock=lambda: NOW
        ).purge_once()
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", seen)
    assert deleted == 1_200
    assert len(deletes) == 3  # 500 + 500 + 200, each in its own transaction
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(rejected_requests)) == 3
