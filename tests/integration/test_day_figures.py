"""The dashboard's day figures with their settled hours remembered
(console/day_figures.py), on both backends: the same figures as reading the
whole day each time, at every hour of the day; a settled hour read once."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, update

from console import figures
from console.day_figures import SETTLE, DayFigures, _percentiles
from infra.tables import inbox, orders
from tests.unit.test_alerts import route

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 2, tzinfo=SHANGHAI)


def _a_day_of_orders_and_deliveries(engine: Engine) -> None:
    """Six orders over the day (one just before it), and forty deliveries (39 in the day) of
    three systems spread over its hours, each with its latency."""
    names = [f"DAY-{n}" for n in range(6)]
    for name in names:
        route(engine, name)
    rng = random.Random(7)
    with engine.begin() as conn:
        for n, name in enumerate(names):
            at = DAY + timedelta(hours=4 * n - 1, minutes=30)  # 23:30 the day before, 03:30, ...
            conn.execute(update(orders).where(orders.c.external_id == name).values(created_at=at))
        for n in range(40):
            conn.execute(
                insert(inbox).values(
                    consumer=("warehouse", "finance", "notification")[n % 3],
                    message_id=f"day-{n}",
                    order_number=f"OB-DAY-{n}",
                    order_version=1,
                    response_status=200,
                    attempts=1,
                    delivered_at=(DAY + timedelta(minutes=37 * n)).astimezone(UTC),
                    latency_ms=rng.choice([35, 80, 80, 120, 450, 2_000, 9_000]),
                )
            )


def _whole_day(engine: Engine, start: datetime, end: datetime) -> tuple[object, ...]:
    with engine.connect() as conn:
        return (
            figures.orders_by_hour(conn, start, end, SHANGHAI),
            figures.delivered_count(conn, start, end),
            [
                (x.system, x.count, x.p50, x.p95)
                for x in figures.latency_by_system(conn, start, end)
            ],
        )


def test_the_remembered_day_reads_as_the_whole_day_at_every_hour(engine: Engine) -> None:
    _a_day_of_orders_and_deliveries(engine)
    start, end = figures.day_window(DAY.date(), SHANGHAI)
    whole = _whole_day(engine, start, end)
    remembered = DayFigures()
    for hours in (0, 1, 5, 13, 13, 18, 23, 24, 30):  # a process asking as the day goes on
        now = start + timedelta(hours=hours, minutes=7)
        with engine.connect() as conn:
            day = remembered.read(conn, start, end, SHANGHAI, now)
        read = (
            day.by_hour,
            day.delivered,
            [(x.system, x.count, x.p50, x.p95) for x in day.latency()],
        )
        assert read == whole, hours
    assert whole[1] == 39 and sum(whole[0]["web-shop"]) == 5  # type: ignore[index]


def test_a_settled_hour_is_read_once_and_the_open_hours_each_time(engine: Engine) -> None:
    """A row written into an hour settled before (which the pipeline does not
    do: rows are written at the time they carry) is not seen: that hour was
    read once. A row in an hour still open is seen at the next read."""
    _a_day_of_orders_and_deliveries(engine)
    start, end = figures.day_window(DAY.date(), SHANGHAI)
    now = start + timedelta(hours=13, minutes=30)
    remembered = DayFigures()
    with engine.connect() as conn:
        first = remembered.read(conn, start, end, SHANGHAI, now).delivered

    def delivered_at(at: datetime, name: str) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert(inbox).values(
                    consumer="warehouse", message_id=name, order_number="OB-X", order_version=1,
                    response_status=200, attempts=1, delivered_at=at.astimezone(UTC),
                    latency_ms=50,
                )
            )  # fmt: skip

    delivered_at(start + timedelta(hours=2), "into-a-settled-hour")
    delivered_at(now - SETTLE / 2, "into-the-open-hour")
    with engine.connect() as conn:
        again = remembered.read(conn, start, end, SHANGHAI, now).delivered
        fresh = DayFigures().read(conn, start, end, SHANGHAI, now).delivered
    assert (first, again, fresh) == (39, 40, 41)


@pytest.mark.parametrize(
    "values",
    [[5], [5, 9], [1, 2, 3], [7, 7, 7, 7], list(range(1, 21)), list(range(1, 101)), [3, 1] * 50],
)
def test_the_percentiles_from_counts_are_the_exact_ones(values: list[int]) -> None:
    found = _percentiles("warehouse", Counter(values))
    ordered = sorted(values)
    assert found.count == len(values)
    assert found.p50 == pytest.approx(statistics.median(ordered) / 1000)
    rank = next(r for r in range(1, len(ordered) + 1) if r * 100 >= 95 * len(ordered))
    assert found.p95 == pytest.approx(ordered[rank - 1] / 1000)
