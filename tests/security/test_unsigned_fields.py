"""Defect 3 of the security review: fields a platform does not sign decided
which order it is. A captured Shopify webhook replayed with another
``X-Shopify-Shop-Domain`` became a second order; a captured Youzan push
replayed with a higher ``version`` was sent again to every system, or with
another ``kdt_id`` became a new order. These signatures carry no timestamp,
so a captured push works forever: what identifies the order and its revision
now comes only from the signed bytes or from configuration.

For each platform: the push, then the same signed bytes replayed with every
unsigned field changed, make the same message (same id, same order, same
version): the router records it once and nothing is sent again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from canonical.order import CanonicalOrder
from connectors.payload import hmac_sha256_base64
from connectors.youzan import youzan_sign
from infra.setting_specs import ChannelSpec
from infra.settings import Settings
from tests.factories import FakePublisher
from tests.unit.test_ingest_channels import fixture_body
from tests.unit.test_youzan import CLIENT_ID, paid_envelope

SECRET = "a-long-enough-platform-secret"


@pytest.fixture
def client(ingest_for: Callable[[Settings], TestClient]) -> TestClient:
    settings = Settings(
        channel_secrets={"shop": [SECRET], "woo": [SECRET], "yz": [SECRET]},
        channels={
            "shop": ChannelSpec(connector="shopify"),
            "woo": ChannelSpec(connector="woocommerce"),
            "yz": ChannelSpec(connector="youzan", app_key=CLIENT_ID),
        },
        namespace="t",
    )
    return ingest_for(settings)


def published(publisher: FakePublisher) -> list[tuple[str, CanonicalOrder]]:
    return [(m.message_id, CanonicalOrder.from_wire(m.body)) for m in publisher.published]


def same_message_twice(publisher: FakePublisher) -> None:
    (first_id, first), (again_id, again) = published(publisher)
    assert again_id == first_id
    assert (again.shop, again.version, again.content_hash()) == (
        first.shop,
        first.version,
        first.content_hash(),
    )


def test_shopify_shop_domain_and_webhook_id_are_not_trusted(
    client: TestClient, publisher: FakePublisher
) -> None:
    body, extra = fixture_body("shopify/orders-create.json")
    headers = {**extra, "Content-Type": "application/json"}
    headers["X-Shopify-Hmac-SHA256"] = hmac_sha256_base64(SECRET, body)
    assert client.post("/ingest/shop", content=body, headers=headers).status_code == 202
    tampered = {
        **headers,
        "X-Shopify-Shop-Domain": "another-shop.myshopify.com",
        "X-Shopify-Webhook-Id": "00000000-0000-0000-0000-000000000001",
    }
    assert client.post("/ingest/shop", content=body, headers=tampered).status_code == 202
    same_message_twice(publisher)


def test_woocommerce_source_and_delivery_id_are_not_trusted(
    client: TestClient, publisher: FakePublisher
) -> None:
    body, extra = fixture_body("woocommerce/order-created.json")
    headers = {**extra, "Content-Type": "application/json"}
    headers["X-WC-Webhook-Signature"] = hmac_sha256_base64(SECRET, body)
    assert client.post("/ingest/woo", content=body, headers=headers).status_code == 202
    tampered = {
        **headers,
        "X-WC-Webhook-Source": "https://another-shop.example/",
        "X-WC-Webhook-Delivery-ID": "999999",
    }
    assert client.post("/ingest/woo", content=body, headers=tampered).status_code == 202
    same_message_twice(publisher)


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 9_999_999_999},
        {"kdt_id": 1},
        {"msg_id": "a-new-message-id"},
        {"version": 9_999_999_999, "kdt_id": 1, "msg_id": "x", "id": "y", "status": "X"},
    ],
)
def test_youzan_envelope_fields_are_not_trusted(
    client: TestClient, publisher: FakePublisher, changes: dict[str, Any]
) -> None:
    envelope = paid_envelope()
    envelope["sign"] = youzan_sign(envelope["client_id"], envelope["msg"], SECRET)
    headers = {"Content-Type": "application/json"}
    first = client.post("/ingest/yz", content=json.dumps(envelope).encode(), headers=headers)
    assert first.status_code == 200, first.text
    replay = json.dumps({**envelope, **changes}).encode()  # the same sign: msg is unchanged
    assert client.post("/ingest/yz", content=replay, headers=headers).status_code == 200
    same_message_twice(publisher)
