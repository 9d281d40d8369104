"""Each component's liveness on the real RabbitMQ and PostgreSQL: a running
router beats with its queue, which has a consumer, and /readyz shows it; a
process that stops cleanly removes its rows; one that died (its rows gone
stale) or a live component whose queue nobody consumes makes /readyz 503 and
says which (84d73a3 checked only the database and the broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from infra.database import make_engine
from infra.settings import Settings
from infra.tables import component_heartbeats
from orderbus.bootstrap import bootstrap
from orderbus.runner import Daemon

pytestmark = pytest.mark.integration


def test_readiness_and_metrics_say_which_component_is_alive(
    amqp_url: str, postgres_url: str, namespace: str
) -> None:
    settings = Settings(
        broker_url=amqp_url, database_url=postgres_url, namespace=namespace,
        admin_tokens={"root": "heartbeat-root-token-0123456789"},
    )  # fmt: skip
    app = bootstrap(settings)
    daemon = Daemon(app, ("router",))
    daemon.start()
    try:
        assert daemon.wait_ready(30)
        with TestClient(app.admin_app()) as admin:
            ready = admin.get("/readyz")
            assert ready.status_code == 200, ready.json()
            router = ready.json()["components"]["router"]
            assert router["processes"] == 1
            assert router["queues"] == {app.topology.router_queue: 1}
            scraped = admin.get(
                "/metrics", headers={"Authorization": "Bearer heartbeat-root-token-0123456789"}
            ).text
            assert 'orderbus_component_up{component="router"} 1.0' in scraped
            assert f'orderbus_queue_consumers{{queue="{app.topology.router_queue}"}} 1.0' in scraped
    finally:
        assert daemon.shutdown(30)
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(select(component_heartbeats)).all() == []  # a clean stop: gone

    # A consumers process killed a minute ago: its row is stale.
    long_ago = datetime.now(UTC) - timedelta(seconds=60)
    queue = app.topology.queue_for("finance").name
    with engine.begin() as conn:
        conn.execute(insert(component_heartbeats).values(
            component="consumers", instance="box:4242", queues=[queue],
            started_at=long_ago, beat_at=long_ago,
        ))  # fmt: skip
    fresh = bootstrap(settings)
    with TestClient(fresh.admin_app()) as admin:
        answer = admin.get("/readyz")
    assert answer.status_code == 503
    assert "consumers: no heartbeat for" in answer.json()["checks"]["components"]
    assert answer.json()["components"]["consumers"]["processes"] == 0

    # Alive (it beats) but nobody consumes its queue: not ready either.
    with engine.begin() as conn:
        conn.execute(component_heartbeats.update().values(beat_at=datetime.now(UTC)))
    idle = bootstrap(settings)
    with TestClient(idle.admin_app()) as admin:
        answer = admin.get("/readyz")
    assert answer.status_code == 503
    assert f"consumers: nobody consumes {queue}" in answer.json()["checks"]["components"]
    engine.dispose()
