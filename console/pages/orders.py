"""Finding an order and reading its story (customer service).

One search box takes an orderbus number, a channel's order id, a phone, or
a phone's last 4 digits (with a channel or a day); with nothing typed, the
most recent orders, newest first.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import json
import re
from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, select

from admin_api import lookup, raw_orders, reconcile
from console import story
from console.web import NotFound, Reader, Viewer
from infra.database import translate_db_errors
from infra.masking import viewer_body
from infra.tables import orders

router = APIRouter()
PAGE_SIZE = 30
ORDER_NUMBER = re.compile(r"^OB[A-Z2-7]{16}$")
PHONE_CHARS = re.compile(r"^\+?[0-9][0-9 -]{6,30}$")
STATUSES = ("created", "paid", "shipped", "delivered", "cancelled", "refunded")


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), ensure_ascii=False, indent=2)
    except ValueError:
        return body


def channels_known(conn: Connection) -> list[str]:
    return sorted(conn.scalars(select(orders.c.channel).distinct()))


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _search(
    viewer: Viewer, conn: Connection, q: str, channel: str, day: date | None, status: str, page: int
) -> tuple[list[dict[str, Any]], str]:
    """The orders found, and a hint when the search cannot be done as typed."""
    since = until = None
    if day:
        since, until = reconcile.window(day, viewer.formats.zone)
    common: dict[str, Any] = {
        "channel": channel or None,
        "since": since,
        "until": until,
        "status": status or None,
        "limit": PAGE_SIZE,
        "offset": page * PAGE_SIZE,
    }
    if not q:
        return lookup.find(conn, **common), ""
    if ORDER_NUMBER.match(q.upper()):
        return lookup.find(conn, number=q.upper()), ""
    digits = re.sub(r"\D", "", q)
    if q.isdigit() and len(q) == lookup.PHONE_TAIL_DIGITS:
        if not (channel or day):
            return [], viewer._("The last 4 digits of a phone need a channel or a day as well.")
        return lookup.find(conn, phone_tail=q, **common), ""
    found = lookup.find(conn, external_id=q, **common)
    if not found and PHONE_CHARS.match(q) and len(digits) >= 7:
        found = lookup.find(conn, phone=digits, **common)
    return found, ""


@router.get("/orders")
def order_search(
    viewer: Reader,
    q: str = "",
    channel: str = "",
    day: str = "",
    status: str = "",
    page: int = 0,
) -> HTMLResponse:
    q, channel = q.strip()[:64], channel.strip()[:64]
    page = max(0, min(page, 10_000))
    asked_day = _day(day)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        found, hint = _search(
            viewer, conn, q, channel, asked_day, status if status in STATUSES else "", page
        )
        channels = channels_known(conn)
    rows = [viewer.masked(o) for o in found]
    return viewer.render(
        "orders.html",
        rows=rows,
        hint=hint,
        q=q,
        channel=channel,
        day=asked_day.isoformat() if asked_day else "",
        status=status,
        statuses=STATUSES,
        channels=channels,
        page=page,
        more=len(found) == PAGE_SIZE,
        status_name=lambda s: story.status_name(viewer._, s),
    )


@router.get("/orders/{number}")
def order_page(number: str, viewer: Reader) -> HTMLResponse:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        found = lookup.find(conn, number=number[:32])
        if not found:
            raise NotFound()
        order = found[0]
        timeline = lookup.timeline(conn, number)
        raw = raw_orders.of_order(conn, number)
    answer = story.customer_answer(viewer._, order, timeline)
    order, timeline = viewer.masked(order), viewer.masked(timeline, order)
    events = [
        {"at": e.get("at"), "text": story.sentence(viewer._, e), "tone": story.tone(e), "event": e}
        for e in timeline
    ]
    originals = [
        {
            "received_at": r["received_at"],
            "body": _pretty(
                r["body"] if viewer.sees_personal_data else viewer_body(r["body"]) or ""
            ),
        }
        for r in raw
        if r["body_encoding"] == "utf-8"
    ]
    return viewer.render(
        "order.html",
        originals=originals,
        o=order,
        body=order["order"],
        events=events,
        answer=answer,
        status_name=lambda s: story.status_name(viewer._, s),
    )
