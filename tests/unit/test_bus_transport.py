"""py-amqp's TCP transport reading a chunk at a time (infra/bus/transport.py):
frames come out whole and in order however the bytes arrive; a timeout in the
middle of a frame loses nothing; a broken frame or a closed socket is an
error, as with py-amqp's own transport."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from amqp.exceptions import UnexpectedFrame

from infra.bus.transport import CHUNK, BufferedTCPTransport


def frame(kind: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([end])


@pytest.fixture
def pair() -> Iterator[tuple[BufferedTCPTransport, socket.socket]]:
    ours, broker = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:5672")
    transport.sock = ours
    transport._setup_transport()  # what connect() does once the socket is open
    transport.connected = True
    yield transport, broker
    ours.close()
    broker.close()


def read(transport: BufferedTCPTransport, timeout: float | None = 1.0) -> tuple[int, int, bytes]:
    with transport.having_timeout(timeout):
        return transport.read_frame()


def test_frames_in_one_write_come_out_one_at_a_time_with_one_read(
    pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = pair
    frames = [(1, 1, b"method"), (2, 1, b"header" * 10), (3, 1, b"body" * 300), (8, 0, b"")]
    broker.sendall(b"".join(frame(*f) for f in frames))
    assert read(transport) == frames[0]
    broker.close()  # the rest is in the buffer already: no socket read needed
    assert [read(transport) for _ in frames[1:]] == frames[1:]
    with pytest.raises(OSError, match="closed"):
        read(transport)
    assert transport.connected is False


def test_a_frame_split_anywhere_waits_for_its_rest_and_a_timeout_loses_nothing(
    pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = pair
    whole = frame(3, 2, bytes(range(256)) * 700)  # larger than a chunk
    assert len(whole) > CHUNK
    for cut in (3, 7, 100, len(whole) - 1):
        broker.sendall(whole[:cut])
        with pytest.raises(TimeoutError):
            read(transport, timeout=0.05)
        broker.sendall(whole[cut:])
        assert read(transport) == (3, 2, bytes(range(256)) * 700)
    assert transport.sock.gettimeout() is None  # the socket is back to blocking


def test_many_frames_through_a_small_window_stay_in_order(
    pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = pair
    sent = [(3, 1, f"message {n}".encode() * (n % 50)) for n in range(2000)]
    stream = b"".join(frame(*f) for f in sent)
    got = []
    for start in range(0, len(stream), 997):  # the bytes arrive in odd pieces
        broker.sendall(stream[start : start + 997])
        while True:
            try:
                got.append(read(transport, timeout=0.001))
            except TimeoutError:
                break
    assert got == sent
    assert len(transport._inbox) - transport._at == 0


def test_a_frame_without_its_end_octet_is_refused(
    pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = pair
    broker.sendall(frame(1, 1, b"method", end=0x00))
    with pytest.raises(UnexpectedFrame, match="0x00"):
        read(transport)


def test_frames_written_while_held_go_out_together_at_the_end(
    pair: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = pair
    broker.settimeout(0.05)
    buffer = bytearray(frame(3, 1, b"first"))
    with transport.writes_held(timeout=1.0):
        transport.write(memoryview(buffer))
        buffer[:] = frame(3, 1, b"again")  # py-amqp reuses its buffer
        transport.write(memoryview(buffer))
        with pytest.raises(TimeoutError):
            broker.recv(100)  # nothing sent yet
    assert broker.recv(100) == frame(3, 1, b"first") + frame(3, 1, b"again")
    big = frame(3, 1, b"x" * 40_000)
    with transport.writes_held(timeout=1.0):
        transport.write(big)
        transport.write(big)  # past 64 KiB: sent now
        assert len(broker.recv(2 * len(big), socket.MSG_WAITALL)) == 2 * len(big)
        transport.write(big)
    assert len(broker.recv(len(big), socket.MSG_WAITALL)) == len(big)
    with pytest.raises(RuntimeError), transport.writes_held(timeout=1.0):
        transport.write(frame(3, 1, b"lost with its connection"))
        raise RuntimeError("the batch failed")
    transport.write(frame(3, 1, b"later"))  # not held any more
    assert broker.recv(100) == frame(3, 1, b"later")
    assert transport.sock.gettimeout() is None
