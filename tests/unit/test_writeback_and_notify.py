"""Shipment write-back to the channel (targets/writeback.py) and customer
notifications (targets/notify/), through the delivery consumer, against fakes
of Shopify, WooCommerce and Taobao (tests/channel_fakes.py), a real SMTP
server on 127.0.0.1 (aiosmtpd), and fakes of a WeChat Work robot and an SMS
gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update

from canonical.errors import DeliveryRejected
from infra.messages import Delivery
from infra.tables import inbox, notifications, orders, outbox
from infra.topology import build_topology
from orderbus.bootstrap import Orderbus
from router.fanout import Fanout
from router.service import RouterService
from router.shipments import ShipmentIntake, ShipmentReport
from targets.notify.delays import DelayWatch
from tests.channel_fakes import (
    FakeJdShipment,
    FakePinduoduoLogistics,
    FakeShopify,
    FakeTaobaoLogistics,
    FakeWooCommerce,
    FakeYouzanLogistics,
)
from tests.doudian_fake import FakeDoudian
from tests.factories import FakePublisher, delivery_for, delivery_from_published, order
from tests.outbox_messages import outbox_deliveries, quick_app
from tests.smtp_server import SmtpServer

WRITEBACK = {
    "shop-us": {
        "kind": "shopify",
        "shop_url": "https://acme.myshopify.test",
        "access_token": "shpat-test",
    },
    "woo": {
        "kind": "woocommerce",
        "url": "https://woo.test",
        "consumer_key": "ck_test",
        "consumer_secret": "cs_test",
    },
    "pdd": {
        "kind": "pinduoduo",
        "client_id": "pdd-client",
        "client_secret": "pdd-secret",
        "access_token": "pdd-token",
        "endpoint": "https://pdd.test/api/router",
    },
    "jd": {
        "kind": "jd",
        "app_key": "jd-app",
        "app_secret": "jd-secret",
        "access_token": "jd-token",
        "endpoint": "https://jd.test/routerjson",
    },
    "yz": {
        "kind": "youzan",
        "client_id": "yz-client",
        "client_secret": "yz-secret",
        "grant_id": "41566520",
        "endpoint": "https://yz.test",
    },
    "dy": {
        "kind": "douyin",
        "app_key": "dd-app",
        "app_secret": "dd-secret",
        "shop_id": "77001",
        "endpoint": "https://dd.test",
    },
    "tmall": {
        "kind": "taobao",
        "app_key": "12345",
        "app_secret": "top-secret",
        "session": "sess",
        "endpoint": "https://top.test/router/rest",
    },
}


class World:
    """The router with write-back and notifications, its consumers, the fakes."""

    def __init__(self, engine: Engine, sqlite_url: str, smtp_port: int | None = None) -> None:
        notify: dict[str, Any] = {
            "shop_name": "Acme 商城",
            "sms": {"url": "https://sms.test/send"},
            "wechat_work": {"url": "https://qyapi.test/cgi-bin/webhook/send?key=k"},
            "delay_after_hours": 48,
        }
        if smtp_port is not None:
            notify["email"] = {"host": "127.0.0.1", "port": smtp_port, "sender": "Acme <s@acme.cn>"}
        self.app: Orderbus = quick_app(sqlite_url, writeback=WRITEBACK, notify=notify)
        self.settings = self.app.settings
        self.engine = engine
        topology = build_topology(self.settings)
        fanout = Fanout.configured(frozenset(WRITEBACK), frozenset(self.settings.notify.events))  # type: ignore[union-attr]
        self.router = RouterService(engine, topology, fanout=fanout)
        self.publisher = FakePublisher()
        self.intake = ShipmentIntake(engine, self.publisher, topology)  # type: ignore[arg-type]
        self.shopify, self.woo, self.taobao = (
            FakeShopify(),
            FakeWooCommerce(),
            FakeTaobaoLogistics(),
        )
        self.pdd, self.jd = FakePinduoduoLogistics(), FakeJdShipment()
        self.youzan = FakeYouzanLogistics()
        self.doudian = FakeDoudian("dd-app", "dd-secret", "77001")
        self.sms: list[dict[str, Any]] = []
        self.robot: list[str] = []
        self.robot_busy = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "acme.myshopify.test":
            return self.shopify(request)
        if host == "woo.test":
            return self.woo(request)
        if host == "top.test":
            return self.taobao(request)
        if host == "pdd.test":
            return self.pdd(request)
        if host == "jd.test":
            return self.jd(request)
        if host == "yz.test":
            return self.youzan(request)
        if host == "dd.test":
            return self.doudian.handle(request)
        if host == "sms.test":
            self.sms.append(json.loads(request.content))
            return httpx.Response(200, json={"ok": True})
        assert host == "qyapi.test", host
        if self.robot_busy > 0:
            self.robot_busy -= 1
            return httpx.Response(200, json={"errcode": 45009, "errmsg": "api freq out of limit"})
        self.robot.append(json.loads(request.content)["text"]["content"])
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def consumer(self, target: str) -> Any:
        return self.app.delivery_consumer(target, transport=httpx.MockTransport(self.handle))

    def place(self, **changes: Any) -> str:
        o = order(**changes)
        self.router.handle(delivery_for(o, message_id=f"m-{o.channel}-{o.external_id}-{o.version}"))
        with self.engine.connect() as conn:
            number = conn.scalar(
                select(orders.c.order_number).where(orders.c.external_id == o.external_id)
            )
        return str(number)

    def ship(self, number: str, tracking: str = "SF1234567890", code: str = "SF") -> None:
        self.intake.accept(
            ShipmentReport(
                order_number=number,
                carrier="顺丰速运",
                carrier_code=code,
                tracking_number=tracking,
                shipped_at="2026-11-12T10:00:00+08:00",
            )
        )
        self.router.handle(delivery_from_published(self.publisher.published[-1]))

    def message(self, message_id: str) -> Delivery:
        [message] = outbox_deliveries(self.engine, outbox.c.message_id == message_id)
        return message


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def world(sqlite_engine: Engine, sqlite_url: str, smtp: SmtpServer) -> World:
    return World(sqlite_engine, sqlite_url, smtp.port)


def test_a_shopify_shipment_is_fulfilled_once(world: World) -> None:
    number = world.place(channel="shop-us", external_id="450789469")
    world.shopify.add_order("450789469")
    world.shopify.limited = 1  # a rate-limit answer first
    world.ship(number)
    message = world.message(f"{number}-v2-channel")
    channel = world.consumer("channel")
    channel.handle(message)
    [fulfillment] = world.shopify.fulfillments
    assert fulfillment["trackingInfo"] == {"company": "顺丰速运", "number": "SF1234567890"}
    assert fulfillment["lineItemsByFulfillmentOrder"] == [
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/1046000778"}
    ]
    assert all(p == "/admin/api/2026-10/graphql.json" for p in world.shopify.paths)
    # The broker's redelivery after a crash before the inbox commit:
    sent = world.consumer("channel").delivery.send(message.body, {"Idempotency-Key": "x"})
    assert sent.status_code == 200 and len(world.shopify.fulfillments) == 1


def test_a_woocommerce_order_is_completed_with_its_tracking(world: World) -> None:
    number = world.place(channel="woo", external_id="727")
    world.woo.orders["727"] = {"id": 727, "status": "processing"}
    world.ship(number, tracking="ZT998877")
    world.consumer("channel").handle(world.message(f"{number}-v2-channel"))
    stored = world.woo.orders["727"]
    assert stored["status"] == "completed"
    meta = {m["key"]: m["value"] for m in stored["meta_data"]}
    assert meta["_orderbus_tracking_number"] == "ZT998877"
    assert meta["_orderbus_carrier"] == "顺丰速运"


def test_a_taobao_trade_is_sent_once(world: World) -> None:
    number = world.place(channel="tmall", external_id="3312345678901234567")
    world.ship(number)
    message = world.message(f"{number}-v2-channel")
    world.consumer("channel").handle(message)
    sent = world.taobao.sent["3312345678901234567"]
    assert (sent["out_sid"], sent["company_code"]) == ("SF1234567890", "SF")
    assert len(sent["sign"]) == 32
    # sent again (a crash before the inbox commit): Taobao says shipped already
    assert world.consumer("channel").delivery.send(message.body, {}).status_code == 200
    assert len(world.taobao.sent) == 1


def test_a_pinduoduo_order_is_sent_once_through_its_rate_limit(world: World) -> None:
    number = world.place(channel="pdd", external_id="231125-123456789")
    world.ship(number, code="44")  # Pinduoduo's logistics_id of the carrier
    world.pdd.busy = 1  # "调用过于频繁": tried again
    message = world.message(f"{number}-v2-channel")
    world.consumer("channel").handle(message)
    sent = world.pdd.sent["231125-123456789"]
    assert (sent["logistics_id"], sent["tracking_number"]) == ("44", "SF1234567890")
    assert world.consumer("channel").delivery.send(message.body, {}).status_code == 200
    assert len(world.pdd.sent) == 1


def test_a_jd_order_is_sent_once(world: World) -> None:
    number = world.place(channel="jd", external_id="300123456789")
    world.ship(number, code="467")  # JD's logiCoprId of 顺丰
    message = world.message(f"{number}-v2-channel")
    world.consumer("channel").handle(message)
    assert world.jd.sent["300123456789"] == {
        "orderId": "300123456789",
        "logiCoprId": "467",
        "logiNo": "SF1234567890",
    }
    assert world.consumer("channel").delivery.send(message.body, {}).status_code == 200
    assert len(world.jd.sent) == 1


def test_a_youzan_trade_is_confirmed_once_through_a_token_expiry(world: World) -> None:
    first = world.place(channel="yz", external_id="E20261125000001")
    second = world.place(channel="yz", external_id="E20261125000002")
    for number in (first, second):
        world.ship(number, code="1")  # Youzan's express company id
    channel = world.consumer("channel")
    channel.handle(world.message(f"{first}-v2-channel"))
    world.youzan.expire_tokens()
    message = world.message(f"{second}-v2-channel")
    channel.handle(message)
    assert world.youzan.confirmed["E20261125000002"] == {
        "tid": "E20261125000002",
        "out_stype": "1",
        "out_sid": "SF1234567890",
        "is_no_express": 0,
    }
    assert world.youzan.issued == 2  # renewed once
    assert world.consumer("channel").delivery.send(message.body, {}).status_code == 200
    assert len(world.youzan.confirmed) == 2


def test_a_douyin_order_gets_its_logistics_once(world: World) -> None:
    number = world.place(channel="dy", external_id="6921234567890123456")
    world.ship(number, code="shunfeng")  # Doudian's company code
    message = world.message(f"{number}-v2-channel")
    world.doudian.down = 2  # Doudian answers 503 twice: tried again
    world.consumer("channel").handle(message)
    with world.engine.connect() as conn:
        assert conn.scalar(select(inbox.c.attempts).where(inbox.c.consumer == "channel")) == 3
    assert world.doudian.shipped["6921234567890123456"] == {
        "order_id": "6921234567890123456",
        "company_code": "shunfeng",
        "logistics_code": "SF1234567890",
    }
    assert world.consumer("channel").delivery.send(message.body, {}).status_code == 200
    assert len(world.doudian.shipped) == 1


def test_a_carrier_without_the_platforms_id_is_a_dead_letter_saying_so(world: World) -> None:
    number = world.place(channel="jd", external_id="300123456790")
    world.ship(number, code="SF")
    with pytest.raises(DeliveryRejected, match="JD's numeric id of the carrier"):
        world.consumer("channel").handle(world.message(f"{number}-v2-channel"))
    assert world.jd.sent == {}


def test_an_unknown_order_at_the_channel_is_a_dead_letter(world: World) -> None:
    number = world.place(channel="woo", external_id="999")
    world.ship(number)
    with pytest.raises(DeliveryRejected, match="Invalid ID"):
        world.consumer("channel").handle(world.message(f"{number}-v2-channel"))


def test_the_customer_gets_one_email_per_event(world: World, smtp: SmtpServer) -> None:
    number = world.place(channel="woo", external_id="728")
    world.woo.orders["728"] = {"id": 728, "status": "processing"}
    customer = world.consumer("customer")
    customer.handle(world.message(f"{number}-v1-customer"))  # paid
    world.ship(number)
    shipped = world.message(f"{number}-v2-customer")
    smtp.keeper.refuse_next = 1  # the mail server asks us to try later, once
    customer.handle(shipped)
    customer.handle(shipped)  # redelivered: nothing sent twice
    mails = smtp.messages
    assert [m["Subject"] for m in mails] == [
        "Acme 商城：订单 728 付款成功",
        "Acme 商城：订单 728 已发货",
    ]
    assert mails[1]["To"] == "李四 <lisi@example.com>"
    body = mails[1].get_content()
    assert "顺丰速运 运单号 SF1234567890" in body and "您好 李四" in body
    assert [s["event"] for s in world.sms] == ["paid", "shipped"]
    assert world.sms[1]["phone"] == "13912345678" and "SF1234567890" in world.sms[1]["text"]
    assert len(world.robot) == 2
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(notifications.c.medium, notifications.c.event, notifications.c.recipient)
            .where(notifications.c.order_number == number)
            .order_by(notifications.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("email", "paid", "l***@example.com"),
        ("sms", "paid", "139****5678"),
        ("wechat_work", "paid", "group robot"),
        ("email", "shipped", "l***@example.com"),
        ("sms", "shipped", "139****5678"),
        ("wechat_work", "shipped", "group robot"),
    ]


def test_a_failed_medium_is_tried_again_without_resending_the_others(
    world: World, smtp: SmtpServer
) -> None:
    number = world.place(channel="woo", external_id="729")
    world.robot_busy = 10  # more than the attempts: the message is dead-lettered ...
    message = world.message(f"{number}-v1-customer")
    with pytest.raises(Exception, match="45009"):
        world.consumer("customer").handle(message)
    assert len(smtp.messages) == 1 and len(world.sms) == 1 and world.robot == []
    world.robot_busy = 0  # ... and retried once the robot is back
    world.consumer("customer").handle(message)
    assert len(smtp.messages) == 1 and len(world.sms) == 1 and len(world.robot) == 1


def test_english_outside_china_and_events_not_chosen(world: World, smtp: SmtpServer) -> None:
    number = world.place(
        channel="shop-us",
        external_id="1001",
        currency="USD",
        shipping_address={"country": "US", "province": "CA", "city": "Ottawa"},
        customer={"name": "Bob Norman", "phone": "+1 (555) 555-5555", "email": "bob@example.com"},
    )
    world.consumer("customer").handle(world.message(f"{number}-v1-customer"))
    [mail] = smtp.messages
    assert mail["Subject"] == "Acme 商城: payment received for order 1001"
    assert "Hello Bob Norman, we have received 30.50 USD for order 1001" in mail.get_content()


def test_a_paid_order_not_shipped_in_time_gets_one_delay_notice(
    world: World, smtp: SmtpServer
) -> None:
    late = world.place(channel="woo", external_id="730")
    world.place(channel="woo", external_id="731")  # paid, but recently: left alone
    shipped = world.place(channel="woo", external_id="732")
    world.ship(shipped)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with world.engine.begin() as conn:
        conn.execute(
            update(orders)
            .where(orders.c.order_number.in_([late, shipped]))
            .values(updated_at=three_days_ago)
        )
    watch = DelayWatch(world.engine, build_topology(world.settings), timedelta(hours=48))
    assert watch.check_once() == 1
    assert watch.check_once() == 0  # told once
    world.consumer("customer").handle(world.message(f"{late}-delay-customer"))
    [mail] = smtp.messages
    assert mail["Subject"] == "Acme 商城：订单 730 发货延迟"
    with world.engine.connect() as conn:
        assert conn.scalar(select(inbox.c.response_status)) == 200
        delays = conn.scalars(
            select(outbox.c.message_id).where(outbox.c.message_id.like("%-delay-customer"))
        )
        assert list(delays) == [f"{late}-delay-customer"]


def test_a_delay_notice_after_the_order_moved_on_is_passed_over(
    world: World, smtp: SmtpServer
) -> None:
    number = world.place(channel="woo", external_id="733")
    with world.engine.begin() as conn:
        conn.execute(
            update(orders)
            .where(orders.c.order_number == number)
            .values(updated_at=datetime.now(UTC) - timedelta(days=3))
        )
    DelayWatch(world.engine, build_topology(world.settings), timedelta(hours=48)).check_once()
    delay = world.message(f"{number}-delay-customer")
    world.ship(number)
    customer = world.consumer("customer")
    customer.handle(world.message(f"{number}-v2-customer"))  # shipped, told first
    customer.handle(delay)  # older version: superseded, not sent
    assert [m["Subject"] for m in smtp.messages] == ["Acme 商城：订单 733 已发货"]


def test_customer_service_reads_what_was_sent(world: World, smtp: SmtpServer) -> None:
    from fastapi.testclient import TestClient

    from admin_api.app import create_admin_app
    from admin_api.auth import KeyAuth

    number = world.place(channel="woo", external_id="740")
    world.consumer("customer").handle(world.message(f"{number}-v1-customer"))
    auth = KeyAuth(world.engine, {"root": "root-token"})
    app = create_admin_app(world.engine, auth, build_topology(world.settings))
    root = {"Authorization": "Bearer root-token"}
    with TestClient(app) as client:
        made = client.post("/keys", json={"name": "cs", "role": "viewer"}, headers=root)
        viewer = {"Authorization": f"Bearer {made.json()['key']}"}
        full = client.get("/notifications", params={"order_number": number}, headers=root)
        shown = client.get(
            "/notifications", params={"order_number": number, "medium": "email"}, headers=viewer
        )
    assert full.json()["total"] == 3  # email, sms, robot
    [email] = shown.json()["items"]
    assert (email["event"], email["recipient"]) == ("paid", "l***@example.com")
    assert email["subject"] == "Acme 商城：订单 740 付款成功"
    assert email["body"] is None  # a viewer does not see the text, which names the buyer
    bodies = {i["medium"]: i["body"] for i in full.json()["items"]}
    assert "李四" in bodies["email"]


def test_orders_late_for_longer_than_the_horizon_are_left_alone(world: World) -> None:
    old = world.place(channel="woo", external_id="750")
    with world.engine.begin() as conn:
        conn.execute(
            update(orders)
            .where(orders.c.order_number == old)
            .values(updated_at=datetime.now(UTC) - timedelta(days=30))
        )
    watch = DelayWatch(world.engine, build_topology(world.settings), timedelta(hours=48))
    assert watch.check_once() == 0  # notifications turned on long after it was paid
