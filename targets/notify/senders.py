"""How a message reaches the customer: email by SMTP, a WeChat Work group
robot, a generic SMS gateway. Each raises EndpointUnavailable when the
service is down or limiting (tried again with backoff) and DeliveryRejected
when it refuses this message (a dead letter with its reason)."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from canonical.errors import DeliveryRejected, EndpointUnavailable
from infra.setting_specs import EmailSpec, WebhookSpec
from infra.transports import Transport, answer_json, http_problem

# WeChat Work robot errcodes that mean "later": 45009 the robot's rate limit
# (20 messages a minute), -1 system busy.
WECHAT_LATER = {45009, -1}


class SmtpSender:
    def __init__(self, spec: EmailSpec) -> None:
        self.spec = spec

    def send(self, to: str, name: str | None, subject: str, body: str, message_id: str) -> None:
        address = parseaddr(to)[1]
        if "@" not in address:
            raise DeliveryRejected(f"not an email address: {to!r}", status_code=0, response_body="")
        message = EmailMessage()
        message["From"] = self.spec.sender
        message["To"] = str(Address(display_name=name or "", addr_spec=address))
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        # Stable per orderbus message, so a mail client can tell a resend.
        domain = parseaddr(self.spec.sender)[1].partition("@")[2] or "orderbus.invalid"
        message["Message-ID"] = make_msgid(idstring=message_id.replace("@", "-"), domain=domain)
        message.set_content(body, charset="utf-8")
        spec = self.spec
        try:
            smtp: smtplib.SMTP
            if spec.ssl:
                smtp = smtplib.SMTP_SSL(
                    spec.host, spec.port, timeout=spec.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout)
            with smtp:
                if spec.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if spec.username:
                    smtp.login(spec.username, spec.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryRejected(
                f"the mail server refused {address}: {exc.recipients}",
                status_code=0,
                response_body="",
            ) from exc
        except smtplib.SMTPResponseException as exc:
            said = f"{exc.smtp_code} {exc.smtp_error!r}"
            if 400 <= exc.smtp_code < 500:
                raise EndpointUnavailable(f"mail server {spec.host}: {said}") from exc
            raise DeliveryRejected(
                f"mail server {spec.host} refused: {said}", status_code=0, response_body=""
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise EndpointUnavailable(f"mail server {spec.host}:{spec.port}: {exc!r}") from exc


class WeChatWorkRobot:
    """A group robot: ``POST {"msgtype": "text", "text": {"content": ...}}``
    to its webhook URL; the answer is ``{"errcode": 0, "errmsg": "ok"}``."""

    def __init__(self, spec: WebhookSpec) -> None:
        self.spec = spec

    def send(self, text: str, http: Transport) -> None:
        body = {"msgtype": "text", "text": {"content": text}}
        answer = http.post(
            self.spec.url,
            json.dumps(body, ensure_ascii=False).encode("utf-8"),
            {"Content-Type": "application/json", **self.spec.headers},
        )
        if answer.status_code >= 300:
            raise http_problem("WeChat Work robot", answer, answer.text[:300])
        said = answer_json(answer)
        code = said.get("errcode") if isinstance(said, dict) else None
        if code == 0:
            return
        detail = f"errcode {code}: {said.get('errmsg') if isinstance(said, dict) else answer.text}"
        if code in WECHAT_LATER:
            raise EndpointUnavailable(f"WeChat Work robot: {detail}")
        raise DeliveryRejected(
            f"WeChat Work robot refused: {detail}",
            status_code=answer.status_code,
            response_body=answer.text[:1000],
        )


class SmsGateway:
    """A generic SMS gateway: ``POST {"phone", "text", "event", "order_number"}``
    as JSON to its URL; any 2xx is taken."""

    def __init__(self, spec: WebhookSpec) -> None:
        self.spec = spec

    def send(self, phone: str, text: str, event: str, number: str, http: Transport) -> None:
        body = {"phone": phone, "text": text, "event": event, "order_number": number}
        answer = http.post(
            self.spec.url,
            json.dumps(body, ensure_ascii=False).encode("utf-8"),
            {"Content-Type": "application/json", **self.spec.headers},
        )
        if answer.status_code >= 300:
            raise http_problem("SMS gateway", answer, answer.text[:300])
