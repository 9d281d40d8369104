"""Channels and health (the admin, operations): for each channel, the last
order received, how far its poll cursor lags, credentials refused lately,
and its error rate in the last hour; what each channel was told of its stock
(库存回传: listings told, waiting, refused, and the refusals' reasons); and
the alerts, open and recent.

A channel is listed when it is configured or has left any record.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, case, func, select

from admin_api import causes
from canonical.stock import MAX_PUSH_ATTEMPTS
from console import figures
from console.web import Reader
from infra.database import translate_db_errors
from infra.tables import (
    alerts,
    arrivals,
    dead_letters,
    poll_cursors,
    rejected_requests,
    stock_pushes,
)

router = APIRouter()
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _grouped(conn: Connection, column: Any, value: Any, *conditions: Any) -> dict[str, Any]:
    return dict(conn.execute(select(column, value).where(*conditions).group_by(column)).all())


def health(
    conn: Connection,
    configured: tuple[str, ...],
    now: datetime,
    expiry: Mapping[str, datetime] | None = None,
) -> list[dict[str, Any]]:
    last_order = _grouped(conn, arrivals.c.channel, func.max(arrivals.c.received_at))
    arrived = _grouped(conn, arrivals.c.channel, func.count(), arrivals.c.received_at >= now - HOUR)
    refused = _grouped(
        conn,
        rejected_requests.c.channel,
        func.count(),
        rejected_requests.c.received_at >= now - HOUR,
    )
    failed = _grouped(
        conn, dead_letters.c.channel, func.count(), dead_letters.c.first_failed_at >= now - HOUR
    )
    cursors = {r.channel: r for r in conn.execute(select(poll_cursors))}
    credentials: dict[str, int] = {}
    for row in conn.execute(
        select(dead_letters.c.channel, dead_letters.c.reason, dead_letters.c.detail).where(
            dead_letters.c.first_failed_at >= now - DAY
        )
    ):
        if row.channel and causes.cause_of(row.reason, row.detail) == "token_expired":
            credentials[row.channel] = credentials.get(row.channel, 0) + 1
    expiry = expiry or {}
    names = sorted({*configured, *last_order, *refused, *cursors, *expiry} - {None, ""})
    found = []
    for name in names:
        good, bad = int(arrived.get(name, 0)), int(refused.get(name, 0)) + int(failed.get(name, 0))
        cursor = cursors.get(name)
        lag = None
        if cursor is not None:
            try:
                lag = (
                    now - datetime.fromisoformat(cursor.position.replace("Z", "+00:00"))
                ).total_seconds()
            except ValueError:
                lag = None
        last = last_order.get(name)
        found.append(
            {
                "channel": name,
                "last_order": figures.utc(last) if last else None,
                "arrived_last_hour": good,
                "errors_last_hour": bad,
                "error_rate": bad / (good + bad) if good + bad else 0.0,
                "polled_at": figures.utc(cursor.polled_at) if cursor is not None else None,
                "cursor_lag_minutes": round(lag / 60) if lag is not None else None,
                "credentials_refused": credentials.get(name, 0),
                "expires_at": expiry.get(name),
                "expires_in_days": (expiry[name] - now).days if name in expiry else None,
            }
        )
    return found


def stock_told(conn: Connection, limit: int = 50) -> dict[str, Any]:
    """Per channel: its listings, how many were told their current quantity,
    how many wait to be told, how many were refused (and wait for their next
    change), and when it was last told; and the listings refused, newest
    first, with the channel's reason."""
    p = stock_pushes.c
    told = p.pushed_quantity.is_not(None) & (p.pushed_quantity == p.quantity)
    given_up = ~told & (p.attempts >= MAX_PUSH_ATTEMPTS)
    rows = conn.execute(
        select(
            p.channel,
            func.count().label("listings"),
            func.sum(case((told, 1), else_=0)).label("told"),
            func.sum(case((given_up, 1), else_=0)).label("refused"),
            func.max(p.pushed_at).label("last_told_at"),
        )
        .group_by(p.channel)
        .order_by(p.channel)
    ).all()
    channels = [
        {
            "channel": r.channel,
            "listings": int(r.listings),
            "told": int(r.told or 0),
            "waiting": int(r.listings) - int(r.told or 0) - int(r.refused or 0),
            "refused": int(r.refused or 0),
            "last_told_at": figures.utc(r.last_told_at) if r.last_told_at else None,
        }
        for r in rows
    ]
    refusals = [
        dict(r)
        for r in conn.execute(
            select(
                p.channel,
                p.platform_sku,
                p.quantity,
                p.pushed_quantity,
                p.attempts,
                p.last_error,
                p.as_of,
            )
            .where(p.last_error.is_not(None), ~told)
            .order_by(p.as_of.desc())
            .limit(limit)
        ).mappings()
    ]
    return {"channels": channels, "refusals": refusals}


@router.get("/channels")
def channels_page(viewer: Reader) -> HTMLResponse:
    now = datetime.now(UTC)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        options = viewer.console.options
        rows = health(conn, options.channels, now, options.credentials_expire)
        stock = stock_told(conn)
        recent_alerts = [
            dict(r)
            for r in conn.execute(
                select(alerts).order_by(alerts.c.status, alerts.c.opened_at.desc()).limit(50)
            ).mappings()
        ]
    return viewer.render(
        "channels.html", rows=rows, stock=stock, alerts=viewer.masked(recent_alerts)
    )
