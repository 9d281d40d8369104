"""The benchmark's latency figures, from rows in PostgreSQL: the whole run's
percentiles, and beside them the 99th percentile of the orders received once
the run had settled (its first two seconds left out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench import baseline
from bench.pipeline import PLAIN_STAGES, _latency
from infra.database import make_engine


def test_the_settled_p99_leaves_out_only_the_first_two_seconds(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    # 100 orders in the first 2 s, each delivered 500 ms later; 300 after, in 20 ms
    arrivals = [(n, start + timedelta(milliseconds=20 * n), 500) for n in range(100)]
    arrivals += [(n, start + timedelta(milliseconds=2000 + 10 * n), 20) for n in range(100, 400)]
    with engine.begin() as conn:
        conn.exec_driver_sql(baseline.SCHEMA)
        for n, received, took in arrivals:
            params = {
                "id": f"E{n}",
                "at": received,
                "done": received + timedelta(milliseconds=took),
            }
            conn.execute(
                text(
                    "INSERT INTO plain_orders (channel, shop, external_id, body, received_at) "
                    "VALUES ('web', 's', :id, '{}', :at)"
                ),
                params,
            )
            conn.execute(
                text("INSERT INTO plain_deliveries VALUES (:id, 'warehouse', :id, 200, :done)"),
                params,
            )
    figures = _latency(engine, PLAIN_STAGES)
    assert figures["p50"] == 20.0
    assert figures["p99"] == 500.0  # the first seconds' quarter of the orders set it
    assert figures["max"] == 500.0
    assert figures["p99_after_2s"] == 20.0  # the order received at 2.000 s counts
    engine.dispose()
