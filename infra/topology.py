"""The broker topology, declared as data. :mod:`infra.bus` turns it into kombu
objects; nothing else knows exchange or queue names.

    {ns}.orders (topic)
      ingest.<channel>      -> {ns}.router          (connectors -> router)
      deliver.warehouse     -> {ns}.warehouse       (router outbox -> consumers)
      deliver.finance       -> {ns}.finance
      deliver.notification  -> {ns}.notification
      legacy.<channel>      -> {ns}.legacy.<channel> (an existing system's own JSON orders)
      fetch.<channel>       -> {ns}.fetch.<channel>  (orders a push named, to fetch from its API)
    {ns}.dlx (direct)
      <queue name>          -> <queue name>.dlq     (one dead-letter queue per queue)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infra.settings import Settings

BROKER_LIMIT_FACTOR = 4


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[str, ...]
    dead_letter_queue: str
    role: str  # "router", a target name, or "dlq"


@dataclass(frozen=True)
class Topology:
    exchange: str
    dead_letter_exchange: str
    queues: tuple[QueueSpec, ...]
    quorum: bool
    delivery_limit: int
    dead_letter_queues: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "dead_letter_queues", tuple(q.dead_letter_queue for q in self.queues)
        )

    @property
    def router_queue(self) -> str:
        return self.queue_for("router").name

    def queue_for(self, role: str) -> QueueSpec:
        for queue in self.queues:
            if queue.role == role:
                return queue
        raise KeyError(role)

    def queue_named(self, name: str) -> QueueSpec:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    def route(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a message published now would reach (as the broker routes it)."""
        if exchange == self.exchange:
            return [
                q.name
                for q in self.queues
                if any(topic_matches(b, routing_key) for b in q.bindings)
            ]
        if exchange == self.dead_letter_exchange:
            return [q.dead_letter_queue for q in self.queues if q.name == routing_key]
        if exchange == "":  # the default exchange: straight to the queue of that name
            names = {q.name for q in self.queues} | set(self.dead_letter_queues)
            return [routing_key] if routing_key in names else []
        return []

    @property
    def broker_delivery_limit(self) -> int:
        """The broker's backstop, above orderbus's own ``delivery_limit``.

        orderbus dead-letters a message whose handling keeps failing after
        ``delivery_limit`` deliveries, with the reason. The broker's limit is
        for a message that kills its consumer process, which orderbus cannot
        catch. It is higher because every crash of a consumer (kill -9, out of
        memory, a host going away) returns its whole prefetch window, and the
        broker counts a delivery against each message in it: with the same
        limit, 20 kills of a router under load dead-lettered 25 valid orders
        (found by the fault suite).
        """
        return BROKER_LIMIT_FACTOR * self.delivery_limit

    def queue_arguments(self, queue: QueueSpec) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": queue.name,
        }
        if self.quorum:
            args.update(
                {
                    "x-queue-type": "quorum",
                    # RabbitMQ < 4.0 sets no limit: a message that kills its
                    # consumer would loop forever.
                    "x-delivery-limit": self.broker_delivery_limit,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
        return args

    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self.quorum else {}


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` is zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def ingest_routing_key(channel: str) -> str:
    return f"ingest.{channel}"


def legacy_routing_key(channel: str) -> str:
    """Where an existing system publishes its own orders for ``channel``."""
    return f"legacy.{channel}"


def legacy_role(channel: str) -> str:
    return f"legacy:{channel}"


def fetch_routing_key(channel: str) -> str:
    """Where the ingest puts the references of orders to fetch for ``channel``."""
    return f"fetch.{channel}"


def fetch_role(channel: str) -> str:
    return f"fetch:{channel}"


SHIPMENT_ROUTING_KEY = "shipment.report"
SHIPMENTS_ROLE = "shipments"
STOCK_ROUTING_KEY = "stock.report"
STOCK_ROLE = "stock"


DELIVERY_PREFIX = "deliver."


def delivery_routing_key(target: str) -> str:
    return f"{DELIVERY_PREFIX}{target}"


def is_delivery_routing_key(routing_key: str | None) -> bool:
    """Whether a message goes to one system (a delivery), by its routing key."""
    return bool(routing_key) and str(routing_key).startswith(DELIVERY_PREFIX)


def build_topology(settings: Settings, fetching_channels: Iterable[str] = ()) -> Topology:
    ns = settings.namespace
    queues = [QueueSpec(f"{ns}.router", ("ingest.#",), f"{ns}.router.dlq", "router")]
    queues += [
        QueueSpec(f"{ns}.{t}", (delivery_routing_key(t),), f"{ns}.{t}.dlq", t)
        for t in settings.active_targets()
    ]
    # Where a warehouse system may publish its shipment reports (router/shipments.py).
    queues.append(
        QueueSpec(f"{ns}.shipments", (SHIPMENT_ROUTING_KEY,), f"{ns}.shipments.dlq", SHIPMENTS_ROLE)
    )
    if settings.stock.channels:  # stock levels by queue (router/stock.py)
        queues.append(QueueSpec(f"{ns}.stock", (STOCK_ROUTING_KEY,), f"{ns}.stock.dlq", STOCK_ROLE))
    queues += [
        QueueSpec(
            f"{ns}.legacy.{channel}",
            (legacy_routing_key(channel),),
            f"{ns}.legacy.{channel}.dlq",
            legacy_role(channel),
        )
        for channel in sorted(settings.legacy_inbound)
    ]
    queues += [
        QueueSpec(
            f"{ns}.fetch.{channel}",
            (fetch_routing_key(channel),),
            f"{ns}.fetch.{channel}.dlq",
            fetch_role(channel),
        )
        for channel in sorted(fetching_channels)
    ]
    return Topology(
        exchange=f"{ns}.orders",
        dead_letter_exchange=f"{ns}.dlx",
        queues=tuple(queues),
        quorum=settings.quorum_queues and not settings.embedded_broker,
        delivery_limit=settings.delivery_limit,
    )
