"""The ``customer`` target's adapter: tell the customer of an event.

The event is the order's status, ``delay`` for the message the delay watch
(targets/notify/delays.py) sends about a paid order not shipped in time, or
``parcel_problem`` for the one message about a parcel the carrier reports a
problem with or has said nothing of for too long (router/tracking.py,
targets/notify/parcels.py).
Events not in ``ORDERBUS_NOTIFY.events`` are passed over (answered 204, so
the consumer's inbox records them). For each medium that applies (email when
the order has an email, SMS when it has a phone, the WeChat Work group robot
always), the message is rendered, sent, and recorded in ``notifications``
right away; a redelivery of the same message skips the media recorded, so a
customer gets each notification once. (A crash between a mail server's
acceptance and that record would send that one email again: SMTP has no
idempotency key.) When no medium applies, a ``none`` row says why.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from canonical.tracking import PARCEL_NOTICE_SUFFIX
from infra.database import translate_db_errors
from infra.masking import mask_email, mask_phone
from infra.setting_specs import NotifySpec
from infra.tables import notifications
from infra.transports import Transport
from targets.notify.senders import SmsGateway, SmtpSender, WeChatWorkRobot
from targets.notify.templates import Templates

log = logging.getLogger(__name__)

DELAY_SUFFIX = "-delay-customer"


def event_of(order: dict[str, Any], message_id: str) -> str:
    if message_id.endswith(DELAY_SUFFIX):
        return "delay"
    if message_id.endswith(PARCEL_NOTICE_SUFFIX):
        return "parcel_problem"
    return str(order.get("status"))


class CustomerNotifier:
    name = "customer notifications"

    def __init__(self, spec: NotifySpec, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine
        self.templates = Templates(spec.templates_dir)
        self.email = SmtpSender(spec.email) if spec.email else None
        self.robot = WeChatWorkRobot(spec.wechat_work) if spec.wechat_work else None
        self.sms = SmsGateway(spec.sms) if spec.sms else None

    def language(self, order: dict[str, Any]) -> str:
        if self.spec.language != "auto":
            return self.spec.language
        country = (order.get("shipping_address") or {}).get("country") or "CN"
        return "zh" if country == "CN" else "en"

    def _sent(self, message_id: str) -> set[str]:
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.scalars(
                select(notifications.c.medium).where(notifications.c.message_id == message_id)
            )
            return set(rows)

    def _record(self, **values: Any) -> None:
        try:
            with translate_db_errors(), self.engine.begin() as conn:
                conn.execute(insert(notifications).values(sent_at=datetime.now(UTC), **values))
        except IntegrityError:  # recorded by a concurrent delivery of the same message
            log.info("notify: %s %s already recorded", values["message_id"], values["medium"])

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        event = event_of(order, message_id)
        if event not in self.spec.events:
            return 204
        language = self.language(order)
        number = str(order.get("order_number") or "")
        context = {"order": order, "shop": self.spec.shop_name, "event": event, "number": number}
        message = self.templates.render(event, language, context)
        customer = order.get("customer") or {}
        email, phone = customer.get("email"), customer.get("phone")
        done = self._sent(message_id)
        common = {"message_id": message_id, "order_number": number, "event": event}
        common["language"] = language
        planned = 0
        if self.email is not None and email:
            planned += 1
            if "email" not in done:
                name = customer.get("name")
                self.email.send(str(email), name, message.subject, message.body, message_id)
                self._record(
                    medium="email",
                    recipient=mask_email(str(email)),
                    subject=message.subject,
                    body=message.body,
                    **common,
                )
        if self.sms is not None and phone:
            planned += 1
            if "sms" not in done:
                self.sms.send(str(phone), message.body, event, number, http)
                self._record(
                    medium="sms", recipient=mask_phone(str(phone)), body=message.body, **common
                )
        if self.robot is not None:
            planned += 1
            if "wechat_work" not in done:
                text = f"{message.subject}\n{message.body}"
                self.robot.send(text, http)
                self._record(medium="wechat_work", recipient="group robot", body=text, **common)
        if not planned and "none" not in done:
            why = "no medium applies: " + (
                "the order has no email or phone"
                if (self.email or self.sms)
                else "no email, SMS or robot is configured"
            )
            self._record(medium="none", body=why, **common)
            log.warning("notify: %s %s: %s", number, event, why)
        return 200
