"""A parcel to the door, end to end: orderbus as separate processes on
RabbitMQ and PostgreSQL; an order paid and shipped; 快递100 pushes the
carrier's events (signed, one of them twice): the order shows the parcel on
its way, an exception emails the customer exactly once (a real SMTP server
on 127.0.0.1), and the signed-for event makes the order delivered."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.kuaidi100 import push_sign
from router.dedup import order_number
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import SECRET, send, wait_for
from tests.factories import order_dict, signed_headers
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
WMS_SECRET = "wms-e2e-tracking-secret"
SALT = "kuaidi100-e2e-salt"
TOKEN = "e2e-tracking-admin"
NUMBER = "SF1234567890"


def _push(client: httpx.Client, edge: str, state: str, events: list[tuple[str, str]]) -> None:
    result = {
        "state": state, "ischeck": "1" if state == "3" else "0", "com": "shunfeng", "nu": NUMBER,
        "data": [{"context": text, "time": at, "ftime": at} for at, text in events],
    }  # fmt: skip
    param = json.dumps({"status": "polling", "message": "", "lastResult": result})
    answer = client.post(
        f"{edge}/tracking/kuaidi100", data={"param": param, "sign": push_sign(param, SALT)}
    )
    assert answer.json() == {"result": True, "returnCode": "200", "message": "成功"}, answer.text


def test_a_parcel_is_tracked_to_the_door_and_a_problem_told_once(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    with SmtpServer() as smtp:
        env = orderbus_env(
            broker_url=amqp_url,
            database_url=postgres_url,
            namespace=namespace,
            ingest_port=str(free_port()),
            admin_port=str(free_port()),
            admin_tokens={"e2e": TOKEN},
            channel_secrets={"web-shop": [SECRET]},
            shipment_secrets=[WMS_SECRET],
            tracking={"kuaidi100": {"salt": SALT}},
            warehouse_url=downstream.sink.url("warehouse"),
            finance_url=downstream.sink.url("finance"),
            notification_url=downstream.sink.url("notification"),
            notify={
                "events": ["parcel_problem"],
                "shop_name": "小店",
                "email": {"host": "127.0.0.1", "port": smtp.port, "sender": "小店 <s@shop.test>"},
            },
        )
        edge = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}"
        admin = f"http://127.0.0.1:{env['ORDERBUS_ADMIN_PORT']}"
        procs = [
            OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
            OrderbusProcess(env, ["ingest", "admin"], tmp_path / "edge.log").start(),
        ]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        try:
            procs[1].wait_http(edge + "/healthz")
            procs[1].wait_http(admin + "/healthz")
            number = order_number("web-shop", "main", "TRACK-1")
            with httpx.Client(timeout=30) as client:

                def order() -> dict[str, Any]:
                    found: dict[str, Any] = client.get(
                        f"{admin}/orders/{number}", headers=auth
                    ).json()
                    current: dict[str, Any] = found["order"]
                    return current

                ingest = f"{edge}/ingest/web-shop"
                assert send(client, ingest, order_dict(external_id="TRACK-1")).status_code == 202
                sink = downstream.sink
                wait_for(lambda: len(sink.received("warehouse")) == 1, what="at the warehouse")
                report = json.dumps(
                    {"order_number": number, "carrier": "顺丰速运", "tracking_number": NUMBER,
                     "shipped_at": "2026-11-12T09:30:00+08:00", "event_id": "wms-1"}
                ).encode()  # fmt: skip
                answer = client.post(
                    f"{edge}/shipments", content=report, headers=signed_headers(WMS_SECRET, report)
                )
                assert answer.status_code == 202, answer.text
                wait_for(lambda: order()["status"] == "shipped", what="shipped")

                _push(client, edge, "0", [("2026-11-12 18:00:00", "【深圳】已揽收")])
                wait_for(
                    lambda: (order().get("tracking") or {}).get("state") == "in_transit",
                    what="in transit",
                )
                problem = [("2026-11-13 11:00:00", "【武汉】快件异常，联系不上收件人")]
                for _ in range(2):  # Kuaidi100 pushes it again
                    _push(client, edge, "2", problem)
                _push(
                    client, edge, "2", [("2026-11-13 15:00:00", "【武汉】再次派送失败"), *problem]
                )
                wait_for(lambda: len(smtp.messages) == 1, what="the email")
                _push(client, edge, "3", [("2026-11-14 10:00:00", "【武汉】已签收")])
                wait_for(lambda: order()["status"] == "delivered", what="delivered")
                time.sleep(3.0)  # what a second email would need to arrive
                assert len(smtp.messages) == 1
                [mail] = smtp.messages
                assert mail["Subject"] == "小店：订单 TRACK-1 的包裹需要关注"
                assert NUMBER in mail.get_content()
                final = order()
                assert final["tracking"]["state"] == "delivered"
                assert [e["description"] for e in final["tracking"]["events"]] == [
                    "【武汉】已签收", "【武汉】再次派送失败", "【武汉】快件异常，联系不上收件人",
                    "【深圳】已揽收",
                ]  # fmt: skip
                # the systems heard of the shipment and of the delivery, not of each event
                assert len(sink.received("finance")) == 3  # paid, shipped, delivered
        finally:
            exits = [p.terminate() for p in procs]
    assert [code for code, _ in exits] == [0, 0], [p.output() for p in procs]
