"""Alerts in the team's group chat (issue 20): WeCom, DingTalk (加签) and
Feishu (签名校验) robots, faked here as the platforms check them: each gets
exactly one message when an incident starts and one when it resolves, in
Chinese, in its own format and signature; a refused or rate-limited message
waits for the next check and is never sent twice to a robot that took it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
from sqlalchemy import Engine

from admin_api.alerts import AlertEvaluator
from admin_api.chat_alerts import PER_MINUTE, RobotSender, everywhere, text_of
from admin_api.deadletters import DeadLetterRecorder
from infra.setting_specs import AlertSettings, ChatRobot
from infra.settings import Settings
from orderbus.bootstrap import bootstrap
from tests.factories import failure_delivery
from tests.unit.test_alerts import Clock

DING_SECRET = "SEC0123456789abcdef0123456789abcdef"
FEISHU_SECRET = "feishu-secret-0123456789"


class Platforms:
    """The three robots as their platforms answer: a wrong format or a wrong
    signature is refused the way each refuses it (HTTP 200, a code)."""

    def __init__(self) -> None:
        self.got: dict[str, list[str]] = {"wecom": [], "dingtalk": [], "feishu": []}
        self.refuse_next: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        body = json.loads(request.content)
        if url.netloc == "qyapi.weixin.qq.com":
            ok = parse_qs(url.query).get("key") == ["wecom-key"] and body["msgtype"] == "text"
            return self._answer("wecom", ok, body["text"]["content"], "errcode")
        if url.netloc == "oapi.dingtalk.com":
            query = parse_qs(url.query)
            stamp = query["timestamp"][0]
            wanted = base64.b64encode(
                hmac.new(
                    DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            raw_sign = str(request.url).split("sign=", 1)[1]
            ok = unquote_plus(raw_sign) == wanted and query["access_token"] == ["ding-token"]
            return self._answer(
                "dingtalk", ok and body["msgtype"] == "text", body["text"]["content"], "errcode"
            )
        if url.netloc == "open.feishu.cn":
            key = f"{body['timestamp']}\n{FEISHU_SECRET}".encode()
            wanted = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            ok = body.get("sign") == wanted and body["msg_type"] == "text"
            return self._answer("feishu", ok, body["content"]["text"], "code")
        return httpx.Response(404)

    def _answer(self, kind: str, ok: bool, text: str, field: str) -> httpx.Response:
        if kind in self.refuse_next:
            self.refuse_next.discard(kind)
            return httpx.Response(200, json={field: 45009, "errmsg": "api freq out of limit"})
        if not ok:
            return httpx.Response(200, json={field: 310000, "errmsg": "sign not match"})
        self.got[kind].append(text)
        return httpx.Response(200, json={field: 0, "errmsg": "ok"})


ROBOTS = [
    {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key"},
    {
        "kind": "dingtalk",
        "url": "https://oapi.dingtalk.com/robot/send?access_token=ding-token",
        "secret": DING_SECRET,
    },
    {
        "kind": "feishu",
        "url": "https://open.feishu.cn/open-apis/bot/v2/hook/0000-feishu",
        "secret": FEISHU_SECRET,
    },
]


def test_each_robot_gets_one_message_when_it_starts_and_one_when_it_resolves(
    sqlite_url: str,
) -> None:
    platforms = Platforms()
    settings = Settings(
        broker_url="memory://",
        database_url=sqlite_url,
        alerts=AlertSettings.model_validate({"chat": ROBOTS, "dead_letters": {"open_above": 0}}),
    )
    app = bootstrap(settings)
    evaluator = app.alert_evaluator(transport=httpx.MockTransport(platforms))
    DeadLetterRecorder(app.engine).handle(failure_delivery())
    platforms.refuse_next.add("dingtalk")  # refused once: told again at the next check
    evaluator.check()
    assert [len(platforms.got[k]) for k in ("wecom", "dingtalk", "feishu")] == [1, 0, 1]
    evaluator.check()
    evaluator.check()  # nothing new: nobody is told twice
    for kind in ("wecom", "dingtalk", "feishu"):
        assert len(platforms.got[kind]) == 1, kind
        assert platforms.got[kind][0].startswith("【orderbus 告警】待处理的失败消息过多")
    with app.engine.begin() as conn:
        from sqlalchemy import update

        from infra.tables import dead_letters

        conn.execute(update(dead_letters).values(status="discarded"))
    evaluator.check()
    evaluator.check()
    for kind in ("wecom", "dingtalk", "feishu"):
        assert len(platforms.got[kind]) == 2, kind
        assert platforms.got[kind][1].startswith("【orderbus 已恢复】")


def test_a_robot_gets_at_most_its_limit_a_minute_and_the_rest_later() -> None:
    platforms = Platforms()
    client = httpx.Client(transport=httpx.MockTransport(platforms))
    now = [1_800_000_000.0]
    sender = RobotSender(ChatRobot.model_validate(ROBOTS[0]), client, clock=lambda: now[0])
    message = {"status": "firing", "rule": "silence", "subject": "web-shop", "summary": "-"}
    results = [sender({**message, "id": n}) for n in range(PER_MINUTE + 5)]
    assert results.count(True) == PER_MINUTE and results[PER_MINUTE:] == [False] * 5
    now[0] += 61
    assert sender({**message, "id": 99})


def test_english_when_asked_and_long_text_cut_to_the_platforms_limit() -> None:
    message = {
        "status": "resolved", "rule": "undelivered_paid", "subject": "warehouse",
        "summary": "x" * 5000, "opened_at": "2026-12-06T01:00:00+00:00",
        "resolved_at": "2026-12-06T02:30:00+00:00",
    }  # fmt: skip
    english = text_of(message, "en")
    assert english.startswith("[orderbus] RESOLVED: paid orders not at the warehouse (warehouse)")
    assert len(english.encode("utf-8")) <= 2048
    chinese = text_of({**message, "summary": "-"}, "zh")
    assert chinese.endswith("2026-12-06 09:00 至 2026-12-06 10:30")  # Shanghai time


def test_a_destination_that_took_a_message_is_not_sent_it_again() -> None:
    calls: list[str] = []
    flaky = iter([False, True])

    def first(message: dict[str, Any]) -> bool:
        calls.append("first")
        return True

    def second(message: dict[str, Any]) -> bool:
        calls.append("second")
        return next(flaky)

    send = everywhere([first, second])
    message = {"id": 1, "status": "firing"}
    assert send(message) is False
    assert send(message) is True
    assert calls == ["first", "second", "second"]


def test_the_evaluator_with_robots_only_needs_no_generic_webhook(sqlite_engine: Engine) -> None:
    platforms = Platforms()
    client = httpx.Client(transport=httpx.MockTransport(platforms))
    robot = ChatRobot.model_validate(ROBOTS[0])
    settings = AlertSettings.model_validate({"dead_letters": {"open_above": 0}})
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    evaluator = AlertEvaluator(
        sqlite_engine, settings, everywhere([RobotSender(robot, client)]), clock
    )
    DeadLetterRecorder(sqlite_engine).handle(failure_delivery())
    assert [m["status"] for m in evaluator.check()] == ["firing"]
    assert len(platforms.got["wecom"]) == 1
