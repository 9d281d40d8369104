"""One contract suite, run against every storage backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text

from admin_api import deadletters
from canonical.envelope import H_ATTEMPT, H_REASON, Envelope, utcnow
from canonical.errors import MalformedMessage, TransientError, ValidationFailed
from infra.messages import Delivery, OutgoingMessage
from infra.settings import Settings
from infra.stored_bodies import decode_body
from infra.tables import (
    arrivals,
    audit_log,
    dead_letters,
    holds,
    inbox,
    metadata,
    orders,
    outbox,
)
from infra.topology import build_topology
from infra.transports import HttpxTransport
from router.dedup import Outcome, order_number
from router.holds import HoldStateError, reject, release
from router.order_state import lock_known_orders
from router.outbox import OutboxRelay, next_batch, prefer_index_order
from router.service import RouterService
from router.suspicion import Suspicion
from targets.consumers import DeliveryConsumer
from targets.delivery import GaveUp, HttpDelivery, RetryPolicy
from tests.factories import FakePublisher, delivery_for, failure_delivery, order

pytestmark = pytest.mark.integration

TOPOLOGY = build_topology(Settings(namespace="t"))


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.fixture
def router(engine: Engine) -> RouterService:
    return RouterService(engine, TOPOLOGY)


def test_migrations_match_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_new_paid_order_writes_state_arrival_and_outbox_together(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order()))
    assert count(engine, orders) == 1
    assert count(engine, arrivals, arrivals.c.outcome == "new") == 1
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
        stored = conn.execute(select(orders)).one()
    assert [r.routing_key for r in rows] == [
        "deliver.warehouse",
        "deliver.finance",
        "deliver.notification",
    ]
    assert {r.message_id for r in rows} == {
        f"{stored.order_number}-v1-{t}" for t in ("warehouse", "finance", "notification")
    }
    assert all(r.headers["x-orderbus-order-number"] == stored.order_number for r in rows)
    assert stored.status == "paid" and stored.version == 1


def test_redelivered_message_has_no_second_effect(router: RouterService, engine: Engine) -> None:
    d = delivery_for(order())
    router.handle(d)
    router.handle(d)
    assert count(engine, arrivals) == 1
    assert count(engine, outbox) == 3


def test_replayed_webhook_is_a_duplicate(router: RouterService, engine: Engine) -> None:
    router.handle(delivery_for(order()))
    for _ in range(10):
        router.handle(delivery_for(order()))
    assert count(engine, arrivals, arrivals.c.outcome == "duplicate") == 10
    assert count(engine, outbox) == 3


def test_material_update_is_republished_with_a_new_version(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(status="created")))
    assert count(engine, outbox) == 1  # notification only
    router.handle(delivery_for(order(status="paid", version=2)))
    with engine.connect() as conn:
        stored = conn.execute(select(orders)).one()
        keys = sorted(r.message_id for r in conn.execute(select(outbox)))
    assert stored.version == 2 and stored.status == "paid"
    assert sum("-v2-" in k for k in keys) == 3


def test_stale_arrival_is_recorded_not_propagated_and_status_never_goes_back(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(status="shipped", version=3)))
    before = count(engine, outbox)
    router.handle(delivery_for(order(status="paid", version=2)))
    assert count(engine, outbox) == before
    assert count(engine, arrivals, arrivals.c.outcome == "stale") == 1
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.status)).scalar_one() == "shipped"


def test_invalid_order_writes_nothing_and_says_why(router: RouterService, engine: Engine) -> None:
    with pytest.raises(ValidationFailed) as info:
        router.handle(delivery_for(order(total="1.00")))
    assert [v.code for v in info.value.violations] == ["total_mismatch"]
    assert count(engine, orders) == count(engine, arrivals) == count(engine, outbox) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "malformed_json"),
        (b'{"a": 1}', "schema_mismatch"),
        (b"\xff\xfe", "invalid_encoding"),
    ],
)
def test_malformed_messages_are_permanent_errors(
    router: RouterService, body: bytes, reason: str
) -> None:
    with pytest.raises(MalformedMessage) as info:
        router.handle(delivery_for(order(), body=body))
    assert info.value.reason == reason


def test_missing_envelope_is_a_permanent_error(router: RouterService) -> None:
    with pytest.raises(MalformedMessage) as info:
        router.handle(delivery_for(order(), headers={}))
    assert info.value.reason == "missing_envelope"


def test_concurrent_duplicates_have_one_effect(engine: Engine) -> None:
    """Several routers racing on one order: the unique constraint decides."""
    results: list[Outcome | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        service = RouterService(engine, TOPOLOGY)
        barrier.wait()
        try:
            results.append(service.route(Envelope.new("web-shop"), order()).outcome)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(str(r) for r in results) == sorted(["new"] + ["duplicate"] * 7)
    assert count(engine, orders) == 1
    assert count(engine, outbox) == 3


def test_relay_publishes_pending_rows_and_marks_them(router: RouterService, engine: Engine) -> None:
    router.handle(delivery_for(order()))
    publisher = FakePublisher()
    relay = OutboxRelay(engine, publisher, batch=2)  # type: ignore[arg-type]
    assert relay.relay_once() == 2
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    assert relay.pending() == 0
    assert [m.routing_key for m in publisher.published] == [
        "deliver.warehouse",
        "deliver.finance",
        "deliver.notification",
    ]


class FlakyPublisher(FakePublisher):
    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on = fail_on

    def publish(self, message: OutgoingMessage) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            from canonical.errors import PublishNotConfirmed

            raise PublishNotConfirmed("no confirm within 10s")
        super().publish(message)


def test_relay_keeps_confirmed_rows_when_one_of_the_batch_fails(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order()))
    publisher = FlakyPublisher(fail_on=2)
    relay = OutboxRelay(engine, publisher)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="stopped after 2"):
        relay.relay_once()
    assert relay.pending() == 1
    with engine.connect() as conn:
        failed = conn.execute(select(outbox).where(outbox.c.last_error.is_not(None))).one()
    assert "no confirm" in failed.last_error and failed.routing_key == "deliver.finance"
    assert relay.relay_once() == 1
    assert len(publisher.published) == 3  # each row confirmed exactly once


def consumer(engine: Engine, calls: list[httpx.Request], status: int = 200) -> DeliveryConsumer:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001)
    return DeliveryConsumer(
        "warehouse",
        engine,
        HttpDelivery("warehouse", "http://wms.test/", HttpxTransport(client), policy),
    )


def outbox_delivery(engine: Engine, target: str = "warehouse") -> Delivery:
    with engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.routing_key == f"deliver.{target}")).one()
    return as_delivery(row)


def as_delivery(row: Any) -> Delivery:
    """An outbox row as the consumer of its target would receive it."""
    return Delivery(
        queue="t." + row.routing_key.removeprefix("deliver."),
        body=row.body.encode(),
        message_id=row.message_id,
        correlation_id=row.correlation_id,
        headers=row.headers,
        exchange="t.orders",
        routing_key=row.routing_key,
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )


def test_consumer_inbox_makes_redelivery_harmless(router: RouterService, engine: Engine) -> None:
    router.handle(delivery_for(order()))
    calls: list[httpx.Request] = []
    c = consumer(engine, calls)
    d = outbox_delivery(engine)
    c.handle(d)
    c.handle(d)
    assert len(calls) == 1
    assert calls[0].headers["Idempotency-Key"] == d.message_id
    assert count(engine, inbox) == 1


def test_recorder_stores_once_per_message_and_counts_repeats(engine: Engine) -> None:
    recorder = deadletters.DeadLetterRecorder(engine)
    recorder.handle(failure_delivery())
    recorder.handle(failure_delivery())
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.queue, row.reason, row.attempts, row.status) == (
        "t.warehouse",
        "delivery_rejected",
        2,
        "open",
    )
    assert row.routing_key == "deliver.warehouse" and row.channel == "web-shop"


def test_recorder_keeps_undecodable_bodies_as_base64(engine: Engine) -> None:
    deadletters.DeadLetterRecorder(engine).handle(failure_delivery(body=b"\xff\x00\xfe"))
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert row.body_encoding == "base64"
    assert decode_body(row.body, row.body_encoding) == b"\xff\x00\xfe"


def test_broker_dead_letters_are_explained_from_x_death(engine: Engine) -> None:
    d = Delivery(
        queue="t.router.dlq",
        body=b"{}",
        message_id="m-9",
        correlation_id=None,
        headers={
            "x-death": [
                {
                    "queue": "t.router",
                    "reason": "delivery_limit",
                    "exchange": "t.orders",
                    "routing-keys": ["ingest.web"],
                    "count": 1,
                }
            ],
            "x-delivery-count": 5,
        },
        exchange="t.dlx",
        routing_key="t.router",
        redelivered=False,
        content_type=None,
        deliveries=1,
    )
    deadletters.DeadLetterRecorder(engine).handle(d)
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.queue, row.reason, row.routing_key) == (
        "t.router",
        "broker_delivery_limit",
        "ingest.web",
    )
    assert "5 deliveries" in row.detail


def test_retry_goes_through_the_outbox_with_the_same_id_and_is_audited(engine: Engine) -> None:
    deadletters.DeadLetterRecorder(engine).handle(failure_delivery())
    with engine.connect() as conn:
        dl_id = conn.execute(select(dead_letters.c.id)).scalar_one()
    with engine.begin() as conn:
        assert deadletters.retry(conn, dl_id, "alice", "WMS fixed") == "m-1"
    with engine.connect() as conn:
        row = conn.execute(select(outbox)).one()
        dl = conn.execute(select(dead_letters)).one()
        entry = conn.execute(select(audit_log)).one()
    assert (row.message_id, row.routing_key, row.exchange) == (
        "m-1",
        "deliver.warehouse",
        "t.orders",
    )
    assert row.headers[H_ATTEMPT] == 2 and H_REASON not in row.headers
    assert row.correlation_id == "corr-1"  # the retry stays in the order's conversation
    assert (dl.status, dl.resolved_by) == ("retried", "alice")
    assert (entry.actor, entry.action, entry.target_id) == (
        "alice",
        "dead_letter.retry",
        str(dl_id),
    )
    assert (
        entry.detail["before"]["status"] == "open" and entry.detail["after"]["status"] == "retried"
    )
    with engine.begin() as conn, pytest.raises(deadletters.DeadLetterStateError):
        deadletters.retry(conn, dl_id, "alice")


def test_a_retried_letter_that_fails_again_is_reopened(engine: Engine) -> None:
    recorder = deadletters.DeadLetterRecorder(engine)
    recorder.handle(failure_delivery())
    with engine.begin() as conn:
        deadletters.retry(conn, conn.execute(select(dead_letters.c.id)).scalar_one(), "bob")
    recorder.handle(failure_delivery())
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.status, row.attempts, row.resolved_by) == ("open", 2, None)


def test_discard_needs_an_open_letter_and_is_audited(engine: Engine) -> None:
    deadletters.DeadLetterRecorder(engine).handle(failure_delivery())
    with engine.begin() as conn:
        dl_id = conn.execute(select(dead_letters.c.id)).scalar_one()
        deadletters.discard(conn, dl_id, "carol", "test order")
    with engine.connect() as conn:
        assert conn.execute(select(dead_letters.c.status)).scalar_one() == "discarded"
        assert conn.execute(select(audit_log.c.action)).scalar_one() == "dead_letter.discard"


def test_timestamps_come_back_timezone_aware(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(audit_log).values(
                actor="a", action="x", target_type="t", target_id=None, detail={}, at=utcnow()
            )
        )
    with engine.connect() as conn:
        at = conn.execute(select(audit_log.c.at)).scalar_one()
    assert at.tzinfo is not None


def test_unique_message_ids_do_not_collide_across_orders(
    router: RouterService, engine: Engine
) -> None:
    for i in range(5):
        router.handle(delivery_for(order(external_id=f"WS-{i}-{uuid.uuid4().hex[:4]}")))
    with engine.connect() as conn:
        ids = [r.message_id for r in conn.execute(select(outbox))]
    assert len(ids) == len(set(ids)) == 15


class UnroutableFor(FakePublisher):
    """A broker on which one routing key has no queue bound."""

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key

    def publish(self, message: OutgoingMessage) -> None:
        if message.routing_key == self.routing_key:
            from canonical.errors import PublishNotConfirmed

            raise PublishNotConfirmed("unroutable: no queue bound", reason="unroutable")
        super().publish(message)


def test_an_unroutable_row_does_not_halt_the_relay_and_ends_as_a_dead_letter(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(status="created", external_id="A")))  # notification v1
    router.handle(delivery_for(order(status="paid", version=2, external_id="A")))  # 3 rows, v2
    router.handle(delivery_for(order(external_id="B")))
    publisher = UnroutableFor("deliver.notification")
    relay = OutboxRelay(engine, publisher, max_attempts=3)  # type: ignore[arg-type]
    relay.relay_once()
    # everything but notification went out
    assert sorted(m.routing_key for m in publisher.published) == [
        "deliver.finance",
        "deliver.finance",
        "deliver.warehouse",
        "deliver.warehouse",
    ]
    assert relay.pending() == 3
    relay.relay_once()
    relay.relay_once()  # third attempt: each notification row gives up
    assert relay.pending() == 0
    with engine.connect() as conn:
        letters = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
    assert [(d.queue, d.reason, d.routing_key) for d in letters] == [
        ("outbox", "unroutable", "deliver.notification")
    ] * 3
    assert all(d.attempts == 3 and d.status == "open" for d in letters)
    with engine.begin() as conn:  # an operator re-binds the queue and retries one
        deadletters.retry(conn, letters[0].id, "ops")
    publisher.routing_key = "none"
    while relay.relay_once():
        pass
    assert relay.pending() == 0
    assert sum(m.routing_key == "deliver.notification" for m in publisher.published) == 1


def test_an_older_version_is_not_delivered_after_a_newer_one(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(status="created")))
    router.handle(delivery_for(order(status="paid", version=2)))
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox)
            .where(outbox.c.routing_key == "deliver.notification")
            .order_by(outbox.c.id)
        ).all()
    v1, v2 = (as_delivery(r) for r in rows)
    calls: list[httpx.Request] = []
    c = consumer(engine, calls)
    c.target = "notification"
    c.handle(v2)
    c.handle(v1)  # a late retry of the older change
    assert [r.headers["Idempotency-Key"] for r in calls] == [v2.message_id]
    with engine.connect() as conn:
        outcomes = {r.message_id: r.outcome for r in conn.execute(select(inbox))}
    assert outcomes == {v2.message_id: "delivered", v1.message_id: "superseded"}


def test_recorder_fits_a_foreign_senders_oversized_headers(engine: Engine) -> None:
    """Values longer than their columns must not make the row fail for ever."""
    d = failure_delivery(message_id="m" * 300)
    d.headers.update({"x-orderbus-channel": "c" * 300, H_REASON: "r" * 300})
    recorder = deadletters.DeadLetterRecorder(engine)
    recorder.handle(d)
    recorder.handle(d)
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert row.message_id.startswith("sha256:") and row.attempts == 2
    assert len(row.channel) == 64 and len(row.reason) == 64


# -- batches: one transaction per batch must mean the same as one at a time --


def test_a_batch_classifies_its_arrivals_in_order(router: RouterService, engine: Engine) -> None:
    first = delivery_for(order(status="created", external_id="A"))
    batch = [
        first,
        delivery_for(order(status="created", external_id="A")),  # same content: duplicate
        first,  # the same message twice (a publisher's retry)
        delivery_for(order(status="paid", version=2, external_id="A")),  # update
        delivery_for(order(status="created", external_id="A")),  # older: stale
        delivery_for(order(external_id="B")),
        delivery_for(order(total="1.00", external_id="C")),  # invalid
        delivery_for(order(external_id="D"), body=b"not json"),
    ]
    results = router.handle_batch(batch)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 6 + [
        "ValidationFailed",
        "MalformedMessage",
    ]
    with engine.connect() as conn:
        outcomes = conn.execute(
            select(arrivals.c.external_id, arrivals.c.outcome, arrivals.c.order_version)
        ).all()
        a = conn.execute(select(orders).where(orders.c.external_id == "A")).one()
        a_rows = conn.execute(
            select(outbox.c.message_id).where(outbox.c.message_id.like(a.order_number + "%"))
        ).scalars()
        a_messages = sorted(a_rows)
    assert sorted(tuple(r) for r in outcomes) == [
        ("A", "duplicate", 1),
        ("A", "new", 1),
        ("A", "stale", 2),
        ("A", "update", 2),
        ("B", "new", 1),
    ]
    assert (a.status, a.version) == ("paid", 2)
    n = a.order_number
    assert a_messages == sorted(
        [f"{n}-v1-notification", f"{n}-v2-warehouse", f"{n}-v2-finance", f"{n}-v2-notification"]
    )
    # the same batch again (the broker redelivers it after a crash): no second effect
    assert router.handle_batch(batch[:6]) == [None] * 6
    assert count(engine, arrivals) == 5
    assert count(engine, outbox) == 7


class BreaksOn(RouterService):
    """A router with a bug that one order triggers."""

    def route_many(self, items: list[tuple[Envelope, Any]]) -> list[Any]:
        if any(o.external_id == "bad" for _, o in items):
            raise RuntimeError("a bug")
        return super().route_many(items)


def test_a_batch_that_breaks_is_routed_one_at_a_time(engine: Engine) -> None:
    router = BreaksOn(engine, TOPOLOGY)
    good = [delivery_for(order(external_id=f"G{i}")) for i in range(3)]
    results = router.handle_batch([good[0], delivery_for(order(external_id="bad")), *good[1:]])
    assert results[0] is None and results[2] is None and results[3] is None
    assert isinstance(results[1], RuntimeError)  # not permanent: requeued, alone
    assert count(engine, orders) == 3


def test_consumer_batch_delivers_each_once_and_keeps_versions_in_order(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(status="created", external_id="A")))
    router.handle(delivery_for(order(status="paid", version=2, external_id="A")))
    router.handle(delivery_for(order(external_id="B")))
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox).where(outbox.c.routing_key == "deliver.notification")
        ).all()
    by_id = {row.message_id: as_delivery(row) for row in rows}
    calls: list[httpx.Request] = []
    c = consumer(engine, calls)
    c.target = "notification"
    # v2 first, then v1 (a redelivery out of order), then v2 again, in one batch
    newer = next(m for m in by_id if m.endswith("-v2-notification"))
    older = next(m for m in by_id if m.endswith("-v1-notification") and m[:18] == newer[:18])
    other = next(m for m in by_id if m not in (newer, older))
    batch = [by_id[newer], by_id[older], by_id[newer], by_id[other]]
    assert c.handle_batch(batch) == [None] * 4
    sent = [r.headers["Idempotency-Key"] for r in calls]
    assert sent == [newer, other]
    with engine.connect() as conn:
        outcomes = {r.message_id: r.outcome for r in conn.execute(select(inbox))}
    assert outcomes == {newer: "delivered", older: "superseded", other: "delivered"}
    assert c.handle_batch(batch) == [None] * 4  # redelivered: nothing sent again
    assert len(calls) == 2


def test_consumer_batch_stops_at_an_endpoint_outage_and_keeps_what_was_delivered(
    router: RouterService, engine: Engine
) -> None:
    for i in range(3):
        router.handle(delivery_for(order(external_id=f"E{i}")))
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox).where(outbox.c.routing_key == "deliver.warehouse").order_by(outbox.c.id)
        ).all()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200 if len(calls) == 1 else 503)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001)
    c = DeliveryConsumer(
        "warehouse",
        engine,
        HttpDelivery("warehouse", "http://wms.test/", HttpxTransport(client), policy),
    )
    results = c.handle_batch([as_delivery(r) for r in rows])
    assert results[0] is None
    assert isinstance(results[1], GaveUp)  # its retries exhausted: a dead letter
    assert isinstance(results[2], TransientError)  # not tried: the bus retries it later
    assert len(calls) == 3  # the first, then two tries of the second; the third not tried
    with engine.connect() as conn:
        delivered = conn.execute(select(inbox.c.message_id)).scalars().all()
    assert delivered == [rows[0].message_id]


def test_the_relay_finds_its_next_batch_without_reading_the_whole_outbox(engine: Engine) -> None:
    """Regression: with 150,000 pending rows and no statistics yet, PostgreSQL
    read and sorted every pending row for each batch of 100 (1 s a batch)."""
    now = utcnow()
    row = {
        "exchange": "t.orders",
        "routing_key": "deliver.warehouse",
        "headers": {},
        "body": "{}",
        "created_at": now,
        "attempts": 0,
    }
    with engine.begin() as conn:
        conn.execute(
            insert(outbox),
            [
                {**row, "message_id": f"m-{i}", "published_at": now if i % 2 else None}
                for i in range(5000)
            ],
        )
        prefer_index_order(conn)
        query = next_batch(100)
        compiled = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + compiled))
            assert "ix_outbox_unpublished" in plan and "Sort" not in plan, plan
        else:  # SQLite leaves FOR UPDATE out
            plan = "\n".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled)
            )
            assert "ix_outbox_unpublished" in plan and "TEMP B-TREE" not in plan, plan
        assert [r.message_id for r in conn.execute(query)][:3] == ["m-0", "m-2", "m-4"]


def test_the_router_finds_known_orders_by_one_index_probe_each(engine: Engine) -> None:
    """Regression: asked by (channel, shop, external id) for a batch of 50,
    PostgreSQL without statistics scanned every order of that channel and shop
    (the index prefix) for each batch: at 100,000 orders its CPU tripled."""
    now = utcnow()
    keys = [("web-shop", "main", f"E{i}") for i in range(5000)]
    with engine.begin() as conn:
        conn.execute(
            insert(orders),
            [
                {
                    "order_number": order_number(*key),
                    "channel": key[0],
                    "shop": key[1],
                    "external_id": key[2],
                    "status": "paid",
                    "status_rank": 1,
                    "source_version": 1,
                    "source_updated_at": "",
                    "content_hash": "h",
                    "version": 1,
                    "body": "x" * 1500,  # an order's size: the table is as wide as a real one
                    "created_at": now,
                    "updated_at": now,
                }
                for key in keys
            ],
        )
        wanted = keys[100:150]
        query = lock_known_orders(wanted)
        compiled = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + compiled))
            assert "uq_orders_order_number" in plan and "uq_orders_business_key" not in plan, plan
        else:
            plan = "\n".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled)
            )
            assert "order_number=?" in plan, plan
        found = [(r.channel, r.shop, r.external_id) for r in conn.execute(query)]
    assert found == sorted(wanted)


def test_the_router_keeps_using_indexes_as_its_tables_grow(
    router: RouterService, engine: Engine
) -> None:
    """Regression: psycopg prepares a statement after five runs, and PostgreSQL
    kept the generic plan it made while arrivals was small, a sequential scan,
    for ever: at 100,000 orders each batch read the whole table."""
    for batch in range(12):
        deliveries = [
            delivery_for(order(external_id=f"G-{batch}-{i}"), message_id=f"g-{batch}-{i}")
            for i in range(50)
        ]
        assert router.handle_batch(deliveries) == [None] * 50
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(arrivals)) == 600
    if engine.dialect.name != "postgresql":
        return  # SQLite plans each statement afresh
    with engine.connect() as conn:  # the connection the router used (one at a time)
        # Flush this backend's (the router's) statistics, then read them.
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        read = conn.execute(  # our count(*) above read the 600 once
            text("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'arrivals'::regclass")
        ).scalar_one()
    assert read == 600, f"the router read {read - 600} arrival rows sequentially"


# -- cross-channel duplicate suspicion -------------------------------------------
def held_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(holds).order_by(holds.c.id)))


def outbox_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(outbox.c.message_id).order_by(outbox.c.id)))


def test_the_same_order_entering_through_another_channel_is_held(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    # A clerk keys the same sale into the store's spreadsheet an hour later.
    later = "2026-11-11T01:00:01+08:00"
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9", placed_at=later)))
    first = order_number("mini-program", "main", "MP-1")
    second = order_number("store-hz01", "main", "POS-9")
    assert [i.split("-v")[0] for i in outbox_ids(engine)] == [first] * 3  # only the first ships
    [hold] = held_rows(engine)
    assert (hold.order_number, hold.suspected_of, hold.status) == (second, first, "open")
    assert "same phone, items, total" in hold.reason and "60 min apart" in hold.reason
    with engine.connect() as conn:
        outcome, detail = conn.execute(
            select(arrivals.c.outcome, arrivals.c.detail).where(arrivals.c.external_id == "POS-9")
        ).one()
        assert (
            conn.scalar(select(orders.c.hold_status).where(orders.c.order_number == second))
            == "open"
        )
    assert outcome == "held" and first in detail


def test_a_duplicate_pair_in_one_batch_is_held_too(router: RouterService, engine: Engine) -> None:
    results = router.handle_batch(
        [
            delivery_for(order(channel="mini-program", external_id="MP-1")),
            delivery_for(order(channel="store-hz01", external_id="POS-9")),
        ]
    )
    assert results == [None, None]
    assert len(outbox_ids(engine)) == 3
    assert [h.suspected_of for h in held_rows(engine)] == [
        order_number("mini-program", "main", "MP-1")
    ]


@pytest.mark.parametrize(
    "other",
    [
        {"channel": "mini-program", "external_id": "MP-2"},  # the same channel: a repeat purchase
        {"channel": "store-hz01", "external_id": "POS-9", "total": "31.50", "shipping_fee": "7.00"},
        {"channel": "store-hz01", "external_id": "POS-9", "placed_at": "2026-11-13T00:00:01+08:00"},
        {"channel": "store-hz01", "external_id": "POS-9", "customer": {"phone": "13700137000"}},
    ],
    ids=["same-channel", "other-total", "two-days-later", "other-phone"],
)
def test_orders_that_merely_look_alike_are_not_held(
    router: RouterService, engine: Engine, other: dict[str, Any]
) -> None:
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    router.handle(delivery_for(order(**other)))
    assert held_rows(engine) == []
    assert len(outbox_ids(engine)) == 6


def test_a_held_order_sends_nothing_until_released_then_its_current_state(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9")))
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9", status="shipped")))
    assert len(outbox_ids(engine)) == 3  # the update to the held order went nowhere either
    [hold] = held_rows(engine)
    with engine.begin() as conn:
        sent = release(conn, TOPOLOGY, hold.id, "alice", "two different customers")
    number = order_number("store-hz01", "main", "POS-9")
    assert sent == [f"{number}-v2-finance", f"{number}-v2-notification"]  # shipped, version 2
    assert outbox_ids(engine)[3:] == sent
    with engine.begin() as conn:
        with pytest.raises(HoldStateError):
            release(conn, TOPOLOGY, hold.id, "alice", None)
    router.handle(
        delivery_for(order(channel="store-hz01", external_id="POS-9", status="delivered"))
    )
    assert outbox_ids(engine)[-2:] == [f"{number}-v3-finance", f"{number}-v3-notification"]


def test_a_rejected_duplicate_is_cancelled_and_only_the_notification_hears(
    router: RouterService, engine: Engine
) -> None:
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9")))
    [hold] = held_rows(engine)
    with engine.begin() as conn:
        sent = reject(conn, TOPOLOGY, hold.id, "alice", "keyed twice by the store")
    number = order_number("store-hz01", "main", "POS-9")
    assert sent == [f"{number}-v2-notification"]  # cancelled: no warehouse, no finance
    # A later change from the channel is older than the cancellation: it goes nowhere.
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9", status="shipped")))
    assert outbox_ids(engine)[3:] == sent
    assert held_rows(engine)[0].status == "rejected"
    with engine.connect() as conn:
        status = conn.scalar(select(orders.c.status).where(orders.c.order_number == number))
    assert status == "cancelled"


def test_suspicion_can_be_switched_off(engine: Engine) -> None:
    router = RouterService(engine, TOPOLOGY, suspicion=Suspicion(enabled=False))
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9")))
    assert held_rows(engine) == [] and len(outbox_ids(engine)) == 6


def test_the_delay_watch_tells_each_late_paid_order_once(
    router: RouterService, engine: Engine
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from targets.notify.delays import DelayWatch

    router.handle(delivery_for(order(external_id="LATE-1"), message_id="m-late-1"))
    router.handle(delivery_for(order(external_id="SOON-1"), message_id="m-soon-1"))
    with engine.begin() as conn:
        conn.execute(
            update(orders)
            .where(orders.c.external_id == "LATE-1")
            .values(updated_at=utcnow() - timedelta(hours=50))
        )
    watch = DelayWatch(engine, TOPOLOGY, timedelta(hours=48))
    assert (watch.check_once(), watch.check_once()) == (1, 0)
    with engine.connect() as conn:
        ids = list(
            conn.scalars(select(outbox.c.message_id).where(outbox.c.message_id.like("%delay%")))
        )
        late = conn.scalar(select(orders.c.order_number).where(orders.c.external_id == "LATE-1"))
    assert ids == [f"{late}-delay-customer"]


@contextmanager
def lookalikes_read() -> Iterator[list[int]]:
    """How many stored lookalikes each batch routed meanwhile read."""
    from router import batch

    read: list[int] = []
    original = batch.BatchRouting._read_for_new_orders

    def counted(self: batch.BatchRouting, orders_in_batch: list[Any]) -> None:
        original(self, orders_in_batch)
        read.append(sum(len(found) for found in self.lookalikes.values()))

    batch.BatchRouting._read_for_new_orders = counted  # type: ignore[method-assign,assignment]
    try:
        yield read
    finally:
        batch.BatchRouting._read_for_new_orders = original  # type: ignore[method-assign]


def test_lookalikes_and_known_customers_are_read_by_index_not_by_history(
    engine: Engine,
) -> None:
    """A fingerprint shared by many orders (a store's placeholder phone, a
    frequent buyer): a new order's batch reads only the lookalikes placed
    within the suspicion window, and whether its customer is known by one
    probe, not every order the phone ever had (T22 of the fault suite: each
    batch read them all, and the router fell behind as the history grew)."""
    from datetime import UTC, datetime, timedelta

    from router.approval import HoldRules

    router = RouterService(engine, TOPOLOGY, hold_rules=HoldRules(first_order=True))
    base = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for n in range(30):  # the same buyer, every third day, across channels
        placed = (base + timedelta(days=3 * n)).isoformat()
        router.handle(
            delivery_for(
                order(channel="web-shop" if n % 2 else "mini-program", external_id=f"OFT-{n}",
                      placed_at=placed),
                message_id=f"m-oft-{n}",
            )
        )  # fmt: skip
    late = (base + timedelta(days=3 * 29, hours=5)).isoformat()
    with lookalikes_read() as read:
        router.handle(
            delivery_for(order(channel="store-hz01", external_id="POS-1", placed_at=late))
        )
    assert read and max(read) == 1  # the one order placed within 24 h, not all 30
    assert [r.order_number for r in held_rows(engine)]  # and it is held as its lookalike


def test_lookalikes_within_the_window_are_read_at_most_a_few_per_channel(
    engine: Engine,
) -> None:
    """A store's placeholder phone entering the same order many times in one
    day: all within the suspicion window, all at one time. A new order's batch
    reads the latest LOOKALIKES_PER_CHANNEL of each channel, not all of them,
    and still finds the other channel's lookalike (T22: the router spent ~14 ms
    an order reading its load generator's identical orders)."""
    from datetime import UTC, datetime

    from router import batch
    from router.approval import HoldRules

    router = RouterService(engine, TOPOLOGY, hold_rules=HoldRules(first_order=True))
    placed = datetime(2026, 3, 1, 12, tzinfo=UTC).isoformat()
    many = batch.LOOKALIKES_PER_CHANNEL + 15
    router.handle(
        delivery_for(
            order(channel="mini-program", external_id="MP-1", placed_at=placed),
            message_id="m-mp-1",
        )
    )
    for n in range(many):
        router.handle(
            delivery_for(
                order(channel="store-hz01", external_id=f"POS-{n}", placed_at=placed),
                message_id=f"m-pos-{n}",
            )
        )
    with lookalikes_read() as read:
        router.handle(
            delivery_for(order(channel="web-shop", external_id="WEB-1", placed_at=placed))
        )
    # the store's latest few and the mini-program's one, not all the store's
    assert read == [batch.LOOKALIKES_PER_CHANNEL + 1]
    with engine.connect() as conn:
        web = conn.scalar(select(orders.c.order_number).where(orders.c.external_id == "WEB-1"))
    suspected = {r.order_number: r.suspected_of for r in held_rows(engine)}
    assert suspected[web] is not None  # held as a lookalike of one of them
