"""Hostile bodies at every connector, signed as the platform signs them (so
they reach the parsing): nested without end, invalid UTF-8, duplicate keys.
Each gets a 4xx with a reason, is recorded, and publishes nothing; none is a
500 or a stall. And a request signed with an empty key is refused, on every
connector, as one signed with the wrong key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from connectors.registry import CONNECTORS
from infra.setting_specs import ChannelSpec, DouyinSpec
from infra.settings import Settings
from infra.tables import rejected_requests
from tests.factories import FakePublisher

SECRET = "a-long-enough-platform-secret"
HOSTILE = {
    "nested arrays": b"[" * 200_000 + b"]" * 200_000,
    "nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "invalid UTF-8": b'{"external_id": "\xff\xfe"}',
    "duplicate keys": b'{"external_id": "A", "external_id": "B"}',
}


def channel_spec(name: str) -> ChannelSpec:
    app_key = getattr(CONNECTORS[name], "example_app_key", None)
    douyin = DouyinSpec(shop_id="1") if name == "douyin" else None
    return ChannelSpec(connector=name, app_key=app_key, douyin=douyin)


@pytest.fixture
def client(ingest_for: Callable[[Settings], TestClient]) -> TestClient:
    settings = Settings(
        channel_secrets={name: [SECRET] for name in CONNECTORS},
        channels={name: channel_spec(name) for name in CONNECTORS},
        max_body_bytes=4 * 1024 * 1024,
        namespace="t",
    )
    return ingest_for(settings)


def recorded(engine: Engine, channel: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(rejected_requests.c.reason).where(rejected_requests.c.channel == channel)
            )
        )


# Youzan signs msg inside a JSON envelope: its hostile bodies are the envelope's (below).
@pytest.mark.parametrize("name", sorted(n for n in CONNECTORS if n != "youzan"))
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_body_is_a_recorded_4xx(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine, name: str, kind: str
) -> None:
    connector = CONNECTORS[name]
    headers, body = connector.sign(HOSTILE[kind], SECRET, time.time())
    answer = client.post(f"/ingest/{name}", content=body, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert answer.headers["content-type"] == "application/problem+json"
    assert recorded(sqlite_engine, name) == [answer.json()["title"]]
    assert publisher.published == []


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_youzan_envelope_is_a_recorded_4xx(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine, kind: str
) -> None:
    answer = client.post(
        "/ingest/youzan", content=HOSTILE[kind], headers={"Content-Type": "application/json"}
    )
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert recorded(sqlite_engine, "youzan") == [answer.json()["title"]]
    assert publisher.published == []


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_a_request_signed_with_an_empty_key_is_refused(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine, name: str
) -> None:
    app = getattr(CONNECTORS[name], "example_app_key", None) or "app"
    envelope = {"client_id": app, "msg": "x", "type": "trade_TradePaid", "id": 1}
    headers, body = CONNECTORS[name].sign(json.dumps(envelope).encode(), "", time.time())
    answer = client.post(f"/ingest/{name}", content=body, headers=headers)
    assert answer.status_code == 401, answer.text[:300]
    assert answer.json()["title"] == "bad_signature"
    assert recorded(sqlite_engine, name) == [answer.json()["title"]]
    assert publisher.published == []


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_a_body_over_the_limit_is_a_recorded_413_unread(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine, name: str
) -> None:
    body = b"x" * (4 * 1024 * 1024 + 1)
    answer = client.post(
        f"/ingest/{name}", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert recorded(sqlite_engine, name) == ["payload_too_large"]
    assert publisher.published == []
