"""The admin API's reads on every storage backend: the order timeline and the
metrics (whose latency arithmetic differs between SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from admin_api import lookup
from admin_api.metrics import DatabaseCollector, render
from tests.unit.test_admin_access import route_and_deliver

pytestmark = pytest.mark.integration


def test_timeline_and_metrics(engine: Engine) -> None:
    number = route_and_deliver(engine)
    with engine.connect() as conn:
        events = [e["event"] for e in lookup.timeline(conn, number)]
        found = lookup.find(conn, phone="139 1234 5678")
    assert events[:3] == ["received", "routed: new", "status paid"]
    assert "delivered to warehouse" in events
    assert [o["order_number"] for o in found] == [number]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render(DatabaseCollector(engine)).decode())
        for s in family.samples
    }
    count = samples[("orderbus_delivery_latency_seconds_count", (("consumer", "warehouse"),))]
    total = samples[("orderbus_delivery_latency_seconds_sum", (("consumer", "warehouse"),))]
    assert count == 1 and 0 <= total < 60


def test_reconciliation(engine: Engine) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from admin_api.reconcile import reconcile

    route_and_deliver(engine)  # warehouse delivered, finance dead-lettered
    day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    with engine.connect() as conn:
        summary = reconcile(conn, day, channel="web-shop", router_queue="t.router").as_dict()
    assert summary["counts"]["received"] == 1
    assert summary["counts"]["dead_lettered"] == 1
    assert summary["unexplained"] == []


def test_a_retry_job_on_every_backend(engine: Engine) -> None:
    from admin_api import retry_jobs
    from admin_api.deadletters import DeadLetterRecorder
    from admin_api.retry_jobs import RetryJobWorker
    from tests.factories import failure_delivery

    for i in range(2):
        DeadLetterRecorder(engine).handle(failure_delivery(message_id=f"job-{i}"))
    with engine.begin() as conn:
        job_id = retry_jobs.start(conn, {"reason": "delivery_rejected"}, 50.0, None, "ops")
    worker = RetryJobWorker(engine)
    assert [worker.step(), worker.step(), worker.step()] == [0.02, 0.02, None]
    with engine.connect() as conn:
        progress = retry_jobs.progress(conn, job_id)
    assert progress is not None
    assert (progress["status"], progress["done"], progress["new_failures_since_start"]) == (
        "done",
        2,
        0,
    )


def test_the_dashboards_latency_from_kept_and_from_older_inbox_rows(engine: Engine) -> None:
    """Each delivery keeps its time since its revision arrived (latency_ms);
    rows written before it was kept are measured from the arrival, and both
    count in one day's percentiles, on each backend."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select, update

    from console.figures import latency_by_system
    from infra.tables import arrivals, inbox

    number = route_and_deliver(engine)
    with engine.begin() as conn:
        kept = conn.execute(
            select(inbox.c.latency_ms, inbox.c.delivered_at).where(inbox.c.consumer == "warehouse")
        ).one()
        received = conn.execute(
            select(arrivals.c.received_at).where(arrivals.c.outcome == "new")
        ).scalar_one()
        assert kept.latency_ms is not None and 0 <= kept.latency_ms < 60_000
        # one more delivery from before migration 0031: 30 s after its arrival
        older = received if received.tzinfo else received.replace(tzinfo=UTC)
        conn.execute(
            insert(inbox).values(
                consumer="warehouse",
                message_id="legacy-1",
                order_number=number,
                order_version=1,
                outcome="delivered",
                response_status=200,
                attempts=1,
                delivered_at=older + timedelta(seconds=30),
            )
        )
        # and the kept one made exactly 4 s
        conn.execute(
            update(inbox)
            .where(inbox.c.consumer == "warehouse", inbox.c.message_id != "legacy-1")
            .values(latency_ms=4000)
        )
    now = datetime.now(UTC)
    with engine.connect() as conn:
        found = {
            x.system: x
            for x in latency_by_system(conn, now - timedelta(hours=1), now + timedelta(hours=1))
        }
    warehouse = found["warehouse"]
    assert warehouse.count == 2
    assert warehouse.p50 == pytest.approx(17.0, abs=0.01)  # (4 + 30) / 2
    assert warehouse.p95 == pytest.approx(30.0, abs=0.01)
    with engine.begin() as conn:  # now only kept ones: the aggregate on PostgreSQL
        conn.execute(
            update(inbox).where(inbox.c.message_id == "legacy-1").values(latency_ms=10_000)
        )
    with engine.connect() as conn:
        found = {
            x.system: x
            for x in latency_by_system(conn, now - timedelta(hours=1), now + timedelta(hours=1))
        }
    assert found["warehouse"].count == 2
    assert found["warehouse"].p50 == pytest.approx(7.0) and found["warehouse"].p95 == pytest.approx(
        10.0
    )


def test_a_day_with_an_order_in_each_state_on_every_backend(engine: Engine) -> None:
    """PostgreSQL reconciles a day in one statement, SQLite part by part:
    the same states, counts and reasons from both."""
    from tests.unit.test_reconciliation import (
        check_every_order_is_in_one_state,
        make_day_of_orders,
    )

    check_every_order_is_in_one_state(engine, make_day_of_orders(engine))
