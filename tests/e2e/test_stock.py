"""Stock back to the channels, end to end: orderbus as separate processes on
RabbitMQ and PostgreSQL; the warehouse posts a level for a bundle's
component (then publishes one by queue); three channels' stock APIs (fakes)
get the bundle's quantity with their share applied, once per change; a level
counted earlier and sent late is ignored."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pika
import pytest

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.factories import signed_headers

pytestmark = pytest.mark.e2e
WMS = "wms-e2e-stock-signing-secret"
TOKEN = "e2e-stock-admin-token-0123456789"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_a_bundle_components_level_reaches_three_channels_once_per_change(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    sink = downstream.sink
    env = orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        ingest_port=str(free_port()),
        admin_port=str(free_port()),
        admin_tokens={"root": TOKEN},
        shipment_secrets=[WMS],
        warehouse_url=sink.url("warehouse"),
        finance_url=sink.url("finance"),
        notification_url=sink.url("notification"),
        stock={
            "interval": 0.5,
            "channels": {
                "taobao": {"url": sink.url("tb")},
                "jd": {"url": sink.url("jd"), "ratio": 0.5},
                "douyin": {"url": sink.url("dy"), "safety": 1},
            },
        },
    )
    edge = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}"
    admin = f"http://127.0.0.1:{env['ORDERBUS_ADMIN_PORT']}"
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest", "admin"], tmp_path / "edge.log").start(),
    ]
    try:
        procs[1].wait_http(edge + "/healthz")
        procs[1].wait_http(admin + "/healthz")
        with httpx.Client(timeout=30) as client:
            bundle = {
                "platform_sku": "TEA-SET",
                "components": [{"sku": "TEA"}, {"sku": "CUP", "quantity": 2}],
            }
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert client.put(f"{admin}/mappings/products", json=bundle, headers=auth).is_success

            def report(cups: int, at: datetime) -> None:
                levels = [{"sku": "TEA", "available": 50, "as_of": T0.isoformat()},
                          {"sku": "CUP", "available": cups, "as_of": at.isoformat()}]  # fmt: skip
                body = json.dumps({"levels": levels}).encode()
                answer = client.post(
                    f"{edge}/stock", content=body, headers=signed_headers(WMS, body)
                )
                assert answer.status_code == 202, answer.text

            def told(channel: str) -> list[int]:
                return [
                    r.body["quantity"] for r in sink.received(channel) if r.body["sku"] == "TEA-SET"
                ]

            report(20, T0)  # the set: min(50, 20 // 2) = 10
            wait_for(lambda: all(told(c) for c in ("tb", "jd", "dy")), what="three channels told")
            report(2, T0 - timedelta(minutes=10))  # counted earlier, sent late
            report(20, T0)  # the same again
            time.sleep(3.0)  # what a second push would need to arrive
            assert (told("tb"), told("jd"), told("dy")) == ([10], [5], [9])
            report(6, T0 + timedelta(minutes=1))  # a real change: 3 sets
            wait_for(lambda: len(told("dy")) == 2, what="the change")
            time.sleep(1.5)
            assert (told("tb"), told("jd"), told("dy")) == ([10, 3], [5, 1], [9, 2])
            # the same report by queue, as a warehouse system may publish it
            level = {
                "sku": "CUP",
                "available": 10,
                "as_of": (T0 + timedelta(minutes=2)).isoformat(),
            }
            connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.basic_publish(
                    f"{namespace}.orders",
                    "stock.report",
                    json.dumps({"levels": [level]}).encode(),
                    pika.BasicProperties(content_type="application/json", delivery_mode=2),
                    mandatory=True,
                )
            finally:
                connection.close()
            wait_for(lambda: len(told("dy")) == 3, what="the level by queue")
            assert (told("tb")[-1], told("jd")[-1], told("dy")[-1]) == (5, 2, 4)
    finally:
        exits = [p.terminate() for p in procs]
    assert [code for code, _ in exits] == [0, 0], [p.output() for p in procs]
