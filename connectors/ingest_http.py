"""What every ingest route shares: reading a body no larger than the limit,
the problem+json answer, and refusing a request, which always records it in
``rejected_requests`` first, so that nothing refused vanishes unseen."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from canonical.errors import OrderbusError
from connectors.base import ConnectorError
from connectors.rejections import record_rejection
from connectors.signature import SignatureError
from infra.bus import Publisher
from infra.messages import OutgoingMessage
from infra.request_bodies import BodyIncomplete, read_limited

if TYPE_CHECKING:
    from connectors.ingest_app import IngestDeps

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# What is kept of a request to a channel that does not exist.
BRIEF_HEADERS = frozenset({"user-agent", "content-type", "content-length"})
BRIEF_BODY_BYTES = 256


class RecordBudget:
    """At most ``per_minute`` records of one kind a minute (requests to
    unknown channels, which anyone can send without a secret); the ones past
    it are counted, and the next record says how many there were."""

    def __init__(self, per_minute: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._window = clock()
        self._used = 0
        self._skipped = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        """(record this one?, how many were not recorded since the last one)."""
        with self._lock:
            now = self.clock()
            if now - self._window >= 60:
                self._window, self._used = now, 0
            if self._used >= self.per_minute:
                self._skipped += 1
                return False, 0
            self._used += 1
            skipped, self._skipped = self._skipped, 0
            return True, skipped


def problem(status: int, reason: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:orderbus:problem:{reason}",
        "title": reason,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def as_error(status: int, exc: SignatureError | OrderbusError) -> ConnectorError:
    return ConnectorError(status, exc.reason, exc.detail)


def deps_of(request: Request) -> IngestDeps:
    deps: IngestDeps = request.app.state.ingest
    return deps


@dataclass
class Received:
    """One request as it came: where it was sent (a channel, or "shipments"),
    its body (up to the limit) and its full size."""

    request: Request
    where: str
    body: bytes
    size: int
    too_large: bool
    incomplete: str | None = None  # why the body did not come whole

    @classmethod
    async def read(cls, request: Request, where: str, limit: int) -> Received:
        """Reading stops past ``limit``: a body is never held whole beyond it;
        a body that does not come whole in ORDERBUS_BODY_TIMEOUT is kept as far
        as it came, with the reason."""
        timeout = deps_of(request).settings.body_timeout
        try:
            body, size, too_large = await read_limited(request, limit, timeout)
        except BodyIncomplete as exc:
            return cls(request, where, exc.body, len(exc.body), False, exc.detail)
        return cls(request, where, body, size, too_large)

    def body_problem(self) -> ConnectorError | None:
        """413 for a body over the limit, 400 for one that did not come whole."""
        if self.too_large:
            limit = deps_of(self.request).settings.max_body_bytes
            return ConnectorError(413, "payload_too_large", f"body over {limit} bytes")
        if self.incomplete:
            return ConnectorError(400, "incomplete_body", self.incomplete)
        return None

    async def record(self, status: int, reason: str, detail: str, *, brief: bool = False) -> None:
        """Record the request; ``brief`` (a request to a channel that does not
        exist, which anyone can send) keeps only a little of it."""
        request = self.request
        headers, body = dict(request.headers), self.body
        if brief:
            headers = {k: v for k, v in headers.items() if k.lower() in BRIEF_HEADERS}
            body = body[:BRIEF_BODY_BYTES]
        await run_in_threadpool(
            record_rejection,
            deps_of(request).engine,
            channel=self.where,
            status_code=status,
            reason=reason,
            detail=detail,
            headers=headers,
            body=body,
            body_size=self.size,
            remote_addr=request.client.host if request.client else None,
            spool=deps_of(request).rejection_spool,
        )

    async def refuse(self, error: ConnectorError, *, brief: bool = False) -> JSONResponse:
        if not brief:
            await self.record(error.status, error.reason, error.detail)
        else:
            allowed, skipped = deps_of(self.request).unknown_channels.take()
            if allowed:
                more = f" (+{skipped} more not recorded one by one)" if skipped else ""
                await self.record(error.status, error.reason, error.detail + more, brief=True)
        log.warning("ingest %s: %d %s: %s", self.where, error.status, error.reason, error.detail)
        extra: dict[str, Any] = {"errors": error.errors} if error.errors else {}
        return problem(error.status, error.reason, error.detail, **extra)


# Publishing waits for the broker's confirm on a thread, the event loop
# answering other requests meanwhile: a thread of this executor publishes
# what every request has waiting, one batch after another (ConfirmGroups).
# The threads are named after the thread that starts them (ob-ingest: the
# benchmark's split).
_PUBLISHING = ThreadPoolExecutor(max_workers=8)
_Waiting = tuple[OutgoingMessage, "asyncio.Future[None]", asyncio.AbstractEventLoop]


class ConfirmGroups:
    """Each request's messages, published in batches with the other requests'.

    A request's message waits in a list; when no batch is being published, a
    publishing thread is started, which publishes everything waiting as one
    batch (one wait for the broker's confirms, :meth:`Publisher.publish_many`),
    gives each request its own message's result, and goes on while more
    waits. Each request still returns only after its own message was
    confirmed. A thread hand-off per request (and the threads' wake-ups
    around the publisher's shared batches) was a seventh of the ingest's CPU
    a webhook; this costs one hand-off a batch."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._publishing = False

    async def publish(self, message: OutgoingMessage) -> None:
        """Return once the broker confirmed ``message``; raise its error
        (TransientError and its kinds) if it did not. A request cancelled
        meanwhile waits for its message's result before it stops."""
        loop = asyncio.get_running_loop()
        confirmed: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiting.append((message, confirmed, loop))
            start, self._publishing = not self._publishing, True
        if start:
            _PUBLISHING.submit(self._publish_waiting)
        try:
            await asyncio.shield(confirmed)
        except asyncio.CancelledError:
            await asyncio.wait([confirmed])
            raise

    def _publish_waiting(self) -> None:
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._publishing = False
                    return
            try:
                results = self.publisher.publish_many([message for message, _, _ in batch])
            except Exception as exc:  # each request answers with it (503)
                results = [exc] * len(batch)
            except BaseException:  # the thread is stopping: nobody is left waiting forever
                with self._lock:
                    self._publishing = False
                stopped = RuntimeError("the ingest's publishing thread stopped")
                self._hand_back(batch, [stopped] * len(batch))
                raise
            self._hand_back(batch, results)

    @staticmethod
    def _hand_back(batch: list[_Waiting], results: list[Exception | None]) -> None:
        """Each request's own result, on its own event loop."""
        for loop in {loop for _, _, loop in batch}:
            settled = [(f, r) for (_, f, at), r in zip(batch, results, strict=True) if at is loop]
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop has closed: nobody waits there any more
                log.warning("ingest: %d confirm(s) for a closed event loop", len(settled))


def _settle(settled: list[tuple[asyncio.Future[None], Exception | None]]) -> None:
    for future, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
