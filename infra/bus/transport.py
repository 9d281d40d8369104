"""py-amqp's TCP transport, reading the socket a chunk at a time.

py-amqp reads each frame with three ``recv`` calls of exactly the bytes it
wants (the 7-byte header, the payload, the end octet), and a message is three
frames: nine system calls a message, each behind a ``poll`` when the socket
has a timeout, and the socket switched in and out of its timeout around every
message read (``having_timeout``). Here the socket is read up to 64 KiB at a
time into a buffer, a frame is taken from the buffer once it is whole, and a
frame already whole in the buffer is read without touching the socket or its
timeout. A frame is consumed only when complete, so a timeout in the middle
of one loses nothing.

Writing, py-amqp sends each message with a system call of its own, and on
loopback the sender's call also pays for the receiving side's TCP work: the
relay spent 40% of its time there (py-spy). Within :meth:`BufferedTCPTransport.
writes_held` (a publisher's batch) frames are gathered and sent up to 64 KiB
at a time.

TLS connections (``amqps://``) keep py-amqp's own transport.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from amqp.exceptions import UnexpectedFrame
from amqp.transport import TCPTransport
from kombu.transport import pyamqp

CHUNK = 65536
FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size
FRAME_END = 0xCE
# errors of a read that leave the connection usable (py-amqp's own list)
_UNAVAILABLE = frozenset({errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK})


class BufferedTCPTransport(TCPTransport):  # type: ignore[misc]
    """Frames read from a buffer filled a chunk at a time (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._inbox = bytearray()
        self._at = 0  # where the next frame starts in _inbox
        self._held: bytearray | None = None  # frames to send at the end of writes_held
        super().__init__(*args, **kwargs)

    def write(self, data: bytes | memoryview) -> None:
        if self._held is None:
            super().write(data)
            return
        self._held += data  # a copy: py-amqp reuses its buffer for the next message
        if len(self._held) >= CHUNK:
            self._send_held()

    @contextmanager
    def writes_held(self, timeout: float | None) -> Iterator[None]:
        """Frames written within go out together, at the end (and every 64
        KiB), within ``timeout`` (the socket's, set once for the batch: each
        publish's own, the same, changes nothing); on an error what was held
        is dropped with the connection."""
        with super().having_timeout(timeout):
            self._held = bytearray()
            try:
                yield
                self._send_held()
            finally:
                self._held = None

    def _send_held(self) -> None:
        held, self._held = self._held, bytearray()
        if held:
            super().write(held)

    def _whole_frame_end(self) -> int:
        """Where the next frame ends in the buffer, when all of it is there; else 0."""
        start = self._at
        if len(self._inbox) - start < FRAME_HEADER.size:
            return 0
        size = FRAME_HEADER.unpack_from(self._inbox, start)[2]
        end = start + FRAME_HEADER.size + size + 1
        return end if len(self._inbox) >= end else 0

    @contextmanager
    def having_timeout(self, timeout: float | None) -> Iterator[Any]:
        if self._whole_frame_end():  # no socket read: its timeout stays as it is
            yield self.sock
            return
        with super().having_timeout(timeout) as sock:
            yield sock

    def frame_within(self, timeout: float | None) -> tuple[int, int, bytes]:
        """The next frame: from the buffer when it is whole there, else read
        within ``timeout`` (py-amqp's ``having_timeout`` and ``read_frame``
        in one call, for a reader of every frame)."""
        if self._whole_frame_end():
            return self.read_frame()
        with super().having_timeout(timeout):
            return self.read_frame()

    def read_frame(self, unpack: Any = None) -> tuple[int, int, bytes]:
        try:
            end = self._whole_frame_end()
            while not end:
                self._fill()
                end = self._whole_frame_end()
        except TimeoutError:
            raise
        except OSError as exc:
            if exc.errno not in _UNAVAILABLE:
                self.connected = False
            raise
        inbox, start = self._inbox, self._at
        frame_type, channel, _ = FRAME_HEADER.unpack_from(inbox, start)
        if inbox[end - 1] != FRAME_END:
            raise UnexpectedFrame(f"Received frame_end {inbox[end - 1]:#04x} while expecting 0xce")
        payload = bytes(inbox[start + FRAME_HEADER.size : end - 1])
        if end == len(inbox):
            inbox.clear()
            self._at = 0
        elif end > CHUNK:  # drop what was read, now and then, not at every frame
            del inbox[:end]
            self._at = 0
        else:
            self._at = end
        return frame_type, channel, payload

    def _fill(self) -> None:
        """Append what the socket has (at least a byte; waits within its timeout)."""
        received = self.sock.recv(CHUNK)
        if not received:
            raise OSError("Server unexpectedly closed connection")
        self._inbox += received


class _Connection(pyamqp.Connection):
    def Transport(  # noqa: N802 - py-amqp's name
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        if ssl:
            return super().Transport(
                host, connect_timeout, ssl, read_timeout, write_timeout, **kwargs
            )
        return BufferedTCPTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            **kwargs,
        )


class AmqpTransport(pyamqp.Transport):
    """kombu's py-amqp transport with :class:`BufferedTCPTransport`."""

    Connection = _Connection


__all__ = ["AmqpTransport", "BufferedTCPTransport"]
