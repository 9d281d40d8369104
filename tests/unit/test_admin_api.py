from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import TokenAuth
from router.deadletters import DeadLetterRecorder
from router.tables import outbox
from tests.factories import failure_delivery

OPERATOR = {"Authorization": "Bearer op-token"}


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    app = create_admin_app(sqlite_engine, TokenAuth({"alice": "op-token"}))
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
