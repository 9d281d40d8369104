"""An order read by a connector, as the message the router receives."""

from __future__ import annotations

from canonical.envelope import Envelope
from canonical.order import CanonicalOrder
from router.bus import OutgoingMessage
from router.topology import Topology, ingest_routing_key


def order_message(
    topology: Topology, channel: str, order: CanonicalOrder, message_id: str | None = None
) -> OutgoingMessage:
    """The input message for ``order``; a fresh message id unless one is given
    (a platform's delivery id, a file import's content id)."""
    envelope = Envelope.new(channel, message_id=message_id)
    return OutgoingMessage(
        exchange=topology.exchange,
        routing_key=ingest_routing_key(channel),
        body=order.to_wire(),
        message_id=envelope.message_id,
        headers=envelope.headers(),
        correlation_id=envelope.correlation_id,
    )
