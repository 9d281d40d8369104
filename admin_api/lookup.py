"""Finding an order and telling its story, for customer service.

An order is found by its orderbus number, by channel and external id, or by
the buyer's phone. Its timeline is read from the records the pipeline keeps
anyway, so it cannot disagree with what happened:

- ``arrivals``: each message that named the order: when it was received and
  routed, and what the router made of it (new, update, duplicate, stale,
  held), with the version it produced;
- ``outbox``: each version's status, and when it was handed to RabbitMQ;
- ``holds``: held as a suspected duplicate, and who released or rejected it;
- ``inbox``: each delivery to the warehouse, finance and notification
  systems: when, after how many attempts, with what answer;
- ``dead_letters``: each failure that needed a person, its reason, and whether
  it was retried or discarded, by whom.

An order the router refused never got a number: looking it up by channel and
external id finds its dead letters instead (reason ``validation_failed``...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from canonical.envelope import H_AFTER_SALE, H_DOCUMENT
from infra.tables import arrivals, dead_letters, holds, inbox, notifications, orders, outbox


def _at(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no offset; orderbus writes UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


PHONE_TAIL_DIGITS = 4


def find(
    conn: Connection,
    *,
    number: str | None = None,
    channel: str | None = None,
    external_id: str | None = None,
    phone: str | None = None,
    phone_tail: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Orders matching every given key (at most ``limit``), newest first; no
    key at all: the most recent orders.

    ``phone`` matches the buyer's phone in full; ``phone_tail`` its last four
    digits, which many buyers share, so a caller narrows it by channel or
    by the day the order was placed (``since``/``until``, on its creation).
    """
    c = orders.c
    query = select(
        c.order_number, c.channel, c.shop, c.external_id, c.status, c.version, c.updated_at, c.body
    )
    if number:
        query = query.where(c.order_number == number)
    if channel:
        query = query.where(c.channel == channel)
    if external_id:
        query = query.where(c.external_id == external_id)
    if status:
        query = query.where(c.status == status)
    if since:
        query = query.where(c.created_at >= since)
    if until:
        query = query.where(c.created_at < until)
    wanted = _digits(phone) if phone else _digits(phone_tail or "")[-PHONE_TAIL_DIGITS:]
    if phone:
        # The phone is inside the stored order; a scan of orders, for a person
        # at a screen, not for the pipeline.
        query = query.where(c.body.contains(f'"phone":"{phone}"') | c.body.contains(wanted))
    elif wanted:
        query = query.where(c.body.contains(wanted))
    query = query.order_by(c.updated_at.desc(), c.id.desc())
    if wanted:  # read in slices until a page matches, not every order at once
        query = query.execution_options(yield_per=500)
    else:
        query = query.limit(limit).offset(offset)
        offset = 0
    found: list[dict[str, Any]] = []
    skipped = 0
    for row in conn.execute(query).mappings():
        order = json.loads(row["body"])
        if wanted and not _phone_matches(order, wanted, tail=not phone):
            continue  # the digits were elsewhere in the order
        if skipped < offset:
            skipped += 1
            continue
        found.append(
            {
                "order_number": row["order_number"],
                "channel": row["channel"],
                "shop": row["shop"],
                "external_id": row["external_id"],
                "status": row["status"],
                "version": row["version"],
                "updated_at": _at(row["updated_at"]),
                "order": order,
            }
        )
        if len(found) >= limit:
            break
    return found


def _phone_matches(order: dict[str, Any], digits: str, *, tail: bool) -> bool:
    customer = order.get("customer") if isinstance(order, dict) else None
    phone = _digits(str(customer.get("phone"))) if isinstance(customer, dict) else ""
    return phone.endswith(digits) if tail else digits in phone


Event = dict[str, Any]


def timeline(conn: Connection, number: str) -> list[Event]:
    """Everything that happened to the order, oldest first."""
    order_id = conn.scalar(select(orders.c.id).where(orders.c.order_number == number))
    messages = _messages_of(number, order_id)
    events = [
        *_arrival_events(conn, order_id),
        *_outbox_events(conn, number, messages),
        *_document_events(conn, number, messages),
        *_hold_events(conn, number),
        *_delivery_events(conn, number),
        *_notification_events(conn, number),
        *dead_letter_events(conn, dead_letters.c.order_number == number),
    ]
    return sorted(events, key=lambda e: e["at"] or "")


def _messages_of(number: str, order_id: int | None) -> ColumnElement[bool]:
    """The order's outbox rows: by its row id (indexed), and by its number
    the rows that name no row (infra/tables.py, migration 0038)."""
    o = outbox.c
    without_id = and_(o.order_id.is_(None), o.order_number == number)
    return without_id if order_id is None else or_(o.order_id == order_id, without_id)


def _arrival_events(conn: Connection, order_id: int | None) -> list[Event]:
    """Each arrival: received from its channel, then what the router did."""
    if order_id is None:
        return []
    events: list[Event] = []
    for a in conn.execute(select(arrivals).where(arrivals.c.order_id == order_id)).mappings():
        events.append(
            {
                "at": _at(a["received_at"]),
                "event": "received",
                "message_id": a["message_id"],
                "detail": f"from {a['channel']}",
                "kind": "received",
                "facts": {"channel": a["channel"]},
            }
        )
        events.append(
            {
                "at": _at(a["processed_at"]),
                "event": f"routed: {a['outcome']}",
                "message_id": a["message_id"],
                "version": a["order_version"],
                "detail": a["detail"],
                "kind": "routed",
                "facts": {"outcome": a["outcome"]},
            }
        )
    return events


def _outbox_events(conn: Connection, number: str, messages: ColumnElement[bool]) -> list[Event]:
    """Each version's status change (with its shipment), and each message to a
    target: sent, or not yet."""
    events: list[Event] = []
    seen_versions: set[int] = set()
    for row in conn.execute(
        select(outbox.c.message_id, outbox.c.body, outbox.c.created_at, outbox.c.published_at)
        .where(messages, outbox.c.message_id.like(f"{number}-v%"))
        .order_by(outbox.c.id)
    ).mappings():
        version = int(row["message_id"].split("-v", 1)[1].split("-", 1)[0])
        target = row["message_id"].rsplit("-", 1)[1]
        if version not in seen_versions:
            seen_versions.add(version)
            events.append(_status_change(row["body"], row["created_at"], version))
        sent = row["published_at"]
        events.append(
            {
                "at": _at(sent or row["created_at"]),
                "event": f"sent to {target}" if sent else f"not yet sent to {target}",
                "version": version,
                "message_id": row["message_id"],
                "kind": "sent" if sent else "not_sent",
                "facts": {"target": target},
            }
        )
    return events


def _document_events(conn: Connection, number: str, messages: ColumnElement[bool]) -> list[Event]:
    """Each after-sale's document for a system (router/aftersales.py): sent, or not yet."""
    events: list[Event] = []
    for row in conn.execute(
        select(outbox.c.message_id, outbox.c.headers, outbox.c.created_at, outbox.c.published_at)
        .where(messages, outbox.c.message_id.like(f"{number}-%"))
        .where(outbox.c.message_id.not_like(f"{number}-v%"))
        .order_by(outbox.c.id)
    ).mappings():
        headers = row["headers"] or {}
        document, after_sale = headers.get(H_DOCUMENT), headers.get(H_AFTER_SALE)
        if not document:
            continue
        target = row["message_id"].rsplit("-", 1)[1]
        sent = row["published_at"]
        events.append(
            {
                "at": _at(sent or row["created_at"]),
                "event": f"{document} {'sent' if sent else 'not yet sent'} to {target}",
                "message_id": row["message_id"],
                "detail": f"after-sale {after_sale}",
                "kind": "document",
                "facts": {
                    "target": target, "document": document, "after_sale": after_sale,
                    "sent": sent is not None,
                },
            }
        )  # fmt: skip
    return events


def _status_change(body_text: str, at: Any, version: int) -> Event:
    body = json.loads(body_text)
    change: Event = {
        "at": _at(at),
        "event": f"status {body.get('status')}",
        "version": version,
        "kind": "status",
        "facts": {"status": body.get("status")},
    }
    shipment = body.get("shipment")
    if isinstance(shipment, dict):
        change["detail"] = f"{shipment.get('carrier')} {shipment.get('tracking_number')}"
        change["facts"].update(
            carrier=shipment.get("carrier"), tracking_number=shipment.get("tracking_number")
        )
    return change


def _hold_events(conn: Connection, number: str) -> list[Event]:
    events: list[Event] = []
    for h in conn.execute(select(holds).where(holds.c.order_number == number)).mappings():
        events.append(
            {
                "at": _at(h["created_at"]),
                "event": "held",
                "detail": h["reason"],
                "kind": "held",
                "facts": {"suspected_of": h["suspected_of"], "cause": h["cause"]},
            }
        )
        if h["decided_at"] is not None:
            events.append(
                {
                    "at": _at(h["decided_at"]),
                    "event": h["status"],
                    "by": h["decided_by"],
                    "detail": h["note"],
                    "kind": h["status"],
                    "facts": {"second_approver": h["approved_by"]},
                }
            )
    return events


def _delivery_events(conn: Connection, number: str) -> list[Event]:
    return [
        {
            "at": _at(d["delivered_at"]),
            "event": f"delivered to {d['consumer']}",
            "version": d["order_version"],
            "message_id": d["message_id"],
            "detail": f"HTTP {d['response_status']} after {d['attempts']} attempt(s)",
            "kind": d["outcome"] if d["outcome"] in ("delivered", "too_late") else "superseded",
            "facts": {
                "target": d["consumer"],
                "status": d["response_status"],
                "attempts": d["attempts"],
                "mapping_version": d["mapping_version"],
            },
        }
        for d in conn.execute(
            select(inbox).where(inbox.c.order_number == number).order_by(inbox.c.delivered_at)
        ).mappings()
    ]


def _notification_events(conn: Connection, number: str) -> list[Event]:
    events: list[Event] = []
    for n in conn.execute(
        select(notifications)
        .where(notifications.c.order_number == number)
        .order_by(notifications.c.id)
    ).mappings():
        told = "not told" if n["medium"] == "none" else f"told by {n['medium']}"
        events.append(
            {
                "at": _at(n["sent_at"]),
                "event": f"customer {told}: {n['event']}",
                "message_id": n["message_id"],
                # the recipient as recorded (masked); never the body, which names the buyer
                "detail": (
                    f"to {n['recipient']}" + (f": {n['subject']}" if n["subject"] else "")
                    if n["medium"] != "none"
                    else n["body"]
                ),
                "kind": "told" if n["medium"] != "none" else "not_told",
                "facts": {"medium": n["medium"], "about": n["event"]},
            }
        )
    return events


TIMED_OUT_HINT = " (no answer in time: the system may have it; check there before retrying)"


def dead_letter_events(conn: Connection, condition: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for d in conn.execute(select(dead_letters).where(condition)).mappings():
        events.append(
            {
                "at": _at(d["last_failed_at"]),
                "event": f"dead letter in {d['queue']}: {d['reason']}"
                + (TIMED_OUT_HINT if d["reason"] == "endpoint_timeout" else ""),
                "message_id": d["message_id"],
                "dead_letter_id": d["id"],
                "detail": f"{d['detail']} ({d['attempts']} attempt(s))",
                "kind": "dead_letter",
                "facts": {"queue": d["queue"], "reason": d["reason"], "attempts": d["attempts"]},
            }
        )
        if d["resolved_at"] is not None:
            events.append(
                {
                    "at": _at(d["resolved_at"]),
                    "event": f"dead letter {d['status']}",
                    "dead_letter_id": d["id"],
                    "by": d["resolved_by"],
                    "kind": f"dead_letter_{d['status']}",
                    "facts": {},
                }
            )
    return events


def unrouted(conn: Connection, channel: str, external_id: str) -> list[dict[str, Any]]:
    """Dead letters of an order the router refused (it has no number)."""
    needle = json.dumps({"external_id": external_id}, ensure_ascii=False)[1:-1]
    c = dead_letters.c
    condition = (
        (c.channel == channel)
        & c.order_number.is_(None)
        & or_(c.body.contains(needle.replace(": ", ":")), c.body.contains(needle))
    )
    return sorted(dead_letter_events(conn, condition), key=lambda e: e["at"] or "")
