"""The platform's own order beside ours: the webhook body is kept under the
message id it was published with, shown with the order (masked for a
viewer), read again with today's connector in a dry run, and deleted after
its retention."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from admin_api import keys
from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.retention import RejectedRetention
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.replay import replayer
from infra.settings import Settings
from infra.tables import raw_payloads
from infra.topology import build_topology
from router.service import RouterService
from tests.factories import (
    FakePublisher,
    body_of,
    delivery_from_published,
    order_dict,
    signed_headers,
)

SECRET = "s3cret-for-the-raw-orders"
ROOT = {"Authorization": "Bearer raw-orders-root-token-0123456789"}
SETTINGS = Settings(channel_secrets={"web-shop": [SECRET]}, namespace="t")


@pytest.fixture
def routed(sqlite_engine: Engine) -> Iterator[tuple[str, bytes]]:
    """A signed webhook accepted by the ingest, then routed: (number, body)."""
    publisher = FakePublisher()
    deps = IngestDeps(SETTINGS, sqlite_engine, publisher, build_topology(SETTINGS))  # type: ignore[arg-type]
    body = body_of(order_dict(external_id="RAW-1"))
    with TestClient(create_ingest_app(deps)) as ingest:
        answer = ingest.post("/ingest/web-shop", content=body, headers=signed_headers(SECRET, body))
    assert answer.status_code == 202
    [message] = publisher.published
    RouterService(sqlite_engine, build_topology(SETTINGS)).handle(delivery_from_published(message))
    yield json.loads(message.body)["external_id"], body


def _admin(engine: Engine) -> TestClient:
    app = create_admin_app(
        engine,
        KeyAuth(engine, {"root": ROOT["Authorization"].split()[1]}),
        build_topology(SETTINGS),
        replay=replayer(SETTINGS),
    )
    return TestClient(app)


def test_the_platforms_order_is_kept_and_shown_masked_to_a_viewer(
    sqlite_engine: Engine, routed: tuple[str, bytes]
) -> None:
    _, body = routed
    with sqlite_engine.begin() as conn:
        viewer = keys.create(conn, "cs", "viewer", "t")[1]
    with _admin(sqlite_engine) as api:
        number = api.get("/orders", headers=ROOT).json()["orders"][0]["order_number"]
        [raw] = api.get(f"/orders/{number}/raw", headers=ROOT).json()
        assert raw["body"] == body.decode() and raw["channel"] == "web-shop"
        assert raw["headers"]["x-orderbus-signature"] == "<redacted>"
        [masked] = api.get(
            f"/orders/{number}/raw", headers={"Authorization": f"Bearer {viewer}"}
        ).json()
        assert "13912345678" not in json.dumps(masked) and "139****5678" in masked["body"]


def test_a_replay_says_what_todays_connector_would_read_differently(
    sqlite_engine: Engine, routed: tuple[str, bytes]
) -> None:
    with _admin(sqlite_engine) as api:
        [same] = api.post("/orders/replay", params={"channel": "web-shop"}, headers=ROOT).json()
        assert same["readable"] and same["changed"] == []
        with sqlite_engine.begin() as conn:  # as if the connector had read it otherwise then
            conn.execute(
                update(raw_payloads).values(
                    body=body_of(order_dict(external_id="RAW-1", note="新备注")).decode()
                )
            )
        [changed] = api.post("/orders/replay", params={"channel": "web-shop"}, headers=ROOT).json()
        assert changed["changed"] == ["note"]


def test_old_copies_are_deleted_after_their_retention(
    sqlite_engine: Engine, routed: tuple[str, bytes]
) -> None:
    retention = RejectedRetention(sqlite_engine, 30, raw_days=90)
    assert retention.purge_raw_once() == 0
    with sqlite_engine.begin() as conn:
        conn.execute(
            update(raw_payloads).values(received_at=datetime.now(UTC) - timedelta(days=91))
        )
    assert retention.purge_raw_once() == 1
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(raw_payloads)).all() == []


def test_a_replay_shows_what_a_system_would_receive_with_the_mappings_now(
    sqlite_engine: Engine, routed: tuple[str, bytes]
) -> None:
    from admin_api import mappings

    with _admin(sqlite_engine) as api:
        params = {"channel": "web-shop", "target": "finance"}
        [before] = api.post("/orders/replay", params=params, headers=ROOT).json()
        [unmapped] = before["mapped"]
        assert unmapped["passes"] and [x["sku"] for x in unmapped["lines"]] == ["SKU-A", "SKU-B"]
        with sqlite_engine.begin() as conn:
            mappings.put_product(
                conn, channel="", shop="", platform_sku="SKU-A",
                components=[{"sku": "TEA", "quantity": 3}], note=None, by="t",
            )  # fmt: skip
            mappings.put_code(conn, "TEA", "finance", "MAT-TEA", "t")
        [after] = api.post("/orders/replay", params=params, headers=ROOT).json()
        proposal = {"platform_sku": "SKU-B", "components": [{"sku": "CUP", "quantity": 2}]}
        [proposed] = api.post(
            "/orders/replay", params=params, json={"proposal": proposal}, headers=ROOT
        ).json()
        assert [(x["sku"], x["quantity"]) for x in proposed["mapped"][0]["lines"]] == [
            ("MAT-TEA", 6), ("CUP", 2),
        ]  # fmt: skip
        with sqlite_engine.connect() as conn:  # nothing saved
            assert len(mappings.products(conn)) == 1
    [mapped] = after["mapped"]
    assert [(x["platform_sku"], x["sku"], x["quantity"]) for x in mapped["lines"]] == [
        ("SKU-A", "MAT-TEA", 6), ("SKU-B", "SKU-B", 1),
    ]  # fmt: skip


def test_an_answer_the_fetch_worker_kept_is_read_again_by_its_source(sqlite_engine: Engine) -> None:
    """A Douyin order fetched from Doudian's API: the answer kept beside it is
    read again by the channel's source (no call to Doudian) in the replay."""
    from infra import raw_payloads as raw
    from tests.factories import delivery_for
    from tests.unit.test_douyin import APP_KEY, DETAIL, SHOP
    from tests.unit.test_douyin import SECRET as DY_SECRET

    settings = Settings(
        namespace="t",
        channel_secrets={"dy": [DY_SECRET]},
        channels={"dy": {"connector": "douyin", "app_key": APP_KEY, "douyin": {"shop_id": SHOP}}},
    )
    answer = {"code": 10000, "data": {"shop_order_detail": DETAIL}}
    [order] = replayer(settings)("dy", {raw.SOURCE: "fetched"}, json.dumps(answer).encode())
    RouterService(sqlite_engine, build_topology(settings)).handle(
        delivery_for(order, message_id="dy.m-1")
    )
    raw.keep(sqlite_engine, ["dy.m-1"], "dy", {raw.SOURCE: "fetched"}, json.dumps(answer).encode())
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"root": ROOT["Authorization"].split()[1]}),
        build_topology(settings),
        replay=replayer(settings),
    )
    with TestClient(app) as api:
        [same] = api.post("/orders/replay", params={"channel": "dy"}, headers=ROOT).json()
        assert same["readable"] and same["changed"] == [] and same["order_number"]
        later = json.loads(json.dumps(answer))
        later["data"]["shop_order_detail"]["buyer_words"] = "周末送货"
        with sqlite_engine.begin() as conn:
            conn.execute(update(raw_payloads).values(body=json.dumps(later)))
        [changed] = api.post("/orders/replay", params={"channel": "dy"}, headers=ROOT).json()
        assert changed["changed"] == ["note"]
