"""A revision orderbus made of an order it has (a warehouse's shipment, a
carrier's tracking), published as an input of the order's channel, with
publisher confirms: from there the router treats it as any other revision."""

from __future__ import annotations

from canonical.envelope import Envelope
from canonical.order import CanonicalOrder
from infra.bus import Publisher
from infra.messages import OutgoingMessage
from infra.topology import Topology, ingest_routing_key


def publish_revision(
    publisher: Publisher, topology: Topology, order: CanonicalOrder, message_id: str
) -> None:
    envelope = Envelope.new(order.channel, message_id=message_id)
    publisher.publish(
        OutgoingMessage(
            exchange=topology.exchange,
            routing_key=ingest_routing_key(order.channel),
            body=order.to_wire(),
            message_id=envelope.message_id,
            headers=envelope.headers(),
            correlation_id=envelope.correlation_id,
        )
    )
