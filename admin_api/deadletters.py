"""Dead letters: recorded from the dead-letter queues into the database, and
the operations on them (retry, discard), each written to the audit log.

A dead letter is recorded once per (queue, message id); if the same message
fails again after a retry, its row is reopened and its count goes up.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, update

from admin_api.causes import cause_of
from canonical.envelope import (
    H_ATTEMPT,
    H_CHANNEL,
    H_DETAIL,
    H_ORDER_NUMBER,
    H_REASON,
    H_SOURCE_QUEUE,
    utcnow,
)
from infra.audit import audit, jsonable
from infra.database import dialect_insert, translate_db_errors
from infra.messages import (
    H_CORRELATION,
    H_DELIVERIES,
    H_EXCEPTION,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_ROUTING_KEY,
    Delivery,
    OutgoingMessage,
)
from infra.stored_bodies import decode_body, encode_body
from infra.tables import dead_letters
from infra.topology import is_delivery_routing_key
from router.outbox import enqueue

log = logging.getLogger(__name__)

# Headers we add when dead-lettering; a retry sends the original headers only.
_FAILURE_HEADERS = {
    H_REASON,
    H_DETAIL,
    H_EXCEPTION,
    H_SOURCE_QUEUE,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_ROUTING_KEY,
    H_DELIVERIES,
    H_CORRELATION,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
}


@dataclass(frozen=True)
class Failure:
    queue: str
    exchange: str
    routing_key: str
    reason: str
    detail: str | None
    exception: str | None


def describe_failure(delivery: Delivery) -> Failure:
    """Where a dead-lettered message came from and why: our headers, or x-death."""
    headers = delivery.headers
    deaths = headers.get("x-death") or []
    death: dict[str, Any] = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    queue = headers.get(H_SOURCE_QUEUE) or death.get("queue") or delivery.queue.removesuffix(".dlq")
    routing_keys = death.get("routing-keys") or [""]
    reason = headers.get(H_REASON) or (
        f"broker_{death.get('reason')}" if death.get("reason") else "unknown"
    )
    detail = headers.get(H_DETAIL)
    if detail is None and death:
        detail = (
            f"the broker dead-lettered it ({death.get('reason')}) after "
            f"{headers.get('x-delivery-count', death.get('count', '?'))} deliveries"
        )
    return Failure(
        queue=str(queue),
        exchange=str(headers.get(H_ORIGINAL_EXCHANGE, death.get("exchange", ""))),
        routing_key=str(headers.get(H_ORIGINAL_ROUTING_KEY, routing_keys[0])),
        reason=str(reason),
        detail=None if detail is None else str(detail),
        exception=headers.get(H_EXCEPTION),
    )


MESSAGE_ID_LENGTH: int = dead_letters.c.message_id.type.length  # type: ignore[attr-defined]


def _fit(column: str, value: Any) -> Any:
    length = getattr(dead_letters.c[column].type, "length", None)
    if isinstance(value, str) and length is not None and len(value) > length:
        return value[: length - 1] + "…"
    return value


class DeadLetterRecorder:
    """Bus handler for the dead-letter queues."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle(self, delivery: Delivery) -> None:
        failure = describe_failure(delivery)
        body, encoding = encode_body(delivery.body)
        now = utcnow()
        headers = jsonable(delivery.headers)
        channel = delivery.headers.get(H_CHANNEL)
        order_number = delivery.headers.get(H_ORDER_NUMBER)
        message_id = delivery.body_key()
        if len(message_id) > MESSAGE_ID_LENGTH:  # a foreign sender's id: keep it unique
            message_id = "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()
        values = {
            "message_id": message_id,
            "queue": failure.queue,
            "exchange": failure.exchange,
            "routing_key": failure.routing_key,
            "channel": channel if isinstance(channel, str) else None,
            "order_number": order_number if isinstance(order_number, str) else None,
            "reason": failure.reason,
            "detail": failure.detail,
            "cause": cause_of(failure.reason, failure.detail),
            "exception": failure.exception,
            "headers": headers,
            "body": body,
            "body_encoding": encoding,
            "attempts": 1,
            "status": "open",
            "first_failed_at": now,
            "last_failed_at": now,
        }
        # Whatever a foreign publisher put in its headers must fit the columns:
        # a row the database refuses would be retried from the DLQ for ever.
        values = {k: _fit(k, v) for k, v in values.items()}
        with translate_db_errors(), self.engine.begin() as conn:
            stmt = dialect_insert(conn, dead_letters).values(**values)
            stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["queue", "message_id"],
                set_={
                    "reason": values["reason"],
                    "detail": values["detail"],
                    "cause": values["cause"],
                    "exception": values["exception"],
                    "headers": headers,
                    "attempts": dead_letters.c.attempts + 1,
                    "status": "open",
                    "last_failed_at": now,
                    "resolved_at": None,
                    "resolved_by": None,
                },
            )
            conn.execute(stmt)
        log.warning(
            "dead letter recorded: %s from %s: %s %s",
            values["message_id"],
            failure.queue,
            failure.reason,
            failure.detail or "",
        )


DELIVERY_EDIT_REFUSED = (
    "this dead letter is a delivery to one system of an order the router accepted: an edit "
    "would reach that system past the router's rules and leave orderbus's copy of the order "
    "unchanged. Correct the order at its source (the channel sends a new revision, which the "
    "router checks), or retry this one as it is"
)


def is_delivery(routing_key: str | None) -> bool:
    """Whether a dead letter is a delivery to a system (infra/topology.py)."""
    return is_delivery_routing_key(routing_key)


class DeadLetterStateError(Exception):
    """The dead letter is not open (already retried or discarded)."""


def _lock_open(conn: Connection, dead_letter_id: int) -> Row[Any]:
    """The dead letter's row, locked; KeyError if absent, DeadLetterStateError if not open."""
    row = conn.execute(
        select(dead_letters).where(dead_letters.c.id == dead_letter_id).with_for_update()
    ).first()
    if row is None:
        raise KeyError(dead_letter_id)
    if row.status != "open":
        raise DeadLetterStateError(f"dead letter {dead_letter_id} is {row.status}, not open")
    return row


def retry(
    conn: Connection,
    dead_letter_id: int,
    actor: str,
    note: str | None = None,
    *,
    edited: bytes | None = None,
) -> str:
    """Send a dead letter back through its normal path (via the outbox).

    The same message id is kept, so the router's tracking record and the
    consumers' inbox still deduplicate it. With ``edited``, that body is sent
    instead of the original, which stays in the dead letter; the audit entry
    keeps both and their difference. Returns the message id.
    """
    row = _lock_open(conn, dead_letter_id)
    if edited is not None and is_delivery(row.routing_key):
        raise DeadLetterStateError(DELIVERY_EDIT_REFUSED)
    message, attempt = _resent(row, edited)
    enqueue(conn, message)
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id)
        .values(status="retried", resolved_at=utcnow(), resolved_by=actor)
    )
    detail: dict[str, Any] = {
        "before": {"status": row.status, "attempts": row.attempts},
        "after": {"status": "retried", "attempt": attempt},
        "message_id": row.message_id,
        "queue": row.queue,
        "reason": row.reason,
        "note": note,
    }
    if edited is not None:
        _add_edit(detail, decode_body(row.body, row.body_encoding), edited)
    action = "dead_letter.edit_and_retry" if edited is not None else "dead_letter.retry"
    audit(conn, actor, action, "dead_letter", str(dead_letter_id), detail)
    return str(row.message_id)


def _resent(row: Row[Any], edited: bytes | None) -> tuple[OutgoingMessage, int]:
    """The message as it is sent again: its original headers (ours of the
    failure left out), the next attempt number, the same id; and that number."""
    correlation_id = dict(row.headers).get(H_CORRELATION)
    headers = {k: v for k, v in dict(row.headers).items() if k not in _FAILURE_HEADERS}
    try:
        attempt = int(headers.get(H_ATTEMPT, 1)) + 1
    except (TypeError, ValueError):
        attempt = 2
    headers[H_ATTEMPT] = attempt
    exchange, routing_key = row.exchange, row.routing_key
    if not exchange and not routing_key:
        routing_key = row.queue  # via the default exchange, straight to its queue
    message = OutgoingMessage(
        exchange=exchange,
        routing_key=routing_key,
        body=edited if edited is not None else decode_body(row.body, row.body_encoding),
        message_id=row.message_id,
        headers=headers,
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
    )
    return message, attempt


def _add_edit(detail: dict[str, Any], original: bytes, edited: bytes) -> None:
    """The audit keeps the original, the edit and their difference."""
    old_text = original.decode("utf-8", errors="replace")
    new_text = edited.decode("utf-8", errors="replace")
    detail["before"]["body"] = old_text
    detail["after"]["body"] = new_text
    detail["diff"] = "".join(
        difflib.unified_diff(
            _lines(old_text), _lines(new_text), "original", "edited", lineterm="\n"
        )
    )


def _lines(text: str) -> list[str]:
    """A JSON body one member per line, so a diff shows what changed."""
    try:
        text = json.dumps(json.loads(text), ensure_ascii=False, indent=1, sort_keys=True)
    except ValueError:
        pass
    return [line + "\n" for line in text.splitlines()]


def discard(conn: Connection, dead_letter_id: int, actor: str, note: str) -> None:
    row = _lock_open(conn, dead_letter_id)
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id)
        .values(status="discarded", resolved_at=utcnow(), resolved_by=actor)
    )
    audit(
        conn,
        actor,
        "dead_letter.discard",
        "dead_letter",
        str(dead_letter_id),
        {"before": {"status": row.status}, "after": {"status": "discarded"}, "note": note},
    )


__all__ = [
    "DeadLetterRecorder",
    "DeadLetterStateError",
    "audit",
    "decode_body",
    "discard",
    "encode_body",
    "retry",
]
