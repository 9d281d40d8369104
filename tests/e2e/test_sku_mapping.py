"""SKU mapping through orderbus as separate OS processes on RabbitMQ and
PostgreSQL: a Douyin order with a bundle and a pack arrives and the ERP gets
our material codes and quantities, the line prices split to the fen and the
total unchanged; an order with a SKU nobody mapped is held before the
warehouse and the ERP hear of it; its mapping is added through the admin API,
the dry run lists exactly that order, and releasing it delivers it once to
each."""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.douyin import event_sign
from tests.doudian_fake import FakeDoudian, Served, douyin_channel_settings
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.unit.test_douyin import APP_KEY, DETAIL, ORDER_ID, SECRET, SHOP

pytestmark = pytest.mark.e2e
TOKEN = "e2e-mapping-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW_ORDER = "4781320682406089999"
PACK_SKU = DETAIL["sku_order_list"][1]
PACK = f"douyin-{PACK_SKU['product_id']}-{PACK_SKU['sku_id']}"  # a line with no 商家编码


def _push(client: httpx.Client, port: int, order_id: str, msg_id: str) -> None:
    body = json.dumps(
        [{"tag": "101", "msg_id": msg_id, "data": json.dumps({"p_id": int(order_id)})}]
    ).encode()
    headers = {"Content-Type": "application/json", "event-sign": event_sign(APP_KEY, body, SECRET)}
    answer = client.post(f"http://127.0.0.1:{port}/ingest/dy", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def _lines(body: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(i["sku"], i["quantity"], i["platform_sku"]) for i in body["items"]]


def test_mapped_codes_reach_the_erp_and_an_unmapped_sku_waits_for_its_mapping(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    doudian = FakeDoudian(APP_KEY, SECRET, SHOP)
    doudian.orders[ORDER_ID] = copy.deepcopy(DETAIL)
    unknown = copy.deepcopy(DETAIL)
    unknown["order_id"] = NEW_ORDER
    unknown["sku_order_list"][0]["code"] = "DY-NEW-HAT"
    doudian.orders[NEW_ORDER] = unknown
    served = Served(doudian.handle)
    ingest_port, admin_port = free_port(), free_port()
    env = orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        ingest_port=str(ingest_port),
        admin_port=str(admin_port),
        admin_tokens={"root": TOKEN},
        sku_mapping={"required": ["dy"]},
        **douyin_channel_settings(APP_KEY, SECRET, SHOP, served.url),
        warehouse_url=downstream.sink.url("warehouse"),
        finance_url=downstream.sink.url("finance"),
        notification_url=downstream.sink.url("notification"),
    )
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest", "admin"], tmp_path / "edge.log").start(),
    ]
    admin = f"http://127.0.0.1:{admin_port}"
    sink = downstream.sink
    try:
        procs[1].wait_http(f"http://127.0.0.1:{ingest_port}/healthz")
        procs[1].wait_http(f"{admin}/healthz")
        with httpx.Client(timeout=30) as client:
            bundle = {
                "channel": "dy",
                "platform_sku": "DY-TSHIRT-M",
                "components": [{"sku": "TSHIRT", "share": 4}, {"sku": "GIFT-BAG"}],
            }
            pack = {"platform_sku": PACK, "components": [{"sku": "SOCKS", "quantity": 3}]}
            for mapping in (bundle, pack):
                assert client.put(
                    f"{admin}/mappings/products", json=mapping, headers=AUTH
                ).is_success
            for sku, material in (
                ("TSHIRT", "MAT-TS"), ("GIFT-BAG", "MAT-BAG"), ("SOCKS", "MAT-SO"),
            ):  # fmt: skip
                code_row = {"internal_sku": sku, "target": "finance", "code": material}
                assert client.put(f"{admin}/mappings/codes", json=code_row, headers=AUTH).is_success
            _push(client, ingest_port, ORDER_ID, "m-map-1")
            _push(client, ingest_port, NEW_ORDER, "m-map-2")
            wait_for(
                lambda: (
                    len(sink.received("finance")) == 1 and len(sink.received("notification")) == 1
                ),
                what="the mapped order at finance and notification",
            )
            finance = sink.received("finance")[0].body
            assert finance["external_id"] == ORDER_ID
            assert _lines(finance) == [
                ("MAT-TS", 2, "DY-TSHIRT-M"), ("MAT-BAG", 2, "DY-TSHIRT-M"), ("MAT-SO", 3, PACK),
            ]  # fmt: skip
            items = sum(
                Decimal(i["unit_price"]) * i["quantity"] - Decimal(i["discount"])
                for i in finance["items"]
            )
            assert items == Decimal("119.70") and finance["total"] == "117.70"
            warehouse = sink.received("warehouse")[0].body  # no warehouse codes: our SKUs
            assert _lines(warehouse) == [
                ("TSHIRT", 2, "DY-TSHIRT-M"), ("GIFT-BAG", 2, "DY-TSHIRT-M"), ("SOCKS", 3, PACK),
            ]  # fmt: skip

            def stuck() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = client.post(
                    f"{admin}/mappings/dry-run", json={}, headers=AUTH
                ).json()
                return found

            wait_for(lambda: len(stuck()) == 2, what="the unmapped order held, for two systems")
            before = stuck()
            assert {(p["target"], p["passes"]) for p in before} == {
                ("finance", False), ("warehouse", False),
            }  # fmt: skip
            assert all("DY-NEW-HAT" in p["why"] and p["dead_letter_id"] is None for p in before)
            stuck_orders = {p["order_number"] for p in before}
            assert len(stuck_orders) == 1 and len({p["hold_id"] for p in before}) == 1
            held = client.get(f"{admin}/holds", headers=AUTH).json()["items"]
            assert [(h["order_number"], h["cause"]) for h in held] == [
                (stuck_orders.pop(), "sku_not_mapped")
            ]
            stuck_orders = {p["order_number"] for p in before}
            hat = {"channel": "dy", "platform_sku": "DY-NEW-HAT", "components": [{"sku": "HAT"}]}
            assert client.put(f"{admin}/mappings/products", json=hat, headers=AUTH).is_success
            after = stuck()
            assert {p["order_number"] for p in after} == stuck_orders
            assert all(p["passes"] for p in after)
            retried = client.post(f"{admin}/mappings/retry-passing", headers=AUTH).json()
            assert retried == {"released": [before[0]["hold_id"]], "retried": []}
            wait_for(
                lambda: (
                    len(sink.received("finance")) == 2
                    and len(sink.received("warehouse")) == 2
                    and len(sink.received("notification")) == 2
                ),
                what="the released order at finance, the warehouse and notification",
            )
            time.sleep(3.0)  # what a second effect would need to arrive
            late = sink.received("finance")[1].body
            assert late["external_id"] == NEW_ORDER and late["items"][0]["sku"] == "HAT"
            for target in ("warehouse", "finance", "notification"):
                assert set(sink.effects(target).values()) == {1}, (target, sink.effects(target))
    finally:
        exits = [p.terminate() for p in procs]
        served.stop()
    for code, _ in exits:
        assert code == 0, [p.output() for p in procs]
