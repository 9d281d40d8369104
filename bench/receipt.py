"""``python -m bench.receipt``: what a consumer's process spends to take a
message from RabbitMQ and settle it, apart from the work on it.

Publishes N messages shaped like the router's deliveries (a ~1.5 KB order,
the envelope's headers, a message and correlation id) to a delivery queue in
a private virtual host, then consumes them through :meth:`infra.bus.Bus.consume`
with a handler that does nothing; prints the process's CPU per message over
the consuming (receipt, hand-off to the handler's thread, the batch's ack).
Run it on two commits, one after the other: the figure moves between hours.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from bench.pipeline import private_vhost
from bench.workload import Workload
from canonical.envelope import Envelope
from infra.bus import Bus
from infra.messages import Delivery, OutgoingMessage
from infra.settings import Settings
from infra.topology import build_topology, delivery_routing_key

AMQP = os.environ.get("ORDERBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _messages(count: int, exchange: str) -> list[OutgoingMessage]:
    workload = Workload(count, duplicate_rate=0.0, invalid_rate=0.0).build()
    messages = []
    for number, m in enumerate(workload.messages):
        envelope = Envelope.new(m.channel, m.message_id).caused(
            f"{m.message_id}.warehouse",
            order_number=f"OB{number:016d}",
            order_version=1,
            target="warehouse",
        )
        messages.append(
            OutgoingMessage(
                exchange=exchange,
                routing_key=delivery_routing_key("warehouse"),
                body=m.body,
                message_id=envelope.message_id,
                headers=envelope.headers(),
                correlation_id=envelope.correlation_id,
            )
        )
    return messages


def _consume(bus: Bus, queue: str, count: int) -> tuple[float, float]:
    """CPU and wall seconds of this process while ``count`` messages are taken."""
    stop = threading.Event()
    taken = 0

    def handler(deliveries: list[Delivery]) -> list[BaseException | None]:
        nonlocal taken
        taken += len(deliveries)
        if taken >= count:
            stop.set()
        return [None] * len(deliveries)

    cpu, wall = time.process_time(), time.perf_counter()
    bus.consume([queue], handler, stop)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receipt", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    topology = build_topology(Settings(namespace="receipt"))
    queue = topology.queue_for("warehouse").name
    messages = _messages(args.messages, topology.exchange)
    size = sum(len(m.body) for m in messages) // len(messages)
    print(f"# {args.messages:,} messages of ~{size} B a round ({time.strftime('%Y-%m-%d %H:%M')})")
    with private_vhost(AMQP) as url:
        bus = Bus(url, topology)
        bus.check()  # the topology declared
        publisher = bus.publisher()
        for round_ in range(1, args.rounds + 1):
            for start in range(0, len(messages), 500):
                publisher.publish_many(messages[start : start + 500])
            cpu, wall = _consume(bus, queue, args.messages)
            print(
                f"round {round_}: {cpu / args.messages * 1e6:.1f} us CPU a message, "
                f"{args.messages / wall:,.0f} messages/s"
            )
        publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
