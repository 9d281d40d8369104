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


# A publish waits for the broker's confirm, on a thread, the event loop
# answering other requests meanwhile: an executor's hand-off rather than
# anyio's run_in_threadpool, whose capacity limiter and cancel scopes were a
# fifth of the webhook handler's CPU (py-spy, bench.ingest). The threads are
# named after the thread that starts them (ob-ingest: the benchmark's split).
_PUBLISHING = ThreadPoolExecutor(max_workers=64)


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` on a publishing thread; like anyio's, a request
    cancelled meanwhile waits for it to end before it stops."""
    future = asyncio.get_running_loop().run_in_executor(_PUBLISHING, func, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
