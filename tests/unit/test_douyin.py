"""Douyin shop: the push (references, not orders), the signed order API
against a fake Doudian, the mapping's statuses, and the fetch worker."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from canonical.errors import EndpointUnavailable, MalformedMessage, TransientError
from canonical.validation import violations
from connectors.base import ChannelConfig, ConnectorError, OrderReference, WebhookRequest
from connectors.douyin import DoudianApi, DouyinConnector, DouyinOrders, event_sign, param_json
from connectors.ingest_app import IngestDeps, create_ingest_app
from connectors.order_fetch import FetchInbound
from connectors.registry import fetching_channels
from infra.messages import Delivery
from infra.setting_specs import ChannelSpec, DouyinSpec
from infra.settings import Settings
from infra.tables import rejected_requests
from infra.topology import build_topology
from tests.doudian_fake import FakeDoudian
from tests.factories import FakePublisher

APP_KEY = "7012345678901234567"
SECRET = "doudian-app-secret"
SHOP = "4463798"
FIXTURE = json.loads(
    (
        Path(str(resources.files("connectors") / "fixtures" / "douyin")) / "trade-paid.json"
    ).read_text("utf-8")
)
DETAIL: dict[str, Any] = FIXTURE["detail"]["data"]["shop_order_detail"]
ORDER_ID = DETAIL["order_id"]

connector = DouyinConnector()
channel = ChannelConfig("dy", "douyin", (SECRET,), app_key=APP_KEY)


def push(messages: list[dict[str, Any]]) -> bytes:
    return json.dumps(messages, separators=(",", ":")).encode()


def message(tag: str, msg_id: str, **event: Any) -> dict[str, Any]:
    return {"tag": tag, "msg_id": msg_id, "data": json.dumps(event)}


def signed(body: bytes, secret: str = SECRET, **headers: str) -> WebhookRequest:
    sign = {"event-sign": event_sign(APP_KEY, body, secret), "app-id": APP_KEY}
    return WebhookRequest({**sign, **headers}, body, 0.0)


# -- the push ---------------------------------------------------------------


def test_the_push_names_orders_exactly_and_ignores_other_messages() -> None:
    body = (
        b'[{"tag":"101","msg_id":"m-1","data":"{\\"p_id\\":4781320682406083640,'
        b'\\"shop_id\\":4463798}"},'
        b'{"tag":"200","msg_id":"m-2","data":"{\\"product_id\\":1}"},'
        b'{"tag":"106","msg_id":"m-3","data":"{\\"p_id\\":9223372036854775807}"}]'
    )
    request = signed(body)
    connector.authenticate(request, channel, 300)
    result = connector.read(request, channel)
    # Ids above 2**53 stay exact (a float would have changed them).
    assert [(r.external_id, r.delivery_id, r.shop) for r in result.references] == [
        ("4781320682406083640", "m-1", SHOP),
        ("9223372036854775807", "m-3", None),
    ]
    assert result.arrivals == ()


def test_a_push_without_order_messages_is_ignored_naming_the_tags() -> None:
    result = connector.read(signed(push([message("200", "m-9", product_id=1)])), channel)
    assert result.references == () and result.ignored == "no order messages (tag 200)"


def test_an_order_message_without_msg_id_is_refused() -> None:
    body = push([{"tag": "101", "data": json.dumps({"p_id": 1})}])
    with pytest.raises(ConnectorError) as caught:
        connector.read(signed(body), channel)
    assert caught.value.status == 422 and "msg_id" in caught.value.detail


def test_a_push_for_another_app_or_with_another_secret_is_refused() -> None:
    body = push([message("101", "m-1", p_id=1)])
    for request, reason in [
        (signed(body, **{"app-id": "999"}), "wrong_app"),
        (signed(body, secret="someone-else"), "bad_signature"),
    ]:
        with pytest.raises(ConnectorError) as caught:
            connector.authenticate(request, channel, 300)
        assert (caught.value.status, caught.value.reason) == (401, reason)


def test_a_channel_without_its_app_key_refuses_everything() -> None:
    body = push([message("101", "m-1", p_id=1)])
    with pytest.raises(ConnectorError) as caught:
        connector.authenticate(signed(body), ChannelConfig("dy", "douyin", (SECRET,)), 300)
    assert caught.value.reason == "no_secret"


# -- the mapping ------------------------------------------------------------


def detail(**changes: Any) -> dict[str, Any]:
    return {"code": 10000, "data": {"shop_order_detail": copy.deepcopy(DETAIL) | changes}}


REFERENCE = OrderReference(ORDER_ID, "m-1", SHOP)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"order_status": 1}, "created"),
        ({"order_status": 105}, "paid"),
        ({"order_status": 101}, "paid"),
        ({"order_status": 3}, "shipped"),
        ({"order_status": 5}, "delivered"),
        ({"order_status": 4}, "cancelled"),
        ({"order_status": 4, "main_status": 21}, "refunded"),
        ({"order_status": 5, "main_status": 39}, "refunded"),
    ],
)
def test_statuses(changes: dict[str, Any], status: str) -> None:
    assert connector.read_detail(detail(**changes), REFERENCE, channel).status.value == status


def test_fen_become_exact_yuan_and_the_promotion_is_the_discount() -> None:
    order = connector.read_detail(detail(), REFERENCE, channel)
    assert [str(i.unit_price) for i in order.items] == ["49.90", "19.90"]
    assert (str(order.shipping_fee), str(order.order_discount), str(order.total)) == (
        "8.00",
        "10.00",
        "117.70",
    )
    assert order.placed_at.isoformat() == "2023-07-22T04:26:40+00:00"
    assert order.shipping_address.street == "粤海街道 科技园南区1栋101"


def test_an_encrypted_phone_is_left_out_not_sent_as_a_phone() -> None:
    order = connector.read_detail(
        detail(post_tel="", encrypt_post_tel="#R5mn#ENCRYPTED#"), REFERENCE, channel
    )
    assert order.customer.phone is None
    # Doudian's masked number stands for the contact: the order still flows.
    assert order.customer.masked_phone == "138****8000"
    assert violations(order) == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"order_status": 77}, "order_status 77"),
        ({"pay_amount": 117.7}, "pay_amount"),
        ({"sku_order_list": []}, "sku_order_list"),
        ({"order_id": "1"}, "asked for order"),
    ],
)
def test_an_unreadable_detail_names_the_field(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        connector.read_detail(detail(**changes), REFERENCE, channel)
    assert caught.value.status == 422 and words in caught.value.detail


# -- the API ----------------------------------------------------------------


def test_param_json_is_sorted_at_every_level_and_keeps_chinese() -> None:
    assert param_json({"b": 1, "a": {"d": "中", "c": [2]}}) == '{"a":{"c":[2],"d":"中"},"b":1}'


@pytest.fixture
def doudian() -> FakeDoudian:
    fake = FakeDoudian(APP_KEY, SECRET, SHOP)
    fake.orders[ORDER_ID] = copy.deepcopy(DETAIL)
    return fake


def api_for(fake: FakeDoudian, clock: list[float] | None = None) -> DoudianApi:
    now = clock or [1_700_000_000.0]
    client = httpx.Client(transport=fake.transport())
    return DoudianApi(client, APP_KEY, SECRET, SHOP, "https://fake-doudian", clock=lambda: now[0])


def test_the_order_is_fetched_with_a_signed_request_and_one_token(doudian: FakeDoudian) -> None:
    api = api_for(doudian)
    for _ in range(3):
        assert api.order_detail(ORDER_ID)["data"]["shop_order_detail"]["order_id"] == ORDER_ID
    assert doudian.calls == ["token.create"] + ["order.orderDetail"] * 3


def test_an_expired_token_is_renewed_once(doudian: FakeDoudian) -> None:
    api = api_for(doudian)
    api.order_detail(ORDER_ID)
    doudian.expire_tokens()
    api.order_detail(ORDER_ID)
    assert doudian.tokens_issued == 2
    assert doudian.calls[-3:] == ["order.orderDetail", "token.create", "order.orderDetail"]


def test_the_token_is_renewed_before_it_expires(doudian: FakeDoudian) -> None:
    clock = [1_700_000_000.0]
    api = api_for(doudian, clock)
    api.order_detail(ORDER_ID)
    clock[0] += 604800 - 200  # within the margin before the week is up
    api.order_detail(ORDER_ID)
    assert doudian.tokens_issued == 2


@pytest.mark.parametrize("trouble", ["down", "rate_limited"])
def test_an_unavailable_or_limiting_api_is_transient(doudian: FakeDoudian, trouble: str) -> None:
    api = api_for(doudian)
    api.token()
    setattr(doudian, trouble, 1)
    with pytest.raises(EndpointUnavailable):
        api.order_detail(ORDER_ID)
    assert api.order_detail(ORDER_ID)["code"] == 10000  # and then it answers


def test_an_order_the_platform_does_not_have_is_permanent(doudian: FakeDoudian) -> None:
    with pytest.raises(ConnectorError) as caught:
        api_for(doudian).order_detail("123")
    assert caught.value.reason == "platform_refused" and "订单不存在" in caught.value.detail


def test_a_wrong_secret_is_not_taken_for_a_missing_order(doudian: FakeDoudian) -> None:
    api = DoudianApi(httpx.Client(transport=doudian.transport()), APP_KEY, "wrong", SHOP)
    with pytest.raises(EndpointUnavailable) as caught:
        api.order_detail(ORDER_ID)
    assert "签名错误" in str(caught.value)


# -- the fetch worker -------------------------------------------------------


def fetch_delivery(external_id: str, delivery_id: str, body: bytes | None = None) -> Delivery:
    data = {"external_id": external_id, "delivery_id": delivery_id, "shop": SHOP}
    return Delivery(
        queue="t.fetch.dy",
        body=body if body is not None else json.dumps(data).encode(),
        message_id=f"dy.fetch.{delivery_id}",
        correlation_id=None,
        headers={},
        exchange="t.orders",
        routing_key="fetch.dy",
        redelivered=False,
        content_type="application/json",
        deliveries=1,
    )


def test_the_fetch_worker_publishes_the_order_under_the_push_id(doudian: FakeDoudian) -> None:
    settings = Settings(
        channel_secrets={"dy": [SECRET]},
        channels={
            "dy": ChannelSpec(connector="douyin", app_key=APP_KEY, douyin=DouyinSpec(shop_id=SHOP))
        },
        namespace="t",
    )
    publisher = FakePublisher()
    source = DouyinOrders(api_for(doudian), channel)
    topology = build_topology(settings, fetching_channels(settings))
    kept: list[tuple[str, bytes]] = []
    worker = FetchInbound(
        "dy",
        source,
        topology,
        publisher,  # type: ignore[arg-type]
        lambda mid, body: kept.append((mid, body)),
    )
    results = worker.handle_batch(
        [
            fetch_delivery(ORDER_ID, "m-1"),
            fetch_delivery("404", "m-2"),
            fetch_delivery(ORDER_ID, "m-3", body=b"not json"),
        ]
    )
    assert results[0] is None
    assert isinstance(results[1], MalformedMessage) and "订单不存在" in str(results[1])
    assert isinstance(results[2], MalformedMessage)
    assert [m.message_id for m in publisher.published] == ["dy.m-1"]
    assert publisher.published[0].routing_key == "ingest.dy"
    # the platform's own answer, kept beside the order under the same message id
    [(kept_id, kept_body)] = kept
    detail = json.loads(kept_body)["data"]["shop_order_detail"]
    assert kept_id == "dy.m-1" and detail["order_id"] == ORDER_ID

    doudian.down = 1
    [transient] = worker.handle_batch([fetch_delivery(ORDER_ID, "m-4")])
    assert isinstance(transient, TransientError)


# -- the ingest app ---------------------------------------------------------


@pytest.fixture
def client(sqlite_engine: Engine, publisher: FakePublisher) -> Iterator[TestClient]:
    settings = Settings(
        channel_secrets={"dy": [SECRET]},
        channels={
            "dy": ChannelSpec(connector="douyin", app_key=APP_KEY, douyin=DouyinSpec(shop_id=SHOP))
        },
        namespace="t",
    )
    topology = build_topology(settings, fetching_channels(settings))
    deps = IngestDeps(settings, sqlite_engine, publisher, topology)  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as c:
        yield c


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def test_a_push_is_answered_as_doudian_requires_once_its_fetches_are_queued(
    client: TestClient, publisher: FakePublisher, sqlite_engine: Engine
) -> None:
    body = push([message("101", "m-1", p_id=int(ORDER_ID), shop_id=int(SHOP))])
    headers = {"Content-Type": "application/json", "event-sign": event_sign(APP_KEY, body, SECRET)}
    for _ in range(2):  # Doudian pushing again: the same fetch request id
        answer = client.post("/ingest/dy", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "success"}
    assert [(m.routing_key, m.message_id) for m in publisher.published] == [
        ("fetch.dy", "dy.fetch.m-1")
    ] * 2
    assert json.loads(publisher.published[0].body) == {
        "external_id": ORDER_ID,
        "delivery_id": "m-1",
        "shop": SHOP,
    }

    publisher.down = True
    answer = client.post("/ingest/dy", content=body, headers=headers)
    assert answer.status_code == 503  # not {"code": 0}: Doudian pushes it again

    ignored = push([message("200", "m-2", product_id=1)])
    sign = {"Content-Type": "application/json", "event-sign": event_sign(APP_KEY, ignored, SECRET)}
    answer = client.post("/ingest/dy", content=ignored, headers=sign)
    assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "success"}
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(rejected_requests.c.status_code, rejected_requests.c.reason))
        assert [tuple(r) for r in rows] == [(503, "broker_unavailable"), (200, "ignored")]


# -- after-sales ----------------------------------------------------------------

REFUND_FIXTURE = json.loads(
    (Path(str(resources.files("connectors") / "fixtures" / "douyin"))
     / "refund-return-completed.json").read_text("utf-8")
)  # fmt: skip
SHIPPED_WITH_AFTER_SALE = REFUND_FIXTURE["detail"]["data"]["shop_order_detail"]
AFTER_SALES = REFUND_FIXTURE["detail"]["aftersale_list"]["items"]


def _channel() -> ChannelConfig:
    return ChannelConfig(name="dy", connector="douyin", secrets=(SECRET,), app_key=APP_KEY)


def test_an_order_showing_an_after_sale_is_fetched_with_its_after_sales(
    doudian: FakeDoudian,
) -> None:
    doudian.orders[ORDER_ID] = copy.deepcopy(SHIPPED_WITH_AFTER_SALE)
    doudian.after_sales[ORDER_ID] = copy.deepcopy(AFTER_SALES)
    source = DouyinOrders(api_for(doudian), _channel())
    order, kept = source.fetch_raw(OrderReference(ORDER_ID, "m-2", SHOP))
    assert doudian.calls == ["token.create", "order.orderDetail", "afterSale.List"]
    [sale] = order.after_sales  # the exchange is not an undone sale
    assert (sale.id, sale.kind.value, sale.status.value, str(sale.amount)) == (
        "7260000000000000001", "return", "completed", "49.90",
    )  # fmt: skip
    assert [(x.sku, x.quantity, str(x.amount)) for x in sale.lines] == [("DY-TSHIRT-M", 1, "49.90")]
    assert sale.reason == "尺码不合适" and violations(order) == []
    assert source.read_fetched(kept).after_sales == [sale]  # the replay: no call


def test_an_order_without_after_sales_costs_one_call(doudian: FakeDoudian) -> None:
    DouyinOrders(api_for(doudian), _channel()).fetch(OrderReference(ORDER_ID, "m-3", SHOP))
    assert doudian.calls == ["token.create", "order.orderDetail"]


@pytest.mark.parametrize(
    ("changes", "kind", "status"),
    [
        ({"aftersale_type": 2, "aftersale_status": 6}, "cancel", "requested"),
        ({"aftersale_type": 1, "aftersale_status": 11}, "refund", "agreed"),
        ({"aftersale_type": 0, "aftersale_status": 7}, "return", "agreed"),
        ({"aftersale_type": 0, "aftersale_status": 27}, "return", "refused"),
        ({"aftersale_type": 1, "aftersale_status": 28}, "refund", "withdrawn"),
    ],
)  # fmt: skip
def test_after_sale_types_and_statuses(changes: dict[str, Any], kind: str, status: str) -> None:
    item = copy.deepcopy(AFTER_SALES[0])
    item["aftersale_info"].update(changes)
    response = detail(**SHIPPED_WITH_AFTER_SALE) | {"aftersale_list": {"items": [item]}}
    order = DouyinConnector().read_detail(response, REFERENCE, _channel())
    assert [(s.kind.value, s.status.value) for s in order.after_sales] == [(kind, status)]


def test_an_after_sale_status_doudian_adds_later_is_named_not_guessed() -> None:
    item = copy.deepcopy(AFTER_SALES[0])
    item["aftersale_info"]["aftersale_status"] = 99
    response = detail(**SHIPPED_WITH_AFTER_SALE) | {"aftersale_list": {"items": [item]}}
    with pytest.raises(ConnectorError, match="status 99"):
        DouyinConnector().read_detail(response, REFERENCE, _channel())
