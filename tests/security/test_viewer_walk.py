"""Defect 4 of the security review: a viewer key read personal data on several
endpoints and in several representations. Here a viewer walks every GET
endpoint of the admin API (from its OpenAPI document, so a new endpoint is
walked too) over data holding a buyer's phone, e-mail, name and street as
JSON, as text cut short, URL-encoded, as a store's CSV row, in an audit diff,
in an operator's note, and finds none of them. An operator still does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_DETAIL, H_REASON, H_SOURCE_QUEUE
from canonical.order import CanonicalOrder
from connectors.rejections import record_rejection
from infra.messages import H_ORIGINAL_ROUTING_KEY
from infra.settings import Settings
from infra.tables import dead_letters, holds, notifications, orders
from infra.topology import build_topology
from router.approval import HoldRules
from router.service import RouterService
from tests.factories import body_of, delivery_for, failure_delivery, order_dict

ROOT = {"Authorization": "Bearer root-token"}
PHONE, EMAIL = "13912345678", "zhang.private@mail.example.cn"
NAME, STREET = "Zhang Weisecret", "Xuhui Road 88 Secretlane"
ABROAD = {
    "BuyerName": "Jane Hiddenname",
    "AddressLine1": "1 Hidden Lane",
    "Phone": "+44 20 7946 0958",
}
SECRETS = [PHONE, EMAIL, "zhang.private", NAME, "Weisecret", STREET, "Secretlane",
           "Hiddenname", "Hidden Lane", "7946 0958", "20 7946"]  # fmt: skip
TODAY = datetime.now(UTC).date().isoformat()


def personal_order(external_id: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "external_id": external_id,
        "customer": {"name": NAME, "phone": PHONE, "email": EMAIL},
        "shipping_address": {"street": STREET},
        "placed_at": datetime.now(UTC).isoformat(),
    }
    return order_dict(**(fields | changes))


def seed(engine: Engine, client: TestClient) -> dict[str, list[Any]]:
    topology = build_topology(Settings(namespace="t"))
    router = RouterService(engine, topology, hold_rules=HoldRules(first_order=True))
    first = CanonicalOrder.model_validate(personal_order("WS-1"))
    router.handle(delivery_for(first, message_id="web-shop.ws-1"))
    second = CanonicalOrder.model_validate(personal_order("WS-2"))  # the first one is held
    router.handle(delivery_for(second, message_id="web-shop.ws-2"))
    # refused by the router: the canonical order, and a detail quoting the phone
    refused = failure_delivery(body=body_of(personal_order("WS-3")), message_id="web-shop.ws-3")
    refused.headers.update(
        {
            H_REASON: "validation_failed",
            H_DETAIL: f"customer.phone: {PHONE!r} is not valid; write to {EMAIL}",
            H_SOURCE_QUEUE: "t.router",
            H_ORIGINAL_ROUTING_KEY: "ingest.web-shop",
        }
    )
    DeadLetterRecorder(engine).handle(refused)
    # a delivery refused, its body not JSON
    text = failure_delivery(body=f"{NAME},{PHONE},{STREET}".encode(), message_id="m-text")
    DeadLetterRecorder(engine).handle(text)
    # refused webhooks: JSON cut short, URL-encoded Youzan msg, a store's CSV row
    long_json = json.dumps({"ShippingAddress": ABROAD, "pad": "x" * 5000})
    msg = quote(json.dumps({"receiver_name": NAME, "receiver_mobile": PHONE}))
    for channel, body, detail in (
        ("amazon", long_json, f"no order for {ABROAD['BuyerName']} ({ABROAD['Phone']})"),
        ("youzan", f"msg={msg}&sign=abcdef0123456789&client_id=app", f"{NAME}: no tid"),
        ("store-1", f"WS-9,{NAME},{PHONE},{STREET},TEA,1,10.00", f"phone {PHONE}: too long"),
    ):
        record_rejection(
            engine,
            channel=channel,
            status_code=422,
            reason="schema_mismatch",
            detail=detail,
            headers={"user-agent": "platform", "x-buyer": PHONE},
            body=body.encode(),
            body_size=len(body),
            remote_addr=None,
        )
    # an operator's edit of the router's dead letter, and a note on the hold
    with engine.connect() as conn:
        letter_id = conn.scalar(
            select(dead_letters.c.id).where(dead_letters.c.message_id == "web-shop.ws-3")
        )
        hold_id = conn.scalar(select(holds.c.id))
        numbers = list(conn.scalars(select(orders.c.order_number)))
    edit = personal_order("WS-3")
    edit["customer"]["phone"] = "13912345670"
    answer = client.post(
        f"/dead-letters/{letter_id}/edit-and-retry",
        json={"body": json.dumps(edit), "reason": f"the buyer {NAME} gave {PHONE} by phone"},
        headers=ROOT,
    )
    assert answer.status_code == 202, answer.text
    noted = client.post(
        f"/holds/{hold_id}/reject", json={"note": f"called {PHONE}, {NAME} cancelled"}, headers=ROOT
    )
    assert noted.status_code == 204, noted.text
    with engine.begin() as conn:
        conn.execute(
            insert(notifications).values(
                message_id="n-1",
                medium="email",
                order_number=numbers[0],
                event="paid",
                language="en",
                recipient="z***@mail.example.cn",
                subject=f"{NAME}, your order",
                body=f"Dear {NAME}, we ship to {STREET}. Questions? {PHONE}",
                sent_at=datetime.now(UTC),
            )
        )
        letters = list(conn.scalars(select(dead_letters.c.id)))
    return {"number": numbers, "dead_letter_id": letters}


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


def get_paths(client: TestClient) -> list[str]:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    return sorted(p for p, ops in spec["paths"].items() if "get" in ops)


QUERIES: dict[str, list[dict[str, str]]] = {
    "/orders": [{"number": "{number}"}, {"channel": "web-shop", "external_id": "WS-3"},
                {"phone": PHONE}],
    "/reconciliation": [{"day": TODAY}, {"day": TODAY, "format": "csv"}],
    "/dead-letters": [{}, {"cause": "invalid_order"}, {"status": "retried"}],
    "/holds": [{"status": "rejected"}, {}],
}  # fmt: skip


def responses(
    client: TestClient, key: dict[str, str], ids: dict[str, list[Any]]
) -> list[tuple[str, str]]:
    """(what was asked, the answer's text) for every GET endpoint."""
    seen = []
    for path in get_paths(client):
        if path == "/keys":
            continue  # admins only: a viewer gets 403 (checked elsewhere)
        params_list = QUERIES.get(path, [{}])
        fills: list[dict[str, Any]] = [{}]
        for name in ("number", "dead_letter_id"):
            if "{" + name + "}" in path:
                fills = [{name: value} for value in ids[name]]
        if "{job_id}" in path:
            continue  # a retry job holds a filter and counts, nothing personal
        for fill in fills:
            url = path.format(**fill)
            for params in params_list:
                query = {k: v.format(number=ids["number"][0]) for k, v in params.items()}
                answer = client.get(url, params=query, headers=key)
                assert answer.status_code == 200, (url, query, answer.text[:300])
                seen.append((f"{url} {query}", answer.text))
    return seen


def test_a_viewer_finds_no_personal_data_on_any_endpoint(
    client: TestClient, sqlite_engine: Engine
) -> None:
    ids = seed(sqlite_engine, client)
    made = client.post("/keys", json={"name": "cs-1", "role": "viewer"}, headers=ROOT)
    viewer = {"Authorization": f"Bearer {made.json()['key']}"}
    walked = responses(client, viewer, ids)
    assert len(walked) >= 15
    for asked, text in walked:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {asked}: {text[:2000]}"
    assert any("139****5678" in text for _, text in walked)  # masked, not gone
    # an operator still sees what is needed to act on it
    operator = client.post("/keys", json={"name": "ops-1", "role": "operator"}, headers=ROOT)
    ops = {"Authorization": f"Bearer {operator.json()['key']}"}
    assert any(PHONE in text for _, text in responses(client, ops, ids))


def test_text_search_is_for_operators_and_is_no_wildcard(
    client: TestClient, sqlite_engine: Engine
) -> None:
    seed(sqlite_engine, client)
    made = client.post("/keys", json={"name": "cs-2", "role": "viewer"}, headers=ROOT)
    viewer = {"Authorization": f"Bearer {made.json()['key']}"}
    assert client.get("/dead-letters", params={"q": "1391"}, headers=viewer).status_code == 403
    everything = client.get("/dead-letters", params={"q": "%"}, headers=ROOT).json()
    assert everything["total"] == 0  # % is a character, not "anything"
    # "_" is a character too: only the letter whose JSON has one, not the text one
    underscore = client.get("/dead-letters", params={"q": "_"}, headers=ROOT).json()
    assert [d["message_id"] for d in underscore["items"]] == ["web-shop.ws-3"]
    found = client.get("/dead-letters", params={"q": PHONE[:6]}, headers=ROOT).json()
    assert found["total"] >= 1
