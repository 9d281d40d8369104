"""Access control on the admin API (keys stored hashed, roles, masking for
viewers, the audit log) and the order lookup with its timeline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_ATTEMPT, H_DETAIL, H_REASON, H_SOURCE_QUEUE
from infra.counters import Counters
from infra.messages import H_ORIGINAL_EXCHANGE, H_ORIGINAL_ROUTING_KEY
from infra.settings import Settings
from infra.tables import api_keys, outbox
from infra.topology import build_topology
from infra.transports import HttpxTransport
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy
from tests.factories import delivery_for, delivery_from_outbox, order

ROOT = {"Authorization": "Bearer root-token"}
PHONE = "13912345678"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"root": "root-token"}),
        build_topology(Settings(namespace="t")),
        {"database": lambda: None},
    )
    with TestClient(app) as c:
        yield c


def make_key(client: TestClient, name: str, role: str) -> str:
    answer = client.post("/keys", json={"name": name, "role": role}, headers=ROOT)
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def route_and_deliver(engine: Engine) -> str:
    """An order routed, delivered to the warehouse, refused by finance (a dead
    letter); its number."""
    topology = build_topology(Settings(namespace="t"))
    counters = Counters(engine)  # what the metrics read, as the daemon writes them
    router = RouterService(engine, topology, counters=counters)
    paid = order(external_id="LOOK-1")
    router.handle(delivery_for(paid, message_id="web-shop.look-1"))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]

    message = delivery_from_outbox
    warehouse = next(r for r in rows if r["message_id"].endswith("-warehouse"))
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(201)))
    wms = HttpDelivery(
        "warehouse", "http://wms.test/orders", HttpxTransport(client), RetryPolicy(1, 0, 0)
    )
    DeliveryConsumer("warehouse", engine, wms, counters=counters).handle(
        message(warehouse, "t.warehouse")
    )
    finance = next(r for r in rows if r["message_id"].endswith("-finance"))
    refused = {
        H_ATTEMPT: 1,
        H_REASON: "delivery_rejected",
        H_DETAIL: f"finance rejected the order with 422: customer {PHONE} unknown",
        H_SOURCE_QUEUE: "t.finance",
        H_ORIGINAL_EXCHANGE: "t.orders",
        H_ORIGINAL_ROUTING_KEY: "deliver.finance",
    }
    DeadLetterRecorder(engine).handle(message(finance, "t.finance.dlq", refused))
    counters.flush()
    number: str = json.loads(warehouse["body"])["order_number"]
    return number


def test_keys_are_stored_as_digests_and_shown_once(
    client: TestClient, sqlite_engine: Engine
) -> None:
    key = make_key(client, "cs-desk", "viewer")
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(api_keys)).mappings().one()
    assert row["key_digest"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(client.get("/keys", headers=ROOT).json())
    assert (
        client.post("/keys", json={"name": "cs-desk", "role": "viewer"}, headers=ROOT).status_code
        == 409
    )
    audit = client.get("/audit", headers=ROOT).json()["items"][0]
    assert (audit["actor"], audit["action"]) == ("root", "key.create")
    assert audit["detail"]["after"] == {"name": "cs-desk", "role": "viewer"}


def test_roles(client: TestClient, sqlite_engine: Engine) -> None:
    number = route_and_deliver(sqlite_engine)
    viewer, operator = make_key(client, "cs", "viewer"), make_key(client, "ops", "operator")
    letter = client.get("/dead-letters", headers=bearer(viewer)).json()["items"][0]

    # A viewer reads, with personal data masked, and cannot act.
    shown = client.get(f"/dead-letters/{letter['id']}", headers=bearer(viewer)).json()
    assert PHONE not in json.dumps(shown) and "139****5678" in shown["body"]
    story = client.get(f"/orders/{number}", headers=bearer(viewer)).json()
    assert story["order"]["customer"]["phone"] == "139****5678"
    assert "科技园" not in json.dumps(story)
    refused = client.post(f"/dead-letters/{letter['id']}/retry", headers=bearer(viewer))
    assert refused.status_code == 403 and "needs operator" in refused.json()["detail"]
    approve = client.post("/holds/1/release", json={}, headers=bearer(viewer))
    assert approve.status_code == 403  # a viewer cannot approve (whether or not it exists)
    assert (
        client.post(
            "/keys", json={"name": "x", "role": "admin"}, headers=bearer(viewer)
        ).status_code
        == 403
    )

    # An operator sees it all and can retry; only an admin makes keys.
    full = client.get(f"/orders/{number}", headers=bearer(operator)).json()
    assert full["order"]["customer"]["phone"] == PHONE
    retried = client.post(f"/dead-letters/{letter['id']}/retry", headers=bearer(operator))
    assert retried.status_code == 202
    assert client.get("/keys", headers=bearer(operator)).status_code == 403

    # A revoked key is refused.
    key_id = next(k["id"] for k in client.get("/keys", headers=ROOT).json() if k["name"] == "ops")
    assert client.delete(f"/keys/{key_id}", headers=ROOT).status_code == 204
    assert client.get("/dead-letters", headers=bearer(operator)).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/orders?number=OB1"),
        ("get", "/orders/OB1"),
        ("get", "/keys"),
        ("post", "/keys"),
        ("delete", "/keys/1"),
    ],
)
def test_no_key_no_access_but_health(client: TestClient, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code == 401
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}


def test_readiness_names_what_is_down(sqlite_engine: Engine) -> None:
    def broker() -> None:
        raise ConnectionRefusedError("127.0.0.1:5672")

    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {}), build_topology(Settings()), {"broker": broker}
    )
    with TestClient(app) as c:
        answer = c.get("/readyz")
    assert answer.status_code == 503
    assert "unavailable" in answer.json()["checks"]["broker"]


def test_the_timeline_tells_what_happened_to_the_order(
    client: TestClient, sqlite_engine: Engine
) -> None:
    number = route_and_deliver(sqlite_engine)
    by_phone = client.get("/orders", params={"phone": PHONE}, headers=ROOT).json()["orders"]
    by_key = client.get(
        "/orders", params={"channel": "web-shop", "external_id": "LOOK-1"}, headers=ROOT
    ).json()["orders"]
    assert [o["order_number"] for o in by_phone] == [o["order_number"] for o in by_key] == [number]
    story = client.get(f"/orders/{number}", headers=ROOT).json()
    events = [e["event"] for e in story["timeline"]]
    assert events[:3] == ["received", "routed: new", "status paid"]
    assert "delivered to warehouse" in events
    assert "dead letter in t.finance: delivery_rejected" in events
    assert story["status"] == "paid"
    delivered = next(e for e in story["timeline"] if e["event"] == "delivered to warehouse")
    assert delivered["detail"] == "HTTP 201 after 1 attempt(s)"


def test_an_order_the_router_refused_is_found_by_its_dead_letters(
    client: TestClient, sqlite_engine: Engine
) -> None:
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    bad = order(external_id="BAD-1", total="1.00")
    error = router.handle_batch([delivery_for(bad, message_id="web-shop.bad-1")])[0]
    assert error is not None  # validation failed: the bus would dead-letter it
    letter = delivery_for(bad, message_id="web-shop.bad-1", queue="t.router.dlq")
    letter.headers.update(
        {
            H_ATTEMPT: 1,
            H_REASON: "validation_failed",
            H_DETAIL: str(error),
            H_SOURCE_QUEUE: "t.router",
            H_ORIGINAL_EXCHANGE: "t.orders",
            H_ORIGINAL_ROUTING_KEY: "ingest.web-shop",
        }
    )
    DeadLetterRecorder(sqlite_engine).handle(letter)
    found = client.get(
        "/orders", params={"channel": "web-shop", "external_id": "BAD-1"}, headers=ROOT
    ).json()
    assert found["orders"] == []
    assert [e["event"] for e in found["unrouted"]["timeline"]] == [
        "dead letter in t.router: validation_failed"
    ]


def test_with_no_filter_the_recent_orders_come_back_and_a_phone_tail_needs_a_channel_or_day(
    client: TestClient, sqlite_engine: Engine
) -> None:
    number = route_and_deliver(sqlite_engine)
    recent = client.get("/orders", headers=ROOT).json()["orders"]
    assert [o["order_number"] for o in recent] == [number]
    tail = PHONE[-4:]
    assert client.get("/orders", params={"phone_tail": tail}, headers=ROOT).status_code == 422
    by_tail = client.get(
        "/orders", params={"phone_tail": tail, "channel": "web-shop"}, headers=ROOT
    ).json()["orders"]
    assert [o["order_number"] for o in by_tail] == [number]
    other_tail = "0000" if tail != "0000" else "1111"
    assert (
        client.get(
            "/orders", params={"phone_tail": other_tail, "channel": "web-shop"}, headers=ROOT
        ).json()["orders"]
        == []
    )


def test_keys_from_the_command_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.database import make_engine
    from orderbus.cli import main

    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("ORDERBUS_DATABASE_URL", url)
    assert main(["keys", "create", "--name", "wms-team", "--role", "operator"]) == 0
    key = capsys.readouterr().out.strip().split(": ", 1)[1]
    engine = make_engine(url)
    try:
        who = KeyAuth(engine, {}).principal_for(key)
        assert who is not None and (who.name, who.role.name) == ("wms-team", "operator")
        assert main(["keys", "revoke", "1"]) == 0
        assert KeyAuth(engine, {}).principal_for(key) is None
        assert main(["keys", "revoke", "1"]) == 2  # already revoked: said so
    finally:
        engine.dispose()


def test_metrics_count_what_the_tables_hold(sqlite_engine: Engine) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    number = route_and_deliver(sqlite_engine)
    assert number
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"root": "root-token"}),
        build_topology(Settings(namespace="t")),
        queue_depths=lambda: [("t.router", 3), ("t.warehouse", 0)],
    )
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        text = c.get("/metrics", headers=ROOT).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("orderbus_arrivals_total", (("channel", "web-shop"), ("outcome", "new")))] == 1
    key = (("queue", "t.finance"), ("reason", "delivery_rejected"), ("status", "open"))
    assert samples[("orderbus_dead_letters", key)] == 1
    assert samples[("orderbus_queue_depth", (("queue", "t.router"),))] == 3
    # The order's three outbox rows, one per system, were never published (no relay here).
    assert samples[("orderbus_outbox_unpublished", ())] == 3
    assert samples[("orderbus_outbox_lag_seconds", ())] >= 0
    inf = (("consumer", "warehouse"), ("le", "+Inf"))
    assert samples[("orderbus_delivery_latency_seconds_bucket", inf)] == 1
    assert samples[("orderbus_delivery_latency_seconds_count", (("consumer", "warehouse"),))] == 1
