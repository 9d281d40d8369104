"""Incidents told to the group chats a team already lives in: WeCom (企业微信),
DingTalk (钉钉, with its 加签 signature) and Feishu (飞书, with its 签名校验),
in Chinese by default.

Formats (from the platforms' robot documentation as republished, 2026-12):
- WeCom: POST the robot's URL (its key in the query) ``{"msgtype": "text",
  "text": {"content": …}}`` (at most 2,048 bytes); success is ``errcode`` 0.
- DingTalk: the same body; with a secret, ``timestamp`` (ms) and ``sign`` =
  URL-encoded Base64 of HMAC-SHA256(secret, "<timestamp>\\n<secret>") are
  added to the URL's query; success is ``errcode`` 0.
- Feishu: ``{"msg_type": "text", "content": {"text": …}}``, with a secret also
  ``timestamp`` (s) and ``sign`` = Base64 of HMAC-SHA256 keyed with
  "<timestamp>\\n<secret>" over nothing; success is ``code`` (or the older
  ``StatusCode``) 0.

Each robot gets at most :data:`PER_MINUTE` messages a minute (the tightest of
the platforms' limits); what would exceed it waits for the next check, as a
message the robot refused does, so nothing is dropped. A robot that took a
message is not sent it again when another destination failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import httpx

from infra.setting_specs import ChatRobot

log = logging.getLogger(__name__)
PER_MINUTE = 20
MOST_BYTES = 2000  # WeCom's limit is 2,048 bytes of text

RULES_ZH = {
    "silence": "渠道长时间没有订单",
    "reject_rate": "拒收比例过高",
    "undelivered_paid": "已付款订单未到仓库",
    "dead_letters": "待处理的失败消息过多",
    "parcel_problems": "包裹异常或长时间无物流消息",
    "outbox_lag": "待发消息积压",
    "queue_depth": "队列积压",
    "credentials": "渠道凭证即将过期",
}
RULES_EN = {
    "silence": "a channel sent no order for too long",
    "reject_rate": "too many inputs refused",
    "undelivered_paid": "paid orders not at the warehouse",
    "dead_letters": "too many dead letters waiting",
    "parcel_problems": "parcels in trouble",
    "outbox_lag": "outgoing messages not published",
    "queue_depth": "a queue not drained",
    "credentials": "a channel's credentials expire soon",
}
SHANGHAI = ZoneInfo("Asia/Shanghai")
COLON = "\uff1a"  # the full-width colon of Chinese text


def text_of(message: dict[str, Any], language: str) -> str:
    """The incident as a person reads it in a chat."""
    rule, subject = str(message["rule"]), str(message["subject"])
    firing = message["status"] == "firing"
    opened, resolved = _local(message.get("opened_at")), _local(message.get("resolved_at"))
    if language == "en":
        head = "[orderbus] ALERT" if firing else "[orderbus] RESOLVED"
        lines = [f"{head}: {RULES_EN.get(rule, rule)} ({subject})", str(message["summary"])]
        lines.append(f"since {opened}" if firing else f"{opened} to {resolved}")
    else:
        head = "【orderbus 告警】" if firing else "【orderbus 已恢复】"
        lines = [f"{head}{RULES_ZH.get(rule, rule)}{COLON}{subject}", str(message["summary"])]
        lines.append(f"开始于 {opened}" if firing else f"{opened} 至 {resolved}")
    text = "\n".join(lines)
    while len(text.encode("utf-8")) > MOST_BYTES:
        text = text[: len(text) * 9 // 10] + "…"
    return text


def _local(value: object) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def request_of(robot: ChatRobot, text: str, now: float) -> tuple[str, dict[str, Any]]:
    """(the URL to POST, the JSON body) of ``text`` for ``robot``."""
    if robot.kind == "feishu":
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if robot.secret:
            stamp = str(int(now))
            key = f"{stamp}\n{robot.secret}".encode()
            sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            body = {"timestamp": stamp, "sign": sign, **body}
        return robot.url, body
    body = {"msgtype": "text", "text": {"content": text}}
    if robot.kind == "dingtalk" and robot.secret:
        stamp = str(int(now * 1000))
        signed = hmac.new(
            robot.secret.encode(), f"{stamp}\n{robot.secret}".encode(), hashlib.sha256
        ).digest()
        joiner = "&" if "?" in robot.url else "?"
        sign = quote_plus(base64.b64encode(signed).decode())
        return f"{robot.url}{joiner}timestamp={stamp}&sign={sign}", body
    return robot.url, body


def took_it(robot: ChatRobot, answer: httpx.Response) -> bool:
    """Whether the robot accepted the message: 2xx and its own code 0."""
    if not answer.is_success:
        return False
    try:
        data = answer.json()
    except ValueError:
        return False
    if robot.kind == "feishu":
        code = data.get("code", data.get("StatusCode"))
    else:
        code = data.get("errcode")
    return bool(code == 0)


class RobotSender:
    """One robot: the message in its format, at most PER_MINUTE a minute."""

    def __init__(
        self, robot: ChatRobot, client: httpx.Client, clock: Callable[[], float] = time.time
    ) -> None:
        self.robot = robot
        self.client = client
        self.clock = clock
        self.sent_at: deque[float] = deque()

    def __call__(self, message: dict[str, Any]) -> bool:
        now = self.clock()
        while self.sent_at and now - self.sent_at[0] >= 60:
            self.sent_at.popleft()
        if len(self.sent_at) >= PER_MINUTE:
            return False  # the robot's limit: at the next check
        url, body = request_of(self.robot, text_of(message, self.robot.language), now)
        try:
            answer = self.client.post(url, json=body)
        except httpx.HTTPError as exc:
            log.warning("alert robot %s: %s", self.robot.kind, exc)
            return False
        self.sent_at.append(now)
        if not took_it(self.robot, answer):
            log.warning(
                "alert robot %s refused: %s %s",
                self.robot.kind,
                answer.status_code,
                answer.text[:200],
            )
            return False
        return True


Notify = Callable[[dict[str, Any]], bool]


def everywhere(destinations: Sequence[Notify]) -> Notify:
    """Tell every destination; True once all have the message. One that took
    it is not sent it again when another failed (the next check retries)."""
    told: set[tuple[object, object, int]] = set()

    def send(message: dict[str, Any]) -> bool:
        done = True
        for index, destination in enumerate(destinations):
            key = (message.get("id"), message.get("status"), index)
            if key in told:
                continue
            if destination(message):
                told.add(key)
            else:
                done = False
        return done

    return send
