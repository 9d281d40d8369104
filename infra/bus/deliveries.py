"""A consumer's deliveries read straight from their frames.

py-amqp takes a delivery through its general machinery: a frame handler
closure, a ``Message`` that decodes its properties through a format-string
interpreter, the channel's method dispatch, the consumer's callback, then
kombu's own ``Message`` around it. For a consumer that did nothing with the
messages that was 120 us of CPU a message on a slow hour
(``python -m bench.receipt``), most of a consumer's receipt.

:class:`DeliveryReader` reads the connection's frames itself. A
``basic.deliver`` on the consumer's channel, its content header and its body
frames are decoded here, with a small decoder for the basic properties and
the header values orderbus and RabbitMQ put there (strings, integers,
booleans, tables); a header of any other kind (a float, a timestamp, a list:
``x-death`` on a dead letter) has the whole properties decoded by py-amqp.
Every other frame (heartbeats, the channel's other methods, other channels,
a ``basic.return``) goes to py-amqp's handler as before, so its state and
callbacks stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct
from typing import Any

from amqp.exceptions import UnexpectedFrame
from amqp.serialization import decode_properties_basic

from infra.bus.properties import BASIC_PROPERTIES

DELIVER = b"\x00\x3c\x00\x3c"  # basic.deliver: class 60, method 60
METHOD, HEADER, BODY = 1, 2, 3
_long = Struct(">I").unpack_from
_int32 = Struct(">i").unpack_from
_int64 = Struct(">q").unpack_from
_uint64 = Struct(">Q").unpack_from
_flags = Struct(">H").unpack_from
# header names seen, by their bytes (a few dozen in practice; a bound keeps
# a publisher that makes up names from filling memory)
_KEYS: dict[bytes, str] = {}
KEYS_KEPT = 1024
# the properties present, by their flags (2^16 at most, a handful in practice)
_PRESENT: dict[int, tuple[tuple[str, str], ...]] = {}
_HEADER = Struct(">HxxQ")  # class, weight (unused), body size
_DELIVERY_TAG = Struct(">QB")  # delivery tag, then the redelivered bit


class Undecoded(Exception):
    """A value this module does not decode: py-amqp decodes the properties."""


@dataclass(slots=True)
class Received:
    """A delivery as it came off the wire; ``properties`` as py-amqp names
    them (``application_headers`` for the headers table)."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    properties: dict[str, Any]
    body: bytes
    # why the properties could not be read (a string not in UTF-8, which
    # py-amqp let stop the connection); the delivery is then a dead letter
    problem: str | None = None


def _text(raw: bytes) -> str | bytes:
    """A string as py-amqp gives it: UTF-8 (lone surrogates kept), else the bytes."""
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw


def _short_text(buf: bytes, at: int) -> tuple[str, int]:
    size = buf[at]
    end = at + 1 + size
    return buf[at + 1 : end].decode("utf-8", "surrogatepass"), end


def decode_table(buf: bytes, at: int) -> tuple[dict[str, Any], int]:
    """A field table at ``at``: (the table, where it ends). Strings (``S``),
    32- and 64-bit integers (``I``, ``l``, ``L``), booleans (``t``), void (``V``)
    and nested tables (``F``); anything else raises :class:`Undecoded`."""
    (size,) = _long(buf, at)
    at += 4
    end = at + size
    if end > len(buf):
        raise UnexpectedFrame("a field table runs past its frame")
    table: dict[str, Any] = {}
    keys = _KEYS
    while at < end:
        key_end = at + 1 + buf[at]
        raw = buf[at + 1 : key_end]
        key = keys.get(raw)
        if key is None:
            key = raw.decode("utf-8", "surrogatepass")
            if len(keys) < KEYS_KEPT:
                keys[raw] = key
        kind = buf[key_end]
        at = key_end + 1
        if kind == 0x53:  # S: long string
            value_end = at + 4 + _long(buf, at)[0]
            table[key] = _text(buf[at + 4 : value_end])
            at = value_end
        elif kind == 0x49:  # I: signed 32 bits
            table[key] = _int32(buf, at)[0]
            at += 4
        elif kind == 0x6C or kind == 0x4C:  # l (RabbitMQ's), L (py-amqp's): signed 64 bits
            table[key] = _int64(buf, at)[0]
            at += 8
        elif kind == 0x74:  # t: boolean
            table[key] = bool(buf[at])
            at += 1
        elif kind == 0x56:  # V: void
            table[key] = None
        elif kind == 0x46:  # F: table
            table[key], at = decode_table(buf, at)
        else:
            raise Undecoded(chr(kind))
    if at != end:
        raise UnexpectedFrame("a field table's values run past its size")
    return table, end


def decode_properties(buf: bytes, at: int) -> dict[str, Any]:
    """The basic properties at ``at`` of a content header, as py-amqp's
    ``decode_properties_basic`` gives them."""
    try:
        return _decode_properties(buf, at)
    except Undecoded:
        return decode_properties_basic(buf, at)[0]  # type: ignore[no-any-return]


def _decode_properties(buf: bytes, at: int) -> dict[str, Any]:
    (flags,) = _flags(buf, at)
    at += 2
    present = _PRESENT.get(flags)
    if present is None:
        present = _PRESENT[flags] = tuple(
            (name, kind) for bit, (name, kind) in enumerate(BASIC_PROPERTIES)
            if flags & (0x8000 >> bit)
        )  # fmt: skip
    properties: dict[str, Any] = {}
    for name, kind in present:
        if kind == "s":
            properties[name], at = _short_text(buf, at)
        elif kind == "F":
            properties[name], at = decode_table(buf, at)
        elif kind == "o":
            properties[name] = buf[at]
            at += 1
        else:  # "L": the timestamp, seconds as py-amqp gives them
            properties[name] = _uint64(buf, at)[0]
            at += 8
    return properties


class DeliveryReader:
    """Reads one connection's frames: the deliveries on ``channel_id`` go to
    ``on_delivery`` (module docstring), every other frame to py-amqp; once
    installed, py-amqp's own reads of the connection pass through it too.

    ``connection`` is py-amqp's connection (kombu's ``connection.connection``).
    """

    def __init__(
        self, connection: Any, channel_id: int, on_delivery: Callable[[Received], None]
    ) -> None:
        self.connection = connection
        self.channel_id = channel_id
        self.on_delivery = on_delivery
        self._method: tuple[str, int, bool, str, str] | None = None  # a deliver under way
        self._properties: dict[str, Any] = {}
        self._problem: str | None = None
        self._size = 0
        self._parts: list[bytes] = []
        self._expect = METHOD
        transport = connection.transport
        self._next_frame = getattr(transport, "frame_within", None) or self._read_frame
        # py-amqp's handler for every other frame; this reader takes its place
        # on the connection (install), so py-amqp's own reads (its wait for a
        # basic.consume-ok, say, while deliveries already come) pass here too
        self._others = connection.on_inbound_frame

    def install(self) -> DeliveryReader:
        """Read every frame of the connection from now on, py-amqp's own reads too."""
        self.connection.on_inbound_frame = self.on_frame
        return self

    def _read_frame(self, timeout: float | None) -> tuple[int, int, bytes]:
        """A frame through py-amqp's transport (TLS)."""
        transport = self.connection.transport
        with transport.having_timeout(timeout):
            return transport.read_frame()  # type: ignore[no-any-return]

    def drain(self, timeout: float | None) -> None:
        """Read frames until one delivery or one other method is whole, as
        py-amqp's ``drain_events``; TimeoutError when none came in ``timeout``."""
        next_frame, on_frame = self._next_frame, self.on_frame
        while not on_frame(next_frame(timeout)):
            pass

    def on_frame(self, frame: tuple[int, int, bytes]) -> bool:
        """One frame: a delivery's to this reader, any other to py-amqp; True
        once a delivery or another method is whole (py-amqp's handler's rule)."""
        frame_type, channel, payload = frame
        if channel == self.channel_id and (
            self._method is not None or (frame_type == METHOD and payload[:4] == DELIVER)
        ):
            self.connection.bytes_recv += 1  # seen: the heartbeat check counts frames
            return self._take(frame_type, payload)
        return bool(self._others(frame))

    def _take(self, frame_type: int, payload: bytes) -> bool:
        """One frame of a delivery; True once the delivery went to ``on_delivery``."""
        if frame_type != self._expect:
            raise UnexpectedFrame(
                f"Received frame {frame_type} while expecting type: {self._expect}"
            )
        if frame_type == METHOD:
            tag, at = _short_text(payload, 4)
            delivery_tag, bits = _DELIVERY_TAG.unpack_from(payload, at)
            exchange, at = _short_text(payload, at + _DELIVERY_TAG.size)
            routing_key, _ = _short_text(payload, at)
            self._method = (tag, delivery_tag, bool(bits & 1), exchange, routing_key)
            self._expect = HEADER
            return False
        if frame_type == HEADER:
            _, self._size = _HEADER.unpack_from(payload, 0)
            try:
                self._properties, self._problem = decode_properties(payload, _HEADER.size), None
            except UnicodeDecodeError as exc:
                self._properties = {}
                self._problem = f"its properties hold text that is not UTF-8 ({exc.reason})"
            if self._size:
                self._expect = BODY
                return False
            return self._complete(b"")
        self._parts.append(payload)
        self._size -= len(payload)
        if self._size > 0:
            return False
        parts = self._parts
        return self._complete(parts[0] if len(parts) == 1 else b"".join(parts))

    def _complete(self, body: bytes) -> bool:
        method, properties = self._method, self._properties
        if method is None:  # not reached: content is taken only after its method
            raise UnexpectedFrame("a delivery's content without its basic.deliver")
        self._method, self._properties, self._parts, self._expect = None, {}, [], METHOD
        self.on_delivery(Received(*method, properties, body, self._problem))
        return True
