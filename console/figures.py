"""The numbers behind the dashboard and the reports, read from the records
the pipeline keeps (orders, arrivals, inbox, dead letters, holds, outbox,
alerts). Each function reads one window of time; none writes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, Connection, DateTime, bindparam, func, select

from admin_api import causes
from admin_api.metrics import delivered_revisions
from infra.database import prefer_key_lookups
from infra.tables import alerts, arrivals, dead_letters, holds, inbox, orders, outbox


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite keeps no offset


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def orders_by_hour(
    conn: Connection, start: datetime, end: datetime, zone: ZoneInfo
) -> dict[str, list[int]]:
    """Orders first received in the window: channel -> 24 hourly counts."""
    per: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    c = orders.c
    window = (c.created_at >= start, c.created_at < end)
    if conn.dialect.name == "postgresql":  # counted there: 24 rows a channel, not a day's orders
        # each row put in its hour by comparing its time with the hours'
        # starts: a time zone's conversion a row took 18.6 ms a day at
        # 1,000,000 orders, the comparison 4.8 (EXPLAIN ANALYZE)
        starts, hours = hour_starts(start, end, zone)
        edges = bindparam("hour_starts", starts, type_=ARRAY(DateTime(timezone=True)))
        bucket = func.width_bucket(c.created_at, edges)
        for channel, at, count in conn.execute(
            select(c.channel, bucket, func.count()).where(*window).group_by(c.channel, bucket)
        ):
            per[channel][hours[int(at)]] += int(count)
        return dict(sorted(per.items()))
    for channel, at in conn.execute(select(c.channel, c.created_at).where(*window)):
        per[channel][utc(at).astimezone(zone).hour] += 1
    return dict(sorted(per.items()))


def hour_starts(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[list[datetime], list[int]]:
    """The instants after ``start`` and before ``end`` at which the hour of
    the clock in ``zone`` changes, and the clock's hour from each (the first
    from ``start``): a row's place among the instants is its hour. Found a
    quarter of an hour at a time, so offsets of 30 and 45 minutes and a
    change of summer time are where the clock has them."""
    step = timedelta(minutes=15)
    at = start.astimezone(UTC)
    at -= timedelta(minutes=at.minute % 15, seconds=at.second, microseconds=at.microsecond)
    hours = [start.astimezone(zone).hour]
    starts: list[datetime] = []
    while (at := at + step) < end:
        hour = at.astimezone(zone).hour
        if hour != hours[-1]:
            starts.append(at)
            hours.append(hour)
    return starts, hours


def delivered_count(conn: Connection, start: datetime, end: datetime) -> int:
    return int(
        conn.scalar(
            select(func.count())
            .select_from(inbox)
            .where(inbox.c.delivered_at >= start, inbox.c.delivered_at < end)
        )
        or 0
    )


def exceptions_by_cause(conn: Connection, start: datetime, end: datetime) -> Counter[str]:
    rows = conn.execute(
        select(dead_letters.c.reason, dead_letters.c.detail).where(
            dead_letters.c.first_failed_at >= start, dead_letters.c.first_failed_at < end
        )
    )
    return Counter(causes.cause_of(r.reason, r.detail) for r in rows)


def count_where(conn: Connection, table: Any, *conditions: Any) -> int:
    return int(conn.scalar(select(func.count()).select_from(table).where(*conditions)) or 0)


def waiting(conn: Connection) -> dict[str, int]:
    return {
        "holds": count_where(conn, holds, holds.c.status == "open"),
        "dead_letters": count_where(conn, dead_letters, dead_letters.c.status == "open"),
        "outbox": count_where(conn, outbox, outbox.c.published_at.is_(None)),
        "alerts": count_where(conn, alerts, alerts.c.status == "open"),
    }


def open_alerts(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            select(alerts.c.rule, alerts.c.subject, alerts.c.summary, alerts.c.opened_at)
            .where(alerts.c.status == "open")
            .order_by(alerts.c.opened_at.desc())
            .limit(limit)
        ).mappings()
    ]


@dataclass
class Latency:
    system: str
    count: int
    p50: float
    p95: float


def latency_by_system(conn: Connection, start: datetime, end: datetime) -> list[Latency]:
    """From a revision's arrival at the router to its delivery, per system,
    for deliveries in the window (seconds). Each inbox row keeps its own
    (``latency_ms``): on PostgreSQL the percentiles are one aggregate over the
    window's rows; rows from before migration 0031 are measured by joining each
    to its order's arrival."""
    i = inbox.c
    window = (i.delivered_at >= start, i.delivered_at < end)
    if conn.dialect.name == "postgresql":
        found = conn.execute(
            select(
                i.consumer,
                func.count(),
                func.count(i.latency_ms),
                func.percentile_cont(0.5).within_group(i.latency_ms),
                func.percentile_disc(0.95).within_group(i.latency_ms),
            )
            .where(*window)
            .group_by(i.consumer)
            .order_by(i.consumer)
        ).all()
        if all(count == kept for _, count, kept, _, _ in found):
            return [
                Latency(system, count, float(p50) / 1000, float(p95) / 1000)
                for system, count, _, p50, p95 in found
            ]
    per: dict[str, list[float]] = defaultdict(list)
    for system, ms in conn.execute(select(i.consumer, i.latency_ms).where(*window)):
        if ms is not None:
            per[system].append(ms / 1000)
    per_system = _latencies_before_0031(conn, start, end)
    for system, seconds in per_system.items():
        per[system] += seconds
    return [_percentiles(system, seconds) for system, seconds in sorted(per.items())]


def deliveries(
    conn: Connection, start: datetime, end: datetime
) -> tuple[int, dict[str, Counter[int]]]:
    """The window's deliveries counted, and per system a count of each
    latency in whole milliseconds (counted by the database: one row a
    distinct value), from one read of the window. Rows from before migration
    0031 are measured by their arrival's time."""
    i = inbox.c
    found: dict[str, Counter[int]] = defaultdict(Counter)
    delivered = 0
    unmeasured = False
    for system, ms, count in conn.execute(
        select(i.consumer, i.latency_ms, func.count())
        .where(i.delivered_at >= start, i.delivered_at < end)
        .group_by(i.consumer, i.latency_ms)
    ):
        delivered += int(count)
        if ms is None:
            unmeasured = True
        else:
            found[system][int(ms)] += int(count)
    if unmeasured:
        for system, seconds in _latencies_before_0031(conn, start, end).items():
            found[system].update(round(s * 1000) for s in seconds)
    return delivered, dict(found)


def _latencies_before_0031(
    conn: Connection, start: datetime, end: datetime
) -> dict[str, list[float]]:
    """The window's inbox rows without ``latency_ms``, by their arrival's time."""
    i, a = inbox.c, arrivals.c
    prefer_key_lookups(conn)  # a day's deliveries by index, their orders by key
    rows = conn.execute(
        delivered_revisions(i.consumer, i.delivered_at, a.received_at).where(
            i.delivered_at >= start, i.delivered_at < end, i.latency_ms.is_(None)
        )
    )
    per: dict[str, list[float]] = defaultdict(list)
    for system, delivered, received in rows:
        per[system].append(max((utc(delivered) - utc(received)).total_seconds(), 0.0))
    return per


def p95_rank(n: int) -> int:
    """The 95th percentile's rank among ``n`` values (from 1): ceil(0.95 n),
    in whole numbers, as PostgreSQL's ``percentile_disc(0.95)``."""
    return max(1, -(-95 * n // 100))


def _percentiles(system: str, seconds: list[float]) -> Latency:
    seconds.sort()
    p95 = seconds[p95_rank(len(seconds)) - 1]
    return Latency(system, len(seconds), float(median(seconds)), p95)


@dataclass
class Bucket:
    """One row of a report: a period and a key (channel, shop or SKU)."""

    orders: int = 0
    units: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)  # currency -> sum
    cancelled: int = 0
    refunded: int = 0

    def add_amount(self, currency: str, value: Decimal) -> None:
        self.amounts[currency] = self.amounts.get(currency, Decimal("0")) + value


def period_of(day: date, period: str) -> str:
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    return day.isoformat()


def sales(
    conn: Connection, start: datetime, end: datetime, zone: ZoneInfo, period: str, by: str
) -> dict[tuple[str, str], Bucket]:
    """Orders placed in the window, by (period, channel | shop | sku)."""
    buckets: dict[tuple[str, str], Bucket] = defaultdict(Bucket)
    rows = conn.execute(
        select(orders.c.channel, orders.c.shop, orders.c.status, orders.c.created_at, orders.c.body)
        .where(orders.c.created_at >= start, orders.c.created_at < end)
        .execution_options(yield_per=1000)
    )
    for row in rows:
        key_period = period_of(utc(row.created_at).astimezone(zone).date(), period)
        body = json.loads(row.body)
        currency = str(body.get("currency", ""))
        if by == "sku":
            for item in body.get("items", []):
                bucket = buckets[(key_period, str(item.get("sku")))]
                bucket.orders += 1
                bucket.units += int(item.get("quantity", 0))
                value = Decimal(str(item.get("unit_price", "0"))) * int(item.get("quantity", 0))
                bucket.add_amount(currency, value - Decimal(str(item.get("discount", "0"))))
                _count_status(bucket, row.status)
            continue
        key = row.channel if by == "channel" else f"{row.channel} · {row.shop}"
        bucket = buckets[(key_period, key)]
        bucket.orders += 1
        bucket.units += sum(int(i.get("quantity", 0)) for i in body.get("items", []))
        bucket.add_amount(currency, Decimal(str(body.get("total", "0"))))
        _count_status(bucket, row.status)
    return dict(sorted(buckets.items()))


def _count_status(bucket: Bucket, status: str) -> None:
    if status == "cancelled":
        bucket.cancelled += 1
    elif status == "refunded":
        bucket.refunded += 1


def slow_skus(
    conn: Connection, now: datetime, days: int, limit: int = 50
) -> list[tuple[str, datetime]]:
    """SKUs ordered before but not in the last ``days`` days, longest idle first."""
    since = now - timedelta(days=days)
    last: dict[str, datetime] = {}
    rows = conn.execute(
        select(orders.c.created_at, orders.c.body).execution_options(yield_per=1000)
    )
    for at, body in rows:
        moment = utc(at)
        for item in json.loads(body).get("items", []):
            sku = str(item.get("sku"))
            if moment > last.get(sku, datetime.min.replace(tzinfo=UTC)):
                last[sku] = moment
    idle = sorted(((sku, at) for sku, at in last.items() if at < since), key=lambda x: x[1])
    return idle[:limit]
