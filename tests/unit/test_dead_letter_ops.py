"""Dead letters by business cause (retry a fixed cause's group; who is looking
into it), search, and edit-and-retry that validates the edit and keeps the
original and the difference."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.causes import cause_of
from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_DETAIL, H_REASON, H_SOURCE_QUEUE
from infra.messages import H_ORIGINAL_ROUTING_KEY
from infra.settings import Settings
from infra.tables import dead_letters, outbox
from infra.topology import build_topology
from tests.factories import body_of, failure_delivery, order_dict

OPS = {"Authorization": "Bearer ops-token"}


@pytest.mark.parametrize(
    ("reason", "detail", "cause"),
    [
        (
            "delivery_rejected",
            "finance rejected the order with 422: unknown SKU X-1",
            "sku_not_mapped",
        ),
        ("delivery_rejected", "warehouse rejected: 收货地址不完整", "bad_address"),
        ("delivery_rejected", "ERP answered 401: token expired", "token_expired"),
        (
            "delivery_rejected",
            "finance rejected the order with 422: customer unknown",
            "erp_rejected",
        ),
        ("endpoint_unavailable", "gave up after 5 attempts: 503", "endpoint_down"),
        ("validation_failed", "total: line totals ... but the order says 1.00", "invalid_order"),
        ("malformed_json", "body is not valid JSON", "unreadable_input"),
    ],
)
def test_causes(reason: str, detail: str, cause: str) -> None:
    assert cause_of(reason, detail) == cause


@pytest.mark.parametrize(
    ("reason", "detail", "cause", "not_this"),
    [
        # a validation failure whose text names a SKU is an invalid order, not a
        # mapping problem (84d73a3 grouped 17 of 50 invalid orders as sku_not_mapped)
        ("validation_failed", "items[0].quantity: SKU X: quantity must be > 0",
         "invalid_order", "sku_not_mapped"),
        ("validation_failed", "shipping_address.city: 城市不能为空", "bad_address",
         "invalid_order"),
        ("validation_failed", "customer.phone: expired number 123", "invalid_order",
         "token_expired"),
        ("validation_failed", "total: not valid JSON numbers", "invalid_order", "unreadable_input"),
        ("endpoint_unavailable", "gave up: token endpoint 503, SKU service down",
         "endpoint_down", "token_expired"),
        ("delivery_rejected", "U8 OpenAPI refused the order: errcode 40001: 存货编码不存在; field "
         "items[].sku (U8 inventorycode)", "sku_not_mapped", "erp_rejected"),
        ("delivery_rejected", "Kingdee refused the order: 地址太长 (field customer.name, Kingdee "
         "FLinkMan)", "erp_rejected", "bad_address"),
        ("delivery_rejected", "Chanjet T+ refused the order: open token refused (EXSM0004 …)",
         "token_expired", "erp_rejected"),
        ("platform_refused", "Taobao taobao.trade.fullinfo.get answered code 15: 交易不存在",
         "platform_refused", "token_expired"),
        ("sku_not_mapped", "channel tb, shop s: SKU X has no mapping; address", "sku_not_mapped",
         "bad_address"),
        ("malformed_json", "body is not valid JSON near 'sku'", "unreadable_input",
         "sku_not_mapped"),
    ],
)  # fmt: skip
def test_each_cause_has_a_case_that_must_not_match_it(
    reason: str, detail: str, cause: str, not_this: str
) -> None:
    found = cause_of(reason, detail)
    assert found == cause and found != not_this


def letter(engine: Engine, message_id: str, reason: str, detail: str, body: bytes = b"{}") -> None:
    delivery = failure_delivery(body=body, message_id=message_id)
    delivery.headers.update({H_REASON: reason, H_DETAIL: detail})
    DeadLetterRecorder(engine).handle(delivery)


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    auth = KeyAuth(sqlite_engine, {"ops": "ops-token"})
    app = create_admin_app(sqlite_engine, auth, build_topology(Settings(namespace="t")))
    with TestClient(app) as c:
        yield c


def test_a_fixed_cause_is_retried_as_a_group(client: TestClient, sqlite_engine: Engine) -> None:
    for i in range(3):
        letter(sqlite_engine, f"sku-{i}", "delivery_rejected", f"422: unknown SKU TEA-{i}")
    letter(sqlite_engine, "down-1", "endpoint_unavailable", "gave up: 503")
    groups = {g["cause"]: g for g in client.get("/dead-letter-causes", headers=OPS).json()}
    assert {k: g["count"] for k, g in groups.items()} == {"sku_not_mapped": 3, "endpoint_down": 1}

    assert (
        client.put(
            "/dead-letter-causes/sku_not_mapped/investigation",
            json={"owner": "erp-team", "note": "mapping the tea SKUs"},
            headers=OPS,
        ).status_code
        == 204
    )
    groups = {g["cause"]: g for g in client.get("/dead-letter-causes", headers=OPS).json()}
    assert groups["sku_not_mapped"]["investigating"]["owner"] == "erp-team"

    dry = client.post(
        "/dead-letter-causes/sku_not_mapped/retry", json={"dry_run": True}, headers=OPS
    ).json()
    assert (dry["matched"], dry["retried"]) == (3, [])
    done = client.post(
        "/dead-letter-causes/sku_not_mapped/retry", json={"note": "SKUs mapped"}, headers=OPS
    ).json()
    assert sorted(r["message_id"] for r in done["retried"]) == ["sku-0", "sku-1", "sku-2"]
    still = client.get("/dead-letters", params={"status": "open"}, headers=OPS).json()
    assert [d["message_id"] for d in still["items"]] == ["down-1"]
    assert (
        client.delete("/dead-letter-causes/sku_not_mapped/investigation", headers=OPS).status_code
        == 204
    )
    actions = [e["action"] for e in client.get("/audit", headers=OPS).json()["items"]]
    assert actions[0] == "dead_letter_cause.close" and "dead_letter.retry_cause" in actions


def test_search(client: TestClient, sqlite_engine: Engine) -> None:
    letter(sqlite_engine, "a", "delivery_rejected", "422", body=b'{"external_id": "WS-77"}')
    letter(sqlite_engine, "b", "endpoint_unavailable", "503: gateway")

    def ids(**params: object) -> list[str]:
        items = client.get("/dead-letters", params=params, headers=OPS).json()["items"]
        return [d["message_id"] for d in items]

    assert ids(q="WS-77") == ["a"]
    assert ids(q="gateway") == ["b"]
    assert ids(cause="endpoint_down") == ["b"]
    assert ids(min_attempts=2) == []


def test_edit_and_retry_validates_and_keeps_the_original(
    client: TestClient, sqlite_engine: Engine
) -> None:
    bad = order_dict(external_id="WS-9", total="1.00")
    delivery = failure_delivery(body=body_of(bad), message_id="web-shop.ws-9")
    delivery.headers.update(  # refused by the router: its edit goes through the router again
        {
            H_REASON: "validation_failed",
            H_DETAIL: "total: ... but the order says 1.00",
            H_SOURCE_QUEUE: "t.router",
            H_ORIGINAL_ROUTING_KEY: "ingest.web-shop",
        }
    )
    DeadLetterRecorder(sqlite_engine).handle(delivery)
    letter_id = client.get("/dead-letters", headers=OPS).json()["items"][0]["id"]

    still_wrong = client.post(
        f"/dead-letters/{letter_id}/edit-and-retry",
        json={"body": json.dumps({**bad, "currency": "XYZ"}), "reason": "typo"},
        headers=OPS,
    )
    assert still_wrong.status_code == 422
    fields = {e["field"] for e in still_wrong.json()["detail"]["errors"]}
    assert "total" in fields

    fixed = {**bad, "total": "30.50"}
    answer = client.post(
        f"/dead-letters/{letter_id}/edit-and-retry",
        json={"body": json.dumps(fixed), "reason": "the shop sent the total in yuan, not fen"},
        headers=OPS,
    )
    assert answer.status_code == 202 and answer.json()["message_id"] == "web-shop.ws-9"
    with sqlite_engine.connect() as conn:
        sent = conn.execute(select(outbox.c.body, outbox.c.message_id)).one()
        kept = conn.scalar(select(dead_letters.c.body))
    assert json.loads(sent.body)["total"] == "30.50" and sent.message_id == "web-shop.ws-9"
    assert json.loads(str(kept))["total"] == "1.00"  # the original stays
    entry = client.get("/audit", headers=OPS).json()["items"][0]
    assert entry["action"] == "dead_letter.edit_and_retry"
    assert '- "total": "1.00",' in entry["detail"]["diff"]
    assert '+ "total": "30.50",' in entry["detail"]["diff"]
    assert entry["detail"]["note"] == "the shop sent the total in yuan, not fen"
