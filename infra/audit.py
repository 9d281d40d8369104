"""The audit log: who did what to which record, with before and after. Every
change a person makes (retry, discard, release, key changes) writes one row
in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from canonical.envelope import utcnow
from infra.tables import audit_log


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def audit(
    conn: Connection,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    detail: dict[str, Any],
) -> None:
    conn.execute(
        insert(audit_log).values(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=jsonable(detail),
            at=utcnow(),
        )
    )
