"""Legacy AMQP inbound against the real RabbitMQ, with pika playing the
existing system that publishes its own JSON orders."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pika
import pytest

from canonical.envelope import H_DETAIL, H_REASON
from canonical.order import CanonicalOrder
from connectors.legacy_amqp import LegacyInbound
from connectors.mapping import FieldMapping
from infra.bus import Bus, BusOptions, Publisher
from infra.messages import Delivery
from infra.setting_specs import LegacySpec
from infra.settings import Settings
from infra.topology import Topology, build_topology, legacy_role, legacy_routing_key
from tests.integration.test_bus_rabbitmq import Consuming, wait_for
from tests.unit.test_mapping import ERP_MAPPING, ERP_ORDER

pytestmark = pytest.mark.integration


@pytest.fixture
def topology(namespace: str) -> Topology:
    return build_topology(
        Settings(
            namespace=namespace,
            broker_url="amqp://x",
            delivery_limit=3,
            legacy_inbound={"erp": LegacySpec(mapping=ERP_MAPPING)},
        )
    )


@pytest.fixture
def bus(amqp_url: str, topology: Topology) -> Bus:
    bus = Bus(amqp_url, topology, BusOptions(delivery_limit=3, confirm_timeout=5, heartbeat=10))
    bus.check()  # declares the topology, so the legacy queue exists before it publishes
    return bus


@pytest.fixture
def publisher(bus: Bus) -> Iterator[Publisher]:
    p = bus.publisher()
    yield p
    p.close()


def legacy_system_publishes(amqp_url: str, exchange: str, bodies: list[tuple[str, bytes]]) -> None:
    """What the existing system does: plain pika, persistent, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for message_id, body in bodies:
            channel.basic_publish(
                exchange=exchange,
                routing_key=legacy_routing_key("erp"),
                body=body,
                properties=pika.BasicProperties(
                    message_id=message_id or None,
                    delivery_mode=2,
                    content_type="application/json",
                ),
                mandatory=True,
            )
    finally:
        connection.close()


def test_the_systems_orders_reach_the_router_once_and_bad_ones_are_dead_letters(
    amqp_url: str, bus: Bus, topology: Topology, publisher: Publisher
) -> None:
    good = json.dumps(ERP_ORDER, ensure_ascii=False).encode("utf-8")
    no_total = json.dumps({k: v for k, v in ERP_ORDER.items() if k != "payFen"}).encode()
    legacy_system_publishes(
        amqp_url,
        topology.exchange,
        [("erp-1", good), ("erp-1", good), ("erp-2", no_total), ("erp-3", b"<order/>")],
    )
    inbound = LegacyInbound("erp", FieldMapping(ERP_MAPPING), topology, publisher)
    legacy_queue = topology.queue_for(legacy_role("erp"))
    routed: list[Delivery] = []
    dead: list[Delivery] = []
    halt, ready = threading.Event(), threading.Event()
    legacy = threading.Thread(
        target=bus.consume,
        args=([legacy_queue.name], inbound.handle_batch, halt),
        kwargs={"ready": ready},
        daemon=True,
    )
    with (
        Consuming(bus, [topology.router_queue], routed.append),
        Consuming(bus, [legacy_queue.dead_letter_queue], dead.append),
    ):
        legacy.start()
        assert ready.wait(20), "the legacy inbound did not start"
        try:
            wait_for(lambda: len(routed) == 2 and len(dead) == 2)
        finally:
            halt.set()
            legacy.join(20)
    # The same message twice (a redelivery): the same id, which the router records once.
    assert [d.message_id for d in routed] == ["erp.legacy.erp-1"] * 2
    assert routed[0].routing_key == "ingest.erp"
    order = CanonicalOrder.from_wire(routed[0].body)
    assert (order.channel, order.external_id, str(order.total)) == (
        "erp",
        "SO-2026-000123",
        "140.30",
    )
    reasons = sorted(str(d.headers[H_REASON]) for d in dead)
    assert reasons == ["malformed_json", "schema_mismatch"]
    assert any("payFen" in str(d.headers.get(H_DETAIL)) for d in dead)
    assert bus.queue_depth(legacy_queue.name) == 0
