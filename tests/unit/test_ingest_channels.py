"""The ingest app with platform connectors: per-channel configuration,
redelivered webhooks, pings and events that carry no order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from canonical.order import CanonicalOrder
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.payload import hmac_sha256_base64, signed_delivery_id
from infra.setting_specs import ChannelSpec
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.factories import FakePublisher

SECRET = "shpss_0123456789"
FIXTURES = Path(str(resources.files("connectors") / "fixtures"))


def fixture_body(path: str) -> tuple[bytes, dict[str, str]]:
    fixture = json.loads((FIXTURES / path).read_text("utf-8"))
    if "body_text" in fixture:
        return fixture["body_text"].encode("utf-8"), fixture["headers"]
    return json.dumps(fixture["body"]).encode(), fixture["headers"]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(sqlite_engine: Engine, publisher: FakePublisher) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={"shop-us": [SECRET], "woo": [SECRET]},
        channels={
            "shop-us": ChannelSpec(connector="shopify", shop="acme.myshopify.com"),
            "woo": ChannelSpec(connector="woocommerce"),
        },
        namespace="t",
    )
    deps = IngestDeps(settings, sqlite_engine, publisher, build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as c:
        yield c


def recorded(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [
            (r.status_code, r.reason, r.detail)
            for r in conn.execute(select(rejected_requests).order_by(rejected_requests.c.id))
        ]


def shopify_headers(body: bytes, extra: dict[str, str]) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-SHA256": hmac_sha256_base64(SECRET, body),
        "X-Shopify-Shop-Domain": "ignored.myshopify.com",
        **extra,
    }


def test_a_shopify_order_is_published_under_its_signed_bodys_id(
    client: TestClient, publisher: FakePublisher
) -> None:
    body, extra = fixture_body("shopify/orders-create.json")
    first = client.post("/ingest/shop-us", content=body, headers=shopify_headers(body, extra))
    again = client.post("/ingest/shop-us", content=body, headers=shopify_headers(body, extra))
    assert first.status_code == again.status_code == 202, first.text
    # A redelivery carries the same message id, which the router records once
    # (tests/integration/test_storage_contract.py::test_redelivered_message_has_no_second_effect);
    # the id is the signed body's, not X-Shopify-Webhook-Id, which is not signed.
    ids = [m.message_id for m in publisher.published]
    assert ids == [f"shop-us.{signed_delivery_id(body)}"] * 2
    order = CanonicalOrder.from_wire(publisher.published[0].body)
    assert (order.channel, order.shop, order.external_id) == (
        "shop-us",
        "acme.myshopify.com",  # the configured shop wins over the header
        "450789469",
    )


def test_a_forged_shopify_webhook_is_401_and_recorded(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body, extra = fixture_body("shopify/orders-create.json")
    headers = shopify_headers(body, extra)
    response = client.post(
        "/ingest/shop-us", content=body.replace(b"409.94", b"4.99"), headers=headers
    )
    assert response.status_code == 401
    assert response.json()["title"] == "bad_signature"
    assert publisher.published == []
    assert [r[:2] for r in recorded(sqlite_engine)] == [(401, "bad_signature")]


def test_a_topic_that_is_not_an_order_is_answered_and_recorded(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body = b'{"id": 632910392, "title": "IPod Nano - 8GB"}'
    headers = shopify_headers(body, {"X-Shopify-Topic": "products/update"})
    response = client.post("/ingest/shop-us", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert publisher.published == []
    [(status, reason, detail)] = recorded(sqlite_engine)
    assert (status, reason) == (200, "ignored")
    assert "products/update" in detail


def test_the_woocommerce_ping_is_answered_200_and_not_an_order(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    response = client.post(
        "/ingest/woo",
        content=b"webhook_id=12",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert publisher.published == []
    [(status, reason, detail)] = recorded(sqlite_engine)
    assert (status, reason) == (200, "ignored")
    assert "ping" in detail


def test_an_unsigned_woocommerce_order_is_401(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body, extra = fixture_body("woocommerce/order-created.json")
    response = client.post(
        "/ingest/woo", content=body, headers={"Content-Type": "application/json", **extra}
    )
    assert response.status_code == 401
    assert publisher.published == []


def test_a_signed_woocommerce_order_is_accepted(
    client: TestClient, publisher: FakePublisher
) -> None:
    body, extra = fixture_body("woocommerce/order-created.json")
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Signature": hmac_sha256_base64(SECRET, body),
        **extra,
    }
    response = client.post("/ingest/woo", content=body, headers=headers)
    assert response.status_code == 202, response.text
    order = CanonicalOrder.from_wire(publisher.published[0].body)
    assert order.external_id == "727"
    assert order.status.value == "paid"


def test_a_channel_naming_an_unknown_connector_is_a_settings_error() -> None:
    from connectors.registry import check_settings

    with pytest.raises(ValueError, match="no connector 'magento'"):
        check_settings(Settings(channels={"m": ChannelSpec(connector="magento")}))


def test_channels_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ORDERBUS_CHANNELS", '{"shop-us": {"connector": "shopify", "shop": "acme.myshopify.com"}}'
    )
    settings = Settings()
    assert settings.channels["shop-us"].connector == "shopify"


def test_a_shopify_update_without_its_lines_changes_the_known_orders_status(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    """orders/updated may come without line_items: never a 4xx (Shopify
    would retry, then drop the subscription). Applied to the order orderbus
    has; recorded and answered 200 when orderbus has none yet."""
    from router.service import RouterService
    from tests.factories import delivery_for

    body, extra = fixture_body("shopify/orders-create.json")
    data = json.loads(body)
    partial = {k: v for k, v in data.items() if k != "line_items"}
    partial.update(financial_status="refunded", updated_at="2026-12-01T10:00:00-05:00")
    update = json.dumps(partial).encode()
    headers = shopify_headers(update, {**extra, "X-Shopify-Topic": "orders/updated"})
    unknown = client.post("/ingest/shop-us", content=update, headers=headers)
    assert unknown.status_code == 200 and publisher.published == []
    assert "does not have yet" in recorded(sqlite_engine)[-1][2]

    first = client.post("/ingest/shop-us", content=body, headers=shopify_headers(body, extra))
    assert first.status_code == 202
    RouterService(sqlite_engine, build_topology(Settings(namespace="t"))).handle(
        delivery_for(CanonicalOrder.from_wire(publisher.published[0].body), message_id="m-1")
    )
    applied = client.post("/ingest/shop-us", content=update, headers=headers)
    assert applied.status_code == 202, applied.text
    changed = CanonicalOrder.from_wire(publisher.published[-1].body)
    original = CanonicalOrder.from_wire(publisher.published[0].body)
    assert changed.status.value == "refunded" and changed.items == original.items
    assert changed.total == original.total and changed.order_number is None
    RouterService(sqlite_engine, build_topology(Settings(namespace="t"))).handle(
        delivery_for(changed, message_id="m-2")
    )
    from infra.tables import orders

    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(orders.c.status)) == "refunded"  # the router took it


def test_a_shopify_update_without_its_lines_brings_the_amounts_that_still_add_up(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    """An update without line_items carries the order's amounts: those that
    add up with the lines orderbus has are applied (a shipping fee added);
    a total that does not (the lines changed and did not come) leaves the
    stored amounts, applies the status, and is recorded for a person: still
    answered 2xx, never a refusal."""
    from router.service import RouterService
    from tests.factories import delivery_for

    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    body, extra = fixture_body("shopify/orders-create.json")
    data = json.loads(body)
    assert client.post(
        "/ingest/shop-us", content=body, headers=shopify_headers(body, extra)
    ).is_success
    router.handle(delivery_for(CanonicalOrder.from_wire(publisher.published[-1].body)))

    def update(**changes: Any) -> CanonicalOrder:
        partial = {k: v for k, v in data.items() if k != "line_items"} | changes
        raw = json.dumps(partial).encode()
        headers = shopify_headers(raw, {**extra, "X-Shopify-Topic": "orders/updated"})
        answer = client.post("/ingest/shop-us", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        order = CanonicalOrder.from_wire(publisher.published[-1].body)
        router.handle(delivery_for(order))
        return order

    paid = update(
        financial_status="paid",
        shipping_lines=[{"price": "10.00", "title": "Express"}],
        total_price="419.94",
        updated_at="2026-12-01T10:00:00-05:00",
    )
    assert (paid.status.value, paid.shipping_fee, paid.total) == (
        "paid", Decimal("10.00"), Decimal("419.94"),
    )  # fmt: skip
    assert recorded(sqlite_engine) == []
    shipped = update(
        financial_status="paid",
        fulfillment_status="fulfilled",
        shipping_lines=[{"price": "10.00", "title": "Express"}],
        total_price="999.00",
        updated_at="2026-12-01T11:00:00-05:00",
    )
    assert (shipped.status.value, shipped.total) == ("shipped", Decimal("419.94"))
    [(status, reason, detail)] = recorded(sqlite_engine)
    assert (status, reason) == (200, "amounts_not_applied")
    assert "total 999.00" in detail and "does not add up" in detail


def test_a_shopify_refund_becomes_the_orders_after_sale_and_one_refund_for_finance(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    """refunds/create names its order: the refund is added to the order
    orderbus has, and the router sends finance one refund document for it;
    the same push again changes nothing; a refund of an order orderbus does
    not have is recorded and answered 200."""
    from router.service import RouterService
    from tests.factories import delivery_for

    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    refund, refund_extra = fixture_body("shopify/refunds-create.json")
    headers = shopify_headers(refund, refund_extra)
    early = client.post("/ingest/shop-us", content=refund, headers=headers)
    assert early.status_code == 200 and "does not have yet" in recorded(sqlite_engine)[-1][2]

    body, extra = fixture_body("shopify/orders-paid.json")
    assert client.post(
        "/ingest/shop-us", content=body, headers=shopify_headers(body, extra)
    ).is_success
    router.handle(delivery_for(CanonicalOrder.from_wire(publisher.published[-1].body)))
    for _ in range(2):  # Shopify sends it again
        answer = client.post("/ingest/shop-us", content=refund, headers=headers)
        assert answer.status_code == 202, answer.text
        router.handle(delivery_for(CanonicalOrder.from_wire(publisher.published[-1].body)))
    from infra.tables import outbox

    with sqlite_engine.connect() as conn:
        documents = [
            (
                r.routing_key,
                r.headers.get("x-orderbus-document"),
                r.headers.get("x-orderbus-after-sale"),
            )
            for r in conn.execute(select(outbox))
            if r.headers.get("x-orderbus-document")
        ]
    assert documents == [("deliver.finance", "refund", "929361464")]
