"""A Douyin shop's push through orderbus running as separate OS processes on
RabbitMQ and PostgreSQL: the push is answered as Doudian requires, the order is
fetched from (a fake of) Doudian's API through its outage, and it reaches the
three systems once, however often Doudian pushes it."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import httpx
import pytest

from connectors.douyin import event_sign
from tests.doudian_fake import FakeDoudian, Served, douyin_channel_settings
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.unit.test_douyin import APP_KEY, DETAIL, ORDER_ID, SECRET, SHOP

pytestmark = pytest.mark.e2e


def test_a_douyin_push_reaches_each_system_once(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    doudian = FakeDoudian(APP_KEY, SECRET, SHOP)
    doudian.orders[ORDER_ID] = copy.deepcopy(DETAIL)
    doudian.down = 2  # Doudian's API fails the first two requests
    served = Served(doudian.handle)
    port = free_port()
    env = orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        ingest_port=str(port),
        **douyin_channel_settings(APP_KEY, SECRET, SHOP, served.url),
        warehouse_url=downstream.sink.url("warehouse"),
        finance_url=downstream.sink.url("finance"),
        notification_url=downstream.sink.url("notification"),
    )
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest"], tmp_path / "ingest.log").start(),
    ]
    try:
        procs[1].wait_http(f"http://127.0.0.1:{port}/healthz")
        body = json.dumps(
            [{"tag": "101", "msg_id": "m-e2e-1", "data": json.dumps({"p_id": int(ORDER_ID)})}]
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "event-sign": event_sign(APP_KEY, body, SECRET),
        }
        with httpx.Client(timeout=30) as client:
            for _ in range(3):  # Doudian pushes it three times
                answer = client.post(
                    f"http://127.0.0.1:{port}/ingest/dy", content=body, headers=headers
                )
                assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "success"}
        sink = downstream.sink
        wait_for(
            lambda: all(
                len(sink.received(t)) == 1 for t in ("warehouse", "finance", "notification")
            ),
            what="the order at the three systems",
        )
        time.sleep(3.0)  # what a second effect would need to arrive
        for target in ("warehouse", "finance", "notification"):
            assert set(sink.effects(target).values()) == {1}, (target, sink.effects(target))
        delivered = sink.received("warehouse")[0].body
        assert (delivered["external_id"], delivered["total"], delivered["channel"]) == (
            ORDER_ID,
            "117.70",
            "dy",
        )
        assert doudian.down == 0  # the outage was lived through
    finally:
        exits = [p.terminate() for p in procs]
        served.stop()
    for code, _ in exits:
        assert code == 0, [p.output() for p in procs]
