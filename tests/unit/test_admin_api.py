from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from infra.settings import Settings
from infra.tables import holds, outbox
from infra.topology import build_topology
from router.dedup import order_number
from router.service import RouterService
from tests.factories import delivery_for, failure_delivery, order

OPERATOR = {"Authorization": "Bearer op-token"}


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"alice": "op-token"}),
        build_topology(Settings(namespace="t")),
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def letters(sqlite_engine: Engine) -> list[str]:
    recorder = DeadLetterRecorder(sqlite_engine)
    ids = [f"m-{i}" for i in range(3)]
    for mid in ids:
        recorder.handle(failure_delivery(message_id=mid))
    return ids


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/dead-letters"),
        ("get", "/dead-letters/1"),
        ("post", "/dead-letters/1/retry"),
        ("post", "/dead-letters/retry"),
        ("post", "/dead-letters/1/discard"),
        ("get", "/rejected-requests"),
        ("get", "/audit"),
        ("get", "/holds"),
        ("post", "/holds/1/release"),
        ("post", "/holds/1/reject"),
    ],
)
def test_everything_but_health_needs_a_token(client: TestClient, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code == 401
    assert (
        getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert client.get("/healthz").status_code == 200


def test_list_filter_and_paginate(client: TestClient, letters: list[str]) -> None:
    page = client.get("/dead-letters", params={"limit": 2}, headers=OPERATOR).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert (
        client.get(
            "/dead-letters",
            params={"queue": "t.warehouse", "reason": "delivery_rejected"},
            headers=OPERATOR,
        ).json()["total"]
        == 3
    )
    assert (
        client.get("/dead-letters", params={"reason": "other"}, headers=OPERATOR).json()["total"]
        == 0
    )
    assert (
        client.get(
            "/dead-letters", params={"channel": "web-shop", "status": "open"}, headers=OPERATOR
        ).json()["total"]
        == 3
    )


def test_show_retry_and_audit(
    client: TestClient, letters: list[str], sqlite_engine: Engine
) -> None:
    first = client.get("/dead-letters", headers=OPERATOR).json()["items"][-1]
    detail = client.get(f"/dead-letters/{first['id']}", headers=OPERATOR).json()
    assert (
        detail["body"] == '{"x": 1}'
        and detail["headers"]["x-orderbus-reason"] == "delivery_rejected"
    )
    r = client.post(f"/dead-letters/{first['id']}/retry", json={"note": "fixed"}, headers=OPERATOR)
    assert r.status_code == 202 and r.json()["message_id"] == first["message_id"]
    assert client.post(f"/dead-letters/{first['id']}/retry", headers=OPERATOR).status_code == 409
    audit = client.get("/audit", headers=OPERATOR).json()["items"]
    assert audit[0]["actor"] == "alice" and audit[0]["action"] == "dead_letter.retry"
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(outbox.c.message_id)).scalar_one() == first["message_id"]


def test_retry_many_dry_run_then_for_real(client: TestClient, letters: list[str]) -> None:
    dry = client.post(
        "/dead-letters/retry", json={"queue": "t.warehouse", "dry_run": True}, headers=OPERATOR
    ).json()
    assert dry["matched"] == 3 and dry["retried"] == []
    done = client.post(
        "/dead-letters/retry", json={"queue": "t.warehouse", "limit": 2}, headers=OPERATOR
    ).json()
    assert len(done["retried"]) == 2
    assert (
        client.get("/dead-letters", params={"status": "open"}, headers=OPERATOR).json()["total"]
        == 1
    )
    actions = [e["action"] for e in client.get("/audit", headers=OPERATOR).json()["items"]]
    assert actions.count("dead_letter.retry") == 2 and "dead_letter.retry_many" in actions


def test_discard_needs_a_note(client: TestClient, letters: list[str]) -> None:
    assert client.post("/dead-letters/1/discard", json={}, headers=OPERATOR).status_code == 422
    assert (
        client.post("/dead-letters/1/discard", json={"note": "test"}, headers=OPERATOR).status_code
        == 204
    )
    assert client.get("/dead-letters/1", headers=OPERATOR).json()["status"] == "discarded"
    assert (
        client.post("/dead-letters/999/discard", json={"note": "x"}, headers=OPERATOR).status_code
        == 404
    )


def test_openapi_is_published(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/dead-letters/{dead_letter_id}/retry" in paths


@pytest.fixture
def held(sqlite_engine: Engine) -> int:
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(channel="mini-program", external_id="MP-1")))
    router.handle(delivery_for(order(channel="store-hz01", external_id="POS-9")))
    with sqlite_engine.connect() as conn:
        return int(conn.scalar(select(holds.c.id)) or 0)


def test_an_operator_sees_a_held_order_and_releases_it(
    client: TestClient, held: int, sqlite_engine: Engine
) -> None:
    [item] = client.get("/holds", headers=OPERATOR).json()["items"]
    assert item["id"] == held and item["status"] == "open"
    assert item["suspected_of"] == order_number("mini-program", "main", "MP-1")
    r = client.post(f"/holds/{held}/release", json={"note": "two customers"}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    number = order_number("store-hz01", "main", "POS-9")
    assert r.json()["sent"] == [
        f"{number}-v1-{t}" for t in ("warehouse", "finance", "notification")
    ]
    again = client.post(f"/holds/{held}/release", json={}, headers=OPERATOR)
    assert again.status_code == 409
    assert client.get("/holds", headers=OPERATOR).json()["total"] == 0
    [entry] = client.get("/audit", params={"action": "hold.release"}, headers=OPERATOR).json()[
        "items"
    ]
    assert entry["actor"] == "alice" and entry["detail"]["note"] == "two customers"


def test_an_operator_rejects_a_duplicate(client: TestClient, held: int) -> None:
    assert client.post(f"/holds/{held}/reject", json={}, headers=OPERATOR).status_code == 204
    rejected = client.get("/holds", params={"status": "rejected"}, headers=OPERATOR).json()
    assert rejected["total"] == 1
    assert client.post("/holds/999/reject", json={}, headers=OPERATOR).status_code == 404
