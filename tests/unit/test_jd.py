"""JD POP: jingdong.pop.order.search in signed six-hour windows, the cursor,
errors, and the order mapping against the fixture (connectors/fixtures/jd)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jsonschema
import pytest
from sqlalchemy import Engine, select

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder, json_schema
from canonical.validation import violations
from connectors.base import ConnectorError
from connectors.jd import (
    REFUND_API,
    JdOrdersAndRefunds,
    JdPoller,
    JdRefundPoller,
    jd_spec,
    to_canonical,
)
from connectors.jd_services import ORDER_API, SERVICE_API, JdServicePoller
from connectors.payload import SHANGHAI, canonical_order, load_json
from connectors.registry import check_poller
from infra.setting_specs import PollerSpec
from infra.settings import Settings
from infra.tables import outbox
from infra.topology import build_topology
from orderbus.bootstrap import bootstrap
from router.service import RouterService
from tests.factories import delivery_for

APP_KEY, SECRET, TOKEN = "jd-app-key", "jd-app-secret", "jd-access-token"
FIXTURE = json.loads(
    (Path(str(resources.files("connectors") / "fixtures" / "jd")) / "order-search.json").read_text(
        "utf-8"
    )
)
ORDERS: list[dict[str, Any]] = load_json(FIXTURE["response_text"])[
    "jingdong_pop_order_search_responce"
]["searchorderinfo_result"]["orderInfoList"]


def test_the_fixture_orders_read_exactly() -> None:
    for order, expect in zip(ORDERS, FIXTURE["expect"], strict=True):
        canonical = canonical_order(to_canonical(order, "jd", "shop-1"))
        jsonschema.validate(json.loads(canonical.to_wire()), json_schema())
        assert canonical.external_id == expect["external_id"]
        assert (str(canonical.total), canonical.status.value) == (expect["total"], expect["status"])
        assert [[i.sku, i.quantity] for i in canonical.items] == expect["items"]
        assert canonical.customer.phone == expect["phone"]
        assert canonical.customer.masked_phone == expect.get("masked_phone")
        assert canonical.shipping_address.city == expect["city"]
        assert canonical.computed_total() == canonical.total
        assert violations(canonical) == []


@pytest.mark.parametrize(
    ("state", "status"),
    [("LOCKED", "paid"), ("FINISHED_L", "delivered"), ("TRADE_CANCELED", "cancelled")],
)
def test_statuses(state: str, status: str) -> None:
    order = ORDERS[0] | {"orderState": state}
    assert canonical_order(to_canonical(order, "jd", "s")).status.value == status


def test_an_unknown_state_or_a_bad_count_is_named() -> None:
    with pytest.raises(ConnectorError, match="NEW_STATE"):
        to_canonical(ORDERS[0] | {"orderState": "NEW_STATE"}, "jd", "s")
    line = ORDERS[0]["itemInfoList"][0] | {"itemTotal": "1.5"}
    with pytest.raises(ConnectorError, match="itemTotal"):
        to_canonical(ORDERS[0] | {"itemInfoList": [line]}, "jd", "s")


class JdRouter:
    """The fake API: the signature, the 360buy_param_json, one order per page."""

    def __init__(
        self,
        orders: list[dict[str, Any]],
        refunds: list[dict[str, Any]] | None = None,
        services: list[dict[str, Any]] | None = None,
    ) -> None:
        self.orders = orders
        self.refunds = refunds or []  # refund applications, as queryPageList lists them
        self.services = services or []  # after-sale service orders, as asc.query.list lists them
        self.order_reads: list[str] = []
        self.windows: list[tuple[str, str, str]] = []
        self.refund_pages: list[tuple[str, str, int]] = []
        self.answer: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        sign = form.pop("sign")
        text = SECRET + "".join(k + form[k] for k in sorted(form)) + SECRET
        assert sign == hashlib.md5(text.encode()).hexdigest().upper()
        assert (form["app_key"], form["access_token"], form["v"]) == (APP_KEY, TOKEN, "2.0")
        if self.answer is not None:
            return httpx.Response(200, json=self.answer)
        business = json.loads(form["360buy_param_json"])
        if form["method"] == REFUND_API:
            return self._refunds(business)
        if form["method"] == SERVICE_API:
            return self._services(business)
        if form["method"] == ORDER_API:
            return self._order(business)
        assert form["method"] == "jingdong.pop.order.search"
        start, end = business["start_date"], business["end_date"]
        span = _local(end) - _local(start)
        assert timedelta(0) < span <= timedelta(hours=6) and business["dateType"] == 0
        self.windows.append((start, end, business["page"]))
        found = [o for o in self.orders if start <= o["modified"] <= end]
        page, size = int(business["page"]), int(business["page_size"])
        result = {
            "apiResult": {"success": True},
            "orderTotal": len(found),
            "orderInfoList": found[(page - 1) * size : page * size],
        }
        body = {"jingdong_pop_order_search_responce": {"searchorderinfo_result": result}}
        return httpx.Response(200, json=body)

    def _refunds(self, business: dict[str, Any]) -> httpx.Response:
        start, end = business["checkTimeStart"], business["checkTimeEnd"]
        page, size = business["pageIndex"], business["pageSize"]
        self.refund_pages.append((start, end, page))
        decided = [r for r in self.refunds if start <= r["checkTime"] <= end]
        listed = [{"refundApplyVo": r} for r in decided[(page - 1) * size : page * size]]
        result = {"success": True, "result": listed}
        return httpx.Response(200, json={f"{REFUND_API.replace('.', '_')}_response": {
            "queryResult": result}})  # fmt: skip

    def _services(self, business: dict[str, Any]) -> httpx.Response:
        assert (business["buId"], business["operatePin"]) == ("10086", "orderbus")
        start = _local(business["updateTimeBegin"]).timestamp() * 1000
        end = _local(business["updateTimeEnd"]).timestamp() * 1000
        changed = [s for s in self.services if start <= s["updateDate"] <= end]
        page, size = business["pageNumber"], business["pageSize"]
        result = {"success": True, "totalCount": len(changed),
                  "data": changed[(page - 1) * size : page * size]}  # fmt: skip
        return httpx.Response(200, json={"jingdong_asc_query_list_responce": {
            "code": "0", "pageResult": result}})  # fmt: skip

    def _order(self, business: dict[str, Any]) -> httpx.Response:
        self.order_reads.append(business["order_id"])
        [order] = [o for o in self.orders if o["orderId"] == business["order_id"]]
        info = {"apiResult": {"success": True}, "orderInfo": order}
        return httpx.Response(200, json={"jingdong_pop_order_get_responce": {
            "code": "0", "orderDetailInfo": info}})  # fmt: skip


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def poller(engine: Engine, api: JdRouter, published: list[CanonicalOrder]) -> JdPoller:
    def publish_many(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        published.extend(orders)
        return [None] * len(orders)

    return JdPoller(
        "jd",
        jd_spec("https://jd.example/routerjson", start="2026-11-24T18:00:00+08:00", overlap=0),
        None,
        engine,
        httpx.Client(transport=httpx.MockTransport(api)),
        publish_many,
        lambda reason, detail, item: None,
        app_key=APP_KEY,
        app_secret=SECRET,
        access_token=TOKEN,
        shop="shop-1",
        now=lambda: NOW.timestamp(),
        sleep=lambda seconds: None,
    )


def test_windows_pages_and_the_cursor(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.jd.PAGE_SIZE", 1)  # so two orders make two pages
    api = JdRouter(ORDERS)
    published: list[CanonicalOrder] = []
    report = poller(sqlite_engine, api, published).poll_once()
    # 18:00 yesterday to 09:57 today: windows of six hours; both orders were
    # modified in the last one, one per page, read from the last page back.
    assert [(s[11:16], e[11:16], p) for s, e, p in api.windows] == [
        ("18:00", "00:00", "1"),
        ("00:00", "06:00", "1"),
        ("06:00", "09:57", "1"),
        ("06:00", "09:57", "2"),
        ("06:00", "09:57", "1"),
    ]
    assert sorted({o.external_id for o in published}) == ["300012345678", "300087654321"]
    assert report.cursor == (NOW - timedelta(minutes=3)).isoformat()


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"error_response": {"code": "19", "zh_desc": "token已过期或者不存在"}}, ConnectorError),
        ({"error_response": {"code": "67", "zh_desc": "调用过于频繁"}}, EndpointUnavailable),
        (
            {
                "jingdong_pop_order_search_responce": {
                    "searchorderinfo_result": {
                        "apiResult": {"success": False, "chineseErrCode": "系统异常"}
                    }
                }
            },
            EndpointUnavailable,
        ),
    ],
)
def test_jd_errors(sqlite_engine: Engine, answer: dict[str, Any], kind: type[Exception]) -> None:
    api = JdRouter([])
    api.answer = answer
    with pytest.raises(kind):
        poller(sqlite_engine, api, []).poll_once()


def test_bootstrap_builds_the_jd_poller(sqlite_url: str) -> None:
    shop = {"app_key": APP_KEY, "app_secret": SECRET, "access_token": TOKEN, "shop": "shop-1"}
    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            pollers={"jd": PollerSpec(connector="jd", jd=shop)},
        )
    )
    assert isinstance(app.poller("jd"), JdPoller)
    with pytest.raises(ValueError, match="needs its jd settings"):
        check_poller(PollerSpec(connector="jd"))


# -- refund applications (售前退款) ------------------------------------------------


def application(**changes: Any) -> dict[str, Any]:
    """A refund application with the fields JD's refund-apply list answers
    (id, orderId, applyRefundSum in fen, status, applyTime, checkTime,
    reason); the values ours."""
    return {
        "id": "1380012345",
        "orderId": "300012345678",
        "applyRefundSum": 23900,
        "status": 3,
        "applyTime": "2026-11-25 09:20:00",
        "checkTime": "2026-11-25 09:40:00",
        "reason": "不想要了",
        **changes,
    }


def refund_poller(
    engine: Engine, api: JdRouter, published: list[tuple[str, CanonicalOrder]],
    bad: list[tuple[str, str]],
) -> JdRefundPoller:  # fmt: skip
    def publish_many(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        published.extend(zip(ids, orders, strict=True))
        return [None] * len(orders)

    return JdRefundPoller(
        "jd",
        jd_spec("https://jd.example/routerjson", start="2026-11-25T06:00:00+08:00", overlap=0),
        None, engine, httpx.Client(transport=httpx.MockTransport(api)), publish_many,
        lambda reason, detail, item: bad.append((reason, detail)),
        engine=engine, app_key=APP_KEY, app_secret=SECRET, access_token=TOKEN, shop="shop-1",
        now=lambda: NOW.timestamp(), sleep=lambda seconds: None,
    )  # fmt: skip


def _paid_order_routed(engine: Engine) -> RouterService:
    """The router with the fixture's paid order (300012345678) accepted."""
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(canonical_order(to_canonical(ORDERS[0], "jd", "shop-1"))))
    return router


def test_a_refund_application_cancels_the_order_orderbus_has_once(sqlite_engine: Engine) -> None:

    from tests.factories import delivery_for

    router = _paid_order_routed(sqlite_engine)
    api = JdRouter([], [application(), application(id="77", orderId="300099999999")])
    published: list[tuple[str, CanonicalOrder]] = []
    bad: list[tuple[str, str]] = []
    report = refund_poller(sqlite_engine, api, published, bad).poll_once()
    [(message_id, order)] = published
    assert message_id == "jd.refund.1380012345.3.20261125094000"
    [sale] = order.after_sales
    assert (sale.kind.value, sale.status.value, str(sale.amount)) == (
        "cancel",
        "completed",
        "239.00",
    )
    assert sale.whole_order and order.updated_at is not None
    assert [reason for reason, _ in bad] == ["order_not_known"]  # 300099999999
    assert report.published == 1 and report.bad == 1
    # through the router: one intercept to the warehouse, one reversal to finance
    router.handle(delivery_for(order, message_id=message_id))
    router.handle(delivery_for(order, message_id=message_id))  # read again: nothing more
    with sqlite_engine.connect() as conn:
        sent = [r.routing_key for r in conn.execute(
            select(outbox).where(outbox.c.message_id.like("%-reversal-%")
                                 | outbox.c.message_id.like("%-intercept-%")))]  # fmt: skip
    assert sorted(sent) == ["deliver.finance", "deliver.warehouse"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(0, "requested"), (1, "agreed"), (5, "agreed"), (2, "refused"), (4, "refused"),
     ("3", "completed")],
)  # fmt: skip
def test_refund_application_statuses(
    sqlite_engine: Engine, status: int | str, expected: str
) -> None:

    _paid_order_routed(sqlite_engine)
    published: list[tuple[str, CanonicalOrder]] = []
    bad: list[tuple[str, str]] = []
    refund_poller(sqlite_engine, JdRouter([], [application(status=status)]), published, bad)\
        .poll_once()  # fmt: skip
    assert [o.after_sales[0].status.value for _, o in published] == [expected]


def test_an_unknown_refund_application_status_is_recorded_not_guessed(
    sqlite_engine: Engine,
) -> None:

    _paid_order_routed(sqlite_engine)
    bad: list[tuple[str, str]] = []
    refund_poller(sqlite_engine, JdRouter([], [application(status=9)]), [], bad).poll_once()
    assert bad and "status 9" in bad[0][1]


# -- after-sale service orders (售后服务单) -----------------------------------------


def service(**changes: Any) -> dict[str, Any]:
    """A service order with the fields JD's asc.query.list answers (as its SDK
    types them: serviceId, orderId, skuId, customerExpect, serviceStatus and
    its name, serviceCount, actualPayPrice, processResult, updateDate in ms);
    the values ours, for the fixture's shipped order 300087654321."""
    return {
        "serviceId": 724578811,
        "applyId": 531087170,
        "orderId": 300087654321,
        "skuId": 100055555555,
        "customerExpect": 10,
        "customerExpectName": "退货",
        "serviceStatus": 10005,
        "serviceStatusName": "待收货",
        "serviceCount": 1,
        "actualPayPrice": 39.90,
        "updateDate": int(datetime(2026, 11, 25, 1, 30, tzinfo=UTC).timestamp() * 1000),
        **changes,
    }


def service_poller(
    engine: Engine, api: JdRouter, published: list[tuple[str, CanonicalOrder]],
    bad: list[tuple[str, str]],
) -> JdServicePoller:  # fmt: skip
    def publish_many(orders: list[CanonicalOrder], ids: list[str]) -> list[Exception | None]:
        published.extend(zip(ids, orders, strict=True))
        return [None] * len(orders)

    return JdServicePoller(
        "jd",
        jd_spec("https://jd.example/routerjson", start="2026-11-25T06:00:00+08:00", overlap=0),
        None, engine, httpx.Client(transport=httpx.MockTransport(api)), publish_many,
        lambda reason, detail, item: bad.append((reason, detail)),
        engine=engine, vender_id="10086", app_key=APP_KEY, app_secret=SECRET,
        access_token=TOKEN, shop="shop-1", now=lambda: NOW.timestamp(),
        sleep=lambda seconds: None,
    )  # fmt: skip


def _routed(engine: Engine, *orders: dict[str, Any]) -> RouterService:
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    for order in orders:
        router.handle(delivery_for(canonical_order(to_canonical(order, "jd", "shop-1"))))
    return router


def _documents(engine: Engine, kind: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).where(outbox.c.message_id.like(f"%-{kind}-%")))
        return sorted(r.routing_key for r in rows)


def test_a_jd_return_after_shipment_is_an_after_sale_of_its_line(sqlite_engine: Engine) -> None:
    router = _routed(sqlite_engine, ORDERS[1])
    exchange = service(serviceId=1, customerExpect=20, customerExpectName="换货")
    api = JdRouter(ORDERS, services=[service(), exchange])
    published: list[tuple[str, CanonicalOrder]] = []
    bad: list[tuple[str, str]] = []
    report = service_poller(sqlite_engine, api, published, bad).poll_once()
    [(message_id, order)] = published  # the exchange is left out, not an error
    assert message_id == "jd.service.724578811.agreed.1795570200000" and not bad
    [sale] = order.after_sales
    assert (sale.kind.value, sale.status.value, sale.amount) == (
        "return",
        "agreed",
        Decimal("39.9"),
    )
    assert [(x.sku, x.quantity, x.amount) for x in sale.lines] == [
        ("jd-100055555555", 1, Decimal("39.90"))
    ]
    assert api.order_reads == []  # the line is JD's own SKU: no need to read the order
    assert report.published == 1
    router.handle(delivery_for(order, message_id=message_id))
    router.handle(delivery_for(order, message_id=message_id))  # read again: nothing more
    assert _documents(sqlite_engine, "return") == ["deliver.finance", "deliver.warehouse"]


def test_a_line_with_the_shops_own_sku_is_found_by_reading_the_order_once(
    sqlite_engine: Engine,
) -> None:
    _routed(sqlite_engine, ORDERS[0])  # paid, one line JD-KETTLE-1L (JD's 100012043978) x 2
    first = service(serviceId=11, orderId=300012345678, skuId=100012043978, customerExpect=11,
                    customerExpectName="仅退款", actualPayPrice="119.50")  # fmt: skip
    second = service(**{**first, "serviceId": 12})
    api = JdRouter(ORDERS, services=[first, second])
    published: list[tuple[str, CanonicalOrder]] = []
    service_poller(sqlite_engine, api, published, []).poll_once()
    assert api.order_reads == ["300012345678"]
    sales = [o.after_sales[-1] for _, o in published]
    assert [(s.id, s.kind.value, s.lines[0].sku, str(s.amount)) for s in sales] == [
        ("11", "cancel", "JD-KETTLE-1L", "119.50"),  # money only, not shipped: stop the pick
        ("12", "cancel", "JD-KETTLE-1L", "119.50"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("待审核", "requested"), ("待收货", "agreed"), ("待处理", "agreed"),
     ("审核关闭", "refused"), ("取消", "withdrawn"), ("完成", "completed")],
)  # fmt: skip
def test_service_order_statuses(sqlite_engine: Engine, name: str, expected: str) -> None:
    _routed(sqlite_engine, ORDERS[1])
    published: list[tuple[str, CanonicalOrder]] = []
    api = JdRouter(ORDERS, services=[service(serviceStatusName=name, processResult=40)])
    service_poller(sqlite_engine, api, published, []).poll_once()
    assert [o.after_sales[0].status.value for _, o in published] == [expected]


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"serviceStatus": 10099, "serviceStatusName": "待用户确认"}, "10099 (待用户确认)"),
     ({"serviceStatusName": "完成", "processResult": 23, "processResultName": "换新"}, "换新"),
     ({"orderId": 300099999999}, "orderbus does not have"),
     ({"serviceCount": "two"}, "serviceCount"),
     ({"skuId": 999}, "no line for JD's skuId 999")],
)  # fmt: skip
def test_a_service_order_orderbus_cannot_read_is_recorded_not_guessed(
    sqlite_engine: Engine, changes: dict[str, Any], named: str
) -> None:
    _routed(sqlite_engine, ORDERS[1])
    bad: list[tuple[str, str]] = []
    published: list[tuple[str, CanonicalOrder]] = []
    service_poller(sqlite_engine, JdRouter(ORDERS, services=[service(**changes)]), published,
                   bad).poll_once()  # fmt: skip
    assert published == [] and len(bad) == 1 and named in bad[0][1]


def test_bootstrap_reads_service_orders_with_a_vender_id(sqlite_url: str) -> None:
    shop = {"app_key": APP_KEY, "app_secret": SECRET, "access_token": TOKEN, "shop": "shop-1"}
    settings = Settings(
        broker_url="memory://",
        database_url=sqlite_url,
        pollers={
            "jd": PollerSpec(connector="jd", jd=shop),
            "jd2": PollerSpec(connector="jd", jd={**shop, "vender_id": "10086"}),
        },
    )
    app = bootstrap(settings)
    plain, with_vender = app.poller("jd"), app.poller("jd2")
    assert isinstance(plain, JdOrdersAndRefunds) and isinstance(with_vender, JdOrdersAndRefunds)
    assert [type(p).__name__ for p in plain.refunds] == ["JdRefundPoller"]
    assert [type(p).__name__ for p in with_vender.refunds] == [
        "JdRefundPoller",
        "JdServicePoller",
    ]
