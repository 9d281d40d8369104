"""The consumers' HTTP/1.1 client (infra/transports.py KeepAliveTransport)
against a real socket server that answers as scripted: what servers send
(lengths, chunks, interim answers, closing, HTTP/1.0, other charsets), and
what goes wrong (an idle connection closed, no answer in time, a header that
would split the request)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from canonical.errors import EndpointTimedOut, EndpointUnavailable
from infra.transports import MOST_BODY_BYTES, KeepAliveTransport

Answerer = Callable[[bytes], bytes | None]  # the request (head + body) -> raw answer; None: close


@dataclass
class Server:
    answer: Answerer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    close_after_each: bool = False
    close_after: set[int] = field(default_factory=set)  # the requests (1, 2...) it closes after

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/orders"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + reader.read(length)
                self.requests.append(request)
                answer = self.answer(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_each or len(self.requests) in self.close_after:
                    return


@pytest.fixture
def client() -> Iterator[KeepAliveTransport]:
    transport = KeepAliveTransport(timeout=1.0)
    yield transport
    transport.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_one_connection_carries_many_requests_head_and_body_intact(
    client: KeepAliveTransport,
) -> None:
    server = Server(lambda request: ok())
    body = '{"订单":"一"}'.encode()
    for _ in range(3):
        answer = client.post(server.url, body, {"Idempotency-Key": "OB1-v1-warehouse"})
        assert (answer.status_code, answer.text) == (200, '{"ok":true}')
    assert server.connections == 1
    head, _, sent = server.requests[0].partition(b"\r\n\r\n")
    assert sent == body
    assert head.startswith(b"POST /orders HTTP/1.1\r\n")
    assert b"Idempotency-Key: OB1-v1-warehouse" in head
    assert b"Content-Length: %d" % len(body) in head


def test_chunked_interim_and_other_charsets_are_read(client: KeepAliveTransport) -> None:
    answers = iter(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: t\r\n\r\n",
            ok("已收到".encode("gbk"), b"Content-Type: text/plain; charset=gbk\r\n"),
            b"HTTP/1.1 204 No Content\r\n\r\n",
            ok(b"x", b"Content-Type: text/plain; charset=nonsense\r\n"),
        ]
    )
    server = Server(lambda request: next(answers))
    first = client.post(server.url, b"{}", {})
    assert (first.status_code, first.text) == (201, "abcdefg")
    assert client.post(server.url, b"{}", {}).text == "已收到"
    assert client.post(server.url, b"{}", {}).status_code == 204
    assert client.post(server.url, b"{}", {}).text == "x"
    assert server.connections == 1  # every answer read to its end: the connection lives on


def test_a_closing_or_old_server_gets_a_new_connection(client: KeepAliveTransport) -> None:
    answers = iter(
        [
            ok(extra=b"Connection: close\r\n"),
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            ok(),
        ]
    )
    server = Server(lambda request: next(answers), close_after_each=True)
    assert client.post(server.url, b"{}", {}).status_code == 200
    assert client.post(server.url, b"{}", {}).text == "until the end"
    assert client.post(server.url, b"{}", {}).status_code == 200
    assert server.connections == 3


def test_an_http_1_0_keep_alive_is_kept_only_with_a_length(client: KeepAliveTransport) -> None:
    """HTTP/1.0 with ``Connection: keep-alive`` and a length: the connection
    is used again. The same without a length can only end when the server
    closes: read to the end, and the next request gets a new connection."""
    answers = iter(
        [
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nfirst",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nsecond, to the end",
            ok(b"third"),
        ]
    )
    server = Server(lambda request: next(answers), close_after={2})
    assert client.post(server.url, b"{}", {}).text == "first"
    assert client.post(server.url, b"{}", {}).text == "second, to the end"
    assert server.connections == 1  # the first was kept for the second
    assert client.post(server.url, b"{}", {}).text == "third"
    assert server.connections == 2  # the second's was not kept


def test_an_idle_connection_the_server_closed_is_tried_once_more(
    client: KeepAliveTransport,
) -> None:
    server = Server(lambda request: ok(), close_after_each=True)  # closes each after answering
    assert client.post(server.url, b"{}", {}).status_code == 200
    time.sleep(0.1)
    assert client.post(server.url, b"{}", {}).status_code == 200  # on a new connection
    assert server.connections == 2 and len(server.requests) == 2  # sent once each


def test_no_answer_in_time_is_a_timeout_and_a_dead_server_unavailable(
    client: KeepAliveTransport,
) -> None:
    def slow(request: bytes) -> bytes:
        time.sleep(2)
        return ok()

    server = Server(slow)
    with pytest.raises(EndpointTimedOut):
        client.post(server.url, b"{}", {})
    silent = Server(lambda request: None)  # takes the request, closes without a word
    with pytest.raises(EndpointUnavailable):
        client.post(silent.url, b"{}", {})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with pytest.raises(EndpointUnavailable):
        client.post(nobody, b"{}", {})


def test_a_header_that_would_split_the_request_is_not_sent(client: KeepAliveTransport) -> None:
    server = Server(lambda request: ok())
    with pytest.raises(EndpointUnavailable, match="header 'X-Order' holds a line break"):
        client.post(server.url, b"{}", {"X-A": "fine", "X-Order": "1\r\nX-Injected: yes"})
    with pytest.raises(EndpointUnavailable, match=re.escape("header 'X-\\nB' holds")):
        client.post(server.url, b"{}", {"X-\nB": "fine"})
    with pytest.raises(EndpointUnavailable, match="the URL holds a line break"):
        client.post(server.url + "a\0b", b"{}", {"X-A": "fine"})  # urlsplit drops CR, LF
    with pytest.raises(EndpointUnavailable, match="header 'X-Nul' holds a line break"):
        client.post(server.url, b"{}", {"X-Nul": "a\0b"})
    assert server.requests == []


def test_a_huge_answer_is_cut_and_a_broken_one_refused(client: KeepAliveTransport) -> None:
    huge = b"a" * (MOST_BODY_BYTES + 10)
    answers = iter([ok(huge), ok(), b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"])
    server = Server(lambda request: next(answers))
    assert len(client.post(server.url, b"{}", {}).text) == MOST_BODY_BYTES
    assert client.post(server.url, b"{}", {}).status_code == 200  # the rest was read past
    answer_cut = Server(
        lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        close_after_each=True,
    )
    with pytest.raises(EndpointUnavailable):
        client.post(answer_cut.url, b"{}", {})
    garbage = Server(lambda request: b"SMTP ready\r\n\r\n")
    with pytest.raises(EndpointUnavailable):
        client.get(garbage.url, {})


def test_connections_a_server_closed_are_not_kept(client: KeepAliveTransport) -> None:
    """A server that closes after every answer (HTTP/1.0 style): each request
    has its own connection, and the closed ones are let go (the fault suite's
    consumers grew 100 MB in 30 minutes against such a server)."""
    server = Server(lambda request: ok(extra=b"Connection: close\r\n"), close_after_each=True)
    for _ in range(20):
        assert client.post(server.url, b"{}", {}).status_code == 200
    assert server.connections == 20
    assert len(client._all) == 0
