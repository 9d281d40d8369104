"""How orderbus speaks HTTP to the systems it delivers to, and reads their answers.

A :class:`Transport` sends one request and gives back an :class:`Answer`, or
raises EndpointUnavailable when no answer came. :class:`KeepAliveTransport`
(the default) keeps one HTTP/1.1 connection per thread and host and speaks
HTTP/1.1 on it directly (a fifth of ``http.client``'s CPU per request, a
twentieth of httpx's); :class:`HttpxTransport` wraps an
``httpx.Client``, which is also the seam for tests (``httpx.MockTransport``).
"""

from __future__ import annotations

import codecs
import json
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

import httpx

from canonical.errors import DeliveryRejected, EndpointTimedOut, EndpointUnavailable


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST; raise EndpointUnavailable when no answer came back."""
        ...

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        """GET (token and result endpoints of target systems); as :meth:`post`."""
        ...

    def close(self) -> None: ...


class HttpxTransport:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise EndpointTimedOut(f"{url}: no answer in time ({exc!r})") from exc
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"{url}: {exc!r}") from exc
        return Answer(response.status_code, response.text)

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        try:
            response = self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"{url}: {exc!r}") from exc
        return Answer(response.status_code, response.text)

    def close(self) -> None:
        self.client.close()


class KeepAliveTransport:
    """One persistent HTTP/1.1 connection per thread and origin, written and
    read on the socket directly.

    The request goes out in one ``sendmsg`` of its head and its body (the
    body is not copied); the answer is read with a small HTTP/1.1 reader:
    ``Content-Length``, chunked, or until the server closes; interim 1xx
    answers skipped; at most :data:`MOST_HEADER_BYTES` of headers and
    :data:`MOST_BODY_BYTES` of body kept (the rest read and dropped, or the
    connection closed). ``http.client`` cost 0.10 ms of CPU per request here,
    this 0.02 ms (``python -m bench``'s sink).

    A request on a reused connection that the server had closed meanwhile
    (an idle keep-alive timeout) is sent once more on a new connection; any
    other failure closes the connection and raises EndpointUnavailable
    (EndpointTimedOut when no answer came in ``timeout`` seconds).
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._all: set[_Connection] = set()  # open ones, to close at the end
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        return self._request("POST", url, body, headers)

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        return self._request("GET", url, None, headers)

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointUnavailable(f"{url}: not an http(s) URL")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _request_head(method, path, parts.netloc, body, headers)
        origin = (parts.scheme, parts.netloc)
        for _ in range(2):
            try:
                conn, reused = self._connection(parts)
            except OSError as exc:  # never reached the system (a connect timeout too)
                raise EndpointUnavailable(f"{url}: {exc!r}") from exc
            try:
                conn.send(head, body)
                status, answer_headers, data, keep = conn.read_answer(method)
            except _ClosedBeforeAnswer as exc:
                self._drop(origin)
                if reused:
                    continue  # the server closed an idle connection: once more
                raise EndpointUnavailable(f"{url}: {exc}") from exc
            except TimeoutError as exc:
                self._drop(origin)
                raise EndpointTimedOut(f"{url}: no answer in time ({exc!r})") from exc
            except (OSError, ValueError) as exc:
                self._drop(origin)
                raise EndpointUnavailable(f"{url}: {exc!r}") from exc
            if not keep:
                self._drop(origin)
            return Answer(status, data.decode(_charset(answer_headers), errors="replace"))
        raise AssertionError("unreachable")

    def _connection(self, parts: SplitResult) -> tuple[_Connection, bool]:
        pool: dict[tuple[str, str], _Connection] = self._local.__dict__.setdefault("pool", {})
        origin = (parts.scheme, parts.netloc)
        conn = pool.get(origin)
        if conn is not None:
            return conn, True
        conn = _Connection(parts, self.timeout)
        pool[origin] = conn
        with self._lock:
            self._all.add(conn)
        return conn, False

    def _drop(self, origin: tuple[str, str]) -> None:
        conn = self._local.__dict__.get("pool", {}).pop(origin, None)
        if conn is not None:
            conn.close()
            with self._lock:  # a server that closes after each answer: no pile of old ones
                self._all.discard(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


MOST_HEADER_BYTES = 64 * 1024
MOST_BODY_BYTES = 1024 * 1024
FORBIDDEN_IN_HEADERS = re.compile(r"[\r\n\0]")
# set by the transport itself; the caller's are not sent
OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))


class _ClosedBeforeAnswer(OSError):
    """The connection ended before the first byte of an answer."""


def _request_head(
    method: str, path: str, host: str, body: bytes | None, headers: dict[str, str]
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(
        f"{name}: {value}" for name, value in headers.items() if name.lower() not in OWN_HEADERS
    )
    # one search over all of it (a request has a dozen headers); the lines
    # are joined only after, so a line break found is one a value held
    if FORBIDDEN_IN_HEADERS.search("".join(lines)):
        for name, value in headers.items():
            if name.lower() not in OWN_HEADERS and FORBIDDEN_IN_HEADERS.search(name + value):
                raise EndpointUnavailable(f"header {name!r} holds a line break: not sent")
        raise EndpointUnavailable("the URL holds a line break: not sent")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _charset(headers: dict[str, str]) -> str:
    for part in headers.get("content-type", "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip('"')
            try:
                codecs.lookup(charset)
            except LookupError:
                return "utf-8"
            return charset
    return "utf-8"


class _Connection:
    def __init__(self, parts: SplitResult, timeout: float) -> None:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def send(self, head: bytes, body: bytes | None) -> None:
        try:
            if body and not isinstance(self.sock, ssl.SSLSocket):
                sent = self.sock.sendmsg([head, body])  # head and body, no copy
                if sent < len(head) + len(body):
                    self.sock.sendall((head + body)[sent:])
            else:
                self.sock.sendall(head + (body or b""))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClosedBeforeAnswer(f"connection closed while sending ({exc!r})") from exc

    def _line(self, first: bool = False) -> bytes:
        try:
            line = self.reader.readline(MOST_HEADER_BYTES + 1)
        except ConnectionResetError as exc:
            if first:
                raise _ClosedBeforeAnswer(repr(exc)) from exc
            raise
        if not line and first:
            raise _ClosedBeforeAnswer("connection closed before an answer")
        if len(line) > MOST_HEADER_BYTES or not line.endswith(b"\n"):
            raise ValueError("the answer's head is cut or too long")
        return line

    def read_answer(self, method: str) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, headers, body, whether the connection may be used again)."""
        first = True
        while True:
            status_line = self._line(first).decode("latin-1").rstrip("\r\n")
            first = False
            version, _, rest = status_line.partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(f"not an HTTP/1 answer: {status_line[:80]!r}")
            status = int(rest[:3])
            headers = self._headers()
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue, 103): the real answer follows
            break
        keep = version == "HTTP/1.1"
        connection = headers.get("connection", "").lower()
        if "close" in connection:
            keep = False
        elif "keep-alive" in connection:
            keep = True
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, headers, self._chunked(), keep
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"])), keep
        return status, headers, self.reader.read(MOST_BODY_BYTES), False  # until it closes

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        size = 0
        while True:
            line = self._line()
            size += len(line)
            if size > MOST_HEADER_BYTES:
                raise ValueError("the answer's headers are too long")
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"not a header line: {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value

    def _exactly(self, size: int) -> bytes:
        if size < 0:
            raise ValueError("a negative Content-Length")
        kept = self.reader.read(min(size, MOST_BODY_BYTES))
        rest = size - len(kept)
        while rest > 0 and len(kept) == min(size, MOST_BODY_BYTES):  # too big: read and drop
            dropped = self.reader.read(min(rest, 65536))
            if not dropped:
                break
            rest -= len(dropped)
        if len(kept) < min(size, MOST_BODY_BYTES) or rest > 0:
            raise ValueError("the answer ended before its Content-Length")
        return kept

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass  # trailers
                return bytes(body[:MOST_BODY_BYTES])
            chunk = self.reader.read(size)
            if len(chunk) < size:
                raise ValueError("the answer ended inside a chunk")
            if len(body) < MOST_BODY_BYTES:
                body += chunk
            self._line()  # the chunk's CRLF

    def close(self) -> None:
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass


def http_problem(system: str, answer: Answer, detail: str) -> Exception:
    """The usual reading of an HTTP status: 429 and 5xx try again, other 4xx refuse."""
    if answer.status_code == 429 or answer.status_code >= 500 or answer.status_code == 408:
        return EndpointUnavailable(f"{system} answered {answer.status_code}: {detail}")
    return DeliveryRejected(
        f"{system} refused the order with {answer.status_code}: {detail}",
        status_code=answer.status_code,
        response_body=answer.text[:4000],
    )


def answer_json(answer: Answer) -> Any:
    """The answer's JSON, or None when it is not JSON (a proxy's error page)."""
    try:
        return json.loads(answer.text)
    except ValueError:
        return None


def refused(system: str, detail: str, answer: Answer | None = None) -> DeliveryRejected:
    return DeliveryRejected(
        f"{system} refused the order: {detail}",
        status_code=answer.status_code if answer else 0,
        response_body=answer.text[:4000] if answer else "",
    )
