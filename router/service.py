"""The router: one input message in, one database transaction out.

For each delivery from the router queue it parses and validates the order,
classifies it against the ``orders`` table, and commits together: the
tracking record (``arrivals``, keyed by message id), the order's state, and
one outbox row per target. The bus acks the input only after this returns,
so a crash anywhere leaves either nothing (the message is redelivered) or
everything (the redelivery finds its arrival and has no second effect).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from canonical.envelope import Envelope, EnvelopeError, utcnow
from canonical.errors import MalformedMessage
from canonical.order import CanonicalOrder, OrderStatus
from router.bus import Delivery
from router.crashpoints import crash_point
from router.database import translate_db_errors
from router.dedup import Known, Outcome, classify, order_number
from router.fanout import targets_for
from router.tables import arrivals, orders, outbox
from router.topology import Topology, delivery_routing_key
from router.validation import validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteResult:
    outcome: Outcome | None  # None: this message was processed before
    order_number: str | None
    targets: tuple[str, ...] = ()


def parse_delivery(delivery: Delivery) -> tuple[Envelope, CanonicalOrder]:
    """Envelope and order of a delivery, or MalformedMessage saying what is wrong."""
    if delivery.content_type and delivery.content_type.split(";")[0].strip() != "application/json":
        raise MalformedMessage(f"content type {delivery.content_type!r} is not application/json")
    try:
        envelope = Envelope.from_message(
            delivery.message_id, delivery.correlation_id, delivery.headers
        )
    except EnvelopeError as exc:
        raise MalformedMessage(str(exc), reason="missing_envelope") from exc
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"body is not UTF-8: {exc}", reason="invalid_encoding") from exc
    try:
        order = CanonicalOrder.model_validate_json(text)
    except ValidationError as exc:
        reason = (
            "malformed_json" if exc.errors()[0]["type"] == "json_invalid" else "schema_mismatch"
        )
        raise MalformedMessage(_summarise(exc), reason=reason) from exc
    if order.channel != envelope.channel:
        raise MalformedMessage(
            f"order channel {order.channel!r} differs from envelope channel {envelope.channel!r}",
            reason="schema_mismatch",
        )
    return envelope, order


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class RouterService:
    def __init__(self, engine: Engine, topology: Topology) -> None:
        self.engine = engine
        self.topology = topology

    def handle(self, delivery: Delivery) -> None:
        """Bus handler. Raises PermanentError (dead letter) or a transient error (retry)."""
        envelope, order = parse_delivery(delivery)
        validate(order)
        self.route(envelope, order)
        crash_point("router.after_commit")

    def route(self, envelope: Envelope, order: CanonicalOrder) -> RouteResult:
        # A concurrent router may insert the same order (or arrival) between our
        # read and our write: the unique constraint stops it, and a second pass
        # sees the winner's row.
        for attempt in range(3):
            try:
                with translate_db_errors(), self.engine.begin() as conn:
                    return self._route_in(conn, envelope, order)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("router: lost a race on %s, retrying", order.business_key)
        raise AssertionError("unreachable")

    def _route_in(self, conn: Connection, envelope: Envelope, order: CanonicalOrder) -> RouteResult:
        seen = conn.execute(
            select(arrivals.c.outcome).where(arrivals.c.message_id == envelope.message_id)
        ).first()
        if seen is not None:
            log.info(
                "router: message %s was processed before (%s)", envelope.message_id, seen.outcome
            )
            return RouteResult(None, None)

        now = utcnow()
        row = conn.execute(
            select(orders)
            .where(
                orders.c.channel == order.channel,
                orders.c.shop == order.shop,
                orders.c.external_id == order.external_id,
            )
            .with_for_update()
        ).first()
        known = (
            Known(
                (row.status_rank, row.source_version, row.source_updated_at),
                row.content_hash,
            )
            if row
            else None
        )
        outcome, detail = classify(known, order)
        number = row.order_number if row else order_number(*order.business_key)
        accepted = order.model_copy(update={"order_number": number})
        previous = OrderStatus(row.status) if row else None
        version = (row.version if row else 0) + (
            1 if outcome in (Outcome.NEW, Outcome.UPDATE) else 0
        )

        if outcome is Outcome.NEW:
            result = conn.execute(
                insert(orders).values(
                    order_number=number,
                    channel=order.channel,
                    shop=order.shop,
                    external_id=order.external_id,
                    **self._state(accepted, version, now),
                    created_at=now,
                )
            )
            order_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        else:
            assert row is not None
            order_id = row.id
            if outcome is Outcome.UPDATE:
                conn.execute(
                    update(orders)
                    .where(orders.c.id == row.id)
                    .values(**self._state(accepted, version, now))
                )

        targets: list[str] = []
        if outcome in (Outcome.NEW, Outcome.UPDATE):
            targets = targets_for(accepted.status, previous)
            self._enqueue(conn, envelope, accepted, version, targets, now)

        conn.execute(
            insert(arrivals).values(
                message_id=envelope.message_id,
                order_id=order_id,
                channel=order.channel,
                external_id=order.external_id,
                outcome=outcome.value,
                detail=detail,
                order_version=version,
                correlation_id=envelope.correlation_id,
                received_at=envelope.received_at,
                processed_at=now,
            )
        )
        log.info(
            "router: %s %s/%s -> %s (%s) targets=%s",
            outcome.value,
            order.channel,
            order.external_id,
            number,
            detail,
            ",".join(targets) or "-",
        )
        return RouteResult(outcome, number, tuple(targets))

    @staticmethod
    def _state(order: CanonicalOrder, version: int, now: datetime) -> dict[str, object]:
        rank, source_version, stamp = order.precedence()
        return {
            "status": order.status.value,
            "status_rank": rank,
            "source_version": source_version,
            "source_updated_at": stamp,
            "content_hash": order.content_hash(),
            "version": version,
            "body": order.to_wire().decode("utf-8"),
            "updated_at": now,
        }

    def _enqueue(
        self,
        conn: Connection,
        envelope: Envelope,
        order: CanonicalOrder,
        version: int,
        targets: list[str],
        now: datetime,
    ) -> None:
        body = order.to_wire().decode("utf-8")
        for target in targets:
            # Deterministic id: the same change to the same target always has
            # the same id, which is the consumers' inbox key.
            message_id = f"{order.order_number}-v{version}-{target}"
            child = envelope.caused(
                message_id, order_number=order.order_number, order_version=version, target=target
            )
            conn.execute(
                insert(outbox).values(
                    message_id=message_id,
                    exchange=self.topology.exchange,
                    routing_key=delivery_routing_key(target),
                    headers=child.headers(),
                    correlation_id=child.correlation_id,
                    body=body,
                    created_at=now,
                    attempts=0,
                )
            )
