"""Delivery consumers (warehouse, finance, notification) with an idempotent inbox.

For each message: if ``(consumer, message id)`` is in the inbox, it was
delivered before: ack, no second effect. Otherwise deliver (retrying transient
failures), record the inbox row, and only then let the bus ack.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, or_, select

from canonical.envelope import Envelope, utcnow
from router.bus import Delivery
from router.crashpoints import crash_point
from router.database import insert_if_absent, translate_db_errors
from router.delivery import HttpDelivery
from router.service import parse_delivery
from router.tables import inbox

log = logging.getLogger(__name__)


class DeliveryConsumer:
    def __init__(self, target: str, engine: Engine, delivery: HttpDelivery) -> None:
        self.target = target
        self.engine = engine
        self.delivery = delivery

    def _seen(self, envelope: Envelope) -> tuple[bool, int | None]:
        """Whether this message was handled before, and the newest order
        version already delivered to this system."""
        c = inbox.c
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(c.message_id, c.order_version, c.outcome).where(
                    c.consumer == self.target,
                    or_(
                        c.message_id == envelope.message_id, c.order_number == envelope.order_number
                    ),
                )
            ).all()
        handled = any(r.message_id == envelope.message_id for r in rows)
        versions = [r.order_version for r in rows if r.outcome == "delivered" and r.order_version]
        return handled, max(versions, default=None)

    def handle(self, message: Delivery) -> None:
        envelope, order = parse_delivery(message)
        handled, newest = self._seen(envelope)
        if handled:
            log.info("%s: %s already handled, skipping", self.target, envelope.message_id)
            return
        if (
            newest is not None
            and envelope.order_version is not None
            and envelope.order_version < newest
        ):
            # A newer version reached this system first (a retry, a redelivery):
            # sending this one now would move the order backwards there.
            self._record(envelope, order.order_number, "superseded", None, 0)
            log.info(
                "%s: %s superseded by version %d already delivered",
                self.target,
                envelope.message_id,
                newest,
            )
            return
        sent = self.delivery.send(message.body, self._headers(envelope))
        crash_point("consumer.after_delivery")
        self._record(envelope, order.order_number, "delivered", sent.status_code, sent.attempts)
        log.info(
            "%s: delivered %s (%s) in %d attempt(s)",
            self.target,
            order.order_number,
            envelope.message_id,
            sent.attempts,
        )

    def _record(
        self,
        envelope: Envelope,
        order_number: str | None,
        outcome: str,
        status: int | None,
        attempts: int,
    ) -> None:
        with translate_db_errors(), self.engine.begin() as conn:
            insert_if_absent(
                conn,
                inbox,
                {
                    "consumer": self.target,
                    "message_id": envelope.message_id,
                    "order_number": order_number,
                    "order_version": envelope.order_version,
                    "outcome": outcome,
                    "response_status": status,
                    "attempts": attempts,
                    "delivered_at": utcnow(),
                },
            )

    def _headers(self, envelope: Envelope) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": envelope.message_id,
            "X-Orderbus-Message-Id": envelope.message_id,
            "X-Orderbus-Correlation-Id": envelope.correlation_id,
            "X-Orderbus-Order-Number": envelope.order_number or "",
            "X-Orderbus-Target": self.target,
            "X-Orderbus-Attempt": str(envelope.attempt),
        }
