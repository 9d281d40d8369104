from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from canonical.envelope import H_CHANNEL
from canonical.order import CanonicalOrder
from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.messages import OutgoingMessage
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher, body_of, order_dict, signed_headers

SECRET = "s3cret-for-the-tests"


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(sqlite_engine: Engine, publisher: FakePublisher) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={"web-shop": [SECRET]}, max_body_bytes=64 * 1024, namespace="t"
    )
    deps = IngestDeps(settings, sqlite_engine, publisher, build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as c:
        yield c


def rejections(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            (r.status_code, r.reason)
            for r in conn.execute(select(rejected_requests).order_by(rejected_requests.c.id))
        ]


def post(
    client: TestClient,
    body: bytes,
    headers: dict[str, str] | None = None,
    channel: str = "web-shop",
) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/ingest/{channel}", content=body, headers=headers or signed_headers(SECRET, body)
    )
    return response


def test_signed_order_is_published_then_accepted(
    client: TestClient, publisher: FakePublisher
) -> None:
    body = body_of(order_dict())
    response = post(client, body)
    assert response.status_code == 202, response.text
    assert response.json()["external_id"] == "WS-1"
    [message] = publisher.published
    assert message.routing_key == "ingest.web-shop"
    assert message.exchange == "t.orders"
    assert message.headers[H_CHANNEL] == "web-shop"
    assert message.message_id == response.json()["message_id"]
    assert CanonicalOrder.from_wire(message.body).external_id == "WS-1"


def test_channel_is_taken_from_the_url(client: TestClient, publisher: FakePublisher) -> None:
    data = order_dict()
    del data["channel"]
    assert post(client, body_of(data)).status_code == 202
    assert CanonicalOrder.from_wire(publisher.published[0].body).channel == "web-shop"


def test_forged_signature_is_401_and_recorded(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body = body_of(order_dict())
    response = post(client, body, signed_headers("not-the-secret", body))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "bad_signature"
    assert publisher.published == []
    assert rejections(sqlite_engine) == [(401, "bad_signature")]


def test_stale_timestamp_is_401(client: TestClient, sqlite_engine: Engine) -> None:
    body = body_of(order_dict())
    response = post(client, body, signed_headers(SECRET, body, int(time.time()) - 301))
    assert response.status_code == 401
    assert rejections(sqlite_engine) == [(401, "stale_timestamp")]


def test_unknown_channel_is_404_and_recorded(client: TestClient, sqlite_engine: Engine) -> None:
    body = body_of(order_dict(channel="nope"))
    assert post(client, body, channel="nope").status_code == 404
    assert rejections(sqlite_engine) == [(404, "unknown_channel")]


def test_malformed_json_is_400(client: TestClient, sqlite_engine: Engine) -> None:
    assert post(client, b'{"external_id": ').status_code == 400
    assert post(client, b'{"a": NaN}').status_code == 400
    assert post(client, b'{"a": 1, "a": 2}').status_code == 400
    assert rejections(sqlite_engine) == [(400, "malformed_json")] * 3


def test_invalid_utf8_is_400(client: TestClient, sqlite_engine: Engine) -> None:
    body = '{"note": "订单"}'.encode("gbk")
    assert post(client, body).status_code == 400
    [(_status, reason)] = rejections(sqlite_engine)
    assert reason == "invalid_encoding"


def test_gbk_charset_is_415(client: TestClient) -> None:
    body = body_of(order_dict())
    headers = signed_headers(SECRET, body) | {"Content-Type": "application/json; charset=gbk"}
    assert post(client, body, headers).status_code == 415


def test_wrong_media_type_is_415(client: TestClient) -> None:
    body = body_of(order_dict())
    headers = signed_headers(SECRET, body) | {"Content-Type": "text/plain"}
    assert post(client, body, headers).status_code == 415


def test_huge_payload_is_413_and_not_published(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body = body_of(order_dict(note="x" * 1000)) + b" " * (70 * 1024)
    assert post(client, body).status_code == 413
    assert publisher.published == []
    assert rejections(sqlite_engine) == [(413, "payload_too_large")]


def test_schema_errors_are_422_with_fields(client: TestClient) -> None:
    body = body_of(order_dict(total=1.5, placed_at="yesterday"))
    response = post(client, body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"total", "placed_at"} <= fields


def test_order_number_from_outside_is_refused(client: TestClient) -> None:
    assert post(client, body_of(order_dict(order_number="OB123"))).status_code == 422


def test_broker_down_is_503_with_retry_after(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    publisher.down = True
    response = post(client, body_of(order_dict()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert rejections(sqlite_engine) == [(503, "broker_unavailable")]


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_rejection_keeps_headers_but_redacts_credentials(
    client: TestClient, sqlite_engine: Engine
) -> None:
    body = b"not json"
    headers = signed_headers(SECRET, body) | {"Authorization": "Bearer hunter2"}
    post(client, body, headers)
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(rejected_requests)).one()
    assert row.headers["authorization"] == "<redacted>"
    assert row.body_excerpt == "not json"
    assert json.dumps(row.headers).count("hunter2") == 0


# -- the webhook lane (connectors.ingest_app.WebhookLane) ---------------------------


def test_webhooks_take_the_lane_past_fastapis_routing(
    client: TestClient, publisher: FakePublisher
) -> None:
    """Without the route in FastAPI's router the webhook is still answered:
    the lane, not the router, handles it; the rest of the app is FastAPI's."""
    app = client.app
    assert isinstance(app, FastAPI)
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", "") != "/ingest/{channel}"
    ]
    body = body_of(order_dict())
    assert post(client, body).status_code == 202
    assert len(publisher.published) == 1
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_route_stays_documented_and_other_requests_go_to_fastapi(
    client: TestClient, publisher: FakePublisher
) -> None:
    assert "/ingest/{channel}" in client.get("/openapi.json").json()["paths"]
    assert client.get("/ingest/web-shop").status_code == 405  # only POST takes the lane
    body = body_of(order_dict())
    for path in ("/ingest/", "/ingest/web-shop/extra"):  # what the route would not match
        assert (
            client.post(path, content=body, headers=signed_headers(SECRET, body)).status_code == 404
        )
    assert publisher.published == []


def test_the_lane_serves_under_a_proxys_root_path(
    sqlite_engine: Engine, publisher: FakePublisher
) -> None:
    settings = Settings(channel_secrets={"web-shop": [SECRET]}, namespace="t")
    deps = IngestDeps(settings, sqlite_engine, publisher, build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps), root_path="/orderbus") as proxied:
        body = body_of(order_dict())
        response = proxied.post(
            "/orderbus/ingest/web-shop", content=body, headers=signed_headers(SECRET, body)
        )
    assert response.status_code == 202, response.text
    assert publisher.published[0].routing_key == "ingest.web-shop"


def test_an_error_the_handler_does_not_answer_is_a_500_from_the_lane(
    sqlite_engine: Engine,
) -> None:
    class Broken(FakePublisher):
        def publish(self, message: OutgoingMessage) -> None:
            raise RuntimeError("a bug, not the broker")

    settings = Settings(channel_secrets={"web-shop": [SECRET]}, namespace="t")
    deps = IngestDeps(settings, sqlite_engine, Broken(), build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps), raise_server_exceptions=False) as c:
        assert post(c, body_of(order_dict())).status_code == 500
