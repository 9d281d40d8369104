"""Reconciliation: where every order of a channel's day is, and whether that
adds up.

For the orders orderbus received on a day (by the arrival that made the
order, its first accepted one, in the given time zone), each is in exactly
one state, taken in this order:

- ``rejected``: refused by the router (its dead letter, with the reason, in
  the router's queue), or held as a duplicate and rejected by a person;
- ``held``: waiting for a person;
- ``dead_lettered``: one of its deliveries failed and waits for a person;
- ``delivered``: every message the router made for it is in the systems'
  inboxes;
- ``in_flight``: a message not delivered yet, made less than ``grace`` ago;
- ``unexplained``: anything else: a message older than ``grace`` that no
  system received and that is not a dead letter, or an accepted order that
  produced no message at all. There should never be one.

``received = delivered + rejected + held + dead_lettered + in_flight +
unexplained``. Requests the ingest refused (a forged signature, an unreadable
body) are counted apart: they are not orders. :func:`compare` sets a
channel's own export against what orderbus received.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, text

from infra.database import in_chunks, prefer_key_lookups
from infra.spreadsheets import safe_cell
from infra.tables import (
    arrivals,
    dead_letters,
    inbox,
    orders,
    outbox,
    reconciled_days,
    reconciled_orders,
    rejected_requests,
)

STATES = ("delivered", "rejected", "held", "dead_lettered", "in_flight", "unexplained")
REFUSED_BY_ROUTER = frozenset({"validation_failed", "malformed_message", "schema_mismatch"})
# The outcomes of the arrival that made an order (at its version 1): the day
# of that arrival is the order's day, so each order is on exactly one day.
MADE_AN_ORDER = ("new", "held")


@dataclass(slots=True)  # a day's page is 10,000 of them
class Entry:
    channel: str
    external_id: str | None
    order_number: str | None
    state: str
    detail: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "channel": self.channel,
            "external_id": self.external_id,
            "order_number": self.order_number,
            "state": self.state,
            "detail": self.detail,
        }


@dataclass
class Report:
    day: date
    timezone: str
    channel: str | None
    entries: list[Entry] = field(default_factory=list)
    refused_requests: int = 0
    kept: bool = False  # read from the kept reconciliation: the day's rows were deleted
    # Delivered orders counted by channel and not listed in ``entries`` (a
    # report of the exceptions only: see ``reconcile(every_order=False)``).
    delivered_unlisted: Counter[str] = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        found = Counter(e.state for e in self.entries)
        found["delivered"] += self.delivered_unlisted.total()
        received = len(self.entries) + self.delivered_unlisted.total()
        return {"received": received, **{s: found.get(s, 0) for s in STATES}}

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "day": self.day.isoformat(),
            "timezone": self.timezone,
            "channel": self.channel,
            "counts": counts,
            "balanced": counts["received"] == sum(counts[s] for s in STATES)
            and counts["unexplained"] == 0,
            "unexplained": [e.as_dict() for e in self.entries if e.state == "unexplained"],
            "refused_requests": self.refused_requests,
            "kept": self.kept,
        }

    def as_csv(self) -> str:
        if self.delivered_unlisted:
            raise ValueError("a report of the exceptions only has no row for each order")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["channel", "external_id", "order_number", "state", "detail"])
        for e in self.entries:
            cells = [e.channel, e.external_id, e.order_number, e.state, e.detail]
            writer.writerow([safe_cell(c) for c in cells])
        return out.getvalue()


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite keeps no offset; orderbus writes UTC
    return value


def window(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


Sent = tuple[str, datetime | None, datetime | None]  # message id, created, published


def reconcile(
    conn: Connection,
    day: date,
    *,
    channel: str | None = None,
    timezone: str = "Asia/Shanghai",
    router_queue: str | None = None,
    grace: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
    every_order: bool = True,
) -> Report:
    """The day's report. ``every_order=False`` lists only the orders that are
    not delivered and counts the delivered ones by channel (a page of counts
    and exceptions; a day of 10,000 orders lists tens); a CSV, a kept day and
    a comparison with a channel's export need every order."""
    zone = ZoneInfo(timezone)
    start, end = window(day, zone)
    now = now or datetime.now(UTC)
    kept = kept_report(conn, day, timezone, channel)
    if kept is not None:
        if not every_order:
            _unlist_delivered(kept)
        return kept
    report = Report(day, timezone, channel)
    if conn.dialect.name == "postgresql":
        summaries, report.delivered_unlisted = _summaries_in_sql(
            conn, start, end, channel, every_order
        )
    else:
        summaries = _summaries(conn, start, end, channel)
    report.entries = [
        Entry(o.channel, o.external_id, o.number, *_state_of(o, now, grace)) for o in summaries
    ]
    if not every_order:  # (PostgreSQL counted most of them already)
        _unlist_delivered(report)
    report.entries += _refused_by_router(conn, start, end, router_queue, channel)
    report.refused_requests = _refused_requests(conn, start, end, channel)
    return report


def _unlist_delivered(report: Report) -> None:
    """The delivered entries counted by channel, not listed."""
    listed = []
    for e in report.entries:
        if e.state == "delivered":
            report.delivered_unlisted[e.channel] += 1
        else:
            listed.append(e)
    report.entries = listed


class OrderSummary(NamedTuple):
    """What a day's order's state is decided from (a tuple: PostgreSQL's
    rows are taken as they come, 10,000 for a day's page)."""

    number: str
    channel: str
    external_id: str
    hold_status: str | None
    messages: int  # the router made for it, all days
    pending: list[str] | None  # of those, the ones no system's inbox holds
    oldest_pending: datetime | None  # published (or made) the longest ago
    letter: str | None  # its first open dead letter, "queue: reason"


def _summaries(
    conn: Connection, start: datetime, end: datetime, channel: str | None
) -> list[OrderSummary]:
    """The day's orders read part by part and put together here."""
    routed = _routed_orders(conn, start, end, channel)
    numbers = {r["order_number"] for r in routed}
    sent = _messages_by_order(conn, {r["id"]: r["order_number"] for r in routed})
    delivered = _delivered_messages(conn, numbers)
    letters = _open_letters(conn, numbers)
    found = []
    for r in routed:
        number = r["order_number"]
        messages = sent.get(number, [])
        pending = sorted((m for m in messages if m[0] not in delivered), key=lambda m: m[0])
        times = [t for m in pending if (t := m[2] or m[1]) is not None]
        oldest = min(times, default=None)
        found.append(
            OrderSummary(
                number,
                r["channel"],
                r["external_id"],
                r["hold_status"],
                len(messages),
                [m[0] for m in pending],
                oldest,
                letters.get(number),
            )
        )
    return found


# The same on PostgreSQL in one statement: a day of 10,000 orders is 30,000
# messages and their inbox rows, which PostgreSQL finds faster than they can
# be fetched one by one (issue 19). Everything a day's orders need is read
# from pages that hold that day's rows side by side, not a page an order
# (order numbers are hashes: by number, a day's orders are everywhere in an
# index, and a day asked for the first time read 3,500 pages from the disk
# at 1,000,000 orders):
# - the orders, from the arrivals that made them (number, channel, platform
#   number; an arrival from before migration 0037 has no number, read from
#   its order): a channel's from its index by (channel, time) alone, which
#   holds them; with their hold's state (an order's hold_status is its hold's);
# - their messages' ids, from the outbox's index by (order row, message id):
#   as one range, from the day's first order row to its last, when the
#   day's orders are most of the rows in it (ids grow with time, so every
#   channel's orders of a day are one run of ids; an order of the next day
#   in the run drops out when joined to the day's orders), else by each
#   order's row (a channel's day; an order made days after its arrival); a
#   row without an order id, by number. Counted in the index's order;
# - which were not delivered: each message looked for (hashed) among the
#   inbox's entries by (delivery time, message id) over the day and the hour
#   after; only those not there (a retry days later, an order's later
#   change, or none at all) are looked for by their order's number;
# - and only for a message not delivered at all, its row's time; and the
#   open dead letters of the day's orders (read by the letters' state when
#   there are fewer of them than orders, else by each order's number).
# For a page (``every_order`` false) the orders plainly delivered are counted
# by channel here, not sent: a day of 10,000 orders is then tens of rows, and
# the 10,000 made into entries were a third of the page's time.
DAY_IN_SQL = """
WITH day_orders AS MATERIALIZED (
    SELECT a.order_id AS id,
        coalesce(
            a.order_number,
            (SELECT o.order_number FROM orders AS o WHERE o.id = a.order_id)
        ) AS order_number,
        a.channel, a.external_id, h.status AS hold_status
    FROM arrivals AS a LEFT JOIN holds AS h ON h.order_id = a.order_id
    WHERE a.received_at >= :start AND a.received_at < :end
        AND (CAST(:channel AS text) IS NULL OR a.channel = :channel)
        AND a.outcome = ANY (:made) AND a.order_version = 1
        AND a.order_id IS NOT NULL
),
span AS (
    SELECT min(d.id) AS first_id, max(d.id) AS last_id,
        max(d.id) - min(d.id) < :span_per_order * count(*) + 1000 AS dense
    FROM day_orders AS d
),
in_span AS NOT MATERIALIZED (
    SELECT x.order_id AS id, x.message_id
    FROM outbox AS x
    WHERE (SELECT s.dense FROM span AS s)
        AND x.order_id >= (SELECT s.first_id FROM span AS s)
        AND x.order_id <= (SELECT s.last_id FROM span AS s)
),
elsewhere AS MATERIALIZED (
    SELECT d.id, x.message_id
    FROM day_orders AS d JOIN outbox AS x ON x.order_id = d.id
    WHERE NOT (SELECT s.dense FROM span AS s)
    UNION ALL
    SELECT d.id, x.message_id
    FROM day_orders AS d JOIN outbox AS x
        ON x.order_id IS NULL AND x.order_number = d.order_number
),
counted AS (
    SELECT m.id, count(*) AS messages FROM in_span AS m GROUP BY m.id
),
counted_elsewhere AS (
    SELECT m.id, count(*) AS messages FROM elsewhere AS m GROUP BY m.id
),
not_delivered_soon AS MATERIALIZED (
    SELECT m.id, m.message_id
    FROM (
        SELECT * FROM in_span UNION ALL SELECT * FROM elsewhere
    ) AS m
    WHERE NOT EXISTS (
        SELECT FROM inbox AS i
        WHERE i.delivered_at >= :start AND i.delivered_at < :soon
            AND i.message_id = m.message_id
    )
),
not_delivered AS MATERIALIZED (
    SELECT n.id, n.message_id, d.order_number,
        EXISTS (
            SELECT FROM inbox AS j
            WHERE j.order_number = d.order_number AND j.message_id = n.message_id
        ) AS delivered_later  -- in the list, so it is asked for these few only
    FROM not_delivered_soon AS n JOIN day_orders AS d ON d.id = n.id
),
pending AS (
    SELECT n.id,
        array_agg(n.message_id ORDER BY n.message_id) AS pending,
        min((
            SELECT min(coalesce(y.published_at, y.created_at)) FROM outbox AS y
            WHERE (y.order_id = n.id OR (y.order_id IS NULL AND y.order_number = n.order_number))
                AND y.message_id = n.message_id
        )) AS oldest_pending
    FROM not_delivered AS n WHERE NOT n.delivered_later
    GROUP BY n.id
),
letters AS (
    SELECT DISTINCT ON (l.order_number) l.order_number, l.queue || ': ' || l.reason AS letter
    FROM day_orders AS d JOIN dead_letters AS l ON l.order_number = d.order_number
    WHERE l.status = 'open'
    ORDER BY l.order_number, l.id
),
day_states AS MATERIALIZED (
    SELECT d.id, d.order_number, d.channel, d.external_id, d.hold_status,
        coalesce(c.messages, 0) + coalesce(w.messages, 0) AS messages,
        p.pending, p.oldest_pending, t.letter,
        -- delivered, as _state_of decides it: counted, not listed, on a page
        t.letter IS NULL AND d.hold_status IS NULL AND p.pending IS NULL
            AND coalesce(c.messages, 0) + coalesce(w.messages, 0) > 0 AS delivered
    FROM day_orders AS d
    LEFT JOIN counted AS c ON c.id = d.id
    LEFT JOIN counted_elsewhere AS w ON w.id = d.id
    LEFT JOIN pending AS p ON p.id = d.id
    LEFT JOIN letters AS t ON t.order_number = d.order_number
)
SELECT s.id, s.order_number, s.channel, s.external_id, s.hold_status, s.messages,
    s.pending, s.oldest_pending, s.letter
FROM day_states AS s
WHERE :every_order OR NOT s.delivered
UNION ALL
SELECT NULL, NULL, s.channel, NULL, NULL, count(*), NULL, NULL, NULL
FROM day_states AS s
WHERE NOT :every_order AND s.delivered
GROUP BY s.channel
ORDER BY 1
"""
# a day's deliveries are looked for by their time up to this long after it
DELIVERED_SOON = timedelta(hours=1)
# A day's orders' messages are read as one range of order rows when the
# range holds fewer than this many rows an order (and 1,000 more); else by
# each order's row: a channel's orders are among every channel's, and an
# order made long after its arrival (a refused order retried days later) is
# far from its day's others.
SPAN_PER_ORDER = 3


def _summaries_in_sql(
    conn: Connection, start: datetime, end: datetime, channel: str | None, every_order: bool
) -> tuple[list[OrderSummary], Counter[str]]:
    """The day's orders (with ``every_order=False``, only those not plainly
    delivered: no open dead letter, no hold, every message in an inbox), and
    the delivered ones not listed, counted by channel."""
    # a day of a short history is a tenth of the arrivals, which PostgreSQL
    # would rather read whole: a day is read by its time, at any length
    prefer_key_lookups(conn)
    # its estimate of the statement's cost can pass the bar for compiling
    # it (JIT), which took 0.5 s here for a statement of 30 ms
    conn.exec_driver_sql("SET LOCAL jit = off")
    rows = conn.execute(
        text(DAY_IN_SQL),
        {
            "start": start,
            "end": end,
            "soon": end + DELIVERED_SOON,
            "channel": channel,
            "made": list(MADE_AN_ORDER),
            "span_per_order": SPAN_PER_ORDER,
            "every_order": every_order,
        },
    ).all()  # at once: a row at a time was a fifth of the time
    listed = []
    delivered: Counter[str] = Counter()
    for row in rows:
        if row[0] is None:  # the delivered orders of a channel, counted
            delivered[row[2]] += row[5]
        else:
            listed.append(OrderSummary._make(row[1:]))
    return listed, delivered


def _routed_orders(
    conn: Connection, start: datetime, end: datetime, channel: str | None
) -> list[Any]:
    """The orders made by an arrival in the window (its first accepted
    arrival: ``new``, or ``held`` as a suspected duplicate, at version 1).
    Each order has one such arrival, so an order of a kept day, whose
    arrival was deleted, is on no other day."""
    a = arrivals.c
    made = select(a.order_id).where(
        a.received_at >= start,
        a.received_at < end,
        a.outcome.in_(MADE_AN_ORDER),
        a.order_version == 1,
    )
    if channel:
        made = made.where(a.channel == channel)
    ids = sorted({i for i in conn.scalars(made) if i is not None})
    found: list[Any] = []
    for chunk in in_chunks(ids):
        found += (
            conn.execute(
                select(
                    orders.c.id,
                    orders.c.order_number,
                    orders.c.channel,
                    orders.c.external_id,
                    orders.c.hold_status,
                )
                .where(orders.c.id.in_(chunk))
                .order_by(orders.c.id)
            )
            .mappings()
            .all()
        )
    return found


def kept_report(conn: Connection, day: date, timezone: str, channel: str | None) -> Report | None:
    """The day's reconciliation as kept before its rows were deleted; None
    when the day was not kept."""
    d = reconciled_days.c
    refused = conn.scalar(select(d.refused_requests).where(d.day == day, d.timezone == timezone))
    if refused is None:
        return None
    r = reconciled_orders.c
    query = select(r.channel, r.external_id, r.order_number, r.state, r.detail).where(
        r.day == day, r.timezone == timezone
    )
    if channel:
        query = query.where(r.channel == channel)
    report = Report(day, timezone, channel, kept=True)
    report.entries = [Entry(*row) for row in conn.execute(query.order_by(r.id))]
    counts = dict(refused)
    report.refused_requests = counts.get(channel, 0) if channel else sum(counts.values())
    return report


def keep(conn: Connection, report: Report, now: datetime) -> None:
    """Keep a whole day's reconciliation (every channel), before its rows go."""
    start, end = window(report.day, ZoneInfo(report.timezone))
    refused: Counter[str] = Counter()
    for channel, count in conn.execute(
        select(rejected_requests.c.channel, func.count())
        .where(
            rejected_requests.c.received_at >= start,
            rejected_requests.c.received_at < end,
            rejected_requests.c.reason != "ignored",
        )
        .group_by(rejected_requests.c.channel)
    ):
        refused[channel] += int(count)
    conn.execute(
        insert(reconciled_days).values(
            day=report.day, timezone=report.timezone, refused_requests=dict(refused), kept_at=now
        )
    )
    rows = [{"day": report.day, "timezone": report.timezone, **e.as_dict()} for e in report.entries]
    for chunk in in_chunks(rows):
        conn.execute(insert(reconciled_orders), chunk)


def _messages_by_order(conn: Connection, numbers: dict[int, str]) -> dict[str, list[Sent]]:
    """Each order's outbox messages (``numbers``: each order's number by its
    row id): by the order's row, indexed; a message without one by number."""
    sent: dict[str, list[Sent]] = {}
    o = outbox.c
    columns = (o.order_number, o.message_id, o.created_at, o.published_at)
    for chunk in in_chunks(sorted(numbers)):
        found = conn.execute(select(o.order_id, *columns).where(o.order_id.in_(chunk)))
        for row in found:
            sent.setdefault(numbers[row.order_id], []).append(
                (row.message_id, _utc(row.created_at), _utc(row.published_at))
            )
    for chunk in in_chunks(sorted(numbers.values())):
        found = conn.execute(
            select(*columns).where(o.order_id.is_(None), o.order_number.in_(chunk))
        )
        for row in found:
            sent.setdefault(row.order_number, []).append(
                (row.message_id, _utc(row.created_at), _utc(row.published_at))
            )
    return sent


def _delivered_messages(conn: Connection, numbers: set[str]) -> set[str]:
    """The message ids of these orders that a system's inbox holds."""
    found: set[str] = set()
    for chunk in in_chunks(sorted(numbers)):
        found |= set(
            conn.scalars(select(inbox.c.message_id).where(inbox.c.order_number.in_(chunk)))
        )
    return found


def _open_letters(conn: Connection, numbers: set[str]) -> dict[str, str]:
    """Each order's first open dead letter, as "queue: reason"."""
    letters: dict[str, str] = {}
    for row in conn.execute(
        select(dead_letters.c.order_number, dead_letters.c.queue, dead_letters.c.reason).where(
            dead_letters.c.status == "open", dead_letters.c.order_number.is_not(None)
        )
    ):
        if row.order_number in numbers:
            letters.setdefault(row.order_number, f"{row.queue}: {row.reason}")
    return letters


def _state_of(o: OrderSummary, now: datetime, grace: timedelta) -> tuple[str, str]:
    """Where a routed order is, and why. (DAY_IN_SQL's ``delivered`` picks
    the orders delivered here with no hold and no open dead letter; the
    every-backend tests compare a day's page with its every-order report.)"""
    if o.letter is not None and o.hold_status not in ("rejected", "open"):
        return "dead_lettered", o.letter
    if o.hold_status == "rejected":
        return "rejected", "held as a duplicate, rejected by a person"
    if o.hold_status == "open":
        return "held", "waiting for a person (GET /holds)"
    if o.messages and not o.pending:
        return "delivered", f"{o.messages} message(s) delivered"
    if not o.messages:
        return "unexplained", "accepted, but no message was made for any system"
    oldest = _utc(o.oldest_pending) or now
    names = ", ".join(o.pending or ())
    if now - oldest > grace:
        return "unexplained", f"not delivered after {grace}: {names}"
    return "in_flight", f"on its way: {names}"


def _refused_by_router(
    conn: Connection,
    start: datetime,
    end: datetime,
    router_queue: str | None,
    channel: str | None,
) -> list[Entry]:
    """Arrivals the router refused (no order number): rejected or dead-lettered."""
    refused = select(dead_letters).where(
        dead_letters.c.order_number.is_(None),
        dead_letters.c.first_failed_at >= start,
        dead_letters.c.first_failed_at < end,
        dead_letters.c.status != "retried",
    )
    if router_queue:
        refused = refused.where(dead_letters.c.queue == router_queue)
    if channel:
        refused = refused.where(dead_letters.c.channel == channel)
    entries = []
    for d in conn.execute(refused).mappings():
        external = _external_id(d["body"])
        if d["reason"] in REFUSED_BY_ROUTER or d["status"] == "discarded":
            state = "rejected"
        else:
            state = "dead_lettered"
        entries.append(
            Entry(d["channel"] or "?", external, None, state, f"{d['reason']}: {d['detail']}")
        )
    return entries


def _refused_requests(conn: Connection, start: datetime, end: datetime, channel: str | None) -> int:
    requests = select(func.count()).where(
        rejected_requests.c.received_at >= start,
        rejected_requests.c.received_at < end,
        rejected_requests.c.reason != "ignored",
    )
    if channel:
        requests = requests.where(rejected_requests.c.channel == channel)
    return int(conn.scalar(requests.select_from(rejected_requests)) or 0)


def _external_id(body: str) -> str | None:
    try:
        value = json.loads(body).get("external_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def compare(report: Report, conn: Connection, channel: str, export_ids: set[str]) -> dict[str, Any]:
    """Orders in the channel's export that orderbus never received (not even as
    a refused one), and orders orderbus received that day the export lacks."""
    ours = {e.external_id for e in report.entries if e.channel == channel and e.external_id}
    missing = sorted(export_ids - ours)
    if missing:  # received on another day is still received
        known = set(
            conn.scalars(
                select(orders.c.external_id).where(
                    orders.c.channel == channel, orders.c.external_id.in_(missing)
                )
            )
        )
        missing = [m for m in missing if m not in known]
    return {
        "channel": channel,
        "day": report.day.isoformat(),
        "in_export_not_received": missing,
        "received_not_in_export": sorted(ours - export_ids),
        "export_orders": len(export_ids),
        "received_orders": len(ours),
    }


def export_ids(data: bytes, column: str) -> set[str]:
    """The external ids in a channel's export: CSV (UTF-8, BOM or GBK/GB18030)
    or an XLSX workbook (its first sheet)."""
    from infra.spreadsheets import read_csv, read_xlsx

    table = read_xlsx(data) if data.startswith(b"PK\x03\x04") else read_csv(data)
    try:
        index = [h.strip().lower() for h in table.header].index(column.strip().lower())
    except ValueError:
        raise ValueError(
            f"the export has no column {column!r} (columns: {', '.join(table.header)})"
        ) from None
    return {
        cells[index].strip()
        for _, cells in table.rows
        if len(cells) > index and cells[index].strip()
    }
