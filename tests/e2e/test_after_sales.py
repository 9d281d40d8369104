"""After-sales through orderbus as separate OS processes on RabbitMQ and
PostgreSQL: an order paid, then cancelled before shipment, makes the
warehouse get exactly one intercept and finance exactly one reversal;
another, partially refunded after delivery, makes finance get one refund for
the right line and amount; replaying every event changes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess
from tests.e2e.test_end_to_end import send, settings_env, wait_for
from tests.factories import order_dict

pytestmark = pytest.mark.e2e


def _documents(downstream: Downstream, target: str, kind: str) -> list[Any]:
    return [r for r in downstream.sink.received(target) if r.document == kind]


def test_a_cancel_and_a_partial_refund_reach_the_warehouse_and_finance_once(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    env = settings_env(
        downstream, broker_url=amqp_url, database_url=postgres_url, namespace=namespace
    )
    ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/web-shop"
    procs = [
        OrderbusProcess(env, ["router", "consumers"], tmp_path / "core.log").start(),
        OrderbusProcess(env, ["ingest"], tmp_path / "edge.log").start(),
    ]
    sink = downstream.sink
    try:
        procs[1].wait_http(ingest.rsplit("/ingest", 1)[0] + "/healthz")
        cancelled = order_dict(external_id="AS-CANCEL", status="cancelled", version=2)
        refund = {
            "id": "RF-2026-1",
            "kind": "refund",
            "status": "agreed",
            "lines": [{"sku": "SKU-A", "quantity": 1, "amount": "9.50"}],
            "amount": "9.50",
        }
        refunded = order_dict(
            external_id="AS-REFUND", status="delivered", version=4, after_sales=[refund]
        )
        with httpx.Client(timeout=30) as client:

            def post(data: dict[str, Any]) -> None:
                assert send(client, ingest, data).status_code == 202

            post(order_dict(external_id="AS-CANCEL", status="paid"))
            for version, status in enumerate(("paid", "shipped", "delivered"), start=1):
                post(order_dict(external_id="AS-REFUND", status=status, version=version))
                told = version + 1  # in order, as the channel would have sent them
                wait_for(
                    lambda: len(sink.received("notification")) == told,  # noqa: B023
                    what=f"AS-REFUND version {version}",
                )
            post(cancelled)
            post(refunded)
            wait_for(
                lambda: (
                    len(_documents(downstream, "warehouse", "intercept")) == 1
                    and len(_documents(downstream, "finance", "reversal")) == 1
                    and len(_documents(downstream, "finance", "refund")) == 1
                ),
                what="the intercept, the reversal and the refund",
            )
            # every event again (a webhook retried), and a later revision of each
            for data in (cancelled, refunded):
                post(data)
            post({**cancelled, "version": 3, "note": "已取消"})
            post({**refunded, "version": 5, "note": "部分退款"})
            wait_for(lambda: len(sink.received("notification")) == 8, what="the later revisions")
            time.sleep(3.0)  # what a second document would need to arrive

        [intercept] = _documents(downstream, "warehouse", "intercept")
        [reversal] = _documents(downstream, "finance", "reversal")
        assert intercept.body["external_id"] == reversal.body["external_id"] == "AS-CANCEL"
        assert intercept.after_sale == reversal.after_sale == "status-cancel"
        [money] = _documents(downstream, "finance", "refund")
        assert (money.body["external_id"], money.after_sale) == ("AS-REFUND", "RF-2026-1")
        [sale] = [s for s in money.body["after_sales"] if s["id"] == "RF-2026-1"]
        assert (sale["lines"], sale["amount"]) == ([refund["lines"][0]], "9.50")
        # nothing else reached them about either after-sale, and nothing twice
        assert [r.document for r in sink.received("warehouse")] == ["", "", "intercept"]
        # four revisions before, one after (AS-REFUND's note), and the two documents
        assert sorted(r.document for r in sink.received("finance")) == [
            "", "", "", "", "", "refund", "reversal",
        ]  # fmt: skip
        for target in ("warehouse", "finance", "notification"):
            assert set(sink.effects(target).values()) == {1}, (target, sink.effects(target))
    finally:
        exits = [p.terminate() for p in procs]
    for code, _ in exits:
        assert code == 0, [p.output() for p in procs]
