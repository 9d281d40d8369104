"""Migration 0026 names each existing outbox row's order (the timeline and
the reconciliation now find an order's messages by it), on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from bench.pipeline import private_schema
from infra.database import make_engine, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0025(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/before.db"
        upgrade(url, "0025")
        yield url
        return
    base: str = request.getfixturevalue("postgres_base_url")
    with private_schema(base, "mig", revision="0025") as url:
        yield url


def test_existing_outbox_rows_get_their_order_number(url_at_0025: str) -> None:
    engine = make_engine(url_at_0025)
    rows = {
        "OBAAAABBBBCCCCDDDD-v2-warehouse": "OBAAAABBBBCCCCDDDD",
        "OBAAAABBBBCCCCDDDD-intercept-0a1b2c3d4e5f-warehouse": "OBAAAABBBBCCCCDDDD",
        "OBEEEEFFFFGGGGHHHH-parcel-notice": "OBEEEEFFFFGGGGHHHH",
        "not-an-order": None,
    }
    with engine.begin() as conn:
        for message_id in rows:
            conn.execute(
                text(
                    "INSERT INTO outbox (message_id, exchange, routing_key, headers, body, "
                    "created_at, attempts) VALUES (:m, 'x', 'deliver.warehouse', '{}', '{}', "
                    "CURRENT_TIMESTAMP, 0)"
                ),
                {"m": message_id},
            )
    engine.dispose()
    upgrade(url_at_0025)
    engine = make_engine(url_at_0025)
    with engine.connect() as conn:
        found: dict[str, str | None] = dict(
            (r[0], r[1]) for r in conn.execute(text("SELECT message_id, order_number FROM outbox"))
        )
    engine.dispose()
    assert found == rows


def test_the_metrics_counts_start_from_the_rows_already_there(url_at_0025: str) -> None:
    """Migration 0028 seeds the metrics' counts (infra/counters.py) from the
    arrivals and deliveries stored before it, on both backends."""
    from datetime import timedelta

    from sqlalchemy import insert, select, text

    from infra.counters import ARRIVALS, LATENCY, totals
    from infra.settings import Settings
    from infra.tables import arrivals, inbox, orders
    from infra.topology import build_topology
    from router.service import RouterService
    from tests.factories import delivery_for, order

    upgrade(url_at_0025, "0027")
    engine = make_engine(url_at_0025)
    # today's router writes two columns 0027 has not (0037's and 0038's): they
    # are there while it routes, as if they had come first, and go before the upgrade
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE arrivals ADD COLUMN order_number VARCHAR(32)"))
        conn.execute(text("ALTER TABLE outbox ADD COLUMN order_id BIGINT"))
    router = RouterService(engine, build_topology(Settings(namespace="t")))  # no counts yet
    router.handle(delivery_for(order(external_id="SEED-1"), message_id="m-seed-1"))
    router.handle(delivery_for(order(external_id="SEED-1"), message_id="m-seed-1-again"))
    with engine.begin() as conn:
        number, received = conn.execute(
            select(orders.c.order_number, arrivals.c.received_at)
            .join(arrivals, arrivals.c.order_id == orders.c.id)
            .where(arrivals.c.outcome == "new")
        ).one()
        conn.execute(
            insert(inbox).values(
                consumer="warehouse", message_id=f"{number}-v1-warehouse", order_number=number,
                order_version=1, outcome="delivered", response_status=200, attempts=1,
                delivered_at=received + timedelta(seconds=2),
            )
        )  # fmt: skip
        conn.execute(text("ALTER TABLE arrivals DROP COLUMN order_number"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN order_id"))
    engine.dispose()
    upgrade(url_at_0025)
    engine = make_engine(url_at_0025)
    with engine.connect() as conn:
        counted, latency = totals(conn, ARRIVALS), totals(conn, LATENCY)
    engine.dispose()
    assert counted == {("web-shop", "new"): 1, ("web-shop", "duplicate"): 1}
    assert latency[("warehouse", "1.0")] == 0 and latency[("warehouse", "2.5")] == 1
    assert latency[("warehouse", "+Inf")] == 1 and abs(latency[("warehouse", "sum")] - 2) < 0.01
