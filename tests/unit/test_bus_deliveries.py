"""A consumer's deliveries read from their frames (infra/bus/deliveries.py):
the properties come out as py-amqp's decoder gives them, for what orderbus
and RabbitMQ put there and for what is left to py-amqp; the frames of a
delivery written by py-amqp's own frame writer come out as one delivery
however they are cut; every other frame goes to py-amqp's handler; a
property not in UTF-8 is reported with the delivery instead of stopping the
connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.exceptions import UnexpectedFrame
from amqp.method_framing import frame_writer
from amqp.serialization import decode_properties_basic, dumps
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.bus.deliveries import DeliveryReader, Received, decode_properties
from infra.bus.properties import Unsupported, encode_properties
from infra.bus.transport import BufferedTCPTransport
from tests.unit.test_bus_properties import ORDERBUS_MESSAGE


def py_amqp_properties(properties: dict[str, Any]) -> bytes:
    return bytes(amqp.Message(b"", **properties)._serialize_properties())


# -- properties ---------------------------------------------------------------

texts = st.text(max_size=40)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ours = st.one_of(texts, ints, st.booleans(), st.none())
# left to py-amqp: floats, dates, decimals, lists, bytes
theirs = st.one_of(
    st.floats(allow_nan=False),
    st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.decimals(places=2, min_value=-1000, max_value=1000),
    st.lists(texts, max_size=3),
)
values = st.recursive(ours, lambda inner: st.dictionaries(texts, inner, max_size=4), max_leaves=12)
short = st.text(max_size=30)
properties_strategy = st.fixed_dictionaries(
    {},
    optional={
        "content_type": short,
        "content_encoding": short,
        "application_headers": st.dictionaries(texts, values, max_size=10),
        "delivery_mode": st.integers(0, 255),
        "priority": st.integers(0, 255),
        "correlation_id": short,
        "reply_to": short,
        "expiration": short,
        "message_id": short,
        "timestamp": st.integers(0, 2**40),
        "type": short,
        "user_id": short,
        "app_id": short,
        "cluster_id": short,
    },
)


@settings(max_examples=300, deadline=None)
@given(properties_strategy)
def test_properties_read_as_py_amqp_reads_them(properties: dict[str, Any]) -> None:
    encoded = [py_amqp_properties(properties)]
    with contextlib.suppress(Unsupported):  # nested tables: py-amqp writes those
        encoded.append(encode_properties(properties))
    for raw in encoded:
        assert decode_properties(raw, 0) == decode_properties_basic(raw, 0)[0]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(texts, st.one_of(ours, theirs), min_size=1, max_size=6))
def test_headers_of_other_kinds_are_left_to_py_amqp(headers: dict[str, Any]) -> None:
    raw = py_amqp_properties({"message_id": "m", "application_headers": headers})
    assert decode_properties(raw, 0) == decode_properties_basic(raw, 0)[0]


def test_the_messages_orderbus_sends_and_rabbitmqs_dead_letters_read_back() -> None:
    assert decode_properties(encode_properties(ORDERBUS_MESSAGE), 0) == ORDERBUS_MESSAGE
    headers = ORDERBUS_MESSAGE["application_headers"]
    assert isinstance(headers, dict)
    dead = dict(ORDERBUS_MESSAGE)
    dead["application_headers"] = {
        **headers,
        "x-death": [
            {
                "count": 1,
                "reason": "delivery_limit",
                "queue": "orderbus.warehouse",
                "time": datetime(2026, 12, 7, 8, 0, tzinfo=UTC),
                "exchange": "orderbus.orders",
                "routing-keys": ["deliver.warehouse"],
            }
        ],
        "x-first-death-reason": "delivery_limit",
        "x-delivery-count": 5,
        "x-price": Decimal("1.50"),
    }
    raw = py_amqp_properties(dead)
    assert decode_properties(raw, 0) == decode_properties_basic(raw, 0)[0]


# -- the reader -------------------------------------------------------------------


class FakeConnection:
    """What the reader uses of py-amqp's connection: its transport, its count
    of frames seen and its handler for every other frame (py-amqp's returns
    True once a method is whole)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.bytes_recv = 0
        self.others: list[tuple[int, int, bytes]] = []

    def on_inbound_frame(self, frame: tuple[int, int, bytes]) -> bool:
        self.bytes_recv += 1
        self.others.append(frame)
        return frame[0] == 1


class Wire:
    """py-amqp's own frame writer, its frames collected as bytes."""

    def __init__(self, frame_max: int = 131072) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.data = bytearray()
        self._write = frame_writer(self, self)

    def write(self, data: bytes) -> None:
        self.data += data

    def deliver(
        self, channel: int, tag: str, delivery_tag: int, body: bytes, **properties: Any
    ) -> None:
        args = dumps("sLbss", [tag, delivery_tag, True, "orderbus.orders", "deliver.warehouse"])
        self._write(1, channel, spec.Basic.Deliver, args, amqp.Message(body, **properties))

    def method(self, channel: int, sig: tuple[int, int], fmt: str = "", *args: Any) -> None:
        self._write(1, channel, sig, dumps(fmt, list(args)) if fmt else b"", None)

    def heartbeat(self) -> None:
        self.data += b"\x08\x00\x00\x00\x00\x00\x00\xce"


@pytest.fixture
def socket_pair() -> Iterator[tuple[BufferedTCPTransport, socket.socket]]:
    ours, broker = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:5672")
    transport.sock = ours
    transport._setup_transport()
    transport.connected = True
    yield transport, broker
    ours.close()
    broker.close()


def frames_in(data: bytes) -> list[tuple[int, int, bytes]]:
    frames = []
    while data:
        size = int.from_bytes(data[3:7], "big")
        frames.append((data[0], int.from_bytes(data[1:3], "big"), data[7 : 7 + size]))
        data = data[8 + size :]
    return frames


def reader_on(
    transport: Any, channel: int = 1
) -> tuple[DeliveryReader, FakeConnection, list[Received]]:
    connection = FakeConnection(transport)
    got: list[Received] = []
    return DeliveryReader(connection, channel, got.append), connection, got


def drain_all(reader: DeliveryReader) -> int:
    """Drain until nothing more comes; how many drains returned."""
    returned = 0
    while True:
        try:
            reader.drain(0.05)
        except TimeoutError:
            return returned
        returned += 1


@pytest.mark.parametrize("frame_max", [131072, 4096, 512])
@pytest.mark.parametrize("piece", [1, 7, 100, 65536])  # the bytes as they arrive
def test_deliveries_come_whole_however_the_frames_are_cut_and_others_go_to_py_amqp(
    socket_pair: tuple[BufferedTCPTransport, socket.socket], frame_max: int, piece: int
) -> None:
    transport, broker = socket_pair
    wire = Wire(frame_max)
    big = "订单".encode() * 2000  # several body frames below a small frame_max
    wire.heartbeat()
    wire.deliver(1, "orderbus-q-1", 1, b'{"a": 1}', **ORDERBUS_MESSAGE)
    wire.method(1, spec.Basic.CancelOk, "s", "orderbus-q-9")  # the channel's other methods
    wire.deliver(2, "other", 7, b"not ours")  # another channel: py-amqp's
    wire.deliver(1, "orderbus-q-1", 2, big, message_id="big")
    wire.deliver(1, "orderbus-q-1", 3, b"", message_id="empty")  # no body frame at all
    reader, connection, got = reader_on(transport)
    data = bytes(wire.data)

    def send() -> None:  # in pieces, each as soon as the socket takes it
        for start in range(0, len(data), piece):
            broker.sendall(data[start : start + piece])

    sender = threading.Thread(target=send)
    sender.start()
    while len(got) < 3:
        reader.drain(5)
    sender.join()
    drain_all(reader)
    assert [(r.delivery_tag, r.body) for r in got] == [(1, b'{"a": 1}'), (2, big), (3, b"")]
    first = got[0]
    assert first.properties == ORDERBUS_MESSAGE
    assert (first.consumer_tag, first.redelivered, first.exchange, first.routing_key) == (
        "orderbus-q-1", True, "orderbus.orders", "deliver.warehouse"
    )  # fmt: skip
    assert first.problem is None
    kinds = [(kind, channel) for kind, channel, _ in connection.others]
    assert kinds[0] == (8, 0) and (1, 1) in kinds and (1, 2) in kinds and (2, 2) in kinds
    assert connection.bytes_recv == len(frames_in(data))  # each counted once: heartbeat check


def test_drain_returns_once_a_delivery_is_whole_and_times_out_when_nothing_comes(
    socket_pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = socket_pair
    wire = Wire()
    wire.deliver(1, "orderbus-q-1", 1, b"x" * 10, message_id="a")
    wire.deliver(1, "orderbus-q-1", 2, b"y" * 10, message_id="b")
    broker.sendall(bytes(wire.data))
    reader, _, got = reader_on(transport)
    reader.drain(1)
    assert [r.delivery_tag for r in got] == [1]  # one at a time, as drain_events
    reader.drain(1)
    assert [r.delivery_tag for r in got] == [1, 2]
    with pytest.raises(TimeoutError):
        reader.drain(0.05)


def test_a_method_where_a_body_belongs_is_a_protocol_error(
    socket_pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = socket_pair
    wire = Wire()
    wire.deliver(1, "orderbus-q-1", 1, b"x" * 10, message_id="a")
    whole = bytes(wire.data)
    body_frame = 8 + 10
    broker.sendall(whole[:-body_frame])  # the method and header, no body
    wire.data.clear()
    wire.method(1, spec.Basic.CancelOk, "s", "orderbus-q-1")
    broker.sendall(bytes(wire.data))
    reader, _, got = reader_on(transport)
    with pytest.raises(UnexpectedFrame, match="expecting type: 3"):
        drain_all(reader)
    assert got == []


def test_a_property_not_in_utf8_comes_with_the_delivery_as_its_problem(
    socket_pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = socket_pair
    wire = Wire()
    wire.deliver(1, "orderbus-q-1", 1, b"{}", message_id=b"\xff\xfe-not-text")
    wire.deliver(1, "orderbus-q-1", 2, b"{}", message_id="fine")
    broker.sendall(bytes(wire.data))
    reader, _, got = reader_on(transport)
    assert drain_all(reader) == 2
    assert got[0].problem is not None and "not UTF-8" in got[0].problem
    assert got[0].body == b"{}" and got[0].delivery_tag == 1
    assert (got[1].problem, got[1].properties) == (None, {"message_id": "fine"})


def test_tls_transports_are_read_through_py_amqps_own_calls() -> None:
    class PlainTransport:  # no frame_within: the reader uses having_timeout + read_frame
        def __init__(self, frames: list[tuple[int, int, bytes]]) -> None:
            self.frames = frames
            self.timeouts: list[float | None] = []

        def having_timeout(self, timeout: float | None) -> Any:
            self.timeouts.append(timeout)
            return _Nothing()

        def read_frame(self) -> tuple[int, int, bytes]:
            if not self.frames:
                raise TimeoutError
            return self.frames.pop(0)

    class _Nothing:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    wire = Wire()
    wire.deliver(1, "orderbus-q-1", 5, b"body", message_id="m")
    transport = PlainTransport(frames_in(bytes(wire.data)))
    reader, _, got = reader_on(transport)
    reader.drain(2.5)
    assert [(r.delivery_tag, r.body) for r in got] == [(5, b"body")]
    assert transport.timeouts == [2.5, 2.5, 2.5]


def test_once_installed_py_amqps_own_reads_pass_through_the_reader() -> None:
    """py-amqp reads the connection itself too (its wait for a basic.consume-ok,
    while deliveries of a queue consumed a moment before already come): those
    deliveries are the reader's as well, the other frames py-amqp's."""
    connection = FakeConnection(transport=None)
    got: list[Received] = []
    DeliveryReader(connection, 1, got.append).install()
    wire = Wire()
    wire.deliver(1, "orderbus-q-1", 1, b"{}", message_id="early")
    wire.method(1, spec.Basic.ConsumeOk, "s", "orderbus-q-2")
    done = [connection.on_inbound_frame(frame) for frame in frames_in(bytes(wire.data))]
    assert done == [False, False, True, True]  # the delivery whole, then the consume-ok
    assert [r.properties for r in got] == [{"message_id": "early"}]
    assert [kind for kind, _, _ in connection.others] == [1]
