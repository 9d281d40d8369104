"""A shipment, end to end: orderbus as separate processes on RabbitMQ and
PostgreSQL; a Shopify order paid; the warehouse reports its shipment by API
(twice) and by queue (once more); the order becomes shipped, the fake Shopify
API gets one fulfillment with the tracking number, and the customer gets one
email (a real SMTP server on 127.0.0.1) whose content is checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pika
import pytest

from router.dedup import order_number
from tests.channel_fakes import FakeShopify
from tests.doudian_fake import Served
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.e2e.test_erp_delivery import SECRET, shopify_push
from tests.factories import signed_headers
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e

WMS_SECRET = "wms-e2e-signing-secret"
TOKEN = "e2e-admin"


def test_a_shipment_reaches_the_channel_and_the_customer_once(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    shopify = FakeShopify()
    shopify.add_order("450789469")
    shopify.limited = 1
    served = Served(shopify)
    with SmtpServer() as smtp:
        env = orderbus_env(
            broker_url=amqp_url,
            database_url=postgres_url,
            namespace=namespace,
            ingest_port=str(free_port()),
            admin_port=str(free_port()),
            admin_tokens={"e2e": TOKEN},
            channel_secrets={"shop-us": [SECRET]},
            channels={"shop-us": {"connector": "shopify", "shop": "acme"}},
            shipment_secrets=[WMS_SECRET],
            warehouse_url=downstream.sink.url("warehouse"),
            finance_url=downstream.sink.url("finance"),
            notification_url=downstream.sink.url("notification"),
            writeback={
                "shop-us": {
                    "kind": "shopify",
                    "shop_url": served.url,
                    "access_token": shopify.token,
                }
            },
            notify={
                "events": ["shipped"],
                "shop_name": "Acme",
                "email": {"host": "127.0.0.1", "port": smtp.port, "sender": "Acme <s@acme.test>"},
            },
            delivery_attempts="4",
            retry_initial_wait="0.05",
            retry_max_wait="0.2",
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
            number = order_number("shop-us", "acme", "450789469")
            with httpx.Client(timeout=30) as client:
                shopify_push(client, f"{edge}/ingest/shop-us", 450789469, "wh-paid")
                sink = downstream.sink
                wait_for(lambda: len(sink.received("warehouse")) == 1, what="at the warehouse")

                report = {
                    "order_number": number,
                    "carrier": "UPS",
                    "tracking_number": "1Z999AA10123456784",
                    "shipped_at": "2026-11-25T09:30:00+00:00",
                    "event_id": "wms-ship-1",
                }
                body = json.dumps(report).encode()
                for _ in range(2):  # the warehouse system retries its call
                    answer = client.post(
                        f"{edge}/shipments", content=body, headers=signed_headers(WMS_SECRET, body)
                    )
                    assert answer.status_code == 202, answer.text
                # ... and the same report arrives by queue too
                connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
                try:
                    channel = connection.channel()
                    channel.confirm_delivery()
                    channel.basic_publish(
                        f"{namespace}.orders",
                        "shipment.report",
                        body,
                        pika.BasicProperties(content_type="application/json", delivery_mode=2),
                        mandatory=True,
                    )
                finally:
                    connection.close()

                wait_for(lambda: len(shopify.fulfillments) == 1, what="the fulfillment")
                wait_for(lambda: len(smtp.messages) == 1, what="the email")
                time.sleep(3.0)  # what a second effect would need to arrive
                assert len(shopify.fulfillments) == 1 and len(smtp.messages) == 1
                [fulfillment] = shopify.fulfillments
                assert fulfillment["trackingInfo"] == {
                    "company": "UPS",
                    "number": "1Z999AA10123456784",
                }
                [mail] = smtp.messages
                assert mail["To"] == "Bob Norman <bob.norman@hostmail.com>"
                assert mail["Subject"] == "Acme: order 450789469 has shipped"
                assert mail.get_content().strip() == (
                    "Hello Bob Norman, order 450789469 is on its way: UPS, tracking number "
                    "1Z999AA10123456784."
                )

                auth = {"Authorization": f"Bearer {TOKEN}"}
                found = client.get(f"{admin}/orders/{number}", headers=auth).json()
                assert found["order"]["status"] == "shipped"
                events = [e["event"] for e in found["timeline"]]
                assert "delivered to channel" in events
                assert "customer told by email: shipped" in events
                assert events.count("status shipped") == 1
        finally:
            exits = [p.terminate() for p in procs]
            served.stop()
    assert [code for code, _ in exits] == [0, 0], [p.output() for p in procs]
