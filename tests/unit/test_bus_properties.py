"""The publisher's own encoding of a message's properties (infra/bus/
properties.py) is byte for byte py-amqp's, for what orderbus sends and for
what it hands back to py-amqp; and py-amqp reads it back as it was."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import amqp
import pytest
from amqp.serialization import decode_properties_basic

from infra.bus.properties import Message, Unsupported, encode_properties, publish_frames


def py_amqp(properties: dict[str, Any]) -> bytes:
    return bytes(amqp.Message(b"", **properties)._serialize_properties())


ORDERBUS_MESSAGE = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "application_headers": {
        "x-orderbus-channel": "taobao",
        "x-orderbus-received-at": "2026-12-07T01:02:03.456789+00:00",
        "x-orderbus-schema": 1,
        "x-orderbus-attempt": 3,
        "x-orderbus-order-number": "OB-20261207-000123",
        "x-orderbus-order-version": 2,
        "x-orderbus-target": "warehouse",
        "x-orderbus-detail": "收货地址不完整, 缺少区县",
        "x-orderbus-deliveries": 5,
    },
    "delivery_mode": 2,
    "message_id": "taobao.5b1c0e-v2-warehouse",
    "correlation_id": "taobao.5b1c0e",
}

VALUES: list[Any] = [
    "", "é", "订单", "\udcff", b"raw", True, False, 0, 1, -1, 2147483647, -2147483647,
    2147483648, -2147483648, 2**62, -(2**62), None,
]  # fmt: skip


@pytest.mark.parametrize(
    "properties",
    [
        ORDERBUS_MESSAGE,
        {},
        {"message_id": ""},
        {"priority": 0, "delivery_mode": 1, "timestamp": 1_700_000_000},
        {"application_headers": {}},
        {name: "x" * 255 for name in ("content_type", "reply_to", "type", "app_id", "cluster_id")},
        {"expiration": "60000", "user_id": "guest", "application_headers": {"键": "值"}},
    ],
)
def test_the_encoding_is_py_amqps(properties: dict[str, Any]) -> None:
    assert encode_properties(properties) == py_amqp(properties)
    decoded, _ = decode_properties_basic(encode_properties(properties), 0)
    assert decoded == {k: v for k, v in properties.items()}


def test_every_kind_of_header_value_in_any_mix_is_encoded_as_py_amqp_does() -> None:
    rng = random.Random(20261207)
    for _ in range(300):
        headers = {
            f"h{i}-{rng.random():.3f}": rng.choice(VALUES) for i in range(rng.randint(0, 12))
        }
        properties = {**ORDERBUS_MESSAGE, "application_headers": headers}
        assert encode_properties(properties) == py_amqp(properties)


@pytest.mark.parametrize(
    "value",
    [1.5, Decimal("12.30"), datetime(2026, 12, 7, tzinfo=UTC), {"nested": 1}, [1, "two"]],
)
def test_other_values_are_left_to_py_amqp(value: Any) -> None:
    properties = {**ORDERBUS_MESSAGE, "application_headers": {"x-death": value}}
    with pytest.raises(Unsupported):
        encode_properties(properties)
    assert Message(b"", **properties)._serialize_properties() == py_amqp(properties)


def test_a_short_string_too_long_is_an_error_as_with_py_amqp() -> None:
    properties = {"message_id": "x" * 256}
    with pytest.raises(struct.error):
        py_amqp(properties)
    with pytest.raises(struct.error):
        Message(b"", **properties)._serialize_properties()


class _Written:
    """A transport and connection for py-amqp's frame writer: what it writes."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.data = b""

    def write(self, data: bytes | memoryview) -> None:
        self.data += bytes(data)


def py_amqp_frames(
    channel_id: int, exchange: str, routing_key: str, body: bytes, frame_max: int
) -> bytes:
    from amqp import spec
    from amqp.method_framing import frame_writer
    from amqp.serialization import dumps

    written = _Written(frame_max)
    write = frame_writer(written, written)
    args = dumps("Bssbb", (0, exchange, routing_key, True, False))
    write(1, channel_id, spec.Basic.Publish, args, amqp.Message(body, **ORDERBUS_MESSAGE))
    return written.data


@pytest.mark.parametrize(
    ("body", "frame_max"),
    [
        (b"", 131072),
        (b'{"order": "x"}', 131072),
        ("订单".encode() * 500, 131072),
        (bytes(range(256)) * 1000, 131072),  # past one frame: three body frames
        (b"x" * 4096, 4096),  # exactly past the frame's room
        (b"x" * 4088, 4096),
    ],
)
def test_a_publishs_frames_are_py_amqps(body: bytes, frame_max: int) -> None:
    ours = publish_frames(
        3, "orderbus", "deliver.warehouse", True, ORDERBUS_MESSAGE, body, frame_max
    )
    assert ours == py_amqp_frames(3, "orderbus", "deliver.warehouse", body, frame_max)


def test_a_publish_with_what_is_not_encoded_here_is_left_to_py_amqp() -> None:
    with pytest.raises(Unsupported):
        publish_frames(1, "x" * 256, "k", True, ORDERBUS_MESSAGE, b"{}", 131072)
    odd = {**ORDERBUS_MESSAGE, "application_headers": {"x-death": [{"count": 1}]}}
    with pytest.raises(Unsupported):
        publish_frames(1, "orderbus", "k", True, odd, b"{}", 131072)


def test_with_no_frame_size_agreed_the_body_is_one_frame() -> None:
    body = b"x" * 300_000
    frames = publish_frames(1, "orderbus", "k", True, ORDERBUS_MESSAGE, body, 0)
    assert frames.endswith(struct.pack(">BHI", 3, 1, len(body)) + body + b"\xce")
