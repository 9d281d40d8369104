"""A platform's return through orderbus as separate OS processes on RabbitMQ
and PostgreSQL: a Douyin order is paid and lands in Kingdee (a fake served
over HTTP) as a sales order; then Doudian pushes a refund message for it,
three times; the order is fetched again with its after-sales (/afterSale/List)
and Kingdee gets exactly one sales return (SAL_RETURNSTOCK) for the right
line and amount, under its own bill number, the warehouse one return."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import httpx
import pytest

from connectors.douyin import event_sign
from router.dedup import order_number
from targets.adapters.base import document_number
from tests.doudian_fake import FakeDoudian, Served, douyin_channel_settings
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.erp_fakes import KINGDEE, FakeKingdee
from tests.unit.test_douyin import (
    AFTER_SALES,
    APP_KEY,
    DETAIL,
    ORDER_ID,
    SECRET,
    SHIPPED_WITH_AFTER_SALE,
    SHOP,
)

pytestmark = pytest.mark.e2e

RETURN_BILL = {
    "form_id": "SAL_RETURNSTOCK",
    "model": {
        "FBillNo": "{{document_number}}",
        "FSrcBillNo": "{{order_number}}",
        "FEntity": {
            "$each": "after_sale.lines",
            "$item": {
                "FMaterialId": {"FNumber": "{{sku}}"},
                "FRealQty": "{{quantity}}",
                "FAllAmount": "{{amount|number}}",
            },
        },
    },
}


def _push(client: httpx.Client, port: int, tag: str, msg_id: str) -> None:
    data = json.dumps({"p_id": int(ORDER_ID), "shop_id": int(SHOP)})
    body = json.dumps([{"tag": tag, "msg_id": msg_id, "data": data}]).encode()
    headers = {"Content-Type": "application/json", "event-sign": event_sign(APP_KEY, body, SECRET)}
    answer = client.post(f"http://127.0.0.1:{port}/ingest/dy", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "success"}


def test_a_douyin_return_reaches_kingdee_as_one_sales_return(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    doudian = FakeDoudian(APP_KEY, SECRET, SHOP)
    doudian.orders[ORDER_ID] = copy.deepcopy(DETAIL)
    kingdee = FakeKingdee()
    kingdee.known_skus = {"DY-TSHIRT-M", "douyin-3512345678901239999-1745678901239999"}
    served, erp = Served(doudian.handle), Served(kingdee)
    port = free_port()
    env = orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        ingest_port=str(port),
        **douyin_channel_settings(APP_KEY, SECRET, SHOP, served.url),
        warehouse_url=downstream.sink.url("warehouse"),
        notification_url=downstream.sink.url("notification"),
        targets={
            "finance": {
                **KINGDEE,
                "endpoint": erp.url + "/k3cloud",
                "documents": {"return": RETURN_BILL},
            }
        },
    )
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest"], tmp_path / "ingest.log").start(),
    ]
    sink = downstream.sink
    number = order_number("dy", SHOP, ORDER_ID)
    bill = document_number(number, "return", "7260000000000000001")
    try:
        procs[1].wait_http(f"http://127.0.0.1:{port}/healthz")
        with httpx.Client(timeout=30) as client:
            _push(client, port, "101", "m-paid")
            wait_for(lambda: number in kingdee.records, what="the sales order in Kingdee")
            # Shipped, then returned: Doudian's order now shows the after-sale.
            doudian.orders[ORDER_ID] = copy.deepcopy(SHIPPED_WITH_AFTER_SALE)
            doudian.after_sales[ORDER_ID] = copy.deepcopy(AFTER_SALES)
            for _ in range(3):  # Doudian pushes the refund message three times
                _push(client, port, "206", "m-refund-1")
            wait_for(lambda: bill in kingdee.records, what="the sales return in Kingdee")
            wait_for(
                lambda: any(r.document == "return" for r in sink.received("warehouse")),
                what="the return at the warehouse",
            )
            time.sleep(3.0)  # what a second document would need to arrive
        assert kingdee.kinds == {number: "SAL_SaleOrder", bill: "SAL_RETURNSTOCK"}
        assert kingdee.records[bill]["FSrcBillNo"] == number
        assert kingdee.records[bill]["FEntity"] == [
            {"FMaterialId": {"FNumber": "DY-TSHIRT-M"}, "FRealQty": 1, "FAllAmount": 49.9}
        ]
        assert kingdee.count("Save.common.kdsvc") == 2  # one order, one return: no repeat
        returns = [r for r in sink.received("warehouse") if r.document == "return"]
        assert len(returns) == 1 and returns[0].body["after_sales"][0]["kind"] == "return"
        assert "afterSale.List" in doudian.calls
    finally:
        exits = [p.terminate() for p in procs]
        served.stop()
        erp.stop()
    for code, _ in exits:
        assert code == 0, [p.output() for p in procs]
