"""The daily digest reaches the team's chat robot once a day, after its
hour, in Chinese, with the numbers the console shows; a robot that fails is
tried again, and two admin processes send it once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select

from console.digest import DailyDigest
from infra.setting_specs import DigestSettings
from infra.tables import digests
from tests.console.seed import seed


class Robot:
    """A chat robot's webhook that records what it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.answer == 200:
            self.received.append(json.loads(request.content))
        return httpx.Response(self.answer)


def _digest(engine: Engine, robot: Robot, clock: list[datetime], fmt: str = "wecom") -> DailyDigest:
    settings = DigestSettings(webhook_url="http://robot.test/send", format=fmt, at="09:00")
    client = httpx.Client(transport=httpx.MockTransport(robot))
    return DailyDigest(engine, settings, client, clock=lambda: clock[0])


def test_the_digest_of_yesterday_is_sent_once_after_its_hour(sqlite_engine: Engine) -> None:
    seed(sqlite_engine)  # today's orders, in Shanghai's day
    robot = Robot()
    shanghai = datetime.now(UTC) + timedelta(hours=8)
    next_day = (shanghai + timedelta(days=1)).date()
    clock = [datetime(next_day.year, next_day.month, next_day.day, 0, 30, tzinfo=UTC)]  # 08:30
    first, second = _digest(sqlite_engine, robot, clock), _digest(sqlite_engine, robot, clock)
    assert not first.send_once() and robot.received == []  # not 09:00 yet in Shanghai
    clock[0] += timedelta(hours=1)  # 09:30
    assert first.send_once()
    assert not second.send_once() and not first.send_once()
    assert len(robot.received) == 1
    content = robot.received[0]["markdown"]["content"]
    assert f"orderbus 日报 {shanghai.date().isoformat()}" in content
    assert "订单 14 个" in content and "jd：6 个订单" in content
    assert "接收系统不认识的商品编码：3" in content
    assert "对账：已对平（收到 14 个）" in content


def test_a_robot_that_fails_gets_the_digest_at_the_next_check(sqlite_engine: Engine) -> None:
    robot = Robot()
    robot.answer = 500
    clock = [datetime.now(UTC).replace(hour=3)]  # 11:00 in Shanghai
    digest = _digest(sqlite_engine, robot, clock, fmt="dingtalk")
    assert not digest.send_once()
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(digests)).all() == []  # the claim let go
    robot.answer = 200
    assert digest.send_once()
    assert robot.received[0]["msgtype"] == "markdown" and "title" in robot.received[0]["markdown"]
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(digests.c.status)) == "sent"


def test_a_claim_left_by_a_crash_is_taken_over_when_stale(sqlite_engine: Engine) -> None:
    robot = Robot()
    clock = [datetime.now(UTC).replace(hour=3)]
    crashed = _digest(sqlite_engine, robot, clock)
    day = crashed.due()
    assert day is not None and crashed._claim(day)  # claimed, then the process died
    assert not crashed.send_once()  # a fresh claim is respected
    clock[0] += timedelta(minutes=11)
    assert crashed.send_once() and len(robot.received) == 1
