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
