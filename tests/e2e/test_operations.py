"""Operations end to end, as separate processes on RabbitMQ and PostgreSQL:
orders from three channels, one held for approval, one refused, one
dead-lettered at finance and retried; each shows in its timeline, and the
day's reconciliation balances with nothing unexplained."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess
from tests.e2e.test_end_to_end import AUTH, send, settings_env, wait_for
from tests.factories import order_dict

pytestmark = pytest.mark.e2e

CHANNELS = ("web-shop", "mini-program", "store-sh01")


def customer(data: dict[str, Any], n: int) -> dict[str, Any]:
    data["customer"] = {**data["customer"], "phone": f"1391234560{n}"}
    return data


def big(external_id: str, channel: str) -> dict[str, Any]:
    line = {"sku": "PIANO", "name": "piano", "quantity": 1, "unit_price": "8800.00"}
    return order_dict(
        external_id=external_id,
        channel=channel,
        items=[line],
        shipping_fee="0",
        order_discount="0",
        total="8800.00",
    )


def test_three_channels_held_refused_retried_all_accounted_for(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    env = settings_env(
        downstream, broker_url=amqp_url, database_url=postgres_url, namespace=namespace
    )
    env["ORDERBUS_CHANNEL_SECRETS"] = json.dumps({c: ["e2e-channel-secret"] for c in CHANNELS})
    env["ORDERBUS_HOLD_RULES"] = '{"amount_above": {"CNY": "5000.00"}}'
    ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest"
    admin = f"http://127.0.0.1:{env['ORDERBUS_ADMIN_PORT']}"
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest", "admin"], tmp_path / "edge.log").start(),
    ]
    sink = downstream.sink
    try:
        procs[1].wait_http(admin + "/healthz")
        downstream.finance_down_for.add("MP-2")
        with httpx.Client(timeout=30) as client:
            # Different customers: the same phone, items and total from two
            # channels would be held as a suspected duplicate.
            orders = [
                customer(order_dict(external_id="WS-1", channel="web-shop"), 1),
                customer(order_dict(external_id="MP-1", channel="mini-program"), 2),
                customer(order_dict(external_id="MP-2", channel="mini-program"), 3),  # finance
                customer(order_dict(external_id="ST-1", channel="store-sh01"), 4),
                customer(big("ST-BIG", "store-sh01"), 5),  # held for approval
                order_dict(external_id="WS-BAD", channel="web-shop", total="1.00"),  # refused
            ]
            for data in orders:
                answer = send(client, f"{ingest}/{data['channel']}", data)
                assert answer.status_code == 202, answer.text

            def get(path: str, **params: Any) -> Any:
                return client.get(admin + path, params=params, headers=AUTH).json()

            wait_for(lambda: len(sink.received("warehouse")) == 4, what="four at the warehouse")
            wait_for(lambda: get("/dead-letters")["total"] == 2, what="two dead letters")
            # The finance system learns the customer; an operator retries.
            downstream.finance_down_for.clear()
            letters = {d["reason"]: d for d in get("/dead-letters")["items"]}
            retry = client.post(
                f"{admin}/dead-letters/{letters['endpoint_unavailable']['id']}/retry",
                headers=AUTH,
                json={"note": "customer opened in the ERP"},
            )
            assert retry.status_code == 202
            wait_for(lambda: len(sink.received("finance")) == 4, what="the retried delivery")

            def story(channel: str, external_id: str) -> list[str]:
                found = get("/orders", channel=channel, external_id=external_id)
                if not found["orders"]:
                    return [e["event"] for e in found["unrouted"]["timeline"]]
                number = found["orders"][0]["order_number"]
                return [e["event"] for e in get(f"/orders/{number}")["timeline"]]

            held = story("store-sh01", "ST-BIG")
            assert "routed: held" in held and "held" in held
            assert not any(e.startswith("delivered") for e in held)
            retried = story("mini-program", "MP-2")
            assert "dead letter retried" in retried and "delivered to finance" in retried
            refused = story("web-shop", "WS-BAD")
            router_queue = letters["validation_failed"]["queue"]
            assert refused == [f"dead letter in {router_queue}: validation_failed"]
            assert "delivered to warehouse" in story("web-shop", "WS-1")

            day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
            wait_for(
                lambda: get("/reconciliation", day=day)["counts"]["in_flight"] == 0,
                what="nothing in flight",
            )
            summary = get("/reconciliation", day=day)
            assert summary["counts"] == {
                "received": 6,
                "delivered": 4,
                "rejected": 1,
                "held": 1,
                "dead_lettered": 0,
                "in_flight": 0,
                "unexplained": 0,
            }
            assert summary["balanced"] is True and summary["unexplained"] == []
    finally:
        exits = [p.terminate() for p in procs]
    for code, _ in exits:
        assert code == 0, [p.output() for p in procs]
