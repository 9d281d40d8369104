"""Channels whose messages only name their orders, against the real RabbitMQ.

Douyin: the ingest queues a fetch request per order (confirmed before Doudian
is answered), and the fetch worker gets each order from a fake Doudian API and
hands it to the router, through the API's outage; an order Doudian does not
have is a dead letter with its reason. Taobao: TMC messages pulled from a fake
TOP router become fetch requests, confirmed to TMC only once queued, and the
trade reaches the router under the TMC message's id, once per id."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from canonical.envelope import H_DETAIL, H_REASON
from canonical.order import CanonicalOrder
from connectors.base import ChannelConfig
from connectors.douyin import DoudianApi, DouyinOrders, event_sign
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.order_fetch import FetchInbound
from connectors.registry import fetching_channels
from infra.bus import Bus, BusOptions, Publisher
from infra.messages import Delivery
from infra.setting_specs import ChannelSpec, DouyinSpec
from infra.settings import Settings
from infra.topology import Topology, build_topology, fetch_role
from tests.doudian_fake import FakeDoudian
from tests.integration.test_bus_rabbitmq import Consuming, wait_for
from tests.unit.test_douyin import APP_KEY, DETAIL, ORDER_ID, SECRET, SHOP

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(
        namespace=namespace,
        broker_url="amqp://x",
        delivery_limit=3,
        transient_retry_window=30,
        channel_secrets={"dy": [SECRET]},
        channels={
            "dy": ChannelSpec(connector="douyin", app_key=APP_KEY, douyin=DouyinSpec(shop_id=SHOP))
        },
    )


@pytest.fixture
def topology(settings: Settings) -> Topology:
    return build_topology(settings, fetching_channels(settings))


@pytest.fixture
def bus(amqp_url: str, topology: Topology) -> Bus:
    bus = Bus(
        amqp_url,
        topology,
        BusOptions(delivery_limit=3, confirm_timeout=5, heartbeat=10, transient_retry_window=30),
    )
    bus.check()
    return bus


@pytest.fixture
def publisher(bus: Bus) -> Iterator[Publisher]:
    p = bus.publisher()
    yield p
    p.close()


def pushed(messages: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        [
            {"tag": "101", "msg_id": msg_id, "data": json.dumps({"p_id": int(p_id)})}
            for p_id, msg_id in messages
        ]
    ).encode()
    return body, {
        "Content-Type": "application/json",
        "event-sign": event_sign(APP_KEY, body, SECRET),
    }


def test_pushed_orders_are_fetched_through_an_outage_and_reach_the_router(
    sqlite_engine: Engine,
    settings: Settings,
    bus: Bus,
    topology: Topology,
    publisher: Publisher,
) -> None:
    # Doudian pushes (and pushes the first message again); the ingest answers
    # {"code": 0} only once the fetch requests are confirmed by RabbitMQ.
    deps = IngestDeps(settings, sqlite_engine, publisher, topology)
    with TestClient(create_ingest_app(deps)) as client:
        for messages in ([(ORDER_ID, "m-1"), ("4781320682406089999", "m-2")], [(ORDER_ID, "m-1")]):
            body, headers = pushed(messages)
            answer = client.post("/ingest/dy", content=body, headers=headers)
            assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "success"}
    fetch_queue = topology.queue_for(fetch_role("dy"))
    assert bus.queue_depth(fetch_queue.name) == 3

    doudian = FakeDoudian(APP_KEY, SECRET, SHOP)
    doudian.orders[ORDER_ID] = copy.deepcopy(DETAIL)
    doudian.down = 3  # the API is down for the first requests
    api = DoudianApi(
        httpx.Client(transport=doudian.transport()), APP_KEY, SECRET, SHOP, "https://fake"
    )
    channel = ChannelConfig("dy", "douyin", (SECRET,), app_key=APP_KEY)
    worker = FetchInbound("dy", DouyinOrders(api, channel), topology, publisher)

    routed: list[Delivery] = []
    dead: list[Delivery] = []
    halt, ready = threading.Event(), threading.Event()
    fetching = threading.Thread(
        target=bus.consume,
        args=([fetch_queue.name], worker.handle_batch, halt),
        kwargs={"ready": ready},
        daemon=True,
    )
    with (
        Consuming(bus, [topology.router_queue], routed.append),
        Consuming(bus, [fetch_queue.dead_letter_queue], dead.append),
    ):
        fetching.start()
        assert ready.wait(20), "the fetch worker did not start"
        try:
            wait_for(lambda: len(routed) == 2 and len(dead) == 1, timeout=60)
        finally:
            halt.set()
            fetching.join(20)

    # The push and its redelivery: one message id, which the router records once.
    assert [d.message_id for d in routed] == ["dy.m-1"] * 2
    order = CanonicalOrder.from_wire(routed[0].body)
    assert (order.channel, order.external_id, str(order.total), order.status.value) == (
        "dy",
        ORDER_ID,
        "117.70",
        "paid",
    )
    assert dead[0].message_id == "dy.fetch.m-2"
    assert dead[0].headers[H_REASON] == "platform_refused"
    assert "订单不存在" in str(dead[0].headers[H_DETAIL])
    assert doudian.down == 0 and doudian.tokens_issued == 1
    assert bus.queue_depth(fetch_queue.name) == 0


def test_taobao_tmc_messages_become_orders_once_through_the_real_broker(
    namespace: str, amqp_url: str
) -> None:
    from connectors.publishing import fetch_publisher
    from connectors.taobao import TaobaoOrders, TmcPuller, TopApi
    from infra.setting_specs import PollerSpec
    from tests.top_fake import FakeTop, message_text
    from tests.unit.test_taobao import APP_KEY as TOP_KEY
    from tests.unit.test_taobao import CONSUME, SESSION, TID, TRADE
    from tests.unit.test_taobao import SECRET as TOP_SECRET

    account = {"app_key": TOP_KEY, "app_secret": TOP_SECRET, "session": SESSION}
    settings = Settings(
        namespace=namespace,
        broker_url="amqp://x",
        delivery_limit=3,
        pollers={"tb": PollerSpec(connector="taobao-tmc", taobao=account)},
    )
    topology = build_topology(settings, fetching_channels(settings))
    bus = Bus(amqp_url, topology, BusOptions(delivery_limit=3, confirm_timeout=5, heartbeat=10))
    bus.check()
    publisher = bus.publisher()
    top = FakeTop(TOP_KEY, TOP_SECRET, SESSION)
    top.trades[TID] = TRADE["response_text"]
    trade_message = message_text(CONSUME["trade_buyer_pay"])
    top.queue = [message_text(CONSUME["item_stock_changed"]), trade_message]
    api = TopApi(httpx.Client(transport=top.transport()), TOP_KEY, TOP_SECRET, SESSION, "https://t")
    puller = TmcPuller("tb", api, fetch_publisher(publisher, topology, "tb"))
    try:
        assert puller.poll_once() == 1
        # TMC gives the trade message again (say, the confirm was lost): same request id.
        top.queue = [trade_message]
        assert puller.poll_once() == 1
        fetch_queue = topology.queue_for(fetch_role("tb"))
        wait_for(lambda: bus.queue_depth(fetch_queue.name) == 2)

        worker = FetchInbound("tb", TaobaoOrders(api, "tb"), topology, publisher)
        routed: list[Delivery] = []
        halt, ready = threading.Event(), threading.Event()
        fetching = threading.Thread(
            target=bus.consume,
            args=([fetch_queue.name], worker.handle_batch, halt),
            kwargs={"ready": ready},
            daemon=True,
        )
        with Consuming(bus, [topology.router_queue], routed.append):
            fetching.start()
            assert ready.wait(20), "the fetch worker did not start"
            try:
                wait_for(lambda: len(routed) == 2)
            finally:
                halt.set()
                fetching.join(20)
    finally:
        publisher.close()
    assert [d.message_id for d in routed] == ["tb.tmc-7104300007405429233"] * 2
    order = CanonicalOrder.from_wire(routed[0].body)
    assert (order.channel, order.external_id, str(order.total)) == ("tb", TID, "179.00")
    # Each delivery of the trade message was confirmed once its request was queued.
    assert top.confirmed == ["7104300007405429232", "7104300007405429233", "7104300007405429233"]
