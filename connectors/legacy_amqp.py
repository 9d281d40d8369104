"""Legacy AMQP inbound: an existing system publishes its own JSON orders on a queue.

Each configured channel gets a queue of its own, ``{ns}.legacy.{channel}``,
bound to ``{ns}.orders`` with the routing key ``legacy.{channel}`` (the system
may also publish to the default exchange with the queue's name). Its messages
are mapped by the channel's :class:`~connectors.mapping.FieldMapping` into
canonical orders and published to the router with confirms; each is
acknowledged only after the broker confirmed the canonical order.

- A message that is not JSON, or that the mapping cannot read, is a dead
  letter with the reason (the field and the path), never dropped.
- The canonical order's message id comes from the system's ``message_id``
  (or, without one, from the body), so a message redelivered after a crash is
  recorded once by the router.
- The broker being unavailable is transient: the bus retries, then dead-letters.
"""

from __future__ import annotations

import hashlib

from connectors.base import ConnectorError
from connectors.mapping import FieldMapping
from connectors.payload import canonical_order, load_json
from connectors.publishing import as_malformed, order_message, translate_and_publish
from infra.bus import Publisher
from infra.messages import Delivery, OutgoingMessage, Results
from infra.topology import Topology


class LegacyInbound:
    def __init__(
        self, channel: str, mapping: FieldMapping, topology: Topology, publisher: Publisher
    ) -> None:
        self.channel = channel
        self.mapping = mapping
        self.topology = topology
        self.publisher = publisher

    def message_id(self, delivery: Delivery) -> str:
        key = delivery.message_id or hashlib.sha256(delivery.body).hexdigest()[:40]
        if len(self.channel) + len(key) + 8 > 100 or not key.isprintable():
            key = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
        return f"{self.channel}.legacy.{key}"

    def translate(self, delivery: Delivery) -> OutgoingMessage:
        """The canonical order's message, or MalformedMessage saying what is wrong."""
        try:
            data = load_json(delivery.body, exact_numbers=True)
            order = canonical_order(self.mapping.apply(data, self.channel))
        except ConnectorError as exc:
            raise as_malformed(exc) from exc
        return order_message(self.topology, self.channel, order, self.message_id(delivery))

    def handle_batch(self, deliveries: list[Delivery]) -> Results:
        """Bus batch handler: each message mapped, then all published with
        confirms; a message is acknowledged (None) only once its order is."""
        return translate_and_publish(deliveries, self.translate, self.publisher)
