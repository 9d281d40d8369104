"""What every ingest route shares: reading a body no larger than the limit,
the problem+json answer, and refusing a request, which always records it in
``rejected_requests`` first, so that nothing refused vanishes unseen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from canonical.errors import OrderbusError
from connectors.base import ConnectorError
from connectors.rejections import record_rejection
from connectors.signature import SignatureError
from infra.request_bodies import read_limited

if TYPE_CHECKING:
    from connectors.ingest_app import IngestDeps

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


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

    @classmethod
    async def read(cls, request: Request, where: str, limit: int) -> Received:
        """Reading stops past ``limit``: a body is never held whole beyond it."""
        body, size, too_large = await read_limited(request, limit)
        return cls(request, where, body, size, too_large)

    async def record(self, status: int, reason: str, detail: str) -> None:
        request = self.request
        await run_in_threadpool(
            record_rejection,
            deps_of(request).engine,
            channel=self.where,
            status_code=status,
            reason=reason,
            detail=detail,
            headers=dict(request.headers),
            body=self.body,
            body_size=self.size,
            remote_addr=request.client.host if request.client else None,
        )

    async def refuse(self, error: ConnectorError) -> JSONResponse:
        await self.record(error.status, error.reason, error.detail)
        log.warning("ingest %s: %d %s: %s", self.where, error.status, error.reason, error.detail)
        extra: dict[str, Any] = {"errors": error.errors} if error.errors else {}
        return problem(error.status, error.reason, error.detail, **extra)
