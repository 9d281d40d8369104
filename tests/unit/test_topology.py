from __future__ import annotations

from infra.settings import Settings
from infra.topology import build_topology, topic_matches

TOPO = build_topology(Settings(namespace="t", broker_url="amqp://x", quorum_queues=True))


def test_routing_follows_the_bindings() -> None:
    assert TOPO.route("t.orders", "ingest.web-shop") == ["t.router"]
    assert TOPO.route("t.orders", "deliver.finance") == ["t.finance"]
    assert TOPO.route("t.orders", "deliver.nowhere") == []
    assert TOPO.route("t.dlx", "t.warehouse") == ["t.warehouse.dlq"]


def test_default_exchange_routes_to_the_queue_of_that_name() -> None:
    assert TOPO.route("", "t.router") == ["t.router"]
    assert TOPO.route("", "t.router.dlq") == ["t.router.dlq"]
    assert TOPO.route("", "someone-elses-queue") == []


def test_topic_wildcards() -> None:
    assert topic_matches("ingest.#", "ingest.a.b") and topic_matches("ingest.#", "ingest")
    assert topic_matches("a.*.c", "a.b.c") and not topic_matches("a.*.c", "a.b.b.c")


def test_quorum_queues_dead_letter_with_a_delivery_limit() -> None:
    args = TOPO.queue_arguments(TOPO.queue_for("warehouse"))
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-exchange"] == "t.dlx"
    assert args["x-dead-letter-routing-key"] == "t.warehouse"
    assert args["x-delivery-limit"] == 4 * TOPO.delivery_limit  # orderbus's limit comes first
    embedded = build_topology(Settings(namespace="t"))  # kombu's SQL transport
    assert not embedded.quorum and "x-queue-type" not in embedded.queue_arguments(
        embedded.queues[0]
    )
