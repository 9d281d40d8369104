"""How orderbus speaks HTTP to the systems it delivers to, and reads their answers.

A :class:`Transport` sends one request and gives back an :class:`Answer`, or
raises EndpointUnavailable when no answer came. :class:`KeepAliveTransport`
(the default) keeps one HTTP/1.1 connection per thread and host on the
standard library's ``http.client``, about a third of httpx's CPU per request
(measured by ``python -m bench``); :class:`HttpxTransport` wraps an
``httpx.Client``, which is also the seam for tests (``httpx.MockTransport``).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

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
    """One persistent connection per thread and origin, on ``http.client``.

    A request on a reused connection that the server had closed meanwhile
    (an idle keep-alive timeout) is sent once more on a new connection; any
    other failure closes the connection and raises EndpointUnavailable.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        pool: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "pool", {}
        )
        conn = pool.get((scheme, netloc))
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(netloc, timeout=self.timeout)
        pool[(scheme, netloc)] = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._local.__dict__.get("pool", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        return self._request("POST", url, body, headers)

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        return self._request("GET", url, None, headers)

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EndpointUnavailable(f"{url}: not an http(s) URL")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for _ in range(2):
            conn, reused = self._connection(parts.scheme, parts.netloc)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(parts.scheme, parts.netloc)
                if reused:
                    continue  # the server closed an idle connection: once more
                raise EndpointUnavailable(f"{url}: {exc!r}") from exc
            except TimeoutError as exc:
                self._drop(parts.scheme, parts.netloc)
                raise EndpointTimedOut(f"{url}: no answer in time ({exc!r})") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(parts.scheme, parts.netloc)
                raise EndpointUnavailable(f"{url}: {exc!r}") from exc
            if response.will_close:
                self._drop(parts.scheme, parts.netloc)
            charset = response.headers.get_content_charset() or "utf-8"
            return Answer(response.status, data.decode(charset, errors="replace"))
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


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
