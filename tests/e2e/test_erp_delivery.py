"""Into the ERPs, end to end: orderbus as separate processes on RabbitMQ and
PostgreSQL, the Shopify connector's paid-order fixture sent as Shopify sends
it, and fakes of Kingdee, U8, Chanjet T+ and Jiandaoyun served over HTTP
(tests/erp_fakes.py). Each order lands once in each configured ERP with its
fields mapped; replays leave one record; tokens that expire mid-run and a
rate-limit burst are survived without loss."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.payload import hmac_sha256_base64
from router.dedup import order_number
from tests.doudian_fake import Served
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.erp_fakes import (
    CHANJET,
    KINGDEE,
    U8,
    FakeChanjet,
    FakeJiandaoyun,
    FakeKingdee,
    FakeU8,
)

pytestmark = pytest.mark.e2e

SECRET = "shpss-e2e-0123456789"
FIXTURE = json.loads(
    (Path(__file__).parents[2] / "connectors/fixtures/shopify/orders-paid.json").read_text("utf-8")
)
SKUS = {"IPOD2008GREEN", "IPOD2008RED"}


def shopify_push(client: httpx.Client, ingest: str, order_id: int, webhook_id: str) -> None:
    data = copy.deepcopy(FIXTURE["body"])
    data["id"] = order_id
    body = json.dumps(data).encode()
    headers = {
        **FIXTURE["headers"],
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Hmac-Sha256": hmac_sha256_base64(SECRET, body),
        "Content-Type": "application/json",
    }
    answer = client.post(ingest, content=body, headers=headers)
    assert answer.status_code == 202, answer.text


def env_for(namespace: str, amqp_url: str, postgres_url: str, **targets: Any) -> dict[str, str]:
    return orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        ingest_port=str(free_port()),
        channel_secrets={"shop-us": [SECRET]},
        channels={"shop-us": {"connector": "shopify", "shop": "acme"}},
        delivery_attempts="5",
        retry_initial_wait="0.05",
        retry_max_wait="0.2",
        **targets,
    )


def start_core_and_ingest(env: dict[str, str], tmp_path: Path) -> list[OrderbusProcess]:
    """orderbus as two processes: router and consumers; the ingest (ready)."""
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest"], tmp_path / "ingest.log").start(),
    ]
    procs[1].wait_http(f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/healthz")
    return procs


def test_orders_land_once_in_kingdee_u8_and_chanjet(
    amqp_url: str, postgres_url: str, namespace: str, tmp_path: Path
) -> None:
    kingdee, u8, chanjet = FakeKingdee(), FakeU8(), FakeChanjet()
    for fake in (kingdee, u8, chanjet):
        fake.known_skus = set(SKUS)
    served = {name: Served(f) for name, f in (("kd", kingdee), ("u8", u8), ("cj", chanjet))}
    env = env_for(
        namespace,
        amqp_url,
        postgres_url,
        targets={
            "warehouse": {**KINGDEE, "endpoint": served["kd"].url + "/k3cloud"},
            "finance": {**U8, "endpoint": served["u8"].url},
            "notification": {**CHANJET, "endpoint": served["cj"].url},
        },
    )
    ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/shop-us"
    procs = start_core_and_ingest(env, tmp_path)
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(3):  # Shopify retries the same webhook
                shopify_push(client, ingest, 450789469, "wh-1")
            shopify_push(client, ingest, 450789469, "wh-1-again")  # same order, new delivery
            fakes = (kingdee, u8, chanjet)
            wait_for(lambda: all(len(f.records) == 1 for f in fakes), what="one record in each")

            number = order_number("shop-us", "acme", "450789469")
            bill = kingdee.records[number]
            assert bill["FCustId"] == {"FNumber": "CUST-shop-us"}
            assert [
                (e["FMaterialId"]["FNumber"], e["FQty"], e["FTaxPrice"])
                for e in bill["FSaleOrderEntry"]
            ] == [("IPOD2008GREEN", 1, 199), ("IPOD2008RED", 1, 199)]
            voucher = u8.records[number]
            assert (voucher["custcode"], voucher["sum"]) == ("C-shop-us", 409.94)
            dto = chanjet.records[number]
            assert dto["Memo"] == "shop-us 450789469"
            assert [d["Inventory"]["Code"] for d in dto["SaleOrderDetails"]] == sorted(SKUS)

            # Mid-run: every token and session expires, and each system limits
            # the next two requests; two more orders still land, once each.
            kingdee.expire_sessions()
            u8.expire_tokens()
            chanjet.expire_tokens()
            for fake in fakes:
                fake.limited = 2
            shopify_push(client, ingest, 450789470, "wh-2")
            shopify_push(client, ingest, 450789471, "wh-3")
            wait_for(lambda: all(len(f.records) == 3 for f in fakes), what="three in each")
        assert (kingdee.logins, u8.issued, chanjet.renewals) == (2, 2, 1)
        assert {number, order_number("shop-us", "acme", "450789471")} <= set(u8.records)
    finally:
        exits = [p.terminate() for p in procs]
        for s in served.values():
            s.stop()
    assert [code for code, _ in exits] == [0, 0], [p.output() for p in procs]


def test_orders_land_once_in_jiandaoyun_and_a_template_target(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    jdy = FakeJiandaoyun()
    served = Served(jdy)
    jdy.limited = 2
    widgets = {
        "_widget_1001": "order_number",
        "_widget_1002": "customer.email",
        "_widget_1004": {"path": "total", "number": True},
        "_widget_1005": {"subform": "items", "fields": {"_widget_1006": "sku"}},
    }
    template = {
        "adapter": "template",
        "url": downstream.sink.url("finance"),
        "template": {
            "orderNo": "{{order_number}}",
            "amount": "{{total|number}}",
            "lines": {"$each": "items", "$item": {"sku": "{{sku}}", "qty": "{{quantity}}"}},
        },
    }
    env = env_for(
        namespace,
        amqp_url,
        postgres_url,
        targets={
            "warehouse": {
                "adapter": "jiandaoyun",
                "endpoint": served.url,
                "api_key": "jdy-key",
                "app_id": "app-1",
                "entry_id": "entry-orders",
                "mapping": widgets,
            },
            "finance": template,
        },
        notification_url=downstream.sink.url("notification"),
    )
    ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/shop-us"
    procs = start_core_and_ingest(env, tmp_path)
    try:
        with httpx.Client(timeout=30) as client:
            shopify_push(client, ingest, 450789469, "wh-1")
            shopify_push(client, ingest, 450789469, "wh-1")
        sink = downstream.sink
        wait_for(lambda: len(jdy.records) == 1 and len(sink.received("finance")) == 1, what="both")
        number = order_number("shop-us", "acme", "450789469")
        [record] = jdy.records.values()
        assert record["_widget_1001"] == {"value": number}
        assert record["_widget_1002"] == {"value": "bob.norman@hostmail.com"}
        assert record["_widget_1004"] == {"value": 409.94}
        assert jdy.requests == 3  # two 429s waited out
        sent = sink.received("finance")[0].body
        assert sent == {
            "orderNo": number,
            "amount": 409.94,
            "lines": [{"sku": "IPOD2008GREEN", "qty": 1}, {"sku": "IPOD2008RED", "qty": 1}],
        }
    finally:
        exits = [p.terminate() for p in procs]
        served.stop()
    assert [code for code, _ in exits] == [0, 0], [p.output() for p in procs]
