"""Delivery consumers (warehouse, finance, notification) with an idempotent inbox.

For each message: if ``(consumer, message id)`` is in the inbox, it was
delivered before: ack, no second effect. Otherwise deliver (retrying transient
failures), record the inbox row, and only then let the bus ack.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select

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

    def already_delivered(self, message_id: str) -> bool:
        with translate_db_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(inbox.c.message_id).where(
                    inbox.c.consumer == self.target, inbox.c.message_id == message_id
                )
            ).first()
        return row is not None

    def handle(self, message: Delivery) -> None:
        envelope, order = parse_delivery(message)
        if self.already_delivered(envelope.message_id):
            log.info("%s: %s already delivered, skipping", self.target, envelope.message_id)
            return
        sent = self.delivery.send(message.body, self._headers(envelope))
        crash_point("consumer.after_delivery")
        with translate_db_errors(), self.engine.begin() as conn:
            insert_if_absent(
                conn,
                inbox,
                {
                    "consumer": self.target,
                    "message_id": envelope.message_id,
                    "order_number": order.order_number,
                    "response_status": sent.status_code,
                    "attempts": sent.attempts,
                    "delivered_at": utcnow(),
                },
            )
        log.info(
            "%s: delivered %s (%s) in %d attempt(s)",
            self.target,
            order.order_number,
            envelope.message_id,
            sent.attempts,
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
