"""Defect 5 of the security review: the platforms' signature headers were
stored with each refused request and shown by the admin API; with a captured
body, that is what a replay needs. Every signature header a connector's
requests carry is redacted in the record."""

from __future__ import annotations

from sqlalchemy import Engine, select

from connectors.registry import CONNECTORS
from connectors.rejections import record_rejection
from infra.tables import rejected_requests

BODY = b'{"client_id": "app-1", "msg": "x", "type": "trade_TradePaid", "id": 1}'
SECRET = "a-long-enough-channel-secret"


def test_every_connectors_signature_header_is_redacted(sqlite_engine: Engine) -> None:
    signed = 0
    for name, connector in sorted(CONNECTORS.items()):
        headers, body = connector.sign(BODY, SECRET, 1764000000.0)
        record_rejection(
            sqlite_engine,
            channel=name,
            status_code=401,
            reason="bad_signature",
            detail="test",
            headers=headers,
            body=body,
            body_size=len(body),
            remote_addr=None,
        )
        with sqlite_engine.connect() as conn:
            stored = conn.execute(
                select(rejected_requests.c.headers).where(rejected_requests.c.channel == name)
            ).scalar_one()
        for header, value in headers.items():
            if any(word in header.lower() for word in ("sign", "hmac", "token")):
                signed += 1
                assert stored[header] == "<redacted>", (name, header)
                assert value not in str(stored)
    assert signed >= 4  # generic, Shopify, WooCommerce, Douyin sign in headers


def test_a_record_stored_before_the_redaction_is_redacted_when_read(
    sqlite_engine: Engine,
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import insert

    from admin_api.app import create_admin_app
    from admin_api.auth import KeyAuth
    from canonical.envelope import utcnow
    from infra.settings import Settings
    from infra.topology import build_topology

    with sqlite_engine.begin() as conn:
        conn.execute(
            insert(rejected_requests).values(
                channel="shop-us",
                status_code=401,
                reason="bad_signature",
                detail="old record",
                headers={"X-Shopify-Hmac-SHA256": "c2lnbmF0dXJl", "X-Shopify-Topic": "orders/paid"},
                body_excerpt="{}",
                body_size=2,
                received_at=utcnow(),
            )
        )
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {"root": "root-token"}),
        build_topology(Settings(namespace="t")),
    )
    with TestClient(app) as client:
        answer = client.get("/rejected-requests", headers={"Authorization": "Bearer root-token"})
    assert answer.status_code == 200
    (item,) = answer.json()["items"]
    assert item["headers"]["X-Shopify-Hmac-SHA256"] == "<redacted>"
    assert item["headers"]["X-Shopify-Topic"] == "orders/paid"
