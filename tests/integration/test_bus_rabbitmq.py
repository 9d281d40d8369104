"""The bus against the real RabbitMQ: confirms, mandatory routing, dead letters,
poison messages, reconnection."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit

import amqp
import pytest
from sqlalchemy import Engine, select

from admin_api.deadletters import DeadLetterRecorder
from canonical.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    MalformedMessage,
    PublishNotConfirmed,
)
from infra.bus import Bus, BusOptions, Publisher
from infra.messages import Delivery, OutgoingMessage, one_at_a_time
from infra.settings import Settings
from infra.tables import dead_letters
from infra.topology import Topology, build_topology

pytestmark = pytest.mark.integration


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


@pytest.fixture
def topology(namespace: str) -> Topology:
    return build_topology(
        Settings(namespace=namespace, broker_url="amqp://x", quorum_queues=True, delivery_limit=3)
    )


@pytest.fixture
def bus(amqp_url: str, topology: Topology) -> Bus:
    return Bus(amqp_url, topology, BusOptions(delivery_limit=3, confirm_timeout=5, heartbeat=10))


def message(
    topology: Topology,
    body: bytes = '{"订单": "一"}'.encode(),
    mid: str = "m-1",
    key: str = "ingest.web",
) -> OutgoingMessage:
    return OutgoingMessage(topology.exchange, key, body, mid, {"x-orderbus-channel": "web"})


class Consuming:
    def __init__(self, bus: Bus, queues: list[str], handler: Callable[[Delivery], None]) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=bus.consume,
            args=(queues, one_at_a_time(handler), self.stop),
            kwargs={"ready": self.ready},
            daemon=True,
        )

    def __enter__(self) -> Consuming:
        self.thread.start()
        assert self.ready.wait(20), "consumer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "consumer did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def publisher(bus: Bus) -> Iterator[Publisher]:
    p = bus.publisher()
    yield p
    p.close()


def test_confirmed_publish_arrives_byte_exact_with_envelope(
    bus: Bus, topology: Topology, publisher: Publisher
) -> None:
    publisher.publish(message(topology))
    got: list[Delivery] = []
    with Consuming(bus, [topology.router_queue], got.append):
        wait_for(lambda: len(got) == 1)
    d = got[0]
    assert d.body == '{"订单": "一"}'.encode()
    assert (d.message_id, d.headers["x-orderbus-channel"], d.routing_key) == (
        "m-1",
        "web",
        "ingest.web",
    )
    assert d.content_type == "application/json"


def test_unroutable_publish_is_an_error_not_a_silent_drop(
    bus: Bus, topology: Topology, publisher: Publisher
) -> None:
    with pytest.raises(PublishNotConfirmed) as info:
        publisher.publish(message(topology, key="nowhere.at.all"))
    assert info.value.reason == "unroutable"
    publisher.publish(message(topology, mid="m-2"))  # the publisher recovers


def test_deleted_queue_is_detected_and_redeclared(
    bus: Bus, topology: Topology, publisher: Publisher, amqp_url: str
) -> None:
    warehouse = topology.queue_for("warehouse").name
    publisher.publish(message(topology, key="deliver.warehouse", mid="w-1"))
    subprocess.run(
        ["rabbitmqctl", "delete_queue", "-p", vhost_of(amqp_url), warehouse],
        check=True,
        capture_output=True,
    )
    with pytest.raises(PublishNotConfirmed, match="unroutable"):
        publisher.publish(message(topology, key="deliver.warehouse", mid="w-2"))
    publisher.publish(
        message(topology, key="deliver.warehouse", mid="w-3")
    )  # topology declared again
    assert bus.queue_depth(warehouse) == 1


def queues_on_the_broker(amqp_url: str) -> set[str]:
    listed = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "-p",
            vhost_of(amqp_url),
            "-q",
            "--no-table-headers",
            "name",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(listed.stdout.split())


def test_connect_opens_the_connection_before_the_first_publish(
    topology: Topology, publisher: Publisher, amqp_url: str
) -> None:
    """The relay connects at start (a start's first batch does not wait for
    it): connecting declares the topology, before anything is published."""
    assert topology.router_queue not in queues_on_the_broker(amqp_url)
    publisher.connect()
    assert topology.router_queue in queues_on_the_broker(amqp_url)
    publisher.publish(message(topology))  # on the connection already open


def test_unreachable_broker_is_broker_unavailable(topology: Topology) -> None:
    dead = Bus("amqp://guest:guest@127.0.0.1:1//", topology, BusOptions(connect_timeout=1))
    with pytest.raises(BrokerUnavailable):
        dead.publisher().publish(message(topology))


def test_queues_are_quorum_with_dead_lettering(bus: Bus, topology: Topology, amqp_url: str) -> None:
    bus.check()
    out = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "-p",
            vhost_of(amqp_url),
            "--no-table-headers",
            "name",
            "type",
            "arguments",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {
        line.split("\t")[0]: line
        for line in out.splitlines()
        if line.startswith(topology.exchange.split(".")[0])
    }
    assert set(rows) == {q.name for q in topology.queues} | set(topology.dead_letter_queues)
    for q in topology.queues:
        assert "quorum" in rows[q.name]
        assert topology.dead_letter_exchange in rows[q.name]


def test_permanent_error_dead_letters_with_reason_and_is_recorded(
    bus: Bus, topology: Topology, publisher: Publisher, sqlite_engine: Engine
) -> None:
    def reject(_d: Delivery) -> None:
        raise MalformedMessage("body is not valid JSON", reason="malformed_json")

    publisher.publish(message(topology, body=b"\xff not json"))
    with Consuming(bus, [topology.router_queue], reject):
        wait_for(lambda: bus.queue_depth(topology.router_queue + ".dlq") == 1)
    with Consuming(
        bus, list(topology.dead_letter_queues), DeadLetterRecorder(sqlite_engine).handle
    ):
        wait_for(lambda: bus.queue_depth(topology.router_queue + ".dlq") == 0)
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.queue, row.reason, row.message_id) == (
        topology.router_queue,
        "malformed_json",
        "m-1",
    )
    assert row.body_encoding == "base64" and row.routing_key == "ingest.web"
    assert "MalformedMessage" in row.exception


def test_transient_error_is_retried_then_dead_lettered_not_looped(
    amqp_url: str, topology: Topology, publisher: Publisher
) -> None:
    bus = Bus(amqp_url, topology, BusOptions(delivery_limit=3, transient_retry_window=0))
    seen: list[int] = []

    def always_down(d: Delivery) -> None:
        seen.append(d.deliveries)
        raise DatabaseUnavailable("database unavailable: connection refused")

    publisher.publish(message(topology))
    with Consuming(bus, [topology.router_queue], always_down):
        wait_for(lambda: bus.queue_depth(topology.router_queue + ".dlq") == 1, timeout=60)
    assert seen == [1, 2, 3]
    assert bus.queue_depth(topology.router_queue) == 0


def test_consumer_and_publisher_survive_forced_disconnects(
    bus: Bus, topology: Topology, publisher: Publisher, amqp_url: str
) -> None:
    got: list[str] = []
    with Consuming(bus, [topology.router_queue], lambda d: got.append(d.message_id or "")) as c:
        publisher.publish(message(topology, mid="before"))
        wait_for(lambda: "before" in got)
        subprocess.run(
            ["rabbitmqctl", "close_all_connections", "-p", vhost_of(amqp_url), "fault test"],
            check=True,
            capture_output=True,
        )
        c.ready.clear()
        for _ in range(20):  # the publisher's connection was closed too
            try:
                publisher.publish(message(topology, mid="after"))
                break
            except BrokerUnavailable:
                time.sleep(0.5)
        wait_for(lambda: "after" in got, timeout=60)
    assert got.count("before") == 1 and "after" in got


def test_slow_handler_does_not_starve_heartbeats(amqp_url: str, topology: Topology) -> None:
    """A delivery slower than two heartbeat intervals (a slow ERP) keeps its
    connection: the ack lands, and the message is handled once."""
    bus = Bus(amqp_url, topology, BusOptions(heartbeat=2, delivery_limit=3))
    calls: list[str] = []

    def slow(d: Delivery) -> None:
        calls.append(d.message_id or "")
        if d.message_id == "slow":
            time.sleep(9)

    publisher = bus.publisher()
    try:
        publisher.publish(message(topology, mid="slow"))
        publisher.publish(message(topology, mid="next"))
        with Consuming(bus, [topology.router_queue], slow):
            wait_for(lambda: "next" in calls, timeout=60)
            time.sleep(3)  # a dropped connection would redeliver "slow" by now
    finally:
        publisher.close()
    assert calls == ["slow", "next"]
    assert bus.queue_depth(topology.router_queue) == 0


def test_publisher_idle_past_its_heartbeat_still_publishes(
    amqp_url: str, topology: Topology
) -> None:
    """An ingest process with no traffic for a while must not answer its next
    webhook with 503 because the broker closed its idle connection."""
    bus = Bus(amqp_url, topology, BusOptions(heartbeat=1))
    publisher = bus.publisher()
    try:
        publisher.publish(message(topology, mid="first"))
        time.sleep(6)  # several heartbeat intervals with nobody servicing them
        publisher.publish(message(topology, mid="after-idle"))
    finally:
        publisher.close()
    assert bus.queue_depth(topology.router_queue) >= 2


def test_short_database_outage_is_retried_in_place_not_requeued(
    amqp_url: str, topology: Topology, publisher: Publisher
) -> None:
    """While the database is down the delivery is held and retried in place:
    it costs no delivery attempt, so a 30 s outage dead-letters nothing."""
    bus = Bus(amqp_url, topology, BusOptions(delivery_limit=2, transient_retry_window=30))
    down_until = time.monotonic() + 4
    attempts: list[int] = []
    done: list[str] = []

    def needs_database(d: Delivery) -> None:
        attempts.append(d.deliveries)
        if time.monotonic() < down_until:
            raise DatabaseUnavailable("database unavailable: connection refused")
        done.append(d.message_id or "")

    publisher.publish(message(topology))
    with Consuming(bus, [topology.router_queue], needs_database):
        wait_for(lambda: done == ["m-1"], timeout=30)
    assert len(attempts) >= 3 and set(attempts) == {1}  # retried, never redelivered
    assert bus.queue_depth(topology.router_queue + ".dlq") == 0


def test_a_batch_is_confirmed_message_by_message(
    bus: Bus, topology: Topology, publisher: Publisher
) -> None:
    batch = [
        message(topology, mid="b-1"),
        message(topology, mid="b-2", key="nowhere.at.all"),
        *[message(topology, mid=f"b-{i}") for i in range(3, 201)],
    ]
    results = publisher.publish_many(batch)
    assert results[0] is None and all(r is None for r in results[2:])
    assert isinstance(results[1], PublishNotConfirmed) and results[1].reason == "unroutable"
    assert bus.queue_depth(topology.router_queue) == 199
    assert publisher.publish_many([message(topology, mid="b-next")]) == [None]


def test_consumer_hands_over_batches_and_settles_each_message(
    bus: Bus, topology: Topology, publisher: Publisher, sqlite_engine: Engine
) -> None:
    sizes: list[int] = []
    handled: list[str] = []

    def handle(deliveries: list[Delivery]) -> list[BaseException | None]:
        sizes.append(len(deliveries))
        results: list[BaseException | None] = []
        for d in deliveries:
            handled.append(d.message_id or "")
            bad = d.message_id == "c-7"
            results.append(MalformedMessage("bad", reason="malformed_json") if bad else None)
        return results

    assert (
        publisher.publish_many([message(topology, mid=f"c-{i}") for i in range(60)]) == [None] * 60
    )
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=bus.consume,
        args=([topology.router_queue], handle, stop),
        kwargs={"ready": ready, "prefetch": 20, "batch_size": 10},
        daemon=True,
    )
    thread.start()
    try:
        wait_for(lambda: len(handled) == 60)
        wait_for(lambda: bus.queue_depth(topology.router_queue) == 0)
    finally:
        stop.set()
        thread.join(20)
    assert sorted(handled) == sorted(f"c-{i}" for i in range(60))  # each once
    assert max(sizes) == 10 and len(sizes) < 60  # batched, never above batch_size
    # every one settled: nothing came back to the queue when the consumer closed
    # (a whole batch handled is acked in one frame, with ``multiple``)
    time.sleep(1)
    assert bus.queue_depth(topology.router_queue) == 0
    assert bus.queue_depth(topology.router_queue + ".dlq") == 1  # only the bad one


def test_a_message_whose_properties_are_not_text_is_a_dead_letter_and_the_rest_flow(
    bus: Bus, topology: Topology, publisher: Publisher, amqp_url: str, sqlite_engine: Engine
) -> None:
    """Another system's message with a message id that is not UTF-8 (py-amqp
    stopped the connection on it, again at every redelivery) goes to the dead
    letters with its reason; headers of kinds orderbus does not decode itself
    (a float, a list) come as py-amqp would give them."""
    bus.check()  # the topology declared
    headers = {"x-orderbus-channel": "web", "x-rate": 1.5, "x-tags": ["a", "b"]}
    publish_raw(
        amqp_url,
        topology.exchange,
        "ingest.web",
        amqp.Message(b'{"n": 1}', message_id=b"\xff\xfe-not-text"),
        amqp.Message(b'{"n": 2}', message_id="fine", application_headers=headers),
    )
    got: list[Delivery] = []
    with Consuming(bus, [topology.router_queue], got.append):
        wait_for(lambda: len(got) == 1 and bus.queue_depth(topology.router_queue + ".dlq") == 1)
    assert got[0].message_id == "fine" and got[0].body == b'{"n": 2}'
    assert got[0].headers == {"x-orderbus-channel": "web", "x-rate": 1.5, "x-tags": ["a", "b"]}
    with Consuming(
        bus, list(topology.dead_letter_queues), DeadLetterRecorder(sqlite_engine).handle
    ):
        wait_for(lambda: bus.queue_depth(topology.router_queue + ".dlq") == 0)
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.queue, row.reason) == (topology.router_queue, "malformed_message")
    assert "not UTF-8" in row.detail
    assert bus.queue_depth(topology.router_queue) == 0


def test_a_message_not_text_on_a_dead_letter_queue_is_recorded_with_its_reason(
    bus: Bus, topology: Topology, amqp_url: str, sqlite_engine: Engine
) -> None:
    """A dead-letter queue has nowhere further to send it: its handler records
    it, with the reason, instead of the consumer stopping at it."""
    bus.check()
    dead_letter_queue = topology.router_queue + ".dlq"
    publish_raw(amqp_url, "", dead_letter_queue, amqp.Message(b"{}", message_id=b"\xff-id"))
    with Consuming(
        bus, list(topology.dead_letter_queues), DeadLetterRecorder(sqlite_engine).handle
    ):
        wait_for(lambda: bus.queue_depth(dead_letter_queue) == 0)
    with sqlite_engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (row.queue, row.reason) == (topology.router_queue, "malformed_message")
    assert "not UTF-8" in row.detail


def publish_raw(amqp_url: str, exchange: str, routing_key: str, *messages: amqp.Message) -> None:
    """Publish as another system would, with py-amqp, properties as given (bytes too)."""
    parts = urlsplit(amqp_url)
    raw = amqp.Connection(
        host=f"{parts.hostname}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=vhost_of(amqp_url),
    )
    raw.connect()
    try:
        channel = raw.channel()
        for message in messages:
            channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
    finally:
        raw.close()
