"""The fetch worker: orders a platform's push only named, fetched from its API.

A push that names orders (Douyin's) is answered once a fetch request per order
is confirmed on ``{ns}.fetch.{channel}`` (connectors/publishing.py). This
worker consumes that queue: it asks the channel's :class:`OrderSource` for the
order, publishes the canonical order to the router with confirms, and only
then acknowledges the request.

- The canonical order's message id is ``{channel}.{delivery_id}``: a push
  redelivered, or a request redelivered after a crash, is recorded once by
  the router.
- The platform unavailable, rate-limiting or timing out is transient: the
  bus retries with backoff, then dead-letters with the reason; the broker
  unavailable likewise.
- An answer that can never become an order (the order does not exist, a
  payload the mapping cannot read, a request that is not JSON) is a dead
  letter at once, with the platform's code or the field named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from canonical.errors import MalformedMessage
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, OrderReference
from connectors.publishing import as_malformed, order_message, scoped_id, translate_and_publish
from infra.bus import Publisher
from infra.messages import Delivery, OutgoingMessage, Results
from infra.topology import Topology


class OrderSource(Protocol):
    """Where the fetch worker gets an order. A source may also have
    ``fetch_raw`` (the order and the platform's answer, kept beside it) and
    ``read_fetched`` (a kept answer read again with no call: the replay)."""

    def fetch(self, reference: OrderReference) -> CanonicalOrder:
        """The order, or ConnectorError (never an order) or TransientError (try again)."""


def reference_of(delivery: Delivery) -> OrderReference:
    try:
        data = json.loads(delivery.body)
        return OrderReference(
            external_id=str(data["external_id"]),
            delivery_id=str(data["delivery_id"]),
            shop=data.get("shop"),
            version=data.get("version"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedMessage(f"not a fetch request: {exc!r}") from exc


KeepRaw = Callable[[str, bytes], None]  # (message id, the platform's answer)


class FetchInbound:
    def __init__(
        self,
        channel: str,
        source: OrderSource,
        topology: Topology,
        publisher: Publisher,
        keep_raw: KeepRaw | None = None,
    ) -> None:
        self.channel = channel
        self.source = source
        self.topology = topology
        self.publisher = publisher
        # the fetched answer kept beside the order (infra/raw_payloads.py), where
        # the source gives it (fetch_raw)
        self.keep_raw = keep_raw

    def translate(self, delivery: Delivery) -> OutgoingMessage:
        """The fetched order's message; MalformedMessage or TransientError."""
        reference = reference_of(delivery)
        fetch_raw = getattr(self.source, "fetch_raw", None)
        raw: Any = None
        try:
            if fetch_raw is not None and self.keep_raw is not None:
                order, raw = fetch_raw(reference)
            else:
                order = self.source.fetch(reference)
        except ConnectorError as exc:
            raise as_malformed(exc, f"order {reference.external_id}: ") from exc
        message_id = scoped_id(self.channel, "", reference.delivery_id)
        message = order_message(self.topology, self.channel, order, message_id)
        if raw is not None and self.keep_raw is not None:
            body = json.dumps(raw, ensure_ascii=False, default=str).encode("utf-8")
            self.keep_raw(message.message_id, body)
        return message

    def handle_batch(self, deliveries: list[Delivery]) -> Results:
        """Bus batch handler: each order fetched, then all published with
        confirms; a request is acknowledged (None) only once its order is."""
        return translate_and_publish(deliveries, self.translate, self.publisher)
