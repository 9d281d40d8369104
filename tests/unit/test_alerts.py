"""Alert rules: one message when an incident starts, one when it is over, none
in between; a webhook that fails is told again at the next check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, insert, update

from admin_api.alerts import AlertEvaluator, webhook
from admin_api.deadletters import DeadLetterRecorder
from connectors.rejections import record_rejection
from infra.setting_specs import AlertSettings
from infra.settings import Settings
from infra.tables import dead_letters, inbox, outbox
from infra.topology import build_topology
from router.service import RouterService
from tests.factories import delivery_for, failure_delivery, order


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Webhook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        self.received.append(json.loads(request.content))
        return httpx.Response(200)


def evaluator(engine: Engine, rules: dict[str, Any], clock: Clock, hook: Webhook) -> AlertEvaluator:
    settings = AlertSettings.model_validate({"webhook_url": "http://hook.test/", **rules})
    client = httpx.Client(transport=httpx.MockTransport(hook))
    return AlertEvaluator(engine, settings, webhook(client, "http://hook.test/"), clock)


def route(engine: Engine, external_id: str) -> None:
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(external_id=external_id), message_id=f"m-{external_id}"))


def test_a_silent_channel_alerts_once_and_resolves_when_orders_return(
    sqlite_engine: Engine,
) -> None:
    clock, hook = Clock(datetime.now(UTC) - timedelta(hours=2)), Webhook()
    alerts = evaluator(sqlite_engine, {"silence": {"channels": {"web-shop": 600}}}, clock, hook)
    assert alerts.check() == []
    clock.at += timedelta(seconds=700)
    fired = alerts.check()
    assert [(m["status"], m["rule"], m["subject"]) for m in fired] == [
        ("firing", "silence", "web-shop")
    ]
    assert "silent for 700 s" in fired[0]["summary"] and "no order yet" in fired[0]["summary"]
    for _ in range(3):  # still silent: nothing more is sent
        clock.at += timedelta(minutes=5)
        assert alerts.check() == []
    route(sqlite_engine, "BACK-1")  # traffic returns
    clock.at = datetime.now(UTC) + timedelta(seconds=1)
    resolved = alerts.check()
    assert [(m["status"], m["subject"]) for m in resolved] == [("resolved", "web-shop")]
    assert [m["status"] for m in hook.received] == ["firing", "resolved"]


def test_a_webhook_that_fails_is_told_at_the_next_check(sqlite_engine: Engine) -> None:
    clock, hook = Clock(datetime.now(UTC)), Webhook()
    DeadLetterRecorder(sqlite_engine).handle(failure_delivery())
    alerts = evaluator(sqlite_engine, {"dead_letters": {"open_above": 0}}, clock, hook)
    hook.down = True
    assert alerts.check() == []
    hook.down = False
    assert [m["rule"] for m in alerts.check()] == ["dead_letters"]
    assert alerts.check() == []
    with sqlite_engine.begin() as conn:
        conn.execute(update(dead_letters).values(status="discarded"))
    assert [m["status"] for m in alerts.check()] == ["resolved"]


def test_a_paid_order_the_warehouse_never_got(sqlite_engine: Engine) -> None:
    route(sqlite_engine, "PAID-1")
    clock, hook = Clock(datetime.now(UTC) + timedelta(hours=1)), Webhook()
    alerts = evaluator(sqlite_engine, {"undelivered_paid": {"after": 1800}}, clock, hook)
    fired = alerts.check()
    assert [m["rule"] for m in fired] == ["undelivered_paid"]
    assert "1 order(s) sent to the warehouse" in fired[0]["summary"]
    with sqlite_engine.begin() as conn:
        message_id = conn.scalar(
            outbox.select()
            .with_only_columns(outbox.c.message_id)
            .where(outbox.c.message_id.like("%-warehouse"))
        )
        assert isinstance(message_id, str)
        conn.execute(
            insert(inbox).values(
                consumer="warehouse",
                message_id=message_id,
                order_number=message_id.split("-v")[0],
                order_version=1,
                response_status=200,
                attempts=1,
                delivered_at=datetime.now(UTC),
            )
        )
    assert [m["status"] for m in alerts.check()] == ["resolved"]


def test_reject_rate_outbox_lag_and_expiring_credentials(sqlite_engine: Engine) -> None:
    route(sqlite_engine, "OK-1")
    for _ in range(3):
        record_rejection(
            sqlite_engine,
            channel="web-shop",
            status_code=401,
            reason="bad_signature",
            detail="forged",
            headers={},
            body=b"{}",
            body_size=2,
            remote_addr=None,
        )
    clock, hook = Clock(datetime.now(UTC) + timedelta(seconds=600)), Webhook()
    rules = {
        "reject_rate": {"window": 3600, "threshold": 0.5, "min_count": 4},
        "outbox_lag": {"seconds": 300},
        "credentials": {"expires": {"pdd": (clock.at + timedelta(days=2)).isoformat()}},
    }
    fired = {m["rule"]: m["summary"] for m in evaluator(sqlite_engine, rules, clock, hook).check()}
    assert set(fired) == {"reject_rate", "outbox_lag", "credentials"}
    assert fired["reject_rate"].startswith("3 of 4 inputs from web-shop refused")
    assert "2.0 days" in fired["credentials"]


def test_a_queue_that_is_not_drained(sqlite_engine: Engine) -> None:
    depths = [("t.warehouse", 12), ("t.finance", 0)]
    settings = AlertSettings.model_validate({"queue_depth": {"above": 10}})
    alerts = AlertEvaluator(sqlite_engine, settings, None, queue_depths=lambda: depths)
    assert [(m["rule"], m["subject"]) for m in alerts.check()] == [("queue_depth", "t.warehouse")]
    depths[0] = ("t.warehouse", 3)
    assert [m["status"] for m in alerts.check()] == ["resolved"]


def test_parcels_in_trouble(sqlite_engine: Engine) -> None:
    """A shipped parcel the carrier says nothing of for too long, or reports
    an exception for, is an incident; once delivered, it is over."""
    from infra.tables import orders

    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    shipment = {"carrier": "SF", "tracking_number": "SF1234567890",
                "shipped_at": "2026-11-12T09:30:00+08:00"}  # fmt: skip
    router.handle(delivery_for(order(external_id="P-1"), message_id="m-1"))
    router.handle(
        delivery_for(
            order(external_id="P-1", status="shipped", version=2, shipment=shipment),
            message_id="m-2",
        )
    )
    clock, hook = Clock(datetime.now(UTC)), Webhook()
    alerts = evaluator(sqlite_engine, {"parcel_problems": {"stalled_hours": 48}}, clock, hook)
    assert alerts.check() == []  # shipped just now
    with sqlite_engine.begin() as conn:
        conn.execute(update(orders).values(parcel_state="exception"))
    fired = alerts.check()
    assert [m["rule"] for m in fired] == ["parcel_problems"]
    assert "1 shipped parcels in trouble" in fired[0]["summary"]
    with sqlite_engine.begin() as conn:
        conn.execute(update(orders).values(status="delivered", parcel_state="delivered"))
    assert [m["status"] for m in alerts.check()] == ["resolved"]
    clock.at = datetime.now(UTC) + timedelta(hours=49)  # and no news, on another order
    with sqlite_engine.begin() as conn:
        conn.execute(update(orders).values(status="shipped", parcel_state="in_transit"))
    assert [m["rule"] for m in alerts.check()] == ["parcel_problems"]
