"""Pinduoduo (拼多多): orders pulled with ``pdd.order.number.list.increment.get``.

As Pinduoduo's open platform documents it (its official POP SDKs:
``PddOrderNumberListIncrementGetRequest`` / ``...Response``):

- The list gives whole orders (``order_sn_increment_get_response.order_sn_list``,
  each with its ``item_list``) changed between ``start_updated_at`` and
  ``end_updated_at``, Unix seconds, at most 30 minutes apart, a ``page`` of
  ``page_size`` (at most 100) at a time, with the ``total_count``.
  ``order_status`` 5 and ``refund_status`` 5 ask for every order.
- Every request is a POST to ``https://gw-api.pinduoduo.com/api/router`` with
  ``type`` (the API), ``client_id``, ``access_token``, ``timestamp`` (Unix
  seconds), ``data_type=JSON``, ``version=V1`` and ``sign``: all parameters
  sorted by name, each name followed by its value, wrapped in the client
  secret, MD5, upper-case hex.
- An error is ``{"error_response": {error_code, error_msg, sub_code, sub_msg}}``.

The poller keeps its cursor in ``poll_cursors`` like the REST poller: it reads
30-minute windows from the cursor (less ``overlap``) up to three minutes ago,
every page of each, read from the last page back (Pinduoduo's advice against
missed orders), and
moves the cursor to a window's end only once every order in it was confirmed
by the broker (the list reaches back three months: an older cursor or
``start`` begins there). A failure ends the poll; the next one reads the same window
again, and the content-derived message ids make the re-read harmless.

Mapping: amounts are yuan as JSON numbers, read exactly as written (never
through a float). ``confirm_status`` 2 (cancelled) or ``group_status`` 2 (the
group failed) is cancelled; ``refund_status`` 4 (refunded) refunded;
``order_status`` 1 (to ship) paid, 2 shipped, 3 delivered (signed for). Each
line is ``goods_price`` x ``goods_count``; shipping ``postage``; the total
``pay_amount`` (goods - discount + postage), the difference being the discount.
SKU: ``outer_id``, else ``outer_goods_id``, else ``pdd-{goods_id}-{sku_id}``.
Times are Asia/Shanghai. ``receiver_phone`` is in the clear only while the
order waits to ship; a masked one (``1387677****``) is kept as the
customer's ``masked_phone`` (the buyer is reached through Pinduoduo).

After-sales (售后): the poller also reads the after-sales changed in each
window (``pdd.refund.list.increment.get``, every status and type, its own
cursor ``{channel}:after-sales``) and turns each into a fetch request for its
order (message id: the after-sale's id and update time). The fetch worker
reads the order (``pdd.order.information.get``) and all its after-sales (the
same list asked by ``order_sn``), kept together as the raw answer. Each
after-sale (:func:`after_sales_of`): ``after_sales_type`` 3 (goods back) a
return, 2 (money only) a refund, or a cancel while the order had not
shipped; exchanges, resends and repairs (4, 5, 6) are left out.
``after_sales_status`` 2, 3, 8 requested; 4, 5, 7, 31 agreed; 10 completed;
6, 9 refused; 11, 12, 13 withdrawn. The line is the after-sale's SKU (as the
order's lines are read: ``outer_id``...), ``goods_number`` its units,
``refund_amount`` (yuan) its money.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, OrderReference, unreadable
from connectors.payload import (
    SHANGHAI,
    TRY_LATER,
    address,
    amount,
    canonical_order,
    field,
    load_json,
    phone_fields,
    sorted_params_md5,
    timestamp,
)
from connectors.poller import PollReport, PollSpec
from connectors.pull import PublishFetches, PullDeps
from connectors.refunds import SHIPPED, after_sale, kind_of, sale_line
from connectors.refunds import status_of as refund_status
from connectors.window_poller import WindowPoller, window_spec

PDD_ENDPOINT = "https://gw-api.pinduoduo.com/api/router"
PDD_ITEMS = "$.order_sn_increment_get_response.order_sn_list"
LIST_API = "pdd.order.number.list.increment.get"
DETAIL_API = "pdd.order.information.get"
REFUND_API = "pdd.refund.list.increment.get"
GOODS_BACK, MONEY_ONLY = 3, 2  # after_sales_type (4 exchange, 5 resend, 6 repair: left out)
REFUND_STATUSES = {
    2: "requested",
    3: "requested",
    8: "requested",
    4: "agreed",
    5: "agreed",
    7: "agreed",
    31: "agreed",
    10: "completed",
    6: "refused",
    9: "refused",
    11: "withdrawn",
    12: "withdrawn",
    13: "withdrawn",
}
PAGE_SIZE = 100
STATUSES = {1: "paid", 2: "shipped", 3: "delivered"}
# Words of Pinduoduo's error messages that mean "try again later".


def _yuan(value: Any, where: str) -> Decimal:
    result = amount(value, where)
    if result.as_tuple().exponent < -2:  # type: ignore[operator]
        raise unreadable(f"{where} has more than two decimals: {value!r}")
    return result.quantize(Decimal("0.01"))


def status_of(order: dict[str, Any]) -> str:
    if order.get("confirm_status") == 2 or order.get("group_status") == 2:
        return "cancelled"
    if order.get("refund_status") == 4:
        return "refunded"
    status = order.get("order_status")
    if status not in STATUSES:
        raise unreadable(f"order_status {status!r} is not one orderbus knows")
    return STATUSES[status]


def sku_of(line: dict[str, Any]) -> str:
    """A line's SKU (an order's item or an after-sale): the merchant's codes,
    else Pinduoduo's goods and sku ids."""
    sku = line.get("outer_id") or line.get("outer_goods_id")
    return str(sku or f"pdd-{field(line, 'goods_id')}-{line.get('sku_id')}")


def _when(value: Any, where: str) -> datetime:
    """Unix seconds (a number or digits) or ``yyyy-MM-dd HH:mm:ss`` in Shanghai."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return timestamp(value, where, SHANGHAI)


def after_sales_of(refunds: list[Any], order: dict[str, Any]) -> list[dict[str, Any]]:
    """The after-sales of ``refund_list`` items, for the order's fields."""
    shipped = order["status"] in SHIPPED
    found = []
    for index, refund in enumerate(refunds):
        where = f"refund_list[{index}]"
        if not isinstance(refund, dict):
            raise unreadable(f"{where} is not an object")
        kind = refund.get("after_sales_type")
        if kind not in (GOODS_BACK, MONEY_ONLY) or refund.get("after_sales_status") == 0:
            continue  # an exchange, a resend, a repair; or no after-sale at all
        given_back = _yuan(field(refund, "refund_amount"), f"{where}.refund_amount")
        units = str(refund.get("goods_number") or "1")
        updated = refund.get("updated_time")
        found.append(
            after_sale(
                field(refund, "id"),
                kind_of(returns_goods=kind == GOODS_BACK, shipped=shipped),
                refund_status(REFUND_STATUSES, refund.get("after_sales_status"), where),
                given_back,
                lines=[sale_line(sku_of(refund), int(units) if units.isdigit() else 1, given_back)],
                reason=refund.get("after_sale_reason"),
                updated_at=_when(updated, f"{where}.updated_time") if updated else None,
            )
        )
    return found


def to_canonical(order: dict[str, Any], channel: str, shop: str) -> dict[str, Any]:
    """The canonical order's fields from one ``order_sn_list`` order."""
    lines = order.get("item_list")
    if not isinstance(lines, list) or not lines:
        raise unreadable("the order has no item_list")
    items = []
    for index, line in enumerate(lines):
        where = f"item_list[{index}]"
        quantity = field(line, "goods_count")
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise unreadable(f"{where}.goods_count is not an integer: {quantity!r}")
        items.append(
            {
                "sku": sku_of(line),
                "name": line.get("goods_name"),
                "quantity": quantity,
                "unit_price": _yuan(field(line, "goods_price"), f"{where}.goods_price"),
            }
        )
    postage = _yuan(order.get("postage") or 0, "postage")
    total = _yuan(field(order, "pay_amount"), "pay_amount")
    goods = sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0"))
    phone = str(order.get("receiver_phone") or "")
    updated = order.get("updated_at")
    return {
        "channel": channel,
        "shop": shop,
        "external_id": str(field(order, "order_sn")),
        "status": status_of(order),
        "currency": "CNY",
        "customer": {
            "name": order.get("receiver_name") or None,
            **phone_fields(phone),
        },
        "shipping_address": address(
            country="CN",
            province=order.get("province"),
            city=order.get("city"),
            district=order.get("town"),
            lines=(order.get("address"),),
            postal_code=None,
        ),
        "items": items,
        "shipping_fee": postage,
        "order_discount": goods + postage - total,
        "total": total,
        "placed_at": timestamp(field(order, "created_time"), "created_time", SHANGHAI),
        "updated_at": timestamp(updated, "updated_at", SHANGHAI) if updated else None,
        "note": order.get("buyer_memo") or None,
    }


def signed_form(
    api: str,
    params: dict[str, str],
    client_id: str,
    client_secret: str,
    access_token: str,
    now: float,
) -> dict[str, str]:
    """A Pinduoduo API call's body: the system parameters, ``params``, and
    the TOP-style signature over all of them."""
    form = {
        "type": api,
        "client_id": client_id,
        "access_token": access_token,
        "timestamp": str(int(now)),
        "data_type": "JSON",
        "version": "V1",
        **params,
    }
    form["sign"] = sorted_params_md5(form, client_secret)
    return form


def read_answer(api: str, content: bytes) -> dict[str, Any]:
    """The answer as a dict; a busy or rate-limit refusal is EndpointUnavailable,
    any other ConnectorError naming Pinduoduo's code and message."""
    answer = load_json(content, exact_numbers=True)
    if not isinstance(answer, dict):
        raise EndpointUnavailable(f"Pinduoduo {api}: the answer is not a JSON object")
    error = answer.get("error_response")
    if isinstance(error, dict):
        detail = (
            f"Pinduoduo {api} answered {error.get('error_code')}: {error.get('error_msg')} "
            f"({error.get('sub_code') or '-'}: {error.get('sub_msg') or '-'})"
        )
        words = f"{error.get('error_msg')} {error.get('sub_msg')} {error.get('sub_code')}"
        if TRY_LATER.search(words):
            raise EndpointUnavailable(detail)
        raise ConnectorError(422, "platform_refused", detail)
    return answer


class PinduoduoPoller(WindowPoller):
    """The order increment list in 30-minute windows since the cursor."""

    def __init__(
        self,
        *args: Any,
        client_id: str,
        client_secret: str,
        access_token: str,
        shop: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = access_token
        self.shop = shop

    def call(self, api: str, params: dict[str, str]) -> dict[str, Any]:
        form = signed_form(
            api, params, self.client_id, self.client_secret, self.access_token, self.now()
        )
        return self.post_signed("Pinduoduo", api, read_answer, json=form)

    def fields(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise unreadable("an order in order_sn_list is not an object")
        return to_canonical(item, self.channel, self.shop)

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        params = {
            "start_updated_at": str(int(start.timestamp())),
            "end_updated_at": str(int(end.timestamp())),
            "order_status": "5",
            "refund_status": "5",
            "is_lucky_flag": "0",
            "page": str(number),
            "page_size": str(PAGE_SIZE),
        }
        data = field(self.call(LIST_API, params), "order_sn_increment_get_response")
        total = int(data.get("total_count") or 0)
        return list(data.get("order_sn_list") or []), -(-total // PAGE_SIZE)


class PinduoduoAfterSalesPoller(PinduoduoPoller):
    """The after-sales changed in each window, each a fetch request for its
    order; its own cursor."""

    def __init__(self, *args: Any, publish_fetches: PublishFetches, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publish_fetches = publish_fetches
        self.cursor_key = f"{self.channel}:after-sales"

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        params = {
            "start_updated_at": str(int(start.timestamp())),
            "end_updated_at": str(int(end.timestamp())),
            "after_sales_status": "1",  # every status
            "after_sales_type": "1",  # every type
            "page": str(number),
            "page_size": str(PAGE_SIZE),
        }
        data = field(self.call(REFUND_API, params), "refund_increment_get_response")
        total = int(data.get("total_count") or 0)
        return list(data.get("refund_list") or []), -(-total // PAGE_SIZE)

    def _publish_items(self, items: list[Any], report: PollReport) -> datetime:
        references = [
            OrderReference(str(item["order_sn"]), _refund_delivery(item), self.shop)
            for item in items
            if isinstance(item, dict) and item.get("order_sn")
        ]
        report.orders += len(references)
        if references:
            failed = [r for r in self.publish_fetches(references) if r is not None]
            if failed:
                raise failed[0]
            report.published += len(references)
        return datetime.min.replace(tzinfo=UTC)


def _refund_delivery(item: dict[str, Any]) -> str:
    """A listed after-sale's fetch id: its id and its update time's digits
    (the same listing again is the same request; a change is a new one)."""
    changed = "".join(ch for ch in str(item.get("updated_time") or "") if ch.isdigit())
    return f"refund-{item.get('id')}-{changed}"


class PinduoduoOrdersAndAfterSales(PinduoduoPoller):
    """Each poll: the orders' windows, then the after-sales' windows."""

    def __init__(self, *args: Any, after_sales: PinduoduoAfterSalesPoller, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_sales = after_sales

    def poll_once(self) -> PollReport:
        report = super().poll_once()
        more = self.after_sales.poll_once()
        report.pages += more.pages
        report.published += more.published
        return report


class PddApi:
    """Signed Pinduoduo calls for the fetch worker: an order and its after-sales."""

    def __init__(
        self,
        client: httpx.Client,
        account: PinduoduoAccount,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.account = account
        self.clock = clock

    def call(self, api: str, params: dict[str, str]) -> dict[str, Any]:
        a = self.account
        form = signed_form(api, params, a.client_id, a.client_secret, a.access_token, self.clock())
        try:
            response = self.client.post(a.endpoint, json=form)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Pinduoduo {api}: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EndpointUnavailable(f"Pinduoduo {api}: HTTP {response.status_code}")
        return read_answer(api, response.content)

    def order(self, order_sn: str) -> dict[str, Any]:
        answer = field(self.call(DETAIL_API, {"order_sn": order_sn}), "order_info_get_response")
        info = answer.get("order_info")
        if not isinstance(info, dict):
            raise unreadable(f"{DETAIL_API} answered no order_info")
        return info

    def refunds(self, order_sn: str) -> list[Any]:
        """Every after-sale of the order (the list asked by ``order_sn`` ignores
        the window, which Pinduoduo requires all the same)."""
        now = int(self.clock())
        params = {
            "order_sn": order_sn,
            "after_sales_status": "1",
            "after_sales_type": "1",
            "start_updated_at": str(now - 1800),
            "end_updated_at": str(now),
            "page": "1",
            "page_size": str(PAGE_SIZE),
        }
        answer = field(self.call(REFUND_API, params), "refund_increment_get_response")
        return list(answer.get("refund_list") or [])


class PinduoduoOrders:
    """The fetch worker's source for a Pinduoduo channel: an order by its
    ``order_sn``, with its after-sales."""

    def __init__(self, api: PddApi, channel: str, shop: str) -> None:
        self.api = api
        self.channel = channel
        self.shop = shop

    def fetch(self, reference: OrderReference) -> CanonicalOrder:
        return self.fetch_raw(reference)[0]

    def fetch_raw(self, reference: OrderReference) -> tuple[CanonicalOrder, Any]:
        kept = {
            "order_info": self.api.order(reference.external_id),
            "refund_list": self.api.refunds(reference.external_id),
        }
        order = self.read_fetched(kept)
        if order.external_id != reference.external_id:
            raise unreadable(f"asked for order {reference.external_id}, got {order.external_id}")
        return order, kept

    def read_fetched(self, kept: Any) -> CanonicalOrder:
        """A kept answer (原始单) read again, with no call."""
        if not isinstance(kept, dict) or not isinstance(kept.get("order_info"), dict):
            raise unreadable("the kept answer has no order_info")
        fields = to_canonical(kept["order_info"], self.channel, self.shop)
        fields["after_sales"] = after_sales_of(kept.get("refund_list") or [], fields)
        return canonical_order(fields)


def pdd_spec(endpoint: str = PDD_ENDPOINT, **overrides: Any) -> PollSpec:
    return window_spec(endpoint, PDD_ITEMS, **overrides)


class PinduoduoAccount(BaseModel):
    """A Pinduoduo shop's API access (``ORDERBUS_POLLERS[channel].pinduoduo``)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, description="the app's client_id")
    client_secret: str = Field(min_length=1, description="its client_secret")
    access_token: str = Field(min_length=1, description="the shop's access token")
    shop: str = Field(min_length=1, max_length=200, description="the mall id, the orders' shop")
    endpoint: str = Field(default=PDD_ENDPOINT, description="the API gateway")


class PinduoduoPull:
    name = "pinduoduo"
    settings_key = "pinduoduo"
    account = PinduoduoAccount
    fetches = True  # an after-sale names its order: fetched with its after-sales

    def poller(self, account: PinduoduoAccount, deps: PullDeps) -> PinduoduoPoller:
        spec = pdd_spec(account.endpoint, **deps.poll_settings())
        access = {
            "client_id": account.client_id,
            "client_secret": account.client_secret,
            "access_token": account.access_token,
            "shop": account.shop,
        }
        after_sales = PinduoduoAfterSalesPoller(
            *deps.poller_args(spec), publish_fetches=deps.publish_fetches, **access
        )
        return PinduoduoOrdersAndAfterSales(
            *deps.poller_args(spec), after_sales=after_sales, **access
        )

    def order_source(
        self, account: PinduoduoAccount, channel: str, client: httpx.Client
    ) -> PinduoduoOrders:
        return PinduoduoOrders(PddApi(client, account), channel, account.shop)

    def fixture_orders(self, fixture: dict[str, Any]) -> list[CanonicalOrder]:
        answer = load_json(fixture["response_text"], exact_numbers=True)
        orders = answer["order_sn_increment_get_response"]["order_sn_list"]
        return [canonical_order(to_canonical(o, "pinduoduo", "mall")) for o in orders]
