"""Delivery of an order to an existing system over HTTP.

The request carries ``Idempotency-Key: <message id>``: orderbus delivers at
least once and the key lets the target drop a copy (e.g. after a crash between
its 200 and our inbox commit).

A :class:`Transport` sends one POST. :class:`KeepAliveTransport` (the default)
keeps one HTTP/1.1 connection per thread and host on the standard library's
``http.client``, about a third of httpx's CPU per request (measured by
``python -m bench``); :class:`HttpxTransport` wraps an ``httpx.Client``, which
is also the seam for tests (``httpx.MockTransport``).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from canonical.errors import DeliveryRejected, EndpointUnavailable, PermanentError

if TYPE_CHECKING:
    from targets.adapters.base import TargetAdapter

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class GaveUp(PermanentError):
    """A transient failure outlived its retries: dead-letter with the cause's reason."""

    def __init__(self, cause: EndpointUnavailable, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {cause.detail}", reason=cause.reason)
        self.attempts = attempts


@dataclass(frozen=True)
class Sent:
    status_code: int
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 4.0


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


class HttpDelivery:
    """Deliver an order: POST its canonical JSON to ``url``, or, with an
    ``adapter`` (targets/adapters/), the request that system's API wants."""

    def __init__(
        self,
        target: str,
        url: str,
        transport: Transport,
        policy: RetryPolicy = RetryPolicy(),
        adapter: TargetAdapter | None = None,
    ) -> None:
        self.target = target
        self.url = url
        self.transport = transport
        self.policy = policy
        self.adapter = adapter

    def _send_once(self, body: bytes, headers: dict[str, str]) -> int:
        if self.adapter is not None:
            return self._send_adapted(body, headers)
        try:
            response = self.transport.post(self.url, body, headers)
        except EndpointUnavailable as exc:
            raise EndpointUnavailable(f"{self.target} endpoint {exc.detail}") from exc
        if response.status_code in RETRYABLE_STATUS:
            raise EndpointUnavailable(
                f"{self.target} endpoint answered {response.status_code}: {response.text[:500]}"
            )
        if response.status_code >= 400:
            raise DeliveryRejected(
                f"{self.target} endpoint rejected the order with {response.status_code}: "
                f"{response.text[:1000]}",
                status_code=response.status_code,
                response_body=response.text[:4000],
            )
        return response.status_code

    def _send_adapted(self, body: bytes, headers: dict[str, str]) -> int:
        adapter = self.adapter
        assert adapter is not None
        try:
            order = json.loads(body)
        except ValueError as exc:
            raise DeliveryRejected(
                f"{self.target}: not JSON: {exc}", status_code=0, response_body=""
            ) from exc
        try:
            return adapter.deliver(order, headers.get("Idempotency-Key", ""), self.transport)
        except (DeliveryRejected, EndpointUnavailable):
            raise
        except (ValueError, KeyError, TypeError) as exc:  # the mapping cannot be applied
            raise DeliveryRejected(
                f"{self.target}: the order cannot be put into {adapter.name}: {exc}",
                status_code=0,
                response_body="",
            ) from exc

    def send(self, body: bytes, headers: dict[str, str]) -> Sent:
        """Deliver; DeliveryRejected on a 4xx, GaveUp once transient retries run out."""
        try:
            # The first attempt directly: tenacity's machinery costs about as
            # much CPU as a local request, and most requests succeed at once.
            return Sent(self._send_once(body, headers), 1)
        except EndpointUnavailable as exc:
            if self.policy.attempts <= 1:
                raise GaveUp(exc, 1) from exc
            first = exc
        policy = self.policy
        log.warning("%s: attempt 1 failed (%s); retrying", self.target, first)
        time.sleep(policy.initial_wait + random.uniform(0, policy.initial_wait))  # noqa: S311

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: attempt %d failed (%s); retrying", self.target, 1 + state.attempt_number, exc
            )

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts - 1),
            wait=wait_exponential(multiplier=2 * policy.initial_wait, max=policy.max_wait)
            + wait_random(0, policy.initial_wait),
            retry=retry_if_exception_type(EndpointUnavailable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 1
        try:
            for attempt in retrying:
                with attempt:
                    attempts = 1 + attempt.retry_state.attempt_number
                    status = self._send_once(body, headers)
        except EndpointUnavailable as exc:
            raise GaveUp(exc, attempts) from exc
        return Sent(status, attempts)
