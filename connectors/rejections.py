"""A record of every request a connector refused, for inspection (admin API)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import Engine, insert

from canonical.envelope import utcnow
from infra.masking import redact_headers
from infra.stored_bodies import encode_body
from infra.tables import rejected_requests

log = logging.getLogger(__name__)

EXCERPT_BYTES = 4096


def record_rejection(
    engine: Engine,
    *,
    channel: str,
    status_code: int,
    reason: str,
    detail: str,
    headers: Mapping[str, str],
    body: bytes,
    body_size: int,
    remote_addr: str | None,
) -> None:
    excerpt, encoding = encode_body(body[:EXCERPT_BYTES])
    if encoding != "utf-8":
        excerpt = f"base64:{excerpt}"
    safe_headers = redact_headers(headers)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(rejected_requests).values(
                    channel=channel[:64],
                    status_code=status_code,
                    reason=reason,
                    detail=detail[:4000],
                    remote_addr=remote_addr,
                    headers=safe_headers,
                    body_excerpt=excerpt,
                    body_size=body_size,
                    received_at=utcnow(),
                )
            )
    except Exception:
        # The answer to the sender does not depend on this record; the log keeps it.
        log.exception(
            "could not record rejected request: channel=%s status=%s reason=%s detail=%s",
            channel,
            status_code,
            reason,
            detail,
        )
