"""The straightforward pipeline: the same job as orderbus's router and
consumers, written the way one would write it first (kombu + psycopg, one
message at a time), so that ``python -m bench`` can report orderbus's figures
as a ratio to it in the same run. Benchmark code, not product code.

The job, per input message:

- **router** (``python -m bench.baseline router``): read the JSON order,
  check that its lines, shipping and discount add up to its total, insert it
  (``ON CONFLICT DO NOTHING`` on channel + shop + external id: a duplicate
  ends here), publish one persistent message to each of the three targets
  with publisher confirms, commit, then ack the input;
- **consumers** (``python -m bench.baseline consumers``): for each delivery,
  skip it if its message id is already in ``plain_deliveries``; else POST it
  to the system (the benchmark's sink, keep-alive) with its idempotency key,
  insert the delivery row, commit, ack.

An invalid order is acked and logged (no dead-letter queue: the
straightforward way). It reads ``BENCH_AMQP_URL``, ``BENCH_DATABASE_URL``
(psycopg form) and ``BENCH_SINK_URL`` from the environment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message
from kombu.messaging import Consumer, Producer

TARGETS = ("warehouse", "finance", "notification")
RECEIVED_AT = "x-orderbus-received-at"

SCHEMA = """
CREATE TABLE IF NOT EXISTS plain_orders (
    id bigserial PRIMARY KEY,
    channel text NOT NULL,
    shop text NOT NULL,
    external_id text NOT NULL,
    body jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (channel, shop, external_id)
);
CREATE TABLE IF NOT EXISTS plain_deliveries (
    message_id text PRIMARY KEY,
    target text NOT NULL,
    external_id text NOT NULL,
    status integer NOT NULL,
    delivered_at timestamptz NOT NULL
);
"""


def topology(namespace: str) -> tuple[Exchange, Queue, dict[str, Queue]]:
    """The same names as orderbus's topology (the driver publishes to it)."""
    exchange = Exchange(f"{namespace}.orders", type="topic", durable=True)
    quorum = {"x-queue-type": "quorum"}
    router = Queue(f"{namespace}.router", exchange, routing_key="ingest.*", queue_arguments=quorum)
    targets = {
        t: Queue(f"{namespace}.{t}", exchange, routing_key=f"deliver.{t}", queue_arguments=quorum)
        for t in TARGETS
    }
    return exchange, router, targets


def adds_up(order: dict[str, Any]) -> bool:
    lines = sum(
        (Decimal(str(line["unit_price"])) * int(line["quantity"]) for line in order["items"]),
        Decimal("0"),
    )
    shipping = Decimal(str(order.get("shipping_fee", "0")))
    discount = Decimal(str(order.get("order_discount", "0")))
    return lines + shipping - discount == Decimal(str(order["total"]))


def run_router(amqp_url: str, database_url: str, namespace: str) -> None:
    exchange, router_queue, target_queues = topology(namespace)
    db = psycopg.connect(database_url)
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        for queue in (router_queue, *target_queues.values()):
            queue(channel).declare()
        producer = Producer(channel, exchange=exchange)  # confirms: publish waits for them

        def on_message(body: Any, message: Message) -> None:
            raw = message.body if isinstance(message.body, bytes) else message.body.encode()
            try:
                order = json.loads(raw)
                valid = adds_up(order)
            except (ValueError, KeyError, TypeError, ArithmeticError):
                valid = False
            if not valid:
                print(f"invalid order in {message.properties.get('message_id')}", file=sys.stderr)
                message.ack()
                return
            received = message.headers.get(RECEIVED_AT) or datetime.now(UTC).isoformat()
            with db.transaction():
                row = db.execute(
                    "INSERT INTO plain_orders (channel, shop, external_id, body, received_at) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                    (order["channel"], order["shop"], order["external_id"], raw.decode(),
                     received),
                ).fetchone()  # fmt: skip
                if row is not None:
                    for target in TARGETS:
                        producer.publish(
                            raw,
                            routing_key=f"deliver.{target}",
                            content_type="application/json",
                            content_encoding="binary",
                            delivery_mode=2,
                            message_id=f"{order['channel']}:{order['external_id']}:{target}",
                            headers={"target": target, "external_id": order["external_id"]},
                        )
            message.ack()

        consumer = Consumer(channel, [router_queue], callbacks=[on_message], accept=["json"])
        consumer.qos(prefetch_count=1)
        with consumer:
            while True:
                conn.drain_events()


def run_consumers(amqp_url: str, database_url: str, sink_url: str, namespace: str) -> None:
    _, _, target_queues = topology(namespace)
    db = psycopg.connect(database_url)
    sink = urlsplit(sink_url)
    sink_conn = http.client.HTTPConnection(sink.hostname or "127.0.0.1", sink.port or 80)

    def post(path: str, body: bytes, key: str) -> int:
        sink_conn.request(
            "POST", path, body, {"Content-Type": "application/json", "Idempotency-Key": key}
        )
        answer = sink_conn.getresponse()
        answer.read()
        return answer.status

    with Connection(amqp_url) as conn:
        channel = conn.channel()

        def on_message(body: Any, message: Message) -> None:
            message_id = message.properties["message_id"]
            target = message.headers["target"]
            raw = message.body if isinstance(message.body, bytes) else message.body.encode()
            with db.transaction():
                seen = db.execute(
                    "SELECT 1 FROM plain_deliveries WHERE message_id = %s", (message_id,)
                ).fetchone()
                if seen is None:
                    status = post(f"{sink.path.rstrip('/')}/{target}", raw, message_id)
                    db.execute(
                        "INSERT INTO plain_deliveries "
                        "(message_id, target, external_id, status, delivered_at) "
                        "VALUES (%s, %s, %s, %s, now()) ON CONFLICT DO NOTHING",
                        (message_id, target, message.headers["external_id"], status),
                    )
            message.ack()

        consumer = Consumer(
            channel, list(target_queues.values()), callbacks=[on_message], accept=["json"]
        )
        consumer.qos(prefetch_count=1)
        with consumer:
            while True:
                conn.drain_events()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    amqp, database = os.environ["BENCH_AMQP_URL"], os.environ["BENCH_DATABASE_URL"]
    namespace = os.environ.get("BENCH_NAMESPACE", "bench")
    if argv[:1] == ["router"]:
        run_router(amqp, database, namespace)
    elif argv[:1] == ["consumers"]:
        run_consumers(amqp, database, os.environ["BENCH_SINK_URL"], namespace)
    else:
        print("usage: python -m bench.baseline router|consumers", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
