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
