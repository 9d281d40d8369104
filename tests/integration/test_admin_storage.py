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


def test_an_order_is_on_the_day_of_the_arrival_that_made_it_on_every_backend(
    engine: Engine,
) -> None:
    """Each order is on exactly one day: that of its first accepted arrival
    (new, or held as a suspected duplicate). Its copy, its change and a new
    order arriving the next day put only the new order on the next day."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from admin_api.reconcile import reconcile
    from infra.settings import Settings
    from infra.topology import build_topology
    from router.service import RouterService
    from tests.factories import delivery_for, order
    from tests.unit.test_reconciliation import shift_every_time

    router = RouterService(engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    later = "2026-11-11T01:00:01+08:00"  # the same sale keyed in a store: held
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9", placed_at=later)))
    shift_every_time(engine, timedelta(days=-1))
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))  # its copy
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1", version=2)))
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-2")))
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()

    def states(day: object) -> dict[str | None, str]:
        with engine.connect() as conn:
            report = reconcile(conn, day, now=now)  # type: ignore[arg-type]
        return {e.external_id: e.state for e in report.entries}

    assert states(today - timedelta(days=1)) == {"MP-1": "unexplained", "POS-9": "held"}
    assert states(today) == {"MP-2": "held"}  # the same phone, items and total as MP-1


def test_a_day_whose_arrivals_have_no_order_number_on_every_backend(engine: Engine) -> None:
    """The router writes each arrival's order number (a day's orders are read
    from their arrivals); arrivals written before migration 0037 have none
    and their day reconciles the same, read with their orders."""
    from sqlalchemy import select, update

    from infra.tables import arrivals
    from tests.unit.test_reconciliation import (
        check_every_order_is_in_one_state,
        make_day_of_orders,
    )

    now = make_day_of_orders(engine)
    with engine.begin() as conn:
        numbers = list(
            conn.scalars(select(arrivals.c.order_number).where(arrivals.c.order_id.is_not(None)))
        )
        assert len(numbers) == 5 and all(n and n.startswith("OB") for n in numbers)
        conn.execute(update(arrivals).values(order_number=None))
    check_every_order_is_in_one_state(engine, now)


def test_a_day_whose_messages_name_no_order_row_on_every_backend(engine: Engine) -> None:
    """The router writes each outbox row's order row id (a day's messages are
    read by it); rows written before migration 0038, a retried dead letter
    and a delay notice have none: the day reconciles the same, and the
    order's timeline still shows them, read by the order's number."""
    from sqlalchemy import select, update

    from infra.tables import outbox
    from tests.unit.test_reconciliation import (
        check_every_order_is_in_one_state,
        make_day_of_orders,
        number_of,
    )

    now = make_day_of_orders(engine)
    with engine.begin() as conn:
        ids = list(conn.scalars(select(outbox.c.order_id)))
        assert len(ids) >= 12 and all(ids)  # three messages an order (LOOK-1 one more)
        conn.execute(update(outbox).values(order_id=None))
    check_every_order_is_in_one_state(engine, now)
    number = number_of(engine, "OK-1")
    with engine.connect() as conn:
        events = lookup.timeline(conn, number)
    told = {e["message_id"] for e in events if e["kind"] in ("sent", "not_sent")}
    assert told == {f"{number}-v1-{t}" for t in ("warehouse", "finance", "notification")}


def test_a_day_whose_order_rows_are_far_apart_on_every_backend(engine: Engine) -> None:
    """PostgreSQL reads a day's messages as one range of order rows when the
    day's orders are most of it, else order by order: an order made long
    after its arrival (a refused order retried days later) is far from its
    day's others. An order of the next day among the day's rows is not the
    day's, and none of its messages count for the day."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from sqlalchemy import select, update

    from admin_api.reconcile import reconcile
    from infra.tables import arrivals, orders
    from tests.unit.test_reconciliation import (
        check_every_order_is_in_one_state,
        make_day_of_orders,
        move_order_row,
    )

    now = make_day_of_orders(engine)
    move_order_row(engine, "OK-1", by=1_000_000)
    check_every_order_is_in_one_state(engine, now)
    move_order_row(engine, "OK-1", by=-1_000_000)  # among the others again
    with engine.begin() as conn:
        fresh = conn.scalar(select(orders.c.id).where(orders.c.external_id == "FRESH-1"))
        received = conn.scalar(select(arrivals.c.received_at).where(arrivals.c.order_id == fresh))
        assert received is not None
        conn.execute(
            update(arrivals)
            .where(arrivals.c.order_id == fresh)
            .values(received_at=received + timedelta(days=1))
        )
    day = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    with engine.connect() as conn:
        report = reconcile(conn, day, router_queue="t.router", now=now)
        next_day = reconcile(conn, day + timedelta(days=1), now=now)
    states = {e.external_id: e.state for e in report.entries}
    assert "FRESH-1" not in states and states["OK-1"] == "delivered"
    assert set(states) == {"BAD-1", "HELD-1", "LATE-1", "LOOK-1", "OK-1"}
    assert [(e.external_id, e.state) for e in next_day.entries] == [("FRESH-1", "in_flight")]


def test_a_message_delivered_days_after_its_day_counts_on_every_backend(engine: Engine) -> None:
    """A day's deliveries are read by their time, over the day and the hour
    after; a message delivered later (a dead letter retried days after) is
    found by its order: delivered, not unexplained."""
    from datetime import timedelta

    from sqlalchemy import update

    from infra.tables import inbox
    from tests.unit.test_reconciliation import (
        check_every_order_is_in_one_state,
        make_day_of_orders,
        number_of,
    )

    now = make_day_of_orders(engine)
    number = number_of(engine, "OK-1")
    with engine.begin() as conn:
        late = conn.execute(
            update(inbox)
            .where(inbox.c.order_number == number)
            .values(delivered_at=now + timedelta(days=3))
        )
        assert late.rowcount == 3
    check_every_order_is_in_one_state(engine, now)


def test_the_undelivered_paid_check_reads_the_look_back_once_then_what_is_new(
    engine: Engine,
) -> None:
    """Each check reads the messages made since the previous one (and those
    still not delivered); after a start the look-back is read a page of
    messages a check, newest first: a week of warehouse messages is never
    read at once, and never every minute (issue 19)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select, update

    from admin_api.alerts import AlertRules
    from infra.setting_specs import AlertSettings
    from infra.tables import dead_letters, inbox, outbox
    from tests.unit.test_alerts import route

    def warehouse_message(external_id: str) -> str:
        with engine.connect() as conn:
            found = conn.execute(
                select(outbox.c.message_id).where(
                    outbox.c.message_id.like("%-warehouse"),
                    outbox.c.body.like(f'%"{external_id}"%'),
                )
            ).scalar_one()
        return str(found)

    def made_at(message_id: str, at: datetime) -> None:
        with engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.message_id == message_id).values(created_at=at)
            )

    def late_orders(rules: AlertRules, now: datetime) -> str:
        with engine.connect() as conn:
            found = [f.summary for f in rules.findings(conn, now) if f.rule == "undelivered_paid"]
        return found[0] if found else ""

    start = datetime.now(UTC)
    settings = AlertSettings.model_validate({"undelivered_paid": {"after": 1800}})
    rules = AlertRules(settings, started=start)
    route(engine, "PAID-1")
    first = warehouse_message("PAID-1")
    made_at(first, start)
    assert "1 order(s)" in late_orders(rules, start + timedelta(hours=1))
    route(engine, "PAID-2")  # made after the first check: found by the next
    second = warehouse_message("PAID-2")
    made_at(second, start + timedelta(hours=1))
    assert "2 order(s)" in late_orders(rules, start + timedelta(hours=2))
    # a message cannot appear in the past: the look-back read is not read
    # again; a new evaluator (after a restart) reads it newest first, here a
    # message a check: PAID-2, PAID-1, PAID-3, then PAID-4 three days back
    route(engine, "PAID-3")
    made_at(warehouse_message("PAID-3"), start - timedelta(hours=6))
    route(engine, "PAID-4")
    fourth = warehouse_message("PAID-4")
    made_at(fourth, start - timedelta(days=3))
    assert "2 order(s)" in late_orders(rules, start + timedelta(hours=2, minutes=1))
    restarted = AlertRules(settings, started=start, read_back_page=1)
    later = start + timedelta(hours=2, minutes=1)
    found = [late_orders(restarted, later + timedelta(minutes=n)) for n in range(6)]
    assert [f.split(" ", 1)[0] for f in found] == ["1", "2", "3", "4", "4", "4"], found
    paid_4 = fourth.split("-v", 1)[0]
    assert paid_4 not in found[2] and paid_4 in found[3]
    # an open dead letter explains PAID-1; once retried, it is missing again
    with engine.begin() as conn:
        conn.execute(
            insert(dead_letters).values(
                message_id=first, queue="t.warehouse", exchange="t.orders",
                routing_key="deliver.warehouse", reason="endpoint_unavailable", detail="503",
                headers={}, body="{}", body_encoding="utf-8", attempts=4, status="open",
                first_failed_at=start, last_failed_at=start,
            )
        )  # fmt: skip
    assert "1 order(s)" in late_orders(rules, start + timedelta(hours=3))
    with engine.begin() as conn:
        conn.execute(update(dead_letters).values(status="retried"))
    assert "2 order(s)" in late_orders(rules, start + timedelta(hours=3, minutes=1))
    # delivered: never again
    with engine.begin() as conn:
        for message_id in (first, second):
            conn.execute(
                insert(inbox).values(
                    consumer="warehouse", message_id=message_id,
                    order_number=message_id.split("-v")[0], order_version=1,
                    response_status=200, attempts=1, delivered_at=start,
                )
            )  # fmt: skip
    assert late_orders(rules, start + timedelta(hours=4)) == ""


def test_the_look_back_read_a_page_at_a_time_skips_no_message_made_at_the_same_time(
    engine: Engine,
) -> None:
    """Pages stop at a message's time and outbox id: messages made in the
    same microsecond (one batch of the router) are each read once, one page
    after another, and the read ends."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select, update

    from admin_api.alerts import AlertRules
    from infra.setting_specs import AlertSettings
    from infra.tables import outbox
    from tests.unit.test_alerts import route

    start = datetime.now(UTC)
    names = ["SAME-1", "SAME-2", "SAME-3"]
    for name in names:
        route(engine, name)
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.message_id.like("%-warehouse"))
            .values(created_at=start - timedelta(hours=1))
        )
        numbers = sorted(
            m.split("-v", 1)[0]
            for m in conn.scalars(
                select(outbox.c.message_id).where(outbox.c.message_id.like("%-warehouse"))
            )
        )
    settings = AlertSettings.model_validate({"undelivered_paid": {"after": 1800}})
    rules = AlertRules(settings, started=start, read_back_page=1)
    named: list[list[str]] = []
    for n in range(5):
        with engine.connect() as conn:
            found = [f for f in rules.findings(conn, start + timedelta(minutes=n))]
        named.append(sorted(x for x in numbers if any(x in f.summary for f in found)))
    assert [len(x) for x in named] == [1, 2, 3, 3, 3], named
    assert named[-1] == numbers


def test_orders_by_hour_of_the_shops_day_on_every_backend(engine: Engine) -> None:
    """Counted by PostgreSQL in the shop's time zone, or row by row on
    SQLite: the same hours."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from console.figures import day_window, orders_by_hour
    from infra.tables import orders
    from tests.unit.test_alerts import route

    shanghai = ZoneInfo("Asia/Shanghai")
    for name in ("HOUR-1", "HOUR-2", "HOUR-3"):
        route(engine, name)
    day = datetime(2026, 3, 2, tzinfo=shanghai)
    with engine.begin() as conn:  # 00:30, 23:59 and 23:30 the day before, Shanghai time
        for name, at in (
            ("HOUR-1", day + timedelta(minutes=30)),
            ("HOUR-2", day + timedelta(hours=23, minutes=59)),
            ("HOUR-3", day - timedelta(minutes=30)),
        ):
            moved = at.astimezone(UTC)
            conn.execute(
                update(orders).where(orders.c.external_id == name).values(created_at=moved)
            )
        counts = orders_by_hour(conn, *day_window(day.date(), shanghai), shanghai)
    assert list(counts) == ["web-shop"]
    assert (
        counts["web-shop"][0] == 1 and counts["web-shop"][23] == 1 and sum(counts["web-shop"]) == 2
    )


def test_orders_by_hour_through_a_change_of_summer_time_on_every_backend(
    engine: Engine,
) -> None:
    """PostgreSQL puts a row in its hour by the hours' starts, found in
    Python: on the day Berlin's clocks go back (25 hours, 02:00 twice) and
    in Kathmandu (UTC+05:45) each order is in the hour its clock shows."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sqlalchemy import select, update

    from console.figures import day_window, orders_by_hour
    from infra.tables import orders
    from tests.unit.test_alerts import route

    names = [f"DST-{n}" for n in range(31)]
    for name in names:
        route(engine, name)
    for zone_name, day in (("Europe/Berlin", "2026-10-25"), ("Asia/Kathmandu", "2026-11-10")):
        zone = ZoneInfo(zone_name)
        start, end = day_window(datetime.fromisoformat(day).date(), zone)
        with engine.begin() as conn:  # every 50 minutes from the day's start, one past its end
            for n, name in enumerate(names):
                at = start + timedelta(minutes=50 * n)
                conn.execute(
                    update(orders).where(orders.c.external_id == name).values(created_at=at)
                )
            times = [t for t in conn.scalars(select(orders.c.created_at)) if t is not None]
            counts = orders_by_hour(conn, start, end, zone)
        expected = [0] * 24
        for t in times:
            t = t if t.tzinfo else t.replace(tzinfo=UTC)
            if start <= t < end:
                expected[t.astimezone(zone).hour] += 1
        assert counts == {"web-shop": expected}, zone_name
        assert sum(expected) == (30 if zone_name == "Europe/Berlin" else 29)


def test_dead_letters_by_cause_count_kept_causes_and_older_rows_alike(engine: Engine) -> None:
    """A dead letter keeps its cause when recorded (migration 0032) and is
    counted by it in SQL; one recorded before (no cause kept) is classified
    when read; both in the same groups and pages, on each backend."""
    from sqlalchemy import select, update

    from admin_api import causes
    from admin_api.deadletters import DeadLetterRecorder
    from infra.tables import dead_letters
    from tests.factories import failure_delivery

    recorder = DeadLetterRecorder(engine)
    for n in range(3):
        recorder.handle(failure_delivery(message_id=f"dl-{n}"))
    with engine.begin() as conn:
        kept = set(conn.scalars(select(dead_letters.c.cause)))
        assert kept == {
            causes.cause_of("delivery_rejected", "warehouse endpoint rejected the order with 422")
        }
        conn.execute(
            update(dead_letters).where(dead_letters.c.message_id == "dl-0").values(cause=None)
        )
    (cause,) = kept
    with engine.connect() as conn:
        found = causes.groups(conn)
        total, ids = causes.page_of_cause(conn, [dead_letters.c.status == "open"], cause, 2, 0)
    assert [(g["cause"], g["count"]) for g in found] == [(cause, 3)]
    assert total == 3 and len(ids) == 2
