"""A message's basic properties (its content type, ids and headers table)
encoded for the wire without py-amqp's general serialiser, and a publish
written as its frames in one piece.

py-amqp encodes properties through a format-string interpreter and a
``BytesIO`` per table: half the CPU of publishing one of our messages
(``python -m bench.profile``-style cProfile of the publisher). The properties
orderbus sends are short strings, an octet and a table of strings and
integers; those are encoded here in a few joins, byte for byte as py-amqp
would (a test holds the two side by side). Anything else in a table (a
float, a date, a nested table, a list: headers the broker added to a message
being dead-lettered) is left to py-amqp.

:func:`basic_publish` goes one step further: py-amqp builds a publish's
frames through its argument serialiser and a shared buffer, two thirds of the
23 us a publish cost; here the method frame of each (exchange, routing key)
is made once, and the three frames are one join (7 us). What it does not
encode goes through py-amqp's ``basic_publish`` as before.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from struct import Struct
from typing import Any

import amqp
from amqp.exceptions import RecoverableConnectionError

from infra.bus.transport import FRAME_END, FRAME_HEADER

# AMQP 0-9-1 basic properties in flag order (bit 15 first): name, kind
# (s: short string, F: table, o: octet, L: 64-bit unsigned)
BASIC_PROPERTIES = (
    ("content_type", "s"),
    ("content_encoding", "s"),
    ("application_headers", "F"),
    ("delivery_mode", "o"),
    ("priority", "o"),
    ("correlation_id", "s"),
    ("reply_to", "s"),
    ("expiration", "s"),
    ("message_id", "s"),
    ("timestamp", "L"),
    ("type", "s"),
    ("user_id", "s"),
    ("app_id", "s"),
    ("cluster_id", "s"),
)
_FLAGS = Struct(">H")
_LONG = Struct(">I")
_INT32 = Struct(">ci")
_INT64 = Struct(">cq")
_UINT64 = Struct(">Q")
INT32_MAX = 2147483647


class Unsupported(Exception):
    """A value this module does not encode: py-amqp's serialiser does it."""


_LENGTH_OCTET = tuple(bytes((n,)) for n in range(256))
_LONG_STRING = Struct(">cI")


def _short(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    if len(raw) > 255:
        raise Unsupported("a short string longer than 255 bytes")  # py-amqp raises its error
    return _LENGTH_OCTET[len(raw)] + raw


def _item(value: Any) -> bytes:
    """A table value (in py-amqp's order of tests: a bool is an int too)."""
    if isinstance(value, str | bytes):
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return _LONG_STRING.pack(b"S", len(raw)) + raw
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, int):
        if -INT32_MAX <= value <= INT32_MAX:
            return _INT32.pack(b"I", value)
        return _INT64.pack(b"L", value)
    if value is None:
        return b"V"
    raise Unsupported(type(value).__name__)


def encode_table(table: Mapping[str, Any]) -> bytes:
    """A field table: its length, then each key (short string) and value."""
    parts: list[bytes] = []
    add = parts.append
    for key, value in table.items():
        add(_short(key))
        if value.__class__ is str:  # most headers: inline
            raw = value.encode("utf-8", "surrogatepass")
            add(_LONG_STRING.pack(b"S", len(raw)))
            add(raw)
        else:
            add(_item(value))
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


def encode_properties(properties: Mapping[str, Any]) -> bytes:
    """The property flags and list of a content header (class Basic)."""
    flags = 0
    parts: list[bytes] = []
    bit = 1 << 15
    for name, kind in BASIC_PROPERTIES:
        value = properties.get(name)
        if value is not None:
            flags |= bit
            if kind == "s":
                parts.append(_short(value))
            elif kind == "F":
                parts.append(encode_table(value))
            elif kind == "o":
                if not 0 <= value <= 255:
                    raise Unsupported(f"{name} {value!r} is not an octet")
                parts.append(_LENGTH_OCTET[value])
            else:
                parts.append(_UINT64.pack(value))
        bit >>= 1
    return _FLAGS.pack(flags) + b"".join(parts)


class Message(amqp.Message):  # type: ignore[misc]
    """py-amqp's message with its properties encoded by :func:`encode_properties`."""

    def _serialize_properties(self) -> bytes:
        try:
            return encode_properties(self.properties)
        except Unsupported:
            return bytes(super()._serialize_properties())


_CONTENT_HEAD = Struct(">HHQ")  # class, weight, body size
_FRAME_END = bytes((FRAME_END,))
_BASIC = 60
_PUBLISH = b"\x00\x3c\x00\x28\x00\x00"  # basic.publish (60, 40), ticket 0


@functools.lru_cache(maxsize=1024)
def _publish_method(exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """basic.publish's arguments: exchange, routing key, then the mandatory
    and immediate bits (immediate never: RabbitMQ refuses it)."""
    return _PUBLISH + _short(exchange) + _short(routing_key) + (b"\x01" if mandatory else b"\x00")


def publish_frames(
    channel_id: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    properties: Mapping[str, Any],
    body: bytes,
    frame_max: int,
) -> bytes:
    """A publish's frames, as py-amqp writes them: the method, the content
    header with the properties, the body in frames of at most ``frame_max``.
    Raises Unsupported for what :func:`encode_properties` leaves to py-amqp."""
    method = _publish_method(exchange, routing_key, mandatory)
    header = _CONTENT_HEAD.pack(_BASIC, 0, len(body)) + encode_properties(properties)
    parts = [
        FRAME_HEADER.pack(1, channel_id, len(method)), method, _FRAME_END,
        FRAME_HEADER.pack(2, channel_id, len(header)), header, _FRAME_END,
    ]  # fmt: skip
    chunk = frame_max - 8 if frame_max else max(len(body), 1)  # 0: no limit was agreed
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += [FRAME_HEADER.pack(3, channel_id, len(piece)), piece, _FRAME_END]
    return b"".join(parts)


def basic_publish(
    channel: Any,
    body: bytes,
    properties: dict[str, Any],
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    timeout: float | None,
) -> None:
    """py-amqp's ``channel.basic_publish(Message(body, **properties), ...)``,
    its frames written in one piece. Unlike py-amqp it does not read the
    connection before each publish (looking for a connection.blocked, for an
    ``on_blocked`` callback orderbus does not set): the publisher's wait for
    confirms reads everything that came."""
    conn = channel.connection
    if conn is None:
        raise RecoverableConnectionError("basic_publish: connection closed")
    try:
        frames = publish_frames(
            channel.channel_id, exchange, routing_key, mandatory, properties, body, conn.frame_max
        )
    except Unsupported:
        channel.basic_publish(
            Message(body, **properties),
            exchange=exchange,
            routing_key=routing_key,
            mandatory=mandatory,
            timeout=timeout,
        )
        return
    try:
        with conn.transport.having_timeout(timeout):
            conn.transport.write(frames)
    except TimeoutError as exc:  # as py-amqp: the socket is dead
        raise RecoverableConnectionError("basic_publish: timed out") from exc
    conn.bytes_sent += 1  # what the heartbeat checks for


__all__ = [
    "Message",
    "Unsupported",
    "basic_publish",
    "encode_properties",
    "encode_table",
    "publish_frames",
]
