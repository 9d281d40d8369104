"""The start's rehearsals (router.rehearsal, DeliveryConsumer.rehearse), on
every storage backend: each goes through its component's work once before the
first message and leaves nothing behind (no row, no claim, nothing sent); one
that cannot reach the database says so in the log and does not stop the start."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from infra.database import make_engine
from infra.settings import Settings
from infra.tables import metadata
from infra.topology import build_topology
from infra.transports import HttpxTransport
from orderbus.bootstrap import bootstrap
from orderbus.runner import Daemon
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy
from tests.factories import delivery_for, order

pytestmark = pytest.mark.integration

TOPOLOGY = build_topology(Settings(namespace="t"))
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"


def rows_by_table(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in metadata.sorted_tables
        }


def a_consumer(engine: Engine, sent: list[httpx.Request]) -> DeliveryConsumer:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    policy = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.001)
    delivery = HttpDelivery("warehouse", "http://wms.test/", HttpxTransport(client), policy)
    return DeliveryConsumer("warehouse", engine, delivery)


def test_the_routers_rehearsal_routes_once_and_keeps_nothing(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    before = rows_by_table(engine)
    router = RouterService(engine, TOPOLOGY)
    with caplog.at_level(logging.INFO, logger="router.service"):
        router.rehearse()
        router.rehearse()  # each rehearsal's order is its own: no duplicate of the last
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "rehearsed a made-up order" in m]) == 2, said
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert rows_by_table(engine) == before
    # and the first real order after it is routed as it would have been
    assert router.handle_batch([delivery_for(order())]) == [None]
    after = rows_by_table(engine)
    assert (after["orders"], after["arrivals"], after["outbox"]) == (1, 1, 3)


def test_the_consumers_rehearsal_sends_nothing_writes_nothing_and_holds_no_claim(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    before = rows_by_table(engine)
    sent: list[httpx.Request] = []
    with caplog.at_level(logging.INFO, logger="targets.consumers"):
        a_consumer(engine, sent).rehearse()
    said = [r.getMessage() for r in caplog.records]
    assert any("warehouse: rehearsed a made-up lookup" in m for m in said), said
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sent == []
    assert rows_by_table(engine) == before
    if engine.dialect.name == "postgresql":  # the claim ended with the rehearsal
        with engine.connect() as conn:
            claims = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
            assert claims.scalar_one() == 0


def test_a_rehearsal_without_the_database_is_logged_and_the_start_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine(UNREACHABLE)
    try:
        with caplog.at_level(logging.INFO):
            RouterService(engine, TOPOLOGY).rehearse()
            a_consumer(engine, []).rehearse()
    finally:
        engine.dispose()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned
    assert warned[0].startswith("router: the rehearsal before the first message failed")
    assert warned[1].startswith("warehouse: the rehearsal before the first message failed")


def test_each_component_rehearses_before_it_consumes(
    amqp_url: str, postgres_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On the real RabbitMQ and PostgreSQL: the router and each delivery
    consumer rehearse, then consume."""
    settings = Settings(
        broker_url=amqp_url, database_url=postgres_url, namespace=namespace,
        warehouse_url="http://127.0.0.1:9/wms", finance_url="http://127.0.0.1:9/erp",
        notification_url="http://127.0.0.1:9/notify",
    )  # fmt: skip
    app = bootstrap(settings)
    daemon = Daemon(app, ("router", "consumers"))
    with caplog.at_level(logging.INFO):
        daemon.start()
        try:
            assert daemon.wait_ready(30)
        finally:
            assert daemon.shutdown(30)
    said = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], said
    for name, rehearsed in [
        ("router", "router: rehearsed a made-up order"),
        ("warehouse", "warehouse: rehearsed a made-up lookup"),
        ("finance", "finance: rehearsed a made-up lookup"),
        ("notification", "notification: rehearsed a made-up lookup"),
    ]:
        queue = app.topology.queue_for(name).name
        first = next(i for i, m in enumerate(said) if m.startswith(rehearsed))
        consuming = said.index(f"consuming {queue}")
        assert first < consuming, said
