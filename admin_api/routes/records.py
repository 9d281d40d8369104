"""The records people read: refused webhook requests, what customers were
told, and the audit log.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from admin_api.routes.deps import (
    MAX_OFFSET,
    MAX_PAGE,
    Context,
    Viewer,
    masked_rows,
    order_bodies,
    page,
    where_equal,
)
from admin_api.schemas import AuditEntry, Instant, NotificationOut, Page, RejectedRequestOut
from infra.masking import for_viewer, redact_headers, viewer_body
from infra.tables import audit_log, notifications, rejected_requests

router = APIRouter()


@router.get(
    "/rejected-requests", response_model=Page[RejectedRequestOut], tags=["rejected requests"]
)
def list_rejected(
    ctx: Context,
    who: Viewer,
    channel: str | None = None,
    reason: str | None = None,
    since: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    c = rejected_requests.c
    conditions = where_equal(rejected_requests, channel=channel, reason=reason)
    if since:
        conditions.append(c.received_at >= since)
    query = select(rejected_requests).where(*conditions)
    found = page(ctx.engine, query, c.id.desc(), limit, offset)
    # records made before signatures were redacted on the way in are redacted here
    found["items"] = [{**r, "headers": redact_headers(r["headers"] or {})} for r in found["items"]]
    return masked_rows(who, found, body_excerpt=viewer_body)


@router.get("/notifications", response_model=Page[NotificationOut], tags=["customer notifications"])
def list_notifications(
    ctx: Context,
    who: Viewer,
    order_number: Annotated[str | None, Query(max_length=32)] = None,
    event: Annotated[str | None, Query(max_length=16)] = None,
    medium: Annotated[str | None, Query(max_length=16)] = None,
    since: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """What customers were told (ORDERBUS_NOTIFY), newest first."""
    c = notifications.c
    conditions = where_equal(notifications, order_number=order_number, event=event, medium=medium)
    if since:
        conditions.append(c.sent_at >= since)
    query = select(notifications).where(*conditions)
    found = page(ctx.engine, query, c.id.desc(), limit, offset)
    if not who.sees_personal_data:
        # the text names the buyer: not shown; the subject with the buyer's details scrubbed
        bodies = order_bodies(ctx, (r["order_number"] for r in found["items"]))
        found["items"] = [
            {**for_viewer(dict(r), bodies.get(r["order_number"], "")), "body": None}
            for r in found["items"]
        ]
    return found


@router.get("/audit", response_model=Page[AuditEntry], tags=["audit"])
def list_audit(
    ctx: Context,
    who: Viewer,
    actor: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    query = select(audit_log).where(*where_equal(audit_log, actor=actor, action=action))
    found = page(ctx.engine, query, audit_log.c.id.desc(), limit, offset)
    if who.sees_personal_data:
        return found
    # a person's note may name the buyer: the order's own values are scrubbed too
    numbers = {str((row["detail"] or {}).get("order_number")) for row in found["items"]}
    bodies = order_bodies(ctx, numbers)
    found["items"] = [
        for_viewer(dict(row), bodies.get(str((row["detail"] or {}).get("order_number")), ""))
        for row in found["items"]
    ]
    return found
