"""JD (京东 POP): orders pulled with ``jingdong.pop.order.search``.

As JD's open platform (JOS) documents it (help.jd.com/jos/question-569.html,
"订单检索": the system parameters, the time format and its six-minute
tolerance, the order states, start and end at most a month apart), and as its
integrators use it:

- Every request is a POST to ``https://api.jd.com/routerjson`` with
  ``method``, ``app_key``, ``access_token``, ``timestamp`` (``yyyy-MM-dd
  HH:mm:ss``, Asia/Shanghai), ``v=2.0``, the business parameters as one JSON
  text ``360buy_param_json``, and ``sign``: all those parameters sorted by name,
  each name followed by its value, wrapped in the app secret, MD5, upper-case
  hex (the TOP scheme).
- ``jingdong.pop.order.search`` takes ``start_date``/``end_date``
  (``yyyy-MM-dd HH:mm:ss``), ``dateType`` 0 (by modification time),
  ``order_state`` (a comma-separated list), ``optional_fields``, ``page`` and
  ``page_size`` (50 at most, as integrators document it); it answers
  ``jingdong_pop_order_search_responce.searchorderinfo_result`` with
  ``apiResult`` (``success``, ``chineseErrCode``), ``orderTotal`` and
  ``orderInfoList``. A refused call is ``{"error_response": {code, zh_desc,
  en_desc}}``.

The poller reads windows of at most six hours from its cursor, as the window
poller does (connectors/poller.py): the cursor moves to a window's end only
once every order in it was confirmed.

Mapping: amounts are yuan strings. ``orderState`` ``WAIT_SELLER_STOCK_OUT``,
``WAIT_SELLER_DELIVERY``, ``PAUSE``, ``POP_ORDER_PAUSE`` and ``LOCKED`` are paid
(locked or paused orders are still the buyer's; JD holds them),
``WAIT_GOODS_RECEIVE_CONFIRM`` shipped, ``FINISHED_L`` delivered,
``TRADE_CANCELED`` cancelled. Each line (``itemInfoList``) is ``jdPrice`` x
``itemTotal``; shipping ``freightPrice``; the total ``orderPayment`` (what the
buyer pays); the difference is the discount. SKU: ``outerSkuId``, else
``jd-{skuId}``. Receiver: ``consigneeInfo`` (``fullname``, ``mobile``,
``province``, ``city``, ``county``, ``town``, ``fullAddress``); a masked mobile
becomes ``masked_phone``. Times are Asia/Shanghai.

Refunds before shipment (售前退款, JD's refund applications 退款审核单): the poller
also reads, by check time (when the seller or JD decided), the applications
decided in each window (``jingdong.pop.afs.soa.refundapply.queryPageList``,
``checkTimeStart``/``checkTimeEnd``, ``pageIndex``/``pageSize``; its own cursor
``{channel}:refunds``), answered ``..._queryPageList_response.queryResult``
(``success``, ``result``: each ``{id, orderId, applyRefundSum (fen), status,
applyTime, checkTime, reason}``, in some answers inside ``refundApplyVo``).
Each becomes an after-sale of the whole order orderbus has, money only:
``status`` 0 requested, 1 and 5 agreed (seller, by hand), 3 completed (JD's
finance refunded), 2 and 4 refused; a cancel while the order had not shipped,
else a refund. An application for an order orderbus does not have is
recorded, not guessed (the order's own status, cancelled, still comes with
the order). JD's after-sale service orders (returns after shipment,
``jingdong.asc.query.list``) are read when the shop's vender id is given
(connectors/jd_services.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from canonical.aftersales import AfterSale
from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import AfterSaleChange, ConnectorError, unreadable
from connectors.known_orders import stored_order, with_after_sale
from connectors.payload import (
    SHANGHAI,
    TRY_LATER,
    address,
    amount,
    canonical_order,
    field,
    load_json,
    minor_units,
    phone_fields,
    sorted_params_md5,
    timestamp,
)
from connectors.poller import PollReport, PollSpec
from connectors.pull import PullDeps, WholeOrdersPull
from connectors.refunds import SHIPPED, after_sale, kind_of
from connectors.refunds import status_of as refund_status
from connectors.window_poller import WindowPoller, window_spec

JD_ENDPOINT = "https://api.jd.com/routerjson"
SEARCH_API = "jingdong.pop.order.search"
REFUND_API = "jingdong.pop.afs.soa.refundapply.queryPageList"
REFUND_STATUSES = {
    0: "requested",
    1: "agreed",
    5: "agreed",
    3: "completed",
    2: "refused",
    4: "refused",
}
JD_ITEMS = "$.jingdong_pop_order_search_responce.searchorderinfo_result.orderInfoList"
PAGE_SIZE = 50
ORDER_STATES = (
    "WAIT_SELLER_STOCK_OUT,WAIT_SELLER_DELIVERY,WAIT_GOODS_RECEIVE_CONFIRM,FINISHED_L,"
    "TRADE_CANCELED,LOCKED,PAUSE,POP_ORDER_PAUSE"
)
OPTIONAL_FIELDS = (
    "orderId,orderState,orderTotalPrice,orderSellerPrice,orderPayment,freightPrice,"
    "sellerDiscount,orderStartTime,modified,orderRemark,consigneeInfo,itemInfoList"
)
STATUSES = {
    "WAIT_SELLER_STOCK_OUT": "paid",
    "WAIT_SELLER_DELIVERY": "paid",
    "PAUSE": "paid",
    "POP_ORDER_PAUSE": "paid",
    "LOCKED": "paid",
    "WAIT_GOODS_RECEIVE_CONFIRM": "shipped",
    "FINISHED_L": "delivered",
    "TRADE_CANCELED": "cancelled",
}


def local_time(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def line_sku(line: dict[str, Any]) -> str:
    """orderbus's SKU of a JD order line: the shop's own code, else JD's id."""
    return str(line.get("outerSkuId") or f"jd-{field(line, 'skuId')}")


def to_canonical(order: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from one ``orderInfoList`` order."""
    state = str(field(order, "orderState"))
    if state not in STATUSES:
        raise unreadable(f"orderState {state!r} is not one orderbus knows")
    lines = order.get("itemInfoList")
    if not isinstance(lines, list) or not lines:
        raise unreadable("the order has no itemInfoList")
    items = []
    for index, line in enumerate(lines):
        where = f"itemInfoList[{index}]"
        count = str(field(line, "itemTotal"))
        if not count.isdigit():
            raise unreadable(f"{where}.itemTotal is not a count: {count!r}")
        items.append(
            {
                "sku": line_sku(line),
                "name": line.get("skuName"),
                "quantity": int(count),
                "unit_price": amount(field(line, "jdPrice"), f"{where}.jdPrice"),
            }
        )
    freight = amount(order.get("freightPrice") or "0", "freightPrice")
    total = amount(field(order, "orderPayment"), "orderPayment")
    goods = sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0"))
    consignee = order.get("consigneeInfo") or {}
    mobile = str(consignee.get("mobile") or "")
    modified = order.get("modified")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(order, "orderId")),
        "status": STATUSES[state],
        "currency": "CNY",
        "customer": {
            "name": consignee.get("fullname") or None,
            **phone_fields(mobile),
        },
        "shipping_address": address(
            country="CN",
            province=consignee.get("province"),
            city=consignee.get("city"),
            district=consignee.get("county"),
            lines=(consignee.get("fullAddress"),),
            postal_code=None,
        ),
        "items": items,
        "shipping_fee": freight,
        "order_discount": goods + freight - total,
        "total": total,
        "placed_at": timestamp(field(order, "orderStartTime"), "orderStartTime", SHANGHAI),
        "updated_at": timestamp(modified, "modified", SHANGHAI) if modified else None,
        "note": order.get("orderRemark") or None,
    }


def signed_form(
    method: str,
    business: dict[str, Any],
    app_key: str,
    app_secret: str,
    access_token: str,
    moment: datetime,
) -> dict[str, str]:
    """A JD API call's form: the system parameters, the business parameters
    as ``360buy_param_json``, and the TOP-style signature over them."""
    form = {
        "method": method,
        "app_key": app_key,
        "access_token": access_token,
        "timestamp": local_time(moment),
        "v": "2.0",
        "360buy_param_json": json.dumps(business, ensure_ascii=False, separators=(",", ":")),
    }
    form["sign"] = sorted_params_md5(form, app_secret)
    return form


def failure(detail: str) -> EndpointUnavailable | ConnectorError:
    """A JD refusal: try again when it reads as busy or rate-limited."""
    if TRY_LATER.search(detail):
        return EndpointUnavailable(detail)
    return ConnectorError(422, "platform_refused", detail)


def read_answer(method: str, content: bytes) -> dict[str, Any]:
    """The answer as a dict; a refusal is EndpointUnavailable when it reads as
    busy or rate-limited, else a ConnectorError naming JD's code."""
    answer = load_json(content, exact_numbers=True)
    if not isinstance(answer, dict):
        raise EndpointUnavailable(f"JD {method}: the answer is not a JSON object")
    error = answer.get("error_response")
    if isinstance(error, dict):
        detail = (
            f"JD {method} answered {error.get('code')}: "
            f"{error.get('zh_desc')} ({error.get('en_desc')})"
        )
        raise failure(detail)
    return answer


class JdPoller(WindowPoller):
    """``jingdong.pop.order.search`` by modification time, six hours at a time."""

    window = timedelta(hours=6)

    def __init__(
        self, *args: Any, app_key: str, app_secret: str, access_token: str, shop: str, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
        self.shop = shop

    def call(self, method: str, business: dict[str, Any]) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.now(), SHANGHAI)
        form = signed_form(
            method, business, self.app_key, self.app_secret, self.access_token, moment
        )
        return self.post_signed("JD", method, read_answer, data=form)

    def fields(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise unreadable("an order in orderInfoList is not an object")
        return to_canonical(item, self.channel, self.shop)

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        business = {
            "start_date": local_time(start),
            "end_date": local_time(end),
            "dateType": 0,
            "sortType": 1,
            "order_state": ORDER_STATES,
            "optional_fields": OPTIONAL_FIELDS,
            "page": str(number),
            "page_size": str(PAGE_SIZE),
        }
        answer = self.call(SEARCH_API, business)
        result = field(answer, "jingdong_pop_order_search_responce", "searchorderinfo_result")
        api = result.get("apiResult") or {}
        if api.get("success") is False:
            raise failure(
                f"JD {SEARCH_API} said: {api.get('chineseErrCode')} ({api.get('englishErrCode')})"
            )
        orders = list(result.get("orderInfoList") or [])
        return orders, -(-int(result.get("orderTotal") or 0) // PAGE_SIZE)


class JdRefundPoller(JdPoller):
    """Refund applications decided in each window, each an after-sale of the
    order orderbus has; pages read forward until a short one."""

    def __init__(self, *args: Any, engine: Engine, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.orders_engine = engine
        self.cursor_key = f"{self.channel}:refunds"

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        business = {
            "checkTimeStart": local_time(start),
            "checkTimeEnd": local_time(end),
            "pageIndex": number,
            "pageSize": PAGE_SIZE,
        }
        answer = self.call(REFUND_API, business)
        result = field(answer, f"{REFUND_API.replace('.', '_')}_response", "queryResult")
        if result.get("success") is False:
            raise failure(f"JD {REFUND_API} said: {result.get('resultCode')} {result}"[:500])
        items = list(result.get("result") or [])
        return items, number + 1 if len(items) >= PAGE_SIZE else number

    def _window(self, start: datetime, end: datetime, report: PollReport) -> None:
        number = 1
        while number <= self.spec.max_pages:
            items, pages = self.page(start, end, number)
            report.pages += 1
            self._publish_items(items, report)
            if pages <= number:
                return
            number += 1

    def _publish_items(self, items: list[Any], report: PollReport) -> datetime:
        orders, ids = [], []
        for item in items:
            if not self.wanted(item):
                continue
            report.orders += 1
            try:
                order, message_id = self._revised(self.entry(item))
            except ConnectorError as exc:
                report.bad += 1
                self.record_bad(exc.reason, exc.detail, json.dumps(item, default=str)[:4096])
                continue
            orders.append(order)
            ids.append(message_id)
        if orders:
            failed = [r for r in self.publish_many(orders, ids) if r is not None]
            if failed:
                raise failed[0]
            report.published += len(orders)
        return datetime.min.replace(tzinfo=UTC)

    def entry(self, item: Any) -> Any:
        """The application in a listed item (some answers wrap it)."""
        return item.get("refundApplyVo", item) if isinstance(item, dict) else None

    def wanted(self, item: Any) -> bool:
        """Whether a listed item is one orderbus reads (every application is)."""
        return True

    def _revised(self, application: Any) -> tuple[CanonicalOrder, str]:
        """The order orderbus has with the application as its after-sale, and
        the message's id (the application, its status and when it was decided)."""
        if not isinstance(application, dict):
            raise unreadable("a refund application is not an object")
        order_id = str(field(application, "orderId"))
        stored = stored_order(self.orders_engine, self.channel, self.shop, order_id)
        if stored is None:
            raise ConnectorError(
                422,
                "order_not_known",
                f"refund application {application.get('id')} is for order {order_id}, which "
                "orderbus does not have; its cancelled status will come with the order",
            )
        status = as_code(application.get("status"))
        checked = application.get("checkTime") or application.get("applyTime")
        at = timestamp(checked, "checkTime", SHANGHAI) if checked else datetime.now(UTC)
        sale = after_sale(
            field(application, "id"),
            kind_of(returns_goods=False, shipped=stored.get("status") in SHIPPED),
            refund_status(REFUND_STATUSES, status, "refund application"),
            minor_units(field(application, "applyRefundSum"), "applyRefundSum"),
            reason=application.get("reason"),
            updated_at=at,
        )
        change = AfterSaleChange(order_id, self.shop, AfterSale.model_validate(sale), at, None)
        digits = "".join(ch for ch in str(checked or "") if ch.isdigit())
        return with_after_sale(
            stored, change
        ), f"{self.channel}.refund.{sale['id']}.{status}.{digits}"


class JdOrdersAndRefunds(JdPoller):
    """Each poll: the orders' windows, then the refund applications' (and the
    after-sale service orders', when the shop's vender id is given)."""

    def __init__(self, *args: Any, refunds: list[JdRefundPoller], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.refunds = refunds

    def poll_once(self) -> PollReport:
        report = super().poll_once()
        for after_sales in self.refunds:
            more = after_sales.poll_once()
            report.pages += more.pages
            report.published += more.published
            report.bad += more.bad
        return report


def as_code(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def jd_spec(endpoint: str = JD_ENDPOINT, **overrides: Any) -> PollSpec:
    return window_spec(endpoint, JD_ITEMS, **overrides)


class JdAccount(BaseModel):
    """A JD POP shop's API access (``ORDERBUS_POLLERS[channel].jd``)."""

    model_config = ConfigDict(extra="forbid")

    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    access_token: str = Field(min_length=1, description="the shop's access token")
    shop: str = Field(min_length=1, max_length=200, description="the shop the orders belong to")
    endpoint: str = Field(default=JD_ENDPOINT, description="the API gateway")
    vender_id: str | None = Field(
        default=None,
        min_length=1,
        description="the shop's vender id (商家编号): with it, after-sale service orders "
        "(returns after shipment) are read too",
    )


class JdPull(WholeOrdersPull):
    name = "jd"
    settings_key = "jd"
    account = JdAccount

    def poller(self, account: JdAccount, deps: PullDeps) -> JdPoller:
        spec = jd_spec(account.endpoint, **deps.poll_settings())
        access = {
            "app_key": account.app_key,
            "app_secret": account.app_secret,
            "access_token": account.access_token,
            "shop": account.shop,
        }
        refunds = [JdRefundPoller(*deps.poller_args(spec), engine=deps.engine, **access)]
        if account.vender_id:
            from connectors.jd_services import JdServicePoller  # it builds on this module

            refunds.append(
                JdServicePoller(
                    *deps.poller_args(spec),
                    engine=deps.engine,
                    vender_id=account.vender_id,
                    **access,
                )
            )
        return JdOrdersAndRefunds(*deps.poller_args(spec), refunds=refunds, **access)

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        answer = load_json(fixture["response_text"], exact_numbers=True)
        result = answer["jingdong_pop_order_search_responce"]["searchorderinfo_result"]
        return [canonical_order(to_canonical(o, "jd", "shop")) for o in result["orderInfoList"]]
